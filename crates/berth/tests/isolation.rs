//! Isolation, security defaults and resource limits, through the real docker CLI. Docker's
//! behaviour is the spec: namespaces, default capabilities, seccomp, masked and read-only paths,
//! /dev, the /etc bind mounts, cgroup limits, OOM kills, `-u` resolution (never against host
//! files; see users.rs). Every container started here is removed and its cgroup dirs are checked to
//! be gone.

mod common;
#[path = "isolation/users.rs"]
mod users;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use common::TestDaemon;

// ---- helpers ----

fn daemon() -> TestDaemon {
    let d = TestDaemon::start();
    d.import_busybox("busybox");
    d
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", common::random_hex(8))
}

/// The value of `key:` in a /proc/<pid>/status text.
fn status_field(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
}

/// Every cgroup dir a container could have: `/sys/fs/cgroup/<hierarchy>/<parent>/<id>`.
fn cgroup_dirs(d: &TestDaemon, id: &str) -> Vec<PathBuf> {
    let mut out = vec![Path::new("/sys/fs/cgroup").join(d.cgroup_parent()).join(id)];
    if let Ok(rd) = fs::read_dir("/sys/fs/cgroup") {
        for e in rd.flatten() {
            out.push(e.path().join(d.cgroup_parent()).join(id));
        }
    }
    out
}

/// Poll until no cgroup dir of the container exists (they may take a moment after `rm`).
fn assert_no_cgroups(d: &TestDaemon, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<PathBuf> = cgroup_dirs(d, id)
            .into_iter()
            .filter(|p| p.exists())
            .collect();
        if left.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            panic!("cgroup dirs of {id} left: {left:?}\n{}", d.log_tail(40));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn full_id(d: &TestDaemon, name: &str) -> String {
    let id = d
        .docker_ok(&["inspect", "-f", "{{.Id}}", name])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64, "bad id {id:?}");
    id
}

/// `docker run --name <unique> <flags> <image> <cmd>` (foreground), then `docker rm -f`, and
/// check that no cgroup dir of the container is left. Returns the run's output and the full id.
fn run_image(d: &TestDaemon, flags: &[&str], image: &str, cmd: &[&str]) -> (Output, String) {
    let name = unique("iso");
    let mut args = vec!["run", "--name", name.as_str()];
    args.extend_from_slice(flags);
    args.push(image);
    args.extend_from_slice(cmd);
    let out = d.docker(&args);
    let id = full_id(d, &name);
    d.docker_ok(&["rm", "-f", &name]);
    assert_no_cgroups(d, &id);
    (out, id)
}

fn run_bb(d: &TestDaemon, flags: &[&str], script: &str) -> (Output, String) {
    run_image(d, flags, "busybox", &["sh", "-c", script])
}

/// Like [`run_bb`], panicking unless the command exits 0; returns stdout.
fn run_bb_ok(d: &TestDaemon, flags: &[&str], script: &str) -> String {
    let (out, _) = run_bb(d, flags, script);
    assert!(
        out.status.success(),
        "{flags:?} {script:?}\n{}",
        d.describe(&out)
    );
    stdout(&out)
}

/// Start a detached `sleep` container; returns (name, id).
fn run_detached(d: &TestDaemon, flags: &[&str]) -> (String, String) {
    let name = unique("iso");
    let mut args = vec!["run", "-d", "--name", name.as_str()];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["busybox", "sleep", "1000"]);
    d.docker_ok(&args);
    let id = full_id(d, &name);
    (name, id)
}

fn read_trim(p: &Path) -> String {
    match fs::read_to_string(p) {
        Ok(s) => s.trim().to_string(),
        Err(e) => panic!("read {}: {e}", p.display()),
    }
}

fn ns_inode(link: &str) -> String {
    // "pid:[4026531836]"
    link.trim().to_string()
}

// ---- namespaces ----

