//! Image archives: `docker import` (a rootfs tarball → one-layer image), `docker load`
//! (docker-archive as written by `docker save`, and OCI image layouts), and `docker save`
//! (the Docker 25+ layout: manifest.json, repositories, `oci-layout`, `index.json` and
//! `blobs/sha256/` with configs, uncompressed layer tars and OCI manifests, so both `docker load`
//! and OCI tools read it). Untrusted input: every path inside an archive is checked, digests are
//! verified, nothing is recorded unless all of it is stored.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use berth_store::compress::{self, Compression};
use berth_store::digest::DigestWriter;
use berth_store::Digest;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::images::{normalize_tag, ImageRecord, ImageService, LayerRef};
use crate::reference::Reference;
use crate::{EngineError, Result};

/// Options of `POST /images/create?fromSrc=-`.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// `repo[:tag]` to tag the result with (from `repo` and `tag` query parameters).
    pub reference: Option<String>,
    /// Dockerfile-like `--change` instructions (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, VOLUME,
    /// WORKDIR, STOPSIGNAL).
    pub changes: Vec<String>,
    pub message: Option<String>,
    pub platform: Option<String>,
}

pub const MEDIA_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const MEDIA_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const MEDIA_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
/// Largest JSON document (manifest, index, config) read from an archive.
const MAX_JSON: u64 = 32 << 20;
/// How many symlink hops (or nested indexes) are followed.
const MAX_HOPS: usize = 16;

fn invalid(msg: impl Into<String>) -> EngineError {
    EngineError::InvalidArgument(msg.into())
}

fn internal(e: impl std::fmt::Display) -> EngineError {
    EngineError::Internal(e.to_string())
}

/// The architecture name (GOARCH) of this host.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

fn media_type_of(c: Compression) -> &'static str {
    match c {
        Compression::None => MEDIA_LAYER_TAR,
        Compression::Gzip => MEDIA_LAYER_GZIP,
        Compression::Zstd => MEDIA_LAYER_ZSTD,
    }
}

/// Blobs and layers created by one operation, removed again if it fails (unless an image
/// recorded meanwhile uses them).
#[derive(Default)]
struct Created {
    blobs: Vec<Digest>,
    layers: Vec<Digest>,
}

impl Created {
    fn ingest(
        &mut self,
        images: &ImageService,
        r: &mut dyn Read,
        expected: Option<&Digest>,
    ) -> Result<Digest> {
        let before: HashSet<Digest> = expected
            .filter(|d| images.content.exists(d))
            .cloned()
            .into_iter()
            .collect();
        let (d, _) = images.content.ingest(r, expected)?;
        if !before.contains(&d) {
            self.blobs.push(d.clone());
        }
        Ok(d)
    }

    fn put(&mut self, images: &ImageService, data: &[u8]) -> Result<Digest> {
        let d = Digest::of(data);
        let existed = images.content.exists(&d);
        images.content.put(data)?;
        if !existed {
            self.blobs.push(d.clone());
        }
        Ok(d)
    }

    /// Apply a stored blob as a layer on `parent`, checking its diff id.
    fn apply(
        &mut self,
        images: &ImageService,
        parent: Option<&Digest>,
        blob: &Digest,
        diff_id: Option<&Digest>,
    ) -> Result<berth_store::layers::LayerInfo> {
        let chain = diff_id.map(|d| berth_store::layers::chain_id(parent, d));
        let existed = chain.as_ref().is_some_and(|c| images.layers.exists(c));
        let mut f = images.content.open_blob(blob)?;
        let info = images.layers.apply(parent, &mut f, diff_id)?;
        if !existed {
            self.layers.push(info.chain_id.clone());
        }
        Ok(info)
    }

    /// Undo: remove what was created and is not used by any recorded image.
    fn rollback(self, images: &ImageService) {
        let all = images.all().unwrap_or_default();
        let used_blobs: HashSet<&Digest> = all
            .iter()
            .flat_map(|r| {
                r.layers
                    .iter()
                    .filter_map(|l| l.blob.as_ref())
                    .chain(std::iter::once(&r.id))
            })
            .collect();
        let used_layers: HashSet<&Digest> = all
            .iter()
            .flat_map(|r| r.layers.iter().map(|l| &l.chain_id))
            .collect();
        for l in self.layers.iter().rev() {
            if !used_layers.contains(l) {
                if let Err(e) = images.layers.remove(l) {
                    tracing::warn!(layer = %l, error = %e, "rollback: removing layer");
                }
            }
        }
        for b in &self.blobs {
            if !used_blobs.contains(b) {
                if let Err(e) = images.content.delete(b) {
                    tracing::warn!(blob = %b, error = %e, "rollback: removing blob");
                }
            }
        }
    }
}

