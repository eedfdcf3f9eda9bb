//! Applying an untrusted layer tarball to a directory.
//!
//! Guarantees, whatever the archive holds: nothing is created, changed or removed outside `target`.
//! - absolute paths and `..` components: leading `/` is stripped (as Docker does); a path that would
//!   climb out of the target is rejected with `UnsafeEntry`;
//! - no entry is written through a symlink (parents are resolved inside the target: a symlink
//!   component that would leave the target is rejected);
//! - hard links must point to a path inside the target (and not through a symlink);
//! - whiteouts (`.wh.name`, `.wh..wh..opq`) are converted to overlayfs whiteouts (0/0 char device,
//!   `trusted.overlay.opaque=y` xattr); a whiteout whose name escapes is rejected;
//! - block/char device nodes and FIFOs in the archive are skipped (berth does not create device nodes
//!   from images: /dev comes from the runtime), and counted in `UnpackStats::skipped`;
//! - setuid/setgid bits, owners, modes and mtimes are kept as in the archive.
//!
//! How: every path is normalised lexically first, then resolved component by component from a file
//! descriptor of `target` with `O_NOFOLLOW`; every change is made with `*at` calls relative to the
//! parent directory's descriptor. A parent component that is a symlink (whatever it points to) makes
//! the entry `UnsafeEntry`: tar writers never emit entries below a symlink, only hostile ones do.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::{Result, StoreError};

#[derive(Debug, Default, Clone)]
pub struct UnpackStats {
    /// Sum of regular file sizes written.
    pub size: u64,
    pub entries: u64,
    pub skipped: u64,
}

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
const WHITEOUT_OPAQUE: &[u8] = b".wh..wh..opq";
const OVERLAY_OPAQUE_XATTR: &CStr = c"trusted.overlay.opaque";

/// How an archive is applied. [`UnpackOptions::LAYER`] for image layers; `docker cp` resets
/// owners, refuses whiteout names and may refuse to replace a directory by a non-directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackOptions {
    /// Every entry is owned by 0:0 whatever the archive says.
    pub reset_owner: bool,
    /// A `.wh.*` name is an `UnsafeEntry` instead of an overlayfs whiteout.
    pub refuse_whiteouts: bool,
    /// Refuse to replace a directory by a non-directory or the reverse (`InvalidArchive`).
    pub no_overwrite_dir_non_dir: bool,
    /// Apply `SCHILY.xattr.*` pax records.
    pub xattrs: bool,
}

impl UnpackOptions {
    /// Image layers: owners, xattrs and whiteouts as in the archive.
    pub const LAYER: UnpackOptions = UnpackOptions {
        reset_owner: false,
        refuse_whiteouts: false,
        no_overwrite_dir_non_dir: false,
        xattrs: true,
    };
}

/// Size of the buffer regular files are copied through.
const COPY_BUF: usize = 256 * 1024;

/// Unpack the (already decompressed) tar stream `r` into the existing directory `target`.
pub fn unpack_layer(r: &mut dyn Read, target: &Path) -> Result<UnpackStats> {
    let tpath = cstring(target.as_os_str().as_bytes(), "target")?;
    let root = sys_open(
        libc::AT_FDCWD,
        &tpath,
        libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        0,
    )
    .map_err(|e| io_err(format!("open target {target:?}"), e))?;
    unpack_fd(r, root, UnpackOptions::LAYER)
}

/// Unpack the tar stream `r` into the directory open as `dir` (any descriptor of it, O_PATH is
/// enough), with `opts`. The same guarantees as [`unpack_layer`], relative to `dir`.
pub fn unpack_into(
    r: &mut dyn Read,
    dir: BorrowedFd<'_>,
    opts: UnpackOptions,
) -> Result<UnpackStats> {
    let root = sys_open(
        dir.as_raw_fd(),
        c".",
        libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        0,
    )
    .map_err(|e| io_err("open target".into(), e))?;
    unpack_fd(r, root, opts)
}

fn unpack_fd(r: &mut dyn Read, root: OwnedFd, opts: UnpackOptions) -> Result<UnpackStats> {
    let mut u = Unpacker {
        root,
        opts,
        stats: UnpackStats::default(),
        dir_times: Vec::new(),
        parent: None,
        buf: Vec::new(),
    };
    let mut archive = tar::Archive::new(r);
    let entries = archive
        .entries()
        .map_err(|e| StoreError::InvalidArchive(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| StoreError::InvalidArchive(e.to_string()))?;
        u.entry(&mut entry)?;
    }
    u.parent = None;
    u.finish_dir_times();
    Ok(u.stats)
}

