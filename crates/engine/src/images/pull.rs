//! `docker pull`: resolve a reference on its registry (mirrors first for docker.io), pick the
//! platform's manifest from an index, fetch and verify the config, then download the missing layers
//! in parallel while unpacking them in order as they arrive (see [`spool`]). Every blob is verified
//! against its digest while it streams, every layer against its diff id; the blobs, the config and
//! the image record are stored only when everything checked out (a failed or interrupted pull
//! leaves temp files that the next start removes). Progress is sent as Docker's JSON messages.

mod spool;
mod unpack;

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_registry::client::manifest::{self, Descriptor, Fetched, Manifest, Platform};
use berth_registry::client::{Credentials, RegistryClient, RegistryError, RegistryOptions};
use berth_store::layers::chain_id;
use berth_store::Digest;
use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedSender;

use super::registries::{engine_error, target, Target};
use super::{ImageService, LayerRef};
use crate::reference::Reference;
use crate::{EngineError, Result};
use spool::{Spool, SpoolWriter};

/// Layers downloaded at the same time (dockerd's max-concurrent-downloads default is 3).
pub const MAX_CONCURRENT_DOWNLOADS: usize = 4;
/// Image configs larger than this are refused.
const MAX_CONFIG_SIZE: u64 = 16 << 20;
/// Index → manifest nesting followed.
const MAX_INDEX_DEPTH: usize = 3;
/// Progress updates per layer are sent at most this often.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// What to pull (the query of `POST /images/create?fromImage=&tag=&platform=`).
#[derive(Debug, Clone, Default)]
pub struct PullRequest {
    pub from_image: String,
    /// A tag or a digest; None (or empty) with an untagged `from_image` pulls every tag.
    pub tag: Option<String>,
    /// `os/arch[/variant]`; None: the engine's platform.
    pub platform: Option<String>,
    pub credentials: Credentials,
}

/// Progress messages (Docker's JSONMessage objects) go here.
pub type ProgressTx = UnboundedSender<Value>;

fn send(tx: &ProgressTx, v: Value) {
    let _ = tx.send(v);
}

fn status(tx: &ProgressTx, s: &str) {
    send(tx, json!({ "status": s }));
}

fn layer_status(tx: &ProgressTx, id: &str, s: &str) {
    send(tx, json!({ "status": s, "progressDetail": {}, "id": id }));
}

fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        return format!("{n}B");
    }
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}{}", UNITS[u])
}

/// The `progress` string of a JSONMessage (`[=====>     ]  1.2MB/3.4MB`), for old clients.
fn bar(current: u64, total: u64) -> String {
    if total == 0 {
        return human(current);
    }
    let width = 50u64;
    let filled = (current.min(total) * width / total) as usize;
    let mut b = "=".repeat(filled);
    if filled < width as usize {
        b.push('>');
        b.push_str(&" ".repeat(width as usize - filled - 1));
    }
    format!("[{b}] {:>8}/{}", human(current), human(total))
}

fn progress(tx: &ProgressTx, id: &str, s: &str, current: u64, total: u64) {
    send(
        tx,
        json!({
            "status": s,
            "progressDetail": { "current": current, "total": total },
            "progress": bar(current, total),
            "id": id,
        }),
    );
}

/// Parse fromImage + tag into the references to pull; `Ok(None)` means "all tags of this repo".
pub fn parse_request(req: &PullRequest) -> Result<(Reference, bool)> {
    let mut r = Reference::parse(&req.from_image)?;
    match req.tag.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) if t.contains(':') => {
            // A digest given as the tag (the CLI does this for name@digest).
            Reference::parse(&format!("{}@{t}", r.familiar_name()))?;
            r.digest = Some(t.to_string());
            r.tag = None;
            Ok((r, false))
        }
        Some(t) => {
            let tagged = Reference::parse(&format!("{}:{t}", r.familiar_name()))?;
            r.tag = tagged.tag;
            Ok((r, false))
        }
        None => {
            let all = r.tag.is_none() && r.digest.is_none();
            Ok((r, all))
        }
    }
}

