//! The exec helper's own way into a running container (the fast path of `berth shim exec`), instead
//! of libcontainer's tenant builder, which costs an intermediate process, ~20 parses of mountinfo
//! and, on cgroup v1, a write of its pid to `cgroup.procs` that waits for an RCU grace period.
//!
//! Before the fork the helper (single-threaded) takes a pidfd of the container's init, reads the
//! init's cgroups from `/proc/<pid>/cgroup` (checked to be the container's: one of them ends with
//! its id, and the init is still alive after the read, so a reused pid is never entered) and opens
//! what it needs to join them: each v1 hierarchy's `tasks` file (a task writing `0` there moves only
//! itself: no threadgroup lock, ~0.1 ms) and, for a cgroup v2 hierarchy, the cgroup's directory for
//! `clone3(CLONE_INTO_CGROUP)`. It sets its pid namespace for children to the init's and forks.
//!
//! The child, in the container's pid namespace and cgroups, then does what runc's `setns` init does:
//! v1 cgroups, `setns(pidfd)` into the mount/uts/ipc/net/cgroup namespaces, a new session, the pty
//! (created inside the container from its devpts, master sent back over a socketpair, slave as the
//! controlling terminal and stdio), rlimits, umask, cwd, the seccomp program the engine compiled
//! (before dropping privileges, unless no_new_privs: as runc), bounding set, groups and ids,
//! capabilities, ambient set, no_new_privs only when the container has it, every fd above 2
//! close-on-exec, then `execve` along the process's `PATH`. Errors go back on a close-on-exec pipe
//! (EOF means the exec happened) with Docker's messages and exit codes (127 not found, 126 other).
//!
//! Anything this path does not handle (no init pid, a seccomp profile the engine could not
//! precompile, e.g. `SCMP_ACT_NOTIFY`, another user namespace, cgroups it cannot place) returns
//! [`Unsupported`] before the fork, and the helper uses libcontainer's tenant builder as before.
//! `BERTH_EXEC_TENANT=1` in the engine's environment forces that old path (for comparisons).

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use oci_spec::runtime::{Capability, PosixRlimitType, Process};

use crate::exec::ExecOptions;

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
const DEVPTS_SUPER_MAGIC: i64 = 0x1cd1;
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Why the fast path was not taken (the caller falls back to libcontainer).
#[derive(Debug)]
pub struct Unsupported(pub String);

/// What [`start`] achieved.
pub enum Entered {
    /// The process runs (it has exec'd): its host pid, and the pty master with a terminal.
    Started { pid: i32, master: Option<OwnedFd> },
    /// It could not be started (the child has been reaped): Docker's exit code and message.
    Failed { code: i32, message: String },
}

/// Everything opened and computed before the fork.
struct Prepared {
    pidfd: OwnedFd,
    own_pidns: OwnedFd,
    v1_tasks: Vec<OwnedFd>,
    v2_dir: Option<OwnedFd>,
    last_cap: u32,
    argv: Vec<CString>,
    envp: Vec<CString>,
    /// Candidate paths for args[0], in PATH order (one when it contains a '/').
    candidates: Vec<CString>,
    cwd: Option<CString>,
    oom_score_adj: Option<CString>,
    seccomp: Option<crate::seccomp_bpf::CompiledSeccomp>,
}

fn unsupported(what: impl std::fmt::Display) -> Unsupported {
    Unsupported(what.to_string())
}

fn cstr(s: &str) -> Result<CString, Unsupported> {
    CString::new(s).map_err(|_| unsupported(format!("NUL byte in {s:?}")))
}

fn last_err() -> std::io::Error {
    std::io::Error::last_os_error()
}

/// Start `opts.process` inside the container of `opts.init_pid`. Call from a single-threaded
/// process only (it forks and changes its pid namespace for children for the duration).
pub fn start(opts: &ExecOptions) -> Result<Entered, Unsupported> {
    if std::env::var_os("BERTH_EXEC_TENANT").is_some_and(|v| v == "1") {
        return Err(unsupported("BERTH_EXEC_TENANT=1"));
    }
    if opts.seccomp.is_some() {
        return Err(unsupported("seccomp profile not precompiled"));
    }
    let pid = match opts.init_pid {
        Some(p) if p > 0 => p,
        _ => return Err(unsupported("no init pid")),
    };
    let prep = prepare(opts, pid)?;
    spawn(opts, &prep)
}

