//! The blobs of a push: which stored blob a layer goes up as (its own, another image's with the
//! same diff id, or the layer directory written again), gzip of layers stored uncompressed
//! (streamed to the uploader while it is written to the content store, then adopted by every
//! record naming the tar), the diff-id → digest mapping of earlier pushes, and the table of
//! repositories known to hold a blob (for cross-repository mounts).

use std::collections::BTreeSet;
use std::io::{BufReader, Read};
use std::sync::Arc;

use berth_store::meta::Batch;
use berth_store::Digest;
use bytes::Bytes;
use tokio::sync::mpsc::Sender;

use super::{PushBlob, BLOB_SOURCES_TABLE, DOCKER_LAYER_GZIP, MAX_SOURCES, PUSHED_DIFF_IDS_TABLE};
use crate::images::{ImageRecord, ImageService, LayerRef, IMAGES_TABLE};
use crate::{EngineError, Result};

/// Remember that `repository` of `registry` holds `digest` (for later cross-repository mounts).
pub fn record_blob_source(
    images: &ImageService,
    digest: &Digest,
    registry: &str,
    repository: &str,
) -> Result<()> {
    let entry = format!("{registry}/{repository}");
    let _g = crate::images::write_lock();
    let mut v: Vec<String> = images
        .db
        .get(BLOB_SOURCES_TABLE, digest.hex())?
        .unwrap_or_default();
    if v.first() == Some(&entry) {
        return Ok(());
    }
    v.retain(|x| x != &entry);
    v.insert(0, entry);
    v.truncate(MAX_SOURCES);
    images.db.put(BLOB_SOURCES_TABLE, digest.hex(), &v)?;
    Ok(())
}

/// Repositories of `registry` other than `repository` known to hold `digest`.
pub(super) fn mount_candidates(
    images: &ImageService,
    digest: &Digest,
    registry: &str,
    repository: &str,
) -> Vec<String> {
    let v: Vec<String> = images
        .db
        .get(BLOB_SOURCES_TABLE, digest.hex())
        .ok()
        .flatten()
        .unwrap_or_default();
    let prefix = format!("{registry}/");
    v.into_iter()
        .filter_map(|s| s.strip_prefix(&prefix).map(str::to_string))
        .filter(|r| r != repository)
        .collect()
}

/// Diff ids being compressed right now (so two pushes of one layer compress it once).
static COMPRESSING: std::sync::Mutex<BTreeSet<String>> = std::sync::Mutex::new(BTreeSet::new());
static COMPRESSED: std::sync::Condvar = std::sync::Condvar::new();

/// Holds a diff id in [`COMPRESSING`] until dropped.
pub(super) struct CompressGuard(String);

impl CompressGuard {
    fn acquire(key: &str) -> CompressGuard {
        let mut set = COMPRESSING.lock().unwrap_or_else(|e| e.into_inner());
        while set.contains(key) {
            set = COMPRESSED.wait(set).unwrap_or_else(|e| e.into_inner());
        }
        set.insert(key.to_string());
        CompressGuard(key.to_string())
    }
}

impl Drop for CompressGuard {
    fn drop(&mut self) {
        let mut set = COMPRESSING.lock().unwrap_or_else(|e| e.into_inner());
        set.remove(&self.0);
        COMPRESSED.notify_all();
    }
}

/// Where a layer's blob comes from.
pub(super) enum Source {
    /// A compressed blob in the content store, ready to push.
    Ready(PushBlob),
    /// An uncompressed tar in the content store (`src`), to gzip first.
    Raw { src: Digest, diff_id: Digest },
}

/// Pick the blob of layer `idx` of `rec` (the caller holds its [`CompressGuard`]): the layer's
/// own, else that of another image with the same diff id (a pull skips layers already present
/// and may record none), else the layer directory written again. Blocking.
pub(super) fn select_source(
    images: &ImageService,
    rec: &ImageRecord,
    idx: usize,
) -> Result<Source> {
    let wanted = &rec.layers[idx];
    // The current record: another push may have compressed the layer since `rec` was read.
    let l = images
        .get_raw(&rec.id)?
        .and_then(|c| c.layers.into_iter().find(|c| c.diff_id == wanted.diff_id))
        .unwrap_or_else(|| wanted.clone());
    let own = l.blob.clone().filter(|b| images.content.exists(b));
    let (src, media) = match own.clone() {
        Some(b) => (b, l.media_type.clone()),
        None => match blob_of_diff_id(images, &l.diff_id)? {
            Some(found) => found,
            None => return blob_from_layer_dir(images, &l).map(Source::Ready),
        },
    };
    let mut f = BufReader::new(images.content.open_blob(&src)?);
    if berth_store::compress::detect(&mut f)? == berth_store::compress::Compression::None {
        // Another image may hold this layer compressed already (an earlier push): use that.
        if let Some((gz, media)) = compressed_blob_of_diff_id(images, &l.diff_id)? {
            adopt_blob(images, &l.diff_id, Some(&src), &gz, &media)?;
            return Ok(Source::Ready(PushBlob {
                size: images.content.size(&gz)?,
                digest: gz,
                media_type: media,
            }));
        }
        return Ok(Source::Raw {
            src,
            diff_id: l.diff_id.clone(),
        });
    }
    let size = images.content.size(&src)?;
    if own.as_ref() != Some(&src) {
        adopt_blob(images, &l.diff_id, None, &src, &media)?;
    }
    Ok(Source::Ready(PushBlob {
        digest: src,
        size,
        media_type: media,
    }))
}

