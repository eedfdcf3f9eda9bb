//! attach: a connection to the shim's output/stdin, now if the container runs, or at its next
//! start (the docker CLI attaches before it starts a container).

use std::sync::Arc;

use berth_shim::client::ShimClient;
use tokio::net::UnixStream;
use tokio::sync::oneshot;

use super::{ContainerService, Status};
use crate::{EngineError, Result};

pub struct PendingAttach {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tx: oneshot::Sender<Result<UnixStream>>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct AttachStreams {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

/// The shim stream, or a promise of it at the next start.
pub enum AttachTarget {
    Ready(UnixStream),
    Pending(oneshot::Receiver<Result<UnixStream>>),
}

impl AttachTarget {
    pub async fn stream(self) -> Result<UnixStream> {
        match self {
            AttachTarget::Ready(s) => Ok(s),
            AttachTarget::Pending(rx) => rx.await.map_err(|_| {
                EngineError::Conflict("container was removed before it started".into())
            })?,
        }
    }
}

impl ContainerService {
    /// Returns whether the container has a TTY (raw stream) and the target.
    pub async fn attach(
        self: &Arc<Self>,
        name: &str,
        s: AttachStreams,
    ) -> Result<(bool, AttachTarget)> {
        let c = self.get(name)?;
        // Hold the op lock so a concurrent start either sees our pending attach or is already done.
        let _g = c.op_lock.lock().await;
        let rec = c.snapshot();
        let tty = rec.config.tty.unwrap_or(false);
        let stdin = s.stdin && rec.config.open_stdin.unwrap_or(false);
        match rec.state.status {
            Status::Running | Status::Paused => {
                let stream = ShimClient::new(&self.shim_dir(&rec.id))
                    .attach(stdin, s.stdout, s.stderr)
                    .await?;
                Ok((tty, AttachTarget::Ready(stream)))
            }
            Status::Removing | Status::Dead => Err(EngineError::Conflict(format!(
                "cannot attach to container {}: it is being removed",
                rec.id
            ))),
            _ => {
                let (tx, rx) = oneshot::channel();
                if let Ok(mut p) = c.pending_attach.lock() {
                    p.push(PendingAttach {
                        stdin,
                        stdout: s.stdout,
                        stderr: s.stderr,
                        tx,
                    });
                }
                Ok((tty, AttachTarget::Pending(rx)))
            }
        }
    }
}
