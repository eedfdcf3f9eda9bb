//! The shim process. Entered from `berth shim <state-dir>` before any async runtime or thread exists.
//!
//! Sequence: read options, detach (double fork + setsid), create the container with libcontainer
//! while single-threaded, report Ready on fd 3, then serve ctl.sock and pump the container's output
//! from threads while the main thread waits for the init process. At exit: drain output, record
//! `exit.json`, delete the container (its cgroup too), answer waiters, close attach streams.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{self, SigHandler, Signal};
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, pipe2, setsid, ForkResult, Pid};

use crate::logs::{LogWriter, Stream};
use crate::proto::{
    ExitStatus, Ready, Reply, Request, ShimOptions, CTL_SOCKET, EXIT_FILE, OPTIONS_FILE, PID_FILE,
    SHIM_PID_FILE,
};

/// The ready pipe's fd number, as set up by [`crate::client::spawn`].
const READY_FD: RawFd = 3;
/// Once the init has exited, output pipes idle this long are considered drained (a process outside
/// the container's pid namespace may keep them open forever).
const DRAIN_IDLE: Duration = Duration::from_millis(100);
/// Writes to a client that does not read for this long drop the client.
const CLIENT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Run the shim for the state dir (which holds `shim.json`). The engine passes a ready pipe as fd 3
/// (see [`crate::client::spawn`]). Never returns: exits the process.
pub fn run(state_dir: &Path) -> ! {
    close_inherited_fds();
    crate::reset_inherited_ignored_signals();
    // fd 3 must not reach the container.
    let ready = if fcntl(READY_FD, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).is_ok() {
        // SAFETY: fd 3 is open (F_SETFD succeeded) and given to us by the engine to own.
        Some(File::from(unsafe { OwnedFd::from_raw_fd(READY_FD) }))
    } else {
        None
    };
    let mut ready = ReadyPipe(ready);

    let opts: ShimOptions = match std::fs::read(state_dir.join(OPTIONS_FILE))
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(o) => o,
        Err(e) => {
            ready.send(&Ready {
                pid: None,
                shim_pid: None,
                error: Some(format!("shim options: {e}")),
            });
            std::process::exit(1);
        }
    };

    if let Err(e) = detach(state_dir) {
        ready.send(&Ready {
            pid: None,
            shim_pid: None,
            error: Some(format!("shim detach: {e}")),
        });
        std::process::exit(1);
    }
    init_tracing();
    tracing::info!(id = %opts.id, "shim started");

    let code = match Shim::create(state_dir, &opts) {
        Ok(created) => created.serve(state_dir, &opts, ready),
        Err(msg) => {
            tracing::error!(id = %opts.id, "create failed: {msg}");
            ready.send(&Ready {
                pid: None,
                shim_pid: None,
                error: Some(msg),
            });
            1
        }
    };
    std::process::exit(code)
}

/// Close every fd above the ready pipe: whatever the engine leaked must not stay open for the life
/// of the container.
fn close_inherited_fds() {
    // SAFETY: close_range on fds nobody in this process uses yet.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, READY_FD as u32 + 1, u32::MAX, 0) };
    if rc == 0 {
        return;
    }
    let fds: Vec<RawFd> = match std::fs::read_dir("/proc/self/fd") {
        Ok(rd) => rd
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
            .filter(|&fd| fd > READY_FD)
            .collect(),
        Err(_) => return,
    };
    for fd in fds {
        // SAFETY: as above (the read_dir fd is already closed, EBADF is harmless).
        unsafe { libc::close(fd) };
    }
}

struct ReadyPipe(Option<File>);

impl ReadyPipe {
    /// Write the Ready line and close the pipe.
    fn send(&mut self, r: &Ready) {
        if let Some(mut f) = self.0.take() {
            let mut line = serde_json::to_vec(r).unwrap_or_default();
            line.push(b'\n');
            if let Err(e) = f.write_all(&line) {
                tracing::warn!("ready pipe: {e}");
            }
        }
    }
}

