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

/// `docker <args>` with a pseudo-terminal on the CLI's side (util-linux `script`), after `stty`
/// gives that terminal `rows`x`cols`. Returns the output with `\r` removed.
fn docker_in_pty(d: &TestDaemon, args: &str, rows: u16, cols: u16) -> (Option<i32>, String) {
    let mut cmd = std::process::Command::new("script");
    cmd.env("DOCKER_HOST", d.host())
        .env("DOCKER_CONFIG", d.scratch_dir())
        .env("DOCKER_CLI_HINTS", "false")
        .arg("-qec")
        .arg(format!(
            "stty rows {rows} cols {cols}; {} {args}",
            common::docker_exe().display()
        ))
        .arg("/dev/null");
    let out = common::run_with_timeout(cmd, None, Duration::from_secs(60));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).replace('\r', ""),
    )
}

#[test]
fn run_and_exec_with_a_pseudo_terminal() {
    let d = TestDaemon::start();
    d.import_busybox("busybox");
    let (code, out) = docker_in_pty(
        &d,
        "run --rm -t busybox sh -c 'tty; stty size; exit 3'",
        22,
        77,
    );
    assert_eq!(code, Some(3), "{out}");
    assert_eq!(out, "/dev/pts/0\n22 77\n");

    d.docker_ok(&["run", "-dt", "--name", "ctr", "busybox", "sleep", "300"]);
    let (code, out) = docker_in_pty(&d, "exec -t ctr sh -c 'tty; stty size'", 33, 91);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(out, "/dev/pts/1\n33 91\n");
    // No engine fd leaks into a terminal exec either: 0-2 and the ls's own.
    let (_, out) = docker_in_pty(&d, "exec -t ctr ls /proc/self/fd", 24, 80);
    let fds: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(fds.len(), 4, "{out}");
    // Without -t there is no terminal.
    let out = d.docker(&["exec", "ctr", "tty"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "not a tty\n");

    // Resize of the container's terminal.
    let (st, body) = d.api("POST", "/containers/ctr/resize?h=40&w=100", None);
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        d.docker_ok(&["exec", "ctr", "stty", "-F", "/dev/pts/0", "size"]),
        "40 100\n"
    );

    // Resize of an exec's terminal while it runs.
    let (st, v) = d.api_json(
        "POST",
        "/containers/ctr/exec",
        Some(
            r#"{"Cmd":["sh","-c","while [ ! -e /tmp/go ]; do sleep 0.05; done; stty size > /tmp/sz"],"Tty":true}"#,
        ),
    );
    assert_eq!(st, 201, "{v}");
    let id = v["Id"].as_str().unwrap().to_string();
    let (st, _) = d.api(
        "POST",
        &format!("/exec/{id}/start"),
        Some(r#"{"Detach":true,"Tty":true}"#),
    );
    assert_eq!(st, 200);
    let (st, body) = d.api("POST", &format!("/exec/{id}/resize?h=12&w=34"), None);
    assert_eq!(st, 200, "{body}");
    d.docker_ok(&["exec", "ctr", "touch", "/tmp/go"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, v) = d.api_json("GET", &format!("/exec/{id}/json"), None);
        if v["Running"] == false && !v["ExitCode"].is_null() {
            assert_eq!(v["ExitCode"], 0, "{v}");
            break;
        }
        assert!(Instant::now() < deadline, "exec never finished: {v}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(d.docker_ok(&["exec", "ctr", "cat", "/tmp/sz"]), "12 34\n");
}

/// A hijacked attach through the API: (stream, bytes after the response head).
fn hijack(d: &TestDaemon, path: &str) -> (std::os::unix::net::UnixStream, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(d.socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: berth\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed before the response head");
        got.extend_from_slice(&buf[..n]);
    }
    let end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&got[..end]).into_owned();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    (s, got[end..].to_vec())
}

/// Read until `want` shows up in `got` (panics after the read timeout).
fn read_until(s: &mut std::os::unix::net::UnixStream, got: &mut Vec<u8>, want: &[u8]) {
    use std::io::Read;
    let mut buf = [0u8; 4096];
    while !got.windows(want.len()).any(|w| w == want) {
        let n = s.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "closed before {:?}: {:?}",
            String::from_utf8_lossy(want),
            String::from_utf8_lossy(got)
        );
        got.extend_from_slice(&buf[..n]);
    }
}

/// Read to EOF (the engine ended the attach).
fn read_to_eof(s: &mut std::os::unix::net::UnixStream) {
    use std::io::Read;
    let mut rest = Vec::new();
    s.read_to_end(&mut rest)
        .expect("the attach should end after the detach keys");
}

#[test]
fn detach_keys_and_attach_back() {
    use std::io::Write;
    let d = TestDaemon::start();
    d.import_busybox("busybox");
    // -i with StdinOnce (as `docker run -i` sets it): detaching must not close the stdin.
    let (st, v) = d.api_json(
        "POST",
        "/containers/create?name=ctr",
        Some(
            r#"{"Image":"busybox","Cmd":["sh","-c","while read l; do echo got:$l; done"],"Tty":true,"OpenStdin":true,"StdinOnce":true,"AttachStdin":true,"AttachStdout":true}"#,
        ),
    );
    assert_eq!(st, 201, "{v}");
    d.docker_ok(&["start", "ctr"]);
    for (word, keys) in [("one", None), ("two", Some("ctrl-x,y"))] {
        let path = match keys {
            None => "/containers/ctr/attach?stream=1&stdin=1&stdout=1".to_string(),
            Some(k) => format!("/containers/ctr/attach?stream=1&stdin=1&stdout=1&detachKeys={k}"),
        };
        let (mut s, mut got) = hijack(&d, &path);
        s.write_all(format!("{word}\n").as_bytes()).unwrap();
        read_until(&mut s, &mut got, format!("got:{word}").as_bytes());
        // A partial sequence is passed on; the full one ends the attach.
        let seq: &[u8] = if keys.is_none() {
            b"\x10\x11"
        } else {
            b"\x18y"
        };
        s.write_all(seq).unwrap();
        read_to_eof(&mut s);
        let v = d.docker_ok(&["inspect", "-f", "{{.State.Running}}", "ctr"]);
        assert_eq!(v, "true\n");
    }

    // The same for an exec with stdin: the process keeps running after the detach.
    let (st, v) = d.api_json(
        "POST",
        "/containers/ctr/exec",
        Some(r#"{"Cmd":["sh","-c","read l; echo x:$l; sleep 300"],"AttachStdin":true,"AttachStdout":true}"#),
    );
    assert_eq!(st, 201, "{v}");
    let id = v["Id"].as_str().unwrap().to_string();
    let (mut s, mut got) = hijack(&d, &format!("/exec/{id}/start"));
    s.write_all(b"hello\n").unwrap();
    read_until(&mut s, &mut got, b"x:hello");
    s.write_all(b"\x10\x11").unwrap();
    read_to_eof(&mut s);
    let (_, v) = d.api_json("GET", &format!("/exec/{id}/json"), None);
    assert_eq!(v["Running"], true, "{v}");
}

#[test]
fn berth_cli_exec() {
    let d = engine_with("ctr");
    let out = d.berth(&["exec", "ctr", "sh", "-c", "echo hi; exit 6"]);
    assert_eq!(out.status.code(), Some(6), "{}", d.describe(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    assert_eq!(
        d.berth_ok(&[
            "exec",
            "-e",
            "X=1",
            "-w",
            "/etc",
            "-u",
            "nobody",
            "ctr",
            "sh",
            "-c",
            "echo $X $(pwd) $(id -un)"
        ]),
        "1 /etc nobody\n"
    );
    let out = d.berth_stdin(&["exec", "-i", "ctr", "cat"], &b"piped\n"[..]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "piped\n",
        "{}",
        d.describe(&out)
    );
    let out = d.berth(&["exec", "ctr", "no-such-binary"]);
    assert_eq!(out.status.code(), Some(127), "{}", d.describe(&out));
    assert_eq!(
        d.berth_ok(&[
            "exec",
            "--privileged",
            "ctr",
            "sh",
            "-c",
            "grep -c . /proc/self/status >/dev/null && echo ok"
        ]),
        "ok\n"
    );
    let err = d.berth(&["exec", "nonexist", "true"]);
    assert!(String::from_utf8_lossy(&err.stderr).contains("No such container: nonexist"));
}
