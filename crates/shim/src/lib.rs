//! berth-shim: the per-container monitor, and the engine's client for it.
//!
//! The engine runs `berth shim <state-dir>` for each container start. The shim detaches (setsid,
//! double fork), creates the container with libcontainer while still single-threaded, reports
//! readiness (or the create error) on the pipe the engine gave it, and then serves `ctl.sock` in its
//! state dir: start, attach (framed output, raw stdin), kill, wait, state. It holds the container's
//! stdio, writes the json-file log (rotated), records `exit.json` atomically when the container ends,
//! deletes the container (cgroups included) and exits. The engine never holds a container process,
//! so killing the engine leaves every container running.
//!
//! - [`proto`]: the options file and the ctl.sock protocol types.
//! - [`monitor`]: the shim process itself (blocking, threads only after the container is created).
//! - [`client`]: spawning a shim and talking to it (async, for the engine).
//! - [`logs`]: Docker's json-file log format: writer with rotation, reader, follower.

pub mod client;
pub mod enter;
pub mod exec;
pub mod logs;
pub mod monitor;
pub mod proto;
pub mod seccomp_bpf;
pub mod tty;

#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// The container could not be created or started (libcontainer's message). Docker reports this
    /// as "OCI runtime create failed: ..." with status 500 (or 400/404-ish for a missing binary).
    #[error("{0}")]
    Runtime(String),
    #[error("shim for {0} is not running")]
    NotRunning(String),
    #[error("shim protocol: {0}")]
    Protocol(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, ShimError>;

/// Give signals the engine was started with ignored (`nohup`, a background job of a shell:
/// SIGHUP, SIGINT, SIGQUIT) back their default action, so that container and exec processes do
/// not inherit them — a shell cannot even `trap` a signal ignored on entry. SIGPIPE stays as the
/// Rust runtime set it for our own writes (the container's init gets the default from the
/// runtime).
pub fn reset_inherited_ignored_signals() {
    for sig in 1..32 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP || sig == libc::SIGPIPE {
            continue;
        }
        // SAFETY: sigaction with a zeroed struct to read the current disposition, then setting
        // SIG_DFL; no handler code is involved.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction == libc::SIG_IGN
            {
                let mut new: libc::sigaction = std::mem::zeroed();
                new.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &new, std::ptr::null_mut());
            }
        }
    }
}