struct Ctx<'a> {
    images: &'a Arc<ImageService>,
    target: Target,
    client: RegistryClient,
    platform: Option<Platform>,
    tx: ProgressTx,
}

/// Pull `req`. Progress goes to `tx`; the error (if any) is returned (the caller decides whether
/// it becomes an HTTP error or an error message in the stream).
pub async fn pull(
    images: Arc<ImageService>,
    opts: RegistryOptions,
    req: PullRequest,
    tx: ProgressTx,
) -> Result<()> {
    let (reference, all_tags) = parse_request(&req)?;
    let platform = match &req.platform {
        Some(p) if !p.trim().is_empty() => Some(Platform::parse(p).ok_or_else(|| {
            EngineError::InvalidArgument(format!(
                "\"{p}\": unknown operating system or architecture: invalid argument"
            ))
        })?),
        _ => None,
    };
    let t = target(&reference, &opts);
    let familiar = reference.familiar_name();
    // The first endpoint that knows the reference (mirrors may fail: then the next one).
    let first_ref = if all_tags {
        None
    } else {
        Some(
            reference
                .digest
                .clone()
                .or(reference.tag.clone())
                .unwrap_or_else(|| "latest".into()),
        )
    };
    let mut last_err = None;
    let mut chosen = None;
    // Each endpoint, and for insecure registries its other scheme when one fails to connect.
    let attempts: Vec<_> = t
        .endpoints
        .iter()
        .flat_map(|ep| opts.candidates(ep))
        .collect();
    for (i, ep) in attempts.iter().enumerate() {
        let more = i + 1 < attempts.len();
        let creds = if ep.mirror {
            Credentials::Anonymous
        } else {
            req.credentials.clone()
        };
        let client = match RegistryClient::new(ep, creds) {
            Ok(c) => c,
            Err(e) => {
                last_err = Some(e);
                continue;
            }
        };
        let probe = match &first_ref {
            Some(r) => client
                .get_manifest(&t.repository, r)
                .await
                .map(|m| (Some(m), Vec::new())),
            None => client.tags(&t.repository).await.map(|tags| (None, tags)),
        };
        match probe {
            Ok(p) => {
                chosen = Some((client, p));
                break;
            }
            Err(e) if ep.mirror => {
                tracing::info!(mirror = %ep.base(), error = %e, "mirror failed, trying the next endpoint");
                last_err = Some(e);
            }
            Err(e @ RegistryError::Transport(_)) if more => {
                tracing::debug!(endpoint = %ep.base(), error = %e, "trying the next endpoint");
                last_err = Some(e);
            }
            Err(e) => {
                last_err = Some(e);
                break;
            }
        }
    }
    let Some((client, (fetched, tags))) = chosen else {
        let e = last_err.unwrap_or_else(|| RegistryError::Protocol("no endpoint".into()));
        return Err(engine_error(e, &reference.familiar_tagged(), &familiar));
    };
    let ctx = Ctx {
        images: &images,
        target: t,
        client,
        platform,
        tx,
    };
    if let Some(m) = fetched {
        let outcome = pull_one(&ctx, &reference, m).await?;
        status(&ctx.tx, &format!("Digest: {}", outcome.digest));
        let what = match (&reference.tag, &reference.digest) {
            (_, Some(d)) => format!("{familiar}@{d}"),
            (Some(t), None) => format!("{familiar}:{t}"),
            (None, None) => format!("{familiar}:latest"),
        };
        let verb = if outcome.up_to_date {
            "Image is up to date for"
        } else {
            "Downloaded newer image for"
        };
        status(&ctx.tx, &format!("Status: {verb} {what}"));
        return Ok(());
    }
    // All tags.
    let mut tags = tags;
    tags.sort();
    if tags.is_empty() {
        return Err(EngineError::NotFound(format!(
            "repository {familiar} has no tags"
        )));
    }
    let mut any_new = false;
    for tag in tags {
        let mut r = reference.clone();
        r.tag = Some(tag.clone());
        r.digest = None;
        if Reference::parse(&format!("{familiar}:{tag}")).is_err() {
            continue;
        }
        let m = ctx
            .client
            .get_manifest(&ctx.target.repository, &tag)
            .await
            .map_err(|e| engine_error(e, &r.familiar_tagged(), &familiar))?;
        let outcome = pull_one(&ctx, &r, m).await?;
        status(&ctx.tx, &format!("Digest: {}", outcome.digest));
        any_new |= !outcome.up_to_date;
    }
    let verb = if any_new {
        "Downloaded newer image for"
    } else {
        "Image is up to date for"
    };
    status(&ctx.tx, &format!("Status: {verb} {familiar}"));
    Ok(())
}

