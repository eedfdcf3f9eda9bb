//! Helpers shared by the container test files (`containers.rs`, `restart_policies.rs`).
#![allow(dead_code)]

use std::fs;
use std::process::Output;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::common::TestDaemon;
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

pub fn engine() -> TestDaemon {
    let d = TestDaemon::start();
    d.import_busybox("busybox");
    d
}

pub fn name(prefix: &str) -> String {
    format!("{prefix}-{}", crate::common::random_hex(8))
}

/// `cmd` split on whitespace, then `tail` as it is (a shell script with spaces).
pub fn argv<'a>(cmd: &'a str, tail: &[&'a str]) -> Vec<&'a str> {
    let mut a: Vec<&str> = cmd.split_whitespace().collect();
    a.extend_from_slice(tail);
    a
}

/// `docker <cmd>` (split on whitespace); panics unless it succeeds; stdout.
pub fn dok(d: &TestDaemon, cmd: &str) -> String {
    d.docker_ok(&argv(cmd, &[]))
}

/// `docker <cmd>` (split on whitespace); panics if it succeeds; stderr.
pub fn derr(d: &TestDaemon, cmd: &str) -> String {
    d.docker_err(&argv(cmd, &[]))
}

/// `docker run <flags> busybox sh -c <script>`; panics unless it succeeds; stdout (trimmed).
pub fn run_sh(d: &TestDaemon, flags: &str, script: &str) -> String {
    let cmd = format!("run {flags} busybox sh -c");
    d.docker_ok(&argv(&cmd, &[script])).trim().to_string()
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Poll `f` until it returns Some, at most `secs` seconds.
pub fn poll<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn inspect(d: &TestDaemon, c: &str) -> Value {
    let (st, v) = d.api_json("GET", &format!("/containers/{c}/json"), None);
    assert_eq!(st, 200, "inspect {c}: {v}");
    v
}

pub fn status(d: &TestDaemon, c: &str) -> String {
    inspect(d, c)["State"]["Status"]
        .as_str()
        .unwrap_or("")
        .into()
}

pub fn wait_status(d: &TestDaemon, c: &str, want: &str) -> Value {
    poll(30, &format!("{c} to be {want}"), || {
        let v = inspect(d, c);
        (v["State"]["Status"] == want).then_some(v)
    })
}

/// The container's log through `docker logs`: stdout then stderr.
pub fn logs(d: &TestDaemon, c: &str) -> String {
    let out = d.docker(&["logs", c]);
    assert!(out.status.success(), "{}", d.describe(&out));
    text(&out.stdout) + &text(&out.stderr)
}

pub fn wait_log(d: &TestDaemon, c: &str, needle: &str) {
    poll(30, &format!("{needle:?} in the logs of {c}"), || {
        logs(d, c).contains(needle).then_some(())
    })
}

pub fn pid_of(d: &TestDaemon, c: &str) -> i32 {
    inspect(d, c)["State"]["Pid"].as_i64().unwrap_or(0) as i32
}

pub fn cmdline(pid: i32) -> Vec<String> {
    let b = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    b.split(|c| *c == 0)
        .filter(|s| !s.is_empty())
        .map(text)
        .collect()
}

/// The process `pid` exists and runs `cmd` (pids may be reused).
pub fn runs(pid: i32, cmd: &[&str]) -> bool {
    pid > 0 && cmdline(pid) == cmd
}

/// `2024-01-02T03:04:05.123Z` → comparable (date-time, nanoseconds).
pub fn ts(s: &str) -> (String, u64) {
    let s = s.trim_end_matches('Z');
    let (main, frac) = s.split_once('.').unwrap_or((s, ""));
    (
        main.to_string(),
        format!("{frac:0<9}")[..9].parse().unwrap_or(0),
    )
}

pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A shell loop that says `ready`, then exits with `code` on signal `sig`.
pub fn trap_script(sig: &str, code: i32) -> String {
    format!("trap 'echo got {sig}; exit {code}' {sig}; echo ready; while true; do sleep 0.1; done")
}

pub fn assert_code(d: &TestDaemon, out: &Output, code: i32) {
    assert_eq!(out.status.code(), Some(code), "{}", d.describe(out));
}

// ---- run ----
