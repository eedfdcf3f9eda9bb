//! Runs a real container from `spec::build` with libcontainer (as the shim does) and checks from
//! inside that Docker's defaults took effect on this host (mounts, devices, caps, seccomp, masked
//! paths, cgroup limits).

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use berth_runtime::cgroups;
use berth_runtime::spec::{self, BindMount, Resources, SeccompMode, SpecInput};
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};

const SCRIPT: &str = r#"
B=/bin/busybox
echo "hostname=$($B hostname)"
for d in null zero full random urandom tty; do [ -c /dev/$d ] && echo "dev=$d"; done
echo x > /dev/null && echo "devnull=ok"
[ -e /dev/ptmx ] && echo "ptmx=ok"
$B grep -E '^(CapEff|CapBnd|CapInh|CapAmb|Seccomp|NoNewPrivs|Groups):' /proc/self/status | $B tr -d '\t' | $B tr -s ' '
[ -c /proc/interrupts ] && echo "interrupts=masked"
echo 1 > /proc/sys/vm/drop_caches 2>/dev/null || echo "procsys=ro"
echo x > /sys/kernel/xx 2>/dev/null || echo "sys=ro"
echo "cgroup=$($B ls /sys/fs/cgroup | $B tr '\n' ' ')"
echo "memlimit=$($B cat /sys/fs/cgroup/memory/memory.limit_in_bytes)"
echo "pidsmax=$($B cat /sys/fs/cgroup/pids/pids.max)"
$B mount | $B grep -q ' /dev/shm type tmpfs' && echo "shm=ok"
$B mount | $B grep -q ' /dev/mqueue type mqueue' && echo "mqueue=ok"
$B mount | $B grep -q ' /dev/pts type devpts' && echo "pts=ok"
echo "hosts=$($B cat /etc/hosts)"
$B unshare -U true 2>/dev/null || echo "unshare=denied"
echo "uid=$($B id -u)"
"#;

/// The tests fork (libcontainer runs in a forked child) while another may be writing its copy of
/// busybox: the forked child would inherit that write fd and the exec of the copy would fail
/// with ETXTBSY. One test at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

fn make_rootfs(root: &Path) {
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/usr/bin/busybox", root.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    std::fs::write(root.join("etc/hosts"), "").unwrap();
}

/// Create, start and wait for the container in a forked (single-threaded) child; returns the
/// container's exit code or a negative number for a libcontainer failure.
fn run_container(id: &str, bundle: &Path, state_root: &Path, out: &Path) -> i32 {
    // SAFETY: the child runs libcontainer single-threaded and leaves with _exit.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            // libcontainer reports details through tracing: keep them for the failure message.
            if let Ok(f) = std::fs::File::create(out.with_extension("trace")) {
                tracing_subscriber::fmt()
                    .with_writer(std::sync::Mutex::new(f))
                    .with_ansi(false)
                    .with_max_level(tracing::Level::WARN)
                    .init();
            }
            let code = (|| -> Result<i32, String> {
                let stdout = std::fs::File::create(out).map_err(|e| e.to_string())?;
                let stderr = stdout.try_clone().map_err(|e| e.to_string())?;
                let stdin = std::fs::File::open("/dev/null").map_err(|e| e.to_string())?;
                let mut c = ContainerBuilder::new(id.to_string(), SyscallType::Linux)
                    .with_root_path(state_root)
                    .map_err(|e| e.to_string())?
                    .with_stdin(OwnedFd::from(stdin))
                    .with_stdout(OwnedFd::from(stdout))
                    .with_stderr(OwnedFd::from(stderr))
                    .as_init(bundle)
                    .with_systemd(false)
                    .with_detach(true)
                    .build()
                    .map_err(|e| format!("build: {e}"))?;
                let pid = c.pid().ok_or("no pid")?;
                c.start().map_err(|e| format!("start: {e}"))?;
                let status = waitpid(pid, None).map_err(|e| e.to_string())?;
                let _ = c.delete(true);
                Ok(match status {
                    WaitStatus::Exited(_, code) => code,
                    _ => -2,
                })
            })();
            let code = code.unwrap_or_else(|e| {
                let _ = std::fs::write(out.with_extension("err"), e);
                -1
            });
            unsafe { libc::_exit(code & 0xff) };
        }
        ForkResult::Parent { child } => match waitpid(child, None).unwrap() {
            WaitStatus::Exited(_, code) => code,
            other => panic!("runner: {other:?}"),
        },
    }
}

fn base_input(rootfs: &Path, hosts: PathBuf, cg: &str) -> SpecInput {
    SpecInput {
        rootfs: rootfs.to_path_buf(),
        readonly_rootfs: false,
        args: vec![
            "/bin/busybox".into(),
            "sh".into(),
            "-c".into(),
            SCRIPT.into(),
        ],
        env: vec!["PATH=/bin".into()],
        cwd: "/".into(),
        uid: 0,
        gid: 0,
        additional_gids: vec![10, 20],
        hostname: "berth-host".into(),
        terminal: false,
        privileged: false,
        cap_add: vec![],
        cap_drop: vec![],
        seccomp: SeccompMode::Default,
        no_new_privileges: false,
        resources: Resources {
            memory: 64 << 20,
            memory_swap: 0,
            nano_cpus: 500_000_000,
            cpu_shares: 0,
            pids_limit: 100,
        },
        cgroups_path: cg.to_string(),
        mounts: vec![BindMount {
            source: hosts,
            destination: "/etc/hosts".into(),
            readonly: true,
        }],
        netns_path: None,
        host_network: false,
        host_pid: false,
    }
}

