#![recursion_limit = "256"]
//! berth-api: the Docker Engine API over unix sockets.
//!
//! - [`version`]: /_ping headers, `/vX.Y/` prefixes (stripped before routing; unversioned paths are
//!   accepted as Docker does), the supported range.
//! - [`error`]: engine errors → Docker's status codes and `{"message": ...}` bodies.
//! - [`system`], [`images`], [`containers`]: the routes, by resource.
//! - [`hijack`]: the upgraded attach stream (101 UPGRADED, raw or multiplexed frames).
//! - [`query`]: Docker's query conventions (booleans, JSON `filters`).

mod build;
mod commit;
mod containers;
mod distribution;
mod error;
mod exec;
mod files;
mod hijack;
mod images;
mod networks;
mod push;
mod query;
mod system;
pub mod version;
mod volumes;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::Request;
use axum::Router;
use berth_engine::{Engine, EngineConfig};
use tower::Layer;

pub type AppState = Arc<Engine>;

pub fn router(engine: AppState) -> Router {
    Router::new()
        .merge(system::routes())
        .merge(images::routes())
        .merge(build::routes())
        .merge(distribution::routes())
        .merge(containers::routes())
        .merge(commit::routes())
        .merge(files::routes())
        .merge(volumes::routes())
        .merge(networks::routes())
        .merge(exec::routes())
        .merge(push::routes())
        .fallback(error::not_found)
        .layer(axum::middleware::from_fn(version::check))
        .with_state(engine)
}

/// Serve the API on every socket until SIGINT/SIGTERM.
pub async fn serve(cfg: EngineConfig, sockets: Vec<PathBuf>) -> anyhow::Result<()> {
    let engine = Engine::open(cfg)
        .await
        .map_err(|e| anyhow::anyhow!("starting the engine: {e}"))?;
    let app = router(engine.clone());
    let svc = axum::ServiceExt::<Request>::into_make_service(
        tower::util::MapRequestLayer::new(version::strip_version).layer(app),
    );
    let mut tasks = Vec::new();
    for path in sockets {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path)
            .map_err(|e| anyhow::anyhow!("listening on {}: {e}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))?;
        set_socket_group(&path);
        tracing::info!("API listening on unix://{}", path.display());
        let svc = svc.clone();
        tasks.push(tokio::spawn(
            async move { axum::serve(listener, svc).await },
        ));
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down; containers keep running");
    engine.shutdown().await;
    Ok(())
}

/// Give the socket to group `berth` (else `docker`) when that group exists, as dockerd does.
fn set_socket_group(path: &std::path::Path) {
    for g in ["berth", "docker"] {
        if let Ok(Some(group)) = nix::unistd::Group::from_name(g) {
            let _ = nix::unistd::chown(path, None, Some(group.gid));
            return;
        }
    }
}