/// Run `f`, rolling back what it created if it fails.
fn with_rollback<T>(images: &ImageService, f: impl FnOnce(&mut Created) -> Result<T>) -> Result<T> {
    let mut created = Created::default();
    match f(&mut created) {
        Ok(v) => Ok(v),
        Err(e) => {
            created.rollback(images);
            Err(e)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// import

/// Split a line into words, honouring double and single quotes and backslash escapes.
fn shell_words(s: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '"' | '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        None => return Err(invalid(format!("unterminated quote in {s:?}"))),
                        Some(q) if q == c => break,
                        Some('\\') if c == '"' => match chars.next() {
                            Some(n) => cur.push(n),
                            None => return Err(invalid(format!("unterminated quote in {s:?}"))),
                        },
                        Some(x) => cur.push(x),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// `["a","b"]` (exec form) or a shell command (wrapped in `/bin/sh -c`).
fn exec_or_shell(args: &str) -> Vec<String> {
    let t = args.trim();
    if t.starts_with('[') {
        if let Ok(v) = serde_json::from_str::<Vec<String>>(t) {
            return v;
        }
    }
    vec!["/bin/sh".to_string(), "-c".to_string(), t.to_string()]
}

/// Apply Dockerfile-like `--change` instructions to a Docker-style config object.
pub fn apply_changes(
    config: &mut serde_json::Map<String, Value>,
    changes: &[String],
) -> Result<()> {
    for change in changes {
        for line in change.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (instr, args) = match line.split_once(char::is_whitespace) {
                Some((i, a)) => (i.to_ascii_uppercase(), a.trim()),
                None => (line.to_ascii_uppercase(), ""),
            };
            match instr.as_str() {
                "CMD" => {
                    config.insert("Cmd".into(), json!(exec_or_shell(args)));
                }
                "ENTRYPOINT" => {
                    config.insert("Entrypoint".into(), json!(exec_or_shell(args)));
                }
                "ENV" => {
                    let words = shell_words(args)?;
                    let pairs: Vec<(String, String)> = if words
                        .first()
                        .is_some_and(|w| w.contains('='))
                    {
                        words
                            .iter()
                            .map(|w| match w.split_once('=') {
                                Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
                                _ => Err(invalid(format!("ENV names can not be blank: {line}"))),
                            })
                            .collect::<Result<_>>()?
                    } else {
                        let Some((k, v)) = args.split_once(char::is_whitespace) else {
                            return Err(invalid("ENV requires at least one argument"));
                        };
                        vec![(k.to_string(), v.trim().to_string())]
                    };
                    let env = config.entry("Env").or_insert_with(|| json!([]));
                    let mut list: Vec<String> =
                        serde_json::from_value(env.clone()).unwrap_or_default();
                    for (k, v) in pairs {
                        list.retain(|e| e.split_once('=').map(|(x, _)| x) != Some(k.as_str()));
                        list.push(format!("{k}={v}"));
                    }
                    *env = json!(list);
                }
                "LABEL" => {
                    let labels = config.entry("Labels").or_insert_with(|| json!({}));
                    for w in shell_words(args)? {
                        let Some((k, v)) = w.split_once('=') else {
                            return Err(invalid(format!("LABEL must have two arguments: {line}")));
                        };
                        if let Some(m) = labels.as_object_mut() {
                            m.insert(k.to_string(), json!(v));
                        }
                    }
                }
                "WORKDIR" => {
                    config.insert("WorkingDir".into(), json!(args));
                }
                "USER" => {
                    config.insert("User".into(), json!(args));
                }
                "STOPSIGNAL" => {
                    config.insert("StopSignal".into(), json!(args));
                }
                "EXPOSE" => {
                    let ports = config.entry("ExposedPorts").or_insert_with(|| json!({}));
                    for p in args.split_whitespace() {
                        let p = if p.contains('/') {
                            p.to_string()
                        } else {
                            format!("{p}/tcp")
                        };
                        if let Some(m) = ports.as_object_mut() {
                            m.insert(p, json!({}));
                        }
                    }
                }
                "VOLUME" => {
                    let list: Vec<String> = if args.trim_start().starts_with('[') {
                        serde_json::from_str(args).map_err(|e| invalid(format!("VOLUME: {e}")))?
                    } else {
                        args.split_whitespace().map(str::to_string).collect()
                    };
                    let vols = config.entry("Volumes").or_insert_with(|| json!({}));
                    for v in list {
                        if let Some(m) = vols.as_object_mut() {
                            m.insert(v, json!({}));
                        }
                    }
                }
                other => {
                    return Err(invalid(format!("{other} is not a valid change command")));
                }
            }
        }
    }
    Ok(())
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Import a rootfs tarball (plain, gzip or zstd). Returns the new image id. Emits `import`.
pub fn import(images: &ImageService, r: &mut dyn Read, opts: &ImportOptions) -> Result<Digest> {
    // Validate everything cheap before reading the stream.
    let tags = match opts.reference.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => vec![normalize_tag(s)?],
        None => Vec::new(),
    };
    let mut cfg = serde_json::Map::new();
    apply_changes(&mut cfg, &opts.changes)?;
    let (os, arch, variant) = match opts.platform.as_deref().filter(|s| !s.is_empty()) {
        Some(p) => {
            let mut it = p.split('/');
            let os = it.next().unwrap_or("linux").to_string();
            let arch = it
                .next()
                .map(str::to_string)
                .unwrap_or_else(|| host_arch().to_string());
            (os, arch, it.next().map(str::to_string))
        }
        None => ("linux".to_string(), host_arch().to_string(), None),
    };
    let comment = opts
        .message
        .clone()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "Imported from -".to_string());

    let id = with_rollback(images, |created| {
        // The uncompressed layer tar goes to the content store (streamed), then is unpacked from
        // there: memory stays bounded and `save` can emit the blob.
        let mut rd = compress::decompressed(BufReader::new(r))?;
        let blob = created.ingest(images, &mut rd, None)?;
        let info = created.apply(images, None, &blob, Some(&blob))?;
        let now = now_rfc3339();
        let mut config = json!({
            "architecture": arch,
            "os": os,
            "created": now,
            "comment": comment,
            "config": Value::Object(cfg),
            "rootfs": {"type": "layers", "diff_ids": [info.diff_id.to_string()]},
            "history": [{"created": now, "created_by": "", "comment": comment}],
        });
        if let (Some(v), Some(m)) = (variant, config.as_object_mut()) {
            m.insert("variant".into(), json!(v));
        }
        let data = serde_json::to_vec(&config).map_err(internal)?;
        let config_digest = created.put(images, &data)?;
        let layer = LayerRef {
            blob: Some(blob),
            media_type: MEDIA_LAYER_TAR.to_string(),
            diff_id: info.diff_id.clone(),
            chain_id: info.chain_id.clone(),
            size: info.size,
        };
        images.add_image(&config_digest, vec![layer], &tags)
    })?;
    images.events.emit(
        "image",
        "import",
        &id.to_string(),
        HashMap::from([("name".to_string(), id.to_string())]),
    );
    Ok(id)
}

// ---------------------------------------------------------------------------------------------
// load

/// Normalize an archive path: strip `./`, drop `.` and empty components; reject absolute paths,
/// `..` and non-UTF-8.
fn clean_path(p: &str) -> Result<String> {
    if p.starts_with('/') {
        return Err(invalid(format!("invalid archive path {p:?}: absolute")));
    }
    let mut parts = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                return Err(invalid(format!(
                    "invalid archive path {p:?}: outside the archive"
                )))
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Err(invalid(format!("invalid archive path {p:?}")));
    }
    Ok(parts.join("/"))
}

/// Resolve a symlink target lexically against the directory of `link`, staying inside the root.
fn join_link(link: &str, target: &str) -> Result<String> {
    if target.starts_with('/') {
        return Err(invalid(format!(
            "invalid archive link {link:?} -> {target:?}"
        )));
    }
    let mut parts: Vec<&str> = link.split('/').collect();
    parts.pop();
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(invalid(format!(
                        "invalid archive link {link:?} -> {target:?}"
                    )));
                }
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Err(invalid(format!(
            "invalid archive link {link:?} -> {target:?}"
        )));
    }
    Ok(parts.join("/"))
}

