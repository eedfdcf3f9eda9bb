//! Reading and writing file trees inside a container's root (`docker cp`, `diff`, `export`).
//!
//! Every path is resolved inside `root` with openat2 RESOLVE_IN_ROOT (see [`crate::safepath`]);
//! below that, the tree is walked with directory descriptors and `O_NOFOLLOW` opens of single
//! names, so a component swapped for a symlink while we work makes the operation fail or stay
//! inside the root, never reach a host file. Extraction goes through [`crate::unpack`]'s safe
//! unpacker, started on a descriptor of the resolved target directory.

use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::safepath::{open_root, openat2_in_root};
use crate::{Result, StoreError};

/// What `HEAD /containers/{id}/archive` reports (Docker's `PathStat`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathStat {
    pub name: String,
    pub size: i64,
    /// Go's `os.FileMode` bits (type bits high, permissions low).
    pub mode: u32,
    pub mtime_sec: i64,
    pub mtime_nsec: i64,
    /// For a symlink: the absolute path inside the root it resolves to.
    pub link_target: String,
}

/// Options of an extraction (`PUT /containers/{id}/archive`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ExtractOptions {
    /// Refuse to replace a directory by a non-directory or the reverse.
    pub no_overwrite_dir_non_dir: bool,
    /// Keep the archive's owners (`docker cp -a`); otherwise everything belongs to 0:0.
    pub keep_owner: bool,
}

/// One line of `docker diff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Modified,
    Added,
    Deleted,
}

// Go's os.FileMode type bits.
const GO_DIR: u32 = 1 << 31;
const GO_SYMLINK: u32 = 1 << 27;
const GO_DEVICE: u32 = 1 << 26;
const GO_PIPE: u32 = 1 << 25;
const GO_SOCKET: u32 = 1 << 24;
const GO_SETUID: u32 = 1 << 23;
const GO_SETGID: u32 = 1 << 22;
const GO_CHARDEV: u32 = 1 << 21;
const GO_STICKY: u32 = 1 << 20;

fn go_mode(st_mode: u32) -> u32 {
    let mut m = st_mode & 0o777;
    match st_mode & libc::S_IFMT {
        libc::S_IFDIR => m |= GO_DIR,
        libc::S_IFLNK => m |= GO_SYMLINK,
        libc::S_IFBLK => m |= GO_DEVICE,
        libc::S_IFCHR => m |= GO_DEVICE | GO_CHARDEV,
        libc::S_IFIFO => m |= GO_PIPE,
        libc::S_IFSOCK => m |= GO_SOCKET,
        _ => {}
    }
    if st_mode & libc::S_ISUID != 0 {
        m |= GO_SETUID;
    }
    if st_mode & libc::S_ISGID != 0 {
        m |= GO_SETGID;
    }
    if st_mode & libc::S_ISVTX != 0 {
        m |= GO_STICKY;
    }
    m
}

fn io_err(context: String, source: io::Error) -> StoreError {
    StoreError::Io { context, source }
}

fn not_found(path: &str) -> StoreError {
    StoreError::NotFound(path.to_string())
}

fn is_missing(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOENT) | Some(libc::ENOTDIR) | Some(libc::ELOOP)
    )
}

fn cstr(b: &[u8]) -> Result<CString> {
    CString::new(b).map_err(|_| StoreError::InvalidArchive("NUL byte in a path".into()))
}