/// The compressed blob of layer `idx` of `rec`: the stored one when it is compressed, else a
/// gzip of the stored tar, made once (then every image record using the tar points at the
/// gzip). Blocking. (The push itself streams: [`stream_layer`].)
#[cfg(test)]
pub(super) fn compressed_blob(
    images: &ImageService,
    rec: &ImageRecord,
    idx: usize,
) -> Result<PushBlob> {
    let _guard = CompressGuard::acquire(rec.layers[idx].diff_id.hex());
    match select_source(images, rec, idx)? {
        Source::Ready(b) => Ok(b),
        Source::Raw { src, diff_id } => gzip_into_store(images, &src, &diff_id, |_| Ok(())),
    }
}

/// Gzip the stored tar `src` into the content store, handing every compressed chunk to `sink`
/// as it is made (an error from it aborts, nothing stored), then point the layers at the gzip.
pub(super) fn gzip_into_store(
    images: &ImageService,
    src: &Digest,
    diff_id: &Digest,
    sink: impl FnMut(Piece) -> Result<()>,
) -> Result<PushBlob> {
    let total = images.content.size(src)?;
    let file = BufReader::with_capacity(256 << 10, images.content.open_blob(src)?);
    let counted = Counted {
        inner: file,
        n: Arc::new(std::sync::atomic::AtomicU64::new(0)),
    };
    let consumed = counted.n.clone();
    let enc = flate2::read::GzEncoder::new(counted, flate2::Compression::fast());
    let mut tee = Tee {
        inner: enc,
        buf: Vec::with_capacity(STREAM_CHUNK),
        sink,
        consumed,
        total,
        failed: None,
    };
    let res = images.content.ingest(&mut tee, None);
    if let Some(e) = tee.failed.take() {
        return Err(e);
    }
    let (gz, size) = res?;
    adopt_blob(images, diff_id, Some(src), &gz, DOCKER_LAYER_GZIP)?;
    Ok(PushBlob {
        digest: gz,
        size,
        media_type: DOCKER_LAYER_GZIP.to_string(),
    })
}

/// Compressed bytes per chunk of a streamed (compress-while-uploading) layer.
pub(super) const STREAM_CHUNK: usize = 8 << 20;

/// What the compressing thread hands the uploader.
pub(super) enum Piece {
    /// Compressed bytes, with (uncompressed bytes read, uncompressed total) for progress.
    Chunk(Bytes, u64, u64),
    /// The blob is complete and stored (all chunks were sent before).
    Done(PushBlob),
    /// Nothing to compress: the layer already has this compressed blob.
    Ready(PushBlob),
}

/// A reader counting the bytes read through it.
struct Counted<R> {
    inner: R,
    n: Arc<std::sync::atomic::AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n
            .fetch_add(k as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(k)
    }
}

/// A reader that also hands what passes through it to a sink, in chunks of [`STREAM_CHUNK`].
struct Tee<R, F> {
    inner: R,
    buf: Vec<u8>,
    sink: F,
    consumed: Arc<std::sync::atomic::AtomicU64>,
    total: u64,
    failed: Option<EngineError>,
}

impl<R: Read, F: FnMut(Piece) -> Result<()>> Tee<R, F> {
    fn flush_chunk(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(STREAM_CHUNK),
        ));
        let done = self.consumed.load(std::sync::atomic::Ordering::Relaxed);
        if let Err(e) = (self.sink)(Piece::Chunk(data, done, self.total)) {
            let msg = e.to_string();
            self.failed = Some(e);
            return Err(std::io::Error::other(msg));
        }
        Ok(())
    }
}

impl<R: Read, F: FnMut(Piece) -> Result<()>> Read for Tee<R, F> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let k = self.inner.read(out)?;
        if k == 0 {
            self.flush_chunk()?;
            return Ok(0);
        }
        self.buf.extend_from_slice(&out[..k]);
        if self.buf.len() >= STREAM_CHUNK {
            self.flush_chunk()?;
        }
        Ok(k)
    }
}

/// The compressing side of a streamed layer push (a blocking thread): sends the chunks, then
/// `Done`, or `Ready` when the layer needs no compression.
pub(super) fn stream_layer(
    images: &ImageService,
    rec: &ImageRecord,
    idx: usize,
    tx: &Sender<Result<Piece>>,
) -> Result<()> {
    let _guard = CompressGuard::acquire(rec.layers[idx].diff_id.hex());
    let send = |p: Piece| {
        tx.blocking_send(Ok(p))
            .map_err(|_| EngineError::Internal("push cancelled".into()))
    };
    match select_source(images, rec, idx)? {
        Source::Ready(b) => send(Piece::Ready(b)),
        Source::Raw { src, diff_id } => {
            let b = gzip_into_store(images, &src, &diff_id, send)?;
            send(Piece::Done(b))
        }
    }
}