fn prepare(opts: &ExecOptions, pid: i32) -> Result<Prepared, Unsupported> {
    let p = &opts.process;
    // SAFETY: plain syscall; the returned fd is owned right away.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(unsupported(format!("pidfd_open {pid}: {}", last_err())));
    }
    // SAFETY: a new fd of ours (pidfds are close-on-exec).
    let pidfd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    let own_pidns = std::fs::File::open("/proc/self/ns/pid")
        .map(OwnedFd::from)
        .map_err(|e| unsupported(format!("own pid namespace: {e}")))?;
    let same = |ns: &str| {
        let a = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).ok();
        a.is_some() && a == std::fs::read_link(format!("/proc/self/ns/{ns}")).ok()
    };
    if !same("user") {
        return Err(unsupported("container in another user namespace"));
    }
    let theirs = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map_err(|e| unsupported(format!("cgroups of {pid}: {e}")))?;
    let ours = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| unsupported(format!("own cgroups: {e}")))?;
    let suffix = format!("/{}", opts.container_id);
    if !theirs.lines().any(|l| l.ends_with(&suffix)) {
        return Err(unsupported(format!(
            "{pid} is not in the container's cgroup"
        )));
    }
    // The init was alive at pidfd_open and still is: /proc/<pid> above was the same process.
    // SAFETY: pidfd_send_signal with signal 0 only checks.
    let alive = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            0,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if alive != 0 {
        return Err(unsupported("the container's init is gone"));
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| unsupported(format!("mountinfo: {e}")))?;
    let mounts = cgroup_mounts(&mounts);
    let mut v1_tasks = Vec::new();
    let mut v2_dir = None;
    for line in theirs.lines() {
        if ours.lines().any(|o| o == line) {
            continue;
        }
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrl), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let v2 = ctrl.is_empty();
        let dir = mounts
            .iter()
            .filter(|m| m.v2 == v2)
            .filter(|m| v2 || ctrl.split(',').all(|c| m.opts.iter().any(|o| o == c)))
            .find_map(|m| m.dir_of(path))
            .ok_or_else(|| unsupported(format!("no mount for cgroup {line}")))?;
        let flags = libc::O_CLOEXEC | libc::O_NOFOLLOW;
        let opened = if v2 {
            open(&dir, libc::O_PATH | libc::O_DIRECTORY | flags)
        } else {
            open(&format!("{dir}/tasks"), libc::O_WRONLY | flags)
        }
        .map_err(|e| unsupported(format!("cgroup {dir}: {e}")))?;
        if v2 {
            v2_dir = Some(opened);
        } else {
            v1_tasks.push(opened);
        }
    }
    let last_cap = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40);

    let args = p.args().clone().unwrap_or_default();
    let Some(name) = args.first() else {
        return Err(unsupported("no command"));
    };
    let argv = args
        .iter()
        .map(|a| cstr(a))
        .collect::<Result<Vec<_>, _>>()?;
    let env = p.env().clone().unwrap_or_default();
    let envp = env.iter().map(|e| cstr(e)).collect::<Result<Vec<_>, _>>()?;
    let candidates = if name.contains('/') {
        vec![cstr(name)?]
    } else {
        let path = env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH);
        path.split(':')
            .map(|d| if d.is_empty() { "." } else { d })
            .map(|d| cstr(&format!("{}/{name}", d.trim_end_matches('/'))))
            .collect::<Result<Vec<_>, _>>()?
    };
    let cwd = p
        .cwd()
        .to_str()
        .filter(|s| !s.is_empty())
        .map(cstr)
        .transpose()?;
    let oom_score_adj = p
        .oom_score_adj()
        .map(|v| cstr(&v.to_string()))
        .transpose()?;
    Ok(Prepared {
        pidfd,
        own_pidns,
        v1_tasks,
        v2_dir,
        last_cap,
        argv,
        envp,
        candidates,
        cwd,
        oom_score_adj,
        seccomp: opts.seccomp_bpf.clone(),
    })
}

