//! The one layer-diff code path behind `docker commit`, `docker diff`, `docker export` and every
//! build step: read an overlay upper directory (whiteouts as 0/0 character devices, opaque
//! directories by xattr), write it as a layer tar with Docker's whiteouts (`.wh.<name>`,
//! `.wh..wh..opq`), and store it as a new layer.
//!
//! The walk never follows a symlink (every open is `O_NOFOLLOW` relative to the parent's
//! descriptor), so a container that plants `link -> /` in its upper dir only ever gets the link
//! itself archived. The tar is deterministic for the same files: entries sorted bytewise, ustar
//! headers, PAX records only for names/link targets over 100 bytes and for xattrs, mtimes to the
//! second (as Docker), uid/gid/mode of the files, hard links inside the upper kept as links.
//!
//! [`commit_upper`] writes the tar once: it is hashed (diff id), gzip-compressed and hashed again
//! (blob digest) into the content store, and the same bytes of every file are written into the
//! new layer directory in the same pass (no second read, no unpack of the tar). Durability: a
//! per-file fsync for small diffs, one `syncfs` for large ones, then the blob and the layer are
//! published by rename (the layer store's info file last), so a crash leaves only temp files
//! that start-up reconciliation removes.
//!
//! Left out of every diff: the mount points the runtime creates ([`RUNTIME_PATHS`], Docker keeps
//! them in its init layer), and directories of the upper that only hold them.

mod emit;
mod inplace;
mod walk;

use std::fs::{self, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use berth_store::atomic;
use berth_store::digest::DigestWriter;
use berth_store::inroot::ChangeKind;
use berth_store::layers::{chain_id, LayerInfo};
use berth_store::Digest;

use crate::images::{ImageService, LayerRef};
use crate::{EngineError, Result};

use emit::{Emitter, Mirror};
use walk::{io_err, open_dir_path, Kind, Mode, Walker};

/// Media type of the layer blobs this module writes.
pub const MEDIA_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Paths the runtime creates as mount points in a container's upper dir (Docker hides them in
/// its init layer): never part of a diff.
pub const RUNTIME_PATHS: &[&str] = &[
    "/dev",
    "/proc",
    "/sys",
    "/etc/hosts",
    "/etc/hostname",
    "/etc/resolv.conf",
    "/.dockerenv",
    "/sbin/docker-init",
];

/// Gzip level of layer blobs: speed first (a build step's commit is on the critical path).
const GZIP_LEVEL: u32 = 1;

/// Write the tar diff of `upper` to `w` (entries sorted, whiteouts converted, no mtimes of the
/// build host leaking beyond what the files carry). Returns (diff_id = sha256 of the tar, size
/// of the tar in bytes).
pub fn write_diff(upper: &Path, w: &mut dyn Write) -> Result<(Digest, u64)> {
    let nodes = Walker::new(Mode::Upper, RUNTIME_PATHS).collect(upper, &[])?;
    let src = open_dir_path(upper).map_err(|e| io_err(format!("open {upper:?}"), e))?;
    let mut hw = DigestWriter::new(w);
    let mut em = Emitter::new(&mut hw, None);
    em.dir(&src, None, b"", &nodes)?;
    em.finish().map_err(|e| io_err("write layer tar", e))?;
    drop(em);
    let (_, d, n) = hw.finish();
    Ok((d, n))
}

/// Whether `upper` holds any change a layer would record.
pub fn has_changes(upper: &Path) -> Result<bool> {
    Ok(!Walker::new(Mode::Upper, RUNTIME_PATHS)
        .collect(upper, &[])?
        .is_empty())
}

/// `docker diff`: the changes of `upper` over its lower layers (`lowers` top first, overlay's
/// merge rules), as `(path, kind)` sorted by path. Exactly the entries [`write_diff`] archives:
/// a whiteout is `Deleted`, everything else `Added` or `Modified` (present below or not).
pub fn changes(upper: &Path, lowers: &[PathBuf]) -> Result<Vec<(String, ChangeKind)>> {
    let nodes = Walker::new(Mode::Upper, RUNTIME_PATHS).collect(upper, lowers)?;
    let mut flat = Vec::new();
    walk::flatten(&nodes, b"", &mut flat);
    let mut out: Vec<(String, ChangeKind)> = flat
        .into_iter()
        .map(|(p, n)| {
            let kind = match n.kind {
                Kind::Whiteout => ChangeKind::Deleted,
                _ if n.in_lower => ChangeKind::Modified,
                _ => ChangeKind::Added,
            };
            (format!("/{}", String::from_utf8_lossy(&p)), kind)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// `docker export`: a tar of the whole tree under `root` (a merged root filesystem), names
/// relative to it, written by the same walker and tar writer as layers.
pub fn write_tree(root: &Path, w: &mut dyn Write) -> Result<()> {
    let nodes = Walker::new(Mode::Plain, &[]).collect(root, &[])?;
    let src = open_dir_path(root).map_err(|e| io_err(format!("open {root:?}"), e))?;
    let mut em = Emitter::new(w, None);
    em.dir(&src, None, b"", &nodes)?;
    em.finish().map_err(|e| io_err("write tar", e))
}

/// Removes a temp path on drop unless disarmed.
struct Cleanup(Option<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let r = if p.is_dir() {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
            if let Err(e) = r {
                tracing::warn!(path = ?p, error = %e, "cannot remove temp file of a layer diff");
            }
        }
    }
}

fn count_files(nodes: &[walk::Node]) -> usize {
    nodes
        .iter()
        .map(|n| usize::from(n.kind == Kind::File) + count_files(&n.children))
        .sum()
}

/// What [`commit_upper_with`] stores in the content store next to the layer directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BlobFormat {
    /// The tar gzip-compressed (Docker's commit; what a push sends). Compressed in a second
    /// thread while the files are copied.
    #[default]
    Gzip,
    /// The tar itself (as `import` stores layers): no compression cost, blob digest = diff id.
    Tar,
    /// No blob: only the layer directory (`LayerRef::blob` is None). A push recreates the blob
    /// from the layer directory with [`write_diff`] (same bytes, same diff id).
    None,
}

/// Options of [`commit_upper_with`].
#[derive(Debug, Clone, Copy, Default)]
pub struct LayerOptions {
    pub blob: BlobFormat,
}

/// Size of the chunks the tar is handed to the compressing thread in.
const CHUNK: usize = 256 * 1024;

/// A `Write` that hands the bytes to the gzip thread in chunks.
struct ChunkSender {
    buf: Vec<u8>,
    tx: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
}

impl ChunkSender {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        match &self.tx {
            Some(tx) => tx
                .send(chunk)
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "gzip thread")),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "gzip thread",
            )),
        }
    }
}

