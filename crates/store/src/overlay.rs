//! overlayfs mounts for container root filesystems.
//!
//! Short option strings go through mount(2). mount(2) data is limited to one page, so a long
//! lowerdir list (many layers, long paths) goes through the new mount API instead
//! (fsopen/fsconfig/fsmount/move_mount), passing one lower at a time as `lowerdir+`
//! (Linux 6.8+; on older kernels that case fails with a clear error).

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};

use crate::{Result, StoreError};

/// Largest option string given to mount(2) (a page, minus the NUL and some slack).
const MAX_MOUNT_DATA: usize = 4000;

/// Mount an overlay at `target` with `lowers` (top-most first), `upper` and `work`.
/// With no lowers (an image from scratch with no layers) an empty read-only lower is needed:
/// the caller passes one. Long lowerdir lists are handled (mount data is limited to a page).
pub fn mount(lowers: &[PathBuf], upper: &Path, work: &Path, target: &Path) -> Result<()> {
    if lowers.is_empty() {
        return Err(mount_err(
            target,
            io::Error::new(io::ErrorKind::InvalidInput, "no lower directory"),
        ));
    }
    for p in lowers.iter().map(PathBuf::as_path).chain([upper, work]) {
        check_path(p)?;
    }
    let lowerdir = lowers
        .iter()
        .map(|p| p.to_string_lossy())
        .collect::<Vec<_>>()
        .join(":");
    let data = format!(
        "lowerdir={lowerdir},upperdir={},workdir={}",
        upper.to_string_lossy(),
        work.to_string_lossy()
    );
    if data.len() <= MAX_MOUNT_DATA {
        return nix::mount::mount(
            Some("overlay"),
            target,
            Some("overlay"),
            MsFlags::empty(),
            Some(data.as_str()),
        )
        .map_err(|e| mount_err(target, io::Error::from(e)));
    }
    mount_fsconfig(lowers, upper, work, target).map_err(|e| mount_err(target, e))
}

/// Paths must be absolute and free of the characters overlayfs's option parser treats specially.
fn check_path(p: &Path) -> Result<()> {
    let b = p.as_os_str().as_bytes();
    if !p.is_absolute()
        || b.iter()
            .any(|c| matches!(c, b',' | b':' | b'\\' | b'\n' | 0))
    {
        return Err(StoreError::Io {
            context: format!("overlay path {p:?}"),
            source: io::Error::new(
                io::ErrorKind::InvalidInput,
                "must be absolute, without , : \\ or newline",
            ),
        });
    }
    Ok(())
}

fn mount_err(target: &Path, source: io::Error) -> StoreError {
    StoreError::Io {
        context: format!("mount overlay at {target:?}"),
        source,
    }
}

const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;

fn cstr(b: &[u8]) -> io::Result<CString> {
    CString::new(b).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn check_fd(rc: libc::c_long) -> io::Result<OwnedFd> {
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as libc::c_int) })
}

fn fsconfig_string(fs: &OwnedFd, key: &str, value: &[u8]) -> io::Result<()> {
    let k = cstr(key.as_bytes())?;
    let v = cstr(value)?;
    // SAFETY: valid fd and C strings.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_SET_STRING,
            k.as_ptr(),
            v.as_ptr(),
            0,
        )
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("fsconfig {key}: {e}")));
    }
    Ok(())
}