struct Unpacker {
    root: OwnedFd,
    opts: UnpackOptions,
    stats: UnpackStats,
    /// Directory mtimes, set after all entries (writing into a dir changes its mtime).
    dir_times: Vec<(Vec<Vec<u8>>, i64)>,
    /// The parent directory of the last entry (components below the root, O_PATH descriptor,
    /// checked to be a directory when opened): consecutive entries of one directory reuse it
    /// instead of walking again. Dropped before an entry that could replace it or an ancestor.
    parent: Option<(Vec<Vec<u8>>, OwnedFd)>,
    /// The copy buffer of regular files ([`COPY_BUF`]), allocated at the first file.
    buf: Vec<u8>,
}

/// Owner, mode and mtime of an entry as in its header.
struct Meta {
    uid: libc::uid_t,
    gid: libc::gid_t,
    mode: libc::mode_t,
    mtime: i64,
    xattrs: Vec<(CString, Vec<u8>)>,
}

impl Unpacker {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let raw_path = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw_path).into_owned();
        let comps = normalize(&raw_path, &shown)?;
        let kind = entry.header().entry_type();
        self.stats.entries += 1;

        use tar::EntryType as T;
        match kind {
            T::Char | T::Block | T::Fifo => {
                self.stats.skipped += 1;
                return Ok(());
            }
            T::Regular | T::Continuous | T::GNUSparse | T::Directory | T::Symlink | T::Link => {}
            // Global headers, volume labels and other metadata-only entries.
            _ => return Ok(()),
        }
        let Some((name, parents)) = comps.split_last() else {
            // The root itself (`./`): keep the target's own attributes.
            if kind == T::Directory {
                return Ok(());
            }
            return Err(unsafe_entry(&shown, "entry has an empty path"));
        };

        if name.starts_with(WHITEOUT_PREFIX) {
            if self.opts.refuse_whiteouts {
                return Err(unsafe_entry(
                    &shown,
                    "whiteout names cannot be copied into a container",
                ));
            }
            self.parent = None;
            return self.whiteout(entry, name, parents, &shown);
        }
        // This entry may replace the cached parent directory or one of its ancestors.
        if let Some((cached, _)) = &self.parent {
            if cached.starts_with(&comps) {
                self.parent = None;
            }
        }

        let mut meta = read_meta(entry, &shown, self.opts.xattrs)?;
        if self.opts.reset_owner {
            (meta.uid, meta.gid) = (0, 0);
        }
        let pfd = self.parent_dir(parents, &shown)?;
        let cname = cstring(name, &shown)?;
        let existing =
            lstat_at(pfd.as_raw_fd(), &cname).map_err(|e| io_err(format!("lstat {shown:?}"), e))?;
        if self.opts.no_overwrite_dir_non_dir {
            if let Some(st) = &existing {
                let at = String::from_utf8_lossy(&join_comps(&comps)).into_owned();
                if is_dir(st) && kind != T::Directory {
                    return Err(StoreError::InvalidArchive(format!(
                        "cannot overwrite directory \"{at}\" with non-directory \"{shown}\""
                    )));
                }
                if !is_dir(st) && kind == T::Directory {
                    return Err(StoreError::InvalidArchive(format!(
                        "cannot overwrite non-directory \"{at}\" with directory \"{shown}\""
                    )));
                }
            }
        }

        match kind {
            T::Directory => {
                match existing {
                    Some(st) if is_dir(&st) => {}
                    Some(st) => {
                        remove_at(pfd.as_raw_fd(), &cname, &st, &shown)?;
                        mkdir_at(pfd.as_raw_fd(), &cname, &shown)?;
                    }
                    None => mkdir_at(pfd.as_raw_fd(), &cname, &shown)?,
                }
                let dfd = sys_open(
                    pfd.as_raw_fd(),
                    &cname,
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                    0,
                )
                .map_err(|e| io_err(format!("open dir {shown:?}"), e))?;
                apply_fd_meta(&dfd, &meta, &shown)?;
                self.dir_times.push((comps.clone(), meta.mtime));
            }
            T::Regular | T::Continuous | T::GNUSparse => {
                if let Some(st) = existing {
                    remove_at(pfd.as_raw_fd(), &cname, &st, &shown)?;
                }
                let fd = sys_open(
                    pfd.as_raw_fd(),
                    &cname,
                    libc::O_WRONLY
                        | libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_NOFOLLOW
                        | libc::O_CLOEXEC,
                    0o600,
                )
                .map_err(|e| io_err(format!("create {shown:?}"), e))?;
                let mut f = File::from(fd);
                let n = self
                    .copy_data(entry, &mut f)
                    .map_err(|e| io_err(format!("write {shown:?}"), e))?;
                self.stats.size += n;
                let fd = OwnedFd::from(f);
                apply_fd_meta(&fd, &meta, &shown)?;
                let ts = times(meta.mtime);
                // SAFETY: valid fd and a 2-element timespec array.
                if unsafe { libc::futimens(fd.as_raw_fd(), ts.as_ptr()) } != 0 {
                    return Err(io_err(
                        format!("set mtime of {shown:?}"),
                        io::Error::last_os_error(),
                    ));
                }
            }
            T::Symlink => {
                let link = entry.link_name_bytes().ok_or_else(|| {
                    StoreError::InvalidArchive(format!("symlink {shown:?} has no target"))
                })?;
                let clink = cstring(&link, &shown)?;
                if let Some(st) = existing {
                    remove_at(pfd.as_raw_fd(), &cname, &st, &shown)?;
                }
                // SAFETY: valid C strings and fd.
                if unsafe { libc::symlinkat(clink.as_ptr(), pfd.as_raw_fd(), cname.as_ptr()) } != 0
                {
                    return Err(io_err(
                        format!("symlink {shown:?}"),
                        io::Error::last_os_error(),
                    ));
                }
                chown_times_nofollow(pfd.as_raw_fd(), &cname, &meta, &shown)?;
            }
            T::Link => {
                let link = entry
                    .link_name_bytes()
                    .ok_or_else(|| {
                        StoreError::InvalidArchive(format!("hardlink {shown:?} has no target"))
                    })?
                    .into_owned();
                let lshown = String::from_utf8_lossy(&link).into_owned();
                let lcomps = normalize(&link, &shown)?;
                if lcomps == comps {
                    return Ok(()); // a link to itself: nothing to do
                }
                let Some((lname, lparents)) = lcomps.split_last() else {
                    return Err(unsafe_entry(&shown, "hardlink to the root"));
                };
                let lpfd = self.walk(lparents, false, &shown)?;
                let clname = cstring(lname, &shown)?;
                match lstat_at(lpfd.as_raw_fd(), &clname) {
                    Ok(Some(st)) if is_dir(&st) => {
                        return Err(unsafe_entry(&shown, "hardlink to a directory"));
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        return Err(StoreError::InvalidArchive(format!(
                            "hardlink {shown:?}: target {lshown:?} not found"
                        )))
                    }
                    Err(e) => return Err(io_err(format!("lstat {lshown:?}"), e)),
                }
                if let Some(st) = existing {
                    remove_at(pfd.as_raw_fd(), &cname, &st, &shown)?;
                }
                // flags 0: a symlink target is linked itself, never followed.
                // SAFETY: valid fds and C strings.
                let rc = unsafe {
                    libc::linkat(
                        lpfd.as_raw_fd(),
                        clname.as_ptr(),
                        pfd.as_raw_fd(),
                        cname.as_ptr(),
                        0,
                    )
                };
                if rc != 0 {
                    return Err(io_err(
                        format!("hardlink {shown:?}"),
                        io::Error::last_os_error(),
                    ));
                }
            }
            _ => {}
        }
        self.parent = Some((parents.to_vec(), pfd));
        Ok(())
    }

    /// The parent directory `comps` of an entry: the cached one if it is the same, else walked
    /// (and created) from the root. The caller puts it back in the cache when done.
    fn parent_dir(&mut self, comps: &[Vec<u8>], shown: &str) -> Result<OwnedFd> {
        match self.parent.take() {
            Some((cached, fd)) if cached == comps => Ok(fd),
            _ => self.walk(comps, true, shown),
        }
    }

    /// Copy an entry's data to `f` through the large buffer, filled before each write (a
    /// streamed upload reads back in small pieces); the bytes copied.
    fn copy_data(&mut self, r: &mut dyn Read, f: &mut File) -> io::Result<u64> {
        if self.buf.is_empty() {
            self.buf = vec![0; COPY_BUF];
        }
        let mut n = 0u64;
        loop {
            let mut filled = 0;
            while filled < self.buf.len() {
                match r.read(&mut self.buf[filled..]) {
                    Ok(0) => break,
                    Ok(k) => filled += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if filled == 0 {
                return Ok(n);
            }
            f.write_all(&self.buf[..filled])?;
            n += filled as u64;
            if filled < self.buf.len() {
                return Ok(n);
            }
        }
    }

    fn whiteout<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        name: &[u8],
        parents: &[Vec<u8>],
        shown: &str,
    ) -> Result<()> {
        if name == WHITEOUT_OPAQUE {
            let pfd = self.walk(parents, true, shown)?;
            let dfd = sys_open(
                pfd.as_raw_fd(),
                c".",
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
                0,
            )
            .map_err(|e| io_err(format!("open {shown:?}"), e))?;
            return set_xattr(&dfd, OVERLAY_OPAQUE_XATTR, b"y")
                .map_err(|e| io_err(format!("set opaque xattr for {shown:?}"), e));
        }
        if name.starts_with(WHITEOUT_META_PREFIX) {
            // aufs bookkeeping (.wh..wh.plnk etc.): not part of the filesystem.
            return Ok(());
        }
        let hidden = &name[WHITEOUT_PREFIX.len()..];
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(unsafe_entry(shown, "whiteout with an invalid name"));
        }
        let meta = read_meta(entry, shown, true)?;
        let pfd = self.walk(parents, true, shown)?;
        let cname = cstring(hidden, shown)?;
        if let Some(st) =
            lstat_at(pfd.as_raw_fd(), &cname).map_err(|e| io_err(format!("lstat {shown:?}"), e))?
        {
            remove_at(pfd.as_raw_fd(), &cname, &st, shown)?;
        }
        // SAFETY: valid fd and C string; a 0/0 char device is overlayfs's whiteout.
        if unsafe { libc::mknodat(pfd.as_raw_fd(), cname.as_ptr(), libc::S_IFCHR, 0) } != 0 {
            return Err(io_err(
                format!("create whiteout {shown:?}"),
                io::Error::last_os_error(),
            ));
        }
        chown_times_nofollow(pfd.as_raw_fd(), &cname, &meta, shown)
    }

    /// Open the directory `comps` below the root, never following a symlink. Missing components are
    /// created (mode 0755) when `create`.
    fn walk(&self, comps: &[Vec<u8>], create: bool, shown: &str) -> Result<OwnedFd> {
        let mut cur = sys_open(
            self.root.as_raw_fd(),
            c".",
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            0,
        )
        .map_err(|e| io_err("reopen target".into(), e))?;
        for c in comps {
            let cc = cstring(c, shown)?;
            let flags = libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC;
            let fd = match sys_open(cur.as_raw_fd(), &cc, flags, 0) {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) && create => {
                    mkdir_at(cur.as_raw_fd(), &cc, shown)?;
                    let fd = sys_open(cur.as_raw_fd(), &cc, flags, 0)
                        .map_err(|e| io_err(format!("open parent of {shown:?}"), e))?;
                    // SAFETY: valid fd; fchmod would not work on O_PATH, use the parent.
                    unsafe { libc::fchmodat(cur.as_raw_fd(), cc.as_ptr(), 0o755, 0) };
                    fd
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    return Err(StoreError::InvalidArchive(format!(
                        "{shown:?}: parent directory not found"
                    )))
                }
                Err(e) => return Err(io_err(format!("open parent of {shown:?}"), e)),
            };
            let st = fstat(&fd).map_err(|e| io_err(format!("stat parent of {shown:?}"), e))?;
            if (st.st_mode & libc::S_IFMT) == libc::S_IFLNK {
                return Err(unsafe_entry(shown, "a parent component is a symlink"));
            }
            if !is_dir(&st) {
                return Err(StoreError::InvalidArchive(format!(
                    "{shown:?}: a parent component is not a directory"
                )));
            }
            cur = fd;
        }
        Ok(cur)
    }

    fn finish_dir_times(&self) {
        for (comps, mtime) in &self.dir_times {
            let Some((name, parents)) = comps.split_last() else {
                continue;
            };
            let Ok(pfd) = self.walk(parents, false, "") else {
                continue;
            };
            let Ok(cname) = CString::new(name.clone()) else {
                continue;
            };
            let ts = times(*mtime);
            // SAFETY: valid fd, C string and timespec array. NOFOLLOW: a later entry may have
            // replaced the dir with a symlink; then only the link's own time changes.
            unsafe {
                libc::utimensat(
                    pfd.as_raw_fd(),
                    cname.as_ptr(),
                    ts.as_ptr(),
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            };
        }
    }
}

