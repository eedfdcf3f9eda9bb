//! Writing a walked tree as a deterministic tar stream (ustar headers, PAX records for long
//! names and xattrs, Docker's whiteout names) and, optionally, the same files into a new layer
//! directory in the same pass (each file is read once; the tar and the copy get the same bytes).

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::walk::{io_err, lstat_at, sys_openat, Kind, Node};
use crate::Result;

const BLOCK: usize = 512;
/// Size of the buffer file data is read through.
const COPY_BUF: usize = 256 * 1024;

/// Where the files are copied to, next to the tar (durability is the caller's: one syncfs).
pub(crate) struct Mirror {
    /// The new layer's root directory.
    pub root: OwnedFd,
}

pub(crate) struct Emitter<'w> {
    w: &'w mut dyn Write,
    mirror: Option<Mirror>,
    /// (dev, ino) of regular files with several links → the first name written.
    links: HashMap<(u64, u64), Vec<u8>>,
    buf: Vec<u8>,
    /// Bytes of regular file data (the layer's size as the layer store counts it).
    pub data_size: u64,
}

/// Extended attributes kept in layers: everything but overlayfs' own bookkeeping and SELinux
/// labels of the build host.
fn keep_xattr(name: &[u8]) -> bool {
    !(name.starts_with(b"trusted.overlay.")
        || name.starts_with(b"user.overlay.")
        || name == b"security.selinux")
}

fn read_xattrs(fd: RawFd) -> Vec<(CString, Vec<u8>)> {
    let mut names = vec![0u8; 1024];
    // SAFETY: valid fd and buffer.
    let mut n = unsafe { libc::flistxattr(fd, names.as_mut_ptr().cast(), names.len()) };
    if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ERANGE) {
        // SAFETY: as above, size query then read.
        let need = unsafe { libc::flistxattr(fd, std::ptr::null_mut(), 0) };
        if need > 0 {
            names = vec![0u8; need as usize];
            // SAFETY: as above.
            n = unsafe { libc::flistxattr(fd, names.as_mut_ptr().cast(), names.len()) };
        }
    }
    if n <= 0 {
        return Vec::new();
    }
    names.truncate(n as usize);
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        if !keep_xattr(name) {
            continue;
        }
        let Ok(cname) = CString::new(name) else {
            continue;
        };
        // SAFETY: size query.
        let size = unsafe { libc::fgetxattr(fd, cname.as_ptr(), std::ptr::null_mut(), 0) };
        if size < 0 {
            continue;
        }
        let mut val = vec![0u8; size as usize];
        // SAFETY: valid buffer of the given size.
        let got =
            unsafe { libc::fgetxattr(fd, cname.as_ptr(), val.as_mut_ptr().cast(), val.len()) };
        if got < 0 {
            continue;
        }
        val.truncate(got as usize);
        out.push((cname, val));
    }
    out.sort();
    out
}

fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    // "<len> <key>=<value>\n", where len counts itself.
    let rest = 1 + key.len() + 1 + value.len() + 1;
    let mut len = rest + 1;
    while len.to_string().len() + rest != len {
        len = len.to_string().len() + rest;
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// The header fields of one entry.
struct Entry<'a> {
    name: &'a [u8],
    kind: tar::EntryType,
    st: &'a libc::stat,
    /// Mode override (whiteouts).
    mode: Option<u32>,
    size: u64,
    link: Option<&'a [u8]>,
    xattrs: &'a [(CString, Vec<u8>)],
}

