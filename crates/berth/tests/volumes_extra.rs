//! What volumes.rs does not cover: `--device HOST:CONTAINER` (the node, its numbers, the cgroup
//! rule that lets it be written) and a local volume backed by tmpfs (`-o type=tmpfs -o
//! device=tmpfs -o o=size=1m`): mounted at first use, the size honoured, shared by the containers
//! that run together, and unmounted (its data gone) when the last container using it stops, as
//! Docker's local driver does (it counts mounts and unmounts at zero).

mod common;

use common::TestDaemon;

fn daemon() -> TestDaemon {
    let d = TestDaemon::start();
    d.import_busybox("busybox");
    d
}

#[test]
fn device_is_renamed_with_its_numbers_and_writable() {
    let d = daemon();
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "--device",
        "/dev/null:/dev/mynull",
        "busybox",
        "sh",
        "-c",
        // %t:%T are major:minor in hex; /dev/null is 1:3.
        "stat -c '%F %t:%T' /dev/mynull && echo data > /dev/mynull && echo written",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        vec!["character special file 1:3", "written"],
        "{out}"
    );
    // Without --device the node does not exist.
    let o = d.docker(&["run", "--rm", "busybox", "test", "-e", "/dev/mynull"]);
    assert_eq!(o.status.code(), Some(1), "{}", d.describe(&o));
    // A missing host device is refused with Docker's message.
    let err = d.docker_err(&[
        "run",
        "--rm",
        "--device",
        "/dev/does-not-exist:/dev/x",
        "busybox",
        "true",
    ]);
    assert!(err.contains("error gathering device information"), "{err}");
}

fn tmpfs_mounted_on_host(d: &TestDaemon, name: &str) -> bool {
    let data = d.data_root().join("volumes").join(name).join("_data");
    common::mounts_below(&data).iter().any(|m| m == &data)
}

#[test]
fn tmpfs_backed_volume_is_sized_shared_and_gone_after_last_user() {
    let d = daemon();
    d.docker_ok(&[
        "volume",
        "create",
        "-o",
        "type=tmpfs",
        "-o",
        "device=tmpfs",
        "-o",
        "o=size=1m",
        "tv",
    ]);
    let v = d.docker_ok(&["volume", "inspect", "tv"]);
    let v: serde_json::Value = serde_json::from_str(&v).unwrap();
    assert_eq!(v[0]["Options"]["type"], "tmpfs", "{v}");
    assert_eq!(v[0]["Options"]["o"], "size=1m", "{v}");
    // Not mounted before first use.
    assert!(!tmpfs_mounted_on_host(&d, "tv"));

    let a = d.docker_ok(&["run", "-d", "-v", "tv:/data", "busybox", "sleep", "1000"]);
    let a = a.trim();
    assert!(tmpfs_mounted_on_host(&d, "tv"));
    let m = d.docker_ok(&["exec", a, "sh", "-c", "grep ' /data ' /proc/mounts"]);
    assert!(m.starts_with("tmpfs /data tmpfs"), "{m}");
    assert!(m.contains("size=1024k"), "{m}");
    // The size is enforced.
    let o = d.docker(&[
        "exec",
        a,
        "sh",
        "-c",
        "dd if=/dev/zero of=/data/big bs=1k count=2048",
    ]);
    assert_ne!(o.status.code(), Some(0), "{}", d.describe(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("No space left"),
        "{}",
        d.describe(&o)
    );
    d.docker_ok(&["exec", a, "sh", "-c", "rm /data/big; echo kept > /data/f"]);

    // A second container sees the same tmpfs while the first runs.
    let b = d.docker_ok(&["run", "-d", "-v", "tv:/data", "busybox", "sleep", "1000"]);
    let b = b.trim();
    assert_eq!(d.docker_ok(&["exec", b, "cat", "/data/f"]).trim(), "kept");
    // One of two users stops: still mounted, data still there.
    d.docker_ok(&["stop", "-t", "0", a]);
    assert!(tmpfs_mounted_on_host(&d, "tv"));
    assert_eq!(d.docker_ok(&["exec", b, "cat", "/data/f"]).trim(), "kept");
    // The last user stops: unmounted, and the next container starts with an empty tmpfs.
    d.docker_ok(&["stop", "-t", "0", b]);
    assert!(
        !tmpfs_mounted_on_host(&d, "tv"),
        "tmpfs volume still mounted after its last user stopped"
    );
    let o = d.docker(&[
        "run", "--rm", "-v", "tv:/data", "busybox", "ls", "-A", "/data",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", d.describe(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "");
    assert!(!tmpfs_mounted_on_host(&d, "tv"));
    d.docker_ok(&["rm", a, b]);
    assert_eq!(d.docker_ok(&["volume", "rm", "tv"]).trim(), "tv");
    assert!(!d.data_root().join("volumes/tv").exists());
}
