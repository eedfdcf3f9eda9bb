//! `docker commit`: the container's upper dir becomes a new layer (through
//! [`crate::layerdiff::commit_upper`], the code build steps use), on top of the container's
//! image; the new config is the container's config with `--change` instructions applied.
//! A running container is frozen for the time of the diff (`pause=true`, Docker's default).

use std::sync::Arc;

use berth_store::Digest;
use serde_json::{json, Map, Value};

use super::{ContainerService, Record, Status};
use crate::images::LayerRef;
use crate::{EngineError, Result};

/// What `POST /commit` asks for.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// `repo` (may carry a registry) and `tag` of the new image; no tag when `repo` is empty.
    pub repo: String,
    pub tag: String,
    pub comment: String,
    pub author: String,
    /// Freeze a running container during the commit (Docker's default: true).
    pub pause: bool,
    /// Dockerfile instructions (`CMD`, `ENV`, ...), one per element (or several lines).
    pub changes: Vec<String>,
    /// The request body: a container config to use instead of the container's own (missing
    /// fields are taken from the container's, as Docker merges them).
    pub config: Option<Value>,
}

/// Instructions Docker accepts in `commit --change`.
const COMMIT_INSTRUCTIONS: &[&str] = &[
    "CMD",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "HEALTHCHECK",
    "LABEL",
    "ONBUILD",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

fn internal(e: impl std::fmt::Display) -> EngineError {
    EngineError::Internal(e.to_string())
}

/// Apply `--change` lines to a Docker-style config object: ONBUILD here (import's
/// [`crate::archive::apply_changes`] does not know it), the rest through the import's code.
pub fn apply_commit_changes(config: &mut Map<String, Value>, changes: &[String]) -> Result<()> {
    let mut rest = Vec::new();
    for change in changes {
        for line in change.lines() {
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let (instr, args) = match t.split_once(char::is_whitespace) {
                Some((i, a)) => (i.to_ascii_uppercase(), a.trim()),
                None => (t.to_ascii_uppercase(), ""),
            };
            if !COMMIT_INSTRUCTIONS.contains(&instr.as_str()) {
                return Err(EngineError::InvalidArgument(format!(
                    "{} is not a valid change command",
                    instr
                )));
            }
            match instr.as_str() {
                "ONBUILD" => {
                    let first = args.split_whitespace().next().unwrap_or("").to_uppercase();
                    if first.is_empty() {
                        return Err(EngineError::InvalidArgument(
                            "ONBUILD requires at least one argument".into(),
                        ));
                    }
                    if matches!(first.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
                        return Err(EngineError::InvalidArgument(format!(
                            "{first} isn't allowed as an ONBUILD trigger"
                        )));
                    }
                    let list = config.entry("OnBuild").or_insert_with(|| json!([]));
                    if !list.is_array() {
                        *list = json!([]);
                    }
                    if let Some(a) = list.as_array_mut() {
                        a.push(json!(args));
                    }
                }
                "HEALTHCHECK" => {
                    if args.eq_ignore_ascii_case("NONE") {
                        config.insert("Healthcheck".into(), json!({"Test": ["NONE"]}));
                    } else {
                        let cmd = args
                            .strip_prefix("CMD")
                            .or_else(|| args.strip_prefix("cmd"))
                            .map(str::trim)
                            .ok_or_else(|| {
                                EngineError::InvalidArgument(
                                    "HEALTHCHECK: options are not supported in commit; use CMD"
                                        .into(),
                                )
                            })?;
                        let test = if cmd.starts_with('[') {
                            let mut v: Vec<String> = serde_json::from_str(cmd).map_err(|e| {
                                EngineError::InvalidArgument(format!("HEALTHCHECK: {e}"))
                            })?;
                            v.insert(0, "CMD".into());
                            v
                        } else {
                            vec!["CMD-SHELL".into(), cmd.to_string()]
                        };
                        config.insert("Healthcheck".into(), json!({ "Test": test }));
                    }
                }
                _ => rest.push(t.to_string()),
            }
        }
    }
    crate::archive::apply_changes(config, &rest)
}

/// Docker's `merge(userConf, imageConf)`: fields the request's config leaves empty come from
/// the container's.
fn merge_config(user: &mut Map<String, Value>, base: &Map<String, Value>) {
    let empty = |v: Option<&Value>| match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        _ => false,
    };
    for (k, v) in base {
        match k.as_str() {
            "Env" => {
                let mut list: Vec<String> = user
                    .get("Env")
                    .and_then(|e| serde_json::from_value(e.clone()).ok())
                    .unwrap_or_default();
                let theirs: Vec<String> = serde_json::from_value(v.clone()).unwrap_or_default();
                for e in theirs {
                    let key = e.split('=').next().unwrap_or("").to_string();
                    if !list
                        .iter()
                        .any(|x| x.split('=').next() == Some(key.as_str()))
                    {
                        list.push(e);
                    }
                }
                user.insert("Env".into(), json!(list));
            }
            "Labels" | "ExposedPorts" | "Volumes" => {
                if let (Some(Value::Object(theirs)), false) = (Some(v), v.is_null()) {
                    let mine = user.entry(k.clone()).or_insert_with(|| json!({}));
                    if !mine.is_object() {
                        *mine = json!({});
                    }
                    if let Some(m) = mine.as_object_mut() {
                        for (kk, vv) in theirs {
                            m.entry(kk.clone()).or_insert_with(|| vv.clone());
                        }
                    }
                }
            }
            "Cmd" => {
                if empty(user.get("Cmd")) && empty(user.get("Entrypoint")) {
                    user.insert("Cmd".into(), v.clone());
                }
            }
            _ => {
                if empty(user.get(k)) {
                    user.insert(k.clone(), v.clone());
                }
            }
        }
    }
}

