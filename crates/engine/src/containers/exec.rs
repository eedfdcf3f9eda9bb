//! exec: processes started in a running container by the exec helper (`berth shim exec`, see
//! `berth_shim::exec`). Exec instances live in memory only (as in Docker, they do not survive the
//! engine); the helper is the engine's child and its exit status is the process's exit code.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use berth_shim::exec::{ExecOptions, ExecReady};
use nix::fcntl::OFlag;
use tokio::process::{ChildStderr, ChildStdin, ChildStdout};
use tokio::sync::watch;

use super::{ContainerService, Status};
use crate::{EngineError, Result};

/// `POST /containers/{id}/exec` as the engine needs it.
#[derive(Debug, Clone, Default)]
pub struct ExecConfig {
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub user: String,
    pub working_dir: String,
    pub privileged: bool,
    pub tty: bool,
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    pub detach_keys: String,
    /// Initial terminal size (height, width).
    pub console_size: Option<(u16, u16)>,
}

/// What `GET /exec/{id}/json` shows.
#[derive(Debug, Clone)]
pub struct ExecInfo {
    pub id: String,
    pub container_id: String,
    pub config: ExecConfig,
    pub running: bool,
    pub exit_code: Option<i64>,
    pub pid: i64,
}

struct ExecEntry {
    info: Mutex<ExecInfo>,
    started: Mutex<bool>,
    /// The helper's pid and its pty master fd number (terminal only), for resize.
    tty: Mutex<Option<(i32, i32)>>,
    done: watch::Sender<bool>,
}

fn registry() -> &'static Mutex<HashMap<String, Arc<ExecEntry>>> {
    static R: OnceLock<Mutex<HashMap<String, Arc<ExecEntry>>>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(HashMap::new()))
}

fn lookup(id: &str) -> Result<Arc<ExecEntry>> {
    registry()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(id)
        .cloned()
        .ok_or_else(|| EngineError::NotFound(format!("No such exec instance: {id}")))
}

/// The streams of a started (attached) exec.
pub struct ExecStreams {
    pub tty: bool,
    pub stdin: Option<ChildStdin>,
    pub stdout: Option<ChildStdout>,
    pub stderr: Option<ChildStderr>,
    /// Becomes true once the exit code is recorded.
    pub done: watch::Receiver<bool>,
    pub detach_keys: String,
    /// The process could not be started: this message goes to the client's stdout.
    pub error: Option<String>,
}

fn new_id() -> String {
    let mut b = [0u8; 32];
    let _ = getrandom::fill(&mut b);
    hex::encode(b)
}

fn not_running(id: &str, status: Status) -> Option<EngineError> {
    match status {
        Status::Running => None,
        Status::Paused => Some(EngineError::Conflict(format!(
            "container {id} is paused, unpause the container before exec"
        ))),
        _ => Some(EngineError::Conflict(format!(
            "container {id} is not running"
        ))),
    }
}