/// An archive spooled to a private temp dir. Only directories and regular files are created;
/// symlinks and hard links are kept as aliases in memory (checked to stay inside), so nothing in
/// the spool dir can point outside it. Removed on drop.
struct Spool {
    dir: PathBuf,
    links: HashMap<String, String>,
}

impl Drop for Spool {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "removing load spool dir");
        }
    }
}

impl Spool {
    fn extract(r: &mut dyn Read, tmp_root: &Path) -> Result<Spool> {
        std::fs::create_dir_all(tmp_root)?;
        let dir = tmp_root.join(format!(
            "{}load-{}",
            berth_store::atomic::TEMP_PREFIX,
            berth_store::atomic::random_hex(8)
        ));
        std::fs::create_dir(&dir)?;
        let mut spool = Spool {
            dir,
            links: HashMap::new(),
        };
        let mut ar = tar::Archive::new(r);
        let entries = ar
            .entries()
            .map_err(|e| invalid(format!("invalid archive: {e}")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| invalid(format!("invalid archive: {e}")))?;
            let raw = entry.path_bytes();
            let name = std::str::from_utf8(&raw)
                .map_err(|_| invalid("invalid archive path: not UTF-8"))?
                .to_string();
            let kind = entry.header().entry_type();
            if matches!(name.trim_matches('/'), "" | ".") && kind.is_dir() {
                continue;
            }
            let path = clean_path(&name)?;
            let dest = spool.dir.join(&path);
            match kind {
                tar::EntryType::Directory => std::fs::create_dir_all(&dest)?,
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    if let Some(parent) = dest.parent() {
                        std::fs::create_dir_all(parent)?;
                    }
                    let mut f = File::create(&dest)?;
                    std::io::copy(&mut entry, &mut f)
                        .map_err(|e| invalid(format!("invalid archive: {e}")))?;
                    spool.links.remove(&path);
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let target = entry
                        .link_name_bytes()
                        .ok_or_else(|| invalid(format!("invalid archive link {path:?}")))?;
                    let target = std::str::from_utf8(&target)
                        .map_err(|_| invalid("invalid archive link: not UTF-8"))?;
                    let resolved = if kind == tar::EntryType::Symlink {
                        join_link(&path, target)?
                    } else {
                        clean_path(target)?
                    };
                    spool.links.insert(path, resolved);
                }
                // Device nodes, FIFOs and the like have no place in an image archive.
                _ => {}
            }
        }
        Ok(spool)
    }

    /// The file a (manifest-referenced) path names, following the aliases.
    fn resolve(&self, p: &str) -> Result<PathBuf> {
        let mut cur = clean_path(p)?;
        let mut hops = 0;
        'outer: loop {
            let parts: Vec<&str> = cur.split('/').collect();
            for i in 1..=parts.len() {
                let prefix = parts[..i].join("/");
                if let Some(t) = self.links.get(&prefix) {
                    hops += 1;
                    if hops > MAX_HOPS {
                        return Err(invalid(format!("too many links resolving {p:?}")));
                    }
                    let rest = &parts[i..];
                    cur = if rest.is_empty() {
                        t.clone()
                    } else {
                        format!("{t}/{}", rest.join("/"))
                    };
                    continue 'outer;
                }
            }
            break;
        }
        let path = self.dir.join(&cur);
        let md = std::fs::symlink_metadata(&path)
            .map_err(|_| invalid(format!("archive file {p:?} not found")))?;
        if !md.is_file() {
            return Err(invalid(format!("archive path {p:?} is not a regular file")));
        }
        Ok(path)
    }

    fn exists(&self, p: &str) -> bool {
        self.resolve(p).is_ok()
    }

    fn open(&self, p: &str) -> Result<File> {
        Ok(File::open(self.resolve(p)?)?)
    }

    fn read_json_bytes(&self, p: &str) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.open(p)?.take(MAX_JSON + 1).read_to_end(&mut buf)?;
        if buf.len() as u64 > MAX_JSON {
            return Err(invalid(format!("archive file {p:?} is too large")));
        }
        Ok(buf)
    }

    /// A blob of an OCI layout, verified against its digest.
    fn read_blob(&self, d: &Digest) -> Result<Vec<u8>> {
        let data = self.read_json_bytes(&blob_path(d))?;
        let actual = Digest::of(&data);
        if &actual != d {
            return Err(invalid(format!(
                "digest mismatch: expected {d}, got {actual}"
            )));
        }
        Ok(data)
    }
}

fn blob_path(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

#[derive(Deserialize)]
struct ArchiveManifest {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

#[derive(Deserialize, Clone, Default)]
struct Platform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
}

#[derive(Deserialize, Clone)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    annotations: HashMap<String, String>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Manifest {
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

/// An image whose blobs and layers are stored, waiting to be recorded.
struct Pending {
    config: Digest,
    layers: Vec<LayerRef>,
    tags: Vec<String>,
}

/// The diff ids of a config.
fn diff_ids(config: &[u8]) -> Result<Vec<Digest>> {
    let v: Value = serde_json::from_slice(config)
        .map_err(|e| invalid(format!("invalid image config: {e}")))?;
    let ids = v
        .pointer("/rootfs/diff_ids")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("invalid image config: no rootfs.diff_ids"))?;
    ids.iter()
        .map(|d| Digest::parse(d.as_str().unwrap_or_default()).map_err(EngineError::from))
        .collect()
}

/// Store the layers (as blobs, then unpacked) of one image whose layer files are in `spool`.
fn store_layers(
    images: &ImageService,
    spool: &Spool,
    created: &mut Created,
    layer_files: &[(String, Option<Digest>)],
    diffs: &[Digest],
) -> Result<Vec<LayerRef>> {
    if layer_files.len() != diffs.len() {
        return Err(invalid(format!(
            "invalid image: {} layers but {} diff ids in its config",
            layer_files.len(),
            diffs.len()
        )));
    }
    let mut parent: Option<Digest> = None;
    let mut out = Vec::new();
    for ((path, blob_digest), diff) in layer_files.iter().zip(diffs) {
        let mut f = spool.open(path)?;
        let blob = created.ingest(images, &mut f, blob_digest.as_ref())?;
        let info = created.apply(images, parent.as_ref(), &blob, Some(diff))?;
        let mut br = BufReader::new(images.content.open_blob(&blob)?);
        let media = media_type_of(compress::detect(&mut br)?);
        parent = Some(info.chain_id.clone());
        out.push(LayerRef {
            blob: Some(blob),
            media_type: media.to_string(),
            diff_id: info.diff_id,
            chain_id: info.chain_id,
            size: info.size,
        });
    }
    Ok(out)
}

