//! COPY, ADD and WORKDIR, in process: the step's parent layers and a fresh upper are mounted as
//! an overlay under the build's work dir; the destination is resolved (and created, copied up)
//! through that overlay with openat2 RESOLVE_IN_ROOT, then files are written with `*at` calls
//! and O_NOFOLLOW straight into the upper dir (much faster than through overlayfs, and the same
//! result: only new names are created there). Archives of ADD are extracted through the overlay
//! by the store's safe unpacker. The overlay is unmounted and its upper dir becomes the layer.

use std::ffi::CStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use super::context::Context;
use berth_build::context::{Context as WalkedContext, Entry, EntryKind};
use berth_build::ignore::Ignore;

use super::fsutil::{cstr, fstat, ioe, kind, list_dir, lstat_at, readlink_at, sys_openat};
use super::sources::{context_error, open_in, Item};
use crate::images::{ImageService, LayerRef};
use crate::{EngineError, Result};

// ---- writing ----

/// How files are written.
#[derive(Debug, Clone, Default)]
pub struct CopyOpts {
    /// Owner of everything written; None keeps the source's (COPY --from without --chown).
    pub owner: Option<(u32, u32)>,
    /// `--chmod`: the permission bits of everything written.
    pub chmod: Option<u32>,
    /// ADD: local tar archives (plain, gzip, zstd) are extracted.
    pub extract_archives: bool,
    /// COPY `--exclude` patterns, relative to each source.
    pub excludes: Ignore,
}

