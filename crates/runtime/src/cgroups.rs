//! cgroups on v1, v2 and hybrid hosts (this machine: v1 controllers, plus a v2 hierarchy at
//! /sys/fs/cgroup/unified with few controllers). libcontainer creates and configures a container's
//! cgroups from the spec; the engine uses this module to freeze/thaw, list processes, read stats,
//! tell whether the OOM killer struck, and remove what a container left.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::{Result, RuntimeError};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// How long freeze/thaw and rmdir of a busy cgroup are retried.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);
const POLL_INTERVAL: Duration = Duration::from_millis(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupMode {
    /// Only cgroup v1 controllers (possibly with a named systemd hierarchy).
    Legacy,
    /// v1 controllers plus a v2 hierarchy at /sys/fs/cgroup/unified.
    Hybrid,
    /// Pure cgroup v2 at /sys/fs/cgroup.
    Unified,
}

fn is_cgroup2(path: &str) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        .unwrap_or(false)
}

pub fn mode() -> CgroupMode {
    if is_cgroup2(CGROUP_ROOT) {
        CgroupMode::Unified
    } else if is_cgroup2("/sys/fs/cgroup/unified") {
        CgroupMode::Hybrid
    } else {
        CgroupMode::Legacy
    }
}

/// The `linux.cgroupsPath` berth gives a container: `/berth/<id>` (a path, as with cgroupfs in
/// Docker: `/docker/<id>`). The prefix can be changed by the engine for test isolation.
pub fn cgroups_path(parent: &str, id: &str) -> String {
    format!("/{}/{}", parent.trim_matches('/'), id)
}

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone)]
struct Hierarchy {
    mount: PathBuf,
    /// v1 controllers (and `name=...`); empty for v2.
    controllers: Vec<String>,
    v2: bool,
}

/// Undo mountinfo's octal escapes (`\040` for a space, ...).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let digits = std::str::from_utf8(&b[i + 1..i + 4]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(digits, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_mountinfo(text: &str) -> Vec<Hierarchy> {
    let mut out: Vec<Hierarchy> = Vec::new();
    for line in text.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        if pre.len() < 5 || post.len() < 3 {
            continue;
        }
        let mount = PathBuf::from(unescape(pre[4]));
        let hierarchy = match post[0] {
            "cgroup2" => Hierarchy {
                mount,
                controllers: Vec::new(),
                v2: true,
            },
            "cgroup" => {
                let controllers: Vec<String> = post[2]
                    .split(',')
                    .filter(|o| !matches!(*o, "rw" | "ro") && !o.starts_with("release_agent"))
                    .filter(|o| !matches!(*o, "clone_children" | "noprefix" | "xattr"))
                    .map(str::to_string)
                    .collect();
                Hierarchy {
                    mount,
                    controllers,
                    v2: false,
                }
            }
            _ => continue,
        };
        // The same hierarchy can be mounted more than once: keep the first.
        if !out
            .iter()
            .any(|h| h.v2 == hierarchy.v2 && h.controllers == hierarchy.controllers)
        {
            out.push(hierarchy);
        }
    }
    out
}

fn hierarchies() -> Vec<Hierarchy> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| parse_mountinfo(&t))
        .unwrap_or_default()
}

fn join(mount: &Path, cgroups_path: &str) -> PathBuf {
    mount.join(cgroups_path.trim_start_matches('/'))
}

/// The container's directory in the v1 hierarchy that has `controller`.
fn v1_dir(hs: &[Hierarchy], controller: &str, cgroups_path: &str) -> Option<PathBuf> {
    hs.iter()
        .find(|h| !h.v2 && h.controllers.iter().any(|c| c == controller))
        .map(|h| join(&h.mount, cgroups_path))
}

/// The container's directory in the v2 hierarchy (only on a unified host: on hybrid hosts the
/// controllers are in v1).
fn v2_dir(cgroups_path: &str) -> Option<PathBuf> {
    (mode() == CgroupMode::Unified).then(|| join(Path::new(CGROUP_ROOT), cgroups_path))
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> RuntimeError {
    let context = context.into();
    move |source| RuntimeError::Io { context, source }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(io_err(format!("reading {}", path.display())))
}

fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(io_err(format!("writing {}", path.display())))
}