struct Outcome {
    /// The digest of the top manifest (index or image manifest): what RepoDigests records.
    digest: String,
    up_to_date: bool,
}

fn reg_err(e: RegistryError, r: &Reference) -> EngineError {
    engine_error(e, &r.familiar_tagged(), &r.familiar_name())
}

/// Follow an index down to the platform's image manifest.
async fn resolve(ctx: &Ctx<'_>, r: &Reference, top: Fetched) -> Result<manifest::ImageManifest> {
    let want = ctx.platform.clone().unwrap_or_else(Platform::host);
    let mut cur = top;
    for _ in 0..=MAX_INDEX_DEPTH {
        match cur.manifest {
            Manifest::Image(m) => return Ok(m),
            Manifest::Index { manifests, .. } => {
                let d = manifest::choose(&manifests, &want).ok_or_else(|| {
                    EngineError::NotFound(
                        RegistryError::NoMatchingPlatform(want.to_string()).to_string(),
                    )
                })?;
                cur = ctx
                    .client
                    .get_manifest(&ctx.target.repository, &d.digest)
                    .await
                    .map_err(|e| reg_err(e, r))?;
            }
        }
    }
    Err(EngineError::InvalidArgument(
        "invalid manifest: indexes nested too deep".into(),
    ))
}

#[derive(serde::Deserialize)]
struct ConfigHead {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    variant: Option<String>,
    rootfs: RootFs,
}

#[derive(serde::Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

async fn fetch_config(ctx: &Ctx<'_>, r: &Reference, d: &Descriptor) -> Result<Vec<u8>> {
    if d.size as u64 > MAX_CONFIG_SIZE {
        return Err(EngineError::InvalidArgument(format!(
            "image config {} is larger than {MAX_CONFIG_SIZE} bytes",
            d.digest
        )));
    }
    let mut b = ctx
        .client
        .get_blob(&ctx.target.repository, &d.digest, Some(d.size as u64))
        .await
        .map_err(|e| reg_err(e, r))?;
    let mut out = Vec::new();
    while let Some(c) = b.next_chunk().await.map_err(|e| reg_err(e, r))? {
        out.extend_from_slice(&c);
    }
    Ok(out)
}

/// One layer still to fetch.
struct Job {
    index: usize,
    desc: Descriptor,
    blob: Digest,
    diff_id: Digest,
    short: String,
}

