//! Start-up reconciliation: load records, reattach to live shims, record exits that happened
//! while the engine was down, remove what interrupted operations left, apply restart policies.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use berth_shim::client::{read_exit, ShimClient};

use super::{now_rfc3339, Container, ContainerService, Record, Status, TABLE};
use crate::Result;

impl ContainerService {
    pub async fn reconcile(self: &Arc<Self>) -> Result<()> {
        let recs: Vec<(String, Record)> = self.db.list(TABLE)?;
        let mut known = HashSet::new();
        let mut to_restart = Vec::new();
        for (_, rec) in recs {
            known.insert(rec.id.clone());
            let c = Container::new(rec.clone());
            self.insert(c.clone());
            match rec.state.status {
                Status::Running | Status::Paused | Status::Restarting => {
                    let shim_dir = self.shim_dir(&rec.id);
                    let shim = ShimClient::new(&shim_dir);
                    if rec.state.status != Status::Restarting && shim.alive().await {
                        tracing::info!(container = %rec.id, "reattached to running container");
                        self.spawn_monitor(c.clone());
                        continue;
                    }
                    let st = read_exit(&shim_dir).unwrap_or(berth_shim::proto::ExitStatus {
                        exit_code: if rec.state.status == Status::Restarting {
                            rec.state.exit_code as i32
                        } else {
                            255
                        },
                        finished_at: now_rfc3339(),
                        oom_killed: false,
                    });
                    tracing::info!(container = %rec.id, code = st.exit_code, "container exited while the engine was down");
                    c.with(|r| {
                        r.state.status = Status::Exited;
                        r.state.exit_code = st.exit_code as i64;
                        r.state.finished_at = st.finished_at.clone();
                        r.state.oom_killed = st.oom_killed;
                        r.state.pid = 0;
                        r.shim_pid = 0;
                    });
                    c.notice.send_modify(|n| n.status = Some(Status::Exited));
                    self.save(&c)?;
                    self.cleanup_run(&rec.id).await;
                    if c.snapshot().host_config.auto_remove == Some(true) {
                        let _ = self.remove_container(&c, true, true).await;
                        continue;
                    }
                    if self.should_restart(&c.snapshot(), true) {
                        to_restart.push(c.clone());
                    }
                }
                Status::Removing => {
                    let _ = self.remove_container(&c, true, true).await;
                }
                _ => {
                    self.cleanup_run(&rec.id).await;
                    // should_restart(.., engine_start = true) applies each policy's own rule
                    // (`always` restarts even after `docker stop`, `unless-stopped` does not).
                    if self.should_restart(&rec, true) && rec.state.status == Status::Exited {
                        to_restart.push(c.clone());
                    }
                }
            }
        }
        // Container dirs and shim dirs that no record owns: leftovers of an interrupted create/rm.
        for dir in [self.cfg.containers_dir(), self.cfg.shims_dir()] {
            if let Ok(rd) = std::fs::read_dir(&dir) {
                for e in rd.flatten() {
                    let name = e.file_name().to_string_lossy().to_string();
                    if !known.contains(&name) {
                        tracing::info!("removing leftover {:?}", e.path());
                        let _ = berth_store::overlay::unmount(&e.path().join("rootfs"));
                        let _ = std::fs::remove_dir_all(e.path());
                    }
                }
            }
        }
        // Orphan cgroups of containers that are not running.
        for child in berth_runtime::cgroups::children(&self.cfg.cgroup_parent) {
            let live = self
                .get(&child)
                .map(|c| c.snapshot().state.status.is_live())
                .unwrap_or(false);
            if !live && child.len() == 64 {
                let _ = berth_runtime::cgroups::remove(&self.cgroups_path(&child));
            }
        }
        for c in to_restart {
            let this = self.clone();
            tokio::spawn(async move {
                let _g = c.op_lock.lock().await;
                c.with(|r| r.manually_stopped = false);
                if let Err(e) = this.start_locked(&c).await {
                    tracing::warn!(container = %c.id(), "restart at engine start failed: {e}");
                    // Try again later, as a restart policy would.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            });
        }
        Ok(())
    }

    /// Unmount the rootfs, remove the cgroup and the shim dir of a run that is over.
    async fn cleanup_run(&self, id: &str) {
        let rootfs = self.rootfs(id);
        let shim_dir = self.shim_dir(id);
        let cg = self.cgroups_path(id);
        // libcontainer's state of a container whose shim died with it: a later start would
        // fail with "container already exists".
        let state_dir = self.cfg.runtime_root().join(id);
        let _ = tokio::task::spawn_blocking(move || {
            let _ = berth_store::overlay::unmount(&rootfs);
            let _ = berth_runtime::cgroups::remove(&cg);
            let _ = std::fs::remove_dir_all(&shim_dir);
            let _ = std::fs::remove_dir_all(&state_dir);
        })
        .await;
        self.release_network(id).await;
    }
}