#[test]
fn pid_uts_net_ipc_mount_namespaces() {
    let d = daemon();
    // ps writes to a file: in a pipeline busybox's not-yet-exec'd applets show up too.
    let script =
        "echo pid=$$; ps -o pid,comm > /tmp/ps; tail -n +2 /tmp/ps; echo host=$(hostname); \
                  echo env=$HOSTNAME; echo file=$(cat /etc/hostname); \
                  echo net=$(ls /sys/class/net); \
                  tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sed 's/^/dev=/'; \
                  for n in pid mnt uts ipc net; do echo ns=$(readlink /proc/self/ns/$n); done";
    // --network none: a namespace of its own with loopback only (the default bridge adds eth0).
    let (out, id) = run_bb(&d, &["--network", "none"], script);
    assert!(out.status.success(), "{}", d.describe(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.contains(&"pid=1"),
        "the command is not PID 1:\n{text}"
    );
    // ps sees sh (1) and ps itself, nothing of the host.
    let procs: Vec<&str> = lines
        .iter()
        .filter(|l| !l.contains('=') && !l.trim().is_empty())
        .copied()
        .collect();
    assert_eq!(procs.len(), 2, "ps sees other processes:\n{text}");
    assert!(procs[0].trim().starts_with("1 "), "{text}");
    assert!(procs[0].contains("sh"), "{text}");
    assert!(procs[1].trim().ends_with(" ps"), "{text}");
    let short = &id[..12];
    for want in [
        format!("host={short}"),
        format!("env={short}"),
        format!("file={short}"),
        "net=lo".to_string(),
        "dev=lo".to_string(),
    ] {
        assert!(lines.contains(&want.as_str()), "no {want:?} in:\n{text}");
    }
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("dev=")).count(),
        1,
        "/proc/net/dev shows more than lo:\n{text}"
    );
    // Each namespace differs from the host's (the test process's).
    let inside: Vec<&str> = lines.iter().filter_map(|l| l.strip_prefix("ns=")).collect();
    assert_eq!(inside.len(), 5, "{text}");
    for (n, ins) in ["pid", "mnt", "uts", "ipc", "net"].iter().zip(inside) {
        let host = fs::read_link(format!("/proc/self/ns/{n}")).expect("readlink");
        let host = ns_inode(&host.to_string_lossy());
        assert!(ins.starts_with(&format!("{n}:[")), "{ins}");
        assert_ne!(ins, host, "{n} namespace is the host's");
    }
}

#[test]
fn hostname_flag_and_host_network() {
    let d = daemon();
    let out = run_bb_ok(
        &d,
        &["-h", "box-one"],
        "hostname; cat /etc/hostname; echo $HOSTNAME",
    );
    assert_eq!(out, "box-one\nbox-one\nbox-one\n");
    // --network host shares the host's net namespace (and only that).
    let host_net = fs::read_link("/proc/self/ns/net").expect("readlink");
    let host_uts = fs::read_link("/proc/self/ns/uts").expect("readlink");
    let out = run_bb_ok(
        &d,
        &["--network", "host"],
        "readlink /proc/self/ns/net; readlink /proc/self/ns/uts",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], host_net.to_string_lossy(), "{out}");
    assert_ne!(lines[1], host_uts.to_string_lossy(), "{out}");
    // --pid host shares the host's pid namespace; the default is a private one.
    let host_pid = fs::read_link("/proc/self/ns/pid").expect("readlink");
    let out = run_bb_ok(&d, &["--pid", "host"], "readlink /proc/self/ns/pid");
    assert_eq!(out.trim(), host_pid.to_string_lossy(), "{out}");
    let out = run_bb_ok(&d, &[], "readlink /proc/self/ns/pid");
    assert_ne!(out.trim(), host_pid.to_string_lossy(), "{out}");
}

// ---- capabilities ----

#[test]
fn default_capabilities_are_dockers() {
    let d = daemon();
    let out = run_bb_ok(&d, &[], "cat /proc/self/status");
    assert_eq!(status_field(&out, "CapEff"), "00000000a80425fb");
    assert_eq!(status_field(&out, "CapPrm"), "00000000a80425fb");
    assert_eq!(status_field(&out, "CapBnd"), "00000000a80425fb");
    assert_eq!(status_field(&out, "CapInh"), "0000000000000000");
    assert_eq!(status_field(&out, "CapAmb"), "0000000000000000");
    // Without CAP_NET_ADMIN / CAP_SYS_ADMIN these fail even for root.
    let (o, _) = run_bb(&d, &[], "hostname other");
    assert!(!o.status.success(), "sethostname worked without SYS_ADMIN");
}

