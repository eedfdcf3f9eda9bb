//! The image service. An image is its config blob (its id is the config's digest) plus the ordered
//! list of its layers; tags map familiar `name:tag` strings to image ids. Records live in the
//! metadata db (tables `images`, `tags`); blobs in the content store; layers in the layer store.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use berth_store::content::ContentStore;
use berth_store::layers::LayerStore;
use berth_store::meta::{Batch, Db};
use berth_store::Digest;
use bollard_stubs::models::{
    ImageConfig, ImageDeleteResponseItem, ImageHistoryResponseItem, ImageInspect,
    ImageInspectMetadata, ImageInspectRootFs, ImageSummary,
};
use serde::{Deserialize, Serialize};

use crate::events::EventBus;
use crate::reference::Reference;
use crate::{EngineError, Result};

/// Table of image records, keyed by the id's hex.
pub const IMAGES_TABLE: &str = "images";
/// Table of tags: familiar `name:tag` → image id.
pub const TAGS_TABLE: &str = "tags";
/// Table of the last time an image was tagged: id hex → RFC 3339.
const TAG_TIMES_TABLE: &str = "image_tag_times";

/// Serializes the read-modify-write sequences of every image service in the process (tag moves,
/// deletes), so two requests cannot interleave their batches.
static WRITE_LOCK: Mutex<()> = Mutex::new(());

fn write_lock() -> MutexGuard<'static, ()> {
    WRITE_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// One layer of an image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LayerRef {
    /// The blob as stored in the content store (compressed or not), if we have it.
    pub blob: Option<Digest>,
    pub media_type: String,
    pub diff_id: Digest,
    pub chain_id: Digest,
    /// Unpacked size in bytes.
    pub size: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Digest of the config blob.
    pub id: Digest,
    pub layers: Vec<LayerRef>,
    /// Familiar `name:tag` strings.
    pub repo_tags: Vec<String>,
    /// Familiar `name@sha256:...` strings.
    pub repo_digests: Vec<String>,
    /// RFC 3339, from the config's `created`.
    pub created: String,
    /// Sum of layer sizes.
    pub size: u64,
    /// Id of the image this was built/committed from, if known (for `images -a` / dangling).
    #[serde(default)]
    pub parent: Option<Digest>,
}

/// The parts of an image config the container service needs.
#[derive(Debug, Clone, Default)]
pub struct RunConfig {
    pub env: Vec<String>,
    pub cmd: Vec<String>,
    pub entrypoint: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub labels: HashMap<String, String>,
    pub stop_signal: Option<String>,
    pub exposed_ports: Vec<String>,
    pub volumes: Vec<String>,
}

/// Filters of `GET /images/json` (already decoded from the JSON `filters` parameter).
#[derive(Debug, Clone, Default)]
pub struct ImageFilters {
    pub dangling: Option<bool>,
    /// Patterns matched against familiar `name:tag` (path-style globs, as Docker).
    pub reference: Vec<String>,
    /// `key` or `key=value`.
    pub label: Vec<String>,
}

/// The fields of a Docker/OCI image config we read beyond what oci-spec models (Docker's
/// `comment`, and the `config` object with Healthcheck/Shell/OnBuild).
#[derive(Debug, Default, Deserialize)]
struct RawConfig {
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    author: Option<String>,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    architecture: Option<String>,
    #[serde(default)]
    variant: Option<String>,
    #[serde(default)]
    os: Option<String>,
    #[serde(default, rename = "os.version")]
    os_version: Option<String>,
    #[serde(default)]
    config: Option<serde_json::Value>,
    #[serde(default)]
    history: Vec<RawHistory>,
}

#[derive(Debug, Default, Deserialize)]
struct RawHistory {
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    created_by: Option<String>,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    empty_layer: Option<bool>,
}

fn not_found(name: &str) -> EngineError {
    EngineError::NotFound(format!("No such image: {name}"))
}

