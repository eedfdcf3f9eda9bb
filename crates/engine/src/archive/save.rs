//! `docker save`: docker-archive plus OCI layout in one streamed tar.

use super::*;

pub(super) fn file_header(path: &str, size: u64) -> Result<tar::Header> {
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

pub(super) fn append_bytes(
    b: &mut tar::Builder<&mut dyn Write>,
    path: &str,
    data: &[u8],
) -> Result<()> {
    let h = file_header(path, data.len() as u64)?;
    b.append(&h, data)?;
    Ok(())
}

pub(super) fn append_dir(b: &mut tar::Builder<&mut dyn Write>, path: &str) -> Result<()> {
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
pub(super) struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Write a layer as an uncompressed tar named by its diff id. Returns its size.
pub(super) fn append_layer(
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
    let blob = l.blob.as_ref().filter(|d| images.content.exists(d));
    // Decompress (or, with no stored blob, re-create the tar from the layer directory) to a temp
    // file first: the tar header needs the size.
    std::fs::create_dir_all(&images.tmp_dir)?;
    let tmp = TempFile(images.tmp_dir.join(format!(
        "{}save-{}",
        berth_store::atomic::TEMP_PREFIX,
        berth_store::atomic::random_hex(8)
    )));
    let (digest, size) = match blob {
        Some(blob) => {
            let mut w = DigestWriter::new(File::create(&tmp.0)?);
            let mut rd = compress::decompressed(BufReader::new(images.content.open_blob(blob)?))?;
            std::io::copy(&mut rd, &mut w)?;
            let (f, digest, size) = w.finish();
            drop(f);
            (digest, size)
        }
        None => {
            let dir = images.layers.dir(&l.chain_id);
            if !dir.is_dir() {
                return Err(internal(format!("layer {} has no stored blob", l.diff_id)));
            }
            let mut f = std::io::BufWriter::new(File::create(&tmp.0)?);
            let r = crate::layerdiff::write_diff(&dir, &mut f)?;
            f.flush()?;
            r
        }
    };
    if digest != l.diff_id {
        return Err(internal(format!(
            "layer {} does not match its diff id {}",
            blob.map(|b| b.to_string())
                .unwrap_or_else(|| l.chain_id.to_string()),
            l.diff_id
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
