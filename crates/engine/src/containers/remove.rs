//! rm and container prune.

use std::sync::Arc;
use std::time::Duration;

use super::{Container, ContainerService, Status, TABLE};
use crate::{EngineError, Result};

impl ContainerService {
    pub async fn remove(self: &Arc<Self>, name: &str, force: bool, volumes: bool) -> Result<()> {
        let c = self.get(name)?;
        self.remove_container(&c, force, volumes).await
    }

    /// Remove a container: kill it first when forced, then its record, directory and mounts.
    pub(super) async fn remove_container(
        self: &Arc<Self>,
        c: &Arc<Container>,
        force: bool,
        volumes: bool,
    ) -> Result<()> {
        let _g = c.op_lock.lock().await;
        let rec = c.snapshot();
        if rec.state.status == Status::Removing {
            return Ok(());
        }
        if rec.state.status.is_live() || rec.state.status == Status::Restarting {
            if !force {
                // Docker's wording, per state.
                let msg = match rec.state.status {
                    Status::Paused => "container is paused and must be unpaused first",
                    Status::Restarting => {
                        "container is restarting: stop the container before removing or force remove"
                    }
                    _ => "container is running: stop the container before removing or force remove",
                };
                return Err(EngineError::Conflict(format!(
                    "cannot remove container \"{}\": {msg}",
                    rec.name
                )));
            }
            c.with(|r| r.manually_stopped = true);
            if rec.state.status == Status::Paused {
                let _ = berth_runtime::cgroups::thaw(&self.cgroups_path(&rec.id));
            }
            if rec.state.status.is_live() {
                let shim = berth_shim::client::ShimClient::new(&self.shim_dir(&rec.id));
                let _ = shim.kill(libc::SIGKILL).await;
                let stopped = self.wait_stopped(c, Duration::from_secs(30)).await;
                if !stopped {
                    return Err(EngineError::Internal(format!(
                        "could not kill container {}",
                        rec.id
                    )));
                }
            }
        }
        self.set_status(c, Status::Removing);
        // `rm -v` (and `run --rm`, as Docker) takes the container's anonymous volumes along.
        let anon = if volumes || rec.host_config.auto_remove == Some(true) {
            self.anonymous_volumes(&rec.id)
        } else {
            Vec::new()
        };
        self.db.delete(TABLE, &rec.id)?;
        self.forget(&rec.id);
        let dir = self.dir(&rec.id);
        let rootfs = self.rootfs(&rec.id);
        let shim_dir = self.shim_dir(&rec.id);
        let cg = self.cgroups_path(&rec.id);
        tokio::task::spawn_blocking(move || {
            let _ = berth_store::overlay::unmount(&rootfs);
            let _ = berth_runtime::cgroups::remove(&cg);
            let _ = std::fs::remove_dir_all(&shim_dir);
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!("removing {dir:?}: {e}");
            }
        })
        .await
        .map_err(|e| EngineError::Internal(e.to_string()))?;
        self.forget_network(&rec.id).await;
        self.emit(c, "destroy", &[]);
        for v in anon {
            if let Err(e) = self.remove_volume(&v, false).await {
                tracing::warn!("removing anonymous volume {v}: {e}");
            }
        }
        c.notice.send_modify(|n| n.removed = true);
        Ok(())
    }

    /// `container prune`: every stopped container (label filters are applied by the caller's
    /// predicate). Returns the removed ids.
    pub async fn prune(
        self: &Arc<Self>,
        keep: &(dyn Fn(&super::Record) -> bool + Send + Sync),
    ) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for c in self.all() {
            let rec = c.snapshot();
            if rec.state.status.is_live() || rec.state.status == Status::Restarting || keep(&rec) {
                continue;
            }
            if self.remove_container(&c, false, false).await.is_ok() {
                removed.push(rec.id);
            }
        }
        Ok(removed)
    }
}