fn sys_openat(dir: RawFd, name: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: valid C string; the returned fd is ours.
    let fd = unsafe { libc::openat(dir, name.as_ptr(), flags | libc::O_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn lstat_at(dir: RawFd, name: &CStr) -> io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: valid fd, C string and out pointer.
    let rc = unsafe {
        libc::fstatat(
            dir,
            name.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: filled by fstatat.
    Ok(unsafe { st.assume_init() })
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

fn fd_path(fd: &OwnedFd) -> io::Result<PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Lexically clean an absolute container path: `.`/`..` applied, no trailing slash.
fn clean(path: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            c => out.push(c.to_vec()),
        }
    }
    out
}

fn join_comps(comps: &[Vec<u8>]) -> Vec<u8> {
    let mut p = Vec::new();
    for c in comps {
        p.push(b'/');
        p.extend_from_slice(c);
    }
    if p.is_empty() {
        p.push(b'/');
    }
    p
}

/// A path inside the root split as Docker's archive code does.
struct Target {
    /// The parent directory, resolved inside the root (O_PATH).
    parent: OwnedFd,
    /// The final name in it; `None` for the root itself.
    name: Option<CString>,
    /// The parent's path inside the root (for link targets).
    parent_path: Vec<u8>,
    /// Docker's `filepath.Base(absPath)`: `.` for `dir/.`, `/` for the root.
    base: Vec<u8>,
    /// The path ended in `/.`: archive names start with `./`.
    dot: bool,
}

/// Resolve `path` inside `root`. The last component is not followed unless the path ends with
/// `/` or `/.` (Docker: a trailing separator asks for the directory a symlink points to).
fn resolve(rfd: &OwnedFd, root_real: &Path, path: &str) -> Result<Target> {
    let raw = path.as_bytes();
    let trailing_slash = raw.ends_with(b"/");
    let dot = raw == b"." || raw.ends_with(b"/.");
    let comps = clean(raw);
    let (parent_comps, name): (Vec<Vec<u8>>, Option<Vec<u8>>) = if trailing_slash || dot {
        // Follow everything, then split the real path.
        let full = join_comps(&comps);
        let fd = openat2_in_root(
            rfd.as_raw_fd(),
            Path::new(OsStr::from_bytes(&full)),
            libc::O_PATH | libc::O_DIRECTORY,
            0,
        )
        .map_err(|e| {
            if is_missing(&e) {
                not_found(path)
            } else {
                io_err(format!("resolve {path:?}"), e)
            }
        })?;
        let real = fd_path(&fd).map_err(|e| io_err(format!("resolve {path:?}"), e))?;
        let rel = real
            .strip_prefix(root_real)
            .map_err(|_| not_found(path))?
            .as_os_str()
            .as_bytes()
            .to_vec();
        let mut rc = clean(&rel);
        let last = rc.pop();
        (rc, last)
    } else {
        let mut c = comps.clone();
        let last = c.pop();
        (c, last)
    };
    let parent_path = join_comps(&parent_comps);
    let parent = openat2_in_root(
        rfd.as_raw_fd(),
        Path::new(OsStr::from_bytes(&parent_path)),
        libc::O_PATH | libc::O_DIRECTORY,
        0,
    )
    .map_err(|e| {
        if is_missing(&e) {
            not_found(path)
        } else {
            io_err(format!("resolve {path:?}"), e)
        }
    })?;
    let base = if dot {
        b".".to_vec()
    } else {
        comps.last().cloned().unwrap_or_else(|| b"/".to_vec())
    };
    Ok(Target {
        parent,
        name: name.map(|n| cstr(&n)).transpose()?,
        parent_path,
        base,
        dot,
    })
}

fn target_stat(t: &Target, path: &str) -> Result<libc::stat> {
    let name = t.name.clone().unwrap_or_else(|| c"".to_owned());
    lstat_at(t.parent.as_raw_fd(), &name).map_err(|e| {
        if is_missing(&e) {
            not_found(path)
        } else {
            io_err(format!("lstat {path:?}"), e)
        }
    })
}

/// Docker's stat of a container path (`HEAD .../archive`). `NotFound` if it does not exist.
pub fn stat_path(root: &Path, path: &str) -> Result<PathStat> {
    let rfd = open_root(root)?;
    let root_real = fd_path(&rfd).map_err(|e| io_err(format!("{root:?}"), e))?;
    let t = resolve(&rfd, &root_real, path)?;
    let st = target_stat(&t, path)?;
    let mut link_target = String::new();
    if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
        let mut full = t.parent_path.clone();
        if let Some(n) = &t.name {
            if full != b"/" {
                full.push(b'/');
            }
            full.extend_from_slice(n.as_bytes());
        }
        // Where the link leads inside the root; lexically if it dangles.
        link_target = match openat2_in_root(
            rfd.as_raw_fd(),
            Path::new(OsStr::from_bytes(&full)),
            libc::O_PATH,
            0,
        )
        .ok()
        .and_then(|fd| fd_path(&fd).ok())
        .and_then(|p| p.strip_prefix(&root_real).ok().map(Path::to_path_buf))
        {
            Some(rel) => String::from_utf8_lossy(&join_comps(&clean(rel.as_os_str().as_bytes())))
                .into_owned(),
            None => {
                let name = t.name.clone().unwrap_or_default();
                let target = readlink_at(t.parent.as_raw_fd(), &name)
                    .map_err(|e| io_err(format!("readlink {path:?}"), e))?;
                let mut joined = if target.starts_with(b"/") {
                    Vec::new()
                } else {
                    t.parent_path.clone()
                };
                joined.push(b'/');
                joined.extend_from_slice(&target);
                String::from_utf8_lossy(&join_comps(&clean(&joined))).into_owned()
            }
        };
    }
    Ok(PathStat {
        name: String::from_utf8_lossy(&t.base).into_owned(),
        size: st.st_size,
        mode: go_mode(st.st_mode),
        mtime_sec: st.st_mtime,
        mtime_nsec: st.st_mtime_nsec,
        link_target,
    })
}

/// Write a tar of `path` (Docker's naming: entries start with the path's base name, or `./` for
/// `dir/.`) to `w`.
pub fn tar_path(root: &Path, path: &str, w: &mut dyn Write) -> Result<()> {
    let rfd = open_root(root)?;
    let root_real = fd_path(&rfd).map_err(|e| io_err(format!("{root:?}"), e))?;
    let t = resolve(&rfd, &root_real, path)?;
    target_stat(&t, path)?;
    let top: Vec<u8> = if t.dot {
        b".".to_vec()
    } else if t.base == b"/" {
        Vec::new()
    } else {
        t.base.clone()
    };
    let mut tw = TarWalker::new(w);
    match &t.name {
        Some(n) => tw.entry(t.parent.as_raw_fd(), n, &top)?,
        None => {
            let d = sys_openat(
                t.parent.as_raw_fd(),
                c".",
                libc::O_RDONLY | libc::O_DIRECTORY,
            )
            .map_err(|e| io_err("open /".into(), e))?;
            if !top.is_empty() {
                let st = lstat_at(d.as_raw_fd(), c"").map_err(|e| io_err("stat /".into(), e))?;
                tw.header_only(&st, &top, tar::EntryType::Directory)?;
            }
            tw.children(&d, &top)?;
        }
    }
    tw.finish()
}

/// Tar of the whole tree under `root`, names relative to it (`docker export`).
pub fn tar_tree(root: &Path, w: &mut dyn Write) -> Result<()> {
    let rfd = open_root(root)?;
    let d = sys_openat(rfd.as_raw_fd(), c".", libc::O_RDONLY | libc::O_DIRECTORY)
        .map_err(|e| io_err(format!("open {root:?}"), e))?;
    let mut tw = TarWalker::new(w);
    tw.children(&d, b"")?;
    tw.finish()
}

struct TarWalker<'a> {
    b: tar::Builder<&'a mut dyn Write>,
    /// (dev, ino) of files with several links → the first name written.
    links: HashMap<(u64, u64), Vec<u8>>,
    /// The copy buffer of file data ([`COPY_BUF`]), allocated at the first file.
    buf: Vec<u8>,
}

/// Size of the buffer file data is read through.
const COPY_BUF: usize = 256 * 1024;

impl<'a> TarWalker<'a> {
    fn new(w: &'a mut dyn Write) -> Self {
        let mut b = tar::Builder::new(w);
        b.mode(tar::HeaderMode::Complete);
        b.follow_symlinks(false);
        TarWalker {
            b,
            links: HashMap::new(),
            buf: Vec::new(),
        }
    }

    fn finish(self) -> Result<()> {
        let mut b = self.b;
        b.finish().map_err(|e| io_err("write tar".into(), e))
    }

    fn header(st: &libc::stat, kind: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(st.st_mode & 0o7777);
        h.set_uid(st.st_uid as u64);
        h.set_gid(st.st_gid as u64);
        h.set_mtime(st.st_mtime.max(0) as u64);
        h.set_size(0);
        h
    }

    fn header_only(&mut self, st: &libc::stat, name: &[u8], kind: tar::EntryType) -> Result<()> {
        let mut h = Self::header(st, kind);
        let mut n = name.to_vec();
        if kind == tar::EntryType::Directory && !n.ends_with(b"/") {
            n.push(b'/');
        }
        append_raw(&mut self.b, &mut h, &n, None, io::empty())
            .map_err(|e| io_err(format!("tar {:?}", String::from_utf8_lossy(name)), e))
    }

    /// Write `name` in `dir` (not followed) as `tname`, recursing into directories.
    fn entry(&mut self, dir: RawFd, name: &CStr, tname: &[u8]) -> Result<()> {
        let shown = || String::from_utf8_lossy(tname).into_owned();
        let st = match lstat_at(dir, name) {
            Ok(st) => st,
            // Removed while we walk: skip, as tar does.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
            Err(e) => return Err(io_err(format!("lstat {:?}", shown()), e)),
        };
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => {
                let d = match sys_openat(
                    dir,
                    name,
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                ) {
                    Ok(d) => d,
                    Err(e) if is_missing(&e) => return Ok(()),
                    Err(e) => return Err(io_err(format!("open {:?}", shown()), e)),
                };
                let st = lstat_at(d.as_raw_fd(), c"")
                    .map_err(|e| io_err(format!("stat {:?}", shown()), e))?;
                self.header_only(&st, tname, tar::EntryType::Directory)?;
                self.children(&d, tname)
            }
            libc::S_IFLNK => {
                let target = match readlink_at(dir, name) {
                    Ok(t) => t,
                    Err(e) if is_missing(&e) || e.raw_os_error() == Some(libc::EINVAL) => {
                        return Ok(())
                    }
                    Err(e) => return Err(io_err(format!("readlink {:?}", shown()), e)),
                };
                let mut h = Self::header(&st, tar::EntryType::Symlink);
                append_raw(&mut self.b, &mut h, tname, Some(&target), io::empty())
                    .map_err(|e| io_err(format!("tar {:?}", shown()), e))
            }
            libc::S_IFREG => {
                if st.st_nlink > 1 {
                    let key = (st.st_dev, st.st_ino);
                    if let Some(first) = self.links.get(&key) {
                        let first = first.clone();
                        let mut h = Self::header(&st, tar::EntryType::Link);
                        return append_raw(&mut self.b, &mut h, tname, Some(&first), io::empty())
                            .map_err(|e| io_err(format!("tar {:?}", shown()), e));
                    }
                    self.links.insert(key, tname.to_vec());
                }
                let fd = match sys_openat(dir, name, libc::O_RDONLY | libc::O_NOFOLLOW) {
                    Ok(fd) => fd,
                    Err(e) if is_missing(&e) => return Ok(()),
                    Err(e) => return Err(io_err(format!("open {:?}", shown()), e)),
                };
                let st = lstat_at(fd.as_raw_fd(), c"")
                    .map_err(|e| io_err(format!("stat {:?}", shown()), e))?;
                if st.st_mode & libc::S_IFMT != libc::S_IFREG {
                    return Ok(());
                }
                let size = st.st_size.max(0) as u64;
                let mut h = Self::header(&st, tar::EntryType::Regular);
                h.set_size(size);
                // The header alone (no data read: tar's copy goes 8 KiB at a time), then the
                // data through our large buffer, then the padding to 512 bytes.
                append_raw(&mut self.b, &mut h, tname, None, io::empty())
                    .and_then(|_| self.file_data(File::from(fd), size))
                    .map_err(|e| io_err(format!("tar {:?}", shown()), e))
            }
            libc::S_IFIFO => self.header_only(&st, tname, tar::EntryType::Fifo),
            libc::S_IFCHR | libc::S_IFBLK => {
                let kind = if st.st_mode & libc::S_IFMT == libc::S_IFCHR {
                    tar::EntryType::Char
                } else {
                    tar::EntryType::Block
                };
                let mut h = Self::header(&st, kind);
                let _ = h.set_device_major(libc::major(st.st_rdev));
                let _ = h.set_device_minor(libc::minor(st.st_rdev));
                append_raw(&mut self.b, &mut h, tname, None, io::empty())
                    .map_err(|e| io_err(format!("tar {:?}", shown()), e))
            }
            // Sockets are not archived (as Docker).
            _ => Ok(()),
        }
    }

    /// Exactly `size` bytes of `f` (zeros if it shrank meanwhile) and the block padding.
    fn file_data(&mut self, mut f: File, size: u64) -> io::Result<()> {
        if self.buf.is_empty() {
            self.buf = vec![0; COPY_BUF];
        }
        let w = self.b.get_mut();
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
            w.write_all(&self.buf[..k])?;
            left -= k as u64;
        }
        let pad = (512 - (size % 512) as usize) % 512;
        w.write_all(&[0u8; 512][..pad])
    }

    fn children(&mut self, d: &OwnedFd, prefix: &[u8]) -> Result<()> {
        for n in list_dir(d).map_err(|e| io_err("read dir".into(), e))? {
            let mut tname = prefix.to_vec();
            if !tname.is_empty() && !tname.ends_with(b"/") {
                tname.push(b'/');
            }
            tname.extend_from_slice(n.as_bytes());
            self.entry(d.as_raw_fd(), &n, &tname)?;
        }
        Ok(())
    }
}