/// A stored blob (and its media type) of any image's layer with this diff id.
fn blob_of_diff_id(images: &ImageService, diff_id: &Digest) -> Result<Option<(Digest, String)>> {
    for (_, r) in images.db.list::<ImageRecord>(IMAGES_TABLE)? {
        for l in r.layers {
            if l.diff_id != *diff_id {
                continue;
            }
            if let Some(b) = l.blob.filter(|b| images.content.exists(b)) {
                return Ok(Some((b, l.media_type)));
            }
        }
    }
    Ok(None)
}

/// A stored compressed blob of any image's layer with this diff id.
fn compressed_blob_of_diff_id(
    images: &ImageService,
    diff_id: &Digest,
) -> Result<Option<(Digest, String)>> {
    for (_, r) in images.db.list::<ImageRecord>(IMAGES_TABLE)? {
        for l in r.layers {
            if l.diff_id != *diff_id {
                continue;
            }
            let Some(b) = l.blob.filter(|b| images.content.exists(b)) else {
                continue;
            };
            let mut f = BufReader::new(images.content.open_blob(&b)?);
            if berth_store::compress::detect(&mut f)? != berth_store::compress::Compression::None {
                return Ok(Some((b, l.media_type)));
            }
        }
    }
    Ok(None)
}

/// The compressed digest a layer was last pushed as (Docker's diff id → digest mapping).
pub(super) fn pushed_digest_of(images: &ImageService, diff_id: &Digest) -> Option<Digest> {
    images
        .db
        .get::<String>(PUSHED_DIFF_IDS_TABLE, diff_id.hex())
        .ok()
        .flatten()
        .and_then(|s| Digest::parse(&s).ok())
}

/// No stored tar of the layer anywhere: write it again from the layer directory (gzip) and use
/// it only when it reproduces the layer's diff id.
fn blob_from_layer_dir(images: &ImageService, l: &LayerRef) -> Result<PushBlob> {
    use std::io::{Seek, Write};
    let dir = images.layers.dir(&l.chain_id);
    let cant = |why: String| {
        EngineError::Internal(format!(
            "layer {} cannot be pushed: no stored blob, and {why}",
            l.diff_id
        ))
    };
    std::fs::create_dir_all(&images.tmp_dir)?;
    let mut tmp = tempfile_in(&images.tmp_dir)?;
    let (diff_id, _) = {
        let mut gz = flate2::write::GzEncoder::new(&mut tmp, flate2::Compression::fast());
        let res = crate::layerdiff::write_diff(&dir, &mut gz)
            .map_err(|e| cant(format!("its directory cannot be read: {e}")))?;
        gz.finish()?;
        res
    };
    if diff_id != l.diff_id {
        return Err(cant(format!(
            "its directory gives the diff id {diff_id} instead"
        )));
    }
    tmp.flush()?;
    tmp.rewind()?;
    let (gz, size) = images.content.ingest(&mut tmp, None)?;
    adopt_blob(images, &l.diff_id, None, &gz, DOCKER_LAYER_GZIP)?;
    Ok(PushBlob {
        digest: gz,
        size,
        media_type: DOCKER_LAYER_GZIP.to_string(),
    })
}

/// An anonymous temp file in `dir` (gone when closed).
fn tempfile_in(dir: &std::path::Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    Ok(std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC)
        .open(dir)?)
}

/// Point the layers with `diff_id` that are stored as `old` (an uncompressed tar) or have no
/// usable blob at `new`; then drop `old` when nothing names it any more.
pub(super) fn adopt_blob(
    images: &ImageService,
    diff_id: &Digest,
    old: Option<&Digest>,
    new: &Digest,
    media_type: &str,
) -> Result<()> {
    let _g = crate::images::write_lock();
    let mut b = Batch::default();
    let mut changed = false;
    let mut old_used = false;
    for (key, mut r) in images.db.list::<ImageRecord>(IMAGES_TABLE)? {
        let mut touched = false;
        for l in r.layers.iter_mut() {
            let stale = match &l.blob {
                None => true,
                Some(b) => Some(b) == old || (b != new && !images.content.exists(b)),
            };
            if l.diff_id == *diff_id && stale {
                l.blob = Some(new.clone());
                l.media_type = media_type.to_string();
                touched = true;
            } else if l.blob.is_some() && l.blob.as_ref() == old {
                old_used = true;
            }
        }
        if touched {
            b.put(IMAGES_TABLE, &key, &r)?;
            changed = true;
        }
    }
    if changed {
        images.db.write(b)?;
    }
    if let (Some(old), false) = (old, old_used) {
        images.content.delete(old)?;
    }
    Ok(())
}
