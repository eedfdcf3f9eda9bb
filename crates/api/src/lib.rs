//! berth-api: the Docker Engine API over a unix socket.

use std::path::PathBuf;

/// Serve the API on every socket until SIGINT/SIGTERM.
pub async fn serve(cfg: berth_engine::EngineConfig, sockets: Vec<PathBuf>) -> anyhow::Result<()> {
    let _ = (cfg, sockets);
    anyhow::bail!("not yet")
}