/// `blobs/sha256/<hex>` paths name their digest.
fn digest_of_blob_path(p: &str) -> Option<Digest> {
    clean_path(p)
        .ok()?
        .strip_prefix("blobs/sha256/")
        .and_then(|h| Digest::from_hex(h).ok())
}

fn load_docker_archive(
    images: &ImageService,
    spool: &Spool,
    created: &mut Created,
) -> Result<Vec<Pending>> {
    let data = spool.read_json_bytes("manifest.json")?;
    let manifest: Vec<ArchiveManifest> = serde_json::from_slice(&data)
        .map_err(|e| invalid(format!("invalid manifest.json: {e}")))?;
    let mut out = Vec::new();
    for m in manifest {
        let tags = m
            .repo_tags
            .unwrap_or_default()
            .iter()
            .map(|t| normalize_tag(t))
            .collect::<Result<Vec<_>>>()?;
        let config = spool.read_json_bytes(&m.config)?;
        if let Some(d) = digest_of_blob_path(&m.config) {
            if Digest::of(&config) != d {
                return Err(invalid(format!("digest mismatch for {}", m.config)));
            }
        }
        let diffs = diff_ids(&config)?;
        let files: Vec<(String, Option<Digest>)> = m
            .layers
            .iter()
            .map(|l| (l.clone(), digest_of_blob_path(l)))
            .collect();
        for (p, _) in &files {
            clean_path(p)?;
        }
        let layers = store_layers(images, spool, created, &files, &diffs)?;
        let config = created.put(images, &config)?;
        out.push(Pending {
            config,
            layers,
            tags,
        });
    }
    Ok(out)
}

fn is_index(media: &str) -> bool {
    media == MEDIA_INDEX || media == DOCKER_MANIFEST_LIST
}

fn tags_of(desc: &Descriptor) -> Vec<String> {
    if let Some(n) = desc.annotations.get(ANNOTATION_CONTAINERD_NAME) {
        if let Ok(t) = normalize_tag(n) {
            return vec![t];
        }
    }
    match desc.annotations.get(ANNOTATION_REF_NAME) {
        // A bare tag (`latest`) names no repository: leave the image untagged.
        Some(n) if n.contains(':') || n.contains('/') => normalize_tag(n).into_iter().collect(),
        _ => Vec::new(),
    }
}

fn load_oci_desc(
    images: &ImageService,
    spool: &Spool,
    created: &mut Created,
    desc: &Descriptor,
    tags: Vec<String>,
    depth: usize,
    out: &mut Vec<Pending>,
) -> Result<()> {
    if depth > MAX_HOPS {
        return Err(invalid("image index nested too deeply"));
    }
    let d = Digest::parse(&desc.digest)?;
    let data = spool.read_blob(&d)?;
    let v: Value =
        serde_json::from_slice(&data).map_err(|e| invalid(format!("invalid manifest {d}: {e}")))?;
    let media = v
        .get("mediaType")
        .and_then(Value::as_str)
        .unwrap_or(&desc.media_type)
        .to_string();
    if is_index(&media) || (media.is_empty() && v.get("manifests").is_some()) {
        let idx: Index =
            serde_json::from_value(v).map_err(|e| invalid(format!("invalid index {d}: {e}")))?;
        let arch = host_arch();
        let chosen = idx
            .manifests
            .iter()
            .find(|m| {
                m.platform
                    .as_ref()
                    .is_some_and(|p| p.os == "linux" && p.architecture == arch)
            })
            .or_else(|| {
                if idx.manifests.len() == 1 {
                    idx.manifests.first()
                } else {
                    None
                }
            })
            .ok_or_else(|| {
                invalid(format!(
                    "no matching manifest for linux/{arch} in the manifest list entries"
                ))
            })?;
        return load_oci_desc(images, spool, created, chosen, tags, depth + 1, out);
    }
    if !(media == MEDIA_MANIFEST
        || media == DOCKER_MANIFEST
        || (media.is_empty() && v.get("config").is_some()))
    {
        // Attestations and other artifacts are not images.
        return Ok(());
    }
    let m: Manifest =
        serde_json::from_value(v).map_err(|e| invalid(format!("invalid manifest {d}: {e}")))?;
    let config_digest = Digest::parse(&m.config.digest)?;
    let config = spool.read_blob(&config_digest)?;
    let diffs = diff_ids(&config)?;
    let files = m
        .layers
        .iter()
        .map(|l| {
            let d = Digest::parse(&l.digest)?;
            Ok((blob_path(&d), Some(d)))
        })
        .collect::<Result<Vec<_>>>()?;
    let layers = store_layers(images, spool, created, &files, &diffs)?;
    let config = created.put(images, &config)?;
    match out.iter_mut().find(|p| p.config == config) {
        Some(p) => p.tags.extend(tags),
        None => out.push(Pending {
            config,
            layers,
            tags,
        }),
    }
    Ok(())
}

fn load_oci_layout(
    images: &ImageService,
    spool: &Spool,
    created: &mut Created,
) -> Result<Vec<Pending>> {
    let data = spool.read_json_bytes("index.json")?;
    let idx: Index =
        serde_json::from_slice(&data).map_err(|e| invalid(format!("invalid index.json: {e}")))?;
    let mut out = Vec::new();
    for desc in &idx.manifests {
        load_oci_desc(images, spool, created, desc, tags_of(desc), 0, &mut out)?;
    }
    Ok(out)
}