async fn pull_one(ctx: &Ctx<'_>, r: &Reference, top: Fetched) -> Result<Outcome> {
    let images = ctx.images;
    let top_digest = top.digest.clone();
    let img = resolve(ctx, r, top).await?;
    let config_raw = fetch_config(ctx, r, &img.config).await?;
    let config_digest = Digest::parse(&img.config.digest)?;
    let head: ConfigHead = serde_json::from_slice(&config_raw)
        .map_err(|e| EngineError::InvalidArgument(format!("invalid image config: {e}")))?;
    if let Some(want) = &ctx.platform {
        let have = Platform {
            architecture: head.architecture.clone(),
            os: head.os.clone(),
            variant: head.variant.clone(),
            os_version: None,
        };
        if !want.matches(&have) {
            return Err(EngineError::NotFound(format!(
                "image with reference {} was found but does not match the specified platform: wanted {want}, actual: {have}",
                r.familiar_tagged()
            )));
        }
    }
    if head.rootfs.diff_ids.len() != img.layers.len() {
        return Err(EngineError::InvalidArgument(format!(
            "invalid image: the manifest has {} layers, the config {} diff ids",
            img.layers.len(),
            head.rootfs.diff_ids.len()
        )));
    }
    let diff_ids = head
        .rootfs
        .diff_ids
        .iter()
        .map(|d| Digest::parse(d))
        .collect::<std::result::Result<Vec<_>, _>>()?;

    let path_label = &ctx.target.repository;
    let id_label = r.tag.clone().or(r.digest.clone()).unwrap_or_default();
    send(
        &ctx.tx,
        json!({ "status": format!("Pulling from {path_label}"), "id": id_label }),
    );

    // Which layers are missing.
    let mut chains = Vec::new();
    let mut parent: Option<Digest> = None;
    for d in &diff_ids {
        let c = chain_id(parent.as_ref(), d);
        chains.push(c.clone());
        parent = Some(c);
    }
    let mut jobs = Vec::new();
    for (i, l) in img.layers.iter().enumerate() {
        let blob = Digest::parse(&l.digest)?;
        let short = blob.short().to_string();
        if images.layers.exists(&chains[i]) {
            layer_status(&ctx.tx, &short, "Already exists");
        } else {
            layer_status(&ctx.tx, &short, "Pulling fs layer");
            jobs.push(Job {
                index: i,
                desc: l.clone(),
                blob,
                diff_id: diff_ids[i].clone(),
                short,
            });
        }
    }
    let downloaded = !jobs.is_empty();
    let spools = if downloaded {
        fetch_layers(ctx, r, &jobs, &chains).await?
    } else {
        Vec::new()
    };

    // Everything verified: blobs, config, then the record.
    let blob_dir = images.content.path(&config_digest);
    let blob_dir = blob_dir
        .parent()
        .map(|p| p.to_path_buf())
        .ok_or_else(|| EngineError::Internal("content store path".into()))?;
    let images2 = images.clone();
    let layer_refs: Vec<(usize, Digest, String, Digest)> = img
        .layers
        .iter()
        .enumerate()
        .map(|(i, l)| {
            Ok((
                i,
                Digest::parse(&l.digest)?,
                l.media_type.clone(),
                chains[i].clone(),
            ))
        })
        .collect::<Result<_>>()?;
    let tag = r.digest.is_none().then(|| r.familiar_tagged());
    let repo_digest = format!("{}@{top_digest}", r.familiar_name());
    let pull_name = match &r.digest {
        Some(d) => format!("{}@{d}", r.familiar_name()),
        None => r.familiar_tagged(),
    };
    let up_to_date = tokio::task::spawn_blocking(move || -> Result<bool> {
        for (job_blob, s) in &spools {
            s.commit(&spool::blob_path(&blob_dir, job_blob))?;
        }
        if !spools.is_empty() {
            berth_store::atomic::sync_dir(&blob_dir)?;
        }
        images2.content.put(&config_raw)?;
        let mut refs = Vec::new();
        for (_, blob, media_type, chain) in layer_refs {
            let info = images2.layers.get(&chain)?.ok_or_else(|| {
                EngineError::Internal(format!("layer {chain} vanished during the pull"))
            })?;
            refs.push(LayerRef {
                blob: images2.content.exists(&blob).then_some(blob),
                media_type,
                diff_id: info.diff_id,
                chain_id: info.chain_id,
                size: info.size,
            });
        }
        let before = images2.get(&config_digest)?;
        let tag_before = match &tag {
            Some(t) => images2.resolve(t).ok().map(|rec| rec.id),
            None => None,
        };
        let tags: Vec<String> = tag.iter().cloned().collect();
        images2.add_image(&config_digest, refs, &tags)?;
        images2.add_repo_digest(&config_digest, &repo_digest)?;
        // Docker's pull event names the reference as its id (not the image id).
        let attrs = std::collections::HashMap::from([("name".to_string(), pull_name.clone())]);
        images2.events.emit("image", "pull", &pull_name, attrs);
        let up = !downloaded
            && match &tag {
                Some(_) => tag_before.as_ref() == Some(&config_digest),
                None => before.is_some_and(|b| b.repo_digests.contains(&repo_digest)),
            };
        Ok(up)
    })
    .await
    .map_err(|e| EngineError::Internal(format!("pull task: {e}")))??;
    Ok(Outcome {
        digest: top_digest,
        up_to_date,
    })
}

