//! The exec helper: `berth shim exec <options-file>`, one short-lived single-threaded process per
//! `docker exec`. It enters a running container itself ([`crate::enter`]: setns, cgroups, caps,
//! seccomp, exec) when the engine gave the init's pid, else with libcontainer's tenant builder (the
//! container's namespaces and cgroup; the process, capabilities and no_new_privs come from the
//! options), waits for the process and exits with its exit code (128 + signal when killed).
//!
//! The engine gives it a ready pipe on fd 3 ([`ExecReady`] as one JSON line) and the exec's stdio on
//! fds 0-2. Without a terminal the process gets fds 0-2 themselves. With a terminal libcontainer
//! sends the pty master over a console socket; the helper pumps fd 0 → master and master → fd 1, and
//! reports the master's fd number so the engine can resize it (pidfd_getfd).
//!
//! On the libcontainer path: libcontainer 0.7's tenant builder keeps only namespaces and cgroups of the container's `linux`
//! section, so seccomp would be lost: the container's filter is loaded by our executor right before
//! the process execs (with no_new_privs, since its capabilities are dropped by then).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::sys::wait::{waitpid, WaitStatus};
use oci_spec::runtime::{LinuxSeccomp, Process, Spec};
use serde::{Deserialize, Serialize};

const READY_FD: RawFd = 3;

/// What the engine writes for the helper.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecOptions {
    /// The container (libcontainer id) to enter.
    pub container_id: String,
    /// libcontainer's root (`<exec-root>/runtime`).
    pub runtime_root: PathBuf,
    /// The process: args, env, cwd, user, capabilities, no_new_privileges, terminal.
    pub process: Process,
    /// The container's seccomp filter (None: unconfined, e.g. `--privileged`).
    pub seccomp: Option<LinuxSeccomp>,
    /// The same filter compiled by the engine (see [`crate::seccomp_bpf`]); when set, it is
    /// loaded instead of compiling `seccomp` here.
    #[serde(default)]
    pub seccomp_bpf: Option<crate::seccomp_bpf::CompiledSeccomp>,
    /// The host pid of the container's init: with it the helper enters the container itself
    /// ([`crate::enter`]); without it (or when that path does not apply) through libcontainer.
    #[serde(default)]
    pub init_pid: Option<i32>,
}

/// The helper's report on fd 3.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExecReady {
    pub pid: Option<i32>,
    /// The pty master's fd number in the helper (terminal only).
    pub tty_fd: Option<i32>,
    pub error: Option<String>,
}

#[derive(Clone)]
pub(crate) struct SeccompExecutor {
    pub(crate) seccomp: Option<LinuxSeccomp>,
    pub(crate) compiled: Option<crate::seccomp_bpf::CompiledSeccomp>,
}

impl Executor for SeccompExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        if self.seccomp.is_some() || self.compiled.is_some() {
            // SAFETY: plain prctl on the calling (about to exec) process.
            if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
                return Err(ExecutorError::Other(format!(
                    "no_new_privs: {}",
                    std::io::Error::last_os_error()
                )));
            }
            if let Some(c) = &self.compiled {
                crate::seccomp_bpf::load(c)
                    .map_err(|e| ExecutorError::Other(format!("seccomp: {e}")))?;
            } else if let Some(s) = &self.seccomp {
                libcontainer::seccomp::initialize_seccomp(s)
                    .map_err(|e| ExecutorError::Other(format!("seccomp: {e}")))?;
            }
        }
        set_initial_size(spec);
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }
}

