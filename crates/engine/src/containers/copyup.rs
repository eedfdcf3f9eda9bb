//! Docker's copy-up: an empty volume mounted over image content is first filled with that
//! content. Done in-process with file descriptors: the source is opened inside the container's
//! root (openat2 RESOLVE_IN_ROOT), every entry below it is opened relative to its parent with
//! O_NOFOLLOW, and symlinks are copied as links, never followed. Nothing from the container's
//! filesystem is run.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn cstr(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn openat(
    dir: RawFd,
    name: &CString,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> io::Result<OwnedFd> {
    // SAFETY: valid fd and C string.
    let fd = check(unsafe {
        libc::openat(
            dir,
            name.as_ptr(),
            flags | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            mode as libc::c_uint,
        )
    })?;
    // SAFETY: a fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn lstat_at(dir: RawFd, name: &CString) -> io::Result<libc::stat> {
    // SAFETY: zeroed stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd, C string and out-pointer.
    check(unsafe { libc::fstatat(dir, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) })?;
    Ok(st)
}

fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    // SAFETY: as above.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and out-pointer.
    check(unsafe { libc::fstat(fd, &mut st) })?;
    Ok(st)
}

/// Names in an open directory (read through its /proc/self/fd link: the very inode we hold).
fn names(dir: RawFd) -> io::Result<Vec<std::ffi::OsString>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(format!("/proc/self/fd/{dir}"))? {
        out.push(e?.file_name());
    }
    out.sort();
    Ok(out)
}

fn set_owner_mode(fd: RawFd, st: &libc::stat) {
    // SAFETY: valid fd.
    unsafe {
        libc::fchown(fd, st.st_uid, st.st_gid);
        libc::fchmod(fd, st.st_mode & 0o7777);
    }
}

/// Copy the directory `src` (open) into the directory `dst` (open, empty), recursively.
fn copy_dir(src: RawFd, dst: RawFd, depth: usize) -> io::Result<()> {
    if depth > 256 {
        return Err(io::Error::other("directory tree too deep"));
    }
    for name in names(src)? {
        let c = cstr(&name)?;
        let st = lstat_at(src, &c)?;
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => {
                // SAFETY: valid fd and C string.
                check(unsafe { libc::mkdirat(dst, c.as_ptr(), 0o700) })?;
                let s = openat(src, &c, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
                let d = openat(dst, &c, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
                copy_dir(s.as_raw_fd(), d.as_raw_fd(), depth + 1)?;
                set_owner_mode(d.as_raw_fd(), &st);
            }
            libc::S_IFREG => {
                let s = openat(src, &c, libc::O_RDONLY, 0)?;
                let d = openat(
                    dst,
                    &c,
                    libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
                    0o600,
                )?;
                let mut sf = File::from(s);
                let mut df = File::from(d);
                io::copy(&mut sf, &mut df)?;
                set_owner_mode(df.as_raw_fd(), &st);
            }
            libc::S_IFLNK => {
                let mut buf = vec![0u8; libc::PATH_MAX as usize];
                // SAFETY: valid fd, C string and buffer.
                let n = unsafe {
                    libc::readlinkat(src, c.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
                };
                if n < 0 {
                    return Err(io::Error::last_os_error());
                }
                buf.truncate(n as usize);
                let target =
                    CString::new(buf).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
                // SAFETY: valid C strings and fd.
                check(unsafe { libc::symlinkat(target.as_ptr(), dst, c.as_ptr()) })?;
                // SAFETY: valid fd and C string; never follows the link.
                unsafe {
                    libc::fchownat(
                        dst,
                        c.as_ptr(),
                        st.st_uid,
                        st.st_gid,
                        libc::AT_SYMLINK_NOFOLLOW,
                    )
                };
            }
            // Device nodes, fifos and sockets are not copied.
            _ => {}
        }
    }
    Ok(())
}

/// Fill the (empty) volume directory `dst` with the content of `path` inside `rootfs`. Nothing
/// happens if `path` does not exist in the image or is not a directory.
pub fn copy_up(rootfs: &Path, path: &Path, dst: &Path) -> crate::Result<()> {
    let src = match berth_store::safepath::open_in_root(rootfs, path) {
        Ok(f) => f,
        Err(_) => return Ok(()),
    };
    let st = fstat(src.as_raw_fd())?;
    if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
        return Ok(());
    }
    let dpath = CString::new(dst.as_os_str().as_bytes())
        .map_err(|_| crate::EngineError::Internal(format!("bad path {dst:?}")))?;
    let d = openat(
        libc::AT_FDCWD,
        &dpath,
        libc::O_RDONLY | libc::O_DIRECTORY,
        0,
    )?;
    copy_dir(src.as_raw_fd(), d.as_raw_fd(), 0)?;
    set_owner_mode(d.as_raw_fd(), &st);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn copies_without_following_links() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("data/sub")).unwrap();
        std::fs::write(root.join("data/a"), b"A").unwrap();
        std::fs::write(root.join("data/sub/b"), b"B").unwrap();
        symlink("/etc/passwd", root.join("data/link")).unwrap();
        // A symlinked mount path resolves inside the root.
        symlink("/data", root.join("alias")).unwrap();
        let dst = t.path().join("vol");
        std::fs::create_dir(&dst).unwrap();
        copy_up(&root, Path::new("/alias"), &dst).unwrap();
        assert_eq!(std::fs::read(dst.join("a")).unwrap(), b"A");
        assert_eq!(std::fs::read(dst.join("sub/b")).unwrap(), b"B");
        assert_eq!(
            std::fs::read_link(dst.join("link")).unwrap(),
            Path::new("/etc/passwd")
        );
        // Escaping symlink to a host dir: resolved inside the root (missing → nothing copied).
        let dst2 = t.path().join("vol2");
        std::fs::create_dir(&dst2).unwrap();
        symlink("/etc", root.join("etc")).unwrap();
        copy_up(&root, Path::new("/etc"), &dst2).unwrap();
        assert_eq!(std::fs::read_dir(&dst2).unwrap().count(), 0);
    }
}
