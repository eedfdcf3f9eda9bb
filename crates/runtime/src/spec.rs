//! A container's configuration → the OCI runtime spec berth hands to libcontainer.
//! Docker's defaults: namespaces pid, mount, uts, ipc, network (new, loopback only) and cgroup;
//! default caps; default seccomp; masked and read-only /proc and /sys paths; /dev (tmpfs) with the
//! standard devices, /dev/pts, /dev/shm (64 MiB), /dev/mqueue; /sys read-only; the
//! per-container /etc/hosts, /etc/hostname, /etc/resolv.conf bind mounts.

use std::collections::HashMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDevice, LinuxDeviceBuilder,
    LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxMemoryBuilder,
    LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder,
    LinuxResourcesBuilder, Mount, MountBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder,
    UserBuilder,
};

use crate::cgroups::{self, CgroupMode};
use crate::{caps, seccomp, Result, RuntimeError};

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
    /// Share the host's pid namespace (`--pid host`).
    pub host_pid: bool,
}

/// Docker's masked paths (moby `oci.DefaultLinuxSpec`).
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// CPU period Docker uses with `--cpus`, in microseconds.
const CPU_PERIOD: u64 = 100_000;

fn oci<T>(r: std::result::Result<T, oci_spec::OciSpecError>) -> Result<T> {
    r.map_err(|e| RuntimeError::InvalidArgument(format!("building OCI spec: {e}")))
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount> {
    oci(MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(strs(options))
        .build())
}

/// Docker's default mounts, then the bind mounts asked for.
fn mounts(input: &SpecInput, mode: CgroupMode) -> Result<Vec<Mount>> {
    let sys_opts: &[&str] = if input.privileged {
        &["nosuid", "noexec", "nodev", "rw"]
    } else {
        &["nosuid", "noexec", "nodev", "ro"]
    };
    let cgroup_opts: &[&str] = if input.privileged {
        &["nosuid", "noexec", "nodev", "relatime", "rw"]
    } else {
        &["nosuid", "noexec", "nodev", "relatime", "ro"]
    };
    let mut out = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount("/sys", "sysfs", "sysfs", sys_opts)?,
        mount("/sys/fs/cgroup", "cgroup", "cgroup", cgroup_opts)?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
    ];
    if !input.privileged && mode != CgroupMode::Unified {
        // libcontainer 0.7 mounts cgroup v1 (a tmpfs plus a bind of each controller's dir of the
        // container) read-write whatever the options say, so root in the container could raise
        // its own limits (pids.max) or make child cgroups. Docker's are read-only: cover the
        // whole tree with a recursively read-only bind of itself (the rootfs path is valid in the
        // container's mount namespace while mounts are set up, before pivot_root).
        let cgroup_tree = input.rootfs.join("sys/fs/cgroup");
        out.push(oci(MountBuilder::default()
            .destination("/sys/fs/cgroup")
            .typ("bind")
            .source(cgroup_tree)
            .options(strs(&["rbind", "rro", "nosuid", "noexec", "nodev"]))
            .build())?);
    }
    for m in &input.mounts {
        let mut opts = vec!["rbind", "rprivate"];
        if m.readonly {
            opts.push("ro");
        }
        out.push(oci(MountBuilder::default()
            .destination(m.destination.as_str())
            .typ("bind")
            .source(m.source.clone())
            .options(strs(&opts))
            .build())?);
    }
    Ok(out)
}

fn namespaces(input: &SpecInput, mode: CgroupMode) -> Result<Vec<LinuxNamespace>> {
    let ns = |t: LinuxNamespaceType| oci(LinuxNamespaceBuilder::default().typ(t).build());
    let mut out = Vec::new();
    if !input.host_pid {
        out.push(ns(LinuxNamespaceType::Pid)?);
    }
    if !input.host_network {
        let mut b = LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::Network);
        if let Some(p) = &input.netns_path {
            b = b.path(p.clone());
        }
        out.push(oci(b.build())?);
    }
    out.push(ns(LinuxNamespaceType::Ipc)?);
    out.push(ns(LinuxNamespaceType::Uts)?);
    out.push(ns(LinuxNamespaceType::Mount)?);
    // Docker's default cgroupns mode is "private" on v2 and "host" on v1/hybrid.
    if mode == CgroupMode::Unified {
        out.push(ns(LinuxNamespaceType::Cgroup)?);
    }
    Ok(out)
}