/// Leave the engine's process tree and session; stdio to /dev/null and `shim.log`.
fn detach(state_dir: &Path) -> std::result::Result<(), String> {
    // SAFETY: single-threaded at this point; the parent only exits.
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Parent { .. } => unsafe { libc::_exit(0) },
        ForkResult::Child => {}
    }
    setsid().map_err(|e| format!("setsid: {e}"))?;
    // SAFETY: as above. The second fork makes sure the shim is not a session leader.
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Parent { .. } => unsafe { libc::_exit(0) },
        ForkResult::Child => {}
    }
    let null = File::open("/dev/null").map_err(|e| format!("/dev/null: {e}"))?;
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(state_dir.join("shim.log"))
        .map_err(|e| format!("shim.log: {e}"))?;
    for (src, dst) in [
        (null.as_raw_fd(), 0),
        (log.as_raw_fd(), 1),
        (log.as_raw_fd(), 2),
    ] {
        // SAFETY: plain dup2 on fds we own.
        if unsafe { libc::dup2(src, dst) } < 0 {
            return Err(format!("dup2: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

fn init_tracing() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("BERTH_SHIM_LOG").unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(
                "info,libcontainer=warn,libcontainer::seccomp=error,libcgroups=error",
            )
        });
    // Write through our own close-on-exec copy of shim.log, never through fd 2: the container's
    // init process (forked from us) logs too, after fd 2 became the container's stderr.
    let Ok(file) = dup_stderr_cloexec() else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init();
}

fn dup_stderr_cloexec() -> std::io::Result<File> {
    // SAFETY: F_DUPFD_CLOEXEC on fd 2 returns a new fd we own.
    let fd = unsafe { libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 10) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor owned by nobody else.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// The shim after a successful create.
struct Shim {
    container: Container,
    pid: Pid,
    stdout_r: OwnedFd,
    /// None with a tty (stdout carries both).
    stderr_r: Option<OwnedFd>,
    /// The container's stdin (write end) when `open_stdin`.
    stdin_w: Option<File>,
    /// The pty master with a tty (stdout_r and stdin_w are copies of it).
    master: Option<OwnedFd>,
}

impl Shim {
    fn create(state_dir: &Path, opts: &ShimOptions) -> std::result::Result<Shim, String> {
        let _ = state_dir;
        let pipe = || pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"));
        let (stdout_r, stdout_w) = pipe()?;
        let (stderr_r, stderr_w) = if opts.tty {
            (None, stdout_w.try_clone().map_err(|e| format!("dup: {e}"))?)
        } else {
            let (r, w) = pipe()?;
            (Some(r), w)
        };
        let (stdin_for_container, stdin_w): (OwnedFd, Option<File>) = if opts.open_stdin {
            let (r, w) = pipe()?;
            (r, Some(File::from(w)))
        } else {
            let null = File::open("/dev/null").map_err(|e| format!("/dev/null: {e}"))?;
            (OwnedFd::from(null), None)
        };

        let container_root = opts.runtime_root.join(&opts.id);
        let existed = container_root.exists();
        std::fs::create_dir_all(&opts.runtime_root)
            .map_err(|e| format!("runtime root {}: {e}", opts.runtime_root.display()))?;
        // With a tty the container's init creates a pty and sends us the master.
        let console = if opts.tty && spec_wants_terminal(&opts.bundle) {
            Some(
                crate::tty::bind_console(state_dir, crate::tty::CONSOLE_SOCKET)
                    .map_err(|e| format!("console socket: {e}"))?,
            )
        } else {
            None
        };

        // The container must get default signal dispositions (an ignored SIGPIPE survives exec).
        // SAFETY: setting a default disposition, single-threaded.
        let _ = unsafe { signal::signal(Signal::SIGPIPE, SigHandler::SigDfl) };
        let built = ContainerBuilder::new(opts.id.clone(), SyscallType::Linux)
            .with_root_path(&opts.runtime_root)
            .and_then(|b| {
                b.with_stdin(stdin_for_container)
                    .with_stdout(stdout_w)
                    .with_stderr(stderr_w)
                    .with_console_socket(console.as_ref().map(|(_, p)| p.clone()))
                    .with_executor(crate::exec::SeccompExecutor {
                        seccomp: None,
                        compiled: None,
                    })
                    .validate_id()
            })
            .and_then(|b| {
                b.as_init(&opts.bundle)
                    .with_systemd(false)
                    .with_detach(true)
                    .build()
            });
        // SAFETY: as above; the shim itself wants EPIPE rather than death on closed sockets.
        let _ = unsafe { signal::signal(Signal::SIGPIPE, SigHandler::SigIgn) };

        let container = match built {
            Ok(c) => c,
            Err(e) => {
                let msg = user_message(&e);
                if !existed {
                    cleanup_failed_create(&container_root);
                }
                return Err(msg);
            }
        };
        let Some(pid) = container.pid() else {
            let mut c = container;
            let _ = c.delete(true);
            return Err("container created without an init pid".into());
        };
        let (stdout_r, stdin_w, master) = match console {
            None => (stdout_r, stdin_w, None),
            Some((l, path)) => {
                let got = crate::tty::receive_master(&l, Duration::from_secs(10));
                let _ = std::fs::remove_file(&path);
                let dup = |m: &OwnedFd| m.try_clone().map_err(|e| format!("dup: {e}"));
                match got.map_err(|e| format!("console: {e}")).and_then(|m| {
                    let out = dup(&m)?;
                    let inp = if opts.open_stdin {
                        Some(File::from(dup(&m)?))
                    } else {
                        None
                    };
                    Ok((out, inp, Some(m)))
                }) {
                    Ok(v) => v,
                    Err(e) => {
                        let mut c = container;
                        let _ = c.delete(true);
                        return Err(e);
                    }
                }
            }
        };
        Ok(Shim {
            container,
            pid,
            stdout_r,
            stderr_r,
            stdin_w,
            master,
        })
    }

    /// Report readiness, serve the socket, wait for the init, clean up. Returns the exit code.
    fn serve(self, state_dir: &Path, opts: &ShimOptions, mut ready: ReadyPipe) -> i32 {
        let Shim {
            container,
            pid,
            stdout_r,
            stderr_r,
            stdin_w,
            master,
        } = self;
        let shim_pid = std::process::id() as i32;
        let sock_path = state_dir.join(CTL_SOCKET);
        let setup = (|| -> std::result::Result<(UnixListener, LogWriter), String> {
            write_file(
                &state_dir.join(PID_FILE),
                pid.as_raw().to_string().as_bytes(),
            )?;
            write_file(
                &state_dir.join(SHIM_PID_FILE),
                shim_pid.to_string().as_bytes(),
            )?;
            let log = LogWriter::open(&opts.log_path, opts.log_max_size, opts.log_max_file)
                .map_err(|e| e.to_string())?;
            let _ = std::fs::remove_file(&sock_path);
            let (_dir, short) = crate::proto::short_socket_path(state_dir, CTL_SOCKET)
                .map_err(|e| format!("open {}: {e}", state_dir.display()))?;
            let listener = UnixListener::bind(&short)
                .map_err(|e| format!("bind {}: {e}", sock_path.display()))?;
            Ok((listener, log))
        })();
        let (listener, log) = match setup {
            Ok(v) => v,
            Err(msg) => {
                let mut c = container;
                if let Err(e) = c.delete(true) {
                    tracing::error!("delete after failed setup: {e}");
                }
                let _ = waitpid(pid, None);
                ready.send(&Ready {
                    pid: None,
                    shim_pid: None,
                    error: Some(msg),
                });
                return 1;
            }
        };
        ready.send(&Ready {
            pid: Some(pid.as_raw()),
            shim_pid: Some(shim_pid),
            error: None,
        });
        tracing::info!(pid = pid.as_raw(), "container created");

        // From here on threads are fine.
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                container,
                exiting: false,
                exit: None,
                waiters: Vec::new(),
                next_client: 0,
            }),
            clients: Mutex::new(Vec::new()),
            stdin: Mutex::new(stdin_w),
            stdin_once: opts.stdin_once,
            pid,
            master,
        });
        let log = Arc::new(Mutex::new(log));
        {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || accept_loop(listener, shared));
        }
        let mut pumps: Vec<JoinHandle<()>> = Vec::new();
        for (fd, stream) in [(Some(stdout_r), Stream::Stdout), (stderr_r, Stream::Stderr)] {
            if let Some(fd) = fd {
                let (shared, log) = (Arc::clone(&shared), Arc::clone(&log));
                pumps.push(std::thread::spawn(move || pump(fd, stream, &shared, &log)));
            }
        }

        // Wait for the init without reaping, so that Kill never signals a recycled pid.
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT;
        while let Err(nix::errno::Errno::EINTR) = waitid(Id::Pid(pid), flags) {}
        let status = {
            let mut st = shared.lock();
            st.exiting = true;
            loop {
                match waitpid(pid, None) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    other => break other,
                }
            }
        };
        let exit_code = match status {
            Ok(WaitStatus::Exited(_, code)) => code,
            Ok(WaitStatus::Signaled(_, sig, _)) => 128 + sig as i32,
            other => {
                tracing::warn!("unexpected wait status {other:?}");
                255
            }
        };
        tracing::info!(exit_code, "container exited");

        for p in pumps {
            let _ = p.join();
        }
        if let Ok(mut l) = log.lock() {
            if let Err(e) = l.flush_partial() {
                tracing::warn!("log flush: {e}");
            }
        }
        let oom_killed = read_oom_killed(&opts.bundle);
        let exit = ExitStatus {
            exit_code,
            finished_at: Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true),
            oom_killed,
        };

        let mut st = shared.lock();
        if let Err(e) = st.container.delete(true) {
            tracing::error!("delete container: {e}");
        }
        match serde_json::to_vec(&exit) {
            Ok(b) => {
                if let Err(e) = write_file(&state_dir.join(EXIT_FILE), &b) {
                    tracing::error!("{e}");
                }
            }
            Err(e) => tracing::error!("encode exit status: {e}"),
        }
        st.exit = Some(exit.clone());
        let reply = Reply {
            ok: true,
            exit: Some(exit),
            ..Reply::default()
        };
        for mut w in st.waiters.drain(..) {
            let _ = send_reply(&mut w, &reply);
        }
        for c in shared.clients().drain(..) {
            let _ = c.stream.shutdown(std::net::Shutdown::Both);
        }
        let _ = std::fs::remove_file(&sock_path);
        tracing::info!("shim exiting");
        0
    }
}