/// Append an entry with its name (and link name) exactly as given: the tar crate's own path
/// setters drop a leading `./` (Docker's `dir/.` naming) and refuse `..` and absolute names
/// (which an upload may hold; the unpacker judges them). Long names get GNU long-name entries.
fn append_raw<W: Write>(
    b: &mut tar::Builder<W>,
    h: &mut tar::Header,
    name: &[u8],
    link: Option<&[u8]>,
    data: impl Read,
) -> io::Result<()> {
    fn long(b: &mut tar::Builder<impl Write>, kind: tar::EntryType, v: &[u8]) -> io::Result<()> {
        let mut lh = tar::Header::new_gnu();
        lh.set_entry_type(kind);
        lh.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        lh.set_mode(0o644);
        lh.set_size(v.len() as u64 + 1);
        lh.set_cksum();
        b.append(&lh, v.chain(&[0u8][..]))
    }
    if name.len() > 100 {
        long(b, tar::EntryType::GNULongName, name)?;
    }
    if let Some(l) = link {
        if l.len() > 100 {
            long(b, tar::EntryType::GNULongLink, l)?;
        }
    }
    let old = h.as_old_mut();
    old.name = [0; 100];
    let n = name.len().min(100);
    old.name[..n].copy_from_slice(&name[..n]);
    old.linkname = [0; 100];
    if let Some(l) = link {
        let n = l.len().min(100);
        old.linkname[..n].copy_from_slice(&l[..n]);
    }
    h.set_cksum();
    b.append(h, data)
}