fn open(path: &str, flags: libc::c_int) -> std::io::Result<OwnedFd> {
    let c = CString::new(path).map_err(std::io::Error::other)?;
    // SAFETY: open with a valid C string; the fd is owned right away.
    let fd = unsafe { libc::open(c.as_ptr(), flags) };
    if fd < 0 {
        return Err(last_err());
    }
    // SAFETY: a new fd of ours.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A cgroup (v1 or v2) mount of this mount namespace.
struct CgroupMount {
    v2: bool,
    root: String,
    point: String,
    opts: Vec<String>,
}

impl CgroupMount {
    /// The directory of cgroup `path` (as /proc/<pid>/cgroup shows it) under this mount.
    fn dir_of(&self, path: &str) -> Option<String> {
        if path.split('/').any(|c| c == "..") {
            return None;
        }
        let rest = if self.root == "/" {
            path
        } else {
            let r = path.strip_prefix(self.root.as_str())?;
            if !(r.is_empty() || r.starts_with('/')) {
                return None;
            }
            r
        };
        Some(format!("{}{}", self.point.trim_end_matches('/'), rest).replace("//", "/"))
    }
}

/// Mountinfo's `\ooo` escapes (spaces, tabs, newlines, backslashes in paths).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn cgroup_mounts(mountinfo: &str) -> Vec<CgroupMount> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let mut right = right.split(' ');
            let fstype = right.next()?;
            let _source = right.next()?;
            let superopts = right.next().unwrap_or("");
            let v2 = match fstype {
                "cgroup2" => true,
                "cgroup" => false,
                _ => return None,
            };
            Some(CgroupMount {
                v2,
                root: unescape(left.get(3)?),
                point: unescape(left.get(4)?),
                opts: superopts.split(',').map(str::to_string).collect(),
            })
        })
        .collect()
}

/// Fork the child (into the container's pid namespace and v2 cgroup), wait for its exec or error.
fn spawn(opts: &ExecOptions, prep: &Prepared) -> Result<Entered, Unsupported> {
    let terminal = opts.process.terminal().unwrap_or(false);
    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| unsupported(format!("pipe: {e}")))?;
    let sock = if terminal {
        use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
        Some(
            socketpair(
                AddressFamily::Unix,
                SockType::Stream,
                None,
                SockFlag::SOCK_CLOEXEC,
            )
            .map_err(|e| unsupported(format!("socketpair: {e}")))?,
        )
    } else {
        None
    };
    // SAFETY: setns on our own (single) thread: only the pid namespace of future children.
    if unsafe { libc::setns(prep.pidfd.as_raw_fd(), libc::CLONE_NEWPID) } != 0 {
        return Err(unsupported(format!("setns pid: {}", last_err())));
    }
    let pid = fork_into(prep.v2_dir.as_ref());
    let fork_err = last_err();
    if pid == 0 {
        let child_sock = sock.as_ref().map(|(_, c)| c.as_raw_fd());
        let (code, msg) = child(&opts.process, prep, child_sock);
        let line = format!("{code} {msg}");
        // SAFETY: write to our pipe and _exit, in the child.
        unsafe {
            libc::write(err_w.as_raw_fd(), line.as_ptr().cast(), line.len());
            libc::_exit(code)
        }
    }
    // Back to our own pid namespace for children (threads cannot be created otherwise).
    // SAFETY: setns to the namespace we were in.
    if unsafe { libc::setns(prep.own_pidns.as_raw_fd(), libc::CLONE_NEWPID) } != 0 {
        let e = last_err();
        if pid > 0 {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
        }
        return Err(unsupported(format!("setns back: {e}")));
    }
    if pid < 0 {
        return Err(unsupported(format!("fork: {fork_err}")));
    }
    drop(err_w);
    let parent_sock = sock.map(|(p, _c)| p);
    let mut msg = Vec::new();
    let _ = std::fs::File::from(err_r).read_to_end(&mut msg);
    if !msg.is_empty() {
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        let text = String::from_utf8_lossy(&msg).into_owned();
        let (code, message) = match text.split_once(' ') {
            Some((c, m)) => (c.parse().unwrap_or(126), m.to_string()),
            None => (126, text),
        };
        return Ok(Entered::Failed { code, message });
    }
    let master = match parent_sock {
        Some(s) => match recv_fd(&s) {
            Ok(m) => Some(m),
            Err(e) => {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::SIGKILL,
                );
                let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
                return Ok(Entered::Failed {
                    code: 126,
                    message: format!("console: {e}"),
                });
            }
        },
        None => None,
    };
    Ok(Entered::Started { pid, master })
}