/// Whether the bundle's process asks for a terminal (else `tty` only merges stderr into stdout).
fn spec_wants_terminal(bundle: &Path) -> bool {
    oci_spec::runtime::Spec::load(bundle.join("config.json"))
        .ok()
        .and_then(|s| s.process().as_ref().and_then(|p| p.terminal()))
        .unwrap_or(false)
}

/// Turn libcontainer's error into a message for a user, Docker's wording where users grep it.
pub(crate) fn user_message(e: &libcontainer::error::LibcontainerError) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        let part = s.to_string();
        if !msg.contains(&part) {
            msg.push_str(": ");
            msg.push_str(&part);
        }
        src = s.source();
    }
    // libcontainer: "executable 'foo' not found in $PATH"; Docker: exec: "foo": executable file ...
    if let Some(start) = msg.find("executable '") {
        let rest = &msg[start + "executable '".len()..];
        if let Some(end) = rest.find("' not found in $PATH") {
            let name = &rest[..end];
            return format!(
                "unable to start container process: exec: \"{name}\": executable file not found in $PATH"
            );
        }
        if let Some(end) = rest.find("' at path") {
            let name = &rest[..end];
            return format!(
                "unable to start container process: exec: \"{name}\": permission denied"
            );
        }
    }
    msg
}