/// Poll `done` until true or timeout; `retry` runs at each attempt (to re-request a state).
fn poll_until(
    what: &str,
    mut retry: impl FnMut() -> Result<()>,
    mut done: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let start = Instant::now();
    loop {
        if done()? {
            return Ok(());
        }
        if start.elapsed() > SETTLE_TIMEOUT {
            return Err(RuntimeError::Cgroup(format!("timed out: {what}")));
        }
        std::thread::sleep(POLL_INTERVAL);
        retry()?;
    }
}

fn set_frozen(cgroups_path: &str, frozen: bool) -> Result<()> {
    if let Some(dir) = v2_dir(cgroups_path) {
        let file = dir.join("cgroup.freeze");
        let events = dir.join("cgroup.events");
        let value = if frozen { "1" } else { "0" };
        let want = if frozen { "frozen 1" } else { "frozen 0" };
        write(&file, value)?;
        return poll_until(
            &format!("{} {want}", events.display()),
            || Ok(()),
            || Ok(read(&events)?.lines().any(|l| l.trim() == want)),
        );
    }
    let dir = v1_dir(&hierarchies(), "freezer", cgroups_path)
        .ok_or_else(|| RuntimeError::Cgroup("the freezer controller is not mounted".into()))?;
    let state = dir.join("freezer.state");
    let want = if frozen { "FROZEN" } else { "THAWED" };
    write(&state, want)?;
    let result = poll_until(
        &format!("{} {want}", state.display()),
        // A v1 freeze can stay FREEZING when tasks were forking: ask again.
        || write(&state, want),
        || Ok(read(&state)?.trim() == want),
    );
    if result.is_err() && frozen {
        let _ = write(&state, "THAWED");
    }
    result
}

/// Freeze (pause) every process of the cgroup. Returns once frozen.
pub fn freeze(cgroups_path: &str) -> Result<()> {
    set_frozen(cgroups_path, true)
}

pub fn thaw(cgroups_path: &str) -> Result<()> {
    set_frozen(cgroups_path, false)
}

/// Directory holding the process lists: v2, else the pids, memory, cpu or freezer controller.
fn procs_dir(cgroups_path: &str) -> Option<PathBuf> {
    if let Some(d) = v2_dir(cgroups_path) {
        return Some(d);
    }
    let hs = hierarchies();
    ["pids", "memory", "cpu", "freezer"]
        .iter()
        .find_map(|c| v1_dir(&hs, c, cgroups_path))
}

fn collect_procs(dir: &Path, out: &mut Vec<i32>) -> Result<()> {
    let text = match std::fs::read_to_string(dir.join("cgroup.procs")) {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(format!("reading {}/cgroup.procs", dir.display()))(e)),
    };
    out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    for sub in subdirs(dir) {
        collect_procs(&dir.join(sub), out)?;
    }
    Ok(())
}

