//! Helpers of the build tests: contexts on disk and `docker build` with the classic builder.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use super::common::{self, TestDaemon};

/// Write `files` (path, contents) under a fresh context dir of the test.
pub fn context(d: &TestDaemon, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = d.scratch_dir().join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("context dir");
    for (p, c) in files {
        write(&dir, p, c);
    }
    dir
}

pub fn write(dir: &Path, p: &str, c: &str) {
    let path = dir.join(p);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("mkdir");
    }
    fs::write(&path, c).expect("write");
}

/// `DOCKER_BUILDKIT=0 docker <args>` against the test's engine.
pub fn docker_classic(d: &TestDaemon, args: &[&str]) -> Output {
    let mut cmd = Command::new(common::docker_exe());
    cmd.env("DOCKER_HOST", d.host())
        .env("DOCKER_BUILDKIT", "0")
        .env("DOCKER_CLI_HINTS", "false")
        .env_remove("DOCKER_CONTEXT")
        .env_remove("DOCKER_API_VERSION")
        .args(args);
    common::run_with_timeout(cmd, None, Duration::from_secs(180))
}

/// `docker build` that must succeed; returns stdout.
pub fn build_ok(d: &TestDaemon, args: &[&str]) -> String {
    let mut a = vec!["build"];
    a.extend_from_slice(args);
    let out = docker_classic(d, &a);
    assert!(
        out.status.success(),
        "docker {a:?} failed\n{}",
        d.describe(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `docker build` that must fail; returns stdout + stderr.
pub fn build_err(d: &TestDaemon, args: &[&str]) -> String {
    let mut a = vec!["build"];
    a.extend_from_slice(args);
    let out = docker_classic(d, &a);
    assert!(
        !out.status.success(),
        "docker {a:?} succeeded\n{}",
        d.describe(&out)
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The id printed by "Successfully built <id>".
pub fn built_id(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("Successfully built "))
        .unwrap_or_else(|| panic!("no 'Successfully built' in:\n{out}"))
        .trim()
        .to_string()
}

/// `docker run --rm <image> <cmd...>` → stdout.
pub fn run_out(d: &TestDaemon, image: &str, cmd: &[&str]) -> String {
    let mut a = vec!["run", "--rm", image];
    a.extend_from_slice(cmd);
    d.docker_ok(&a)
}

pub fn inspect(d: &TestDaemon, image: &str) -> serde_json::Value {
    let out = d.docker_ok(&["image", "inspect", image]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("inspect json");
    v[0].clone()
}

/// Count of " ---> Using cache" lines.
pub fn cache_hits(out: &str) -> usize {
    out.lines()
        .filter(|l| l.trim() == "---> Using cache")
        .count()
}
