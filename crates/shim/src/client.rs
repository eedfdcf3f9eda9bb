//! The engine's side: spawning a shim and talking to its ctl.sock (async, tokio).

use std::io::{ErrorKind, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::fcntl::OFlag;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::proto::{
    ExitStatus, Ready, Reply, Request, ShimOptions, CTL_SOCKET, EXIT_FILE, OPTIONS_FILE,
};
use crate::{Result, ShimError};

/// The result of a successful spawn: the container exists (created, not started).
#[derive(Debug, Clone)]
pub struct Spawned {
    pub pid: i32,
    pub shim_pid: i32,
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ShimError {
    let context = context.into();
    move |source| ShimError::Io { context, source }
}

/// Write `opts` to `<state_dir>/shim.json`, run `<berth_exe> shim <state_dir>` with a ready pipe as
/// fd 3, wait for its Ready line. Blocking: call from `spawn_blocking`. The shim outlives the caller.
/// On a create failure returns `ShimError::Runtime` with libcontainer's message, and the shim has
/// cleaned up (no container, no cgroup left).
pub fn spawn(berth_exe: &Path, state_dir: &Path, opts: &ShimOptions) -> Result<Spawned> {
    std::fs::create_dir_all(state_dir)
        .map_err(io_err(format!("create {}", state_dir.display())))?;
    let data = serde_json::to_vec_pretty(opts).map_err(|e| ShimError::Protocol(e.to_string()))?;
    let opts_path = state_dir.join(OPTIONS_FILE);
    crate::monitor::write_atomic(&opts_path, &data)
        .map_err(io_err(format!("write {}", opts_path.display())))?;
    // Close-on-exec everywhere: the engine is multi-threaded and other spawns must not inherit it.
    let (read_end, write_end): (OwnedFd, OwnedFd) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| ShimError::Io {
            context: "ready pipe".into(),
            source: e.into(),
        })?;
    let wfd = write_end.as_raw_fd();
    let mut cmd = Command::new(berth_exe);
    cmd.arg("shim")
        .arg(state_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: only async-signal-safe calls (dup2, fcntl) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if wfd == 3 {
                if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(wfd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(io_err(format!("run {} shim", berth_exe.display())))?;
    drop(write_end);
    let status = child.wait().map_err(io_err("wait for shim"))?;
    // Read the one line, not to EOF: the created container's init holds a copy of the write end
    // until it execs at start.
    let mut out = Vec::new();
    let mut pipe = std::fs::File::from(read_end);
    let mut byte = [0u8; 1];
    loop {
        match pipe.read(&mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => out.push(byte[0]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err("read shim ready pipe")(e)),
        }
    }
    let text = String::from_utf8_lossy(&out);
    let Some(line) = text.lines().find(|l| !l.trim().is_empty()) else {
        return Err(ShimError::Protocol(format!(
            "shim exited ({status}) without reporting; see {}",
            state_dir.join("shim.log").display()
        )));
    };
    let ready: Ready = serde_json::from_str(line)
        .map_err(|e| ShimError::Protocol(format!("bad ready line {line:?}: {e}")))?;
    if let Some(err) = ready.error {
        return Err(ShimError::Runtime(err));
    }
    match (ready.pid, ready.shim_pid) {
        (Some(pid), Some(shim_pid)) => Ok(Spawned { pid, shim_pid }),
        _ => Err(ShimError::Protocol(format!(
            "incomplete ready line {line:?}"
        ))),
    }
}

/// A handle on a shim's ctl.sock.
#[derive(Debug, Clone)]
pub struct ShimClient {
    state_dir: PathBuf,
}

impl ShimClient {
    pub fn new(state_dir: &Path) -> ShimClient {
        ShimClient {
            state_dir: state_dir.to_path_buf(),
        }
    }

    fn name(&self) -> String {
        self.state_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.state_dir.display().to_string())
    }

    async fn connect(&self) -> Result<UnixStream> {
        let (_dir, path) = match crate::proto::short_socket_path(&self.state_dir, CTL_SOCKET) {
            Ok(v) => v,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(ShimError::NotRunning(self.name()))
            }
            Err(e) => {
                return Err(ShimError::Io {
                    context: format!("open shim dir {}", self.name()),
                    source: e,
                })
            }
        };
        match UnixStream::connect(&path).await {
            Ok(s) => Ok(s),
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) => {
                Err(ShimError::NotRunning(self.name()))
            }
            Err(e) => Err(ShimError::Io {
                context: format!("connect to shim {}", self.name()),
                source: e,
            }),
        }
    }

    /// Send one request; read the reply line byte by byte (frames may follow it).
    /// `Ok(None)` if the shim closed the connection without replying.
    async fn request(&self, stream: &mut UnixStream, req: &Request) -> Result<Option<Reply>> {
        let mut line = serde_json::to_vec(req).map_err(|e| ShimError::Protocol(e.to_string()))?;
        line.push(b'\n');
        let ctx = || format!("shim {}", self.name());
        if let Err(e) = stream.write_all(&line).await {
            return if e.kind() == ErrorKind::BrokenPipe {
                Ok(None)
            } else {
                Err(io_err(ctx())(e))
            };
        }
        let mut buf = Vec::new();
        loop {
            match stream.read_u8().await {
                Ok(b'\n') => break,
                Ok(b) => buf.push(b),
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) => return Err(io_err(ctx())(e)),
            }
        }
        let reply: Reply = serde_json::from_slice(&buf).map_err(|e| {
            ShimError::Protocol(format!("bad reply from shim {}: {e}", self.name()))
        })?;
        Ok(Some(reply))
    }

    /// Connect, send, expect an ok reply.
    async fn call(&self, req: &Request) -> Result<(UnixStream, Reply)> {
        let mut stream = self.connect().await?;
        match self.request(&mut stream, req).await? {
            None => Err(ShimError::NotRunning(self.name())),
            Some(r) if r.ok => Ok((stream, r)),
            Some(r) => Err(ShimError::Runtime(
                r.error.unwrap_or_else(|| "shim request failed".into()),
            )),
        }
    }

    /// Start the created container.
    pub async fn start(&self) -> Result<()> {
        self.call(&Request::Start).await.map(|_| ())
    }

    /// Wait for the container to exit. If the shim is gone, read `exit.json` instead.
    pub async fn wait(&self) -> Result<ExitStatus> {
        let fallback =
            || read_exit(&self.state_dir).ok_or_else(|| ShimError::NotRunning(self.name()));
        let mut stream = match self.connect().await {
            Ok(s) => s,
            Err(ShimError::NotRunning(_)) => return fallback(),
            Err(e) => return Err(e),
        };
        match self.request(&mut stream, &Request::Wait).await? {
            Some(Reply {
                ok: true,
                exit: Some(exit),
                ..
            }) => Ok(exit),
            Some(Reply { error: Some(e), .. }) => Err(ShimError::Runtime(e)),
            Some(_) => Err(ShimError::Protocol("wait reply without exit status".into())),
            None => fallback(),
        }
    }

    pub async fn kill(&self, signal: i32) -> Result<()> {
        self.call(&Request::Kill { signal }).await.map(|_| ())
    }

    /// Attach: the returned stream carries framed output and takes raw stdin (see [`crate::proto`]).
    pub async fn attach(&self, stdin: bool, stdout: bool, stderr: bool) -> Result<UnixStream> {
        self.call(&Request::Attach {
            stdin,
            stdout,
            stderr,
        })
        .await
        .map(|(s, _)| s)
    }

    /// Set the container's terminal size (TIOCSWINSZ on the pty master; no-op without a tty).
    pub async fn resize(&self, height: u16, width: u16) -> Result<()> {
        self.call(&Request::Resize { height, width })
            .await
            .map(|_| ())
    }

    /// Whether the shim answers on its socket.
    pub async fn alive(&self) -> bool {
        self.call(&Request::State).await.is_ok()
    }
}

/// The recorded exit status, if the container has ended.
pub fn read_exit(state_dir: &Path) -> Option<ExitStatus> {
    let data = std::fs::read(state_dir.join(EXIT_FILE)).ok()?;
    serde_json::from_slice(&data).ok()
}