fn internal(e: impl std::fmt::Display) -> EngineError {
    EngineError::Internal(e.to_string())
}

/// A date in whatever type bollard-stubs was built with (String, chrono or time).
fn bollard_date(s: &str) -> Option<bollard_stubs::models::BollardDate> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
}

/// Unix seconds of an RFC 3339 date (0 if unparsable).
fn unix_seconds(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|d| d.timestamp())
        .unwrap_or(0)
}

/// Docker prints dates as RFC 3339 with nanoseconds trimmed of trailing zeros.
fn rfc3339_nano(s: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(s) {
        Ok(d) => d
            .with_timezone(&chrono::Utc)
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        Err(_) => s.to_string(),
    }
}

/// Go's `path.Match`: `*` any run of non-`/`, `?` one non-`/`, `[...]` classes (`^`/`!` negate,
/// ranges), `\` escapes.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn class(p: &[char], c: char) -> Option<(bool, usize)> {
        // Returns (matched, length of the class in pattern chars including brackets).
        let mut i = 1;
        let negate = matches!(p.get(i), Some('^') | Some('!'));
        if negate {
            i += 1;
        }
        let mut matched = false;
        let mut first = true;
        loop {
            let mut lo = *p.get(i)?;
            if lo == ']' && !first {
                return Some((matched != negate, i + 1));
            }
            first = false;
            if lo == '\\' {
                i += 1;
                lo = *p.get(i)?;
            }
            let mut hi = lo;
            if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|x| *x != ']') {
                i += 2;
                hi = *p.get(i)?;
                if hi == '\\' {
                    i += 1;
                    hi = *p.get(i)?;
                }
            }
            if lo <= c && c <= hi {
                matched = true;
            }
            i += 1;
        }
    }
    fn m(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => {
                let rest = &p[1..];
                for k in 0..=n.len() {
                    if m(rest, &n[k..]) {
                        return true;
                    }
                    if k < n.len() && n[k] == '/' {
                        break;
                    }
                }
                false
            }
            Some('?') => !n.is_empty() && n[0] != '/' && m(&p[1..], &n[1..]),
            Some('[') => match (n.first(), class(p, n.first().copied().unwrap_or('\0'))) {
                (Some(&c), Some((true, len))) if c != '/' => m(&p[len..], &n[1..]),
                _ => false,
            },
            Some('\\') => match (p.get(1), n.first()) {
                (Some(a), Some(b)) if a == b => m(&p[2..], &n[1..]),
                _ => false,
            },
            Some(c) => n.first() == Some(c) && m(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    m(&p, &n)
}

/// Docker's FamiliarMatch: the pattern against `name:tag`, then against `name` alone.
fn reference_matches(pattern: &str, familiar: &str) -> bool {
    if glob_match(pattern, familiar) {
        return true;
    }
    match Reference::parse(familiar) {
        Ok(r) => glob_match(pattern, &r.familiar_name()),
        Err(_) => false,
    }
}

/// Normalize a tag given by a user or an archive to the familiar `name:tag` we key tags by.
pub fn normalize_tag(s: &str) -> Result<String> {
    let r = Reference::parse(s)?;
    if r.digest.is_some() {
        return Err(EngineError::InvalidArgument(
            "refusing to create a tag with a digest reference".to_string(),
        ));
    }
    Ok(r.with_default_tag().familiar_tagged())
}

pub struct ImageService {
    pub content: ContentStore,
    pub layers: LayerStore,
    pub db: Arc<Db>,
    pub events: Arc<EventBus>,
    pub tmp_dir: PathBuf,
}

impl ImageService {
    pub fn new(
        content: ContentStore,
        layers: LayerStore,
        db: Arc<Db>,
        events: Arc<EventBus>,
        tmp_dir: PathBuf,
    ) -> Self {
        ImageService {
            content,
            layers,
            db,
            events,
            tmp_dir,
        }
    }

    fn emit(&self, action: &str, id: &Digest, name: &str) {
        let attrs = HashMap::from([("name".to_string(), name.to_string())]);
        self.events.emit("image", action, &id.to_string(), attrs);
    }

    fn tag_map(&self) -> Result<HashMap<String, Digest>> {
        Ok(self.db.list::<Digest>(TAGS_TABLE)?.into_iter().collect())
    }

    /// Tags of every image id, sorted.
    fn tags_by_image(&self) -> Result<HashMap<Digest, Vec<String>>> {
        let mut out: HashMap<Digest, Vec<String>> = HashMap::new();
        for (tag, id) in self.tag_map()? {
            out.entry(id).or_default().push(tag);
        }
        for v in out.values_mut() {
            v.sort();
        }
        Ok(out)
    }

    fn get_raw(&self, id: &Digest) -> Result<Option<ImageRecord>> {
        Ok(self.db.get::<ImageRecord>(IMAGES_TABLE, id.hex())?)
    }

    /// Find an image by reference (`busybox`, `busybox:1`, `x@sha256:..`), by full id
    /// (`sha256:...`), or by a unique id prefix (at least... any length, as Docker). 404 with
    /// Docker's message: "No such image: busybox:latest".
    pub fn resolve(&self, name: &str) -> Result<ImageRecord> {
        self.resolve_with_tag(name).map(|(rec, _)| rec)
    }

    /// Like [`resolve`](Self::resolve), also telling which familiar tag (or `name@digest`)
    /// matched when `name` was a reference rather than an id.
    pub fn resolve_with_tag(&self, name: &str) -> Result<(ImageRecord, Option<String>)> {
        // A full id.
        if let Ok(d) = Digest::parse(name) {
            return match self.get(&d)? {
                Some(r) => Ok((r, None)),
                None => Err(not_found(name)),
            };
        }
        let mut shown = name.to_string();
        if let Ok(r) = Reference::parse(name) {
            if let Some(dg) = &r.digest {
                let want = format!("{}@{dg}", r.familiar_name());
                for rec in self.all()? {
                    if rec.repo_digests.iter().any(|x| x == &want) {
                        return Ok((rec, Some(want)));
                    }
                }
                return Err(not_found(name));
            }
            let tagged = r.with_default_tag().familiar_tagged();
            if let Some(id) = self.db.get::<Digest>(TAGS_TABLE, &tagged)? {
                if let Some(rec) = self.get(&id)? {
                    return Ok((rec, Some(tagged)));
                }
            }
            shown = tagged;
        }
        // A (possibly sha256:-prefixed) id prefix.
        let prefix = name.strip_prefix("sha256:").unwrap_or(name);
        let is_hex = !prefix.is_empty()
            && prefix.len() <= 64
            && prefix
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if is_hex {
            let mut found = None;
            for (key, _) in self.db.list::<serde_json::Value>(IMAGES_TABLE)? {
                if key.starts_with(prefix) {
                    if found.is_some() {
                        // Ambiguous prefix.
                        return Err(not_found(name));
                    }
                    found = Some(key);
                }
            }
            if let Some(key) = found {
                let d = Digest::from_hex(&key)?;
                if let Some(rec) = self.get(&d)? {
                    return Ok((rec, None));
                }
            }
        }
        Err(not_found(&shown))
    }

    pub fn get(&self, id: &Digest) -> Result<Option<ImageRecord>> {
        let Some(mut rec) = self.get_raw(id)? else {
            return Ok(None);
        };
        // The tags table is the truth for tags.
        rec.repo_tags = self.tags_by_image()?.remove(id).unwrap_or_default();
        Ok(Some(rec))
    }

    pub fn all(&self) -> Result<Vec<ImageRecord>> {
        let mut tags = self.tags_by_image()?;
        Ok(self
            .db
            .list::<ImageRecord>(IMAGES_TABLE)?
            .into_iter()
            .map(|(_, mut rec)| {
                rec.repo_tags = tags.remove(&rec.id).unwrap_or_default();
                rec
            })
            .collect())
    }

    fn raw_config(&self, rec: &ImageRecord) -> Result<RawConfig> {
        let data = self.content.read(&rec.id)?;
        serde_json::from_slice(&data).map_err(|e| internal(format!("image config {}: {e}", rec.id)))
    }

    /// The config blob, parsed.
    pub fn config(&self, rec: &ImageRecord) -> Result<oci_spec::image::ImageConfiguration> {
        let data = self.content.read(&rec.id)?;
        oci_spec::image::ImageConfiguration::from_reader(&data[..])
            .map_err(|e| internal(format!("image config {}: {e}", rec.id)))
    }

    pub fn run_config(&self, rec: &ImageRecord) -> Result<RunConfig> {
        let cfg = self.config(rec)?;
        let Some(c) = cfg.config() else {
            return Ok(RunConfig::default());
        };
        Ok(RunConfig {
            env: c.env().clone().unwrap_or_default(),
            cmd: c.cmd().clone().unwrap_or_default(),
            entrypoint: c.entrypoint().clone().unwrap_or_default(),
            working_dir: c.working_dir().clone().unwrap_or_default(),
            user: c.user().clone().unwrap_or_default(),
            labels: c.labels().clone().unwrap_or_default(),
            stop_signal: c.stop_signal().clone(),
            exposed_ports: c.exposed_ports().clone().unwrap_or_default(),
            volumes: c.volumes().clone().unwrap_or_default(),
        })
    }

    fn labels_of(&self, rec: &ImageRecord) -> HashMap<String, String> {
        self.run_config(rec).map(|c| c.labels).unwrap_or_default()
    }

    /// Layer directories, top-most first, for the overlay lowerdir list.
    pub fn layer_dirs(&self, rec: &ImageRecord) -> Vec<PathBuf> {
        rec.layers
            .iter()
            .rev()
            .map(|l| self.layers.dir(&l.chain_id))
            .collect()
    }

    /// Ids that are the parent of some image.
    fn parents(images: &[ImageRecord]) -> HashSet<Digest> {
        images.iter().filter_map(|r| r.parent.clone()).collect()
    }

    /// `GET /images/json`. `containers` counts containers per image id (for the Containers field).
    pub fn list(
        &self,
        all: bool,
        filters: &ImageFilters,
        containers: &HashMap<Digest, i64>,
    ) -> Result<Vec<ImageSummary>> {
        let images = self.all()?;
        let parents = Self::parents(&images);
        let mut out = Vec::new();
        for rec in &images {
            let untagged = rec.repo_tags.is_empty();
            if !all && untagged && parents.contains(&rec.id) {
                continue;
            }
            if let Some(d) = filters.dangling {
                if d != untagged {
                    continue;
                }
            }
            if !filters.reference.is_empty()
                && !filters.reference.iter().any(|p| {
                    rec.repo_tags
                        .iter()
                        .chain(rec.repo_digests.iter())
                        .any(|t| reference_matches(p, t))
                })
            {
                continue;
            }
            let labels = self.labels_of(rec);
            if !filters.label.iter().all(|f| match f.split_once('=') {
                Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
                None => labels.contains_key(f.as_str()),
            }) {
                continue;
            }
            out.push(ImageSummary {
                id: rec.id.to_string(),
                parent_id: rec
                    .parent
                    .as_ref()
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
                repo_tags: rec.repo_tags.clone(),
                repo_digests: rec.repo_digests.clone(),
                created: unix_seconds(&rec.created),
                size: rec.size as i64,
                shared_size: -1,
                labels,
                containers: containers.get(&rec.id).copied().unwrap_or(0),
                ..Default::default()
            });
        }
        // Newest first, as Docker.
        out.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    pub fn inspect(&self, name: &str) -> Result<ImageInspect> {
        let rec = self.resolve(name)?;
        let raw = self.raw_config(&rec)?;
        let config: Option<ImageConfig> = match raw.config {
            Some(v) if !v.is_null() => Some(
                serde_json::from_value(v)
                    .map_err(|e| internal(format!("image config {}: {e}", rec.id)))?,
            ),
            _ => None,
        };
        let last_tag = self
            .db
            .get::<String>(TAG_TIMES_TABLE, rec.id.hex())?
            .and_then(|s| bollard_date(&s));
        Ok(ImageInspect {
            id: Some(rec.id.to_string()),
            repo_tags: Some(rec.repo_tags.clone()),
            repo_digests: Some(rec.repo_digests.clone()),
            comment: Some(raw.comment.unwrap_or_default()),
            created: raw
                .created
                .as_deref()
                .and_then(|c| bollard_date(&rfc3339_nano(c))),
            author: Some(raw.author.unwrap_or_default()),
            config,
            architecture: raw.architecture,
            variant: raw.variant,
            os: raw.os,
            os_version: raw.os_version,
            size: Some(rec.size as i64),
            root_fs: Some(ImageInspectRootFs {
                typ: "layers".to_string(),
                layers: Some(rec.layers.iter().map(|l| l.diff_id.to_string()).collect()),
            }),
            metadata: Some(ImageInspectMetadata {
                last_tag_time: last_tag,
            }),
            ..Default::default()
        })
    }

    pub fn history(&self, name: &str) -> Result<Vec<ImageHistoryResponseItem>> {
        let rec = self.resolve(name)?;
        let raw = self.raw_config(&rec)?;
        let mut items = Vec::new();
        let mut layer = 0usize;
        for h in &raw.history {
            let mut size = 0i64;
            if !h.empty_layer.unwrap_or(false) {
                let Some(l) = rec.layers.get(layer) else {
                    return Err(internal("too many non-empty layers in History section"));
                };
                size = l.size as i64;
                layer += 1;
            }
            items.push(ImageHistoryResponseItem {
                id: "<missing>".to_string(),
                created: h.created.as_deref().map(unix_seconds).unwrap_or(0),
                created_by: h.created_by.clone().unwrap_or_default(),
                tags: Vec::new(),
                size,
                comment: h.comment.clone().unwrap_or_default(),
            });
        }
        items.reverse();
        // Ids and tags down the parent chain, as far as it is known.
        let mut cur = Some(rec);
        let mut seen = HashSet::new();
        for item in items.iter_mut() {
            let Some(r) = cur.take() else { break };
            if !seen.insert(r.id.clone()) {
                break;
            }
            item.id = r.id.to_string();
            item.tags = r.repo_tags.clone();
            cur = match &r.parent {
                Some(p) => self.get(p)?,
                None => None,
            };
        }
        Ok(items)
    }

    /// `docker tag SOURCE TARGET`: `repo` (may include registry) and `tag` (default latest).
    /// Moves the tag if another image had it (that image may become dangling). Emits `tag`.
    pub fn tag(&self, source: &str, repo: &str, tag: Option<&str>) -> Result<()> {
        let r = Reference::parse(repo)?;
        if r.digest.is_some() {
            return Err(EngineError::InvalidArgument(
                "refusing to create a tag with a digest reference".to_string(),
            ));
        }
        let mut r = r;
        if let Some(t) = tag.filter(|t| !t.is_empty()) {
            // Validate the tag through the grammar.
            let checked = Reference::parse(&format!("{}:{t}", r.familiar_name()))?;
            r.tag = checked.tag;
        }
        let target = r.with_default_tag().familiar_tagged();
        let _g = write_lock();
        let rec = self.resolve(source)?;
        self.set_tags(&rec.id, &[target])
    }

    /// Point each (already normalized) tag at `id`, in one transaction; emits `tag`.
    fn set_tags(&self, id: &Digest, tags: &[String]) -> Result<()> {
        if tags.is_empty() {
            return Ok(());
        }
        let tag_map = self.tag_map()?;
        let mut b = Batch::default();
        let mut touched: HashMap<Digest, ImageRecord> = HashMap::new();
        for t in tags {
            if let Some(old) = tag_map.get(t) {
                if old != id {
                    if let Some(mut o) = self.get_raw(old)? {
                        o.repo_tags.retain(|x| x != t);
                        touched.insert(old.clone(), o);
                    }
                }
            }
            b.put(TAGS_TABLE, t, id)?;
        }
        if let Some(mut rec) = self.get_raw(id)? {
            for t in tags {
                if !rec.repo_tags.contains(t) {
                    rec.repo_tags.push(t.clone());
                }
            }
            rec.repo_tags.sort();
            touched.insert(id.clone(), rec);
        }
        for (k, rec) in &touched {
            b.put(IMAGES_TABLE, k.hex(), rec)?;
        }
        b.put(
            TAG_TIMES_TABLE,
            id.hex(),
            &chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        )?;
        self.db.write(b)?;
        for t in tags {
            self.emit("tag", id, t);
        }
        Ok(())
    }

    /// Record a new image (config already in the content store, layers in the layer store), with
    /// optional tags. Used by import, load, commit, build. Returns the id.
    pub fn add_image(
        &self,
        config_digest: &Digest,
        layers: Vec<LayerRef>,
        tags: &[String],
    ) -> Result<Digest> {
        self.add_image_with_parent(config_digest, layers, tags, None)
    }

    /// [`add_image`](Self::add_image) recording the image it was built from (`docker commit`,
    /// build steps), so `images -a`, dangling and history see the chain.
    pub fn add_image_with_parent(
        &self,
        config_digest: &Digest,
        layers: Vec<LayerRef>,
        tags: &[String],
        parent: Option<&Digest>,
    ) -> Result<Digest> {
        let tags = tags
            .iter()
            .map(|t| normalize_tag(t))
            .collect::<Result<Vec<_>>>()?;
        if !self.content.exists(config_digest) {
            return Err(EngineError::InvalidArgument(format!(
                "image config {config_digest} is not in the content store"
            )));
        }
        for l in &layers {
            if !self.layers.exists(&l.chain_id) {
                return Err(EngineError::InvalidArgument(format!(
                    "layer {} is not in the layer store",
                    l.chain_id
                )));
            }
        }
        let data = self.content.read(config_digest)?;
        let raw: RawConfig = serde_json::from_slice(&data)
            .map_err(|e| EngineError::InvalidArgument(format!("invalid image config: {e}")))?;
        let _g = write_lock();
        let rec = match self.get_raw(config_digest)? {
            Some(mut existing) => {
                if existing.parent.is_none() {
                    existing.parent = parent.cloned();
                }
                existing
            }
            None => ImageRecord {
                id: config_digest.clone(),
                size: layers.iter().map(|l| l.size).sum(),
                layers,
                repo_tags: Vec::new(),
                repo_digests: Vec::new(),
                created: raw.created.unwrap_or_default(),
                parent: parent.cloned(),
            },
        };
        self.db.put(IMAGES_TABLE, config_digest.hex(), &rec)?;
        self.set_tags(config_digest, &tags)?;
        Ok(config_digest.clone())
    }

    /// Add `name@digest` (e.g. after a pull or push) to an image's repo digests.
    pub fn add_repo_digest(&self, id: &Digest, repo_digest: &str) -> Result<()> {
        let _g = write_lock();
        let Some(mut rec) = self.get_raw(id)? else {
            return Err(not_found(&id.to_string()));
        };
        if !rec.repo_digests.iter().any(|d| d == repo_digest) {
            rec.repo_digests.push(repo_digest.to_string());
            self.db.put(IMAGES_TABLE, id.hex(), &rec)?;
        }
        Ok(())
    }
}

pub mod login;
pub mod pull;
pub mod push;
pub mod registries;
mod remove;
#[cfg(test)]
pub(crate) mod tests;