/// Download `jobs` in parallel (bounded), unpack them in order as they arrive. Returns the
/// verified spools (to commit into the content store) once every layer is in the layer store.
async fn fetch_layers(
    ctx: &Ctx<'_>,
    r: &Reference,
    jobs: &[Job],
    chains: &[Digest],
) -> Result<Vec<(Digest, Arc<Spool>)>> {
    let images = ctx.images.clone();
    let blob_dir = images
        .content
        .path(&jobs[0].blob)
        .parent()
        .map(|p| p.to_path_buf())
        .ok_or_else(|| EngineError::Internal("content store path".into()))?;
    let mut spools = Vec::new();
    let mut files = Vec::new();
    for _ in jobs {
        let (s, f) = Spool::create(&blob_dir)?;
        spools.push(Arc::new(s));
        files.push(f);
    }
    // If this future is dropped (the client went away), the unpackers must not wait forever.
    let mut cancel = CancelOnDrop {
        spools: spools.clone(),
        armed: true,
    };
    let sem = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_DOWNLOADS));
    let mut set = tokio::task::JoinSet::new();
    for (n, ((job, spool), file)) in jobs.iter().zip(&spools).zip(files).enumerate() {
        if n >= MAX_CONCURRENT_DOWNLOADS {
            layer_status(&ctx.tx, &job.short, "Waiting");
        }
        let client = ctx.client.clone();
        let repo = ctx.target.repository.clone();
        let desc = job.desc.clone();
        let short = job.short.clone();
        let tx = ctx.tx.clone();
        let spool = spool.clone();
        let sem = sem.clone();
        let all = spools.clone();
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            let res = download(&client, &repo, &desc, &spool, file, &short, &tx).await;
            match &res {
                Ok(()) => {
                    spool.finish(Ok(()));
                    let s2 = spool.clone();
                    // Flush now, overlapping with the unpacking of this and other layers.
                    let _ = tokio::task::spawn_blocking(move || s2.sync()).await;
                    layer_status(&tx, &short, "Download complete");
                }
                Err(e) => {
                    // Fail every layer, so the unpacker stops at once.
                    let msg = e.to_string();
                    spool.finish(Err(msg.clone()));
                    for s in &all {
                        s.finish(Err(format!("pull aborted: {msg}")));
                    }
                }
            }
            res
        });
    }
    // The unpackers: in parallel as the bytes arrive, published in order.
    let items: Vec<unpack::Item> = jobs
        .iter()
        .map(|j| unpack::Item {
            parent: (j.index > 0).then(|| chains[j.index - 1].clone()),
            chain: chains[j.index].clone(),
            diff_id: j.diff_id.clone(),
            short: j.short.clone(),
            total: j.desc.size.max(0) as u64,
        })
        .collect();
    let tx = ctx.tx.clone();
    let spools2 = spools.clone();
    let unpack = tokio::task::spawn_blocking(move || -> Result<()> {
        unpack::unpack_all(&images, &items, &spools2, &tx, MAX_CONCURRENT_DOWNLOADS)
    });
    let mut first_err: Option<EngineError> = None;
    let mut unpack = unpack;
    let mut unpacked: Option<Result<()>> = None;
    while !set.is_empty() || unpacked.is_none() {
        tokio::select! {
            res = set.join_next(), if !set.is_empty() => {
                let err = match res {
                    Some(Ok(Ok(()))) | None => None,
                    Some(Ok(Err(e))) => Some(reg_err(e, r)),
                    Some(Err(e)) if e.is_cancelled() => None,
                    Some(Err(e)) => Some(EngineError::Internal(format!("download task: {e}"))),
                };
                if first_err.is_none() {
                    first_err = err;
                }
            }
            res = &mut unpack, if unpacked.is_none() => {
                let res = res
                    .map_err(|e| EngineError::Internal(format!("unpack task: {e}")))
                    .and_then(|r| r);
                if res.is_err() {
                    // No use downloading the rest.
                    set.abort_all();
                }
                unpacked = Some(res);
            }
        }
    }
    let res = match first_err {
        Some(e) => Err(e),
        None => unpacked.unwrap_or_else(|| Err(EngineError::Internal("unpack did not run".into()))),
    };
    if let Err(e) = res {
        // A cancelled task's fsync may still hold a spool for a moment: remove the files now.
        for s in &spools {
            s.discard();
        }
        return Err(e);
    }
    cancel.armed = false;
    Ok(jobs.iter().map(|j| j.blob.clone()).zip(spools).collect())
}

