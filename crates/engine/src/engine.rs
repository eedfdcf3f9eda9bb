//! The engine: opens the stores, reconciles, and holds the services.

use std::sync::Arc;

use berth_store::content::ContentStore;
use berth_store::layers::LayerStore;
use berth_store::meta::Db;

use crate::containers::ContainerService;
use crate::events::EventBus;
use crate::images::ImageService;
use crate::{EngineConfig, EngineError, Result};

pub struct Engine {
    pub cfg: EngineConfig,
    pub events: Arc<EventBus>,
    pub images: Arc<ImageService>,
    pub containers: Arc<ContainerService>,
    pub volumes: Arc<crate::volumes::VolumeService>,
    pub builds: Arc<crate::build::BuildService>,
    pub networks: Arc<crate::networks::NetworkService>,
    pub started: chrono::DateTime<chrono::Utc>,
}

impl Engine {
    /// Create the directories, open the stores, reconcile what a previous run left.
    pub async fn open(cfg: EngineConfig) -> Result<Arc<Engine>> {
        let c2 = cfg.clone();
        let (images, db, events) = tokio::task::spawn_blocking(move || -> Result<_> {
            use std::os::unix::fs::PermissionsExt;
            std::fs::create_dir_all(&c2.data_root)?;
            std::fs::set_permissions(&c2.data_root, std::fs::Permissions::from_mode(0o711))?;
            std::fs::create_dir_all(&c2.exec_root)?;
            std::fs::set_permissions(&c2.exec_root, std::fs::Permissions::from_mode(0o700))?;
            for d in [
                c2.containers_dir(),
                c2.shims_dir(),
                c2.runtime_root(),
                c2.tmp_dir(),
            ] {
                std::fs::create_dir_all(&d)?;
            }
            // Whatever sits in tmp/ is from an interrupted operation (build steps mount there).
            for m in berth_store::overlay::mounts_under(&c2.tmp_dir()) {
                let _ = berth_store::overlay::unmount(&m);
            }
            if let Ok(rd) = std::fs::read_dir(c2.tmp_dir()) {
                for e in rd.flatten() {
                    let _ = std::fs::remove_dir_all(e.path())
                        .or_else(|_| std::fs::remove_file(e.path()));
                }
            }
            let content = ContentStore::open(&c2.content_dir())?;
            let layers = LayerStore::open(&c2.layers_dir())?;
            let db = Arc::new(Db::open(&c2.db_path())?);
            let events = Arc::new(EventBus::new());
            let images = Arc::new(ImageService::new(
                content,
                layers,
                db.clone(),
                events.clone(),
                c2.tmp_dir(),
            ));
            // Layers that containers mount stay, even when their image was force-removed.
            let keep: std::collections::HashSet<berth_store::Digest> = db
                .list::<crate::containers::Record>("containers")?
                .into_iter()
                .flat_map(|(_, r)| r.layers)
                .collect();
            images.reconcile_keeping(&keep)?;
            crate::hello::ensure(&images)?;
            Ok((images, db, events))
        })
        .await
        .map_err(|e| EngineError::Internal(e.to_string()))??;
        let containers = ContainerService::new(cfg.clone(), db, images.clone(), events.clone());
        containers.open_networks().await?;
        containers.reconcile().await?;
        containers.restore_networks().await?;
        let builds =
            crate::build::BuildService::new(cfg.clone(), images.clone(), containers.clone());
        Ok(Arc::new(Engine {
            builds,
            cfg,
            events,
            images,
            volumes: containers.volumes.clone(),
            networks: containers.networks.clone(),
            containers,
            started: chrono::Utc::now(),
        }))
    }

    /// Graceful shutdown: with no container running, the network devices, DNS servers and
    /// firewall table go (running containers keep theirs).
    pub async fn shutdown(&self) {
        self.containers.shutdown_networks().await;
    }
}