/// fork(), or clone3 into the cgroup v2 directory `cg`. Returns the child's pid, 0 in the child.
fn fork_into(cg: Option<&OwnedFd>) -> i32 {
    let Some(cg) = cg else {
        // SAFETY: the caller is single-threaded.
        return unsafe { libc::fork() };
    };
    #[repr(C)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    let args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        pidfd: 0,
        child_tid: 0,
        parent_tid: 0,
        exit_signal: libc::SIGCHLD as u64,
        stack: 0,
        stack_size: 0,
        tls: 0,
        set_tid: 0,
        set_tid_size: 0,
        cgroup: cg.as_raw_fd() as u64,
    };
    // SAFETY: clone3 without CLONE_VM behaves as fork (the caller is single-threaded).
    unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        ) as i32
    }
}

fn recv_fd(s: &OwnedFd) -> std::io::Result<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = [0u8; 16];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        s.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
    )
    .map_err(std::io::Error::from)?;
    for c in msg.cmsgs().map_err(std::io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(&fd) = fds.first() {
                // SAFETY: the kernel just gave us this fd.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Err(std::io::Error::other("no pty master received"))
}

fn fail(what: &str) -> (i32, String) {
    (126, format!("{what}: {}", last_err()))
}

/// In the child: enter and exec. Returns only on failure (exit code, message).
fn child(p: &Process, prep: &Prepared, sock: Option<RawFd>) -> (i32, String) {
    // SAFETY (whole function): raw syscalls in a freshly forked single-threaded child, with
    // pointers to buffers prepared before the fork.
    unsafe {
        // Default dispositions and no blocked signal (an ignored SIGPIPE survives exec).
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);

        for fd in &prep.v1_tasks {
            if libc::write(fd.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1 {
                return fail("joining the container's cgroup");
            }
        }
        if let Some(adj) = &prep.oom_score_adj {
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .write(true)
                .open("/proc/self/oom_score_adj")
            {
                use std::io::Write;
                let _ = f.write_all(adj.as_bytes());
            }
        }
        let ns = libc::CLONE_NEWNS
            | libc::CLONE_NEWUTS
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWNET
            | libc::CLONE_NEWCGROUP;
        if libc::setns(prep.pidfd.as_raw_fd(), ns) != 0 {
            return fail("entering the container's namespaces");
        }
        libc::setsid();
        if let Some(sock) = sock {
            if let Err(e) = setup_tty(p, sock) {
                return (126, format!("console: {e}"));
            }
        }
        for r in p.rlimits().iter().flatten() {
            let lim = libc::rlimit {
                rlim_cur: r.soft(),
                rlim_max: r.hard(),
            };
            if libc::setrlimit(rlimit_resource(r.typ()), &lim) != 0 {
                return fail("setrlimit");
            }
        }
        if let Some(m) = p.user().umask() {
            libc::umask(m as libc::mode_t);
        }
        // As root first (the user may lack search rights on the way), again as the user if denied.
        let mut chdir_later = false;
        if let Some(cwd) = &prep.cwd {
            if libc::chdir(cwd.as_ptr()) != 0 {
                let e = last_err();
                if e.raw_os_error() == Some(libc::EPERM) || e.raw_os_error() == Some(libc::EACCES) {
                    chdir_later = true;
                } else {
                    return (
                        126,
                        format!(
                            "unable to start container process: chdir to cwd (\"{}\") set in config.json failed: {}",
                            p.cwd().display(),
                            errno_text(&e)
                        ),
                    );
                }
            }
        }
        // No engine fd may reach the process: everything above stdio is closed at exec (before
        // seccomp, which could refuse close_range).
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC);
        let nnp = p.no_new_privileges() == Some(true);
        if !nnp {
            if let Err(e) = load_seccomp(prep) {
                return e;
            }
        }
        let caps = p.capabilities().as_ref();
        if let Some(b) = caps.and_then(|c| c.bounding().as_ref()) {
            let keep = mask(b);
            for cap in 0..=prep.last_cap {
                if keep & (1u64 << cap) == 0
                    && libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) == 1
                    && libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) != 0
                {
                    return fail("dropping the bounding set");
                }
            }
        }
        let u = p.user();
        let gids: Vec<libc::gid_t> = u.additional_gids().clone().unwrap_or_default();
        if libc::setgroups(gids.len(), gids.as_ptr()) != 0 {
            return fail("setgroups");
        }
        libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0);
        if libc::syscall(libc::SYS_setresgid, u.gid(), u.gid(), u.gid()) != 0 {
            return fail("setresgid");
        }
        if libc::syscall(libc::SYS_setresuid, u.uid(), u.uid(), u.uid()) != 0 {
            return fail("setresuid");
        }
        libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0);
        if let Err(e) = set_caps(caps) {
            return e;
        }
        if chdir_later {
            if let Some(cwd) = &prep.cwd {
                if libc::chdir(cwd.as_ptr()) != 0 {
                    let e = last_err();
                    return (
                        126,
                        format!(
                            "unable to start container process: chdir to cwd (\"{}\") set in config.json failed: {}",
                            p.cwd().display(),
                            errno_text(&e)
                        ),
                    );
                }
            }
        }
        if nnp {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return fail("no_new_privs");
            }
            if let Err(e) = load_seccomp(prep) {
                return e;
            }
        }
        exec(prep)
    }
}

