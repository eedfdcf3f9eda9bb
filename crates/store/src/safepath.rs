//! Opening paths inside a root directory so that no symlink or `..` can lead outside it.
//! Uses openat2(2) with RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS (Linux 5.6+).

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use crate::{Result, StoreError};

/// The kernel's `struct open_how` (include/uapi/linux/openat2.h).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_IN_ROOT: u64 = 0x10;

/// openat2 with the path resolved as if `dir` were `/`. Retries EAGAIN (a concurrent rename).
pub(crate) fn openat2_in_root(
    dir: RawFd,
    path: &Path,
    flags: libc::c_int,
    mode: u64,
) -> io::Result<OwnedFd> {
    let rel = path.as_os_str().as_bytes();
    let rel = if rel.iter().all(|&b| b == b'/') {
        &b"."[..]
    } else {
        rel
    };
    let c = CString::new(rel).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode,
        resolve: RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    let mut last = io::Error::from_raw_os_error(libc::EAGAIN);
    for _ in 0..16 {
        // SAFETY: valid fd, C string and open_how of the size we pass.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir,
                c.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if fd >= 0 {
            // SAFETY: the kernel returned a new fd that nothing else owns.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
        }
        last = io::Error::last_os_error();
        if last.raw_os_error() != Some(libc::EAGAIN) {
            break;
        }
    }
    Err(last)
}

pub(crate) fn open_root(root: &Path) -> Result<OwnedFd> {
    let c = CString::new(root.as_os_str().as_bytes())
        .map_err(|_| StoreError::NotFound(format!("{root:?}")))?;
    // SAFETY: valid C string.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io_err(
            format!("open root {root:?}"),
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Open `path` (interpreted as if `root` were `/`) for reading.
pub fn open_in_root(root: &Path, path: &Path) -> Result<File> {
    let rfd = open_root(root)?;
    let fd = openat2_in_root(rfd.as_raw_fd(), path, libc::O_RDONLY, 0)
        .map_err(|e| io_err(format!("open {path:?} in {root:?}"), e))?;
    Ok(File::from(fd))
}

/// Read a whole file inside `root` (e.g. an image's /etc/passwd). `Ok(None)` if it does not exist
/// (also when a component is not a directory or symlinks loop).
pub fn read_in_root(root: &Path, path: &Path) -> Result<Option<Vec<u8>>> {
    let mut f = match open_in_root(root, path) {
        Ok(f) => f,
        Err(StoreError::Io { source, .. })
            if matches!(
                source.raw_os_error(),
                Some(libc::ENOENT) | Some(libc::ENOTDIR) | Some(libc::ELOOP)
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)
        .map_err(|e| io_err(format!("read {path:?} in {root:?}"), e))?;
    Ok(Some(buf))
}

/// Create (mkdir -p) a directory inside `root`, resolving every component inside it.
/// Used for working directories and mount targets.
pub fn mkdir_all_in_root(root: &Path, path: &Path, mode: u32) -> Result<()> {
    let rfd = open_root(root)?;
    // Each prefix is resolved from the root with RESOLVE_IN_ROOT, so symlinks and `..` met on
    // the way (even ones created concurrently) stay inside; mkdirat itself never follows a symlink.
    let mut prefix = std::path::PathBuf::from("/");
    let mut parent = openat2_in_root(
        rfd.as_raw_fd(),
        &prefix,
        libc::O_PATH | libc::O_DIRECTORY,
        0,
    )
    .map_err(|e| io_err(format!("open {root:?}"), e))?;
    for comp in path.components() {
        let name = match comp {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => continue,
            Component::ParentDir => {
                prefix.push("..");
                parent = openat2_in_root(
                    rfd.as_raw_fd(),
                    &prefix,
                    libc::O_PATH | libc::O_DIRECTORY,
                    0,
                )
                .map_err(|e| io_err(format!("open {prefix:?} in {root:?}"), e))?;
                continue;
            }
            Component::Normal(n) => n,
        };
        prefix.push(name);
        let flags = libc::O_PATH | libc::O_DIRECTORY;
        parent = match openat2_in_root(rfd.as_raw_fd(), &prefix, flags, 0) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                let c = CString::new(name.as_bytes()).map_err(|_| {
                    io_err(
                        format!("{path:?}"),
                        io::Error::from(io::ErrorKind::InvalidInput),
                    )
                })?;
                // SAFETY: valid fd and C string.
                let rc =
                    unsafe { libc::mkdirat(parent.as_raw_fd(), c.as_ptr(), mode as libc::mode_t) };
                if rc != 0 {
                    let e = io::Error::last_os_error();
                    if e.raw_os_error() != Some(libc::EEXIST) {
                        return Err(io_err(format!("mkdir {prefix:?} in {root:?}"), e));
                    }
                } else if let Ok(dfd) = openat2_in_root(
                    rfd.as_raw_fd(),
                    &prefix,
                    libc::O_RDONLY | libc::O_DIRECTORY,
                    0,
                ) {
                    // Exact mode despite the umask.
                    // SAFETY: valid fd.
                    unsafe { libc::fchmod(dfd.as_raw_fd(), mode as libc::mode_t) };
                }
                openat2_in_root(rfd.as_raw_fd(), &prefix, flags, 0)
                    .map_err(|e| io_err(format!("open {prefix:?} in {root:?}"), e))?
            }
            Err(e) => return Err(io_err(format!("open {prefix:?} in {root:?}"), e)),
        };
    }
    Ok(())
}