/// Split a tar path into clean components: leading `/` and `.` dropped, `..` applied lexically.
/// Climbing above the root is an `UnsafeEntry`.
fn normalize(p: &[u8], shown: &str) -> Result<Vec<Vec<u8>>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for c in p.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                if out.pop().is_none() {
                    return Err(unsafe_entry(shown, "path climbs out of the target"));
                }
            }
            c => {
                if c.contains(&0) {
                    return Err(unsafe_entry(shown, "NUL byte in path"));
                }
                out.push(c.to_vec());
            }
        }
    }
    Ok(out)
}

fn read_meta<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    shown: &str,
    with_xattrs: bool,
) -> Result<Meta> {
    let bad = |what: &str, e: io::Error| {
        StoreError::InvalidArchive(format!("{shown:?}: bad {what}: {e}"))
    };
    let h = entry.header();
    // Like Go's archive/tar, an empty (unparsable) owner or time field counts as 0.
    let uid = h.uid().unwrap_or(0);
    let gid = h.gid().unwrap_or(0);
    let mtime = h.mtime().unwrap_or(0);
    let mode = h.mode().map_err(|e| bad("mode", e))?;
    let uid = u32::try_from(uid)
        .map_err(|_| StoreError::InvalidArchive(format!("{shown:?}: uid too large")))?;
    let gid = u32::try_from(gid)
        .map_err(|_| StoreError::InvalidArchive(format!("{shown:?}: gid too large")))?;
    let mut xattrs = Vec::new();
    // Not applied: the records are not even parsed.
    let exts = if with_xattrs {
        entry.pax_extensions().map_err(|e| bad("pax header", e))?
    } else {
        None
    };
    if let Some(exts) = exts {
        for ext in exts {
            let ext = ext.map_err(|e| bad("pax header", e))?;
            let Ok(key) = ext.key() else { continue };
            let Some(name) = key.strip_prefix("SCHILY.xattr.") else {
                continue;
            };
            // overlayfs's own attributes (redirect, metacopy, opaque...) only come from whiteouts.
            if name.starts_with("trusted.overlay.") {
                continue;
            }
            if let Ok(cname) = CString::new(name) {
                xattrs.push((cname, ext.value_bytes().to_vec()));
            }
        }
    }
    Ok(Meta {
        uid,
        gid,
        mode: mode & 0o7777,
        mtime: i64::try_from(mtime).unwrap_or(i64::MAX),
        xattrs,
    })
}