#[test]
fn default_spec_runs_under_libcontainer() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("bundle");
    let rootfs = bundle.join("rootfs");
    make_rootfs(&rootfs);
    let hosts = tmp.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost berth-test\n").unwrap();

    let id = unique("berth-rt");
    let parent = unique("berth-test");
    let cg = cgroups::cgroups_path(&parent, &id);
    let input = base_input(&rootfs, hosts, &cg);
    let spec = spec::build(&input).unwrap();
    spec.save(bundle.join("config.json")).unwrap();

    let state_root = tmp.path().join("state");
    std::fs::create_dir_all(&state_root).unwrap();
    let out: PathBuf = tmp.path().join("out.txt");
    let code = run_container(&id, &bundle, &state_root, &out);
    let output = std::fs::read_to_string(&out).unwrap_or_default();
    let err = std::fs::read_to_string(out.with_extension("err")).unwrap_or_default()
        + &std::fs::read_to_string(out.with_extension("trace")).unwrap_or_default();
    let _ = cgroups::remove(&cg);
    let _ = cgroups::remove(&format!("/{parent}"));
    assert_eq!(code, 0, "exit {code}\nerr: {err}\noutput:\n{output}");
    eprintln!("{output}");

    let has = |line: &str| output.lines().any(|l| l.trim() == line);
    for want in [
        "hostname=berth-host",
        "dev=null",
        "dev=zero",
        "dev=full",
        "dev=random",
        "dev=urandom",
        "dev=tty",
        "devnull=ok",
        "ptmx=ok",
        "CapEff:00000000a80425fb",
        "CapBnd:00000000a80425fb",
        "CapInh:0000000000000000",
        "CapAmb:0000000000000000",
        "Seccomp:2",
        "NoNewPrivs:0",
        "Groups:10 20",
        "interrupts=masked",
        "procsys=ro",
        "sys=ro",
        "memlimit=67108864",
        "pidsmax=100",
        "shm=ok",
        "mqueue=ok",
        "pts=ok",
        "hosts=127.0.0.1 localhost berth-test",
        "unshare=denied",
        "uid=0",
    ] {
        assert!(has(want), "missing {want:?} in:\n{output}");
    }
    let cgline = output
        .lines()
        .find(|l| l.starts_with("cgroup="))
        .unwrap_or_default();
    for ctrl in ["memory", "pids", "cpu", "freezer"] {
        assert!(cgline.contains(ctrl), "{cgline}");
    }
    // The container's cgroup directories are gone.
    assert!(cgroups::children(&parent).is_empty());
}

const PRIV_SCRIPT: &str = r#"
B=/bin/busybox
$B grep -E '^(CapEff|Seccomp):' /proc/self/status | $B tr -d '\t'
[ -c /proc/interrupts ] || echo "interrupts=visible"
$B mount | $B grep ' /sys type sysfs' | $B grep -q '(rw' && echo "sys=rw"
[ -c /dev/kmsg ] && echo "kmsg=ok"
$B head -c 1 /dev/kmsg >/dev/null 2>&1 && echo "kmsgread=ok"
"#;

#[test]
fn privileged_spec_runs_under_libcontainer() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("bundle");
    let rootfs = bundle.join("rootfs");
    make_rootfs(&rootfs);
    let hosts = tmp.path().join("hosts");
    std::fs::write(&hosts, "").unwrap();
    let id = unique("berth-rtp");
    let parent = unique("berth-test");
    let cg = cgroups::cgroups_path(&parent, &id);
    let mut input = base_input(&rootfs, hosts, &cg);
    input.privileged = true;
    input.args = vec![
        "/bin/busybox".into(),
        "sh".into(),
        "-c".into(),
        PRIV_SCRIPT.into(),
    ];
    spec::build(&input)
        .unwrap()
        .save(bundle.join("config.json"))
        .unwrap();
    let state_root = tmp.path().join("state");
    std::fs::create_dir_all(&state_root).unwrap();
    let out = tmp.path().join("out.txt");
    let code = run_container(&id, &bundle, &state_root, &out);
    let output = std::fs::read_to_string(&out).unwrap_or_default();
    let err = std::fs::read_to_string(out.with_extension("err")).unwrap_or_default()
        + &std::fs::read_to_string(out.with_extension("trace")).unwrap_or_default();
    let _ = cgroups::remove(&cg);
    let _ = cgroups::remove(&format!("/{parent}"));
    assert_eq!(code, 0, "exit {code}\nerr: {err}\noutput:\n{output}");
    eprintln!("{output}");
    let has = |line: &str| output.lines().any(|l| l.trim() == line);
    let mask: u64 = berth_runtime::caps::all_caps()
        .iter()
        .filter_map(|c| berth_runtime::caps::cap_number(c))
        .fold(0, |m, i| m | (1u64 << i));
    for want in [
        format!("CapEff:{mask:016x}"),
        "Seccomp:0".to_string(),
        "interrupts=visible".to_string(),
        "sys=rw".to_string(),
        "kmsg=ok".to_string(),
        "kmsgread=ok".to_string(),
    ] {
        assert!(has(&want), "missing {want:?} in:\n{output}");
    }
}