/// Names in a directory (sorted, without `.` and `..`).
fn list_dir(d: &OwnedFd) -> io::Result<Vec<CString>> {
    let dup = sys_openat(d.as_raw_fd(), c".", libc::O_RDONLY | libc::O_DIRECTORY)?;
    let mut dir = nix::dir::Dir::from_fd(dup.into_raw_fd()).map_err(io::Error::from)?;
    let mut out = Vec::new();
    for ent in dir.iter() {
        let ent = ent.map_err(io::Error::from)?;
        let n = ent.file_name();
        if n.to_bytes() != b"." && n.to_bytes() != b".." {
            out.push(n.to_owned());
        }
    }
    out.sort();
    Ok(out)
}

/// Extract the tar stream `r` into the directory `dir` (resolved inside `root`, symlinks
/// followed inside it). `NotFound` if it does not exist, `InvalidArchive` if it is not a directory.
pub fn extract(root: &Path, dir: &str, r: &mut dyn Read, opts: ExtractOptions) -> Result<()> {
    let rfd = open_root(root)?;
    let tfd = openat2_in_root(
        rfd.as_raw_fd(),
        Path::new(dir),
        libc::O_PATH | libc::O_DIRECTORY,
        0,
    )
    .map_err(|e| match e.raw_os_error() {
        Some(libc::ENOTDIR) => {
            StoreError::InvalidArchive("extraction point is not a directory".into())
        }
        _ if is_missing(&e) => not_found(dir),
        _ => io_err(format!("open {dir:?}"), e),
    })?;
    // Straight into the safe unpacker, in this thread: owners reset unless kept, whiteout names
    // refused, no xattrs from the client's archive, no fsync (Docker does none for a copy).
    let uopts = crate::unpack::UnpackOptions {
        reset_owner: !opts.keep_owner,
        refuse_whiteouts: true,
        no_overwrite_dir_non_dir: opts.no_overwrite_dir_non_dir,
        xattrs: false,
    };
    crate::unpack::unpack_into(r, tfd.as_fd(), uopts).map(|_| ())
}

