//! The image service. An image is its config blob (its id is the config's digest) plus the ordered
//! list of its layers; tags map familiar `name:tag` strings to image ids. Records live in the
//! metadata db (tables `images`, `tags`); blobs in the content store; layers in the layer store.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use berth_store::content::ContentStore;
use berth_store::layers::LayerStore;
use berth_store::meta::Db;
use berth_store::Digest;
use bollard_stubs::models::{ImageHistoryResponseItem, ImageDeleteResponseItem, ImageInspect, ImageSummary};
use serde::{Deserialize, Serialize};

use crate::events::EventBus;
use crate::Result;

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

pub struct ImageService {
    pub content: ContentStore,
    pub layers: LayerStore,
    pub db: Arc<Db>,
    pub events: Arc<EventBus>,
    pub tmp_dir: PathBuf,
}

impl ImageService {
    pub fn new(content: ContentStore, layers: LayerStore, db: Arc<Db>, events: Arc<EventBus>, tmp_dir: PathBuf) -> Self {
        ImageService { content, layers, db, events, tmp_dir }
    }

    /// Find an image by reference (`busybox`, `busybox:1`, `x@sha256:..`), by full id
    /// (`sha256:...`), or by a unique id prefix (at least... any length, as Docker). 404 with
    /// Docker's message: "No such image: busybox:latest".
    pub fn resolve(&self, name: &str) -> Result<ImageRecord> {
        todo!("{name}")
    }

    pub fn get(&self, id: &Digest) -> Result<Option<ImageRecord>> {
        todo!("{id}")
    }

    pub fn all(&self) -> Result<Vec<ImageRecord>> {
        todo!()
    }

    /// The config blob, parsed.
    pub fn config(&self, rec: &ImageRecord) -> Result<oci_spec::image::ImageConfiguration> {
        todo!("{rec:?}")
    }

    pub fn run_config(&self, rec: &ImageRecord) -> Result<RunConfig> {
        todo!("{rec:?}")
    }

    /// Layer directories, top-most first, for the overlay lowerdir list.
    pub fn layer_dirs(&self, rec: &ImageRecord) -> Vec<PathBuf> {
        rec.layers.iter().rev().map(|l| self.layers.dir(&l.chain_id)).collect()
    }

    /// `GET /images/json`. `containers` counts containers per image id (for the Containers field).
    pub fn list(&self, all: bool, filters: &ImageFilters, containers: &HashMap<Digest, i64>) -> Result<Vec<ImageSummary>> {
        todo!("{all} {filters:?} {containers:?}")
    }

    pub fn inspect(&self, name: &str) -> Result<ImageInspect> {
        todo!("{name}")
    }

    pub fn history(&self, name: &str) -> Result<Vec<ImageHistoryResponseItem>> {
        todo!("{name}")
    }

    /// `docker tag SOURCE TARGET`: `repo` (may include registry) and `tag` (default latest).
    /// Moves the tag if another image had it (that image may become dangling). Emits `tag`.
    pub fn tag(&self, source: &str, repo: &str, tag: Option<&str>) -> Result<()> {
        todo!("{source} {repo} {tag:?}")
    }

    /// Record a new image (config already in the content store, layers in the layer store), with
    /// optional tags. Used by import, load, commit, build. Returns the id.
    pub fn add_image(&self, config_digest: &Digest, layers: Vec<LayerRef>, tags: &[String]) -> Result<Digest> {
        todo!("{config_digest} {layers:?} {tags:?}")
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
        let _ = (name, force, in_use(&Digest::of(b"")));
        todo!()
    }

    /// `docker image prune` (`all` = also unused tagged images). Returns deleted items and bytes.
    pub fn prune(&self, all: bool, in_use: &dyn Fn(&Digest) -> bool) -> Result<(Vec<ImageDeleteResponseItem>, u64)> {
        let _ = (all, in_use(&Digest::of(b"")));
        todo!()
    }

    /// Start-up reconciliation: clean partial blobs and layers, drop tags that point to missing
    /// images, and layers no image references.
    pub fn reconcile(&self) -> Result<()> {
        todo!()
    }
}
