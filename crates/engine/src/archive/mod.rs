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

mod load;
mod save;
#[cfg(test)]
mod tests;

pub use load::load;
#[allow(unused_imports)]
use load::*;
pub use save::save;
#[allow(unused_imports)]
use save::*;

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
pub(super) const MEDIA_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub(super) const MEDIA_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub(super) const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(super) const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(super) const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub(super) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(super) const DOCKER_MANIFEST_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
pub(super) const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
pub(super) const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
/// Largest JSON document (manifest, index, config) read from an archive.
pub(super) const MAX_JSON: u64 = 32 << 20;
/// How many symlink hops (or nested indexes) are followed.
pub(super) const MAX_HOPS: usize = 16;

pub(super) fn invalid(msg: impl Into<String>) -> EngineError {
    EngineError::InvalidArgument(msg.into())
}

pub(super) fn internal(e: impl std::fmt::Display) -> EngineError {
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

pub(super) fn media_type_of(c: Compression) -> &'static str {
    match c {
        Compression::None => MEDIA_LAYER_TAR,
        Compression::Gzip => MEDIA_LAYER_GZIP,
        Compression::Zstd => MEDIA_LAYER_ZSTD,
    }
}

/// Blobs and layers created by one operation, removed again if it fails (unless an image
/// recorded meanwhile uses them).
#[derive(Default)]
pub(super) struct Created {
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
pub(super) fn with_rollback<T>(
    images: &ImageService,
    f: impl FnOnce(&mut Created) -> Result<T>,
) -> Result<T> {
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
pub(super) fn shell_words(s: &str) -> Result<Vec<String>> {
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
pub(super) fn exec_or_shell(args: &str) -> Vec<String> {
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

pub(super) fn now_rfc3339() -> String {
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
