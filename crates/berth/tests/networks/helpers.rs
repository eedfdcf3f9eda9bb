//! Helpers of the network tests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::TestDaemon;

/// An engine with busybox imported as `busybox`.
pub fn engine() -> TestDaemon {
    let d = TestDaemon::start();
    d.import_busybox("busybox");
    d
}

pub fn name(prefix: &str) -> String {
    format!("{prefix}-{}", crate::common::random_hex(6))
}

pub fn dok(d: &TestDaemon, args: &[&str]) -> String {
    d.docker_ok(args)
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Poll `f` every 100 ms until it returns Some, at most `secs` seconds.
pub fn poll<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {secs}s waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// `GET /` over plain HTTP/1.0; the whole response, or None if the connection failed.
pub fn http_get(addr: &str) -> Option<String> {
    let sa: SocketAddr = addr.parse().ok()?;
    let mut s = TcpStream::connect_timeout(&sa, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    (!out.is_empty()).then_some(out)
}

/// busybox httpd serving `hello-berth` on port 80.
pub const HTTPD: &str =
    "mkdir -p /www && echo hello-berth > /www/index.html && exec httpd -f -p 80 -h /www";

pub fn inspect(d: &TestDaemon, what: &str) -> Value {
    let out = dok(d, &["inspect", what]);
    let v: Value = serde_json::from_str(&out).expect("inspect JSON");
    v[0].clone()
}

pub fn net_inspect(d: &TestDaemon, what: &str) -> Value {
    let out = dok(d, &["network", "inspect", what]);
    let v: Value = serde_json::from_str(&out).expect("network inspect JSON");
    v[0].clone()
}

/// Interface names inside a container (from /sys/class/net), sorted.
pub fn ifaces(d: &TestDaemon, flags: &[&str]) -> Vec<String> {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["busybox", "ls", "/sys/class/net"]);
    let mut v: Vec<String> = dok(d, &args).split_whitespace().map(String::from).collect();
    v.sort();
    v
}

/// Files in the engine's netns dir (one per running container with its own network).
pub fn netns_files(d: &TestDaemon) -> Vec<String> {
    std::fs::read_dir(d.exec_root().join("netns"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Host links whose name starts with `veth` and whose master is `bridge`.
pub fn veths_on(bridge: &str) -> Vec<String> {
    let dir = format!("/sys/class/net/{bridge}/brif");
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}
