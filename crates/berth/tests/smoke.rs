//! Smoke tests: the real docker CLI against a private berth engine. The `harness_*` tests check
//! the harness itself and need no engine.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::TestDaemon;

#[test]
fn docker_version_shows_server() {
    let d = TestDaemon::start();
    let out = d.docker_ok(&["version"]);
    assert!(out.contains("Server:"), "no Server section in:\n{out}");
    assert!(out.contains("API version:"), "no API version in:\n{out}");
}

#[test]
fn docker_info() {
    let d = TestDaemon::start();
    let out = d.docker_ok(&["info"]);
    assert!(out.contains("Server:"), "no Server section in:\n{out}");
    assert!(out.contains("Containers:"), "no container count in:\n{out}");
}

#[test]
fn api_ping() {
    let d = TestDaemon::start();
    let (status, body) = d.api("GET", "/_ping", None);
    assert_eq!(status, 200);
    assert_eq!(body, "OK");
    let (status, v) = d.api_json("GET", "/v1.47/version", None);
    assert_eq!(status, 200);
    assert!(v["ApiVersion"].is_string(), "no ApiVersion in {v}");
}

#[test]
fn run_hello_world() {
    let d = TestDaemon::start();
    let out = d.docker_ok(&["run", "--rm", "hello-world"]);
    assert!(
        out.contains("Hello from berth!"),
        "unexpected output:\n{out}"
    );
}

#[test]
fn run_busybox_echo() {
    let d = TestDaemon::start();
    d.import_busybox("busybox");
    let out = d.docker_ok(&["run", "--rm", "busybox", "echo", "hi"]);
    assert_eq!(out, "hi\n");
}

#[test]
fn run_exit_code_propagates() {
    let d = TestDaemon::start();
    d.import_busybox("busybox");
    let out = d.docker(&["run", "--rm", "busybox", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", d.describe(&out));
}

// ---- the harness itself ----

#[test]
fn harness_busybox_tar() {
    let path = common::busybox_rootfs_tar();
    assert!(common::is_static_elf(Path::new("/bin/busybox")));
    let mut ar = tar::Archive::new(fs::File::open(&path).expect("open tar"));
    let mut seen = std::collections::HashMap::new();
    for e in ar.entries().expect("entries") {
        let e = e.expect("entry");
        let name = e.path().expect("path").to_string_lossy().into_owned();
        let link = e
            .link_name()
            .expect("link")
            .map(|l| l.to_string_lossy().into_owned());
        seen.insert(
            name,
            (
                e.header().entry_type(),
                e.header().mode().expect("mode"),
                link,
            ),
        );
    }
    assert_eq!(seen["bin/busybox"].0, tar::EntryType::Regular);
    for applet in ["sh", "echo", "cat", "ls", "sleep"] {
        let (ty, _, link) = &seen[&format!("bin/{applet}")];
        assert_eq!(*ty, tar::EntryType::Symlink, "{applet}");
        assert_eq!(link.as_deref(), Some("busybox"), "{applet}");
    }
    assert_eq!(seen["tmp/"].1, 0o1777);
    for p in [
        "etc/passwd",
        "etc/group",
        "proc/",
        "sys/",
        "dev/",
        "root/",
        "var/",
    ] {
        assert!(seen.contains_key(p), "{p} missing");
    }
    // Built once per process: the same path again.
    assert_eq!(common::busybox_rootfs_tar(), path);
}

#[test]
fn harness_http_parsing() {
    let r = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOKjunk";
    assert_eq!(
        common::parse_http_response(r).unwrap(),
        (200, b"OK".to_vec())
    );
    let r = b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
    assert_eq!(
        common::parse_http_response(r).unwrap(),
        (404, b"abcde".to_vec())
    );
    assert!(common::parse_http_response(b"HTTP/1.1 200").is_err());
}

/// The Drop cleanup: processes in the test cgroup die, the cgroups and mounts go away.
#[test]
fn harness_cleanup_cgroups_and_mounts() {
    let parent = format!("berth-test-{}", common::random_hex(8));
    let cg = Path::new("/sys/fs/cgroup/pids").join(&parent).join("leaf");
    fs::create_dir_all(&cg).expect("create cgroup (needs root and cgroup v1 pids)");
    let mut child = Command::new("sleep").arg("1000").spawn().expect("sleep");
    fs::write(cg.join("cgroup.procs"), child.id().to_string()).expect("join cgroup");

    let base = std::env::temp_dir().join(format!("berth-harness-{}", common::random_hex(8)));
    let inner = base.join("a/b");
    fs::create_dir_all(&inner).expect("mkdir");
    for m in [&base.join("a"), &inner] {
        fs::create_dir_all(m).expect("mkdir");
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "tmpfs"])
            .arg(m)
            .status()
            .unwrap();
        assert!(st.success());
        fs::create_dir_all(m.join("b")).expect("mkdir");
    }
    assert_eq!(common::mounts_below(&base).len(), 2);

    common::cleanup_cgroups(&parent);
    common::unmount_below(&base);

    let deadline = Instant::now() + Duration::from_secs(5);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "process in the cgroup survived");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!cg.parent().unwrap().exists(), "cgroup dir left");
    assert!(common::mounts_below(&base).is_empty(), "mounts left");
    fs::remove_dir_all(&base).unwrap();
}

#[test]
fn harness_http_over_unix_socket() {
    use std::io::{BufRead, BufReader, Write};
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("s.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let server = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut r = BufReader::new(conn.try_clone().unwrap());
        let mut request = String::new();
        let mut len = 0;
        loop {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
            request.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; len];
        std::io::Read::read_exact(&mut r, &mut body).unwrap();
        let mut w = conn;
        w.write_all(
            b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        )
        .unwrap();
        (request, body)
    });
    let (status, body) = common::http_request(
        &sock,
        "POST",
        "/containers/create",
        Some(b"{\"Image\":\"x\"}"),
        "application/json",
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!((status, body), (201, b"{}".to_vec()));
    let (request, body) = server.join().unwrap();
    assert!(
        request.starts_with("POST /containers/create HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(
        request.contains("Content-Type: application/json\r\n"),
        "{request}"
    );
    assert_eq!(body, b"{\"Image\":\"x\"}");
}

#[test]
fn harness_commands_get_stdin_and_time_out() {
    let out = common::run_with_timeout(Command::new("cat"), Some(b"abc"), Duration::from_secs(10));
    assert!(out.status.success());
    assert_eq!(out.stdout, b"abc");
    let t = Instant::now();
    let mut sleep = Command::new("sleep");
    sleep.arg("30");
    let out = common::run_with_timeout(sleep, None, Duration::from_millis(200));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("killed after"));
    assert!(t.elapsed() < Duration::from_secs(10));
}
