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

/// Everything `docker stats` shows, read from the container's cgroups (v1 or v2).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct DetailedStats {
    pub cpu_total_ns: u64,
    pub cpu_percpu_ns: Vec<u64>,
    pub cpu_user_ns: u64,
    pub cpu_system_ns: u64,
    pub throttle_periods: u64,
    pub throttled_periods: u64,
    pub throttled_time_ns: u64,
    pub memory_usage: u64,
    pub memory_max_usage: u64,
    /// Bytes; 0 when unlimited.
    pub memory_limit: u64,
    /// memory.stat, as the kernel names the keys.
    pub memory_stat: Vec<(String, u64)>,
    pub pids_current: u64,
    /// 0 when unlimited.
    pub pids_limit: u64,
    /// (major, minor, op, bytes): op is Read/Write/Sync/Async/Discard/Total (v1's spelling).
    pub blkio_bytes: Vec<(u64, u64, String, u64)>,
}

/// Nanoseconds per USER_HZ tick (cpuacct.stat is in ticks).
const NS_PER_TICK: u64 = 10_000_000;

fn key_values(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// Full stats of a container's cgroup. An error if its cgroup does not exist.
pub fn detailed_stats(cgroups_path: &str) -> Result<DetailedStats> {
    let mut s = DetailedStats::default();
    if let Some(dir) = v2_dir(cgroups_path) {
        if !dir.is_dir() {
            return Err(RuntimeError::Cgroup(format!("{} not found", dir.display())));
        }
        let cpu = std::fs::read_to_string(dir.join("cpu.stat")).unwrap_or_default();
        let us = |k: &str| keyed(&cpu, k).unwrap_or(0).saturating_mul(1000);
        s.cpu_total_ns = us("usage_usec");
        s.cpu_user_ns = us("user_usec");
        s.cpu_system_ns = us("system_usec");
        s.throttle_periods = keyed(&cpu, "nr_periods").unwrap_or(0);
        s.throttled_periods = keyed(&cpu, "nr_throttled").unwrap_or(0);
        s.throttled_time_ns = us("throttled_usec");
        s.memory_usage = read_u64(&dir.join("memory.current")).unwrap_or(0);
        s.memory_max_usage = read_u64(&dir.join("memory.peak")).unwrap_or(0);
        s.memory_limit = read_u64(&dir.join("memory.max")).unwrap_or(0);
        s.memory_stat =
            key_values(&std::fs::read_to_string(dir.join("memory.stat")).unwrap_or_default());
        s.pids_current = read_u64(&dir.join("pids.current")).unwrap_or(0);
        s.pids_limit = read_u64(&dir.join("pids.max")).unwrap_or(0);
        for line in std::fs::read_to_string(dir.join("io.stat"))
            .unwrap_or_default()
            .lines()
        {
            let mut parts = line.split_whitespace();
            let Some((ma, mi)) = parts.next().and_then(|d| d.split_once(':')) else {
                continue;
            };
            let (Ok(ma), Ok(mi)) = (ma.parse::<u64>(), mi.parse::<u64>()) else {
                continue;
            };
            for kv in parts {
                let Some((k, v)) = kv.split_once('=') else {
                    continue;
                };
                let op = match k {
                    "rbytes" => "read",
                    "wbytes" => "write",
                    _ => continue,
                };
                s.blkio_bytes
                    .push((ma, mi, op.into(), v.parse().unwrap_or(0)));
            }
        }
        return Ok(s);
    }
    let hs = hierarchies();
    let mem = v1_dir(&hs, "memory", cgroups_path)
        .filter(|d| d.is_dir())
        .ok_or_else(|| RuntimeError::Cgroup(format!("memory cgroup {cgroups_path} not found")))?;
    s.memory_usage = read_u64(&mem.join("memory.usage_in_bytes")).unwrap_or(0);
    s.memory_max_usage = read_u64(&mem.join("memory.max_usage_in_bytes")).unwrap_or(0);
    let limit = read_u64(&mem.join("memory.limit_in_bytes")).unwrap_or(0);
    s.memory_limit = if limit >= V1_UNLIMITED { 0 } else { limit };
    s.memory_stat =
        key_values(&std::fs::read_to_string(mem.join("memory.stat")).unwrap_or_default());
    if let Some(d) = v1_dir(&hs, "cpuacct", cgroups_path) {
        s.cpu_total_ns = read_u64(&d.join("cpuacct.usage")).unwrap_or(0);
        s.cpu_percpu_ns = std::fs::read_to_string(d.join("cpuacct.usage_percpu"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        let st = std::fs::read_to_string(d.join("cpuacct.stat")).unwrap_or_default();
        s.cpu_user_ns = keyed(&st, "user").unwrap_or(0).saturating_mul(NS_PER_TICK);
        s.cpu_system_ns = keyed(&st, "system")
            .unwrap_or(0)
            .saturating_mul(NS_PER_TICK);
    }
    if let Some(d) = v1_dir(&hs, "cpu", cgroups_path) {
        let st = std::fs::read_to_string(d.join("cpu.stat")).unwrap_or_default();
        s.throttle_periods = keyed(&st, "nr_periods").unwrap_or(0);
        s.throttled_periods = keyed(&st, "nr_throttled").unwrap_or(0);
        s.throttled_time_ns = keyed(&st, "throttled_time").unwrap_or(0);
    }
    match v1_dir(&hs, "pids", cgroups_path) {
        Some(d) => {
            s.pids_current = read_u64(&d.join("pids.current")).unwrap_or(0);
            s.pids_limit = read_u64(&d.join("pids.max")).unwrap_or(0);
        }
        None => s.pids_current = pids(cgroups_path)?.len() as u64,
    }
    if let Some(d) = v1_dir(&hs, "blkio", cgroups_path) {
        let text = std::fs::read_to_string(d.join("blkio.throttle.io_service_bytes_recursive"))
            .or_else(|_| std::fs::read_to_string(d.join("blkio.throttle.io_service_bytes")))
            .unwrap_or_default();
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() != 3 {
                continue;
            }
            let Some((ma, mi)) = f[0].split_once(':') else {
                continue;
            };
            let (Ok(ma), Ok(mi), Ok(v)) = (ma.parse(), mi.parse(), f[2].parse()) else {
                continue;
            };
            s.blkio_bytes.push((ma, mi, f[1].to_string(), v));
        }
    }
    Ok(s)
}

/// Resources `docker update` may change on a live container. `None` leaves a value alone.
#[derive(Debug, Clone, Default)]
pub struct ResourceUpdate {
    /// Bytes; -1 = unlimited.
    pub memory: Option<i64>,
    /// memory+swap bytes; -1 = unlimited.
    pub memory_swap: Option<i64>,
    /// CFS quota and period (µs); quota -1 = unlimited.
    pub cpu_quota: Option<(i64, u64)>,
    pub cpu_shares: Option<u64>,
    /// -1 = unlimited.
    pub pids_limit: Option<i64>,
}

fn write_retry_order(first: (&Path, String), second: (&Path, String)) -> Result<()> {
    // Raising memory above memory+swap (or lowering memory+swap below memory) fails with EINVAL
    // in one order and works in the other.
    if write(first.0, &first.1).is_ok() {
        return write(second.0, &second.1);
    }
    write(second.0, &second.1)?;
    write(first.0, &first.1)
}

/// Write new limits into the container's cgroup (v1 files, or v2 on a unified host).
pub fn update_resources(cgroups_path: &str, u: &ResourceUpdate) -> Result<()> {
    let lim = |v: i64, unlimited: &str| {
        if v < 0 {
            unlimited.to_string()
        } else {
            v.to_string()
        }
    };
    if let Some(dir) = v2_dir(cgroups_path) {
        if !dir.is_dir() {
            return Err(RuntimeError::Cgroup(format!("{} not found", dir.display())));
        }
        if let Some(m) = u.memory {
            write(&dir.join("memory.max"), &lim(m, "max"))?;
        }
        if let Some(sw) = u.memory_swap {
            // v2 limits swap alone: memory+swap minus memory.
            let swap = match (sw, u.memory) {
                (s, _) if s < 0 => "max".to_string(),
                (s, Some(m)) if m > 0 => s.saturating_sub(m).max(0).to_string(),
                (s, _) => s.to_string(),
            };
            write(&dir.join("memory.swap.max"), &swap)?;
        }
        if let Some((q, p)) = u.cpu_quota {
            write(&dir.join("cpu.max"), &format!("{} {p}", lim(q, "max")))?;
        }
        if let Some(sh) = u.cpu_shares {
            // runc's conversion of shares (2..262144) to weight (1..10000).
            let w = 1 + ((sh.clamp(2, 262_144) - 2) * 9999) / 262_142;
            write(&dir.join("cpu.weight"), &w.to_string())?;
        }
        if let Some(p) = u.pids_limit {
            write(&dir.join("pids.max"), &lim(p, "max"))?;
        }
        return Ok(());
    }
    let hs = hierarchies();
    let ctl = |c: &str| {
        v1_dir(&hs, c, cgroups_path)
            .filter(|d| d.is_dir())
            .ok_or_else(|| RuntimeError::Cgroup(format!("{c} cgroup {cgroups_path} not found")))
    };
    if u.memory.is_some() || u.memory_swap.is_some() {
        let mem = ctl("memory")?;
        let limit = mem.join("memory.limit_in_bytes");
        let memsw = mem.join("memory.memsw.limit_in_bytes");
        match (u.memory, u.memory_swap) {
            (Some(m), Some(sw)) if memsw.exists() => {
                write_retry_order((&limit, lim(m, "-1")), (&memsw, lim(sw, "-1")))?
            }
            (Some(m), _) => write(&limit, &lim(m, "-1"))?,
            (None, Some(sw)) if memsw.exists() => write(&memsw, &lim(sw, "-1"))?,
            _ => {}
        }
    }
    if let Some((q, p)) = u.cpu_quota {
        let cpu = ctl("cpu")?;
        write(&cpu.join("cpu.cfs_period_us"), &p.to_string())?;
        write(&cpu.join("cpu.cfs_quota_us"), &lim(q, "-1"))?;
    }
    if let Some(sh) = u.cpu_shares {
        write(&ctl("cpu")?.join("cpu.shares"), &sh.to_string())?;
    }
    if let Some(p) = u.pids_limit {
        write(&ctl("pids")?.join("pids.max"), &lim(p, "max"))?;
    }
    Ok(())
}

/// The memory+swap limit now in force (v1 memsw, v2 memory.max + memory.swap.max); `None` when
/// unlimited or not supported.
pub fn memory_swap_limit(cgroups_path: &str) -> Option<u64> {
    if let Some(dir) = v2_dir(cgroups_path) {
        let m = read_u64(&dir.join("memory.max"))?;
        let s = read_u64(&dir.join("memory.swap.max"))?;
        return Some(m.saturating_add(s));
    }
    let mem = v1_dir(&hierarchies(), "memory", cgroups_path)?;
    read_u64(&mem.join("memory.memsw.limit_in_bytes")).filter(|v| *v < V1_UNLIMITED)
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