/// After a failed build: libcontainer removes what it created in most cases; remove the state dir
/// it may leave when failing early (only if it was not there before us).
fn cleanup_failed_create(container_root: &Path) {
    if container_root.exists() {
        if let Ok(mut c) = Container::load(container_root.to_path_buf()) {
            let _ = c.delete(true);
        }
        let _ = std::fs::remove_dir_all(container_root);
    }
}

struct Shared {
    state: Mutex<State>,
    /// Attached clients (output goes to them).
    clients: Mutex<Vec<Client>>,
    /// The container's stdin; None when closed or not open.
    stdin: Mutex<Option<File>>,
    stdin_once: bool,
    pid: Pid,
    /// The pty master (tty containers), for resize.
    master: Option<OwnedFd>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn clients(&self) -> MutexGuard<'_, Vec<Client>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn close_stdin(&self) {
        let mut s = self.stdin.lock().unwrap_or_else(|p| p.into_inner());
        *s = None;
    }
}

struct State {
    container: Container,
    /// The init has exited (reaped or about to be): no more signals to its pid.
    exiting: bool,
    exit: Option<ExitStatus>,
    /// Connections waiting for the exit status.
    waiters: Vec<UnixStream>,
    next_client: u64,
}

struct Client {
    id: u64,
    stream: UnixStream,
    stdout: bool,
    stderr: bool,
}