#[test]
fn cap_drop_all_and_cap_add() {
    let d = daemon();
    let out = run_bb_ok(&d, &["--cap-drop", "ALL"], "cat /proc/self/status");
    assert_eq!(status_field(&out, "CapEff"), "0000000000000000");
    assert_eq!(status_field(&out, "CapBnd"), "0000000000000000");
    // Root without CAP_CHOWN cannot chown.
    let (o, _) = run_bb(&d, &["--cap-drop", "ALL"], "touch /tmp/f && chown 5 /tmp/f");
    assert!(!o.status.success(), "chown worked without caps");
    let (o, _) = run_bb(
        &d,
        &["--cap-drop", "chown"],
        "touch /tmp/f && chown 5 /tmp/f",
    );
    assert!(!o.status.success(), "chown worked after --cap-drop chown");

    let out = run_bb_ok(&d, &["--cap-add", "SYS_ADMIN"], "cat /proc/self/status");
    assert_eq!(status_field(&out, "CapEff"), "00000000a82425fb");
    let out = run_bb_ok(
        &d,
        &[
            "--cap-drop",
            "ALL",
            "--cap-add",
            "kill",
            "--cap-add",
            "CAP_CHOWN",
        ],
        "cat /proc/self/status",
    );
    assert_eq!(status_field(&out, "CapEff"), "0000000000000021");
}

