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

    /// Remove one tag (or `name@digest`) reference; emits `untag`.
    fn untag(&self, id: &Digest, tag: &str) -> Result<ImageDeleteResponseItem> {
        let mut b = Batch::default();
        if let Some(mut rec) = self.get_raw(id)? {
            rec.repo_tags.retain(|t| t != tag);
            rec.repo_digests.retain(|t| t != tag);
            // Repo digests of a repository that has no tag left go with the last tag.
            let repos: HashSet<String> = rec
                .repo_tags
                .iter()
                .filter_map(|t| Reference::parse(t).ok().map(|r| r.familiar_name()))
                .collect();
            rec.repo_digests.retain(|d| {
                d.split_once('@')
                    .is_some_and(|(n, _)| repos.contains(n) || !rec.repo_tags.is_empty())
            });
            b.put(IMAGES_TABLE, id.hex(), &rec)?;
        }
        b.delete(TAGS_TABLE, tag);
        self.db.write(b)?;
        self.emit("untag", id, tag);
        Ok(ImageDeleteResponseItem {
            untagged: Some(tag.to_string()),
            deleted: None,
        })
    }

    /// Delete an image record with its config blob, and the layers (blobs and dirs) no other
    /// image uses. Returns the response items and the bytes of layers removed. With
    /// `keep_files` (a forced delete while a stopped container still uses the image), the blobs
    /// and layer dirs stay for that container.
    fn delete_image(
        &self,
        rec: &ImageRecord,
        keep_files: bool,
    ) -> Result<(Vec<ImageDeleteResponseItem>, u64)> {
        let others: Vec<ImageRecord> = self
            .db
            .list::<ImageRecord>(IMAGES_TABLE)?
            .into_iter()
            .map(|(_, r)| r)
            .filter(|r| r.id != rec.id)
            .collect();
        let used_chains: HashSet<&Digest> = others
            .iter()
            .flat_map(|r| r.layers.iter().map(|l| &l.chain_id))
            .collect();
        let used_blobs: HashSet<&Digest> = others
            .iter()
            .flat_map(|r| r.layers.iter().filter_map(|l| l.blob.as_ref()))
            .collect();
        let mut b = Batch::default();
        b.delete(IMAGES_TABLE, rec.id.hex());
        b.delete(TAG_TIMES_TABLE, rec.id.hex());
        for t in &rec.repo_tags {
            b.delete(TAGS_TABLE, t);
        }
        self.db.write(b)?;
        // Files after the record: a crash in between leaves orphans that reconcile removes.
        let mut items = vec![ImageDeleteResponseItem {
            untagged: None,
            deleted: Some(rec.id.to_string()),
        }];
        let mut reclaimed = 0;
        if keep_files {
            self.emit("delete", &rec.id, &rec.id.to_string());
            return Ok((items, 0));
        }
        self.content.delete(&rec.id)?;
        for l in rec.layers.iter().rev() {
            if let Some(blob) = &l.blob {
                if !used_blobs.contains(blob) {
                    self.content.delete(blob)?;
                }
            }
            if !used_chains.contains(&l.chain_id) && self.layers.exists(&l.chain_id) {
                self.layers.remove(&l.chain_id)?;
                reclaimed += l.size;
                items.push(ImageDeleteResponseItem {
                    untagged: None,
                    deleted: Some(l.chain_id.to_string()),
                });
            }
        }
        self.emit("delete", &rec.id, &rec.id.to_string());
        Ok((items, reclaimed))
    }

    fn has_children(&self, id: &Digest) -> Result<bool> {
        Ok(self
            .db
            .list::<ImageRecord>(IMAGES_TABLE)?
            .iter()
            .any(|(_, r)| r.parent.as_ref() == Some(id)))
    }

    /// `docker rmi`: untag when `name` is a tag and other tags remain; delete otherwise.
    /// `in_use(id)` returns the id of a container using the image: refuse with 409 ("conflict:
    /// unable to delete <short> (must be forced) - image is being used by stopped container <short>"
    /// or "... cannot delete ... running container") unless `force` (force never removes an image
    /// used by a running container). Removes layers no other image uses. Emits untag/delete.
    pub fn remove(
        &self,
        name: &str,
        force: bool,
        in_use: &dyn Fn(&Digest) -> Option<(String, bool)>,
    ) -> Result<Vec<ImageDeleteResponseItem>> {
        let _g = write_lock();
        let (rec, via_ref) = self.resolve_with_tag(name)?;
        let id = rec.id.clone();
        let short = |s: &str| s.chars().take(12).collect::<String>();
        let mut items = Vec::new();
        let user = in_use(&id);
        let refs = rec.repo_tags.len() + rec.repo_digests.len();
        let quiet;
        if let Some(tag) = via_ref {
            if let Some((cid, _)) = &user {
                if !force && refs == 1 {
                    return Err(EngineError::Conflict(format!(
                        "conflict: unable to remove repository reference \"{name}\" (must force) - container {} is using its referenced image {}",
                        short(cid),
                        id.short()
                    )));
                }
            }
            items.push(self.untag(&id, &tag)?);
            if refs > 1 {
                return Ok(items);
            }
            quiet = true;
        } else {
            quiet = false;
            // By id: with at most one tag the tags go with the image.
            if rec.repo_tags.len() <= 1 {
                if let Some((cid, running)) = &user {
                    if *running {
                        return Err(EngineError::Conflict(format!(
                            "conflict: unable to delete {} (cannot be forced) - image is being used by running container {}",
                            id.short(),
                            short(cid)
                        )));
                    }
                    if !force {
                        return Err(EngineError::Conflict(format!(
                            "conflict: unable to delete {} (must be forced) - image is being used by stopped container {}",
                            id.short(),
                            short(cid)
                        )));
                    }
                }
                if !self.has_children(&id)? {
                    for t in rec.repo_tags.iter().chain(rec.repo_digests.iter()) {
                        items.push(self.untag(&id, t)?);
                    }
                }
            }
        }
        let rec = self.get(&id)?.ok_or_else(|| not_found(name))?;
        // Conflicts of the image itself (hard ones cannot be forced).
        let conflict = if self.has_children(&id)? {
            Some((true, "image has dependent child images".to_string(), false))
        } else if let Some((cid, true)) = &user {
            Some((
                true,
                format!("image is being used by running container {}", short(cid)),
                true,
            ))
        } else if !force && !rec.repo_tags.is_empty() {
            let what = if rec.repo_tags.len() > 1 {
                "image is referenced in multiple repositories"
            } else {
                "image is referenced in one or more repositories"
            };
            Some((false, what.to_string(), false))
        } else if let (false, Some((cid, false))) = (force, &user) {
            Some((
                false,
                format!("image is being used by stopped container {}", short(cid)),
                true,
            ))
        } else {
            None
        };
        if let Some((hard, msg, used)) = conflict {
            let dangling = rec.repo_tags.is_empty() && !self.has_children(&id)?;
            if quiet && (!dangling || used) {
                return Ok(items);
            }
            return Err(EngineError::Conflict(format!(
                "conflict: unable to delete {} ({}) - {msg}",
                id.short(),
                if hard {
                    "cannot be forced"
                } else {
                    "must be forced"
                }
            )));
        }
        for t in &rec.repo_tags {
            items.push(self.untag(&id, t)?);
        }
        let (deleted, _) = self.delete_image(&rec, user.is_some())?;
        items.extend(deleted);
        // Parents left dangling and unused go too (Docker's default prune of rmi).
        let mut parent = rec.parent.clone();
        while let Some(p) = parent.take() {
            let Some(prec) = self.get(&p)? else { break };
            if !prec.repo_tags.is_empty() || in_use(&p).is_some() || self.has_children(&p)? {
                break;
            }
            let (deleted, _) = self.delete_image(&prec, false)?;
            items.extend(deleted);
            parent = prec.parent.clone();
        }
        Ok(items)
    }

    /// `docker image prune` (`all` = also unused tagged images). Returns deleted items and bytes.
    pub fn prune(
        &self,
        all: bool,
        in_use: &dyn Fn(&Digest) -> bool,
    ) -> Result<(Vec<ImageDeleteResponseItem>, u64)> {
        let _g = write_lock();
        let mut items = Vec::new();
        let mut reclaimed = 0;
        // Repeat: deleting a child can leave its parent prunable.
        loop {
            let images = self.all()?;
            let parents = Self::parents(&images);
            let victims: Vec<ImageRecord> = images
                .into_iter()
                .filter(|r| {
                    (all || r.repo_tags.is_empty()) && !parents.contains(&r.id) && !in_use(&r.id)
                })
                .collect();
            if victims.is_empty() {
                break;
            }
            for rec in victims {
                for t in &rec.repo_tags {
                    items.push(self.untag(&rec.id, t)?);
                }
                let (deleted, bytes) = self.delete_image(&rec, false)?;
                items.extend(deleted);
                reclaimed += bytes;
            }
        }
        Ok((items, reclaimed))
    }

    /// Start-up reconciliation: clean partial blobs and layers, drop tags that point to missing
    /// images, and layers no image references.
    pub fn reconcile(&self) -> Result<()> {
        self.reconcile_keeping(&HashSet::new())
    }

    /// [`Self::reconcile`], sparing the layers in `keep` (chain ids that containers still mount
    /// although their image was force-removed).
    pub fn reconcile_keeping(&self, keep: &HashSet<Digest>) -> Result<()> {
        let _g = write_lock();
        self.content.clean_partial()?;
        self.layers.clean_partial()?;
        if self.tmp_dir.is_dir() {
            berth_store::atomic::clean_temp(&self.tmp_dir)?;
        }
        let images: HashMap<Digest, ImageRecord> = self
            .db
            .list::<ImageRecord>(IMAGES_TABLE)?
            .into_iter()
            .map(|(_, r)| (r.id.clone(), r))
            .collect();
        let mut b = Batch::default();
        let mut stale = 0;
        for (tag, id) in self.tag_map()? {
            if !images.contains_key(&id) {
                b.delete(TAGS_TABLE, &tag);
                stale += 1;
            }
        }
        if stale > 0 {
            tracing::info!(stale, "dropping tags of missing images");
            self.db.write(b)?;
        }
        let used: HashSet<&Digest> = images
            .values()
            .flat_map(|r| r.layers.iter().map(|l| &l.chain_id))
            .chain(keep.iter())
            .collect();
        for l in self.layers.list()? {
            if !used.contains(&l.chain_id) {
                tracing::info!(chain_id = %l.chain_id, "removing unreferenced layer");
                self.layers.remove(&l.chain_id)?;
            }
        }
        // Blobs no image references: stored by an import or load that was interrupted before
        // it recorded its image (blobs are written first, the record last).
        let used_blobs: HashSet<&Digest> = images
            .values()
            .flat_map(|r| {
                r.layers
                    .iter()
                    .filter_map(|l| l.blob.as_ref())
                    .chain(std::iter::once(&r.id))
            })
            .collect();
        for d in self.content.list()? {
            if !used_blobs.contains(&d) {
                tracing::info!(blob = %d, "removing unreferenced blob");
                self.content.delete(&d)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// A service on fresh temp dirs.
    pub(crate) fn service(dir: &std::path::Path) -> ImageService {
        let content = ContentStore::open(&dir.join("content")).unwrap();
        let layers = LayerStore::open(&dir.join("layers")).unwrap();
        let db = Arc::new(Db::open(&dir.join("metadata.db")).unwrap());
        ImageService::new(
            content,
            layers,
            db,
            Arc::new(EventBus::new()),
            dir.join("tmp"),
        )
    }

    /// A tar with one file, as a layer.
    pub(crate) fn layer_tar(name: &str, data: &[u8]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append(&h, data).unwrap();
        b.into_inner().unwrap()
    }

    /// Make an image from layers (each a tar) and a config with `labels` and `created`.
    pub(crate) fn make_image(
        svc: &ImageService,
        layers: &[Vec<u8>],
        labels: &[(&str, &str)],
        created: &str,
        tags: &[&str],
        parent: Option<&Digest>,
    ) -> Digest {
        let mut refs = Vec::new();
        let mut chain: Option<Digest> = None;
        for l in layers {
            let info = svc.layers.apply(chain.as_ref(), &mut &l[..], None).unwrap();
            let blob = svc.content.put(l).unwrap();
            assert_eq!(blob, info.diff_id);
            chain = Some(info.chain_id.clone());
            refs.push(LayerRef {
                blob: Some(blob),
                media_type: "application/vnd.oci.image.layer.v1.tar".into(),
                diff_id: info.diff_id,
                chain_id: info.chain_id,
                size: info.size,
            });
        }
        let labels: HashMap<_, _> = labels.iter().map(|(k, v)| (*k, *v)).collect();
        let cfg = serde_json::json!({
            "architecture": "amd64", "os": "linux", "created": created,
            "config": {"Labels": labels, "Cmd": ["sh"], "Env": ["A=1"], "ExposedPorts": {"80/tcp": {}}},
            "rootfs": {"type": "layers", "diff_ids": refs.iter().map(|r| r.diff_id.to_string()).collect::<Vec<_>>()},
            "history": refs.iter().enumerate().map(|(i, _)| serde_json::json!({"created": created, "created_by": format!("step {i}")}))
                .chain(std::iter::once(serde_json::json!({"created": created, "created_by": "CMD", "empty_layer": true})))
                .collect::<Vec<_>>(),
        });
        let id = svc.content.put(&serde_json::to_vec(&cfg).unwrap()).unwrap();
        let tags: Vec<String> = tags.iter().map(|s| s.to_string()).collect();
        svc.add_image_with_parent(&id, refs, &tags, parent).unwrap()
    }

    fn none(_: &Digest) -> Option<(String, bool)> {
        None
    }

    #[test]
    fn glob() {
        assert!(glob_match("busy*", "busybox"));
        assert!(!glob_match("busy*", "busybox/x"));
        assert!(glob_match("busybox:1*", "busybox:1.36"));
        assert!(glob_match("b?sybox", "busybox"));
        assert!(glob_match("[a-c]usybox", "busybox"));
        assert!(!glob_match("[!a-c]usybox", "busybox"));
        assert!(glob_match("*/*", "a/b"));
        assert!(!glob_match("busybox", "busybox:latest"));
        assert!(reference_matches("busybox", "busybox:latest"));
        assert!(reference_matches("busy*", "busybox:latest"));
        assert!(!reference_matches("busybox:2*", "busybox:1.36"));
    }

    #[test]
    fn tag_resolve_list_inspect_history() {
        let dir = tempfile::tempdir().unwrap();
        let svc = service(dir.path());
        let l1 = layer_tar("a", b"hello");
        let l2 = layer_tar("b", b"world!");
        let base = make_image(
            &svc,
            std::slice::from_ref(&l1),
            &[("k", "v")],
            "2024-01-02T03:04:05.5Z",
            &["base:1"],
            None,
        );
        let top = make_image(
            &svc,
            &[l1, l2],
            &[("k", "w"), ("x", "1")],
            "2025-01-02T03:04:05Z",
            &["docker.io/library/top"],
            Some(&base),
        );

        // Resolution by tag, default tag, full id, prefix, sha256: prefix.
        assert_eq!(svc.resolve("top").unwrap().id, top);
        assert_eq!(svc.resolve("top:latest").unwrap().id, top);
        assert_eq!(svc.resolve("base:1").unwrap().id, base);
        assert_eq!(svc.resolve(&top.to_string()).unwrap().id, top);
        assert_eq!(svc.resolve(&top.hex()[..10]).unwrap().id, top);
        assert_eq!(
            svc.resolve(&format!("sha256:{}", &base.hex()[..8]))
                .unwrap()
                .id,
            base
        );
        match svc.resolve("base") {
            Err(EngineError::NotFound(m)) => assert_eq!(m, "No such image: base:latest"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            svc.resolve("nope:1"),
            Err(EngineError::NotFound(_))
        ));

        // tag moves a tag between images.
        svc.tag("base:1", "shared", None).unwrap();
        svc.tag("top", "localhost:5000/top", Some("v2")).unwrap();
        assert_eq!(svc.resolve("shared").unwrap().id, base);
        svc.tag("top", "shared", Some("latest")).unwrap();
        assert_eq!(svc.resolve("shared").unwrap().id, top);
        assert_eq!(svc.get(&base).unwrap().unwrap().repo_tags, vec!["base:1"]);
        assert_eq!(
            svc.get(&top).unwrap().unwrap().repo_tags,
            vec!["localhost:5000/top:v2", "shared:latest", "top:latest"]
        );
        assert!(matches!(
            svc.tag("top", "Bad", None),
            Err(EngineError::InvalidArgument(_))
        ));
        assert!(matches!(
            svc.tag("top", "x", Some("-bad")),
            Err(EngineError::InvalidArgument(_))
        ));

        let counts = HashMap::from([(top.clone(), 2)]);
        let l = svc.list(false, &ImageFilters::default(), &counts).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].id, top.to_string());
        assert_eq!(l[0].containers, 2);
        assert_eq!(l[0].shared_size, -1);
        assert_eq!(l[0].parent_id, base.to_string());
        assert_eq!(l[0].created, 1735787045);
        assert_eq!(l[0].size, 11);
        assert_eq!(l[0].labels.get("x").map(String::as_str), Some("1"));
        let f = |reference: &[&str], label: &[&str], dangling: Option<bool>| ImageFilters {
            dangling,
            reference: reference.iter().map(|s| s.to_string()).collect(),
            label: label.iter().map(|s| s.to_string()).collect(),
        };
        let ids = |flt: ImageFilters| -> Vec<String> {
            svc.list(true, &flt, &counts)
                .unwrap()
                .into_iter()
                .map(|s| s.id)
                .collect()
        };
        assert_eq!(ids(f(&["base"], &[], None)), vec![base.to_string()]);
        assert_eq!(ids(f(&["ba*"], &[], None)), vec![base.to_string()]);
        assert_eq!(ids(f(&["base:2*"], &[], None)), Vec::<String>::new());
        assert_eq!(
            ids(f(&["localhost:5000/*"], &[], None)),
            vec![top.to_string()]
        );
        assert_eq!(ids(f(&[], &["k=v"], None)), vec![base.to_string()]);
        assert_eq!(ids(f(&[], &["k"], None)).len(), 2);
        assert_eq!(ids(f(&[], &["x", "k=w"], None)), vec![top.to_string()]);
        assert_eq!(ids(f(&[], &[], Some(true))), Vec::<String>::new());

        let ins = svc.inspect("top").unwrap();
        assert_eq!(ins.id.as_deref(), Some(top.to_string().as_str()));
        assert_eq!(ins.architecture.as_deref(), Some("amd64"));
        let cfg = ins.config.clone().unwrap();
        assert_eq!(cfg.cmd, Some(vec!["sh".to_string()]));
        assert_eq!(cfg.exposed_ports, Some(vec!["80/tcp".to_string()]));
        assert_eq!(
            ins.root_fs.as_ref().unwrap().layers.as_ref().unwrap().len(),
            2
        );
        let js = serde_json::to_value(&ins).unwrap();
        assert_eq!(js["Created"], "2025-01-02T03:04:05Z");
        assert!(js["Metadata"]["LastTagTime"].is_string(), "{js}");
        let b = serde_json::to_value(svc.inspect("base:1").unwrap()).unwrap();
        assert_eq!(b["Created"], "2024-01-02T03:04:05.500Z");

        let h = svc.history("top").unwrap();
        assert_eq!(h.len(), 3);
        assert_eq!(h[0].id, top.to_string());
        assert_eq!(h[0].created_by, "CMD");
        assert_eq!(h[0].size, 0);
        assert_eq!(h[1].id, base.to_string());
        assert_eq!(h[1].tags, vec!["base:1"]);
        assert_eq!(h[1].size, 6);
        assert_eq!(h[2].id, "<missing>");
        assert_eq!(h[2].size, 5);
    }

    #[test]
    fn remove_rules() {
        let dir = tempfile::tempdir().unwrap();
        let svc = service(dir.path());
        let shared = layer_tar("a", b"shared");
        let a = make_image(
            &svc,
            std::slice::from_ref(&shared),
            &[],
            "2024-01-01T00:00:00Z",
            &["a:1", "a:2"],
            None,
        );
        let b = make_image(
            &svc,
            &[shared.clone(), layer_tar("b", b"bb")],
            &[],
            "2024-01-01T00:00:01Z",
            &["b"],
            None,
        );

        // By id with two tags: must force.
        match svc.remove(&a.to_string(), false, &none) {
            Err(EngineError::Conflict(m)) => assert_eq!(
                m,
                format!("conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories", a.short())
            ),
            other => panic!("{other:?}"),
        }
        // By tag with another tag left: untag only.
        let r = svc.remove("a:1", false, &none).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].untagged.as_deref(), Some("a:1"));
        assert!(svc.get(&a).unwrap().is_some());

        // In use by a container.
        let stopped = |d: &Digest| (d == &a).then(|| ("c0ffee0123456789".to_string(), false));
        let running = |d: &Digest| (d == &a).then(|| ("c0ffee0123456789".to_string(), true));
        match svc.remove("a:2", false, &stopped) {
            Err(EngineError::Conflict(m)) => assert_eq!(
                m,
                format!("conflict: unable to remove repository reference \"a:2\" (must force) - container c0ffee012345 is using its referenced image {}", a.short())
            ),
            other => panic!("{other:?}"),
        }
        match svc.remove(a.hex(), false, &running) {
            Err(EngineError::Conflict(m)) => assert_eq!(
                m,
                format!("conflict: unable to delete {} (cannot be forced) - image is being used by running container c0ffee012345", a.short())
            ),
            other => panic!("{other:?}"),
        }
        match svc.remove(a.hex(), true, &running) {
            Err(EngineError::Conflict(m)) => assert!(m.contains("cannot be forced"), "{m}"),
            other => panic!("{other:?}"),
        }
        match svc.remove(&a.hex()[..12], false, &stopped) {
            Err(EngineError::Conflict(m)) => assert_eq!(
                m,
                format!("conflict: unable to delete {} (must be forced) - image is being used by stopped container c0ffee012345", a.short())
            ),
            other => panic!("{other:?}"),
        }
        // Forced delete by id with a stopped container: the record goes, the files stay.
        let c = make_image(
            &svc,
            &[layer_tar("c", b"c")],
            &[],
            "2024-01-01T00:00:02Z",
            &["c"],
            None,
        );
        let c_chain = svc.get(&c).unwrap().unwrap().layers[0].chain_id.clone();
        let stopped_c = |d: &Digest| (d == &c).then(|| ("c0ffee0123456789".to_string(), false));
        let r = svc.remove(c.hex(), true, &stopped_c).unwrap();
        assert_eq!(r[0].untagged.as_deref(), Some("c:latest"));
        assert_eq!(r[1].deleted.as_deref(), Some(c.to_string().as_str()));
        assert!(svc.get(&c).unwrap().is_none());
        assert!(svc.layers.exists(&c_chain));
        assert!(svc.content.exists(&c));

        // Forced tag removal while running: untagged, image kept.
        let r = svc.remove("a:2", true, &running).unwrap();
        assert_eq!(r.len(), 1);
        assert!(svc.get(&a).unwrap().is_some());
        svc.tag(a.hex(), "a", Some("3")).unwrap();

        // Last tag, unused: untag + delete; the shared layer stays for b.
        let a_chain = svc.get(&a).unwrap().unwrap().layers[0].chain_id.clone();
        let r = svc.remove("a:3", false, &none).unwrap();
        assert_eq!(r[0].untagged.as_deref(), Some("a:3"));
        assert_eq!(r[1].deleted.as_deref(), Some(a.to_string().as_str()));
        assert_eq!(r.len(), 2, "{r:?}");
        assert!(svc.get(&a).unwrap().is_none());
        assert!(!svc.content.exists(&a));
        assert!(svc.layers.exists(&a_chain));
        assert!(svc.resolve("a:3").is_err());

        // b by id: its own layer and the shared one go.
        let brec = svc.get(&b).unwrap().unwrap();
        let r = svc.remove(b.hex(), false, &none).unwrap();
        assert_eq!(r[0].untagged.as_deref(), Some("b:latest"));
        assert_eq!(r.iter().filter(|x| x.deleted.is_some()).count(), 3);
        for l in &brec.layers {
            assert!(!svc.layers.exists(&l.chain_id));
            assert!(!svc.content.exists(l.blob.as_ref().unwrap()));
        }
        assert!(svc.all().unwrap().is_empty());
        assert!(svc.tag_map().unwrap().is_empty());
    }

    #[test]
    fn prune_and_reconcile() {
        let dir = tempfile::tempdir().unwrap();
        let svc = service(dir.path());
        let a = make_image(
            &svc,
            &[layer_tar("a", b"a")],
            &[],
            "2024-01-01T00:00:00Z",
            &["keep"],
            None,
        );
        let d1 = make_image(
            &svc,
            &[layer_tar("d", b"d1")],
            &[],
            "2024-01-01T00:00:00Z",
            &[],
            None,
        );
        let used = make_image(
            &svc,
            &[layer_tar("u", b"u")],
            &[],
            "2024-01-01T00:00:00Z",
            &[],
            None,
        );
        let in_use = |d: &Digest| d == &used;
        let l = svc
            .list(
                false,
                &ImageFilters {
                    dangling: Some(true),
                    ..Default::default()
                },
                &HashMap::new(),
            )
            .unwrap();
        assert_eq!(l.len(), 2);
        let (items, bytes) = svc.prune(false, &in_use).unwrap();
        assert_eq!(items[0].deleted.as_deref(), Some(d1.to_string().as_str()));
        assert_eq!(bytes, 2);
        assert!(svc.get(&a).unwrap().is_some());
        assert!(svc.get(&used).unwrap().is_some());
        let (items, _) = svc.prune(true, &in_use).unwrap();
        assert_eq!(items[0].untagged.as_deref(), Some("keep:latest"));
        assert!(svc.get(&a).unwrap().is_none());
        assert_eq!(svc.all().unwrap().len(), 1);

        // reconcile: a stale tag and an orphan layer disappear.
        svc.db.put(TAGS_TABLE, "ghost:latest", &a).unwrap();
        let orphan = svc
            .layers
            .apply(None, &mut &layer_tar("o", b"o")[..], None)
            .unwrap();
        let mut f = std::fs::File::create(dir.path().join("x")).unwrap();
        f.write_all(b"x").unwrap();
        let orphan_blob = svc.content.put(b"left by an interrupted import").unwrap();
        let kept: Vec<Digest> = svc
            .all()
            .unwrap()
            .iter()
            .flat_map(|r| {
                r.layers
                    .iter()
                    .filter_map(|l| l.blob.clone())
                    .chain([r.id.clone()])
            })
            .collect();
        svc.reconcile().unwrap();
        assert!(!svc.content.exists(&orphan_blob));
        assert!(kept.iter().all(|d| svc.content.exists(d)));
        assert!(svc
            .db
            .get::<Digest>(TAGS_TABLE, "ghost:latest")
            .unwrap()
            .is_none());
        assert!(!svc.layers.exists(&orphan.chain_id));
        assert_eq!(svc.all().unwrap().len(), 1);
    }
}