impl ContainerService {
    /// `POST /commit`: returns the new image id. Emits the container's `commit` event.
    pub async fn commit(self: &Arc<Self>, name: &str, opts: CommitOptions) -> Result<Digest> {
        let c = self.get(name)?;
        // Validate what is cheap before freezing anything.
        let tags = if opts.repo.is_empty() {
            if !opts.tag.is_empty() {
                return Err(EngineError::InvalidArgument(
                    "cannot commit with a tag but no repository".into(),
                ));
            }
            Vec::new()
        } else {
            let r = if opts.tag.is_empty() {
                opts.repo.clone()
            } else {
                format!("{}:{}", opts.repo, opts.tag)
            };
            vec![crate::images::normalize_tag(&r)?]
        };
        let base = serde_json::to_value(c.snapshot().config).map_err(internal)?;
        let Value::Object(base) = base else {
            return Err(internal("container config is not an object"));
        };
        let mut config = match &opts.config {
            Some(Value::Object(m)) if !m.is_empty() => m.clone(),
            _ => base.clone(),
        };
        apply_commit_changes(&mut config, &opts.changes)?;
        merge_config(&mut config, &base);

        let _g = c.op_lock.lock().await;
        let rec = c.snapshot();
        if matches!(rec.state.status, Status::Removing | Status::Dead) {
            return Err(EngineError::Conflict(format!(
                "You cannot commit container {} which is being removed",
                rec.id
            )));
        }
        let freeze = opts.pause && rec.state.status == Status::Running;
        if freeze {
            let cg = self.cgroups_path(&rec.id);
            tokio::task::spawn_blocking(move || berth_runtime::cgroups::freeze(&cg))
                .await
                .map_err(internal)??;
            self.set_status(&c, Status::Paused);
            // Recorded, so that an engine killed mid-commit restarts with the truth (frozen).
            if let Err(e) = self.save(&c) {
                tracing::warn!(container = %rec.id, error = %e, "cannot record pause");
            }
            self.emit(&c, "pause", &[]);
        }
        let this = self.clone();
        let rec2 = rec.clone();
        let opts2 = opts.clone();
        let tags2 = tags.clone();
        let res = tokio::task::spawn_blocking(move || {
            let (config_digest, layers) = this.commit_blocking(&rec2, config, &opts2)?;
            this.images
                .add_image_with_parent(&config_digest, layers, &tags2, Some(&rec2.image_id))
        })
        .await
        .map_err(internal)
        .and_then(|r| r);
        if let Ok(id) = &res {
            // Docker's order: pause, commit, unpause.
            self.emit(
                &c,
                "commit",
                &[
                    ("comment", opts.comment.clone()),
                    ("imageID", id.to_string()),
                    ("imageRef", tags.first().cloned().unwrap_or_default()),
                ],
            );
        }
        if freeze {
            let cg = self.cgroups_path(&rec.id);
            let thawed = tokio::task::spawn_blocking(move || berth_runtime::cgroups::thaw(&cg))
                .await
                .map_err(internal)
                .and_then(|r| r.map_err(EngineError::from));
            match thawed {
                Ok(()) => {
                    self.set_status(&c, Status::Running);
                    if let Err(e) = self.save(&c) {
                        tracing::warn!(container = %rec.id, error = %e, "cannot record unpause");
                    }
                    self.emit(&c, "unpause", &[]);
                }
                Err(e) => {
                    tracing::warn!(container = %rec.id, error = %e, "cannot thaw after commit")
                }
            }
        }
        res
    }