/// Load a docker-archive or OCI-layout tarball. Returns the lines Docker prints
/// ("Loaded image: busybox:latest" or "Loaded image ID: sha256:..."). Emits `load` (and `tag`).
pub fn load(images: &ImageService, r: &mut dyn Read) -> Result<Vec<String>> {
    let mut rd = compress::decompressed(BufReader::new(r))?;
    let spool = Spool::extract(&mut rd, &images.tmp_dir)?;
    let ids = with_rollback(images, |created| {
        let pending = if spool.exists("manifest.json") {
            load_docker_archive(images, &spool, created)?
        } else if spool.exists("index.json") && spool.exists("oci-layout") {
            load_oci_layout(images, &spool, created)?
        } else {
            return Err(invalid(
                "invalid archive: neither manifest.json nor an OCI layout (index.json, oci-layout)",
            ));
        };
        if pending.is_empty() {
            return Err(invalid("invalid archive: no images"));
        }
        // Everything is stored: now record.
        let mut out = Vec::new();
        for p in pending {
            let id = images.add_image(&p.config, p.layers, &p.tags)?;
            out.push((id, p.tags));
        }
        Ok(out)
    })?;
    let mut lines = Vec::new();
    for (id, tags) in ids {
        images.events.emit(
            "image",
            "load",
            &id.to_string(),
            HashMap::from([("name".to_string(), id.to_string())]),
        );
        if tags.is_empty() {
            lines.push(format!("Loaded image ID: {id}"));
        }
        for t in tags {
            lines.push(format!("Loaded image: {t}"));
        }
    }
    Ok(lines)
}

// ---------------------------------------------------------------------------------------------
// save

fn file_header(path: &str, size: u64) -> Result<tar::Header> {
    let mut h = tar::Header::new_gnu();
    h.set_path(path).map_err(internal)?;
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    Ok(h)
}

fn append_bytes(b: &mut tar::Builder<&mut dyn Write>, path: &str, data: &[u8]) -> Result<()> {
    let h = file_header(path, data.len() as u64)?;
    b.append(&h, data)?;
    Ok(())
}

fn append_dir(b: &mut tar::Builder<&mut dyn Write>, path: &str) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_path(path).map_err(internal)?;
    h.set_size(0);
    h.set_mode(0o755);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Directory);
    h.set_cksum();
    b.append(&h, std::io::empty())?;
    Ok(())
}

/// A temp file removed on drop.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Write a layer as an uncompressed tar named by its diff id. Returns its size.
fn append_layer(
    images: &ImageService,
    b: &mut tar::Builder<&mut dyn Write>,
    l: &LayerRef,
) -> Result<u64> {
    let path = blob_path(&l.diff_id);
    // The uncompressed blob itself, when we have it.
    let direct = [Some(&l.diff_id), l.blob.as_ref()]
        .into_iter()
        .flatten()
        .find(|d| *d == &l.diff_id && images.content.exists(d));
    if let Some(d) = direct {
        let f = images.content.open_blob(d)?;
        let size = f.metadata()?.len();
        b.append(&file_header(&path, size)?, f)?;
        return Ok(size);
    }
    let blob = l
        .blob
        .as_ref()
        .filter(|d| images.content.exists(d))
        .ok_or_else(|| internal(format!("layer {} has no stored blob", l.diff_id)))?;
    // Decompress to a temp file first: the tar header needs the size.
    std::fs::create_dir_all(&images.tmp_dir)?;
    let tmp = TempFile(images.tmp_dir.join(format!(
        "{}save-{}",
        berth_store::atomic::TEMP_PREFIX,
        berth_store::atomic::random_hex(8)
    )));
    let mut w = DigestWriter::new(File::create(&tmp.0)?);
    let mut rd = compress::decompressed(BufReader::new(images.content.open_blob(blob)?))?;
    std::io::copy(&mut rd, &mut w)?;
    let (f, digest, size) = w.finish();
    f.sync_all()?;
    drop(f);
    if digest != l.diff_id {
        return Err(internal(format!(
            "layer {} does not match its diff id {}",
            blob, l.diff_id
        )));
    }
    b.append(&file_header(&path, size)?, File::open(&tmp.0)?)?;
    Ok(size)
}

