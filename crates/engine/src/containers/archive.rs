//! The archive API (`docker cp`): stat, tar out and extract in, inside the container's root.
//!
//! A running container's rootfs is the overlay mount the engine made at start. A stopped one is
//! mounted for the time of the copy ([`RootfsGuard`]); the op lock is taken around the mount and
//! the unmount so a concurrent start either reuses the mount or finds it gone, never loses it.
//! All the file work is in-process in [`berth_store::inroot`]: every path is resolved inside the
//! root, nothing of the container is ever run. Volumes and bind mounts of a running container are
//! not visible here (they live in its mount namespace).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use berth_store::inroot::{self, ExtractOptions, PathStat};
use berth_store::StoreError;

use super::{Container, ContainerService, Record, Status};
use crate::{EngineError, Result};

/// Users of a temporary rootfs mount, per container id.
fn temp_users() -> &'static Mutex<HashMap<String, usize>> {
    static M: OnceLock<Mutex<HashMap<String, usize>>> = OnceLock::new();
    M.get_or_init(|| Mutex::new(HashMap::new()))
}

/// A container's root filesystem, mounted while this lives.
pub struct RootfsGuard {
    svc: Arc<ContainerService>,
    c: Arc<Container>,
    path: PathBuf,
    temp: bool,
    handle: tokio::runtime::Handle,
}

impl RootfsGuard {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RootfsGuard {
    fn drop(&mut self) {
        if !self.temp {
            return;
        }
        let svc = self.svc.clone();
        let c = self.c.clone();
        self.handle.spawn(async move {
            let _g = c.op_lock.lock().await;
            let id = c.id();
            let last = match temp_users().lock() {
                Ok(mut m) => {
                    let n = m.entry(id.clone()).or_insert(1);
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        m.remove(&id);
                        true
                    } else {
                        false
                    }
                }
                Err(_) => false,
            };
            if last && !c.snapshot().state.status.is_live() {
                let rootfs = svc.rootfs(&id);
                let _ = tokio::task::spawn_blocking(move || berth_store::overlay::unmount(&rootfs))
                    .await;
            }
        });
    }
}

/// The container's layer directories, top-most first (as overlay wants them).
pub(super) fn lower_dirs(svc: &ContainerService, rec: &Record) -> Result<Vec<PathBuf>> {
    let chain: Vec<berth_store::Digest> = if rec.layers.is_empty() {
        let image = svc
            .images
            .get(&rec.image_id)?
            .ok_or_else(|| EngineError::NotFound(format!("No such image: {}", rec.image_id)))?;
        image.layers.iter().map(|l| l.chain_id.clone()).collect()
    } else {
        rec.layers.clone()
    };
    if let Some(missing) = chain.iter().find(|c| !svc.images.layers.exists(c)) {
        return Err(EngineError::NotFound(format!(
            "layer {missing} of container {} is missing",
            rec.id
        )));
    }
    Ok(chain
        .iter()
        .rev()
        .map(|c| svc.images.layers.dir(c))
        .collect())
}

fn mount_rootfs(svc: &ContainerService, rec: &Record) -> Result<()> {
    let dir = svc.dir(&rec.id);
    let rootfs = svc.rootfs(&rec.id);
    if berth_store::overlay::is_mounted(&rootfs) {
        return Ok(());
    }
    let mut lowers = lower_dirs(svc, rec)?;
    if lowers.is_empty() {
        let empty = dir.join("empty");
        std::fs::create_dir_all(&empty)?;
        lowers.push(empty);
    }
    std::fs::create_dir_all(&rootfs)?;
    berth_store::overlay::mount(&lowers, &dir.join("upper"), &dir.join("work"), &rootfs)?;
    Ok(())
}

/// Docker's messages for a path that is not there.
fn path_err(e: StoreError, path: &str, name: &str) -> EngineError {
    match e {
        StoreError::NotFound(_) => EngineError::NotFound(format!(
            "Could not find the file {path} in container {name}"
        )),
        e => e.into(),
    }
}

/// Go's RFC 3339 with nanoseconds, as Docker's PathStat mtime.
fn go_time(sec: i64, nsec: i64) -> String {
    chrono::DateTime::from_timestamp(sec, nsec.clamp(0, 999_999_999) as u32)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| super::ZERO_TIME.to_string())
}

/// The `X-Docker-Container-Path-Stat` JSON of a stat.
pub fn path_stat_json(st: &PathStat) -> serde_json::Value {
    serde_json::json!({
        "name": st.name,
        "size": st.size,
        "mode": st.mode,
        "mtime": go_time(st.mtime_sec, st.mtime_nsec),
        "linkTarget": st.link_target,
    })
}

impl ContainerService {
    /// Mount (if needed) and hold the container's root filesystem.
    pub async fn open_rootfs(self: &Arc<Self>, name: &str) -> Result<RootfsGuard> {
        let c = self.get(name)?;
        let _g = c.op_lock.lock().await;
        let rec = c.snapshot();
        let rootfs = self.rootfs(&rec.id);
        let handle = tokio::runtime::Handle::current();
        if rec.state.status.is_live() {
            return Ok(RootfsGuard {
                svc: self.clone(),
                c: c.clone(),
                path: rootfs,
                temp: false,
                handle,
            });
        }
        if matches!(rec.state.status, Status::Removing | Status::Dead) {
            return Err(EngineError::Conflict(format!(
                "container {} is marked for removal",
                rec.id
            )));
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || mount_rootfs(&this, &rec))
            .await
            .map_err(|e| EngineError::Internal(e.to_string()))??;
        if let Ok(mut m) = temp_users().lock() {
            *m.entry(c.id()).or_insert(0) += 1;
        }
        Ok(RootfsGuard {
            svc: self.clone(),
            c: c.clone(),
            path: rootfs,
            temp: true,
            handle,
        })
    }

    /// `HEAD /containers/{id}/archive`.
    pub async fn archive_stat(self: &Arc<Self>, name: &str, path: &str) -> Result<PathStat> {
        let g = self.open_rootfs(name).await?;
        let (path, name) = (path.to_string(), name.to_string());
        tokio::task::spawn_blocking(move || {
            inroot::stat_path(g.path(), &path).map_err(|e| path_err(e, &path, &name))
        })
        .await
        .map_err(|e| EngineError::Internal(e.to_string()))?
    }

    /// Blocking: the tar of `path` to `w` (`GET /containers/{id}/archive`), with the rootfs of
    /// `open_rootfs`.
    pub fn archive_write(g: &RootfsGuard, path: &str, w: &mut dyn Write) -> Result<()> {
        inroot::tar_path(g.path(), path, w).map_err(|e| path_err(e, path, ""))
    }

    /// Blocking: extract the tar `r` into the directory `path` (`PUT .../archive`).
    pub fn archive_extract(
        g: &RootfsGuard,
        path: &str,
        r: &mut dyn Read,
        opts: ExtractOptions,
    ) -> Result<()> {
        let rec = g.c.snapshot();
        if rec.host_config.readonly_rootfs == Some(true) {
            return Err(EngineError::Forbidden(
                "container rootfs is marked read-only".into(),
            ));
        }
        let name = rec.name.trim_start_matches('/').to_string();
        inroot::extract(g.path(), path, r, opts).map_err(|e| match e {
            StoreError::NotFound(_) => EngineError::NotFound(format!(
                "Could not find the file {path} in container {name}"
            )),
            e => e.into(),
        })
    }
}