#[test]
fn privileged_gets_all_caps_and_host_devices() {
    let d = daemon();
    let host = fs::read_to_string("/proc/self/status").expect("status");
    let engine_bnd = match d.pid() {
        Some(pid) => status_field(
            &fs::read_to_string(format!("/proc/{pid}/status")).expect("engine status"),
            "CapBnd",
        ),
        None => status_field(&host, "CapBnd"),
    };
    // A host character device that an unprivileged container does not get.
    let extra = ["/dev/kmsg", "/dev/mem", "/dev/loop-control", "/dev/fuse"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let script = "grep -E '^(CapEff|CapBnd|Seccomp):' /proc/self/status; ls /dev";
    let out = run_bb_ok(&d, &["--privileged"], script);
    assert_eq!(status_field(&out, "CapEff"), engine_bnd, "{out}");
    assert_eq!(status_field(&out, "CapBnd"), engine_bnd, "{out}");
    assert_eq!(status_field(&out, "Seccomp"), "0", "{out}");
    let plain = run_bb_ok(&d, &[], "ls /dev");
    if let Some(dev) = extra {
        let name = dev.trim_start_matches("/dev/");
        assert!(
            out.lines().any(|l| l == name),
            "{dev} missing in privileged /dev:\n{out}"
        );
        assert!(
            !plain.lines().any(|l| l == name),
            "{dev} present in unprivileged /dev:\n{plain}"
        );
    }
    // Privileged: mount(2) works, the container's cgroups are writable.
    run_bb_ok(
        &d,
        &["--privileged"],
        "mkdir -p /mnt/t && mount -t tmpfs none /mnt/t && touch /mnt/t/x && \
         mkdir /sys/fs/cgroup/pids/sub && rmdir /sys/fs/cgroup/pids/sub",
    );
}

#[test]
fn unknown_capability_is_rejected() {
    let d = daemon();
    for flag in ["--cap-add", "--cap-drop"] {
        let name = unique("badcap");
        let out = d.docker(&["run", "--name", &name, flag, "FOO", "busybox", "true"]);
        assert_eq!(out.status.code(), Some(125), "{}", d.describe(&out));
        let err = stderr(&out);
        assert!(
            err.contains("unknown capability: \"CAP_FOO\""),
            "unexpected error:\n{err}"
        );
        // Whatever was created is removable and leaves no cgroup.
        let id = d.docker(&["inspect", "-f", "{{.Id}}", &name]);
        if id.status.success() {
            let id = stdout(&id).trim().to_string();
            d.docker_ok(&["rm", "-f", &name]);
            assert_no_cgroups(&d, &id);
        }
    }
}

// ---- seccomp and no-new-privileges ----

#[test]
fn default_seccomp_profile_blocks_syscalls() {
    let d = daemon();
    let out = run_bb_ok(&d, &[], "cat /proc/self/status");
    assert_eq!(status_field(&out, "Seccomp"), "2");
    assert_eq!(status_field(&out, "NoNewPrivs"), "0");
    // unshare(CLONE_NEWUSER) needs no capability: only seccomp refuses it.
    let (o, _) = run_bb(&d, &[], "unshare -U true");
    assert!(!o.status.success(), "unshare -U allowed by default profile");
    let out = run_bb_ok(
        &d,
        &["--security-opt", "seccomp=unconfined"],
        "grep Seccomp: /proc/self/status; unshare -U true && echo unshared",
    );
    assert!(out.contains("Seccomp:\t0"), "{out}");
    assert!(out.contains("unshared"), "{out}");
}

#[test]
fn custom_seccomp_profile_from_file() {
    let d = daemon();
    let profile = d.scratch_dir().join("no-mkdir.json");
    fs::write(
        &profile,
        r#"{"defaultAction":"SCMP_ACT_ALLOW",
            "syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}"#,
    )
    .expect("write profile");
    let opt = format!("seccomp={}", profile.display());
    let (o, _) = run_bb(
        &d,
        &["--security-opt", &opt],
        "grep Seccomp: /proc/self/status; touch /tmp/file && echo touched; mkdir /tmp/dir",
    );
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{}", d.describe(&o));
    assert!(text.contains("Seccomp:\t2"), "{text}");
    assert!(text.contains("touched"), "{text}");
    assert!(
        stderr(&o).contains("Operation not permitted"),
        "{}",
        d.describe(&o)
    );
    // A profile that is not JSON is refused.
    let bad = d.scratch_dir().join("bad.json");
    fs::write(&bad, "{not json").expect("write");
    let out = d.docker(&[
        "run",
        "--rm",
        "--security-opt",
        &format!("seccomp={}", bad.display()),
        "busybox",
        "true",
    ]);
    assert!(!out.status.success(), "{}", d.describe(&out));
}

#[test]
fn no_new_privileges() {
    let d = daemon();
    let out = run_bb_ok(
        &d,
        &["--security-opt", "no-new-privileges"],
        "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status",
    );
    assert_eq!(status_field(&out, "NoNewPrivs"), "1");
    assert_eq!(status_field(&out, "Seccomp"), "2");
    let out = run_bb_ok(
        &d,
        &["--security-opt", "no-new-privileges=true", "-u", "app"],
        "grep NoNewPrivs: /proc/self/status",
    );
    assert_eq!(status_field(&out, "NoNewPrivs"), "1");
}

// ---- filesystem: masked and read-only paths, /dev, /etc files ----

#[test]
fn masked_and_readonly_paths() {
    let d = daemon();
    let script = "if [ -e /proc/kcore ]; then echo kcore=$(wc -c < /proc/kcore); else echo kcore=absent; fi; \
                  echo keys=$(cat /proc/keys | wc -c); \
                  echo timer=$(cat /proc/timer_list | wc -c); \
                  if echo 1 > /proc/sys/kernel/domainname; then echo procsys=rw; else echo procsys=ro; fi; \
                  if echo 1 > /proc/sysrq-trigger; then echo sysrq=rw; else echo sysrq=ro; fi; \
                  if touch /sys/kernel/x 2>/dev/null || echo x > /sys/kernel/uevent_helper; \
                  then echo sys=rw; else echo sys=ro; fi; \
                  if mkdir /sys/fs/cgroup/x; then echo cg=rw; else echo cg=ro; fi; \
                  if mkdir /sys/fs/cgroup/pids/x; then echo cgsub=rw; else echo cgsub=ro; fi; \
                  if echo max > /sys/fs/cgroup/pids/pids.max; then echo pidsmax=rw; else echo pidsmax=ro; fi; \
                  echo limit=$(cat /sys/fs/cgroup/pids/pids.max); \
                  grep -E ' /(proc/sys|sys) ' /proc/mounts";
    // The container's own cgroups are read-only: it cannot lift its limits.
    let out = run_bb_ok(&d, &["--pids-limit", "30"], script);
    let kcore = if Path::new("/proc/kcore").exists() {
        "kcore=0"
    } else {
        "kcore=absent"
    };
    for want in [
        kcore,
        "cgsub=ro",
        "pidsmax=ro",
        "limit=30",
        "keys=0",
        "timer=0",
        "procsys=ro",
        "sysrq=ro",
        "sys=ro",
        "cg=ro",
    ] {
        assert!(out.lines().any(|l| l == want), "no {want} in:\n{out}");
    }
    for l in out
        .lines()
        .filter(|l| l.contains(" /proc/sys ") || l.contains(" /sys "))
    {
        let opts = l.split(' ').nth(3).unwrap_or("");
        assert!(opts.split(',').any(|o| o == "ro"), "not read-only: {l}");
    }
}

#[test]
fn dev_and_etc_mounts() {
    let d = daemon();
    let script = "ls /dev; echo ---; ls /dev/pts; echo ---; grep -E ' /(dev|dev/shm|dev/pts|etc/hosts|etc/hostname|etc/resolv.conf) ' /proc/mounts; \
                  echo ---; echo hi > /dev/null && head -c 4 /dev/zero | wc -c; \
                  head -c 8 /dev/urandom | wc -c; \
                  if echo x > /dev/full; then echo full=ok; else echo full=ENOSPC; fi; \
                  echo data > /dev/shm/f && cat /dev/shm/f";
    let out = run_bb_ok(&d, &[], script);
    let parts: Vec<&str> = out.split("---\n").collect();
    assert_eq!(parts.len(), 4, "{out}");
    let devs: Vec<&str> = parts[0].lines().collect();
    for want in [
        "null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "ptmx", "fd", "stdin",
        "stdout", "stderr", "mqueue",
    ] {
        assert!(devs.contains(&want), "/dev lacks {want}: {devs:?}");
    }
    // Nothing of the host's disks.
    assert!(
        !devs
            .iter()
            .any(|n| n.starts_with("sd") || n.starts_with("nvme") || *n == "mem"),
        "{devs:?}"
    );
    assert!(parts[1].lines().any(|l| l == "ptmx"), "{}", parts[1]);
    let mounts = parts[2];
    let mount_of = |mp: &str| -> Vec<String> {
        mounts
            .lines()
            .find(|l| l.split(' ').nth(1) == Some(mp))
            .unwrap_or_else(|| panic!("{mp} not mounted:\n{mounts}"))
            .split(' ')
            .map(str::to_string)
            .collect()
    };
    let shm = mount_of("/dev/shm");
    assert_eq!(shm[2], "tmpfs", "{shm:?}");
    assert!(shm[3].contains("size=65536k"), "{shm:?}");
    assert!(
        ["nosuid", "nodev", "noexec"]
            .iter()
            .all(|o| shm[3].split(',').any(|x| x == *o)),
        "{shm:?}"
    );
    assert_eq!(mount_of("/dev")[2], "tmpfs");
    assert_eq!(mount_of("/dev/pts")[2], "devpts");
    for f in ["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"] {
        let m = mount_of(f);
        assert_ne!(m[2], "overlay", "{f} is not a bind mount: {m:?}");
    }
    let io: Vec<&str> = parts[3].lines().collect();
    assert_eq!(io, ["4", "8", "full=ENOSPC", "data"], "{}", parts[3]);

    let (o, id) = run_bb(
        &d,
        &[],
        "cat /etc/hosts; echo ---; cat /etc/hostname /etc/resolv.conf",
    );
    assert!(o.status.success(), "{}", d.describe(&o));
    let text = stdout(&o);
    let (hosts, rest) = text.split_once("---\n").expect("separator");
    assert!(
        hosts.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.first() == Some(&"127.0.0.1") && f.contains(&"localhost")
        }),
        "{hosts}"
    );
    let mut rest = rest.lines();
    assert_eq!(rest.next(), Some(&id[..12]));
    let resolv: Vec<&str> = rest.collect();
    assert!(
        resolv.iter().any(|l| l.starts_with("nameserver ")),
        "{resolv:?}"
    );
    assert!(
        !resolv
            .iter()
            .any(|l| l.starts_with("nameserver 127.") || *l == "nameserver ::1"),
        "loopback resolver leaked in: {resolv:?}"
    );
}