impl ContainerService {
    pub async fn exec_create(&self, name: &str, cfg: ExecConfig) -> Result<String> {
        let c = self.get(name)?;
        let rec = c.snapshot();
        if let Some(e) = not_running(&rec.id, rec.state.status) {
            return Err(e);
        }
        if cfg.cmd.is_empty() {
            return Err(EngineError::InvalidArgument(
                "No exec command specified".into(),
            ));
        }
        self.prune_execs();
        let id = new_id();
        let entry = Arc::new(ExecEntry {
            info: Mutex::new(ExecInfo {
                id: id.clone(),
                container_id: rec.id.clone(),
                config: cfg,
                running: false,
                exit_code: None,
                pid: 0,
            }),
            started: Mutex::new(false),
            tty: Mutex::new(None),
            done: watch::Sender::new(false),
        });
        registry()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), entry);
        Ok(id)
    }

    /// Forget finished execs of containers that no longer run (Docker drops them at stop/remove).
    fn prune_execs(&self) {
        let mut reg = registry().lock().unwrap_or_else(|p| p.into_inner());
        reg.retain(|_, e| {
            let i = e.info.lock().unwrap_or_else(|p| p.into_inner());
            i.running
                || self
                    .get(&i.container_id)
                    .map(|c| matches!(c.snapshot().state.status, Status::Running | Status::Paused))
                    .unwrap_or(false)
        });
    }

    pub fn exec_inspect(&self, id: &str) -> Result<ExecInfo> {
        let e = lookup(id)?;
        let info = e.info.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Ok(info)
    }

    /// Set the exec's terminal size (TIOCSWINSZ on the helper's pty master via pidfd_getfd).
    pub fn exec_resize(&self, id: &str, height: u16, width: u16) -> Result<()> {
        let e = lookup(id)?;
        let Some((pid, fd)) = *e.tty.lock().unwrap_or_else(|p| p.into_inner()) else {
            return Ok(());
        };
        resize_remote(pid, fd, height, width)
    }

    /// Start the exec. With `detach` the process runs with /dev/null stdio and None is returned.
    pub async fn exec_start(
        self: &Arc<Self>,
        id: &str,
        detach: bool,
        tty_override: Option<bool>,
        console_size: Option<(u16, u16)>,
    ) -> Result<Option<ExecStreams>> {
        let t0 = std::time::Instant::now();
        let entry = lookup(id)?;
        {
            let mut s = entry.started.lock().unwrap_or_else(|p| p.into_inner());
            if *s {
                return Err(EngineError::Conflict(format!(
                    "exec {id} has already been started"
                )));
            }
            *s = true;
        }
        let mut info = entry.info.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(t) = tty_override {
            info.config.tty = t;
        }
        if console_size.is_some() {
            info.config.console_size = console_size;
        }
        let c = self.get(&info.container_id)?;
        let rec = c.snapshot();
        if let Some(e) = not_running(&rec.id, rec.state.status) {
            return Err(e);
        }
        let mut opts = self.exec_options(&rec.id, &info.config).await?;
        opts.init_pid = i32::try_from(rec.state.pid).ok().filter(|p| *p > 0);
        let opts_path = self.shim_dir(&rec.id).join(format!("exec-{id}.json"));
        let data = serde_json::to_vec(&opts).map_err(|e| EngineError::Internal(e.to_string()))?;
        // Read once by the helper and removed right after: no durability needed (no fsync).
        write_private(&opts_path, &data)?;

        let cfg = &info.config;
        let (ready_r, ready_w): (OwnedFd, OwnedFd) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;
        let wfd = ready_w.as_raw_fd();
        let mut cmd = tokio::process::Command::new(&self.cfg.berth_exe);
        cmd.arg("shim").arg("exec").arg(&opts_path);
        let piped = |on: bool| {
            if on && !detach {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::null()
            }
        };
        cmd.stdin(piped(cfg.attach_stdin))
            .stdout(piped(cfg.attach_stdout || cfg.attach_stderr))
            .stderr(piped(!cfg.tty && (cfg.attach_stderr || cfg.attach_stdout)));
        // SAFETY: only dup2/fcntl between fork and exec.
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
        let t_opts = t0.elapsed();
        let mut child = cmd.spawn()?;
        let t_spawn = t0.elapsed();
        drop(ready_w);
        let ready = tokio::task::spawn_blocking(move || read_ready(ready_r))
            .await
            .map_err(|e| EngineError::Internal(e.to_string()))??;
        let _ = std::fs::remove_file(&opts_path);
        tracing::debug!(
            exec = %id,
            options_us = t_opts.as_micros() as u64,
            spawned_us = t_spawn.as_micros() as u64,
            ready_us = t0.elapsed().as_micros() as u64,
            "exec started"
        );
        if let Some(err) = ready.error {
            let status = child.wait().await;
            let code = status.ok().and_then(|s| s.code()).unwrap_or(126);
            {
                let mut i = entry.info.lock().unwrap_or_else(|p| p.into_inner());
                i.exit_code = Some(i64::from(code));
            }
            entry.done.send_replace(true);
            let msg = format!("OCI runtime exec failed: exec failed: {err}: unknown");
            if detach {
                return Err(EngineError::Internal(msg));
            }
            // Docker writes the error into the attached stream; the exit code is 126/127.
            return Ok(Some(ExecStreams {
                tty: cfg.tty,
                stdin: None,
                stdout: None,
                stderr: None,
                done: entry.done.subscribe(),
                detach_keys: String::new(),
                error: Some(msg),
            }));
        }
        let pid = ready.pid.unwrap_or(0);
        if let (Some(fd), Some(hp)) = (ready.tty_fd, child.id()) {
            *entry.tty.lock().unwrap_or_else(|p| p.into_inner()) = Some((hp as i32, fd));
        }
        {
            let mut i = entry.info.lock().unwrap_or_else(|p| p.into_inner());
            i.running = true;
            i.pid = pid as i64;
        }
        let streams = ExecStreams {
            tty: cfg.tty,
            stdin: child.stdin.take(),
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
            done: entry.done.subscribe(),
            detach_keys: cfg.detach_keys.clone(),
            error: None,
        };
        let e2 = Arc::clone(&entry);
        tokio::spawn(async move {
            let code = match child.wait().await {
                Ok(s) => {
                    use std::os::unix::process::ExitStatusExt;
                    s.code()
                        .map(i64::from)
                        .or_else(|| s.signal().map(|n| 128 + n as i64))
                        .unwrap_or(255)
                }
                Err(_) => 255,
            };
            tracing::debug!(
                exited_us = t0.elapsed().as_micros() as u64,
                code,
                "exec exited"
            );
            {
                let mut i = e2.info.lock().unwrap_or_else(|p| p.into_inner());
                i.running = false;
                i.exit_code = Some(code);
            }
            *e2.tty.lock().unwrap_or_else(|p| p.into_inner()) = None;
            e2.done.send_replace(true);
        });
        Ok(if detach { None } else { Some(streams) })
    }

    /// The helper's options: the container's process with the exec's overrides.
    async fn exec_options(&self, id: &str, cfg: &ExecConfig) -> Result<ExecOptions> {
        let bundle = self.dir(id);
        let rootfs = self.rootfs(id);
        let runtime_root: PathBuf = self.cfg.runtime_root();
        let cfg = cfg.clone();
        let id = id.to_string();
        tokio::task::spawn_blocking(move || -> Result<ExecOptions> {
            let spec = oci_spec::runtime::Spec::load(bundle.join("config.json"))
                .map_err(|e| EngineError::Internal(format!("container spec: {e}")))?;
            let mut process = spec.process().clone().unwrap_or_default();
            process.set_args(Some(cfg.cmd.clone()));
            let mut env: Vec<String> = process.env().clone().unwrap_or_default();
            let mut set = |kv: &str| {
                let key = kv.split('=').next().unwrap_or(kv);
                env.retain(|e| e.split('=').next() != Some(key));
                env.push(kv.to_string());
            };
            if cfg.tty && !cfg.env.iter().any(|e| e.starts_with("TERM=")) {
                set("TERM=xterm");
            }
            for e in &cfg.env {
                if e.contains('=') {
                    set(e);
                }
            }
            if !cfg.user.is_empty() {
                let u = berth_runtime::user::resolve(&rootfs, &cfg.user)?;
                let mut user = process.user().clone();
                user.set_uid(u.uid);
                user.set_gid(u.gid);
                user.set_additional_gids(Some(u.additional_gids.clone()));
                process.set_user(user);
                set(&format!("HOME={}", u.home));
            }
            process.set_env(Some(env));
            if !cfg.working_dir.is_empty() {
                process.set_cwd(PathBuf::from(&cfg.working_dir));
            }
            process.set_terminal(Some(cfg.tty));
            let size = cfg.console_size.filter(|&(h, w)| cfg.tty && h > 0 && w > 0);
            process.set_console_size(size.and_then(|(h, w)| {
                oci_spec::runtime::BoxBuilder::default()
                    .height(u64::from(h))
                    .width(u64::from(w))
                    .build()
                    .ok()
            }));
            let seccomp = if cfg.privileged {
                let all = berth_runtime::caps::all_caps();
                let set = berth_runtime::caps::to_oci(&all)?;
                let mut caps = process.capabilities().clone().unwrap_or_default();
                caps.set_bounding(Some(set.clone()))
                    .set_effective(Some(set.clone()))
                    .set_permitted(Some(set.clone()));
                process.set_capabilities(Some(caps));
                None
            } else {
                spec.linux().as_ref().and_then(|l| l.seccomp().clone())
            };
            // Compiled once per profile here rather than in every helper (~20 ms each); a
            // profile that cannot be precompiled (notify, or an error) goes to the helper as
            // before, where libcontainer loads it or reports its own error.
            let seccomp_bpf = match &seccomp {
                Some(s) => match berth_shim::seccomp_bpf::compile_cached(s) {
                    Ok(c) => c.map(|c| (*c).clone()),
                    Err(e) => {
                        tracing::warn!("precompiling the seccomp profile: {e}");
                        None
                    }
                },
                None => None,
            };
            let seccomp = if seccomp_bpf.is_some() { None } else { seccomp };
            Ok(ExecOptions {
                container_id: id,
                runtime_root,
                process,
                seccomp,
                seccomp_bpf,
                init_pid: None,
            })
        })
        .await
        .map_err(|e| EngineError::Internal(e.to_string()))?
    }
}

