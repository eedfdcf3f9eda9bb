//! `docker load`: docker-archive and OCI layout tarballs, spooled through the safe unpacker.

use super::*;

/// Normalize an archive path: strip `./`, drop `.` and empty components; reject absolute paths,
/// `..` and non-UTF-8.
pub(super) fn clean_path(p: &str) -> Result<String> {
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
pub(super) fn join_link(link: &str, target: &str) -> Result<String> {
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
pub(super) struct Spool {
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

pub(super) fn blob_path(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

#[derive(Deserialize)]
pub(super) struct ArchiveManifest {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

#[derive(Deserialize, Clone, Default)]
pub(super) struct Platform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
}

#[derive(Deserialize, Clone)]
pub(super) struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    annotations: HashMap<String, String>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
pub(super) struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
pub(super) struct Manifest {
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

/// An image whose blobs and layers are stored, waiting to be recorded.
pub(super) struct Pending {
    config: Digest,
    layers: Vec<LayerRef>,
    tags: Vec<String>,
}

/// The diff ids of a config.
pub(super) fn diff_ids(config: &[u8]) -> Result<Vec<Digest>> {
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
pub(super) fn store_layers(
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
pub(super) fn digest_of_blob_path(p: &str) -> Option<Digest> {
    clean_path(p)
        .ok()?
        .strip_prefix("blobs/sha256/")
        .and_then(|h| Digest::from_hex(h).ok())
}

pub(super) fn load_docker_archive(
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

pub(super) fn is_index(media: &str) -> bool {
    media == MEDIA_INDEX || media == DOCKER_MANIFEST_LIST
}

pub(super) fn tags_of(desc: &Descriptor) -> Vec<String> {
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

pub(super) fn load_oci_desc(
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

pub(super) fn load_oci_layout(
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