/// Write the named images (references or ids) as one archive. 404 if any is unknown.
pub fn save(images: &ImageService, names: &[String], w: &mut dyn Write) -> Result<()> {
    // Resolve everything before writing a byte.
    let mut order: Vec<ImageRecord> = Vec::new();
    let mut tags: HashMap<Digest, Vec<String>> = HashMap::new();
    let mut add = |rec: ImageRecord, tag: Option<String>| {
        let t = tags.entry(rec.id.clone()).or_default();
        if let Some(tag) = tag {
            if !t.contains(&tag) {
                t.push(tag);
            }
        }
        if !order.iter().any(|r| r.id == rec.id) {
            order.push(rec);
        }
    };
    let all = images.all()?;
    for name in names {
        // A repository without a tag means all its tags, as Docker.
        if Digest::parse(name).is_err() {
            if let Ok(r) = Reference::parse(name) {
                if r.tag.is_none() && r.digest.is_none() {
                    let repo = r.familiar_name();
                    let mut found = false;
                    for rec in &all {
                        for t in &rec.repo_tags {
                            if Reference::parse(t).is_ok_and(|x| x.familiar_name() == repo) {
                                add(rec.clone(), Some(t.clone()));
                                found = true;
                            }
                        }
                    }
                    if found {
                        continue;
                    }
                }
            }
        }
        let (rec, via) = images.resolve_with_tag(name)?;
        add(rec, via.filter(|t| !t.contains('@')));
    }

    let mut b = tar::Builder::new(w);
    append_dir(&mut b, "blobs/")?;
    append_dir(&mut b, "blobs/sha256/")?;
    let mut written: HashSet<Digest> = HashSet::new();
    // Uncompressed size of each layer written so far.
    let mut sizes: HashMap<Digest, u64> = HashMap::new();
    let mut docker_manifest = Vec::new();
    let mut index = Vec::new();
    let mut repositories: serde_json::Map<String, Value> = serde_json::Map::new();
    for rec in &order {
        let mut layer_descs = Vec::new();
        for l in &rec.layers {
            let size = match sizes.get(&l.diff_id) {
                Some(s) => *s,
                None => {
                    let s = append_layer(images, &mut b, l)?;
                    sizes.insert(l.diff_id.clone(), s);
                    s
                }
            };
            layer_descs.push(json!({"mediaType": MEDIA_LAYER_TAR, "digest": l.diff_id.to_string(), "size": size}));
        }
        let config = images.content.read(&rec.id)?;
        if written.insert(rec.id.clone()) {
            append_bytes(&mut b, &blob_path(&rec.id), &config)?;
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_CONFIG, "digest": rec.id.to_string(), "size": config.len()},
            "layers": layer_descs,
        });
        let manifest = serde_json::to_vec(&manifest).map_err(internal)?;
        let md = Digest::of(&manifest);
        if written.insert(md.clone()) {
            append_bytes(&mut b, &blob_path(&md), &manifest)?;
        }
        let rtags = tags.get(&rec.id).cloned().unwrap_or_default();
        let desc = |ann: Option<Value>| {
            let mut d = json!({"mediaType": MEDIA_MANIFEST, "digest": md.to_string(), "size": manifest.len()});
            if let (Some(a), Some(m)) = (ann, d.as_object_mut()) {
                m.insert("annotations".into(), a);
            }
            d
        };
        if rtags.is_empty() {
            index.push(desc(None));
        }
        for t in &rtags {
            let r = Reference::parse(t)?;
            let tag = r.tag.clone().unwrap_or_else(|| "latest".to_string());
            index.push(desc(Some(json!({
                ANNOTATION_CONTAINERD_NAME: r.full_string(),
                ANNOTATION_REF_NAME: tag,
            }))));
            if let Some(top) = rec.layers.last() {
                let e = repositories
                    .entry(r.familiar_name())
                    .or_insert_with(|| json!({}));
                if let Some(m) = e.as_object_mut() {
                    m.insert(tag, json!(top.diff_id.hex()));
                }
            }
        }
        docker_manifest.push(json!({
            "Config": blob_path(&rec.id),
            "RepoTags": if rtags.is_empty() { Value::Null } else { json!(rtags) },
            "Layers": rec.layers.iter().map(|l| blob_path(&l.diff_id)).collect::<Vec<_>>(),
        }));
    }
    let index = json!({"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": index});
    append_bytes(
        &mut b,
        "index.json",
        &serde_json::to_vec(&index).map_err(internal)?,
    )?;
    append_bytes(
        &mut b,
        "manifest.json",
        &serde_json::to_vec(&docker_manifest).map_err(internal)?,
    )?;
    append_bytes(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    append_bytes(
        &mut b,
        "repositories",
        &serde_json::to_vec(&Value::Object(repositories)).map_err(internal)?,
    )?;
    b.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::tests::{layer_tar, service};
    use crate::EngineError;

    /// A busybox rootfs: /bin/busybox, /bin/sh -> busybox, /etc/hostname.
    fn busybox_rootfs() -> Vec<u8> {
        let bb = std::fs::read("/bin/busybox").unwrap();
        let mut b = tar::Builder::new(Vec::new());
        for d in ["bin/", "etc/"] {
            let mut h = tar::Header::new_gnu();
            h.set_path(d).unwrap();
            h.set_mode(0o755);
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            h.set_cksum();
            b.append(&h, std::io::empty()).unwrap();
        }
        let mut h = tar::Header::new_gnu();
        h.set_path("bin/busybox").unwrap();
        h.set_mode(0o755);
        h.set_size(bb.len() as u64);
        h.set_cksum();
        b.append(&h, &bb[..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, "bin/sh", "busybox").unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_path("etc/hostname").unwrap();
        h.set_mode(0o644);
        h.set_size(3);
        h.set_cksum();
        b.append(&h, &b"bb\n"[..]).unwrap();
        b.into_inner().unwrap()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// A tar archive from (path, data) files.
    fn archive(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (p, d) in files {
            let mut h = tar::Header::new_gnu();
            h.set_path(p).unwrap();
            h.set_mode(0o644);
            h.set_size(d.len() as u64);
            h.set_cksum();
            b.append(&h, *d).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn changes() {
        let mut cfg = serde_json::Map::new();
        apply_changes(
            &mut cfg,
            &[
                "CMD [\"/bin/sh\", \"-c\", \"echo hi\"]".into(),
                "ENTRYPOINT tini --".into(),
                "ENV A=1 B=\"two words\"".into(),
                "ENV C three four".into(),
                "ENV A=2".into(),
                "LABEL a=b \"c d\"=e".into(),
                "EXPOSE 80 53/udp".into(),
                "VOLUME [\"/data\"]\nWORKDIR /w\nUSER nobody\nSTOPSIGNAL SIGINT".into(),
            ],
        )
        .unwrap();
        let v = Value::Object(cfg);
        assert_eq!(v["Cmd"], json!(["/bin/sh", "-c", "echo hi"]));
        assert_eq!(v["Entrypoint"], json!(["/bin/sh", "-c", "tini --"]));
        assert_eq!(v["Env"], json!(["B=two words", "C=three four", "A=2"]));
        assert_eq!(v["Labels"], json!({"a": "b", "c d": "e"}));
        assert_eq!(v["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
        assert_eq!(v["Volumes"], json!({"/data": {}}));
        assert_eq!(v["WorkingDir"], "/w");
        assert_eq!(v["User"], "nobody");
        assert_eq!(v["StopSignal"], "SIGINT");
        let mut cfg = serde_json::Map::new();
        assert!(matches!(
            apply_changes(&mut cfg, &["RUN rm -rf /".into()]),
            Err(EngineError::InvalidArgument(_))
        ));
    }

    #[test]
    fn paths() {
        assert_eq!(clean_path("./a//b/./c").unwrap(), "a/b/c");
        assert!(clean_path("../etc/passwd").is_err());
        assert!(clean_path("a/../../b").is_err());
        assert!(clean_path("/etc/passwd").is_err());
        assert!(clean_path(".").is_err());
        assert_eq!(join_link("a/b/link", "../c").unwrap(), "a/c");
        assert!(join_link("a/link", "../../etc").is_err());
        assert!(join_link("a/link", "/etc/passwd").is_err());
    }

    #[test]
    fn import_save_load_round_trip() {
        let d1 = tempfile::tempdir().unwrap();
        let d2 = tempfile::tempdir().unwrap();
        let s1 = service(d1.path());
        let rootfs = busybox_rootfs();
        let opts = ImportOptions {
            reference: Some("busybox:test".into()),
            changes: vec!["CMD [\"sh\"]".into(), "LABEL x=y".into()],
            message: None,
            platform: None,
        };
        let id = import(&s1, &mut &gzip(&rootfs)[..], &opts).unwrap();
        let rec = s1.resolve("busybox:test").unwrap();
        assert_eq!(rec.id, id);
        assert_eq!(rec.layers.len(), 1);
        assert_eq!(rec.layers[0].diff_id, Digest::of(&rootfs));
        assert_eq!(rec.layers[0].blob.as_ref(), Some(&Digest::of(&rootfs)));
        let dir = s1.layers.dir(&rec.layers[0].chain_id);
        assert_eq!(
            std::fs::read(dir.join("bin/busybox")).unwrap(),
            std::fs::read("/bin/busybox").unwrap()
        );
        assert_eq!(
            std::fs::read_link(dir.join("bin/sh")).unwrap(),
            Path::new("busybox")
        );
        let run = s1.run_config(&rec).unwrap();
        assert_eq!(run.cmd, vec!["sh"]);
        assert_eq!(run.labels.get("x").map(String::as_str), Some("y"));
        let ins = serde_json::to_value(s1.inspect("busybox:test").unwrap()).unwrap();
        assert_eq!(ins["Comment"], "Imported from -");
        assert_eq!(
            s1.history("busybox:test").unwrap()[0].comment,
            "Imported from -"
        );
        // A second image sharing nothing, tagged twice.
        let other = import(
            &s1,
            &mut &layer_tar("f", b"data")[..],
            &ImportOptions::default(),
        )
        .unwrap();
        s1.tag(other.hex(), "other", Some("1")).unwrap();
        s1.tag(other.hex(), "localhost:5000/other", None).unwrap();
        let untagged = import(
            &s1,
            &mut &layer_tar("g", b"g")[..],
            &ImportOptions::default(),
        )
        .unwrap();

        let mut out = Vec::new();
        save(
            &s1,
            &[
                "busybox:test".into(),
                "other".into(),
                "localhost:5000/other:latest".into(),
                untagged.to_string(),
            ],
            &mut out,
        )
        .unwrap();
        // The archive has the Docker 25+ layout.
        let mut names = Vec::new();
        for e in tar::Archive::new(&out[..]).entries().unwrap() {
            names.push(e.unwrap().path().unwrap().to_string_lossy().to_string());
        }
        for n in ["manifest.json", "index.json", "oci-layout", "repositories"] {
            assert!(names.contains(&n.to_string()), "{names:?}");
        }
        assert!(names.contains(&format!("blobs/sha256/{}", Digest::of(&rootfs).hex())));
        assert!(matches!(
            save(&s1, &["nope".into()], &mut Vec::new()),
            Err(EngineError::NotFound(_))
        ));

        let s2 = service(d2.path());
        let lines = load(&s2, &mut &out[..]).unwrap();
        assert_eq!(
            lines,
            vec![
                "Loaded image: busybox:test".to_string(),
                "Loaded image: other:1".to_string(),
                "Loaded image: localhost:5000/other:latest".to_string(),
                format!("Loaded image ID: {untagged}"),
            ]
        );
        let r2 = s2.resolve("busybox:test").unwrap();
        assert_eq!(r2.id, id);
        assert_eq!(r2.layers[0].chain_id, rec.layers[0].chain_id);
        assert_eq!(s2.resolve("other:1").unwrap().id, other);
        assert_eq!(s2.resolve("localhost:5000/other").unwrap().id, other);
        assert!(s2.get(&untagged).unwrap().is_some());
        let dir2 = s2.layers.dir(&r2.layers[0].chain_id);
        assert_eq!(
            std::fs::read(dir2.join("bin/busybox")).unwrap(),
            std::fs::read("/bin/busybox").unwrap()
        );
        // The spool dir is gone.
        assert_eq!(std::fs::read_dir(&s2.tmp_dir).unwrap().count(), 0);

        // The same archive read as an OCI layout (without manifest.json) gives the same images.
        let d3 = tempfile::tempdir().unwrap();
        let s3 = service(d3.path());
        let mut b = tar::Builder::new(Vec::new());
        let mut ar = tar::Archive::new(&out[..]);
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            if e.path().unwrap().to_str() == Some("manifest.json") {
                continue;
            }
            let h = e.header().clone();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            b.append(&h, &data[..]).unwrap();
        }
        let oci = b.into_inner().unwrap();
        let lines = load(&s3, &mut &oci[..]).unwrap();
        assert!(
            lines.contains(&"Loaded image: busybox:test".to_string()),
            "{lines:?}"
        );
        assert_eq!(s3.resolve("busybox:test").unwrap().id, id);
        assert_eq!(s3.resolve("localhost:5000/other").unwrap().id, other);
    }

    fn image_count(s: &ImageService) -> usize {
        s.all().unwrap().len()
    }

    #[test]
    fn hostile_archives_record_nothing() {
        let d = tempfile::tempdir().unwrap();
        let s = service(d.path());
        let layer = layer_tar("a", b"a");
        let diff = Digest::of(&layer);
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [diff.to_string()]},
        }))
        .unwrap();

        // A manifest pointing outside the archive.
        for bad in ["../../etc/passwd", "/etc/passwd", "a/../../x"] {
            let manifest = serde_json::to_vec(
                &json!([{"Config": "config.json", "RepoTags": ["evil:1"], "Layers": [bad]}]),
            )
            .unwrap();
            let ar = archive(&[("manifest.json", &manifest), ("config.json", &config)]);
            match load(&s, &mut &ar[..]) {
                Err(EngineError::InvalidArgument(_)) => {}
                other => panic!("{bad}: {other:?}"),
            }
            let manifest =
                serde_json::to_vec(&json!([{"Config": bad, "RepoTags": ["evil:1"], "Layers": []}]))
                    .unwrap();
            let ar = archive(&[("manifest.json", &manifest)]);
            assert!(matches!(
                load(&s, &mut &ar[..]),
                Err(EngineError::InvalidArgument(_))
            ));
        }

        // A symlink in the archive pointing outside is refused.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "layer.tar", "../../../etc/passwd")
            .unwrap();
        let ar = b.into_inner().unwrap();
        assert!(matches!(
            load(&s, &mut &ar[..]),
            Err(EngineError::InvalidArgument(_))
        ));

        // An archive entry with `..` is refused (written by hand: the tar crate's set_path refuses it).
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().unwrap().name[..16].copy_from_slice(b"../../escape.txt");
        h.set_mode(0o644);
        h.set_size(1);
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        let ar = b.into_inner().unwrap();
        assert!(matches!(
            load(&s, &mut &ar[..]),
            Err(EngineError::InvalidArgument(_))
        ));
        assert!(!d.path().join("escape.txt").exists());

        // A layer whose content does not match the config's diff id; a valid first image in the
        // same archive is not recorded either.
        let good_layer = layer_tar("g", b"good");
        let good_config = serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [Digest::of(&good_layer).to_string()]},
        }))
        .unwrap();
        let wrong = layer_tar("a", b"not a");
        let manifest = serde_json::to_vec(&json!([
            {"Config": "good.json", "RepoTags": ["good:1"], "Layers": ["good/layer.tar"]},
            {"Config": "config.json", "RepoTags": ["evil:1"], "Layers": ["x/layer.tar"]},
        ]))
        .unwrap();
        let ar = archive(&[
            ("manifest.json", &manifest),
            ("good.json", &good_config),
            ("good/layer.tar", &good_layer),
            ("config.json", &config),
            ("x/layer.tar", &wrong),
        ]);
        assert!(matches!(
            load(&s, &mut &ar[..]),
            Err(EngineError::InvalidArgument(_))
        ));
        assert_eq!(image_count(&s), 0);
        assert!(s.resolve("good:1").is_err());
        // Rolled back: no blobs, no layers left behind.
        assert!(
            s.content.list().unwrap().is_empty(),
            "{:?}",
            s.content.list().unwrap()
        );
        assert!(s.layers.list().unwrap().is_empty());
        assert_eq!(std::fs::read_dir(&s.tmp_dir).unwrap().count(), 0);

        // A blob in an OCI layout whose content does not match its name.
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_CONFIG, "digest": Digest::of(&config).to_string(), "size": config.len()},
            "layers": [{"mediaType": MEDIA_LAYER_TAR, "digest": diff.to_string(), "size": layer.len()}],
        }))
        .unwrap();
        let md = Digest::of(&manifest);
        let index = serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [
            {"mediaType": MEDIA_MANIFEST, "digest": md.to_string(), "size": manifest.len(),
             "annotations": {ANNOTATION_REF_NAME: "evil:1"}}]}))
        .unwrap();
        let (mp, cp, lp) = (
            blob_path(&md),
            blob_path(&Digest::of(&config)),
            blob_path(&diff),
        );
        let ar = archive(&[
            ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
            ("index.json", &index),
            (&mp, &manifest),
            (&cp, &config),
            (&lp, &wrong),
        ]);
        assert!(matches!(
            load(&s, &mut &ar[..]),
            Err(EngineError::InvalidArgument(_))
        ));
        assert_eq!(image_count(&s), 0);
        // With the right layer it loads.
        let ar = archive(&[
            ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
            ("index.json", &index),
            (&mp, &manifest),
            (&cp, &config),
            (&lp, &layer),
        ]);
        assert_eq!(
            load(&s, &mut &ar[..]).unwrap(),
            vec!["Loaded image: evil:1".to_string()]
        );
        assert_eq!(image_count(&s), 1);

        // Not an image archive at all.
        let ar = archive(&[("hello.txt", b"hi")]);
        assert!(matches!(
            load(&s, &mut &ar[..]),
            Err(EngineError::InvalidArgument(_))
        ));
    }

    /// Interoperability with a real OCI tool: skopeo reads what `save` writes (as docker-archive
    /// and as OCI archive), and OCI layouts it writes load back. Skipped without skopeo.
    #[test]
    fn skopeo_interop() {
        let skopeo = Path::new("/usr/bin/skopeo");
        if !skopeo.exists() {
            eprintln!("skopeo not installed: skipped");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let s = service(&d.path().join("s1"));
        let id = import(
            &s,
            &mut &busybox_rootfs()[..],
            &ImportOptions {
                reference: Some("bb:1".into()),
                ..Default::default()
            },
        )
        .unwrap();
        let file = d.path().join("save.tar");
        let mut f = File::create(&file).unwrap();
        save(&s, &["bb:1".into()], &mut f).unwrap();
        drop(f);
        let run = |args: &[&str]| {
            let out = std::process::Command::new(skopeo)
                .args(args)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "skopeo {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).to_string()
        };
        let tar_dir = |dir: &Path| {
            let mut b = tar::Builder::new(Vec::new());
            b.append_dir_all(".", dir).unwrap();
            b.into_inner().unwrap()
        };
        let fpath = file.to_str().unwrap();
        let cfg = run(&[
            "inspect",
            "--config",
            "--raw",
            &format!("docker-archive:{fpath}"),
        ]);
        assert_eq!(Digest::of(cfg.as_bytes()), id);
        let cfg = run(&[
            "inspect",
            "--config",
            "--raw",
            &format!("oci-archive:{fpath}:1"),
        ]);
        assert_eq!(Digest::of(cfg.as_bytes()), id);

        // OCI → OCI keeps the config: same id.
        let oci = d.path().join("oci");
        run(&[
            "copy",
            "-q",
            &format!("oci-archive:{fpath}:1"),
            &format!("oci:{}:docker.io/library/bb:2", oci.display()),
        ]);
        let s2 = service(&d.path().join("s2"));
        assert_eq!(
            load(&s2, &mut &tar_dir(&oci)[..]).unwrap(),
            vec!["Loaded image: bb:2".to_string()]
        );
        assert_eq!(s2.resolve("bb:2").unwrap().id, id);

        // From the docker-archive view skopeo rewrites the config (another id); with gzip layers.
        let oci = d.path().join("oci2");
        run(&[
            "copy",
            "-q",
            "--dest-compress",
            &format!("docker-archive:{fpath}"),
            &format!("oci:{}:bb:3", oci.display()),
        ]);
        assert_eq!(
            load(&s2, &mut &tar_dir(&oci)[..]).unwrap(),
            vec!["Loaded image: bb:3".to_string()]
        );
        let r3 = s2.resolve("bb:3").unwrap();
        assert_eq!(
            r3.layers[0].chain_id,
            s.resolve("bb:1").unwrap().layers[0].chain_id
        );
        assert_eq!(r3.layers[0].media_type, MEDIA_LAYER_GZIP);
        // A gzip layer is saved uncompressed, and loads back.
        let mut out = Vec::new();
        save(&s2, &["bb:3".into()], &mut out).unwrap();
        let s3 = service(&d.path().join("s3"));
        load(&s3, &mut &out[..]).unwrap();
        let r = s3.resolve("bb:3").unwrap();
        assert_eq!(r.id, r3.id);
        assert_eq!(r.layers[0].media_type, MEDIA_LAYER_TAR);
    }
}