impl Write for ChunkSender {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = b.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&b[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// The blob being written: where the tar bytes go, and how to finish it.
enum BlobSink {
    Gzip {
        tx: ChunkSender,
        worker: std::thread::JoinHandle<std::io::Result<(std::fs::File, Digest)>>,
    },
    Tar(BufWriter<std::fs::File>),
    None,
}

impl Write for BlobSink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            BlobSink::Gzip { tx, .. } => tx.write(b),
            BlobSink::Tar(w) => w.write(b),
            BlobSink::None => Ok(b.len()),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            BlobSink::Gzip { tx, .. } => tx.flush(),
            BlobSink::Tar(w) => w.flush(),
            BlobSink::None => Ok(()),
        }
    }
}

impl BlobSink {
    fn gzip(f: std::fs::File) -> BlobSink {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(8);
        let worker = std::thread::spawn(move || {
            let blob_w = DigestWriter::new(BufWriter::with_capacity(CHUNK, f));
            let mut gz =
                flate2::write::GzEncoder::new(blob_w, flate2::Compression::new(GZIP_LEVEL));
            for chunk in rx {
                gz.write_all(&chunk)?;
            }
            let (buf, d, _) = gz.finish()?.finish();
            let f = buf.into_inner().map_err(|e| e.into_error())?;
            Ok((f, d))
        });
        BlobSink::Gzip {
            tx: ChunkSender {
                buf: Vec::with_capacity(CHUNK),
                tx: Some(tx),
            },
            worker,
        }
    }