fn set_c(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl<'w> Emitter<'w> {
    pub fn new(w: &'w mut dyn Write, mirror: Option<Mirror>) -> Self {
        Emitter {
            w,
            mirror,
            links: HashMap::new(),
            buf: Vec::new(),
            data_size: 0,
        }
    }

    fn header(&mut self, e: &Entry) -> io::Result<()> {
        let mut pax = Vec::new();
        if e.name.len() > 100 {
            pax_record(&mut pax, b"path", e.name);
        }
        if let Some(l) = e.link.filter(|l| l.len() > 100) {
            pax_record(&mut pax, b"linkpath", l);
        }
        for (k, v) in e.xattrs {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(k.to_bytes());
            pax_record(&mut pax, &key, v);
        }
        if !pax.is_empty() {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::XHeader);
            h.set_mode(0o644);
            h.set_size(pax.len() as u64);
            h.set_mtime(e.st.st_mtime.max(0) as u64);
            let pname = b"PaxHeaders.0/entry";
            h.as_old_mut().name[..pname.len()].copy_from_slice(pname);
            h.set_cksum();
            self.w.write_all(h.as_bytes())?;
            self.w.write_all(&pax)?;
            self.pad(pax.len() as u64)?;
        }
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(e.kind);
        h.set_mode(e.mode.unwrap_or(e.st.st_mode & 0o7777));
        h.set_uid(e.st.st_uid as u64);
        h.set_gid(e.st.st_gid as u64);
        h.set_mtime(e.st.st_mtime.max(0) as u64);
        h.set_size(e.size);
        let old = h.as_old_mut();
        let n = e.name.len().min(100);
        old.name[..n].copy_from_slice(&e.name[..n]);
        if let Some(l) = e.link {
            let n = l.len().min(100);
            old.linkname[..n].copy_from_slice(&l[..n]);
        }
        h.set_cksum();
        self.w.write_all(h.as_bytes())
    }

    fn pad(&mut self, size: u64) -> io::Result<()> {
        let pad = (BLOCK - (size % BLOCK as u64) as usize) % BLOCK;
        self.w.write_all(&[0u8; BLOCK][..pad])
    }

    /// The end of the archive (two zero blocks, as Go's and GNU tar write).
    pub fn finish(&mut self) -> io::Result<()> {
        self.w.write_all(&[0u8; 2 * BLOCK])?;
        self.w.flush()
    }

    /// Emit `nodes` (children of the directory `src`, at tar path `prefix`); `dst` is the
    /// matching directory of the mirror.
    pub fn dir(
        &mut self,
        src: &OwnedFd,
        dst: Option<&OwnedFd>,
        prefix: &[u8],
        nodes: &[Node],
    ) -> Result<()> {
        for n in nodes {
            let mut path = prefix.to_vec();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(n.name.to_bytes());
            let shown = || format!("/{}", String::from_utf8_lossy(&path));
            self.node(src, dst, &path, n)
                .map_err(|e| io_err(format!("layer diff {}", shown()), e))?;
        }
        Ok(())
    }

    fn node(
        &mut self,
        src: &OwnedFd,
        dst: Option<&OwnedFd>,
        path: &[u8],
        n: &Node,
    ) -> io::Result<()> {
        let name = n.name.as_c_str();
        match &n.kind {
            Kind::Whiteout => {
                let (dir, base) = match path.iter().rposition(|&b| b == b'/') {
                    Some(i) => (&path[..=i], &path[i + 1..]),
                    None => (&b""[..], path),
                };
                let mut wname = dir.to_vec();
                wname.extend_from_slice(b".wh.");
                wname.extend_from_slice(base);
                self.header(&Entry {
                    name: &wname,
                    kind: tar::EntryType::Regular,
                    st: &n.st,
                    mode: Some(0o600),
                    size: 0,
                    link: None,
                    xattrs: &[],
                })?;
                if let Some(d) = dst {
                    // SAFETY: valid fd and C string.
                    set_c(unsafe {
                        libc::mknodat(d.as_raw_fd(), name.as_ptr(), libc::S_IFCHR, 0)
                    })?;
                    chown_at(d, name, &n.st)?;
                    set_times(d.as_raw_fd(), Some(name), &n.st, libc::AT_SYMLINK_NOFOLLOW)?;
                }
                Ok(())
            }
            Kind::Dir { opaque } => {
                let sd = match sys_openat(
                    src.as_raw_fd(),
                    name,
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                ) {
                    Ok(sd) => sd,
                    // Removed since the walk (a container committed without a pause): left
                    // out of the tar and of the layer alike.
                    Err(e) if gone(&e) => return Ok(()),
                    Err(e) => return Err(e),
                };
                let st = lstat_at(sd.as_raw_fd(), c"")?;
                if (st.st_dev, st.st_ino) != (n.st.st_dev, n.st.st_ino) {
                    return Err(io::Error::other("directory replaced during the diff"));
                }
                let xattrs = read_xattrs(sd.as_raw_fd());
                let mut dname = path.to_vec();
                dname.push(b'/');
                self.header(&Entry {
                    name: &dname,
                    kind: tar::EntryType::Directory,
                    st: &st,
                    mode: None,
                    size: 0,
                    link: None,
                    xattrs: &xattrs,
                })?;
                if *opaque {
                    let mut oname = dname.clone();
                    oname.extend_from_slice(b".wh..wh..opq");
                    self.header(&Entry {
                        name: &oname,
                        kind: tar::EntryType::Regular,
                        st: &st,
                        mode: Some(st.st_mode & 0o777),
                        size: 0,
                        link: None,
                        xattrs: &[],
                    })?;
                }
                let dd = match dst {
                    Some(d) => {
                        // SAFETY: valid fd and C string.
                        set_c(unsafe { libc::mkdirat(d.as_raw_fd(), name.as_ptr(), 0o700) })?;
                        Some(sys_openat(
                            d.as_raw_fd(),
                            name,
                            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                        )?)
                    }
                    None => None,
                };
                self.dir(&sd, dd.as_ref(), path, &n.children)
                    .map_err(|e| io::Error::other(e.to_string()))?;
                if let Some(dd) = dd {
                    let fd = dd.as_raw_fd();
                    fix_meta(fd, &st, &xattrs)?;
                    if *opaque {
                        // SAFETY: valid fd, C strings and buffer.
                        set_c(unsafe {
                            libc::fsetxattr(
                                fd,
                                c"trusted.overlay.opaque".as_ptr(),
                                b"y".as_ptr().cast(),
                                1,
                                0,
                            )
                        })?;
                    }
                    set_times(fd, None, &st, 0)?;
                }
                Ok(())
            }
            Kind::Symlink => {
                let target = match readlink_at(src.as_raw_fd(), name) {
                    Ok(t) => t,
                    Err(e) if gone(&e) => return Ok(()),
                    Err(e) => return Err(e),
                };
                self.header(&Entry {
                    name: path,
                    kind: tar::EntryType::Symlink,
                    st: &n.st,
                    mode: None,
                    size: 0,
                    link: Some(&target),
                    xattrs: &[],
                })?;
                if let Some(d) = dst {
                    let t = CString::new(target).map_err(|_| io::Error::other("NUL in link"))?;
                    // SAFETY: valid fd and C strings.
                    set_c(unsafe { libc::symlinkat(t.as_ptr(), d.as_raw_fd(), name.as_ptr()) })?;
                    chown_at(d, name, &n.st)?;
                    set_times(d.as_raw_fd(), Some(name), &n.st, libc::AT_SYMLINK_NOFOLLOW)?;
                }
                Ok(())
            }
            Kind::Fifo => {
                self.header(&Entry {
                    name: path,
                    kind: tar::EntryType::Fifo,
                    st: &n.st,
                    mode: None,
                    size: 0,
                    link: None,
                    xattrs: &[],
                })?;
                if let Some(d) = dst {
                    // SAFETY: valid fd and C string.
                    set_c(unsafe {
                        libc::mknodat(d.as_raw_fd(), name.as_ptr(), libc::S_IFIFO | 0o600, 0)
                    })?;
                    chown_at(d, name, &n.st)?;
                    // SAFETY: valid fd and C string.
                    set_c(unsafe {
                        libc::fchmodat(d.as_raw_fd(), name.as_ptr(), n.st.st_mode & 0o7777, 0)
                    })?;
                    set_times(d.as_raw_fd(), Some(name), &n.st, libc::AT_SYMLINK_NOFOLLOW)?;
                }
                Ok(())
            }
            Kind::File => self.file(src, dst, path, n),
        }
    }

    fn file(
        &mut self,
        src: &OwnedFd,
        dst: Option<&OwnedFd>,
        path: &[u8],
        n: &Node,
    ) -> io::Result<()> {
        let name = n.name.as_c_str();
        if n.st.st_nlink > 1 {
            let key = (n.st.st_dev, n.st.st_ino);
            if let Some(first) = self.links.get(&key).cloned() {
                self.header(&Entry {
                    name: path,
                    kind: tar::EntryType::Link,
                    st: &n.st,
                    mode: None,
                    size: 0,
                    link: Some(&first),
                    xattrs: &[],
                })?;
                if let (Some(d), Some(m)) = (dst, self.mirror.as_ref()) {
                    let f = CString::new(first).map_err(|_| io::Error::other("NUL in name"))?;
                    // The first name's parents are directories this pass created.
                    // SAFETY: valid fds and C strings.
                    set_c(unsafe {
                        libc::linkat(
                            m.root.as_raw_fd(),
                            f.as_ptr(),
                            d.as_raw_fd(),
                            name.as_ptr(),
                            0,
                        )
                    })?;
                }
                return Ok(());
            }
        }
        let fd = match sys_openat(src.as_raw_fd(), name, libc::O_RDONLY | libc::O_NOFOLLOW) {
            Ok(fd) => fd,
            Err(e) if gone(&e) => return Ok(()),
            Err(e) => return Err(e),
        };
        if n.st.st_nlink > 1 {
            self.links.insert((n.st.st_dev, n.st.st_ino), path.to_vec());
        }
        let st = lstat_at(fd.as_raw_fd(), c"")?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(io::Error::other("file replaced during the diff"));
        }
        let xattrs = read_xattrs(fd.as_raw_fd());
        let size = st.st_size.max(0) as u64;
        self.header(&Entry {
            name: path,
            kind: tar::EntryType::Regular,
            st: &st,
            mode: None,
            size,
            link: None,
            xattrs: &xattrs,
        })?;
        let mut out = match dst {
            Some(d) => Some(File::from(sys_openat(
                d.as_raw_fd(),
                name,
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
            )?)),
            None => None,
        };
        self.copy_data(File::from(fd), size, out.as_mut())?;
        self.data_size += size;
        if let Some(f) = out {
            fix_meta(f.as_raw_fd(), &st, &xattrs)?;
            set_times(f.as_raw_fd(), None, &st, 0)?;
        }
        Ok(())
    }

    /// Exactly `size` bytes of `f` (zeros if it shrank meanwhile), to the tar and the copy.
    fn copy_data(&mut self, mut f: File, size: u64, mut out: Option<&mut File>) -> io::Result<()> {
        if self.buf.is_empty() {
            self.buf = vec![0; COPY_BUF];
        }
        let mut left = size;
        while left > 0 {
            let want = left.min(self.buf.len() as u64) as usize;
            let k = match f.read(&mut self.buf[..want]) {
                Ok(0) => {
                    self.buf[..want].fill(0);
                    want
                }
                Ok(k) => k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.w.write_all(&self.buf[..k])?;
            if let Some(o) = out.as_mut() {
                o.write_all(&self.buf[..k])?;
            }
            left -= k as u64;
        }
        self.pad(size)
    }
}

