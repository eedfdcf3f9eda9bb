//! `docker push`: a local image (by `name[:tag]`, or every tag of a repository) to its registry.
//!
//! Per tag: each layer's compressed blob is made ready (layers stored uncompressed, as `import`
//! and `load` leave them, are gzip-compressed once and the image records then point at the gzip
//! blob, so a second push is cheap and gives the same digests); the registry is asked whether it
//! has the blob (HEAD → "Layer already exists"), else to mount it from another repository of the
//! same registry known to hold it (→ "Mounted from ..."), else it is uploaded in chunks
//! ("Pushing" with progress, then "Pushed"). Then the config blob, then the manifest by tag
//! (Docker schema 2 media types, or OCI for images whose layers came as OCI), and the image's
//! RepoDigest is recorded.
//!
//! Blob sources (which repositories of which registry hold a blob) are remembered in the table
//! [`BLOB_SOURCES_TABLE`]; pushes fill it, and the pull can through [`record_blob_source`].

use std::collections::BTreeSet;
use std::io::{BufReader, Read};
use std::sync::Arc;

use berth_registry::client::push::{Mount, DEFAULT_CHUNK};
use berth_registry::client::{Credentials, RegistryClient, RegistryError, RegistryOptions};
use berth_store::meta::Batch;
use berth_store::Digest;
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::mpsc::Sender;

use super::registries;
use super::{ImageRecord, ImageService, IMAGES_TABLE, TAGS_TABLE};
use crate::reference::Reference;
use crate::{EngineError, Result};

/// Blob digest hex → `["<registry>/<repository>", ...]` that are known to hold it.
pub const BLOB_SOURCES_TABLE: &str = "blob_sources";
/// Diff id hex → the digest of the compressed blob it was last pushed as.
pub const PUSHED_DIFF_IDS_TABLE: &str = "pushed_diff_ids";
/// How many sources are remembered per blob.
const MAX_SOURCES: usize = 8;
/// Layers uploaded at the same time (Docker's max-concurrent-uploads is 5).
const CONCURRENT_UPLOADS: usize = 4;

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// Where progress messages (Docker's JSON-lines objects) go. A closed receiver (the client went
/// away) cancels the push.
pub type Progress = Sender<Value>;

/// A validated push request.
#[derive(Debug, Clone)]
pub struct PushPlan {
    reference: Reference,
    /// Familiar `name:tag` to push; empty means every tag of the repository.
    tag: Option<String>,
    credentials: Credentials,
    options: RegistryOptions,
}

/// Check a push request before anything is streamed (a bad name is a 400). `name` is the
/// image path parameter (a tag in it is used when `tag` is empty), `tag` the query parameter.
pub fn plan(
    name: &str,
    tag: Option<&str>,
    credentials: Credentials,
    options: RegistryOptions,
) -> Result<PushPlan> {
    let mut r = Reference::parse(name)?;
    if r.digest.is_some() {
        return Err(EngineError::InvalidArgument(
            "cannot push a digest reference".to_string(),
        ));
    }
    if let Some(t) = tag.filter(|t| !t.is_empty()) {
        let checked = Reference::parse(&format!("{}:{t}", r.familiar_name()))?;
        r.tag = checked.tag;
    }
    let tag = r.tag.clone();
    Ok(PushPlan {
        reference: r,
        tag,
        credentials,
        options,
    })
}

async fn send(tx: &Progress, v: Value) -> Result<()> {
    tx.send(v)
        .await
        .map_err(|_| EngineError::Internal("push cancelled: the client went away".into()))
}

fn status(s: impl Into<String>) -> Value {
    json!({"status": s.into()})
}

fn layer_status(id: &str, s: &str) -> Value {
    json!({"status": s, "progressDetail": {}, "id": id})
}

