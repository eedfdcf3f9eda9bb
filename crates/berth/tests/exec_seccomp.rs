//! exec loads the seccomp filter the engine compiled once (not libseccomp in every helper): the
//! program an exec'd process runs under must be the very one of the container's init, for the
//! default profile and for a custom `--security-opt seccomp=FILE` one, and it must enforce.

mod common;

use std::time::{Duration, Instant};

use common::TestDaemon;

/// The seccomp programs (raw sock_filter arrays, newest first) of `pid`, via
/// PTRACE_SECCOMP_GET_FILTER (the tracee is seized, interrupted, read and released).
fn filters(pid: i32) -> Vec<Vec<u8>> {
    const PTRACE_SEIZE: libc::c_uint = 0x4206;
    const PTRACE_INTERRUPT: libc::c_uint = 0x4207;
    const PTRACE_SECCOMP_GET_FILTER: libc::c_uint = 0x420c;
    let mut out = Vec::new();
    // SAFETY: ptrace on a process of our own test; buffers are sized from the kernel's answer.
    unsafe {
        assert_eq!(
            libc::ptrace(PTRACE_SEIZE, pid, 0usize, 0usize),
            0,
            "seize {pid}: {}",
            std::io::Error::last_os_error()
        );
        libc::ptrace(PTRACE_INTERRUPT, pid, 0usize, 0usize);
        let mut st = 0;
        libc::waitpid(pid, &mut st, libc::__WALL);
        for i in 0usize.. {
            let n = libc::ptrace(PTRACE_SECCOMP_GET_FILTER, pid, i, 0usize);
            if n <= 0 {
                break;
            }
            let mut buf = vec![0u8; n as usize * 8];
            libc::ptrace(PTRACE_SECCOMP_GET_FILTER, pid, i, buf.as_mut_ptr());
            out.push(buf);
        }
        libc::ptrace(libc::PTRACE_DETACH, pid, 0usize, 0usize);
    }
    out
}

/// The host pid of the process in the pid namespace of `init` whose cmdline is `cmdline`.
fn find_in_ns(init: i32, cmdline: &[u8]) -> Option<i32> {
    let ns = std::fs::read_link(format!("/proc/{init}/ns/pid")).ok()?;
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let c = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let n = std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok()?;
        (c == cmdline && n == ns).then_some(pid)
    })
}

fn exec_filter_matches_init(d: &TestDaemon, name: &str) -> Vec<Vec<u8>> {
    let init: i32 = d
        .docker_ok(&["inspect", "-f", "{{.State.Pid}}", name])
        .trim()
        .parse()
        .unwrap();
    d.docker_ok(&["exec", "-d", name, "sleep", "4242"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let pid = loop {
        if let Some(p) = find_in_ns(init, b"sleep\x004242\x00") {
            break p;
        }
        assert!(Instant::now() < deadline, "exec'd sleep not found");
        std::thread::sleep(Duration::from_millis(20));
    };
    let want = filters(init);
    assert_eq!(want.len(), 1, "init has one filter");
    assert_eq!(
        filters(pid),
        want,
        "exec's seccomp program differs from init's"
    );
    // SAFETY: a plain kill of the exec'd sleep found above.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    want
}

#[test]
fn exec_runs_under_the_containers_exact_seccomp_program() {
    let d = TestDaemon::start();
    d.import_busybox("busybox");
    d.docker_ok(&["run", "-d", "--name", "dflt", "busybox", "sleep", "300"]);
    let default_prog = exec_filter_matches_init(&d, "dflt");

    // A custom profile: everything allowed but mkdir/mkdirat (EPERM).
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("profile.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64"],
            "syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", profile.display());
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "custom",
        "--security-opt",
        &opt,
        "busybox",
        "sleep",
        "300",
    ]);
    let custom_prog = exec_filter_matches_init(&d, "custom");
    assert_ne!(custom_prog, default_prog);
    let out = d.docker(&["exec", "custom", "mkdir", "/made"]);
    assert_ne!(out.status.code(), Some(0), "{}", d.describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not permitted"),
        "{}",
        d.describe(&out)
    );
    // The default profile's container may.
    d.docker_ok(&["exec", "dflt", "mkdir", "/made"]);
}