fn dev_rule(
    allow: bool,
    typ: Option<LinuxDeviceType>,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> Result<LinuxDeviceCgroup> {
    let mut b = LinuxDeviceCgroupBuilder::default()
        .allow(allow)
        .access(access);
    if let Some(t) = typ {
        b = b.typ(t);
    }
    if let Some(m) = major {
        b = b.major(m);
    }
    if let Some(m) = minor {
        b = b.minor(m);
    }
    oci(b.build())
}

/// Device cgroup rules: deny all, then Docker's (runc's) default allow list.
fn device_rules(privileged: bool) -> Result<Vec<LinuxDeviceCgroup>> {
    use LinuxDeviceType::{B, C};
    if privileged {
        return Ok(vec![dev_rule(true, None, None, None, "rwm")?]);
    }
    let mut out = vec![dev_rule(false, None, None, None, "rwm")?];
    out.push(dev_rule(true, Some(C), None, None, "m")?);
    out.push(dev_rule(true, Some(B), None, None, "m")?);
    for (major, minor) in [
        (1, Some(3)),    // null
        (1, Some(5)),    // zero
        (1, Some(7)),    // full
        (1, Some(8)),    // random
        (1, Some(9)),    // urandom
        (5, Some(0)),    // tty
        (5, Some(1)),    // console
        (5, Some(2)),    // ptmx
        (136, None),     // pts/*
        (10, Some(200)), // net/tun
    ] {
        out.push(dev_rule(true, Some(C), Some(major), minor, "rwm")?);
    }
    Ok(out)
}

/// Host devices for a privileged container (as Docker does), skipping the directories the
/// container gets its own instance of.
fn host_devices(dir: &Path, out: &mut Vec<LinuxDevice>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let ft = meta.file_type();
        if ft.is_dir() {
            let name = e.file_name();
            if !matches!(
                name.to_str(),
                Some("pts" | "shm" | "fd" | "mqueue" | ".lxc" | ".lxd-mounts" | ".udev")
            ) {
                host_devices(&path, out);
            }
            continue;
        }
        if path == Path::new("/dev/console") {
            continue;
        }
        let typ = if ft.is_char_device() {
            LinuxDeviceType::C
        } else if ft.is_block_device() {
            LinuxDeviceType::B
        } else {
            continue;
        };
        let rdev = meta.rdev();
        let dev = LinuxDeviceBuilder::default()
            .path(path)
            .typ(typ)
            .major(libc::major(rdev) as i64)
            .minor(libc::minor(rdev) as i64)
            .file_mode(meta.mode() & 0o7777)
            .uid(meta.uid())
            .gid(meta.gid())
            .build();
        if let Ok(d) = dev {
            out.push(d);
        }
    }
}

/// Whether the memory controller can limit swap (Docker drops the swap limit otherwise).
fn swap_limit_supported(mode: CgroupMode) -> bool {
    match mode {
        CgroupMode::Unified => true,
        _ => Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists(),
    }
}

fn resources(
    r: &Resources,
    privileged: bool,
    mode: CgroupMode,
) -> Result<oci_spec::runtime::LinuxResources> {
    let mut b = LinuxResourcesBuilder::default().devices(device_rules(privileged)?);
    if r.memory > 0 {
        let mut m = LinuxMemoryBuilder::default().limit(r.memory);
        if swap_limit_supported(mode) {
            let swap = match r.memory_swap {
                0 => r.memory.saturating_mul(2),
                s => s,
            };
            m = m.swap(swap);
        }
        b = b.memory(oci(m.build())?);
    }
    if r.nano_cpus > 0 || r.cpu_shares > 0 {
        let mut c = LinuxCpuBuilder::default();
        if r.nano_cpus > 0 {
            let quota = (r.nano_cpus as i128 * CPU_PERIOD as i128 / 1_000_000_000) as i64;
            c = c.period(CPU_PERIOD).quota(quota.max(1000));
        }
        if r.cpu_shares > 0 {
            c = c.shares(r.cpu_shares);
        }
        b = b.cpu(oci(c.build())?);
    }
    if r.pids_limit > 0 {
        b = b.pids(oci(LinuxPidsBuilder::default()
            .limit(r.pids_limit)
            .build())?);
    }
    oci(b.build())
}

