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
use std::sync::Arc;

use berth_registry::client::push::{Mount, DEFAULT_CHUNK};
use berth_registry::client::{Credentials, RegistryClient, RegistryError, RegistryOptions};
use berth_store::meta::Batch;
use berth_store::Digest;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::mpsc::Sender;

use super::registries;
use super::{ImageRecord, ImageService, TAGS_TABLE};
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
    // Layers queued behind the concurrent uploads, as Docker shows them.
    for &i in order.iter().skip(CONCURRENT_UPLOADS) {
        send(
            &ctx.tx,
            layer_status(rec.layers[i].diff_id.short(), "Waiting"),
        )
        .await?;
    }
    // Repositories of this registry the image was pulled from (its RepoDigests) hold all its
    // blobs: mount candidates besides the blob-source table.
    let hints: Arc<Vec<String>> = Arc::new(
        rec.repo_digests
            .iter()
            .filter_map(|rd| Reference::parse(rd).ok())
            .filter(|r| r.domain == ctx.registry)
            .map(|r| registries::target(&r, &RegistryOptions::default()).repository)
            .collect(),
    );
    let rec = Arc::new(rec);
    // The first failure stops the push (the other uploads are dropped).
    let results: Vec<(usize, PushBlob)> = futures_util::stream::iter(order.clone())
        .map(|i| {
            let ctx = ctx.clone();
            let rec = rec.clone();
            let hints = hints.clone();
            async move { push_layer(&ctx, &rec, i, &hints).await.map(|b| (i, b)) }
        })
        .buffer_unordered(CONCURRENT_UPLOADS)
        .try_collect()
        .await?;
    let mut blobs: Vec<Option<PushBlob>> = vec![None; rec.layers.len()];
    for (i, b) in results {
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
async fn push_layer(
    ctx: &Arc<Ctx>,
    rec: &Arc<ImageRecord>,
    idx: usize,
    hints: &[String],
) -> Result<PushBlob> {
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
        Piece::Ready(blob) => return push_ready_layer(ctx, &id, blob, hints).await,
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
async fn push_ready_layer(
    ctx: &Arc<Ctx>,
    id: &str,
    blob: PushBlob,
    hints: &[String],
) -> Result<PushBlob> {
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
    let mut candidates = blocking(move || Ok(mount_candidates(&im, &dg, &reg, &repo))).await?;
    for h in hints {
        if *h != ctx.repository && !candidates.contains(h) {
            candidates.push(h.clone());
        }
    }
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

#[path = "push_blobs.rs"]
mod blobs;
pub use blobs::record_blob_source;
use blobs::*;

#[cfg(test)]
#[path = "push_tests.rs"]
mod tests;