fn set_meta_fd(fd: RawFd, st: &libc::stat, o: &CopyOpts) -> io::Result<()> {
    let (uid, gid) = o.owner.unwrap_or((st.st_uid, st.st_gid));
    // SAFETY: valid fd.
    if unsafe { libc::fchown(fd, uid, gid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mode = o.chmod.unwrap_or(st.st_mode & 0o7777);
    // SAFETY: valid fd; chmod after chown (chown clears setuid bits).
    if unsafe { libc::fchmod(fd, mode as libc::mode_t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let ts = [
        libc::timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec,
        },
        libc::timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec,
        },
    ];
    // SAFETY: valid fd and two timespecs.
    if unsafe { libc::futimens(fd, ts.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Remove `name` in `dir` unless it is a directory; Err if it is one and `dir_ok` is false.
fn clear_for(dir: RawFd, name: &CStr, want_dir: bool) -> Result<bool> {
    match lstat_at(dir, name) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(ioe(name.to_string_lossy(), e)),
        Ok(st) if kind(&st) == libc::S_IFDIR => {
            if want_dir {
                Ok(true)
            } else {
                Err(EngineError::InvalidArgument(format!(
                    "cannot overwrite directory {:?} with non-directory",
                    name.to_string_lossy()
                )))
            }
        }
        Ok(_) => {
            // SAFETY: valid fd and C string.
            if unsafe { libc::unlinkat(dir, name.as_ptr(), 0) } != 0 {
                return Err(ioe(name.to_string_lossy(), io::Error::last_os_error()));
            }
            Ok(false)
        }
    }
}

fn copy_data(src: &mut File, dst: &mut File) -> io::Result<()> {
    // copy_file_range where the kernel can, else a read/write loop (std picks).
    io::copy(src, dst).map(|_| ())
}

fn write_file_at(
    dir: RawFd,
    name: &CStr,
    src: &mut File,
    st: &libc::stat,
    o: &CopyOpts,
) -> Result<()> {
    clear_for(dir, name, false)?;
    let fd = sys_openat(
        dir,
        name,
        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
        0o600,
    )
    .map_err(|e| ioe(name.to_string_lossy(), e))?;
    let mut dst = File::from(fd);
    copy_data(src, &mut dst).map_err(|e| ioe(name.to_string_lossy(), e))?;
    set_meta_fd(dst.as_raw_fd(), st, o).map_err(|e| ioe(name.to_string_lossy(), e))
}

/// Create (or reuse) directory `name` in `dir`; returns its descriptor.
fn ensure_dir_at(dir: RawFd, name: &CStr) -> Result<OwnedFd> {
    if !clear_for(dir, name, true)? {
        // SAFETY: valid fd and C string.
        if unsafe { libc::mkdirat(dir, name.as_ptr(), 0o755) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(ioe(name.to_string_lossy(), e));
            }
        }
    }
    sys_openat(
        dir,
        name,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        0,
    )
    .map_err(|e| ioe(name.to_string_lossy(), e))
}

fn make_symlink(
    dst: RawFd,
    name: &CStr,
    target: &[u8],
    st: &libc::stat,
    o: &CopyOpts,
) -> Result<()> {
    clear_for(dst, name, false)?;
    let t = cstr(target)?;
    // SAFETY: valid C strings and fd.
    if unsafe { libc::symlinkat(t.as_ptr(), dst, name.as_ptr()) } != 0 {
        return Err(ioe(name.to_string_lossy(), io::Error::last_os_error()));
    }
    let (uid, gid) = o.owner.unwrap_or((st.st_uid, st.st_gid));
    // SAFETY: valid fd and C string; the link itself, never its target.
    unsafe { libc::fchownat(dst, name.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW) };
    let ts = [
        libc::timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec,
        },
        libc::timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec,
        },
    ];
    // SAFETY: as above.
    unsafe { libc::utimensat(dst, name.as_ptr(), ts.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
    Ok(())
}

/// A stat of a walked context entry (the fields the copy uses).
fn entry_stat(e: &Entry) -> libc::stat {
    // SAFETY: an all-zero stat is a valid value; the fields used are filled below.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    st.st_mode = e.mode;
    st.st_uid = e.uid;
    st.st_gid = e.gid;
    st.st_mtime = (e.mtime_ns.div_euclid(1_000_000_000)) as i64;
    st.st_mtime_nsec = (e.mtime_ns.rem_euclid(1_000_000_000)) as i64;
    st.st_atime = st.st_mtime;
    st.st_atime_nsec = st.st_mtime_nsec;
    st
}

/// Copy what is below context entry `path` (as walked: `.dockerignore` applied) into
/// directory `dst`. Files are opened beneath the context root with no symlink followed.
fn copy_ctx_tree(w: &WalkedContext, path: &str, dst: RawFd, o: &CopyOpts) -> Result<()> {
    let cut = if path.is_empty() { 0 } else { path.len() + 1 };
    // Open directories along the current path (pre-order walk), with their stat for the
    // metadata set once their contents are written.
    let mut stack: Vec<(String, OwnedFd, libc::stat)> = Vec::new();
    let finish = |(_, fd, st): (String, OwnedFd, libc::stat)| -> Result<()> {
        set_meta_fd(fd.as_raw_fd(), &st, o).map_err(|e| ioe("set directory metadata", e))
    };
    for e in w.subtree(path).iter().skip(1) {
        let rel = &e.path[cut.min(e.path.len())..];
        if !o.excludes.is_empty() && o.excludes.matches(rel) {
            continue;
        }
        let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        while stack.last().is_some_and(|(d, _, _)| d != parent) {
            if let Some(top) = stack.pop() {
                finish(top)?;
            }
        }
        let pfd = match stack.last() {
            Some((_, fd, _)) => fd.as_raw_fd(),
            None if parent.is_empty() => dst,
            // Its directory was excluded.
            None => continue,
        };
        let cname = cstr(name.as_bytes())?;
        let st = entry_stat(e);
        match &e.kind {
            EntryKind::Dir => {
                let d = ensure_dir_at(pfd, &cname)?;
                stack.push((rel.to_string(), d, st));
            }
            EntryKind::File => {
                let mut f = w
                    .open_file(&e.path)
                    .map_err(|err| context_error("COPY", err))?;
                write_file_at(pfd, &cname, &mut f, &st, o)?;
            }
            EntryKind::Symlink(t) => make_symlink(pfd, &cname, t.as_bytes(), &st, o)?,
            EntryKind::Other => {}
        }
    }
    while let Some(top) = stack.pop() {
        finish(top)?;
    }
    Ok(())
}

/// Copy the entries of directory `src` into directory `dst` (recursively, links as links).
fn copy_dir_contents(src: RawFd, dst: RawFd, ctx_rel: &str, o: &CopyOpts) -> Result<()> {
    for name in list_dir(src).map_err(|e| ioe(ctx_rel, e))? {
        let crel = if ctx_rel.is_empty() {
            String::from_utf8_lossy(name.to_bytes()).to_string()
        } else {
            format!("{ctx_rel}/{}", String::from_utf8_lossy(name.to_bytes()))
        };
        let st = lstat_at(src, &name).map_err(|e| ioe(&crel, e))?;
        match kind(&st) {
            libc::S_IFDIR => {
                let s = sys_openat(
                    src,
                    &name,
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                    0,
                )
                .map_err(|e| ioe(&crel, e))?;
                let d = ensure_dir_at(dst, &name)?;
                copy_dir_contents(s.as_raw_fd(), d.as_raw_fd(), &crel, o)?;
                set_meta_fd(d.as_raw_fd(), &st, o).map_err(|e| ioe(&crel, e))?;
            }
            libc::S_IFREG => {
                let mut s = File::from(
                    sys_openat(src, &name, libc::O_RDONLY | libc::O_NOFOLLOW, 0)
                        .map_err(|e| ioe(&crel, e))?,
                );
                write_file_at(dst, &name, &mut s, &st, o)?;
            }
            libc::S_IFLNK => {
                let target = readlink_at(src, &name).map_err(|e| ioe(&crel, e))?;
                make_symlink(dst, &name, &target, &st, o)?;
            }
            // Devices, fifos and sockets are not copied.
            _ => {}
        }
    }
    Ok(())
}

/// Resolve (creating it) directory `path` inside `rootfs`; its descriptor.
fn dest_dir(rootfs: &Path, path: &str) -> Result<File> {
    berth_store::safepath::mkdir_all_in_root(rootfs, Path::new(path), 0o755)?;
    let f = berth_store::safepath::open_in_root(rootfs, Path::new(path))?;
    let st = fstat(f.as_raw_fd()).map_err(|e| ioe(path, e))?;
    if kind(&st) != libc::S_IFDIR {
        return Err(EngineError::InvalidArgument(format!(
            "{path} is not a directory"
        )));
    }
    Ok(f)
}

/// The directory `path` of the merged `rootfs`, created and copied up through the overlay,
/// opened in the overlay's `upper` dir: files written there directly skip overlayfs (much
/// faster) and shadow the lower layers exactly as writes through the mount would. Only new
/// names are created there, so no whiteout is ever needed.
fn upper_dir(rootfs: &Path, upper: &Path, path: &str) -> Result<File> {
    let merged = dest_dir(rootfs, path)?;
    let st = fstat(merged.as_raw_fd()).map_err(|e| ioe(path, e))?;
    // A metadata change (to the same owner) makes overlayfs copy the directory up.
    // SAFETY: valid fd.
    if unsafe { libc::fchown(merged.as_raw_fd(), st.st_uid, st.st_gid) } != 0 {
        return Err(ioe(path, io::Error::last_os_error()));
    }
    let real = std::fs::read_link(format!("/proc/self/fd/{}", merged.as_raw_fd()))
        .map_err(|e| ioe(path, e))?;
    let croot = rootfs
        .canonicalize()
        .map_err(|e| ioe(rootfs.display(), e))?;
    let rel = real.strip_prefix(&croot).map_err(|_| {
        EngineError::Internal(format!("{path}: resolved outside the step root: {real:?}"))
    })?;
    let f = berth_store::safepath::open_in_root(upper, &Path::new("/").join(rel))?;
    let ust = fstat(f.as_raw_fd()).map_err(|e| ioe(path, e))?;
    if kind(&ust) != libc::S_IFDIR {
        return Err(EngineError::Internal(format!(
            "{path}: not copied up into the step's upper dir"
        )));
    }
    Ok(f)
}

fn is_dir_in(rootfs: &Path, path: &str) -> bool {
    berth_store::safepath::open_in_root(rootfs, Path::new(path))
        .ok()
        .and_then(|f| fstat(f.as_raw_fd()).ok())
        .is_some_and(|st| kind(&st) == libc::S_IFDIR)
}

fn split_dest(dest: &str) -> (String, String) {
    let t = dest.trim_end_matches('/');
    match t.rsplit_once('/') {
        Some((p, n)) => (
            if p.is_empty() {
                "/".to_string()
            } else {
                p.to_string()
            },
            n.to_string(),
        ),
        None => ("/".to_string(), t.to_string()),
    }
}

/// Whether a file starts like a tar archive (plain, gzip or zstd-compressed tar).
fn looks_like_archive(f: &mut File) -> bool {
    use std::io::{BufReader, Seek};
    let is_tar = (|| -> Option<bool> {
        let r = BufReader::new(&mut *f);
        let mut plain = berth_store::compress::decompressed(r).ok()?;
        let mut hdr = [0u8; 512];
        plain.read_exact(&mut hdr).ok()?;
        Some(&hdr[257..262] == b"ustar")
    })()
    .unwrap_or(false);
    let _ = f.seek(io::SeekFrom::Start(0));
    is_tar
}

/// Write `items` at `dest` (absolute, cleaned, a trailing `/` kept) inside the mounted `rootfs`,
/// with Docker's rules: a directory's contents go into dest; a file goes into dest when dest
/// ends in `/` or is an existing directory (or there are several items), else becomes dest.
pub fn copy_into(
    rootfs: &Path,
    upper: Option<&Path>,
    dest: &str,
    items: &[Item],
    ctx: Option<&Context>,
    o: &CopyOpts,
) -> Result<()> {
    let dest_is_dir = dest.ends_with('/') || items.len() > 1 || is_dir_in(rootfs, dest);
    // Archives are extracted through the overlay (the unpacker sees the merged tree); plain
    // copies go to the upper dir directly. Every item lands in the same directory, resolved
    // once before anything is written.
    let archives = o.extract_archives
        && items.iter().any(|it| match it {
            Item::Path { root, rel } => open_in(root, rel)
                .map(|mut f| looks_like_archive(&mut f))
                .unwrap_or(false),
            Item::Ctx { path, .. } => ctx
                .and_then(|c| c.walked().open_file(path).ok())
                .map(|mut f| looks_like_archive(&mut f))
                .unwrap_or(false),
            Item::Data { .. } => false,
        });
    let direct = match upper {
        Some(u) if !archives => {
            let dir = if dest_is_dir {
                dest.to_string()
            } else {
                split_dest(dest).0
            };
            Some((dir.clone(), upper_dir(rootfs, u, &dir)?))
        }
        _ => None,
    };
    let dest_dir = |path: &str| -> Result<File> {
        match &direct {
            Some((d, f)) if d == path => f.try_clone().map_err(|e| ioe(path, e)),
            _ => dest_dir(rootfs, path),
        }
    };
    for it in items {
        match it {
            Item::Data {
                name,
                data,
                mode,
                mtime,
            } => {
                let (dir, fname) = if dest_is_dir {
                    (dest.to_string(), name.clone())
                } else {
                    split_dest(dest)
                };
                let d = dest_dir(&dir)?;
                let n = cstr(fname.as_bytes())?;
                clear_for(d.as_raw_fd(), &n, false)?;
                let fd = sys_openat(
                    d.as_raw_fd(),
                    &n,
                    libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
                    0o600,
                )
                .map_err(|e| ioe(&fname, e))?;
                let mut f = File::from(fd);
                f.write_all(data).map_err(|e| ioe(&fname, e))?;
                // SAFETY: zeroed stat is a valid value; we fill the fields used.
                let mut st: libc::stat = unsafe { std::mem::zeroed() };
                st.st_mode = *mode;
                st.st_mtime = *mtime;
                st.st_atime = *mtime;
                set_meta_fd(
                    f.as_raw_fd(),
                    &st,
                    &CopyOpts {
                        owner: Some(o.owner.unwrap_or((0, 0))),
                        ..o.clone()
                    },
                )
                .map_err(|e| ioe(&fname, e))?;
            }
            Item::Ctx { path, name } => {
                let c = ctx.ok_or_else(|| {
                    EngineError::Internal("context sources without a context".into())
                })?;
                let w = c.walked();
                let Some(e) = w.entry(path) else {
                    return Err(EngineError::InvalidArgument(format!(
                        "COPY failed: file not found in build context or excluded by .dockerignore: stat {path}: file does not exist"
                    )));
                };
                let st = entry_stat(e);
                let (dir, fname) = if dest_is_dir {
                    (dest.to_string(), name.clone())
                } else {
                    split_dest(dest)
                };
                match &e.kind {
                    EntryKind::Dir => copy_ctx_tree(w, path, dest_dir(dest)?.as_raw_fd(), o)?,
                    EntryKind::File => {
                        let mut src = w
                            .open_file(path)
                            .map_err(|err| context_error("COPY", err))?;
                        if o.extract_archives && looks_like_archive(&mut src) {
                            extract(src, &dest_dir(dest)?)?;
                            continue;
                        }
                        let d = dest_dir(&dir)?;
                        write_file_at(d.as_raw_fd(), &cstr(fname.as_bytes())?, &mut src, &st, o)?;
                    }
                    EntryKind::Symlink(t) => {
                        let d = dest_dir(&dir)?;
                        make_symlink(
                            d.as_raw_fd(),
                            &cstr(fname.as_bytes())?,
                            t.as_bytes(),
                            &st,
                            o,
                        )?;
                    }
                    EntryKind::Other => {}
                }
            }
            Item::Path { root, rel } => {
                let mut src = open_in(root, rel)?;
                let st = fstat(src.as_raw_fd()).map_err(|e| ioe(rel, e))?;
                if kind(&st) == libc::S_IFDIR {
                    let d = dest_dir(dest)?;
                    copy_dir_contents(src.as_raw_fd(), d.as_raw_fd(), rel, o)?;
                } else if kind(&st) == libc::S_IFREG {
                    if o.extract_archives && looks_like_archive(&mut src) {
                        extract(src, &dest_dir(dest)?)?;
                        continue;
                    }
                    let base = rel.rsplit('/').next().unwrap_or(rel).to_string();
                    let (dir, fname) = if dest_is_dir {
                        (dest.to_string(), base)
                    } else {
                        split_dest(dest)
                    };
                    let d = dest_dir(&dir)?;
                    write_file_at(d.as_raw_fd(), &cstr(fname.as_bytes())?, &mut src, &st, o)?;
                }
            }
        }
    }
    Ok(())
}

/// Extract a (possibly compressed) tar with the store's safe unpacker into `dir`.
fn extract(src: File, dir: &File) -> Result<()> {
    let mut plain = berth_store::compress::decompressed(io::BufReader::new(src))?;
    let uo = berth_store::unpack::UnpackOptions {
        reset_owner: false,
        refuse_whiteouts: true,
        no_overwrite_dir_non_dir: false,
        xattrs: false,
    };
    berth_store::unpack::unpack_into(&mut plain, std::os::fd::AsFd::as_fd(dir), uo)?;
    Ok(())
}

// ---- the overlay a step writes into ----

/// How build steps store their layers: the tar itself as the blob (blob digest = diff id;
/// `save` and `push` use it as is, push compresses it once), no gzip on the build's path.
#[allow(clippy::needless_update)]
pub fn layer_opts() -> crate::layerdiff::LayerOptions {
    crate::layerdiff::LayerOptions {
        blob: crate::layerdiff::BlobFormat::Tar,
        ..Default::default()
    }
}

/// An overlay of `layers` (bottom first) + a fresh upper, mounted under `dir`.
pub struct StepRoot {
    dir: PathBuf,
    mounted: bool,
}

impl StepRoot {
    pub fn mount(images: &ImageService, layers: &[LayerRef], dir: &Path) -> Result<StepRoot> {
        let lowers = layers
            .iter()
            .map(|l| images.layers.dir(&l.chain_id))
            .collect();
        Self::mount_dirs(lowers, dir)
    }

    /// An overlay of directories (bottom first) and a fresh upper.
    pub fn mount_dirs(lowers: Vec<PathBuf>, dir: &Path) -> Result<StepRoot> {
        for sub in ["upper", "work", "rootfs"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let mut lowers: Vec<PathBuf> = lowers.into_iter().rev().collect();
        if lowers.is_empty() {
            let empty = dir.join("empty");
            std::fs::create_dir_all(&empty)?;
            lowers.push(empty);
        }
        berth_store::overlay::mount(
            &lowers,
            &dir.join("upper"),
            &dir.join("work"),
            &dir.join("rootfs"),
        )?;
        Ok(StepRoot {
            dir: dir.to_path_buf(),
            mounted: true,
        })
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }

    pub fn unmount(&mut self) -> Result<()> {
        if self.mounted {
            berth_store::overlay::unmount(&self.rootfs())?;
            self.mounted = false;
        }
        Ok(())
    }
}

impl Drop for StepRoot {
    /// Unmounts; the directory itself goes with the build's work dir (removed off the
    /// critical path when the build ends).
    fn drop(&mut self) {
        if self.mounted {
            let _ = berth_store::overlay::unmount(&self.rootfs());
        }
    }
}

/// Mount the parent, let `f` write into its root, commit the upper dir as a layer (None when
/// nothing changed).
pub fn write_step(
    images: &ImageService,
    layers: &[LayerRef],
    dir: &Path,
    f: impl FnOnce(&Path, &Path) -> Result<()>,
) -> Result<Option<LayerRef>> {
    let t0 = std::time::Instant::now();
    let mut root = StepRoot::mount(images, layers, dir)?;
    f(&root.rootfs(), &root.upper())?;
    root.unmount()?;
    let t_write = t0.elapsed();
    let parent = layers.last().map(|l| l.chain_id.clone());
    let layer = crate::layerdiff::commit_upper_consume(
        images,
        parent.as_ref(),
        &root.upper(),
        &layer_opts(),
    );
    let t_commit = t0.elapsed();
    drop(root);
    tracing::debug!(
        write_ms = t_write.as_secs_f64() * 1e3,
        layer_ms = (t_commit - t_write).as_secs_f64() * 1e3,
        cleanup_ms = (t0.elapsed() - t_commit).as_secs_f64() * 1e3,
        "build: files written"
    );
    layer
}

/// Parse `--chown=user[:group]` against the image's /etc/passwd and /etc/group (names) or as
/// numbers; a missing group means the user's uid as gid (Docker's rule).
pub fn parse_chown(rootfs: &Path, spec: &str) -> Result<(u32, u32)> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let read = |p: &str| {
        berth_store::safepath::read_in_root(rootfs, Path::new(p))
            .ok()
            .flatten()
            .map(|b| String::from_utf8_lossy(&b).to_string())
    };
    let uid = match u.parse::<u32>() {
        Ok(n) => n,
        Err(_) => {
            let pw = read("/etc/passwd").unwrap_or_default();
            berth_runtime::user::parse_passwd(&pw)
                .into_iter()
                .find(|e| e.name == u)
                .map(|e| e.uid)
                .ok_or_else(|| EngineError::InvalidArgument(format!("unable to convert uid/gid chown string to host mapping: can't find uid for user {u}: no such user: {u}")))?
        }
    };
    let gid = match g {
        None => uid,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                let gr = read("/etc/group").unwrap_or_default();
                berth_runtime::user::parse_group(&gr)
                    .into_iter()
                    .find(|e| e.name == g)
                    .map(|e| e.gid)
                    .ok_or_else(|| EngineError::InvalidArgument(format!("unable to convert uid/gid chown string to host mapping: can't find gid for group {g}: no such group: {g}")))?
            }
        },
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    #[test]
    fn copy_rules_and_links_stay_inside() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        let root = d.path().join("root");
        std::fs::create_dir_all(src.join("dir/sub")).unwrap();
        std::fs::create_dir_all(root.join("app")).unwrap();
        std::fs::write(src.join("a.txt"), "A").unwrap();
        std::fs::write(src.join("dir/sub/b"), "B").unwrap();
        symlink("/etc/passwd", src.join("dir/link")).unwrap();
        // An image symlink pointing out of the root: writes through it stay inside.
        symlink("/tmp", root.join("out")).unwrap();
        std::fs::create_dir_all(root.join("tmp")).unwrap();
        std::fs::set_permissions(src.join("a.txt"), std::fs::Permissions::from_mode(0o640))
            .unwrap();
        let item = |rel: &str| Item::Path {
            root: src.clone(),
            rel: rel.to_string(),
        };
        let o = CopyOpts {
            owner: Some((0, 0)),
            ..Default::default()
        };
        copy_into(&root, None, "/app", &[item("a.txt")], None, &o).unwrap();
        assert_eq!(std::fs::read(root.join("app/a.txt")).unwrap(), b"A");
        copy_into(&root, None, "/new/file", &[item("a.txt")], None, &o).unwrap();
        assert_eq!(std::fs::read(root.join("new/file")).unwrap(), b"A");
        assert_eq!(
            std::fs::metadata(root.join("new/file"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o640
        );
        copy_into(&root, None, "/d/", &[item("dir")], None, &o).unwrap();
        assert_eq!(std::fs::read(root.join("d/sub/b")).unwrap(), b"B");
        assert_eq!(
            std::fs::read_link(root.join("d/link")).unwrap(),
            Path::new("/etc/passwd")
        );
        let marker = format!("berth-copy-test-{}", std::process::id());
        copy_into(
            &root,
            None,
            &format!("/out/{marker}"),
            &[item("a.txt")],
            None,
            &o,
        )
        .unwrap();
        assert!(!Path::new("/tmp").join(&marker).exists());
        assert!(root.join("tmp").join(&marker).exists());
        // Several sources need a directory.
        copy_into(
            &root,
            None,
            "/m/",
            &[item("a.txt"), item("dir/sub/b")],
            None,
            &o,
        )
        .unwrap();
        assert!(root.join("m/b").exists());
        // Globs and hashes of --from sources.
        use crate::build::sources::{expand_source, hash_items};
        let g = expand_source(&src, "*.txt", "COPY").unwrap();
        assert_eq!(g, vec!["a.txt"]);
        assert!(expand_source(&src, "nope", "COPY").is_err());
        assert!(expand_source(&src, "../x", "COPY").is_err());
        let none = Ignore::default();
        let h1 = hash_items(&[item("dir")], None, &none).unwrap();
        assert!(h1.starts_with("dir:"));
        assert_eq!(h1, hash_items(&[item("dir")], None, &none).unwrap());
        std::fs::write(src.join("dir/sub/b"), "C").unwrap();
        assert_ne!(h1, hash_items(&[item("dir")], None, &none).unwrap());
    }

    #[test]
    fn direct_writes_to_upper_match_the_overlay() {
        let d = tempfile::tempdir().unwrap();
        let lower = d.path().join("lower");
        std::fs::create_dir_all(lower.join("usr/lib")).unwrap();
        std::fs::create_dir_all(lower.join("etc")).unwrap();
        std::fs::write(lower.join("etc/passwd"), "old").unwrap();
        std::fs::write(lower.join("usr/lib/keep"), "k").unwrap();
        symlink("usr/lib", lower.join("lib")).unwrap();
        let src = d.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("passwd"), "new").unwrap();
        std::fs::write(src.join("x"), "X").unwrap();
        let mut root = StepRoot::mount_dirs(vec![lower.clone()], &d.path().join("step")).unwrap();
        let (rootfs, upper) = (root.rootfs(), root.upper());
        let item = |rel: &str| Item::Path {
            root: src.clone(),
            rel: rel.to_string(),
        };
        let o = CopyOpts {
            owner: Some((0, 0)),
            ..Default::default()
        };
        copy_into(
            &rootfs,
            Some(&upper),
            "/etc/passwd",
            &[item("passwd")],
            None,
            &o,
        )
        .unwrap();
        copy_into(&rootfs, Some(&upper), "/lib/", &[item("x")], None, &o).unwrap();
        root.unmount().unwrap();
        // Written in the upper dir only, through the symlink's target, lower untouched.
        assert_eq!(std::fs::read(upper.join("etc/passwd")).unwrap(), b"new");
        assert_eq!(std::fs::read(upper.join("usr/lib/x")).unwrap(), b"X");
        assert!(!upper.join("lib").exists());
        assert_eq!(std::fs::read(lower.join("etc/passwd")).unwrap(), b"old");
        assert!(!lower.join("usr/lib/x").exists());
        // Mounted again, the merged view has both.
        let root2 =
            StepRoot::mount_dirs(vec![lower.clone(), upper.clone()], &d.path().join("s2")).unwrap();
        let r2 = root2.rootfs();
        assert_eq!(std::fs::read(r2.join("lib/x")).unwrap(), b"X");
        assert_eq!(std::fs::read(r2.join("lib/keep")).unwrap(), b"k");
        assert_eq!(std::fs::read(r2.join("etc/passwd")).unwrap(), b"new");
        drop(root2);
    }
}