#[test]
fn read_only_rootfs() {
    let d = daemon();
    let (o, _) = run_bb(&d, &["--read-only"], "touch /newfile");
    assert!(!o.status.success(), "write to read-only / worked");
    assert!(
        stderr(&o).contains("Read-only file system"),
        "{}",
        d.describe(&o)
    );
    let (o, _) = run_bb(&d, &["--read-only"], "echo x > /tmp/f");
    assert!(!o.status.success(), "write to /tmp of read-only / worked");
    // /dev/shm and /dev stay writable; the /etc files are readable.
    let out = run_bb_ok(
        &d,
        &["--read-only"],
        "echo a > /dev/shm/a && cat /dev/shm/a && cat /etc/hostname > /dev/null && echo ok",
    );
    assert_eq!(out, "a\nok\n");
    let out = run_bb_ok(
        &d,
        &["--read-only"],
        "grep ' / ' /proc/mounts | cut -d' ' -f4",
    );
    assert!(
        out.trim().split(',').any(|o| o == "ro"),
        "root not mounted ro: {out}"
    );
    // Without --read-only the same write works.
    run_bb_ok(&d, &[], "touch /newfile");
}

// ---- resource limits ----

#[test]
fn memory_cpu_and_pids_limits_in_cgroups() {
    let d = daemon();
    let (name, id) = run_detached(
        &d,
        &[
            "--memory",
            "64m",
            "--cpus",
            "1.5",
            "--cpu-shares",
            "512",
            "--pids-limit",
            "20",
        ],
    );
    let cg = |ctl: &str| {
        Path::new("/sys/fs/cgroup")
            .join(ctl)
            .join(d.cgroup_parent())
            .join(&id)
    };
    assert_eq!(
        read_trim(&cg("memory").join("memory.limit_in_bytes")),
        "67108864"
    );
    assert_eq!(read_trim(&cg("cpu").join("cpu.cfs_quota_us")), "150000");
    assert_eq!(read_trim(&cg("cpu").join("cpu.cfs_period_us")), "100000");
    assert_eq!(read_trim(&cg("cpu").join("cpu.shares")), "512");
    assert_eq!(read_trim(&cg("pids").join("pids.max")), "20");
    // The container's process is in these cgroups.
    let pid = d
        .docker_ok(&["inspect", "-f", "{{.State.Pid}}", &name])
        .trim()
        .to_string();
    let procs = read_trim(&cg("memory").join("cgroup.procs"));
    assert!(procs.lines().any(|l| l == pid), "{pid} not in {procs}");
    // The container sees its own limit too (cgroup v1: host cgroup namespace, path visible).
    let inspect = d.docker_ok(&[
        "inspect",
        "-f",
        "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.CpuShares}} {{.HostConfig.PidsLimit}}",
        &name,
    ]);
    assert_eq!(inspect.trim(), "67108864 1500000000 512 20");
    d.docker_ok(&["rm", "-f", &name]);
    assert_no_cgroups(&d, &id);

    // Without limits: unlimited values.
    let (name, id) = run_detached(&d, &[]);
    assert_eq!(read_trim(&cg_of(&d, "pids", &id).join("pids.max")), "max");
    assert_eq!(
        read_trim(&cg_of(&d, "cpu", &id).join("cpu.cfs_quota_us")),
        "-1"
    );
    d.docker_ok(&["rm", "-f", &name]);
    assert_no_cgroups(&d, &id);
}