fn mount_fsconfig(lowers: &[PathBuf], upper: &Path, work: &Path, target: &Path) -> io::Result<()> {
    let name = cstr(b"overlay")?;
    // SAFETY: valid C string.
    let fs = check_fd(unsafe { libc::syscall(libc::SYS_fsopen, name.as_ptr(), FSOPEN_CLOEXEC) })?;
    for l in lowers {
        // `lowerdir+` appends one lower (top-most first) and has no length limit on the list.
        fsconfig_string(&fs, "lowerdir+", l.as_os_str().as_bytes())?;
    }
    fsconfig_string(&fs, "upperdir", upper.as_os_str().as_bytes())?;
    fsconfig_string(&fs, "workdir", work.as_os_str().as_bytes())?;
    // SAFETY: valid fd; null key and value for a command.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("create overlay superblock: {e}"),
        ));
    }
    // SAFETY: valid fd.
    let mnt =
        check_fd(unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, 0) })?;
    let empty = cstr(b"")?;
    let t = cstr(target.as_os_str().as_bytes())?;
    // SAFETY: valid fds and C strings.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Unmount `target` (lazily if busy). Not mounted is not an error.
pub fn unmount(target: &Path) -> Result<()> {
    let err = |e: Errno| StoreError::Io {
        context: format!("unmount {target:?}"),
        source: io::Error::from(e),
    };
    match nix::mount::umount2(target, MntFlags::empty()) {
        Ok(()) => Ok(()),
        Err(Errno::EINVAL) | Err(Errno::ENOENT) => Ok(()),
        Err(Errno::EBUSY) => match nix::mount::umount2(target, MntFlags::MNT_DETACH) {
            Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(err(e)),
        },
        Err(e) => Err(err(e)),
    }
}

/// Every mount point in /proc/self/mountinfo (with octal escapes decoded).
fn mount_points() -> Vec<PathBuf> {
    let Ok(text) = fs::read("/proc/self/mountinfo") else {
        return Vec::new();
    };
    text.split(|&b| b == b'\n')
        .filter_map(|line| line.split(|&b| b == b' ').nth(4))
        .map(|f| PathBuf::from(std::ffi::OsStr::from_bytes(&unescape(f))))
        .collect()
}