/// Build the spec. Fails on invalid input (unknown capability, bad seccomp profile).
pub fn build(input: &SpecInput) -> Result<Spec> {
    build_with_mode(input, cgroups::mode())
}

/// [`build`] for a given cgroup setup (tests build specs for other hosts).
pub fn build_with_mode(input: &SpecInput, mode: CgroupMode) -> Result<Spec> {
    let cap_names = caps::effective(input.privileged, &input.cap_add, &input.cap_drop)?;
    let cap_set = caps::to_oci(&cap_names)?;
    let capabilities = oci(LinuxCapabilitiesBuilder::default()
        .bounding(cap_set.clone())
        .effective(cap_set.clone())
        .permitted(cap_set)
        .inheritable(oci_spec::runtime::Capabilities::new())
        .ambient(oci_spec::runtime::Capabilities::new())
        .build())?;

    let user = oci(UserBuilder::default()
        .uid(input.uid)
        .gid(input.gid)
        .additional_gids(input.additional_gids.clone())
        .build())?;
    let cwd = if input.cwd.is_empty() {
        "/"
    } else {
        &input.cwd
    };
    let mut process = oci(ProcessBuilder::default()
        .terminal(input.terminal)
        .user(user)
        .args(input.args.clone())
        .env(input.env.clone())
        .cwd(cwd)
        .capabilities(capabilities)
        .oom_score_adj(0)
        .build())?;
    // oci-spec's default is nofile=1024; Docker sets no rlimits unless asked.
    process.set_rlimits(None);
    // Only `Some(true)` or absent: libcontainer 0.7 treats any `Some` as "no_new_privs set" and
    // then loads seccomp after dropping CAP_SYS_ADMIN, which fails without no_new_privs.
    process.set_no_new_privileges(input.no_new_privileges.then_some(true));

    let seccomp = match (&input.seccomp, input.privileged) {
        (_, true) | (SeccompMode::Unconfined, _) => None,
        (SeccompMode::Default, false) => Some(seccomp::from_docker_profile(
            seccomp::DEFAULT_PROFILE,
            &cap_names,
        )?),
        (SeccompMode::Profile(json), false) => {
            Some(seccomp::from_docker_profile(json, &cap_names)?)
        }
    };

    let (masked, readonly) = if input.privileged {
        (Vec::new(), Vec::new())
    } else {
        (strs(MASKED_PATHS), strs(READONLY_PATHS))
    };

    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces(input, mode)?)
        .masked_paths(masked)
        .readonly_paths(readonly)
        .resources(resources(&input.resources, input.privileged, mode)?)
        .cgroups_path(PathBuf::from(&input.cgroups_path));
    if let Some(s) = seccomp {
        linux = linux.seccomp(s);
    }
    if input.privileged {
        let mut devs = Vec::new();
        host_devices(Path::new("/dev"), &mut devs);
        linux = linux.devices(devs);
    }
    if !input.host_network {
        // Docker's defaults for a container with its own network namespace.
        let sysctl: HashMap<String, String> = [
            ("net.ipv4.ip_unprivileged_port_start", "0"),
            ("net.ipv4.ping_group_range", "0 2147483647"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        linux = linux.sysctl(sysctl);
    }

    let root = oci(RootBuilder::default()
        .path(input.rootfs.clone())
        .readonly(input.readonly_rootfs)
        .build())?;

    oci(SpecBuilder::default()
        .version(oci_spec::runtime::VERSION)
        .root(root)
        .mounts(mounts(input, mode)?)
        .process(process)
        .hostname(input.hostname.as_str())
        .linux(oci(linux.build())?)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::Capability;

    pub(crate) fn input() -> SpecInput {
        SpecInput {
            rootfs: PathBuf::from("/tmp/rootfs"),
            readonly_rootfs: false,
            args: vec!["sh".into(), "-c".into(), "true".into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
            uid: 1000,
            gid: 1000,
            additional_gids: vec![10],
            hostname: "abc123".into(),
            terminal: false,
            privileged: false,
            cap_add: vec![],
            cap_drop: vec![],
            seccomp: SeccompMode::Default,
            no_new_privileges: false,
            resources: Resources::default(),
            cgroups_path: "/berth/abc".into(),
            mounts: vec![BindMount {
                source: PathBuf::from("/tmp/hosts"),
                destination: "/etc/hosts".into(),
                readonly: true,
            }],
            netns_path: None,
            host_network: false,
            host_pid: false,
        }
    }

    fn ns_types(s: &Spec) -> Vec<LinuxNamespaceType> {
        s.linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .map(|n| n.typ())
            .collect()
    }

    #[test]
    fn default_spec() {
        let s = build_with_mode(&input(), CgroupMode::Hybrid).unwrap();
        let p = s.process().as_ref().unwrap();
        assert_eq!(p.args().as_ref().unwrap()[0], "sh");
        assert_eq!(p.user().uid(), 1000);
        assert_eq!(p.user().additional_gids().as_deref(), Some(&[10][..]));
        assert_eq!(p.oom_score_adj(), Some(0));
        assert!(p.rlimits().is_none());
        let c = p.capabilities().as_ref().unwrap();
        let eff = c.effective().as_ref().unwrap();
        assert_eq!(eff.len(), caps::DEFAULT_CAPS.len());
        assert!(eff.contains(&Capability::NetRaw));
        assert_eq!(c.bounding(), c.effective());
        assert_eq!(c.permitted(), c.effective());
        assert!(c.inheritable().as_ref().unwrap().is_empty());
        assert!(c.ambient().as_ref().unwrap().is_empty());

        let dests: Vec<String> = s
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| m.destination().display().to_string())
            .collect();
        assert_eq!(
            dests,
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/sys",
                "/sys/fs/cgroup",
                "/dev/mqueue",
                "/dev/shm",
                "/sys/fs/cgroup",
                "/etc/hosts"
            ]
        );
        // cgroup v1: the whole /sys/fs/cgroup tree again, recursively read-only.
        let cg = &s.mounts().as_ref().unwrap()[7];
        assert_eq!(cg.typ().as_deref(), Some("bind"));
        assert_eq!(
            cg.source().as_deref(),
            Some(Path::new("/tmp/rootfs/sys/fs/cgroup"))
        );
        assert!(cg.options().as_ref().unwrap().contains(&"rro".to_string()));
        let hosts = &s.mounts().as_ref().unwrap()[8];
        assert_eq!(
            hosts.options().as_deref(),
            Some(&strs(&["rbind", "rprivate", "ro"])[..])
        );
        assert_eq!(hosts.typ().as_deref(), Some("bind"));

        use LinuxNamespaceType::*;
        assert_eq!(ns_types(&s), vec![Pid, Network, Ipc, Uts, Mount]);
        let l = s.linux().as_ref().unwrap();
        assert_eq!(l.masked_paths().as_ref().unwrap().len(), MASKED_PATHS.len());
        assert_eq!(l.readonly_paths().as_ref().unwrap().len(), 5);
        assert!(l.seccomp().is_some());
        assert_eq!(l.cgroups_path().as_deref(), Some(Path::new("/berth/abc")));
        let devs = l.resources().as_ref().unwrap().devices().as_ref().unwrap();
        assert!(!devs[0].allow());
        assert_eq!(devs[0].to_string(), "a *:* rwm");
        assert!(devs.iter().any(|d| d.to_string() == "c 136:* rwm"));
        assert_eq!(s.hostname().as_deref(), Some("abc123"));
        assert_eq!(s.root().as_ref().unwrap().path(), Path::new("/tmp/rootfs"));

        // Serializes to the JSON libcontainer reads.
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["linux"]["namespaces"][0]["type"], "pid");
        assert_eq!(
            json["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .len(),
            14
        );
    }

    #[test]
    fn unified_gets_cgroup_namespace_and_netns_path() {
        let mut i = input();
        i.netns_path = Some(PathBuf::from("/run/netns/x"));
        let s = build_with_mode(&i, CgroupMode::Unified).unwrap();
        use LinuxNamespaceType::*;
        assert_eq!(ns_types(&s), vec![Pid, Network, Ipc, Uts, Mount, Cgroup]);
        // v2 honours "ro" on the cgroup mount itself: no extra bind.
        let binds = s.mounts().as_ref().unwrap().iter();
        assert_eq!(
            binds.filter(|m| m.typ().as_deref() == Some("bind")).count(),
            1
        );
        let ns = s.linux().as_ref().unwrap().namespaces().as_ref().unwrap();
        assert_eq!(ns[1].path().as_deref(), Some(Path::new("/run/netns/x")));

        i.host_network = true;
        i.host_pid = true;
        let s = build_with_mode(&i, CgroupMode::Legacy).unwrap();
        assert_eq!(ns_types(&s), vec![Ipc, Uts, Mount]);
        assert!(s.linux().as_ref().unwrap().sysctl().is_none());
    }

    #[test]
    fn privileged_spec() {
        let mut i = input();
        i.privileged = true;
        let s = build_with_mode(&i, CgroupMode::Hybrid).unwrap();
        let l = s.linux().as_ref().unwrap();
        assert!(l.seccomp().is_none());
        assert!(l.masked_paths().as_ref().unwrap().is_empty());
        assert!(l.readonly_paths().as_ref().unwrap().is_empty());
        let devs = l.resources().as_ref().unwrap().devices().as_ref().unwrap();
        assert_eq!(devs.len(), 1);
        assert!(devs[0].allow());
        assert!(l
            .devices()
            .as_ref()
            .unwrap()
            .iter()
            .any(|d| d.path() == Path::new("/dev/null")));
        assert!(!s
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .any(|m| m.typ().as_deref() == Some("bind")
                && m.destination() == Path::new("/sys/fs/cgroup")));
        let sys = &s.mounts().as_ref().unwrap()[3];
        assert!(sys.options().as_ref().unwrap().contains(&"rw".to_string()));
        let caps = s
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .as_ref()
            .unwrap();
        assert_eq!(
            caps.effective().as_ref().unwrap().len(),
            caps::all_caps().len()
        );
    }

    #[test]
    fn seccomp_modes_and_errors() {
        let mut i = input();
        i.seccomp = SeccompMode::Unconfined;
        let s = build_with_mode(&i, CgroupMode::Hybrid).unwrap();
        assert!(s.linux().as_ref().unwrap().seccomp().is_none());
        i.seccomp = SeccompMode::Profile(r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#.into());
        let s = build_with_mode(&i, CgroupMode::Hybrid).unwrap();
        let sc = s.linux().as_ref().unwrap().seccomp().as_ref().unwrap();
        assert_eq!(
            sc.default_action(),
            oci_spec::runtime::LinuxSeccompAction::ScmpActAllow
        );
        i.seccomp = SeccompMode::Profile("nope".into());
        assert!(build_with_mode(&i, CgroupMode::Hybrid).is_err());
        i.seccomp = SeccompMode::Default;
        i.cap_add = vec!["bogus".into()];
        let e = build_with_mode(&i, CgroupMode::Hybrid).unwrap_err();
        assert!(e.to_string().contains("unknown capability: \"CAP_BOGUS\""));
    }

    #[test]
    fn resources_follow_docker() {
        let mut i = input();
        i.resources = Resources {
            memory: 64 << 20,
            memory_swap: 0,
            nano_cpus: 1_500_000_000,
            cpu_shares: 512,
            pids_limit: 100,
        };
        let s = build_with_mode(&i, CgroupMode::Unified).unwrap();
        let r = s.linux().as_ref().unwrap().resources().clone().unwrap();
        let m = r.memory().unwrap();
        assert_eq!(m.limit(), Some(64 << 20));
        assert_eq!(m.swap(), Some(128 << 20));
        let c = r.cpu().clone().unwrap();
        assert_eq!(c.period(), Some(100_000));
        assert_eq!(c.quota(), Some(150_000));
        assert_eq!(c.shares(), Some(512));
        assert_eq!(r.pids().unwrap().limit(), 100);

        i.resources.memory_swap = -1;
        i.resources.pids_limit = -1;
        let s = build_with_mode(&i, CgroupMode::Unified).unwrap();
        let r = s.linux().as_ref().unwrap().resources().clone().unwrap();
        assert_eq!(r.memory().unwrap().swap(), Some(-1));
        assert!(r.pids().is_none());

        let s = build_with_mode(&input(), CgroupMode::Unified).unwrap();
        let r = s.linux().as_ref().unwrap().resources().clone().unwrap();
        assert!(r.memory().is_none() && r.cpu().is_none() && r.pids().is_none());
    }
}
