//! The container service. A container is a record in the metadata db (table `containers`), a
//! directory `<data-root>/containers/<id>/` (overlay upper/work, the rootfs mount point, the OCI
//! bundle's config.json, hosts/hostname/resolv.conf, the json-file log) and, while it runs, a shim
//! with its state dir `<exec-root>/shims/<id>/`. One file per verb group.

pub mod archive;
pub mod attach;
mod changes;
mod commit;
mod copyup;
mod create;
pub mod exec;
mod inspect;
mod lifecycle;
mod logs;
pub mod mounts;
mod reconcile;
mod remove;
mod start;
pub mod stats;
mod update;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use berth_store::meta::Db;
use berth_store::Digest;
use bollard_stubs::models::{ContainerConfig, HostConfig};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub use attach::AttachStreams;
pub use commit::{
    apply_commit_changes, dir_size, set_build_cache_usage, BuildCacheUsage, CommitOptions,
};
pub use create::CreateRequest;
pub use inspect::ListOptions;
pub use logs::{parse_time, LogOptions};
pub use start::WaitCondition;

use crate::events::EventBus;
use crate::images::ImageService;
use crate::{EngineConfig, EngineError, Result};

const TABLE: &str = "containers";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Removing => "removing",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }
    /// Whether a process exists (running or frozen).
    pub fn is_live(self) -> bool {
        matches!(self, Status::Running | Status::Paused)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub status: Status,
    pub pid: i64,
    pub exit_code: i64,
    pub error: String,
    pub started_at: String,
    pub finished_at: String,
    pub oom_killed: bool,
}

pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

impl Default for State {
    fn default() -> Self {
        State {
            status: Status::Created,
            pid: 0,
            exit_code: 0,
            error: String::new(),
            started_at: ZERO_TIME.into(),
            finished_at: ZERO_TIME.into(),
            oom_killed: false,
        }
    }
}

/// What is persisted about a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    /// With the leading `/`, as Docker stores it.
    pub name: String,
    pub created: String,
    /// The image as the user named it.
    pub image_name: String,
    pub image_id: Digest,
    pub config: ContainerConfig,
    pub host_config: HostConfig,
    pub path: String,
    pub args: Vec<String>,
    pub state: State,
    pub restart_count: i64,
    /// Stopped by the user (`stop`/`kill`): restart policies (but `always` at engine start) hold off.
    pub manually_stopped: bool,
    /// Chain ids of the image's layers, bottom first: the container keeps its root filesystem
    /// even if its image is force-removed.
    #[serde(default)]
    pub layers: Vec<Digest>,
    /// Pid of the shim while running.
    #[serde(default)]
    pub shim_pid: i64,
}

/// Change notifications for waiters: bumped on every exit and on removal.
#[derive(Debug, Clone, Default)]
pub struct Notice {
    pub exits: u64,
    pub last_exit_code: i64,
    pub removed: bool,
    pub status: Option<Status>,
}

pub struct Container {
    pub rec: Mutex<Record>,
    pub notice: watch::Sender<Notice>,
    /// Serialises lifecycle operations (start/stop/rm) on one container.
    pub op_lock: tokio::sync::Mutex<()>,
    /// Attach requests waiting for the next start (`docker run` attaches before it starts).
    pub pending_attach: Mutex<Vec<attach::PendingAttach>>,
}

impl Container {
    fn new(rec: Record) -> Arc<Container> {
        let status = rec.state.status;
        Arc::new(Container {
            rec: Mutex::new(rec),
            notice: watch::Sender::new(Notice {
                status: Some(status),
                ..Notice::default()
            }),
            op_lock: tokio::sync::Mutex::new(()),
            pending_attach: Mutex::new(Vec::new()),
        })
    }

