//! The shim's options file (`<state-dir>/shim.json`) and the ctl.sock protocol.
//!
//! ctl.sock: one request per connection, a JSON line; the reply is a JSON [`Reply`] line. After a
//! successful `attach` reply the connection carries, from shim to client, frames in Docker's
//! multiplexed format (8-byte header: stream 1=stdout 2=stderr, 3 zero bytes, u32 BE length; then the
//! bytes), and from client to shim raw stdin bytes. The shim closes attach connections (after the last
//! output) when the container exits.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// File names inside a shim state dir.
pub const OPTIONS_FILE: &str = "shim.json";
pub const CTL_SOCKET: &str = "ctl.sock";
pub const EXIT_FILE: &str = "exit.json";
pub const PID_FILE: &str = "pid";
pub const SHIM_PID_FILE: &str = "shim.pid";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShimOptions {
    /// Container id (also the libcontainer id).
    pub id: String,
    /// Directory holding the OCI `config.json`.
    pub bundle: PathBuf,
    /// libcontainer's root path (state of all containers), e.g. `<exec-root>/runtime`.
    pub runtime_root: PathBuf,
    /// json-file log path; rotated files get `.1`, `.2`, ... suffixes.
    pub log_path: PathBuf,
    /// Rotate when the current file would exceed this many bytes (None = never).
    pub log_max_size: Option<u64>,
    /// Total number of files kept, current included (Docker's max-file, default 1).
    pub log_max_file: u32,
    /// Keep the container's stdin open (`-i`); otherwise stdin is /dev/null.
    pub open_stdin: bool,
    /// Close the container's stdin when the first attached client closes its stdin.
    pub stdin_once: bool,
    /// `-t`: stdout and stderr share one stream; a pseudo-terminal when the spec's process has
    /// `terminal: true` (its master comes from libcontainer's console socket).
    pub tty: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Start,
    Wait,
    Kill {
        signal: i32,
    },
    Attach {
        stdin: bool,
        stdout: bool,
        stderr: bool,
    },
    State,
    /// Set the tty's window size (no-op without a tty).
    Resize {
        height: u16,
        width: u16,
    },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<ExitStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
}

/// How a container ended, as recorded in `exit.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// Exit code, or 128 + signal number when killed by a signal (Docker's convention).
    pub exit_code: i32,
    /// RFC 3339 with nanoseconds, UTC.
    pub finished_at: String,
    pub oom_killed: bool,
}

/// What the shim reports on its ready pipe: one JSON line, then the pipe closes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ready {
    /// Pid of the container's init process (created, not yet started) on success.
    pub pid: Option<i32>,
    pub shim_pid: Option<i32>,
    pub error: Option<String>,
}

/// A socket path inside `dir` that fits in `sun_path` (108 bytes) however long `dir` is: the
/// directory is opened (O_PATH) and addressed as `/proc/self/fd/N/<name>`. Keep the returned file
/// alive until bind/connect returns.
pub fn short_socket_path(
    dir: &std::path::Path,
    name: &str,
) -> std::io::Result<(std::fs::File, PathBuf)> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)?;
    let p = PathBuf::from(format!("/proc/self/fd/{}/{name}", f.as_raw_fd()));
    Ok((f, p))
}