/// With a terminal, stdin is the pty slave by now: give it the requested size (libcontainer ignores
/// `process.consoleSize`), before the process runs rather than racing a resize after it started.
pub fn set_initial_size(spec: &Spec) {
    let Some(p) = spec.process().as_ref() else {
        return;
    };
    if !p.terminal().unwrap_or(false) {
        return;
    }
    let Some(size) = p.console_size() else { return };
    let ws = libc::winsize {
        ws_row: size.height() as u16,
        ws_col: size.width() as u16,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: ioctl on fd 0 with a valid winsize.
    unsafe { libc::ioctl(0, libc::TIOCSWINSZ, &ws) };
}

fn report(ready: &mut Option<File>, r: &ExecReady) {
    if let Some(f) = ready.as_mut() {
        let mut line = serde_json::to_vec(r).unwrap_or_default();
        line.push(b'\n');
        let _ = f.write_all(&line);
    }
}

/// Entry point: never returns.
pub fn run(opts_path: &Path) -> ! {
    crate::reset_inherited_ignored_signals();
    // SAFETY: close_range on fds this fresh process does not use; the engine's leaks end here.
    unsafe { libc::syscall(libc::SYS_close_range, READY_FD as u32 + 1, u32::MAX, 0) };
    let mut ready = if nix::fcntl::fcntl(
        READY_FD,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .is_ok()
    {
        // SAFETY: fd 3 is open and ours.
        Some(File::from(unsafe { OwnedFd::from_raw_fd(READY_FD) }))
    } else {
        None
    };
    let fail = |ready: &mut Option<File>, msg: String| -> ! {
        report(
            ready,
            &ExecReady {
                error: Some(msg),
                ..ExecReady::default()
            },
        );
        std::process::exit(126)
    };
    let opts: ExecOptions = match std::fs::read(opts_path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(o) => o,
        Err(e) => fail(&mut ready, format!("exec options: {e}")),
    };
    // Become the reaper of the process whatever libcontainer's fork layout.
    // SAFETY: prctl on ourselves.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };

    match crate::enter::start(&opts) {
        Ok(crate::enter::Entered::Started { pid, master }) => {
            finish(ready, nix::unistd::Pid::from_raw(pid), master)
        }
        Ok(crate::enter::Entered::Failed { code, message }) => {
            report(
                &mut ready,
                &ExecReady {
                    error: Some(message),
                    ..ExecReady::default()
                },
            );
            std::process::exit(code)
        }
        // Not for this path: libcontainer's tenant builder below.
        Err(_) => {}
    }

    let terminal = opts.process.terminal().unwrap_or(false);
    let process_path = opts_path.with_extension("process.json");
    if let Err(e) = serde_json::to_vec(&opts.process)
        .map_err(std::io::Error::other)
        .and_then(|b| std::fs::write(&process_path, b))
    {
        fail(&mut ready, format!("write process.json: {e}"));
    }
    let console_path = opts_path.with_extension("tty.sock");
    let console = if terminal {
        let _ = std::fs::remove_file(&console_path);
        let dir = console_path.parent().unwrap_or(Path::new("/"));
        let name = console_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bound = crate::tty::bind_console(dir, &name).map(|(l, _)| l);
        match bound {
            Ok(l) => Some(l),
            Err(e) => fail(&mut ready, format!("console socket: {e}")),
        }
    } else {
        None
    };

    let built = ContainerBuilder::new(opts.container_id.clone(), SyscallType::Linux)
        .with_root_path(&opts.runtime_root)
        .map(|b| {
            b.with_console_socket(console.as_ref().map(|_| console_path.clone()))
                .with_executor(SeccompExecutor {
                    seccomp: opts.seccomp.clone(),
                    compiled: opts.seccomp_bpf.clone(),
                })
        })
        .and_then(|b| {
            b.as_tenant()
                .with_process(Some(process_path.clone()))
                .with_detach(true)
                .build()
        });
    let _ = std::fs::remove_file(&process_path);
    let pid = match built {
        Ok(p) => p,
        Err(e) => {
            let _ = std::fs::remove_file(&console_path);
            let msg = crate::monitor::user_message(&e);
            let code = if msg.contains("not found") { 127 } else { 126 };
            report(
                &mut ready,
                &ExecReady {
                    error: Some(msg),
                    ..ExecReady::default()
                },
            );
            std::process::exit(code)
        }
    };

    let master = match console {
        Some(l) => {
            let m = crate::tty::receive_master(&l, std::time::Duration::from_secs(10));
            let _ = std::fs::remove_file(&console_path);
            match m {
                Ok(m) => Some(m),
                Err(e) => {
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                    fail(&mut ready, format!("console: {e}"))
                }
            }
        }
        None => None,
    };
    finish(ready, pid, master)
}

/// Report the pid (and the pty master's fd), pump the terminal, wait and exit with the code.
fn finish(mut ready: Option<File>, pid: nix::unistd::Pid, master: Option<OwnedFd>) -> ! {
    report(
        &mut ready,
        &ExecReady {
            pid: Some(pid.as_raw()),
            tty_fd: master.as_ref().map(|m| m.as_raw_fd()),
            error: None,
        },
    );
    drop(ready);

    if let Some(m) = &master {
        pump_tty(m);
    }
    let code = loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, c)) => break c,
            Ok(WaitStatus::Signaled(_, s, _)) => break 128 + s as i32,
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break 255,
        }
    };
    std::process::exit(code)
}

/// fd 0 → master (in a thread), master → fd 1 until the pty closes (EIO when the process is gone).
fn pump_tty(master: &OwnedFd) {
    let Ok(to_master) = master.try_clone() else {
        return;
    };
    std::thread::spawn(move || {
        let mut w = File::from(to_master);
        // SAFETY: fd 0 stays open for the life of the helper.
        let mut stdin = std::mem::ManuallyDrop::new(unsafe { File::from_raw_fd(0) });
        let mut buf = [0u8; 8192];
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 || w.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    let Ok(from) = master.try_clone() else { return };
    let mut r = File::from(from);
    // SAFETY: as above, fd 1.
    let mut out = std::mem::ManuallyDrop::new(unsafe { File::from_raw_fd(1) });
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if out.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
}