fn errno_text(e: &std::io::Error) -> String {
    // "No such file or directory (os error 2)" → Go's lower-case "no such file or directory".
    let s = e.to_string();
    let s = s.split(" (os error").next().unwrap_or(&s).to_string();
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => s,
    }
}

/// The program the engine compiled (the container's own), if any.
fn load_seccomp(prep: &Prepared) -> Result<(), (i32, String)> {
    match &prep.seccomp {
        Some(c) => crate::seccomp_bpf::load(c).map_err(|e| (126, format!("seccomp: {e}"))),
        None => Ok(()),
    }
}

fn mask(set: &std::collections::HashSet<Capability>) -> u64 {
    use libcontainer::capabilities::CapabilityExt;
    set.iter()
        .fold(0u64, |m, c| m | (1u64 << c.to_cap().index()))
}

/// capset(effective, permitted, inheritable), then the ambient set. Without capabilities in the
/// process: a non-root user gets its permitted set as effective (as libcontainer does).
fn set_caps(caps: Option<&oci_spec::runtime::LinuxCapabilities>) -> Result<(), (i32, String)> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut hdr = Header {
        version: 0x2008_0522,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget/capset with a v3 header and two data structs.
    unsafe {
        if libc::syscall(libc::SYS_capget, &mut hdr as *mut Header, data.as_mut_ptr()) != 0 {
            return Err(fail("capget"));
        }
        let get =
            |d: &[Data; 2], f: fn(&Data) -> u32| u64::from(f(&d[0])) | (u64::from(f(&d[1])) << 32);
        let mut eff = get(&data, |d| d.effective);
        let mut perm = get(&data, |d| d.permitted);
        let mut inh = get(&data, |d| d.inheritable);
        match caps {
            Some(c) => {
                if let Some(s) = c.effective() {
                    eff = mask(s);
                }
                if let Some(s) = c.permitted() {
                    perm = mask(s);
                }
                if let Some(s) = c.inheritable() {
                    inh = mask(s);
                }
            }
            None => eff = perm,
        }
        for (i, d) in data.iter_mut().enumerate() {
            d.effective = (eff >> (32 * i)) as u32;
            d.permitted = (perm >> (32 * i)) as u32;
            d.inheritable = (inh >> (32 * i)) as u32;
        }
        hdr.version = 0x2008_0522;
        hdr.pid = 0;
        if libc::syscall(libc::SYS_capset, &mut hdr as *mut Header, data.as_ptr()) != 0 {
            return Err(fail("capset"));
        }
        if let Some(amb) = caps.and_then(|c| c.ambient().as_ref()) {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL,
                0,
                0,
                0,
            );
            let m = mask(amb);
            for cap in 0..64u64 {
                if m & (1 << cap) != 0
                    && libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_RAISE, cap, 0, 0) != 0
                {
                    return Err(fail("raising ambient capabilities"));
                }
            }
        }
    }
    Ok(())
}