/// Docker's `progress` text: `[=====>     ]  1.2MB/5.6MB`.
fn progress_bar(current: u64, total: u64) -> String {
    let width = 50u64;
    let filled = (current.min(total) * width).checked_div(total).unwrap_or(0);
    let mut bar = "=".repeat(filled as usize);
    if filled < width {
        bar.push('>');
        bar.push_str(&" ".repeat((width - filled - 1) as usize));
    }
    format!("[{bar}] {:>8}/{}", human(current), human(total))
}

/// Decimal units, as Docker's progress (`units.HumanSize`).
fn human(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n}B")
    } else {
        format!("{v:.4}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .chars()
            .take(5)
            .collect::<String>()
            .trim_end_matches('.')
            .to_string()
            + units[i]
    }
}

fn registry_error(e: RegistryError, creds: &Credentials) -> EngineError {
    if e.is_denied() && matches!(creds, Credentials::Anonymous) {
        if let RegistryError::Unauthorized(_) = &e {
            return EngineError::Forbidden("no basic auth credentials".to_string());
        }
    }
    match e {
        RegistryError::Http { status: 404, .. } => EngineError::NotFound(e.to_string()),
        e if e.is_denied() => EngineError::Forbidden(e.to_string()),
        e => EngineError::Internal(e.to_string()),
    }
}

/// One layer as pushed: its blob, the blob's size and media type in the manifest.
#[derive(Debug, Clone)]
struct PushBlob {
    digest: Digest,
    size: u64,
    media_type: String,
}

#[derive(Serialize)]
struct DockerDescriptor<'a> {
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    size: u64,
    digest: String,
}

#[derive(Serialize)]
struct OciDescriptor<'a> {
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    digest: String,
    size: u64,
}

#[derive(Serialize)]
struct Manifest<D> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'static str,
    config: D,
    layers: Vec<D>,
}

/// Go's `json.MarshalIndent(v, "", "   ")`, as Docker writes schema 2 manifests.
fn indented<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"   ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    v.serialize(&mut ser)
        .map_err(|e| EngineError::Internal(format!("manifest: {e}")))?;
    Ok(out)
}

/// Whether an image is pushed with OCI media types: when every layer came as an OCI
/// compressed layer (or any is zstd, which schema 2 cannot carry). Images imported, loaded,
/// or pulled as Docker go as Docker schema 2, as the classic Docker engine pushes them.
fn is_oci(rec: &ImageRecord) -> bool {
    let any_zstd = rec.layers.iter().any(|l| l.media_type.ends_with("+zstd"));
    let all_oci = !rec.layers.is_empty()
        && rec
            .layers
            .iter()
            .all(|l| l.media_type == OCI_LAYER_GZIP || l.media_type == OCI_LAYER_ZSTD);
    any_zstd || all_oci
}

/// The manifest of `rec` (bytes, media type).
fn build_manifest(
    rec: &ImageRecord,
    config_size: u64,
    blobs: &[PushBlob],
    oci: bool,
) -> Result<(Vec<u8>, &'static str)> {
    if oci {
        let m = Manifest {
            schema_version: 2,
            media_type: OCI_MANIFEST,
            config: OciDescriptor {
                media_type: OCI_CONFIG,
                digest: rec.id.to_string(),
                size: config_size,
            },
            layers: blobs
                .iter()
                .map(|b| OciDescriptor {
                    media_type: if b.media_type.ends_with("zstd") {
                        OCI_LAYER_ZSTD
                    } else {
                        OCI_LAYER_GZIP
                    },
                    digest: b.digest.to_string(),
                    size: b.size,
                })
                .collect(),
        };
        return Ok((indented(&m)?, OCI_MANIFEST));
    }
    let m = Manifest {
        schema_version: 2,
        media_type: DOCKER_MANIFEST,
        config: DockerDescriptor {
            media_type: DOCKER_CONFIG,
            size: config_size,
            digest: rec.id.to_string(),
        },
        layers: blobs
            .iter()
            .map(|b| DockerDescriptor {
                media_type: DOCKER_LAYER_GZIP,
                size: b.size,
                digest: b.digest.to_string(),
            })
            .collect(),
    };
    Ok((indented(&m)?, DOCKER_MANIFEST))
}

