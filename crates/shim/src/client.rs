//! The engine's side: spawning a shim and talking to its ctl.sock (async, tokio).

use std::path::{Path, PathBuf};

use tokio::net::UnixStream;

use crate::proto::{ExitStatus, ShimOptions};
use crate::Result;

/// The result of a successful spawn: the container exists (created, not started).
#[derive(Debug, Clone)]
pub struct Spawned {
    pub pid: i32,
    pub shim_pid: i32,
}

/// Write `opts` to `<state_dir>/shim.json`, run `<berth_exe> shim <state_dir>` with a ready pipe as
/// fd 3, wait for its Ready line. Blocking: call from `spawn_blocking`. The shim outlives the caller.
/// On a create failure returns `ShimError::Runtime` with libcontainer's message, and the shim has
/// cleaned up (no container, no cgroup left).
pub fn spawn(berth_exe: &Path, state_dir: &Path, opts: &ShimOptions) -> Result<Spawned> {
    todo!("{berth_exe:?} {state_dir:?} {opts:?}")
}

/// A handle on a shim's ctl.sock.
#[derive(Debug, Clone)]
pub struct ShimClient {
    state_dir: PathBuf,
}

impl ShimClient {
    pub fn new(state_dir: &Path) -> ShimClient {
        ShimClient { state_dir: state_dir.to_path_buf() }
    }

    /// Start the created container.
    pub async fn start(&self) -> Result<()> {
        todo!("{:?}", self.state_dir)
    }

    /// Wait for the container to exit. If the shim is gone, read `exit.json` instead.
    pub async fn wait(&self) -> Result<ExitStatus> {
        todo!()
    }

    pub async fn kill(&self, signal: i32) -> Result<()> {
        todo!("{signal}")
    }

    /// Attach: the returned stream carries framed output and takes raw stdin (see [`crate::proto`]).
    pub async fn attach(&self, stdin: bool, stdout: bool, stderr: bool) -> Result<UnixStream> {
        todo!("{stdin} {stdout} {stderr}")
    }

    /// Whether the shim answers on its socket.
    pub async fn alive(&self) -> bool {
        todo!()
    }
}

/// The recorded exit status, if the container has ended.
pub fn read_exit(state_dir: &Path) -> Option<ExitStatus> {
    let _ = state_dir;
    todo!()
}