fn rlimit_resource(t: PosixRlimitType) -> libc::__rlimit_resource_t {
    use PosixRlimitType::*;
    match t {
        RlimitCpu => libc::RLIMIT_CPU,
        RlimitFsize => libc::RLIMIT_FSIZE,
        RlimitData => libc::RLIMIT_DATA,
        RlimitStack => libc::RLIMIT_STACK,
        RlimitCore => libc::RLIMIT_CORE,
        RlimitRss => libc::RLIMIT_RSS,
        RlimitNproc => libc::RLIMIT_NPROC,
        RlimitNofile => libc::RLIMIT_NOFILE,
        RlimitMemlock => libc::RLIMIT_MEMLOCK,
        RlimitAs => libc::RLIMIT_AS,
        RlimitLocks => libc::RLIMIT_LOCKS,
        RlimitSigpending => libc::RLIMIT_SIGPENDING,
        RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        RlimitNice => libc::RLIMIT_NICE,
        RlimitRtprio => libc::RLIMIT_RTPRIO,
        RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

/// The pty, created inside the container (its devpts): master sent to the helper over `sock`,
/// slave as controlling terminal and stdio, with the requested size.
unsafe fn setup_tty(p: &Process, sock: RawFd) -> std::io::Result<()> {
    let ptmx = open("/dev/ptmx", libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC)?;
    let mut st: libc::statfs = std::mem::zeroed();
    let mut sb: libc::stat = std::mem::zeroed();
    if libc::fstatfs(ptmx.as_raw_fd(), &mut st) != 0 || libc::fstat(ptmx.as_raw_fd(), &mut sb) != 0
    {
        return Err(last_err());
    }
    if st.f_type as i64 != DEVPTS_SUPER_MAGIC
        || sb.st_mode & libc::S_IFMT != libc::S_IFCHR
        || libc::major(sb.st_rdev) != 5
        || libc::minor(sb.st_rdev) != 2
    {
        return Err(std::io::Error::other("/dev/ptmx is not a devpts ptmx"));
    }
    let unlock: libc::c_int = 0;
    if libc::ioctl(ptmx.as_raw_fd(), libc::TIOCSPTLCK, &unlock) != 0 {
        return Err(last_err());
    }
    let fd = libc::ioctl(
        ptmx.as_raw_fd(),
        libc::TIOCGPTPEER,
        libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
    );
    if fd < 0 {
        return Err(last_err());
    }
    let slave = OwnedFd::from_raw_fd(fd);
    if let Some(size) = p.console_size() {
        let ws = libc::winsize {
            ws_row: size.height() as u16,
            ws_col: size.width() as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        libc::ioctl(slave.as_raw_fd(), libc::TIOCSWINSZ, &ws);
    }
    {
        use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};
        let fds = [ptmx.as_raw_fd()];
        let iov = [std::io::IoSlice::new(b"/dev/ptmx")];
        sendmsg::<UnixAddr>(
            sock,
            &iov,
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .map_err(std::io::Error::from)?;
    }
    if libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) != 0 {
        return Err(last_err());
    }
    for target in 0..3 {
        if libc::dup2(slave.as_raw_fd(), target) < 0 {
            return Err(last_err());
        }
    }
    Ok(())
}

/// execve along the candidates (execvp's rules); returns only on failure.
unsafe fn exec(prep: &Prepared) -> (i32, String) {
    let mut argv: Vec<*const libc::c_char> = prep.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = prep.envp.iter().map(|a| a.as_ptr()).collect();
    envp.push(std::ptr::null());
    let name = prep
        .argv
        .first()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut denied = None;
    for c in &prep.candidates {
        libc::execve(c.as_ptr(), argv.as_ptr(), envp.as_ptr());
        let e = last_err();
        match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) | Some(libc::ESTALE) => continue,
            Some(libc::EACCES) => {
                denied.get_or_insert(e);
            }
            _ => {
                return (
                    126,
                    format!(
                        "unable to start container process: exec: \"{name}\": {}",
                        errno_text(&e)
                    ),
                )
            }
        }
    }
    let start = "unable to start container process: exec:";
    match denied {
        Some(e) => (126, format!("{start} \"{name}\": {}", errno_text(&e))),
        None if name.contains('/') => (
            127,
            format!("{start} \"{name}\": stat {name}: no such file or directory"),
        ),
        None => (
            127,
            format!("{start} \"{name}\": executable file not found in $PATH"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_mounts_and_dirs() {
        let mi = "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
                  40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n\
                  41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n\
                  50 31 0:39 /sub /mnt/a\\040b rw - cgroup cgroup rw,memory\n\
                  51 31 8:1 / / rw - ext4 /dev/sda1 rw\n";
        let m = cgroup_mounts(mi);
        assert_eq!(m.len(), 4);
        assert_eq!(
            m[0].dir_of("/p/id").as_deref(),
            Some("/sys/fs/cgroup/cpu/p/id")
        );
        assert!(m[1].opts.iter().any(|o| o == "name=systemd"));
        assert!(m[2].v2);
        assert_eq!(m[2].dir_of("/").as_deref(), Some("/sys/fs/cgroup/unified/"));
        assert_eq!(m[3].point, "/mnt/a b");
        assert_eq!(m[3].dir_of("/sub/x").as_deref(), Some("/mnt/a b/x"));
        assert_eq!(m[3].dir_of("/subx"), None);
        assert_eq!(m[3].dir_of("/other"), None);
        assert_eq!(m[0].dir_of("/p/../../etc"), None);
    }

    /// clone3(CLONE_INTO_CGROUP) puts the child straight into a cgroup v2 directory (the path a
    /// cgroup v2 container's exec takes; this host's containers are v1 only).
    #[test]
    fn fork_into_a_v2_cgroup() {
        let Some(m) = std::fs::read_to_string("/proc/self/mountinfo")
            .ok()
            .map(|mi| cgroup_mounts(&mi))
            .and_then(|ms| ms.into_iter().find(|m| m.v2 && m.root == "/"))
        else {
            eprintln!("no cgroup2 mount: skipped");
            return;
        };
        let name = format!("berth-enter-test-{}", std::process::id());
        let dir = format!("{}/{name}", m.point.trim_end_matches('/'));
        std::fs::create_dir(&dir).unwrap();
        let fd = open(&dir, libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC).unwrap();
        let pid = fork_into(Some(&fd));
        if pid == 0 {
            // SAFETY: the child only reads a file into a stack buffer and exits.
            unsafe {
                let mut buf = [0u8; 4096];
                let f = libc::open(c"/proc/self/cgroup".as_ptr(), libc::O_RDONLY);
                let n = libc::read(f, buf.as_mut_ptr().cast(), buf.len());
                let want = format!("0::/{name}\n");
                let ok = n > 0
                    && buf[..n as usize]
                        .windows(want.len())
                        .any(|w| w == want.as_bytes());
                libc::_exit(if ok { 0 } else { 1 })
            }
        }
        assert!(pid > 0, "clone3: {}", last_err());
        let mut st = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut st, 0) };
        let _ = std::fs::remove_dir(&dir);
        assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0, "{st:#x}");
    }

    #[test]
    fn errno_texts_read_like_go() {
        let e = std::io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(errno_text(&e), "no such file or directory");
    }
}
