//! cgroups on v1, v2 and hybrid hosts (this machine: v1 controllers, plus a v2 hierarchy at
//! /sys/fs/cgroup/unified with few controllers). libcontainer creates and configures a container's
//! cgroups from the spec; the engine uses this module to freeze/thaw, list processes, read stats,
//! tell whether the OOM killer struck, and remove what a container left.

use crate::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupMode {
    /// Only cgroup v1 controllers (possibly with a named systemd hierarchy).
    Legacy,
    /// v1 controllers plus a v2 hierarchy at /sys/fs/cgroup/unified.
    Hybrid,
    /// Pure cgroup v2 at /sys/fs/cgroup.
    Unified,
}

pub fn mode() -> CgroupMode {
    todo!()
}

/// The `linux.cgroupsPath` berth gives a container: `/berth/<id>` (a path, as with cgroupfs in
/// Docker: `/docker/<id>`). The prefix can be changed by the engine for test isolation.
pub fn cgroups_path(parent: &str, id: &str) -> String {
    format!("/{}/{}", parent.trim_matches('/'), id)
}

/// Freeze (pause) every process of the cgroup. Returns once frozen.
pub fn freeze(cgroups_path: &str) -> Result<()> {
    todo!("{cgroups_path}")
}

pub fn thaw(cgroups_path: &str) -> Result<()> {
    todo!("{cgroups_path}")
}

/// Pids in the cgroup (recursive), from the pids or memory controller (v1) or cgroup.procs (v2).
pub fn pids(cgroups_path: &str) -> Result<Vec<i32>> {
    todo!("{cgroups_path}")
}

/// Whether the OOM killer killed a process in this cgroup (v1 memory.oom_control `oom_kill`,
/// v2 memory.events `oom_kill`).
pub fn oom_killed(cgroups_path: &str) -> bool {
    let _ = cgroups_path;
    todo!()
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    pub memory_usage: u64,
    pub memory_limit: u64,
    pub cpu_usage_ns: u64,
    pub pids: u64,
}

pub fn stats(cgroups_path: &str) -> Result<Stats> {
    todo!("{cgroups_path}")
}

/// Remove the container's cgroup directories in every hierarchy (after killing nothing: they must
/// be empty). Missing directories are fine.
pub fn remove(cgroups_path: &str) -> Result<()> {
    todo!("{cgroups_path}")
}

/// Child directory names of `parent` in any hierarchy (to find orphan container cgroups at start).
pub fn children(parent: &str) -> Vec<String> {
    let _ = parent;
    todo!()
}