/// Pids in the cgroup (recursive), from the pids or memory controller (v1) or cgroup.procs (v2).
pub fn pids(cgroups_path: &str) -> Result<Vec<i32>> {
    let mut out = Vec::new();
    if let Some(dir) = procs_dir(cgroups_path) {
        collect_procs(&dir, &mut out)?;
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Value of `key` in a flat-keyed cgroup file ("key value" lines).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Whether the OOM killer killed a process in this cgroup (v1 memory.oom_control `oom_kill`,
/// v2 memory.events `oom_kill`).
pub fn oom_killed(cgroups_path: &str) -> bool {
    let file = match v2_dir(cgroups_path) {
        Some(d) => d.join("memory.events"),
        None => match v1_dir(&hierarchies(), "memory", cgroups_path) {
            Some(d) => d.join("memory.oom_control"),
            None => return false,
        },
    };
    std::fs::read_to_string(file)
        .ok()
        .and_then(|t| keyed(&t, "oom_kill"))
        .is_some_and(|n| n > 0)
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    pub memory_usage: u64,
    /// Bytes; 0 when unlimited.
    pub memory_limit: u64,
    pub cpu_usage_ns: u64,
    pub pids: u64,
}

/// Limits at or above this are v1's "unlimited" (PAGE_COUNTER_MAX in pages).
const V1_UNLIMITED: u64 = 1 << 62;

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

pub fn stats(cgroups_path: &str) -> Result<Stats> {
    if let Some(dir) = v2_dir(cgroups_path) {
        if !dir.is_dir() {
            return Err(RuntimeError::Cgroup(format!("{} not found", dir.display())));
        }
        let cpu = std::fs::read_to_string(dir.join("cpu.stat"))
            .ok()
            .and_then(|t| keyed(&t, "usage_usec"))
            .unwrap_or(0);
        return Ok(Stats {
            memory_usage: read_u64(&dir.join("memory.current")).unwrap_or(0),
            memory_limit: read_u64(&dir.join("memory.max")).unwrap_or(0),
            cpu_usage_ns: cpu.saturating_mul(1000),
            pids: read_u64(&dir.join("pids.current")).unwrap_or(0),
        });
    }
    let hs = hierarchies();
    let mem = v1_dir(&hs, "memory", cgroups_path)
        .filter(|d| d.is_dir())
        .ok_or_else(|| RuntimeError::Cgroup(format!("memory cgroup {cgroups_path} not found")))?;
    let limit = read_u64(&mem.join("memory.limit_in_bytes")).unwrap_or(0);
    let cpu = v1_dir(&hs, "cpuacct", cgroups_path)
        .and_then(|d| read_u64(&d.join("cpuacct.usage")))
        .unwrap_or(0);
    let pids = match v1_dir(&hs, "pids", cgroups_path) {
        Some(d) => read_u64(&d.join("pids.current")).unwrap_or(0),
        None => pids(cgroups_path)?.len() as u64,
    };
    Ok(Stats {
        memory_usage: read_u64(&mem.join("memory.usage_in_bytes")).unwrap_or(0),
        memory_limit: if limit >= V1_UNLIMITED { 0 } else { limit },
        cpu_usage_ns: cpu,
        pids,
    })
}

fn subdirs(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect()
}

/// rmdir `dir` and its sub-cgroups, children first. A missing directory is fine; a busy one
/// (processes still exiting) is retried until [`SETTLE_TIMEOUT`].
fn remove_tree(dir: &Path) -> Result<()> {
    for sub in subdirs(dir) {
        remove_tree(&dir.join(sub))?;
    }
    let start = Instant::now();
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && start.elapsed() < SETTLE_TIMEOUT => {
                std::thread::sleep(POLL_INTERVAL);
            }
            Err(e) => return Err(io_err(format!("removing cgroup {}", dir.display()))(e)),
        }
    }
}

/// Remove the container's cgroup directories in every hierarchy (after killing nothing: they must
/// be empty). Missing directories are fine.
pub fn remove(cgroups_path: &str) -> Result<()> {
    if cgroups_path.trim_matches('/').is_empty() {
        return Err(RuntimeError::InvalidArgument(
            "refusing to remove the root cgroup".into(),
        ));
    }
    let mut first_err = None;
    for h in hierarchies() {
        if let Err(e) = remove_tree(&join(&h.mount, cgroups_path)) {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// Child directory names of `parent` in any hierarchy (to find orphan container cgroups at start).
pub fn children(parent: &str) -> Vec<String> {
    let mut out: Vec<String> = hierarchies()
        .iter()
        .flat_map(|h| subdirs(&join(&h.mount, parent)))
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn mountinfo_parsing() {
        let text = "\
30 24 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
32 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:11 - cgroup cgroup rw,cpu,cpuacct
33 30 0:29 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
34 30 0:29 / /other/sys\\040temd rw - cgroup cgroup rw,xattr,name=systemd
";
        let hs = parse_mountinfo(text);
        assert_eq!(hs.len(), 3);
        assert!(hs[0].v2);
        assert_eq!(hs[1].controllers, vec!["cpu", "cpuacct"]);
        assert_eq!(hs[2].controllers, vec!["name=systemd"]);
        assert_eq!(
            v1_dir(&hs, "cpuacct", "/berth/x"),
            Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/berth/x"))
        );
        assert_eq!(unescape("a\\040b"), "a b");
    }

    #[test]
    fn keyed_values() {
        let t = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(keyed(t, "oom_kill"), Some(3));
        assert_eq!(keyed(t, "missing"), None);
    }

    #[test]
    fn path_helper() {
        assert_eq!(cgroups_path("/berth/", "abc"), "/berth/abc");
        assert_eq!(cgroups_path("berth", "abc"), "/berth/abc");
    }

    fn unique_parent() -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        format!("berth-test-{}-{nanos}", std::process::id())
    }

    /// A real cgroup with a real process: pids, freeze/thaw, stats, children, remove.
    #[test]
    fn real_cgroup_lifecycle() {
        let parent = unique_parent();
        let path = cgroups_path(&parent, "x");
        let m = mode();
        let hs = hierarchies();
        // Where the process goes: v2 dir, or these v1 controllers.
        let dirs: Vec<PathBuf> = if m == CgroupMode::Unified {
            vec![join(Path::new(CGROUP_ROOT), &path)]
        } else {
            ["pids", "freezer", "memory", "cpuacct"]
                .iter()
                .filter_map(|c| v1_dir(&hs, c, &path))
                .collect()
        };
        assert!(!dirs.is_empty());
        for d in &dirs {
            std::fs::create_dir_all(d).unwrap();
        }
        let mut child = Command::new("sleep")
            .arg("300")
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let result = std::panic::catch_unwind(|| {
            for d in &dirs {
                std::fs::write(d.join("cgroup.procs"), pid.to_string()).unwrap();
            }
            assert_eq!(pids(&path).unwrap(), vec![pid]);
            // Recursive listing from the parent.
            assert_eq!(pids(&format!("/{parent}")).unwrap(), vec![pid]);
            assert_eq!(children(&parent), vec!["x".to_string()]);

            freeze(&path).unwrap();
            if m == CgroupMode::Unified {
                let ev = read(&dirs[0].join("cgroup.events")).unwrap();
                assert!(ev.contains("frozen 1"), "{ev}");
            } else {
                let fz = v1_dir(&hs, "freezer", &path).unwrap();
                assert_eq!(read(&fz.join("freezer.state")).unwrap().trim(), "FROZEN");
            }
            thaw(&path).unwrap();
            if m != CgroupMode::Unified {
                let fz = v1_dir(&hs, "freezer", &path).unwrap();
                assert_eq!(read(&fz.join("freezer.state")).unwrap().trim(), "THAWED");
            }
            let st = stats(&path).unwrap();
            assert_eq!(st.pids, 1);
            // v1 does not move memory charges with the task, so only the limit is checked.
            assert_eq!(st.memory_limit, 0);
            assert!(!oom_killed(&path));
            // A busy cgroup is not removed (rmdir fails with EBUSY after the retry window would
            // be too slow for a test, so only check it still has the process).
            assert_eq!(pids(&path).unwrap().len(), 1);
        });
        let _ = child.kill();
        let _ = child.wait();
        let removed = remove(&path).and_then(|()| remove(&format!("/{parent}")));
        if let Err(e) = result {
            std::panic::resume_unwind(e);
        }
        removed.unwrap();
        for d in &dirs {
            assert!(!d.exists(), "{} still exists", d.display());
            assert!(!d.parent().unwrap().exists());
        }
        assert!(children(&parent).is_empty());
        assert!(pids(&path).unwrap().is_empty());
    }

    #[test]
    fn remove_missing_is_ok_and_root_refused() {
        remove(&format!("/{}/none", unique_parent())).unwrap();
        assert!(remove("/").is_err());
    }
}