/// `docker diff`: walk an overlay upper directory against its lower directories (top first).
/// Whiteouts are deletions; a directory is reported changed when something below it is reported
/// (or it is opaque); paths in `ignore` (mount points the runtime creates) are left out.
pub fn overlay_changes(
    upper: &Path,
    lowers: &[PathBuf],
    ignore: &[&str],
) -> Result<Vec<(String, ChangeKind)>> {
    let ufd = open_root(upper)?;
    let d = sys_openat(ufd.as_raw_fd(), c".", libc::O_RDONLY | libc::O_DIRECTORY)
        .map_err(|e| io_err(format!("open {upper:?}"), e))?;
    let mut out = Vec::new();
    changes_in(&d, b"", lowers, ignore, false, &mut out)?;
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn in_lowers(lowers: &[PathBuf], path: &[u8]) -> bool {
    let p = Path::new(OsStr::from_bytes(path));
    lowers.iter().any(|l| {
        let Ok(rfd) = open_root(l) else { return false };
        let comps = clean(path);
        let Some((name, parents)) = comps.split_last() else {
            return true;
        };
        let ppath = join_comps(parents);
        let _ = p;
        let Ok(pfd) = openat2_in_root(
            rfd.as_raw_fd(),
            Path::new(OsStr::from_bytes(&ppath)),
            libc::O_PATH | libc::O_DIRECTORY,
            0,
        ) else {
            return false;
        };
        let Ok(cname) = CString::new(name.clone()) else {
            return false;
        };
        match lstat_at(pfd.as_raw_fd(), &cname) {
            // A whiteout in a lower layer hides the path.
            Ok(st) => !(st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == 0),
            Err(_) => false,
        }
    })
}

fn is_opaque(fd: &OwnedFd) -> bool {
    let mut buf = [0u8; 4];
    // SAFETY: valid fd, C string and buffer.
    let n = unsafe {
        libc::fgetxattr(
            fd.as_raw_fd(),
            c"trusted.overlay.opaque".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    n == 1 && buf[0] == b'y'
}

/// Returns whether anything was reported below `d`.
fn changes_in(
    d: &OwnedFd,
    prefix: &[u8],
    lowers: &[PathBuf],
    ignore: &[&str],
    added: bool,
    out: &mut Vec<(String, ChangeKind)>,
) -> Result<bool> {
    let mut any = false;
    for n in list_dir(d).map_err(|e| io_err("read upper dir".into(), e))? {
        let mut path = prefix.to_vec();
        path.push(b'/');
        path.extend_from_slice(n.as_bytes());
        let shown = String::from_utf8_lossy(&path).into_owned();
        if ignore.iter().any(|i| *i == shown) {
            continue;
        }
        let Ok(st) = lstat_at(d.as_raw_fd(), &n) else {
            continue;
        };
        let fmt = st.st_mode & libc::S_IFMT;
        if fmt == libc::S_IFCHR && st.st_rdev == 0 {
            out.push((shown, ChangeKind::Deleted));
            any = true;
            continue;
        }
        let child_added = added || !in_lowers(lowers, &path);
        if fmt == libc::S_IFDIR {
            let Ok(cd) = sys_openat(
                d.as_raw_fd(),
                &n,
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            ) else {
                continue;
            };
            let opaque = !child_added && is_opaque(&cd);
            let idx = out.len();
            let below = changes_in(&cd, &path, lowers, ignore, child_added, out)?;
            if child_added {
                out.insert(idx, (shown, ChangeKind::Added));
                any = true;
            } else if below || opaque {
                out.insert(idx, (shown, ChangeKind::Modified));
                any = true;
            }
        } else {
            let kind = if child_added {
                ChangeKind::Added
            } else {
                ChangeKind::Modified
            };
            out.push((shown, kind));
            any = true;
        }
    }
    Ok(any)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn names(tar_bytes: &[u8]) -> Vec<String> {
        let mut a = tar::Archive::new(tar_bytes);
        a.entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn naming_follows_docker() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        fs::create_dir_all(root.join("dir/sub")).unwrap();
        fs::write(root.join("dir/sub/f"), b"x").unwrap();
        symlink("/dir", root.join("link")).unwrap();
        let mut out = Vec::new();
        tar_path(root, "/dir", &mut out).unwrap();
        assert_eq!(names(&out), ["dir/", "dir/sub/", "dir/sub/f"]);
        out.clear();
        tar_path(root, "/dir/.", &mut out).unwrap();
        assert_eq!(names(&out), ["./", "./sub/", "./sub/f"]);
        out.clear();
        tar_path(root, "/link", &mut out).unwrap();
        assert_eq!(names(&out), ["link"]);
        out.clear();
        tar_path(root, "/link/", &mut out).unwrap();
        assert_eq!(names(&out), ["link/", "link/sub/", "link/sub/f"]);
        let st = stat_path(root, "/link").unwrap();
        assert_eq!(st.link_target, "/dir");
        assert_eq!(st.mode & GO_SYMLINK, GO_SYMLINK);
        let st = stat_path(root, "/dir/sub/f").unwrap();
        assert_eq!((st.name.as_str(), st.size), ("f", 1));
        assert!(matches!(
            stat_path(root, "/nope"),
            Err(StoreError::NotFound(_))
        ));
    }

    #[test]
    fn symlinks_to_host_stay_inside() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        let host = d.path().join("host");
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(&host).unwrap();
        fs::write(host.join("secret"), b"host").unwrap();
        symlink(&host, root.join("esc")).unwrap();
        symlink("../../../..", root.join("up")).unwrap();
        assert!(stat_path(&root, "/esc/secret").is_err());
        let mut out = Vec::new();
        assert!(tar_path(&root, "/up/host/secret", &mut out).is_err());
        let mut t = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        t.append_data(&mut h, "f", &b"new"[..]).unwrap();
        let data = t.into_inner().unwrap();
        // Extracting "through" the escaping link: resolved inside the root, where it is missing.
        assert!(extract(&root, "/esc", &mut &data[..], ExtractOptions::default()).is_err());
        extract(&root, "/up", &mut &data[..], ExtractOptions::default()).unwrap();
        assert_eq!(fs::read(root.join("f")).unwrap(), b"new");
        assert_eq!(fs::read(host.join("secret")).unwrap(), b"host");
        assert_eq!(fs::read_dir(&host).unwrap().count(), 1);
    }

    #[test]
    fn upper_changes() {
        let d = tempfile::tempdir().unwrap();
        let lower = d.path().join("lower");
        let upper = d.path().join("upper");
        fs::create_dir_all(lower.join("etc")).unwrap();
        fs::create_dir_all(lower.join("tmp")).unwrap();
        fs::write(lower.join("etc/passwd"), b"a").unwrap();
        fs::create_dir_all(upper.join("etc")).unwrap();
        fs::create_dir_all(upper.join("new/deep")).unwrap();
        fs::create_dir_all(upper.join("tmp")).unwrap();
        fs::write(upper.join("etc/passwd"), b"b").unwrap();
        fs::write(upper.join("etc/hosts"), b"").unwrap();
        let c = changes_fixture(&upper, &lower);
        assert_eq!(
            c,
            vec![
                ("/etc".to_string(), ChangeKind::Modified),
                ("/etc/passwd".to_string(), ChangeKind::Modified),
                ("/new".to_string(), ChangeKind::Added),
                ("/new/deep".to_string(), ChangeKind::Added),
            ]
        );
    }

    fn changes_fixture(upper: &Path, lower: &Path) -> Vec<(String, ChangeKind)> {
        overlay_changes(upper, &[lower.to_path_buf()], &["/etc/hosts"]).unwrap()
    }
}