/// chown, then chmod (chown clears setuid bits), then xattrs, on an open file or directory.
fn apply_fd_meta(fd: &OwnedFd, m: &Meta, shown: &str) -> Result<()> {
    // SAFETY: valid fd.
    if unsafe { libc::fchown(fd.as_raw_fd(), m.uid, m.gid) } != 0 {
        return Err(io_err(
            format!("chown {shown:?}"),
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: valid fd.
    if unsafe { libc::fchmod(fd.as_raw_fd(), m.mode) } != 0 {
        return Err(io_err(
            format!("chmod {shown:?}"),
            io::Error::last_os_error(),
        ));
    }
    for (k, v) in &m.xattrs {
        if let Err(e) = set_xattr(fd, k, v) {
            tracing::warn!(path = shown, xattr = ?k, error = %e, "cannot set xattr");
        }
    }
    Ok(())
}

fn chown_times_nofollow(dir: RawFd, name: &CStr, m: &Meta, shown: &str) -> Result<()> {
    // SAFETY: valid fd and C string.
    if unsafe { libc::fchownat(dir, name.as_ptr(), m.uid, m.gid, libc::AT_SYMLINK_NOFOLLOW) } != 0 {
        return Err(io_err(
            format!("chown {shown:?}"),
            io::Error::last_os_error(),
        ));
    }
    let ts = times(m.mtime);
    // SAFETY: valid fd, C string and timespec array.
    if unsafe { libc::utimensat(dir, name.as_ptr(), ts.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) } != 0 {
        return Err(io_err(
            format!("set mtime of {shown:?}"),
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

fn times(mtime: i64) -> [libc::timespec; 2] {
    let t = libc::timespec {
        tv_sec: mtime as libc::time_t,
        tv_nsec: 0,
    };
    [t, t]
}

fn set_xattr(fd: &OwnedFd, name: &CStr, value: &[u8]) -> io::Result<()> {
    // SAFETY: valid fd, C string and buffer.
    let rc = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn mkdir_at(dir: RawFd, name: &CStr, shown: &str) -> Result<()> {
    // SAFETY: valid fd and C string.
    if unsafe { libc::mkdirat(dir, name.as_ptr(), 0o700) } != 0 {
        return Err(io_err(
            format!("mkdir {shown:?}"),
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Remove `name` in `dir`: a directory recursively, anything else unlinked. Never follows symlinks.
fn remove_at(dir: RawFd, name: &CStr, st: &libc::stat, shown: &str) -> Result<()> {
    if is_dir(st) {
        remove_tree(dir, name).map_err(|e| io_err(format!("remove {shown:?}"), e))
    } else {
        // SAFETY: valid fd and C string.
        if unsafe { libc::unlinkat(dir, name.as_ptr(), 0) } != 0 {
            return Err(io_err(
                format!("remove {shown:?}"),
                io::Error::last_os_error(),
            ));
        }
        Ok(())
    }
}

fn remove_tree(dir: RawFd, name: &CStr) -> io::Result<()> {
    let fd = sys_open(
        dir,
        name,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        0,
    )?;
    let mut children: Vec<(CString, bool)> = Vec::new();
    {
        // Dir takes ownership of a duplicate; we keep `fd` for the *at calls below.
        let dup = fd.try_clone()?;
        let mut d = nix::dir::Dir::from_fd(dup.into_raw_fd()).map_err(io::Error::from)?;
        for ent in d.iter() {
            let ent = ent.map_err(io::Error::from)?;
            let n = ent.file_name();
            if n.to_bytes() == b"." || n.to_bytes() == b".." {
                continue;
            }
            let isdir = match ent.file_type() {
                Some(t) => t == nix::dir::Type::Directory,
                None => lstat_at(fd.as_raw_fd(), n)?
                    .map(|s| is_dir(&s))
                    .unwrap_or(false),
            };
            children.push((n.to_owned(), isdir));
        }
    }
    for (n, isdir) in children {
        if isdir {
            remove_tree(fd.as_raw_fd(), &n)?;
        } else {
            // SAFETY: valid fd and C string.
            if unsafe { libc::unlinkat(fd.as_raw_fd(), n.as_ptr(), 0) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    // SAFETY: valid fd and C string.
    if unsafe { libc::unlinkat(dir, name.as_ptr(), libc::AT_REMOVEDIR) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `/a/b` of components, `/` for none (for messages).
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

fn is_dir(st: &libc::stat) -> bool {
    (st.st_mode & libc::S_IFMT) == libc::S_IFDIR
}

fn sys_open(
    dir: RawFd,
    name: &CStr,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> io::Result<OwnedFd> {
    // SAFETY: valid C string; the returned fd is owned by us.
    let fd = unsafe { libc::openat(dir, name.as_ptr(), flags, mode as libc::c_uint) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by openat.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn lstat_at(dir: RawFd, name: &CStr) -> io::Result<Option<libc::stat>> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: valid fd, C string and out pointer.
    let rc = unsafe {
        libc::fstatat(
            dir,
            name.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ENOENT) {
            Ok(None)
        } else {
            Err(e)
        };
    }
    // SAFETY: fstatat succeeded and filled it.
    Ok(Some(unsafe { st.assume_init() }))
}

fn fstat(fd: &OwnedFd) -> io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: valid fd and out pointer (fstat works on O_PATH fds since Linux 3.6).
    if unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstat succeeded.
    Ok(unsafe { st.assume_init() })
}

fn cstring(b: &[u8], shown: &str) -> Result<CString> {
    CString::new(b).map_err(|_| unsafe_entry(shown, "NUL byte in name"))
}

fn unsafe_entry(path: &str, reason: &str) -> StoreError {
    StoreError::UnsafeEntry {
        path: path.to_string(),
        reason: reason.to_string(),
    }
}

fn io_err(context: String, source: io::Error) -> StoreError {
    StoreError::Io { context, source }
}

#[cfg(test)]
mod tests;