/// An entry that disappeared between the walk and the tar (ENOENT), or was replaced by a
/// symlink or a non-directory (ELOOP, ENOTDIR, EINVAL for readlink of a non-link).
fn gone(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOENT | libc::ELOOP | libc::ENOTDIR | libc::EINVAL)
    )
}

fn readlink_at(dir: RawFd, name: &CStr) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: valid fd, C string and buffer of the given length.
    let n = unsafe { libc::readlinkat(dir, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

fn chown_at(d: &OwnedFd, name: &CStr, st: &libc::stat) -> io::Result<()> {
    // SAFETY: valid fd and C string.
    set_c(unsafe {
        libc::fchownat(
            d.as_raw_fd(),
            name.as_ptr(),
            st.st_uid,
            st.st_gid,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
}

/// Owner, then mode (chown clears setuid bits), then xattrs, on an open file or directory.
fn fix_meta(fd: RawFd, st: &libc::stat, xattrs: &[(CString, Vec<u8>)]) -> io::Result<()> {
    // SAFETY: valid fd.
    set_c(unsafe { libc::fchown(fd, st.st_uid, st.st_gid) })?;
    // SAFETY: valid fd.
    set_c(unsafe { libc::fchmod(fd, st.st_mode & 0o7777) })?;
    for (k, v) in xattrs {
        // SAFETY: valid fd, C string and buffer.
        let r = unsafe { libc::fsetxattr(fd, k.as_ptr(), v.as_ptr().cast(), v.len(), 0) };
        if r < 0 {
            tracing::warn!(xattr = ?k, error = %io::Error::last_os_error(), "cannot copy xattr");
        }
    }
    Ok(())
}

/// The entry's mtime (and atime = mtime, as after an unpack), to the second as in the tar.
fn set_times(
    fd: RawFd,
    name: Option<&CStr>,
    st: &libc::stat,
    flags: libc::c_int,
) -> io::Result<()> {
    let t = libc::timespec {
        tv_sec: st.st_mtime.max(0),
        tv_nsec: 0,
    };
    let times = [t, t];
    let r = match name {
        // SAFETY: valid fd, C string and times array.
        Some(n) => unsafe { libc::utimensat(fd, n.as_ptr(), times.as_ptr(), flags) },
        // SAFETY: valid fd and times array.
        None => unsafe { libc::futimens(fd, times.as_ptr()) },
    };
    set_c(r)
}
