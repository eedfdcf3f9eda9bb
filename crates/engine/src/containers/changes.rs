//! `docker diff` (the container's overlay upper directory against its image layers) and
//! `docker export` (a tar of the merged root filesystem).

use std::io::Write;
use std::sync::Arc;

use berth_store::inroot::{self, ChangeKind};

use super::archive::{lower_dirs, RootfsGuard};
use super::ContainerService;
use crate::{EngineError, Result};

/// Paths the runtime creates as mount points (Docker hides them in its init layer).
const HIDDEN: &[&str] = &[
    "/dev",
    "/proc",
    "/sys",
    "/etc/hosts",
    "/etc/hostname",
    "/etc/resolv.conf",
    "/.dockerenv",
    "/sbin/docker-init",
];

impl ContainerService {
    /// `GET /containers/{id}/changes`: `(path, kind)` with Docker's kinds (0 modified, 1 added,
    /// 2 deleted), sorted by path.
    pub async fn changes(self: &Arc<Self>, name: &str) -> Result<Vec<(String, u8)>> {
        let c = self.get(name)?;
        let rec = c.snapshot();
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let lowers = lower_dirs(&this, &rec)?;
            let upper = this.dir(&rec.id).join("upper");
            let list = inroot::overlay_changes(&upper, &lowers, HIDDEN)?;
            Ok(list
                .into_iter()
                .map(|(p, k)| {
                    let k = match k {
                        ChangeKind::Modified => 0,
                        ChangeKind::Added => 1,
                        ChangeKind::Deleted => 2,
                    };
                    (p, k)
                })
                .collect())
        })
        .await
        .map_err(|e| EngineError::Internal(e.to_string()))?
    }

    /// Blocking: `GET /containers/{id}/export`, the merged root filesystem as a tar.
    pub fn export_write(g: &RootfsGuard, w: &mut dyn Write) -> Result<()> {
        inroot::tar_tree(g.path(), w)?;
        Ok(())
    }
}