    /// The layers of the container's image (from its record, or rebuilt from the layer store
    /// when the image was force-removed), and its config if known.
    fn commit_parent(&self, rec: &Record) -> Result<(Vec<LayerRef>, Option<Value>)> {
        if let Some(img) = self.images.get(&rec.image_id)? {
            let cfg: Value =
                serde_json::from_slice(&self.images.content.read(&img.id)?).map_err(internal)?;
            return Ok((img.layers, Some(cfg)));
        }
        let mut out = Vec::new();
        for chain in &rec.layers {
            let info = self.images.layers.get(chain)?.ok_or_else(|| {
                EngineError::NotFound(format!("layer {chain} of container {}", rec.id))
            })?;
            out.push(LayerRef {
                blob: None,
                media_type: crate::archive::MEDIA_LAYER_TAR.to_string(),
                diff_id: info.diff_id,
                chain_id: info.chain_id,
                size: info.size,
            });
        }
        Ok((out, None))
    }

    /// Blocking: the diff, then the config blob. Returns the config digest and the layers.
    fn commit_blocking(
        &self,
        rec: &Record,
        config: Map<String, Value>,
        opts: &CommitOptions,
    ) -> Result<(Digest, Vec<LayerRef>)> {
        let (mut layers, parent_cfg) = self.commit_parent(rec)?;
        let upper = self.dir(&rec.id).join("upper");
        let parent_chain = layers.last().map(|l| l.chain_id.clone());
        let layer = if upper.is_dir() {
            crate::layerdiff::commit_upper(&self.images, parent_chain.as_ref(), &upper)?
        } else {
            None
        };
        let now = super::now_rfc3339();
        let created_by = rec.config.cmd.clone().unwrap_or_default().join(" ");
        let mut hist = json!({"created": now, "created_by": created_by});
        if !opts.author.is_empty() {
            hist["author"] = json!(opts.author);
        }
        if !opts.comment.is_empty() {
            hist["comment"] = json!(opts.comment);
        }
        if layer.is_none() {
            hist["empty_layer"] = json!(true);
        }
        let mut history: Vec<Value> = parent_cfg
            .as_ref()
            .and_then(|c| c.get("history"))
            .and_then(|h| h.as_array().cloned())
            .unwrap_or_default();
        history.push(hist);
        if let Some(l) = &layer {
            layers.push(l.clone());
        }
        let pick = |k: &str, dflt: &str| -> Value {
            parent_cfg
                .as_ref()
                .and_then(|c| c.get(k))
                .cloned()
                .unwrap_or_else(|| json!(dflt))
        };
        let mut img = json!({
            "architecture": pick("architecture", crate::archive::host_arch()),
            "os": pick("os", "linux"),
            "created": now,
            "config": Value::Object(config),
            "container": rec.id,
            "rootfs": {
                "type": "layers",
                "diff_ids": layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>(),
            },
            "history": history,
        });
        if !opts.author.is_empty() {
            img["author"] = json!(opts.author);
        }
        if !opts.comment.is_empty() {
            img["comment"] = json!(opts.comment);
        }
        if let Some(v) = parent_cfg.as_ref().and_then(|c| c.get("variant")) {
            img["variant"] = v.clone();
        }
        let data = serde_json::to_vec(&img).map_err(internal)?;
        let digest = self.images.content.put(&data)?;
        Ok((digest, layers))
    }
}