fn accept_loop(listener: UnixListener, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || handle(stream, &shared));
            }
            Err(e) => {
                tracing::warn!("accept: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Read one request line, byte by byte (an attach client's stdin bytes follow it).
fn read_request(stream: &mut UnixStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        if stream.read(&mut b)? == 0 {
            return Ok(None);
        }
        if b[0] == b'\n' {
            return Ok(Some(line));
        }
        line.push(b[0]);
        if line.len() > 64 * 1024 {
            return Err(std::io::Error::new(
                ErrorKind::InvalidData,
                "request too long",
            ));
        }
    }
}

fn send_reply(stream: &mut UnixStream, reply: &Reply) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(reply).map_err(std::io::Error::other)?;
    line.push(b'\n');
    stream.set_write_timeout(Some(CLIENT_WRITE_TIMEOUT))?;
    stream.write_all(&line)
}

fn error_reply(msg: impl Into<String>) -> Reply {
    Reply {
        ok: false,
        error: Some(msg.into()),
        ..Reply::default()
    }
}

fn handle(mut stream: UnixStream, shared: &Shared) {
    let line = match read_request(&mut stream) {
        Ok(Some(l)) => l,
        Ok(None) => return,
        Err(e) => {
            tracing::debug!("read request: {e}");
            return;
        }
    };
    let req: Request = match serde_json::from_slice(&line) {
        Ok(r) => r,
        Err(e) => {
            let _ = send_reply(&mut stream, &error_reply(format!("bad request: {e}")));
            return;
        }
    };
    let reply = match req {
        Request::Start => {
            let mut st = shared.lock();
            if st.exiting {
                error_reply("container has exited")
            } else {
                match st.container.start() {
                    Ok(()) => Reply {
                        ok: true,
                        pid: Some(shared.pid.as_raw()),
                        ..Reply::default()
                    },
                    Err(e) => error_reply(user_message(&e)),
                }
            }
        }
        Request::Kill { signal } => {
            let st = shared.lock();
            if st.exiting {
                error_reply("container is not running")
            } else {
                match Signal::try_from(signal) {
                    Ok(sig) => match signal::kill(shared.pid, sig) {
                        Ok(()) => Reply {
                            ok: true,
                            ..Reply::default()
                        },
                        Err(e) => error_reply(format!("kill: {e}")),
                    },
                    Err(_) => error_reply(format!("invalid signal {signal}")),
                }
            }
        }
        Request::Resize { height, width } => match &shared.master {
            Some(m) => match crate::tty::resize(m.as_raw_fd(), height, width) {
                Ok(()) => Reply {
                    ok: true,
                    ..Reply::default()
                },
                Err(e) => error_reply(format!("resize: {e}")),
            },
            None => Reply {
                ok: true,
                ..Reply::default()
            },
        },
        Request::State => {
            let st = shared.lock();
            Reply {
                ok: true,
                pid: Some(shared.pid.as_raw()),
                exit: st.exit.clone(),
                ..Reply::default()
            }
        }
        Request::Wait => {
            let mut st = shared.lock();
            match &st.exit {
                Some(exit) => Reply {
                    ok: true,
                    exit: Some(exit.clone()),
                    ..Reply::default()
                },
                None => {
                    // The main thread answers at exit.
                    st.waiters.push(stream);
                    return;
                }
            }
        }
        Request::Attach {
            stdin,
            stdout,
            stderr,
        } => {
            attach(stream, shared, stdin, stdout, stderr);
            return;
        }
    };
    let _ = send_reply(&mut stream, &reply);
}

fn attach(mut stream: UnixStream, shared: &Shared, stdin: bool, stdout: bool, stderr: bool) {
    let id = {
        let mut st = shared.lock();
        if send_reply(
            &mut stream,
            &Reply {
                ok: true,
                ..Reply::default()
            },
        )
        .is_err()
        {
            return;
        }
        if st.exit.is_some() || st.exiting {
            // Nothing more will come: end the stream at once.
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return;
        }
        let Ok(out) = stream.try_clone() else { return };
        let id = st.next_client;
        st.next_client += 1;
        shared.clients().push(Client {
            id,
            stream: out,
            stdout,
            stderr,
        });
        id
    };
    if !stdin {
        return;
    }
    // Copy the client's bytes to the container's stdin until the client closes its side.
    let mut buf = [0u8; 32 * 1024];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut guard = shared.stdin.lock().unwrap_or_else(|p| p.into_inner());
        let Some(f) = guard.as_mut() else { continue };
        if f.write_all(&buf[..n]).is_err() {
            *guard = None;
        }
    }
    tracing::debug!(client = id, "attach stdin closed");
    if shared.stdin_once {
        shared.close_stdin();
    }
}

