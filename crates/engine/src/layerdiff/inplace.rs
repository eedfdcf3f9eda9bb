//! Turning a former upper directory, moved into the layer store, into the layer itself (build
//! steps whose container is thrown away: no copy of the files at all). After the tar pass, the
//! directory is made to hold exactly what the tar holds: entries the walk left out (the runtime's
//! mount points, device nodes, sockets) are removed, overlayfs' own xattrs dropped (an opaque
//! directory keeps `trusted.overlay.opaque=y`), mtimes cut to the second as in the tar, and the
//! root made 0755. Nothing is followed: every call is relative to a directory descriptor opened
//! with `O_NOFOLLOW`, or an `l*` call on a name in it.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::walk::{list_dir, lstat_at, sys_openat, Kind, Node};

fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `/proc/self/fd/<dir>/<name>`: a path for the `l*xattr` calls that names `name` in `dir`
/// without resolving anything but the directory descriptor.
fn at_path(dir: RawFd, name: &CStr) -> io::Result<CString> {
    let mut p = format!("/proc/self/fd/{dir}/").into_bytes();
    p.extend_from_slice(name.to_bytes());
    CString::new(p).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn is_overlay_xattr(n: &[u8]) -> bool {
    n.starts_with(b"trusted.overlay.") || n.starts_with(b"user.overlay.")
}

/// Remove overlayfs' xattrs from `path` (not followed).
fn strip_overlay_xattrs(path: &CStr) -> io::Result<()> {
    let mut names = vec![0u8; 4096];
    // SAFETY: valid C string and buffer.
    let n = unsafe { libc::llistxattr(path.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        // No xattrs, or a file system without them; ERANGE (a huge list) is left alone: a
        // layer with extra overlay xattrs still works as a lower.
        return Ok(());
    }
    names.truncate(n as usize);
    for name in names.split(|&b| b == 0).filter(|x| !x.is_empty()) {
        if !is_overlay_xattr(name) {
            continue;
        }
        let Ok(c) = CString::new(name) else { continue };
        // SAFETY: valid C strings.
        let r = unsafe { libc::lremovexattr(path.as_ptr(), c.as_ptr()) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ENODATA) {
                return Err(e);
            }
        }
    }
    Ok(())
}

fn set_mtime(dir: RawFd, name: &CStr, st: &libc::stat) -> io::Result<()> {
    let t = libc::timespec {
        tv_sec: st.st_mtime.max(0),
        tv_nsec: 0,
    };
    let times = [t, t];
    // SAFETY: valid fd, C string and times array.
    check(unsafe {
        libc::utimensat(
            dir,
            name.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
}

/// Remove `name` in `dir` whatever it is (a directory with its contents), never following links.
fn remove_any(dir: RawFd, name: &CStr, depth: usize) -> io::Result<()> {
    let st = match lstat_at(dir, name) {
        Ok(st) => st,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        if depth > super::walk::MAX_DEPTH {
            return Err(io::Error::other("directory tree too deep to remove"));
        }
        let d = sys_openat(
            dir,
            name,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        )?;
        for n in list_dir(&d)? {
            remove_any(d.as_raw_fd(), &n, depth + 1)?;
        }
        // SAFETY: valid fd and C string.
        check(unsafe { libc::unlinkat(dir, name.as_ptr(), libc::AT_REMOVEDIR) })
    } else {
        // SAFETY: valid fd and C string.
        check(unsafe { libc::unlinkat(dir, name.as_ptr(), 0) })
    }
}

/// Make the directory `d` hold exactly `nodes` (see the module doc). Post-order: a directory's
/// mtime is set after everything in it changed.
pub(crate) fn conform(d: &OwnedFd, nodes: &[Node], depth: usize) -> io::Result<()> {
    let want: HashMap<&CStr, &Node> = nodes.iter().map(|n| (n.name.as_c_str(), n)).collect();
    for name in list_dir(d)? {
        let Some(n) = want.get(name.as_c_str()) else {
            remove_any(d.as_raw_fd(), &name, depth + 1)?;
            continue;
        };
        let path = at_path(d.as_raw_fd(), &name)?;
        if let Kind::Dir { opaque } = n.kind {
            let cd = sys_openat(
                d.as_raw_fd(),
                &name,
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            )?;
            conform(&cd, &n.children, depth + 1)?;
            strip_overlay_xattrs(&path)?;
            if opaque {
                // SAFETY: valid fd, C string and buffer.
                check(unsafe {
                    libc::fsetxattr(
                        cd.as_raw_fd(),
                        c"trusted.overlay.opaque".as_ptr(),
                        b"y".as_ptr().cast(),
                        1,
                        0,
                    )
                })?;
            }
        } else if n.kind != Kind::Whiteout {
            strip_overlay_xattrs(&path)?;
        }
        set_mtime(d.as_raw_fd(), &name, &n.st)?;
    }
    Ok(())
}