fn write_private(path: &std::path::Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(path)?;
    f.write_all(data)?;
    Ok(())
}

fn read_ready(fd: OwnedFd) -> Result<ExecReady> {
    use std::io::Read;
    let mut f = std::fs::File::from(fd);
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match f.read(&mut b) {
            Ok(0) => break,
            Ok(_) if b[0] == b'\n' => break,
            Ok(_) => out.push(b[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
    }
    if out.is_empty() {
        return Err(EngineError::Internal(
            "exec helper exited without reporting".into(),
        ));
    }
    serde_json::from_slice(&out).map_err(|e| EngineError::Internal(format!("exec helper: {e}")))
}

/// TIOCSWINSZ on fd `fd` of process `pid` (a pty master), through a pidfd_getfd copy.
pub fn resize_remote(pid: i32, fd: i32, height: u16, width: u16) -> Result<()> {
    // SAFETY: raw syscalls; every returned fd is wrapped to be closed.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0);
        if pidfd < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        let pidfd = OwnedFd::from_raw_fd(pidfd as i32);
        let local = libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0);
        if local < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        let local = OwnedFd::from_raw_fd(local as i32);
        resize_fd(local.as_raw_fd(), height, width)
    }
}

/// TIOCSWINSZ on a pty master we hold.
pub fn resize_fd(fd: i32, height: u16, width: u16) -> Result<()> {
    let ws = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: ioctl with a valid winsize pointer.
    if unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) } < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(())
}