/// Decode `\NNN` octal escapes (space, tab, newline, backslash) of mountinfo.
fn unescape(f: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(f.len());
    let mut i = 0;
    while i < f.len() {
        if f[i] == b'\\'
            && i + 3 < f.len()
            && f[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (f[i + 1] - b'0') as u32 * 64
                + (f[i + 2] - b'0') as u32 * 8
                + (f[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(f[i]);
            i += 1;
        }
    }
    out
}

/// `path` made absolute and free of `.`/`..` and symlinks where possible.
fn normalized(path: &Path) -> PathBuf {
    if let Ok(p) = fs::canonicalize(path) {
        return p;
    }
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

/// Whether `path` is a mount point (from /proc/self/mountinfo).
pub fn is_mounted(path: &Path) -> bool {
    let p = normalized(path);
    mount_points().contains(&p)
}

/// Every mount point at or under `prefix` (from /proc/self/mountinfo), deepest first.
pub fn mounts_under(prefix: &Path) -> Vec<PathBuf> {
    let p = normalized(prefix);
    let mut v: Vec<PathBuf> = mount_points()
        .into_iter()
        .filter(|m| m.starts_with(&p))
        .collect();
    v.sort();
    v.dedup();
    v.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dirs {
        tmp: tempfile::TempDir,
        target: PathBuf,
    }

    impl Drop for Dirs {
        fn drop(&mut self) {
            for m in mounts_under(self.tmp.path()) {
                let _ = unmount(&m);
            }
        }
    }

    fn setup(n_lowers: usize, name_len: usize) -> (Dirs, Vec<PathBuf>, PathBuf, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let mut lowers = Vec::new();
        for i in 0..n_lowers {
            let l = tmp.path().join(format!("{i:03}{}", "l".repeat(name_len)));
            fs::create_dir(&l).unwrap();
            fs::write(l.join(format!("f{i}")), format!("{i}")).unwrap();
            fs::write(l.join("shared"), format!("{i}")).unwrap();
            lowers.push(l);
        }
        let (upper, work, target) = (
            tmp.path().join("upper"),
            tmp.path().join("work"),
            tmp.path().join("mnt"),
        );
        for d in [&upper, &work, &target] {
            fs::create_dir(d).unwrap();
        }
        (
            Dirs {
                tmp,
                target: target.clone(),
            },
            lowers,
            upper,
            work,
        )
    }

    #[test]
    fn mount_two_lowers_and_unmount() {
        let (d, lowers, upper, work) = setup(2, 1);
        assert!(!is_mounted(&d.target));
        mount(&lowers, &upper, &work, &d.target).unwrap();
        assert!(is_mounted(&d.target));
        assert_eq!(mounts_under(d.tmp.path()), vec![d.target.clone()]);
        assert_eq!(fs::read_to_string(d.target.join("f0")).unwrap(), "0");
        assert_eq!(fs::read_to_string(d.target.join("f1")).unwrap(), "1");
        // The first lower is the top-most.
        assert_eq!(fs::read_to_string(d.target.join("shared")).unwrap(), "0");
        fs::write(d.target.join("new"), b"x").unwrap();
        assert!(upper.join("new").exists());
        unmount(&d.target).unwrap();
        assert!(!is_mounted(&d.target));
        assert!(!d.target.join("f0").exists());
        unmount(&d.target).unwrap();
    }

    #[test]
    fn mount_long_lowerdir_list() {
        // 40 lowers of ~150-byte paths: far beyond one page of mount(2) data.
        let (d, lowers, upper, work) = setup(40, 100);
        let total: usize = lowers.iter().map(|l| l.as_os_str().len() + 1).sum();
        assert!(total > MAX_MOUNT_DATA);
        mount(&lowers, &upper, &work, &d.target).unwrap();
        assert!(is_mounted(&d.target));
        assert_eq!(fs::read_to_string(d.target.join("f0")).unwrap(), "0");
        assert_eq!(fs::read_to_string(d.target.join("f39")).unwrap(), "39");
        assert_eq!(fs::read_to_string(d.target.join("shared")).unwrap(), "0");
        unmount(&d.target).unwrap();
        assert!(!is_mounted(&d.target));
    }

    #[test]
    fn bad_paths_are_refused() {
        let t = Path::new("/nonexistent-berth");
        assert!(mount(&[], t, t, t).is_err());
        assert!(mount(&[PathBuf::from("/a:b")], t, t, t).is_err());
        assert!(mount(&[PathBuf::from("rel")], t, t, t).is_err());
    }

    #[test]
    fn mountinfo_unescape() {
        assert_eq!(unescape(br"/a\040b\134c"), b"/a b\\c");
        assert_eq!(unescape(br"/x\04"), br"/x\04");
        assert!(is_mounted(Path::new("/")));
    }

    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (p, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o755);
            h.set_mtime(1);
            if p.ends_with('/') {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
            } else {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(data.len() as u64);
            }
            b.append_data(&mut h, p, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn unpacked_whiteouts_work_in_overlayfs() {
        let (d, _, upper, work) = setup(0, 0);
        let ls = crate::layers::LayerStore::open(&d.tmp.path().join("layers")).unwrap();
        let base = tar_of(&[
            ("gone", b"1"),
            ("dir/", b""),
            ("dir/old", b"1"),
            ("keep", b"1"),
        ]);
        let l0 = ls.apply(None, &mut &base[..], None).unwrap();
        let top = tar_of(&[
            (".wh.gone", b""),
            ("dir/", b""),
            ("dir/.wh..wh..opq", b""),
            ("dir/new", b"2"),
        ]);
        let l1 = ls.apply(Some(&l0.chain_id), &mut &top[..], None).unwrap();
        mount(
            &[ls.dir(&l1.chain_id), ls.dir(&l0.chain_id)],
            &upper,
            &work,
            &d.target,
        )
        .unwrap();
        let t = &d.target;
        assert!(t.join("keep").exists());
        assert!(!t.join("gone").exists());
        assert!(!t.join("dir/old").exists());
        assert!(t.join("dir/new").exists());
        unmount(t).unwrap();
    }
}
