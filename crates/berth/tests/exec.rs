//! exec through the real docker CLI: exit codes, -e/-u/-w/-i/-d/--privileged, exec inspect, exec
//! into a stopped container, no engine fd leaking into the exec'd process.

mod common;

use std::time::{Duration, Instant};

use common::TestDaemon;

fn engine_with(name: &str) -> TestDaemon {
    let d = TestDaemon::start();
    d.import_busybox("busybox");
    d.docker_ok(&["run", "-d", "--name", name, "busybox", "sleep", "300"]);
    d
}

#[test]
fn exec_exit_codes_env_user_workdir() {
    let d = engine_with("ctr");
    assert_eq!(d.docker_ok(&["exec", "ctr", "echo", "hi"]), "hi\n");
    let out = d.docker(&["exec", "ctr", "sh", "-c", "exit 5"]);
    assert_eq!(out.status.code(), Some(5), "{}", d.describe(&out));
    let out = d.docker(&["exec", "ctr", "sh", "-c", "echo out; echo err >&2"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    assert_eq!(
        d.docker_ok(&["exec", "-e", "FOO=bar", "ctr", "sh", "-c", "echo $FOO"]),
        "bar\n"
    );
    // The container's env is the base.
    assert!(d
        .docker_ok(&["exec", "ctr", "env"])
        .lines()
        .any(|l| l.starts_with("PATH=")));
    assert_eq!(
        d.docker_ok(&["exec", "-u", "1234:55", "ctr", "id", "-u"]),
        "1234\n"
    );
    assert_eq!(
        d.docker_ok(&["exec", "-u", "nobody", "ctr", "id", "-un"]),
        "nobody\n"
    );
    assert_eq!(d.docker_ok(&["exec", "-w", "/etc", "ctr", "pwd"]), "/etc\n");
    // Same pid namespace as the container: its init is pid 1.
    assert!(d
        .docker_ok(&["exec", "ctr", "cat", "/proc/1/cmdline"])
        .starts_with("sleep"));
    // A missing binary fails with Docker's exit code.
    let out = d.docker(&["exec", "ctr", "no-such-binary"]);
    assert_eq!(out.status.code(), Some(127), "{}", d.describe(&out));
}

#[test]
fn exec_stdin_detach_inspect() {
    let d = engine_with("ctr");
    let out = d.docker_stdin(&["exec", "-i", "ctr", "cat"], &b"piped in\n"[..]);
    assert!(out.status.success(), "{}", d.describe(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "piped in\n");
    // Without -i the process gets no stdin.
    assert_eq!(d.docker_ok(&["exec", "ctr", "cat"]), "");

    d.docker_ok(&["exec", "-d", "ctr", "sh", "-c", "echo done > /tmp/marker"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = d.docker(&["exec", "ctr", "cat", "/tmp/marker"]);
        if out.status.success() {
            assert_eq!(String::from_utf8_lossy(&out.stdout), "done\n");
            break;
        }
        assert!(Instant::now() < deadline, "detached exec never ran");
        std::thread::sleep(Duration::from_millis(50));
    }

    // exec inspect through the API.
    let (st, v) = d.api_json(
        "POST",
        "/containers/ctr/exec",
        Some(r#"{"Cmd":["sh","-c","exit 3"],"AttachStdout":true,"User":"nobody"}"#),
    );
    assert_eq!(st, 201, "{v}");
    let id = v["Id"].as_str().unwrap().to_string();
    let (_, v) = d.api_json("GET", &format!("/exec/{id}/json"), None);
    assert_eq!(v["Running"], false);
    assert_eq!(v["ExitCode"], serde_json::Value::Null);
    assert_eq!(v["ProcessConfig"]["entrypoint"], "sh");
    assert_eq!(v["ProcessConfig"]["user"], "nobody");
    let (st, _) = d.api(
        "POST",
        &format!("/exec/{id}/start"),
        Some(r#"{"Detach":true}"#),
    );
    assert_eq!(st, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    let v = loop {
        let (_, v) = d.api_json("GET", &format!("/exec/{id}/json"), None);
        if v["Running"] == false && !v["ExitCode"].is_null() {
            break v;
        }
        assert!(Instant::now() < deadline, "exec never finished: {v}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(v["ExitCode"], 3);
    assert!(v["ContainerID"].as_str().unwrap().len() == 64);
    assert!(v["Pid"].as_i64().unwrap() > 0);
    let (st, v) = d.api_json("POST", &format!("/exec/{id}/start"), Some("{}"));
    assert_eq!(st, 409, "{v}");
    let (st, _) = d.api("GET", "/exec/nope/json", None);
    assert_eq!(st, 404);
}

#[test]
fn exec_into_stopped_container_is_refused() {
    let d = TestDaemon::start();
    d.import_busybox("busybox");
    let id = d.docker_ok(&["create", "--name", "ctr", "busybox", "true"]);
    let err = d.docker_err(&["exec", "ctr", "true"]);
    assert!(
        err.contains(&format!("container {} is not running", id.trim())),
        "{err}"
    );
    let (st, _) = d.api("POST", "/containers/ctr/exec", Some(r#"{"Cmd":["true"]}"#));
    assert_eq!(st, 409);
}

#[test]
fn exec_privileged_and_security_profile() {
    let d = engine_with("ctr");
    let cap_eff = |args: &[&str]| -> u64 {
        let mut a = vec!["exec"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["ctr", "grep", "CapEff", "/proc/self/status"]);
        let out = d.docker_ok(&a);
        let hex = out.split_whitespace().nth(1).unwrap().to_string();
        u64::from_str_radix(&hex, 16).unwrap()
    };
    // Docker's default set (14 caps, no CAP_SYS_ADMIN = bit 21).
    let plain = cap_eff(&[]);
    assert_eq!(plain.count_ones(), 14, "{plain:x}");
    assert_eq!(plain & (1 << 21), 0);
    let privileged = cap_eff(&["--privileged"]);
    assert_ne!(privileged & (1 << 21), 0, "{privileged:x}");
    // seccomp applies to exec'd processes as it does to the container.
    let seccomp = d.docker_ok(&["exec", "ctr", "grep", "Seccomp:", "/proc/self/status"]);
    assert_eq!(seccomp.split_whitespace().nth(1), Some("2"), "{seccomp}");
    let seccomp = d.docker_ok(&[
        "exec",
        "--privileged",
        "ctr",
        "grep",
        "Seccomp:",
        "/proc/self/status",
    ]);
    assert_eq!(seccomp.split_whitespace().nth(1), Some("0"), "{seccomp}");
    // Same cgroup as the container's init.
    assert_eq!(
        d.docker_ok(&["exec", "ctr", "cat", "/proc/self/cgroup"]),
        d.docker_ok(&["exec", "ctr", "cat", "/proc/1/cgroup"])
    );
}

#[test]
fn exec_leaks_no_engine_fd() {
    let d = engine_with("ctr");
    for args in [
        vec!["exec", "ctr", "ls", "/proc/self/fd"],
        vec!["exec", "-i", "ctr", "ls", "/proc/self/fd"],
    ] {
        let out = d.docker_ok(&args);
        let mut fds: Vec<u32> = out.split_whitespace().map(|s| s.parse().unwrap()).collect();
        fds.sort();
        // 0, 1, 2 and the directory fd of the ls itself.
        assert_eq!(fds.len(), 4, "{args:?}: {out}");
        assert_eq!(&fds[..3], &[0, 1, 2], "{out}");
    }
}