/// The hook through which the build cache reports its records to `GET /system/df` (Docker's
/// `BuildCache` objects: `ID`, `Type`, `Description`, `InUse`, `Shared`, `Size`, `CreatedAt`,
/// `LastUsedAt`, `UsageCount`). Until the builder sets it, the build cache is empty.
pub type BuildCacheUsage = Box<dyn Fn() -> Vec<Value> + Send + Sync>;

static BUILD_CACHE_USAGE: std::sync::OnceLock<BuildCacheUsage> = std::sync::OnceLock::new();

/// Install the build cache's usage reporter (once per process; later calls are ignored).
pub fn set_build_cache_usage(f: BuildCacheUsage) {
    let _ = BUILD_CACHE_USAGE.set(f);
}

fn build_cache_usage() -> Vec<Value> {
    BUILD_CACHE_USAGE.get().map(|f| f()).unwrap_or_default()
}

/// Bytes of regular files under `dir` (hard links counted once, links never followed), as
/// Docker's `directory.Size`.
pub fn dir_size(dir: &std::path::Path) -> u64 {
    fn walk(dir: &std::path::Path, seen: &mut std::collections::HashSet<(u64, u64)>) -> u64 {
        use std::os::unix::fs::MetadataExt;
        let Ok(rd) = std::fs::read_dir(dir) else {
            return 0;
        };
        let mut total = 0;
        for e in rd.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if m.is_dir() {
                total += walk(&e.path(), seen);
            } else if m.is_file() && (m.nlink() == 1 || seen.insert((m.dev(), m.ino()))) {
                total += m.len();
            }
        }
        total
    }
    walk(dir, &mut std::collections::HashSet::new())
}

impl ContainerService {
    /// Blocking: `GET /system/df` (Docker's `SystemDataUsageResponse`).
    pub fn disk_usage(&self) -> Result<Value> {
        let counts = self.count_by_image();
        let all = self.images.all()?;
        // How many images use each layer, and the total of distinct layers.
        let mut users: std::collections::HashMap<&Digest, (u64, u32)> =
            std::collections::HashMap::new();
        for r in &all {
            for l in &r.layers {
                users.entry(&l.chain_id).or_insert((l.size, 0)).1 += 1;
            }
        }
        let layers_size: u64 = users.values().map(|(s, _)| *s).sum();
        let mut images =
            self.images
                .list(false, &crate::images::ImageFilters::default(), &counts)?;
        for img in images.iter_mut() {
            let shared: u64 = all
                .iter()
                .find(|r| r.id.to_string() == img.id)
                .map(|r| {
                    r.layers
                        .iter()
                        .filter(|l| users.get(&l.chain_id).is_some_and(|(_, n)| *n > 1))
                        .map(|l| l.size)
                        .sum()
                })
                .unwrap_or(0);
            img.shared_size = shared as i64;
        }
        let mut containers = self.list(&super::ListOptions {
            all: true,
            ..Default::default()
        })?;
        for c in containers.iter_mut() {
            let id = c["Id"].as_str().unwrap_or_default().to_string();
            let rw = dir_size(&self.dir(&id).join("upper"));
            let image_size = c["ImageID"]
                .as_str()
                .and_then(|i| Digest::parse(i).ok())
                .and_then(|d| all.iter().find(|r| r.id == d))
                .map(|r| r.size)
                .unwrap_or(0);
            c["SizeRw"] = json!(rw);
            c["SizeRootFs"] = json!(rw + image_size);
        }
        let mut volumes = Vec::new();
        for rec in self.volumes.list()? {
            let mut v = self.volumes.to_json(&rec);
            let refs = self.volume_users(&rec.name).len();
            v["UsageData"] = json!({
                "Size": dir_size(&self.volumes.data_path(&rec.name)),
                "RefCount": refs,
            });
            volumes.push(v);
        }
        let images = serde_json::to_value(images).map_err(internal)?;
        Ok(json!({
            "LayersSize": layers_size,
            "Images": images,
            "Containers": containers,
            "Volumes": volumes,
            "BuildCache": build_cache_usage(),
        }))
    }
}