/// `-t` containers: a terminal in the spec, with the client's initial size (HostConfig.ConsoleSize,
/// `[height, width]`) applied by the shim before the process runs.
pub fn set_terminal(spec: &mut oci_spec::runtime::Spec, tty: bool, size: Option<&[usize]>) {
    let Some(p) = spec.process().clone() else {
        return;
    };
    let mut p = p;
    p.set_terminal(Some(tty));
    let size = match size {
        Some(&[h, w]) if tty && h > 0 && w > 0 => oci_spec::runtime::BoxBuilder::default()
            .height(h as u64)
            .width(w as u64)
            .build()
            .ok(),
        _ => None,
    };
    p.set_console_size(size);
    spec.set_process(Some(p));
}

impl ContainerService {
    /// `POST /containers/{id}/resize`: the pty's window size (no-op without a tty).
    pub async fn resize_tty(&self, name: &str, height: u16, width: u16) -> Result<()> {
        let c = self.get(name)?;
        let rec = c.snapshot();
        if !matches!(rec.state.status, Status::Running | Status::Paused) {
            return Err(EngineError::Conflict(format!(
                "container {} is not running",
                rec.id
            )));
        }
        match berth_shim::client::ShimClient::new(&self.shim_dir(&rec.id))
            .resize(height, width)
            .await
        {
            Ok(()) => Ok(()),
            Err(berth_shim::ShimError::NotRunning(_)) => Err(EngineError::Conflict(format!(
                "container {} is not running",
                rec.id
            ))),
            Err(e) => Err(e.into()),
        }
    }
}
