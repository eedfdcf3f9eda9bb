//! The build service: `POST /build` (the docker CLI's classic builder endpoint) and `berth build`.
//!
//! - [`context`]: the build context (a tar body unpacked with the store's safe unpacker into
//!   `<data-root>/tmp/`, or a directory read in place), the Dockerfile, `.dockerignore`, and
//!   COPY/ADD sources resolved inside the context (globs, `..` refused).
//! - [`executor`]: stages (target, skipped stages, ARG before FROM, ONBUILD triggers) and the
//!   instructions; each step commits an image (metadata steps an empty layer), looked up first in
//!   the [`cache`].
//! - [`run`]: a RUN step in a real container (the container service: same isolation as
//!   `docker run`), its output streamed; its upper dir becomes the layer (`layerdiff`).
//! - [`copy`]: COPY/ADD/WORKDIR written in-process into an overlay of the parent's layers
//!   (paths resolved inside the root), then committed the same way.
//! - [`imagecfg`]: the image config as Docker's classic builder writes it.
//! - [`output`]: Docker's JSON progress messages.

pub mod cache;
pub mod context;
mod copy;
mod dispatch;
mod executor;
mod fetch;
mod format;
mod fsutil;
pub mod imagecfg;
pub mod output;
mod run;
mod sources;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use berth_store::meta::Db;
use berth_store::Digest;

use crate::containers::ContainerService;
use crate::images::ImageService;
use crate::{EngineConfig, EngineError, Result};

pub use output::Output;

/// Where the context comes from.
pub enum ContextSource {
    /// A tar stream (plain, gzip or zstd), the body of `POST /build`. Read on a blocking thread.
    Tar(Box<dyn std::io::Read + Send>),
    /// A directory read in place (`berth build`'s `berth-context=<abs dir>`).
    Dir(PathBuf),
}

/// The parameters of `POST /build` the executor uses.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Path of the Dockerfile inside the context (default `Dockerfile`).
    pub dockerfile: String,
    /// `t`: tags for the result.
    pub tags: Vec<String>,
    /// `target`: the stage to build (default the last).
    pub target: String,
    pub nocache: bool,
    pub pull: bool,
    pub quiet: bool,
    /// `rm` (default true): remove intermediate containers after a successful step.
    pub rm: bool,
    /// `forcerm`: remove them even after a failed step.
    pub forcerm: bool,
    /// `buildargs`: `None` = given without a value (taken from nowhere: unset).
    pub buildargs: BTreeMap<String, Option<String>>,
    /// `labels`: added to the final image (a LABEL step at the end of the target stage).
    pub labels: BTreeMap<String, String>,
    /// `networkmode`: none, host, default (or empty).
    pub network_mode: String,
    /// `--build-context name=dir` (berth): extra named contexts, directories on the engine host.
    pub build_contexts: BTreeMap<String, PathBuf>,
    /// The Dockerfile's text when given out of the context (`berth build -f -`).
    pub dockerfile_text: Option<String>,
}

pub struct BuildService {
    pub cfg: EngineConfig,
    pub images: Arc<ImageService>,
    pub containers: Arc<ContainerService>,
    pub db: Arc<Db>,
}

impl BuildService {
    pub fn new(
        cfg: EngineConfig,
        images: Arc<ImageService>,
        containers: Arc<ContainerService>,
    ) -> Arc<BuildService> {
        let db = images.db.clone();
        let d2 = db.clone();
        crate::containers::set_build_cache_usage(Box::new(move || cache::usage(&d2)));
        Arc::new(BuildService {
            cfg,
            images,
            containers,
            db,
        })
    }

    /// Directory of RUN cache mounts (`--mount=type=cache`), one per id.
    pub fn cache_mounts_dir(&self) -> PathBuf {
        self.cfg.data_root.join("build-cache")
    }

    /// Run a build. Progress goes to `out`; the result is the image id. An error returned after
    /// `out.started()` has already been written into the stream (Docker's errorDetail);
    /// before that, the caller answers with an error status.
    pub async fn build(
        self: &Arc<Self>,
        opts: BuildOptions,
        source: ContextSource,
        out: Output,
    ) -> Result<Digest> {
        let tmp = self.cfg.tmp_dir();
        let cache_dir = self.cfg.data_root.join("build-statcache");
        let ctx =
            tokio::task::spawn_blocking(move || context::Context::open(source, &tmp, &cache_dir))
                .await
                .map_err(|e| EngineError::Internal(e.to_string()))??;
        let ctx = Arc::new(ctx);
        let res = executor::Builder::run(self.clone(), opts, ctx.clone(), out.clone()).await;
        let _ = tokio::task::spawn_blocking(move || {
            ctx.save_cache();
            // An unpacked context is removed off the critical path.
            std::thread::spawn(move || drop(ctx));
        })
        .await;
        match res {
            Ok(id) => Ok(id),
            Err(f) => {
                if out.started() {
                    out.error(&f.error.to_string(), f.code);
                }
                Err(f.error)
            }
        }
    }

    /// `POST /build/prune`: forget every cache record; with `all`, also the RUN cache mounts
    /// and the contexts' stat caches. Returns (ids of the records, bytes removed). Images stay
    /// (`image prune` removes dangling ones).
    pub fn prune(&self, all: bool) -> Result<(Vec<String>, u64)> {
        let (ids, _) = cache::prune(&self.db)?;
        let mut space = 0;
        if all {
            space = remove_tree_size(&self.cache_mounts_dir());
            space += remove_tree_size(&self.cfg.data_root.join("build-statcache"));
        }
        Ok((ids, space))
    }
}

/// Remove a directory tree, returning the bytes its regular files held.
fn remove_tree_size(dir: &std::path::Path) -> u64 {
    fn size(p: &std::path::Path) -> u64 {
        let Ok(md) = std::fs::symlink_metadata(p) else {
            return 0;
        };
        if md.is_dir() {
            std::fs::read_dir(p)
                .map(|rd| rd.flatten().map(|e| size(&e.path())).sum())
                .unwrap_or(0)
        } else if md.is_file() {
            md.len()
        } else {
            0
        }
    }
    let n = size(dir);
    let _ = std::fs::remove_dir_all(dir);
    n
}

/// A failed build: the error and, for a RUN that exited non-zero, its code (Docker puts it in
/// `errorDetail.code`).
#[derive(Debug)]
pub struct Failure {
    pub error: EngineError,
    pub code: Option<i64>,
}

impl From<EngineError> for Failure {
    fn from(error: EngineError) -> Self {
        Failure { error, code: None }
    }
}

impl From<berth_store::StoreError> for Failure {
    fn from(e: berth_store::StoreError) -> Self {
        Failure {
            error: e.into(),
            code: None,
        }
    }
}