fn io_err(context: String, source: io::Error) -> StoreError {
    StoreError::Io { context, source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{symlink, PermissionsExt};

    #[test]
    fn symlinks_do_not_escape() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        symlink("/etc", root.join("etc")).unwrap();
        // /etc/passwd exists on the host, but not inside the root (etc -> /etc loops on itself).
        assert_eq!(read_in_root(root, Path::new("/etc/passwd")).unwrap(), None);
        fs::create_dir(root.join("real")).unwrap();
        fs::write(root.join("real/passwd"), b"root:x:0:0").unwrap();
        fs::remove_file(root.join("etc")).unwrap();
        // An absolute symlink resolves inside the root.
        symlink("/real", root.join("etc")).unwrap();
        assert_eq!(
            read_in_root(root, Path::new("/etc/passwd"))
                .unwrap()
                .unwrap(),
            b"root:x:0:0"
        );
        symlink("../../../../etc/passwd", root.join("up")).unwrap();
        assert_eq!(
            read_in_root(root, Path::new("up")).unwrap().unwrap(),
            b"root:x:0:0"
        );
        symlink("../../../../etc/shadow", root.join("up2")).unwrap();
        assert_eq!(read_in_root(root, Path::new("up2")).unwrap(), None);
        assert_eq!(
            read_in_root(root, Path::new("../../../etc/group")).unwrap(),
            None
        );
        assert!(read_in_root(root, Path::new("/proc/self/root/etc/group"))
            .unwrap()
            .is_none());
        let mut s = String::new();
        open_in_root(root, Path::new("/real/passwd"))
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "root:x:0:0");
    }

    #[test]
    fn mkdir_all_stays_inside() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        let outside = d.path().join("outside");
        fs::create_dir(&root).unwrap();
        fs::create_dir(&outside).unwrap();
        fs::create_dir(root.join("inner")).unwrap();
        fs::create_dir(root.join("outside")).unwrap();
        symlink("/inner", root.join("abs")).unwrap();
        symlink(&outside, root.join("link")).unwrap();
        symlink("../../outside", root.join("rel")).unwrap();
        mkdir_all_in_root(&root, Path::new("/abs/a/b"), 0o750).unwrap();
        assert!(root.join("inner/a/b").is_dir());
        assert_eq!(
            fs::metadata(root.join("inner/a/b"))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777,
            0o750
        );
        // `..` from the root stays at the root.
        mkdir_all_in_root(&root, Path::new("rel/c"), 0o755).unwrap();
        assert!(root.join("outside/c").is_dir());
        mkdir_all_in_root(&root, Path::new("/../../x/./y"), 0o755).unwrap();
        assert!(root.join("x/y").is_dir());
        // A symlink to a host path that does not exist inside the root: error, nothing outside.
        assert!(mkdir_all_in_root(&root, Path::new("/link/a"), 0o755).is_err());
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
        // Existing dirs are fine; a file in the way is an error.
        mkdir_all_in_root(&root, Path::new("/x/y"), 0o755).unwrap();
        fs::write(root.join("file"), b"").unwrap();
        assert!(mkdir_all_in_root(&root, Path::new("/file/sub"), 0o755).is_err());
    }
}