    /// The blob file and its digest (None for `BlobFormat::None`). `diff_id` is the digest of
    /// the tar (the blob's own for `BlobFormat::Tar`).
    fn finish(self, diff_id: &Digest) -> Result<Option<(std::fs::File, Digest)>> {
        match self {
            BlobSink::Gzip { mut tx, worker } => {
                let sent = tx.send();
                tx.tx = None;
                let res = worker
                    .join()
                    .map_err(|_| EngineError::Internal("gzip thread panicked".into()))?
                    .map_err(|e| io_err("gzip layer", e))?;
                sent.map_err(|e| io_err("gzip layer", e))?;
                Ok(Some(res))
            }
            BlobSink::Tar(w) => {
                let f = w
                    .into_inner()
                    .map_err(|e| io_err("write layer blob", e.into_error()))?;
                Ok(Some((f, diff_id.clone())))
            }
            BlobSink::None => Ok(None),
        }
    }
}

fn syncfs(fd: &std::os::fd::OwnedFd) -> Result<()> {
    // SAFETY: valid fd.
    if unsafe { libc::syncfs(fd.as_raw_fd()) } != 0 {
        return Err(io_err("syncfs", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Turn the changes in `upper` into a new layer on top of `parent` (a chain id, None for a base
/// layer): the blob goes to the content store (gzip, as Docker's commit), the unpacked layer to
/// the layer store. Returns None when `upper` holds no change (Docker then records an empty
/// layer in the history only).
pub fn commit_upper(
    images: &ImageService,
    parent: Option<&Digest>,
    upper: &Path,
) -> Result<Option<LayerRef>> {
    commit_upper_with(images, parent, upper, &LayerOptions::default())
}

/// [`commit_upper`] with a choice of blob ([`BlobFormat::Tar`] or [`BlobFormat::None`] skip the
/// compression, for build steps that want speed).
///
/// Durability: the blob and the layer's files are written without a sync each; one `syncfs`
/// makes them durable before anything is published, the renames (blob, layer dir, info file)
/// follow, and a second `syncfs` makes those durable before the caller records an image.
pub fn commit_upper_with(
    images: &ImageService,
    parent: Option<&Digest>,
    upper: &Path,
    opts: &LayerOptions,
) -> Result<Option<LayerRef>> {
    commit(images, parent, upper, opts, false)
}

/// [`commit_upper_with`] for an upper dir that is thrown away afterwards (a build step's
/// container or scratch root): it is moved into the layer store and becomes the layer (the files
/// are read once for the tar and never copied). When a layer is returned, `upper` no longer
/// exists; with no change (None) it is left as it was. Falls back to the copy when `upper` is on
/// another file system than the layer store.
pub fn commit_upper_consume(
    images: &ImageService,
    parent: Option<&Digest>,
    upper: &Path,
    opts: &LayerOptions,
) -> Result<Option<LayerRef>> {
    commit(images, parent, upper, opts, true)
}

/// Whether an overlay mount still uses `upper` as its upper dir (moving it would let that mount
/// keep writing into the new layer): then the layer is copied instead.
fn mounted_as_upper(upper: &Path) -> bool {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return true;
    };
    let want = format!("upperdir={}", upper.display());
    info.lines()
        .any(|l| l.split(',').chain(l.split(' ')).any(|opt| opt == want))
}

fn commit(
    images: &ImageService,
    parent: Option<&Digest>,
    upper: &Path,
    opts: &LayerOptions,
    consume: bool,
) -> Result<Option<LayerRef>> {
    let t0 = Instant::now();
    let nodes = Walker::new(Mode::Upper, RUNTIME_PATHS).collect(upper, &[])?;
    if nodes.is_empty() {
        return Ok(None);
    }
    if let Some(p) = parent {
        if !images.layers.exists(p) {
            return Err(EngineError::NotFound(format!("parent layer {p}")));
        }
    }
    let nfiles = count_files(&nodes);

    // The layer's files go straight into a temp dir of the layer store (or the upper dir is
    // moved there and becomes the layer).
    let tmp_layer = images.layers.temp_dir()?;
    let mut layer_guard = Cleanup(Some(tmp_layer.clone()));
    let moved = consume && !mounted_as_upper(upper) && fs::rename(upper, &tmp_layer).is_ok();
    let root = open_dir_path(&tmp_layer).map_err(|e| io_err(format!("open {tmp_layer:?}"), e))?;
    let src = if moved {
        root.try_clone().map_err(|e| io_err("dup layer dir", e))?
    } else {
        open_dir_path(upper).map_err(|e| io_err(format!("open {upper:?}"), e))?
    };

    // The blob: a temp file next to the blobs (removed by the content store's clean-up if we
    // crash), hashed before (diff id) and after compression (blob digest).
    let probe = images.content.path(&Digest::of(b""));
    let blob_dir = probe
        .parent()
        .ok_or_else(|| EngineError::Internal("content store has no blob dir".into()))?
        .to_path_buf();
    let tmp_blob = blob_dir.join(format!("{}{}", atomic::TEMP_PREFIX, atomic::random_hex(8)));
    let mut blob_guard = Cleanup(None);
    let sink = if opts.blob == BlobFormat::None {
        BlobSink::None
    } else {
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_CLOEXEC)
            .open(&tmp_blob)
            .map_err(|e| io_err(format!("create {tmp_blob:?}"), e))?;
        blob_guard.0 = Some(tmp_blob.clone());
        match opts.blob {
            BlobFormat::Gzip => BlobSink::gzip(f),
            _ => BlobSink::Tar(BufWriter::with_capacity(CHUNK, f)),
        }
    };
    let mut tar_w = DigestWriter::new(sink);
    let mirror = if moved {
        None
    } else {
        Some(Mirror {
            root: root.try_clone().map_err(|e| io_err("dup layer dir", e))?,
        })
    };
    let dst = if moved { None } else { Some(&root) };
    let mut em = Emitter::new(&mut tar_w, mirror);
    let walked = em
        .dir(&src, dst, b"", &nodes)
        .and_then(|_| em.finish().map_err(|e| io_err("write layer tar", e)))
        .and_then(|_| {
            if !moved {
                return Ok(());
            }
            inplace::conform(&root, &nodes, 0)
                .and_then(|_| fs::set_permissions(&tmp_layer, fs::Permissions::from_mode(0o755)))
                .map_err(|e| io_err("make the upper dir a layer", e))
        });
    let size = em.data_size;
    drop(em);
    let (sink, diff_id, _tar_len) = tar_w.finish();
    // Always stop the gzip thread, whatever happened to the walk.
    let blob = sink.finish(&diff_id);
    walked?;
    let blob = blob?;
    let t_written = t0.elapsed();

    // Barrier 1: the blob's and the layer's data are on disk before anything is published.
    syncfs(&root)?;
    let blob = match blob {
        Some((f, digest)) => {
            drop(f);
            let blob_path = images.content.path(&digest);
            let new_blob = !blob_path.exists();
            if new_blob {
                fs::rename(&tmp_blob, &blob_path)
                    .map_err(|e| io_err(format!("rename {tmp_blob:?} to {blob_path:?}"), e))?;
                blob_guard.0 = None;
            }
            Some((digest, new_blob))
        }
        None => None,
    };
    let chain = chain_id(parent, &diff_id);
    let info = LayerInfo {
        chain_id: chain.clone(),
        diff_id: diff_id.clone(),
        parent: parent.cloned(),
        size,
    };
    layer_guard.0 = None;
    let published = images.layers.publish_unsynced(&tmp_layer, info);
    // Barrier 2: the renames and the info file, before the caller records an image.
    let synced = published
        .as_ref()
        .map_err(|_| ())
        .and_then(|_| syncfs(&root).map_err(|_| ()));
    let info = match (published, synced) {
        (Ok(i), Ok(())) => i,
        (Err(e), _) => {
            if let Some((d, true)) = &blob {
                let _ = images.content.delete(d);
            }
            return Err(e.into());
        }
        (Ok(_), Err(())) => return Err(io_err("syncfs", std::io::Error::last_os_error())),
    };
    tracing::debug!(
        files = nfiles,
        write_ms = t_written.as_secs_f64() * 1e3,
        total_ms = t0.elapsed().as_secs_f64() * 1e3,
        layer = %info.chain_id,
        "layer diff committed"
    );
    let (blob, media_type) = match (blob, opts.blob) {
        (Some((d, _)), BlobFormat::Gzip) => (Some(d), MEDIA_LAYER_GZIP),
        (Some((d, _)), _) => (Some(d), crate::archive::MEDIA_LAYER_TAR),
        (None, _) => (None, crate::archive::MEDIA_LAYER_TAR),
    };
    Ok(Some(LayerRef {
        blob,
        media_type: media_type.to_string(),
        diff_id: info.diff_id,
        chain_id: info.chain_id,
        size: info.size,
    }))
}

#[cfg(test)]
mod tests;