fn cg_of(d: &TestDaemon, ctl: &str, id: &str) -> PathBuf {
    Path::new("/sys/fs/cgroup")
        .join(ctl)
        .join(d.cgroup_parent())
        .join(id)
}

#[test]
fn pids_limit_stops_fork_bomb_lite() {
    let d = daemon();
    let script = "for i in $(seq 50); do sleep 10 & done; echo all-started";
    let (o, _) = run_bb(&d, &["--pids-limit", "20"], script);
    assert!(!o.status.success(), "50 forks under pids-limit 20 worked");
    assert!(!stdout(&o).contains("all-started"), "{}", d.describe(&o));
    assert!(
        stderr(&o).contains("can't fork"),
        "no fork error: {}",
        d.describe(&o)
    );
    // The same with room for it works.
    let out = run_bb_ok(
        &d,
        &["--pids-limit", "100"],
        &format!("{script}; kill $(jobs -p)"),
    );
    assert!(out.contains("all-started"), "{out}");
}

#[test]
fn oom_kill_exit_137_and_oom_killed() {
    let d = daemon();
    let (o, id) = {
        let name = unique("oom");
        let out = d.docker(&[
            "run",
            "--name",
            &name,
            "--memory",
            "16m",
            "busybox",
            "sh",
            "-c",
            "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived ${#x}",
        ]);
        let id = full_id(&d, &name);
        let st = d.docker_ok(&[
            "inspect",
            "-f",
            "{{.State.OOMKilled}} {{.State.ExitCode}} {{.State.Status}}",
            &name,
        ]);
        assert_eq!(st.trim(), "true 137 exited", "{}", d.describe(&out));
        d.docker_ok(&["rm", &name]);
        (out, id)
    };
    assert_eq!(o.status.code(), Some(137), "{}", d.describe(&o));
    assert!(!stdout(&o).contains("survived"));
    assert_no_cgroups(&d, &id);
    // The same command with enough memory is not OOM-killed.
    let (name, _) = (unique("nooom"), ());
    let out = d.docker(&[
        "run",
        "--name",
        &name,
        "busybox",
        "sh",
        "-c",
        "x=$(head -c 1000000 /dev/zero | tr '\\0' a); echo ${#x}",
    ]);
    assert_eq!(stdout(&out), "1000000\n", "{}", d.describe(&out));
    let st = d.docker_ok(&["inspect", "-f", "{{.State.OOMKilled}}", &name]);
    assert_eq!(st.trim(), "false");
    let id = full_id(&d, &name);
    d.docker_ok(&["rm", &name]);
    assert_no_cgroups(&d, &id);
}

