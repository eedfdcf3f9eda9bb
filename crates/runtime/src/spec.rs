//! A container's configuration → the OCI runtime spec berth hands to libcontainer.
//! Docker's defaults: namespaces pid, mount, uts, ipc, network (new, loopback only) and cgroup;
//! default caps; default seccomp; masked and read-only /proc and /sys paths; /dev (tmpfs) with the
//! standard devices, /dev/pts, /dev/shm (64 MiB), /dev/mqueue; /sys read-only; the
//! per-container /etc/hosts, /etc/hostname, /etc/resolv.conf bind mounts.

use std::path::PathBuf;

use oci_spec::runtime::Spec;

use crate::Result;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeccompMode {
    Default,
    Unconfined,
    /// A profile in Docker's JSON format (the file's content).
    Profile(String),
}

#[derive(Debug, Clone)]
pub struct BindMount {
    pub source: PathBuf,
    pub destination: String,
    pub readonly: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Resources {
    /// Bytes; 0 = unlimited.
    pub memory: i64,
    /// Bytes, memory+swap; 0 = default (Docker: twice memory), -1 = unlimited.
    pub memory_swap: i64,
    /// CPU quota in units of 1e-9 CPUs (Docker's NanoCpus); 0 = unlimited.
    pub nano_cpus: i64,
    pub cpu_shares: u64,
    /// 0 or negative = unlimited.
    pub pids_limit: i64,
}

#[derive(Debug, Clone)]
pub struct SpecInput {
    /// The container's root filesystem (the overlay mount point).
    pub rootfs: PathBuf,
    pub readonly_rootfs: bool,
    pub args: Vec<String>,
    pub env: Vec<String>,
    /// Absolute working directory inside the container ("/" if unset).
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub hostname: String,
    pub terminal: bool,
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub seccomp: SeccompMode,
    pub no_new_privileges: bool,
    pub resources: Resources,
    /// Full cgroups path, e.g. `/berth/<id>`.
    pub cgroups_path: String,
    /// Extra bind mounts (hosts, hostname, resolv.conf, the init binary, ...).
    pub mounts: Vec<BindMount>,
    /// A network namespace to join instead of creating one (a later issue adds networks).
    pub netns_path: Option<PathBuf>,
    /// Use the host's network namespace (`--network host`).
    pub host_network: bool,
}

/// Build the spec. Fails on invalid input (unknown capability, bad seccomp profile).
pub fn build(input: &SpecInput) -> Result<Spec> {
    todo!("{input:?}")
}