/// Fails and removes every spool of a pull that did not finish (its future was dropped).
struct CancelOnDrop {
    spools: Vec<Arc<Spool>>,
    armed: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.armed {
            for s in &self.spools {
                s.finish(Err("pull cancelled".into()));
                s.discard();
            }
        }
    }
}

async fn download(
    client: &RegistryClient,
    repo: &str,
    desc: &Descriptor,
    spool: &Spool,
    file: std::fs::File,
    short: &str,
    tx: &ProgressTx,
) -> std::result::Result<(), RegistryError> {
    let total = desc.size.max(0) as u64;
    let mut blob = client.get_blob(repo, &desc.digest, Some(total)).await?;
    let mut w = SpoolWriter { spool, file };
    let mut last = Instant::now() - PROGRESS_EVERY;
    while let Some(chunk) = blob.next_chunk().await? {
        w.append(&chunk)
            .map_err(|e| RegistryError::Transport(format!("write blob {}: {e}", desc.digest)))?;
        if last.elapsed() >= PROGRESS_EVERY {
            last = Instant::now();
            progress(tx, short, "Downloading", blob.received(), total);
        }
    }
    layer_status(tx, short, "Verifying Checksum");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests_like_docker() {
        let rq = |img: &str, tag: Option<&str>| PullRequest {
            from_image: img.into(),
            tag: tag.map(str::to_string),
            ..Default::default()
        };
        let (r, all) = parse_request(&rq("busybox", Some("1.36"))).unwrap();
        assert_eq!(r.familiar_tagged(), "busybox:1.36");
        assert!(!all);
        let (_, all) = parse_request(&rq("busybox", None)).unwrap();
        assert!(all);
        let (r, all) = parse_request(&rq("busybox:1", Some(""))).unwrap();
        assert!(!all);
        assert_eq!(r.tag.as_deref(), Some("1"));
        let d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let (r, _) = parse_request(&rq("127.0.0.1:5000/a", Some(d))).unwrap();
        assert_eq!(r.digest.as_deref(), Some(d));
        assert!(r.tag.is_none());
        assert!(parse_request(&rq("busybox", Some("sha256:zz"))).is_err());
        assert!(parse_request(&rq("busybox", Some("bad tag"))).is_err());
    }

    #[test]
    fn progress_bar_and_sizes() {
        assert_eq!(human(999), "999B");
        assert_eq!(human(1_500_000), "1.5MB");
        let b = bar(50, 100);
        assert!(b.starts_with("[=========================>"), "{b}");
        assert!(b.ends_with("50B/100B"), "{b}");
    }
}