    /// A copy of the record (the lock is never held across an await).
    pub fn snapshot(&self) -> Record {
        match self.rec.lock() {
            Ok(r) => r.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Record) -> T) -> T {
        match self.rec.lock() {
            Ok(mut r) => f(&mut r),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    pub fn id(&self) -> String {
        self.with(|r| r.id.clone())
    }
}

pub struct ContainerService {
    pub cfg: EngineConfig,
    pub db: Arc<Db>,
    pub images: Arc<ImageService>,
    pub events: Arc<EventBus>,
    pub volumes: Arc<crate::volumes::VolumeService>,
    pub networks: Arc<crate::networks::NetworkService>,
    by_id: RwLock<HashMap<String, Arc<Container>>>,
}

impl ContainerService {
    pub fn new(
        cfg: EngineConfig,
        db: Arc<Db>,
        images: Arc<ImageService>,
        events: Arc<EventBus>,
    ) -> Arc<Self> {
        let volumes = crate::volumes::VolumeService::new(cfg.data_root.join("volumes"), db.clone());
        let networks = crate::networks::NetworkService::new(cfg.clone(), db.clone());
        Arc::new(ContainerService {
            networks,
            cfg,
            db,
            volumes,
            images,
            events,
            by_id: RwLock::new(HashMap::new()),
        })
    }

    pub fn dir(&self, id: &str) -> PathBuf {
        self.cfg.containers_dir().join(id)
    }
    pub fn rootfs(&self, id: &str) -> PathBuf {
        self.dir(id).join("rootfs")
    }
    pub fn shim_dir(&self, id: &str) -> PathBuf {
        self.cfg.shims_dir().join(id)
    }
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.dir(id).join(format!("{id}-json.log"))
    }
    pub fn cgroups_path(&self, id: &str) -> String {
        berth_runtime::cgroups::cgroups_path(&self.cfg.cgroup_parent, id)
    }

    pub fn all(&self) -> Vec<Arc<Container>> {
        self.by_id
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    fn insert(&self, c: Arc<Container>) {
        if let Ok(mut m) = self.by_id.write() {
            m.insert(c.id(), c);
        }
    }

    fn forget(&self, id: &str) {
        if let Ok(mut m) = self.by_id.write() {
            m.remove(id);
        }
    }

    /// Find by full id, name (with or without `/`), or unique id prefix — Docker's order.
    pub fn get(&self, name_or_id: &str) -> Result<Arc<Container>> {
        let not_found = || EngineError::NotFound(format!("No such container: {name_or_id}"));
        if name_or_id.is_empty() {
            return Err(not_found());
        }
        let map = self
            .by_id
            .read()
            .map_err(|_| EngineError::Internal("lock poisoned".into()))?;
        if let Some(c) = map.get(name_or_id) {
            return Ok(c.clone());
        }
        let want_name = format!("/{}", name_or_id.trim_start_matches('/'));
        if let Some(c) = map.values().find(|c| c.with(|r| r.name == want_name)) {
            return Ok(c.clone());
        }
        let matches: Vec<_> = map
            .iter()
            .filter(|(id, _)| id.starts_with(name_or_id))
            .collect();
        match matches.len() {
            1 => Ok(matches[0].1.clone()),
            0 => Err(not_found()),
            _ => Err(EngineError::InvalidArgument(format!(
                "multiple IDs found with provided prefix: {name_or_id}"
            ))),
        }
    }

    /// The id of a container using image `id`, and whether it runs (for rmi).
    pub fn image_user(&self, id: &Digest) -> Option<(String, bool)> {
        let all = self.all();
        let mut users: Vec<(String, bool)> = all
            .iter()
            .map(|c| c.snapshot())
            .filter(|r| &r.image_id == id)
            .map(|r| (r.id.clone(), r.state.status.is_live()))
            .collect();
        users.sort_by_key(|(_, running)| !running);
        users.into_iter().next()
    }

    /// Containers per image id (for `images` Containers column).
    pub fn count_by_image(&self) -> HashMap<Digest, i64> {
        let mut m = HashMap::new();
        for c in self.all() {
            *m.entry(c.snapshot().image_id).or_insert(0) += 1;
        }
        m
    }

    /// Persist a container's record.
    fn save(&self, c: &Container) -> Result<()> {
        let rec = c.snapshot();
        self.db.put(TABLE, &rec.id, &rec)?;
        Ok(())
    }

    fn emit(&self, c: &Container, action: &str, extra: &[(&str, String)]) {
        let rec = c.snapshot();
        let mut attrs = HashMap::new();
        attrs.insert(
            "name".to_string(),
            rec.name.trim_start_matches('/').to_string(),
        );
        attrs.insert("image".to_string(), rec.image_name.clone());
        if let Some(labels) = &rec.config.labels {
            for (k, v) in labels {
                attrs.insert(k.clone(), v.clone());
            }
        }
        for (k, v) in extra {
            attrs.insert(k.to_string(), v.clone());
        }
        self.events.emit("container", action, &rec.id, attrs);
    }

    fn set_status(&self, c: &Container, status: Status) {
        c.with(|r| r.state.status = status);
        c.notice.send_modify(|n| n.status = Some(status));
    }
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}
