//! `docker diff` (the container's overlay upper directory against its image layers) and
//! `docker export` (a tar of the merged root filesystem), both through [`crate::layerdiff`]'s
//! walker: what `diff` lists is exactly what `commit` archives.

use std::io::Write;
use std::sync::Arc;

use berth_store::inroot::ChangeKind;

use super::archive::{lower_dirs, RootfsGuard};
use super::ContainerService;
use crate::{EngineError, Result};

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
            if !upper.is_dir() {
                return Ok(Vec::new());
            }
            let list = crate::layerdiff::changes(&upper, &lowers)?;
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
        crate::layerdiff::write_tree(g.path(), w)
    }
}