/// Docker checks capability names when the container is created: `docker create` fails and no
/// container is left.
#[test]
fn unknown_capability_refused_at_create() {
    let d = daemon();
    let name = unique("badcap");
    let out = d.docker(&[
        "create",
        "--name",
        &name,
        "--cap-add",
        "FOO",
        "busybox",
        "true",
    ]);
    // `docker create` exits 1 on a daemon error (`run` would exit 125).
    assert_eq!(out.status.code(), Some(1), "{}", d.describe(&out));
    assert!(
        stderr(&out).contains("Error response from daemon: unknown capability: \"CAP_FOO\""),
        "{}",
        d.describe(&out)
    );
    let ps = d.docker_ok(&["ps", "-a", "-q"]);
    assert_eq!(ps.trim(), "", "a container was created");
}

/// `--rm` containers (a clean exit, a failed start, an OOM kill) leave no cgroup dir behind.
#[test]
fn auto_removed_containers_leave_no_cgroups() {
    let d = daemon();
    d.docker_ok(&[
        "run",
        "--rm",
        "--memory",
        "32m",
        "--pids-limit",
        "10",
        "busybox",
        "true",
    ]);
    let out = d.docker(&["run", "--rm", "-u", "nosuchuser", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125), "{}", d.describe(&out));
    let out = d.docker(&[
        "run",
        "--rm",
        "--memory",
        "16m",
        "busybox",
        "sh",
        "-c",
        "x=$(head -c 100000000 /dev/zero | tr '\\0' a)",
    ]);
    assert_eq!(out.status.code(), Some(137), "{}", d.describe(&out));
    // The auto-removal may finish just after the CLI returns: poll.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ps = d.docker_ok(&["ps", "-a", "-q"]);
        let mut left: Vec<PathBuf> = Vec::new();
        if let Ok(rd) = fs::read_dir("/sys/fs/cgroup") {
            for h in rd.flatten() {
                if let Ok(sub) = fs::read_dir(h.path().join(d.cgroup_parent())) {
                    left.extend(
                        sub.flatten()
                            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                            .map(|e| e.path()),
                    );
                }
            }
        }
        if ps.trim().is_empty() && left.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            panic!("left after --rm: containers {ps:?}, cgroups {left:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