/// Remember that `repository` of `registry` holds `digest` (for later cross-repository mounts).
pub fn record_blob_source(
    images: &ImageService,
    digest: &Digest,
    registry: &str,
    repository: &str,
) -> Result<()> {
    let entry = format!("{registry}/{repository}");
    let _g = super::write_lock();
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
fn mount_candidates(
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
struct CompressGuard(String);

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
enum Source {
    /// A compressed blob in the content store, ready to push.
    Ready(PushBlob),
    /// An uncompressed tar in the content store (`src`), to gzip first.
    Raw { src: Digest, diff_id: Digest },
}

/// Pick the blob of layer `idx` of `rec` (the caller holds its [`CompressGuard`]): the layer's
/// own, else that of another image with the same diff id (a pull skips layers already present
/// and may record none), else the layer directory written again. Blocking.
fn select_source(images: &ImageService, rec: &ImageRecord, idx: usize) -> Result<Source> {
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
fn compressed_blob(images: &ImageService, rec: &ImageRecord, idx: usize) -> Result<PushBlob> {
    let _guard = CompressGuard::acquire(rec.layers[idx].diff_id.hex());
    match select_source(images, rec, idx)? {
        Source::Ready(b) => Ok(b),
        Source::Raw { src, diff_id } => gzip_into_store(images, &src, &diff_id, |_| Ok(())),
    }
}

/// Gzip the stored tar `src` into the content store, handing every compressed chunk to `sink`
/// as it is made (an error from it aborts, nothing stored), then point the layers at the gzip.
fn gzip_into_store(
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
const STREAM_CHUNK: usize = 8 << 20;

/// What the compressing thread hands the uploader.
enum Piece {
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
fn stream_layer(
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
fn pushed_digest_of(images: &ImageService, diff_id: &Digest) -> Option<Digest> {
    images
        .db
        .get::<String>(PUSHED_DIFF_IDS_TABLE, diff_id.hex())
        .ok()
        .flatten()
        .and_then(|s| Digest::parse(&s).ok())
}

/// No stored tar of the layer anywhere: write it again from the layer directory (gzip) and use
/// it only when it reproduces the layer's diff id.
fn blob_from_layer_dir(images: &ImageService, l: &super::LayerRef) -> Result<PushBlob> {
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
fn adopt_blob(
    images: &ImageService,
    diff_id: &Digest,
    old: Option<&Digest>,
    new: &Digest,
    media_type: &str,
) -> Result<()> {
    let _g = super::write_lock();
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

/// Familiar `name:tag` strings of the repository `r`, sorted.
fn tags_of_repository(images: &ImageService, r: &Reference) -> Result<Vec<String>> {
    let name = r.familiar_name();
    let mut out: BTreeSet<String> = BTreeSet::new();
    for (tag, _) in images.db.list::<Digest>(TAGS_TABLE)? {
        if let Ok(t) = Reference::parse(&tag) {
            if t.familiar_name() == name && t.tag.is_some() {
                out.insert(tag);
            }
        }
    }
    Ok(out.into_iter().collect())
}

struct Ctx {
    images: Arc<ImageService>,
    client: RegistryClient,
    credentials: Credentials,
    registry: String,
    repository: String,
    tx: Progress,
}

/// Run a planned push, streaming Docker's progress messages to `tx`. The first message is
/// "The push refers to repository [...]"; errors after it are the caller's to put in-stream.
pub async fn push(images: Arc<ImageService>, plan: PushPlan, tx: Progress) -> Result<()> {
    let r = &plan.reference;
    let target = registries::target(r, &plan.options);
    send(
        &tx,
        status(format!("The push refers to repository [{}]", r.full_name())),
    )
    .await?;
    let tags = match &plan.tag {
        Some(t) => {
            let familiar = format!("{}:{t}", r.familiar_name());
            let all = {
                let im = images.clone();
                let r2 = r.clone();
                blocking(move || tags_of_repository(&im, &r2)).await?
            };
            if all.is_empty() {
                return Err(EngineError::NotFound(format!(
                    "An image does not exist locally with the tag: {}",
                    r.familiar_name()
                )));
            }
            if !all.contains(&familiar) {
                return Err(EngineError::NotFound(format!(
                    "tag does not exist: {familiar}"
                )));
            }
            vec![familiar]
        }
        None => {
            let im = images.clone();
            let r2 = r.clone();
            let all = blocking(move || tags_of_repository(&im, &r2)).await?;
            if all.is_empty() {
                return Err(EngineError::NotFound(format!(
                    "An image does not exist locally with the tag: {}",
                    r.familiar_name()
                )));
            }
            all
        }
    };
    // Pushes never go to mirrors: the registry itself is the last endpoint.
    let Some(endpoint) = target.endpoints.last() else {
        return Err(EngineError::InvalidArgument(format!(
            "no endpoint for registry {}",
            target.registry
        )));
    };
    let client = RegistryClient::new(endpoint, plan.credentials.clone())
        .map_err(|e| registry_error(e, &plan.credentials))?;
    let ctx = Arc::new(Ctx {
        images,
        client,
        credentials: plan.credentials.clone(),
        registry: target.registry.clone(),
        repository: target.repository.clone(),
        tx,
    });
    for t in tags {
        push_tag(&ctx, &t).await?;
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| EngineError::Internal(e.to_string()))?
}

async fn push_tag(ctx: &Arc<Ctx>, familiar: &str) -> Result<()> {
    let im = ctx.images.clone();
    let name = familiar.to_string();
    let rec = blocking(move || im.resolve(&name)).await?;
    let tag = familiar
        .rsplit_once(':')
        .map(|(_, t)| t)
        .unwrap_or("latest");
    let oci = is_oci(&rec);
    // Top-most layer first, as Docker lists them.
    let order: Vec<usize> = (0..rec.layers.len()).rev().collect();
    for &i in &order {
        send(
            &ctx.tx,
            layer_status(rec.layers[i].diff_id.short(), "Preparing"),
        )
        .await?;
    }
    let rec = Arc::new(rec);
    let results: Vec<Result<(usize, PushBlob)>> = futures_util::stream::iter(order.clone())
        .map(|i| {
            let ctx = ctx.clone();
            let rec = rec.clone();
            async move { push_layer(&ctx, &rec, i).await.map(|b| (i, b)) }
        })
        .buffer_unordered(CONCURRENT_UPLOADS)
        .collect()
        .await;
    let mut blobs: Vec<Option<PushBlob>> = vec![None; rec.layers.len()];
    for r in results {
        let (i, b) = r?;
        blobs[i] = Some(b);
    }
    let blobs: Vec<PushBlob> = blobs.into_iter().flatten().collect();
    // The config.
    let im = ctx.images.clone();
    let id = rec.id.clone();
    let config = Bytes::from(blocking(move || Ok(im.content.read(&id)?)).await?);
    let creds = &ctx.credentials;
    let id_s = rec.id.to_string();
    let have = ctx
        .client
        .blob_exists(&ctx.repository, &id_s)
        .await
        .map_err(|e| registry_error(e, creds))?;
    if have.is_none() {
        ctx.client
            .push_blob_bytes(&ctx.repository, &id_s, config.clone())
            .await
            .map_err(|e| registry_error(e, creds))?;
    }
    // The manifest, by tag.
    let (manifest, media_type) = build_manifest(&rec, config.len() as u64, &blobs, oci)?;
    let digest = Digest::of(&manifest);
    let size = manifest.len();
    ctx.client
        .put_manifest(
            &ctx.repository,
            tag,
            media_type,
            Bytes::from(manifest),
            &digest.to_string(),
        )
        .await
        .map_err(|e| registry_error(e, creds))?;
    let im = ctx.images.clone();
    let id = rec.id.clone();
    let familiar_name = familiar
        .rsplit_once(':')
        .map(|(n, _)| n)
        .unwrap_or(familiar)
        .to_string();
    let rd = format!("{familiar_name}@{digest}");
    let (registry, repository) = (ctx.registry.clone(), ctx.repository.clone());
    let sources: Vec<(Digest, Digest)> = blobs
        .iter()
        .zip(rec.layers.iter())
        .map(|(b, l)| (b.digest.clone(), l.diff_id.clone()))
        .collect();
    blocking(move || {
        im.add_repo_digest(&id, &rd)?;
        record_blob_source(&im, &id, &registry, &repository)?;
        let mut b = Batch::default();
        for (d, diff_id) in &sources {
            record_blob_source(&im, d, &registry, &repository)?;
            b.put(PUSHED_DIFF_IDS_TABLE, diff_id.hex(), &d.to_string())?;
        }
        im.db.write(b)?;
        Ok(())
    })
    .await?;
    send(
        &ctx.tx,
        status(format!("{tag}: digest: {digest} size: {size}")),
    )
    .await?;
    send(
        &ctx.tx,
        json!({"progressDetail": {}, "aux": {"Tag": tag, "Digest": digest.to_string(), "Size": size}}),
    )
    .await?;
    Ok(())
}

/// Push one layer: exists, mount, or upload; a layer stored uncompressed is gzipped and
/// uploaded at the same time (its digest is known only at the end, so no HEAD or mount first,
/// as Docker without a digest mapping).
async fn push_layer(ctx: &Arc<Ctx>, rec: &Arc<ImageRecord>, idx: usize) -> Result<PushBlob> {
    let id = rec.layers[idx].diff_id.short().to_string();
    let creds = &ctx.credentials;
    // Pushed before as a digest the registry still has: nothing to compress or send.
    let (im, diff_id) = (ctx.images.clone(), rec.layers[idx].diff_id.clone());
    if let Some(d) = blocking(move || Ok(pushed_digest_of(&im, &diff_id))).await? {
        let local = ctx.images.content.exists(&d);
        if !local {
            if let Some(size) = ctx
                .client
                .blob_exists(&ctx.repository, &d.to_string())
                .await
                .map_err(|e| registry_error(e, creds))?
            {
                send(&ctx.tx, layer_status(&id, "Layer already exists")).await?;
                return Ok(PushBlob {
                    digest: d,
                    size,
                    media_type: DOCKER_LAYER_GZIP.to_string(),
                });
            }
        }
    }
    let (ptx, mut prx) = tokio::sync::mpsc::channel::<Result<Piece>>(1);
    let (im, r2) = (ctx.images.clone(), rec.clone());
    let worker = tokio::task::spawn_blocking(move || {
        if let Err(e) = stream_layer(&im, &r2, idx, &ptx) {
            let _ = ptx.blocking_send(Err(e));
        }
    });
    let first = match prx.recv().await {
        Some(p) => p?,
        None => {
            let _ = worker.await;
            return Err(EngineError::Internal(
                "push: the layer reader stopped".into(),
            ));
        }
    };
    let (mut data, mut done, mut total) = match first {
        Piece::Ready(blob) => return push_ready_layer(ctx, &id, blob).await,
        Piece::Done(blob) => return upload_whole(ctx, &id, blob).await,
        Piece::Chunk(d, n, t) => (d, n, t),
    };
    let mut loc = ctx
        .client
        .start_upload(&ctx.repository)
        .await
        .map_err(|e| registry_error(e, creds))?;
    let mut offset = 0u64;
    loop {
        let len = data.len() as u64;
        loc = ctx
            .client
            .patch_chunk(&ctx.repository, &loc, offset, data)
            .await
            .map_err(|e| registry_error(e, creds))?;
        offset += len;
        send(
            &ctx.tx,
            json!({
                "status": "Pushing",
                "progressDetail": {"current": done, "total": total},
                "progress": progress_bar(done, total),
                "id": id,
            }),
        )
        .await?;
        match prx.recv().await {
            Some(Ok(Piece::Chunk(d, n, t))) => (data, done, total) = (d, n, t),
            Some(Ok(Piece::Done(blob))) => {
                ctx.client
                    .finish_upload(
                        &ctx.repository,
                        &loc,
                        &blob.digest.to_string(),
                        Bytes::new(),
                    )
                    .await
                    .map_err(|e| registry_error(e, creds))?;
                send(&ctx.tx, layer_status(&id, "Pushed")).await?;
                return Ok(blob);
            }
            Some(Ok(Piece::Ready(_))) => {
                return Err(EngineError::Internal("push: unexpected layer state".into()))
            }
            Some(Err(e)) => return Err(e),
            None => {
                return Err(EngineError::Internal(
                    "push: the layer compressor stopped".into(),
                ))
            }
        }
    }
}

/// A layer compressed in one piece (small): upload it whole.
async fn upload_whole(ctx: &Arc<Ctx>, id: &str, blob: PushBlob) -> Result<PushBlob> {
    upload_blob(ctx, id, blob, None).await
}

/// A layer with a known compressed blob: exists, mount, or upload.
async fn push_ready_layer(ctx: &Arc<Ctx>, id: &str, blob: PushBlob) -> Result<PushBlob> {
    let creds = &ctx.credentials;
    let d = blob.digest.to_string();
    if ctx
        .client
        .blob_exists(&ctx.repository, &d)
        .await
        .map_err(|e| registry_error(e, creds))?
        .is_some()
    {
        send(&ctx.tx, layer_status(id, "Layer already exists")).await?;
        return Ok(blob);
    }
    let mut session = None;
    let (im, dg, reg, repo) = (
        ctx.images.clone(),
        blob.digest.clone(),
        ctx.registry.clone(),
        ctx.repository.clone(),
    );
    let candidates = blocking(move || Ok(mount_candidates(&im, &dg, &reg, &repo))).await?;
    for from in candidates {
        match ctx.client.mount_blob(&ctx.repository, &d, &from).await {
            Ok(Mount::Mounted) => {
                send(&ctx.tx, layer_status(id, &format!("Mounted from {from}"))).await?;
                return Ok(blob);
            }
            Ok(Mount::Upload(loc)) => {
                session = Some(loc);
                break;
            }
            Err(e) => {
                tracing::debug!(blob = %d, from = %from, error = %e, "mount failed");
            }
        }
    }
    upload_blob(ctx, id, blob, session).await
}

/// Upload a stored compressed blob in chunks, with progress.
async fn upload_blob(
    ctx: &Arc<Ctx>,
    id: &str,
    blob: PushBlob,
    session: Option<String>,
) -> Result<PushBlob> {
    let creds = &ctx.credentials;
    let file = ctx.images.content.open_blob(&blob.digest)?;
    let file = tokio::fs::File::from_std(file);
    let total = blob.size;
    let tx = ctx.tx.clone();
    let id2 = id.to_string();
    ctx.client
        .push_blob(
            &ctx.repository,
            session,
            &blob.digest.to_string(),
            total,
            file,
            DEFAULT_CHUNK,
            move |sent| {
                let tx = tx.clone();
                let id = id2.clone();
                async move {
                    let _ = tx
                        .send(json!({
                            "status": "Pushing",
                            "progressDetail": {"current": sent, "total": total},
                            "progress": progress_bar(sent, total),
                            "id": id,
                        }))
                        .await;
                }
            },
        )
        .await
        .map_err(|e| registry_error(e, creds))?;
    send(&ctx.tx, layer_status(id, "Pushed")).await?;
    Ok(blob)
}

#[cfg(test)]
#[path = "push_tests.rs"]
mod tests;