/// Copy a container output pipe to the log and to attached clients, until EOF (or idle after exit).
fn pump(fd: OwnedFd, stream: Stream, shared: &Shared, log: &Mutex<LogWriter>) {
    let mut file = File::from(fd);
    let mut buf = vec![0u8; 32 * 1024];
    let frame_type: u8 = match stream {
        Stream::Stdout => 1,
        Stream::Stderr => 2,
    };
    loop {
        let readable = {
            let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(DRAIN_IDLE.as_millis() as u16)) {
                Ok(0) => false,
                Ok(_) => true,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    tracing::warn!("poll: {e}");
                    return;
                }
            }
        };
        if !readable {
            if shared.lock().exiting {
                return;
            }
            continue;
        }
        let n = match file.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!("read container output: {e}");
                return;
            }
        };
        let data = &buf[..n];
        if let Ok(mut l) = log.lock() {
            if let Err(e) = l.write(stream, data) {
                tracing::warn!("log: {e}");
            }
        }
        let mut frame = Vec::with_capacity(8 + n);
        frame.extend_from_slice(&[frame_type, 0, 0, 0]);
        frame.extend_from_slice(&(n as u32).to_be_bytes());
        frame.extend_from_slice(data);
        // A separate lock: a slow client must not hold up start/kill/wait.
        shared.clients().retain_mut(|c| {
            let wanted = match stream {
                Stream::Stdout => c.stdout,
                Stream::Stderr => c.stderr,
            };
            if !wanted {
                return true;
            }
            let ok = c
                .stream
                .set_write_timeout(Some(CLIENT_WRITE_TIMEOUT))
                .is_ok()
                && c.stream.write_all(&frame).is_ok();
            if !ok {
                tracing::debug!(client = c.id, "attach client dropped");
                let _ = c.stream.shutdown(std::net::Shutdown::Both);
            }
            ok
        });
    }
}

/// Whether the kernel OOM-killed a process of the container's cgroup (read before delete).
fn read_oom_killed(bundle: &Path) -> bool {
    let Ok(spec) = oci_spec::runtime::Spec::load(bundle.join("config.json")) else {
        return false;
    };
    let Some(cg) = spec.linux().as_ref().and_then(|l| l.cgroups_path().clone()) else {
        return false;
    };
    let rel = cg.strip_prefix("/").unwrap_or(&cg).to_path_buf();
    let candidates: [PathBuf; 2] = [
        Path::new("/sys/fs/cgroup/memory")
            .join(&rel)
            .join("memory.oom_control"),
        Path::new("/sys/fs/cgroup").join(&rel).join("memory.events"),
    ];
    candidates.iter().any(|p| {
        std::fs::read_to_string(p)
            .map(|s| oom_kill_count(&s) > 0)
            .unwrap_or(false)
    })
}

fn oom_kill_count(text: &str) -> u64 {
    text.lines()
        .filter_map(|l| l.strip_prefix("oom_kill "))
        .filter_map(|v| v.trim().parse::<u64>().ok())
        .next()
        .unwrap_or(0)
}

/// temp + fsync + rename + fsync(dir), through the store's crash-safe writer.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    berth_store::atomic::write_file(path, data).map_err(std::io::Error::other)
}

fn write_file(path: &Path, data: &[u8]) -> std::result::Result<(), String> {
    write_atomic(path, data).map_err(|e| format!("write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_kill_parsing() {
        assert_eq!(
            oom_kill_count("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"),
            2
        );
        assert_eq!(
            oom_kill_count("low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n"),
            0
        );
        assert_eq!(oom_kill_count(""), 0);
    }

    #[test]
    fn atomic_write_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        write_atomic(&p, b"1").unwrap();
        write_atomic(&p, b"22").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"22");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
