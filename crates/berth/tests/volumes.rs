//! Volumes and mounts through the real docker CLI: named volumes (persistence across containers
//! and engine restarts, copy-up, nocopy), bind mounts, tmpfs, --mount, anonymous volumes from -v
//! and the image's VOLUME, `volume ls/inspect/rm/prune`, and an image whose mount target is a
//! symlink to a host directory.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::TestDaemon;

fn daemon() -> TestDaemon {
    let d = TestDaemon::start();
    d.import_busybox("busybox");
    d
}

fn volume_data(d: &TestDaemon, name: &str) -> PathBuf {
    d.data_root().join("volumes").join(name).join("_data")
}

fn lines(s: &str) -> Vec<String> {
    s.lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn named_volume_persists_and_is_listed_inspected_removed() {
    let d = daemon();
    assert_eq!(
        d.docker_ok(&["volume", "create", "--label", "team=a", "keep"])
            .trim(),
        "keep"
    );
    // Creating an existing name returns it.
    assert_eq!(d.docker_ok(&["volume", "create", "keep"]).trim(), "keep");
    d.docker_ok(&["volume", "create", "other"]);
    d.docker_ok(&[
        "run",
        "--name",
        "w1",
        "-v",
        "keep:/data",
        "busybox",
        "sh",
        "-c",
        "echo hello > /data/f",
    ]);
    d.docker_ok(&["rm", "w1"]);
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "-v",
        "keep:/data",
        "busybox",
        "cat",
        "/data/f",
    ]);
    assert_eq!(out.trim(), "hello");
    assert_eq!(
        fs::read_to_string(volume_data(&d, "keep").join("f")).unwrap(),
        "hello\n"
    );

    // The engine goes away and comes back: the volume and its data are still there.
    d.restart();
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "-v",
        "keep:/data",
        "busybox",
        "cat",
        "/data/f",
    ]);
    assert_eq!(out.trim(), "hello");

    let v = d.docker_ok(&["volume", "inspect", "keep"]);
    let v: serde_json::Value = serde_json::from_str(&v).unwrap();
    assert_eq!(v[0]["Name"], "keep");
    assert_eq!(v[0]["Driver"], "local");
    assert_eq!(v[0]["Scope"], "local");
    assert_eq!(v[0]["Labels"]["team"], "a");
    assert_eq!(
        v[0]["Mountpoint"].as_str().unwrap(),
        volume_data(&d, "keep").to_str().unwrap()
    );
    let err = d.docker_err(&["volume", "inspect", "nope"]);
    assert!(err.contains("no such volume"), "{err}");

    // In use by a (stopped) container: refused with Docker's message, even with -f.
    let id = d.docker_ok(&["create", "-v", "keep:/data", "busybox", "true"]);
    let id = id.trim();
    let ls = |args: &[&str]| {
        let mut a = vec!["volume", "ls", "-q"];
        a.extend_from_slice(args);
        lines(&d.docker_ok(&a))
    };
    assert_eq!(ls(&[]), vec!["keep", "other"]);
    assert_eq!(ls(&["--filter", "dangling=true"]), vec!["other"]);
    assert_eq!(ls(&["--filter", "dangling=false"]), vec!["keep"]);
    assert_eq!(ls(&["--filter", "label=team=a"]), vec!["keep"]);
    assert_eq!(ls(&["--filter", "label=team"]), vec!["keep"]);
    assert_eq!(ls(&["--filter", "name=oth"]), vec!["other"]);
    let (status, body) = d.api("DELETE", "/volumes/keep", None);
    assert_eq!(status, 409, "{body}");
    assert!(
        body.contains(&format!("remove keep: volume is in use - [{id}]")),
        "{body}"
    );
    let err = d.docker_err(&["volume", "rm", "-f", "keep"]);
    assert!(err.contains("volume is in use"), "{err}");
    d.docker_ok(&["rm", id]);
    assert_eq!(d.docker_ok(&["volume", "rm", "keep"]).trim(), "keep");
    assert!(!d.data_root().join("volumes/keep").exists());
    let err = d.docker_err(&["volume", "rm", "keep"]);
    assert!(err.contains("no such volume"), "{err}");
    // Named volumes are not pruned by default (only anonymous ones); --all prunes them.
    d.docker_ok(&["volume", "prune", "-f"]);
    assert_eq!(ls(&[]), vec!["other"]);
    let out = d.docker_ok(&["volume", "prune", "-f", "--all"]);
    assert!(out.contains("other"), "{out}");
    assert!(ls(&[]).is_empty());
    let err = d.docker_err(&["volume", "create", "bad/name"]);
    assert!(err.contains("includes invalid characters"), "{err}");
}

#[test]
fn copy_up_fills_an_empty_volume_unless_nocopy() {
    let d = daemon();
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "-v",
        "etcvol:/etc",
        "busybox",
        "cat",
        "/etc/passwd",
    ]);
    assert!(out.contains("root:"), "{out}");
    let passwd = fs::read_to_string(volume_data(&d, "etcvol").join("passwd")).unwrap();
    assert!(passwd.contains("root:"), "{passwd}");
    // Not copied again into a volume that has content: changes stay.
    d.docker_ok(&[
        "run",
        "--rm",
        "-v",
        "etcvol:/etc",
        "busybox",
        "rm",
        "/etc/passwd",
    ]);
    d.docker_ok(&["run", "--rm", "-v", "etcvol:/etc", "busybox", "true"]);
    assert!(!volume_data(&d, "etcvol").join("passwd").exists());

    let o = d.docker(&[
        "run",
        "--rm",
        "-v",
        "nc:/etc:nocopy",
        "busybox",
        "ls",
        "/etc/passwd",
    ]);
    assert!(!o.status.success(), "{}", d.describe(&o));
    assert!(!volume_data(&d, "nc").join("passwd").exists());
    d.docker_ok(&[
        "run",
        "--rm",
        "--mount",
        "type=volume,src=nc2,dst=/etc,volume-nocopy",
        "busybox",
        "true",
    ]);
    assert!(!volume_data(&d, "nc2").join("passwd").exists());
    d.docker_ok(&[
        "run",
        "--rm",
        "--mount",
        "type=volume,src=c2,dst=/etc",
        "busybox",
        "true",
    ]);
    assert!(volume_data(&d, "c2").join("passwd").exists());
}

#[test]
fn bind_mounts_rw_ro_and_mount_errors() {
    let d = daemon();
    let host = d.scratch_dir().join("bind");
    fs::create_dir_all(&host).unwrap();
    fs::write(host.join("in"), "from-host\n").unwrap();
    let h = host.to_str().unwrap();
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "-v",
        &format!("{h}:/mnt"),
        "busybox",
        "sh",
        "-c",
        "cat /mnt/in && echo from-ctr > /mnt/out",
    ]);
    assert_eq!(out.trim(), "from-host");
    assert_eq!(fs::read_to_string(host.join("out")).unwrap(), "from-ctr\n");

    let o = d.docker(&[
        "run",
        "--rm",
        "-v",
        &format!("{h}:/mnt:ro"),
        "busybox",
        "sh",
        "-c",
        "echo x > /mnt/ro",
    ]);
    assert!(!o.status.success(), "{}", d.describe(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Read-only file system"),
        "{}",
        d.describe(&o)
    );
    assert!(!host.join("ro").exists());
    let o = d.docker(&[
        "run",
        "--rm",
        "--mount",
        &format!("type=bind,src={h},dst=/m,readonly"),
        "busybox",
        "touch",
        "/m/ro2",
    ]);
    assert!(!o.status.success(), "{}", d.describe(&o));
    assert!(!host.join("ro2").exists());
    d.docker_ok(&[
        "run",
        "--rm",
        "--mount",
        &format!("type=bind,source={h},target=/m,bind-propagation=rslave"),
        "busybox",
        "touch",
        "/m/rw",
    ]);
    assert!(host.join("rw").exists());

    // A bind of a single file.
    let file = host.join("in");
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "-v",
        &format!("{}:/etc/motd:ro", file.display()),
        "busybox",
        "cat",
        "/etc/motd",
    ]);
    assert_eq!(out.trim(), "from-host");

    let err = d.docker_err(&[
        "run",
        "--rm",
        "--mount",
        "type=bind,source=/nope-berth,target=/x",
        "busybox",
        "true",
    ]);
    assert!(
        err.contains(
            "invalid mount config for type \"bind\": bind source path does not exist: /nope-berth"
        ),
        "{err}"
    );
    let (status, body) = d.api(
        "POST",
        "/containers/create",
        Some(r#"{"Image":"busybox","HostConfig":{"Binds":["v:/x:bogus"]}}"#),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid mode: bogus"), "{body}");
    let (status, body) = d.api(
        "POST",
        "/containers/create",
        Some(r#"{"Image":"busybox","HostConfig":{"Binds":["va:/x","vb:/x"]}}"#),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("Duplicate mount point: /x"), "{body}");

    // --volumes-from takes another container's mounts.
    d.docker_ok(&[
        "create",
        "--name",
        "src",
        "-v",
        "shared:/shared",
        "busybox",
        "true",
    ]);
    d.docker_ok(&[
        "run",
        "--rm",
        "--volumes-from",
        "src",
        "busybox",
        "sh",
        "-c",
        "echo vf > /shared/x",
    ]);
    assert_eq!(
        fs::read_to_string(volume_data(&d, "shared").join("x")).unwrap(),
        "vf\n"
    );
    // volume-subpath mounts a directory of the volume.
    fs::create_dir_all(volume_data(&d, "shared").join("sub")).unwrap();
    fs::write(volume_data(&d, "shared").join("sub/y"), "sub\n").unwrap();
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "--mount",
        "type=volume,src=shared,dst=/s,volume-subpath=sub",
        "busybox",
        "ls",
        "/s",
    ]);
    assert_eq!(lines(&out), vec!["y"]);
}

#[test]
fn tmpfs_mounts_with_size_and_nothing_left_after() {
    let d = daemon();
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "--tmpfs",
        "/t:size=1m",
        "busybox",
        "sh",
        "-c",
        "grep ' /t ' /proc/mounts",
    ]);
    assert!(out.starts_with("tmpfs /t tmpfs"), "{out}");
    assert!(out.contains("size=1024k"), "{out}");
    assert!(out.contains("noexec"), "{out}");
    // The size is enforced.
    let o = d.docker(&[
        "run",
        "--rm",
        "--tmpfs",
        "/t:size=1m",
        "busybox",
        "dd",
        "if=/dev/zero",
        "of=/t/big",
        "bs=1024",
        "count=2048",
    ]);
    assert!(!o.status.success(), "{}", d.describe(&o));
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "--mount",
        "type=tmpfs,dst=/m,tmpfs-size=2m,tmpfs-mode=1770",
        "busybox",
        "sh",
        "-c",
        "grep ' /m ' /proc/mounts; stat -c %a /m",
    ]);
    assert!(out.contains("size=2048k"), "{out}");
    assert!(out.contains("1770"), "{out}");
    // Each run starts with an empty tmpfs.
    d.docker_ok(&[
        "run",
        "--name",
        "t1",
        "--tmpfs",
        "/t",
        "busybox",
        "sh",
        "-c",
        "ls /t; touch /t/x",
    ]);
    let out = d.docker_ok(&["start", "-a", "t1"]);
    assert_eq!(out.trim(), "");
    let inspect = d.docker_ok(&["inspect", "-f", "{{json .Mounts}}", "t1"]);
    assert!(inspect.contains("\"Type\":\"tmpfs\""), "{inspect}");
    d.docker_ok(&["rm", "t1"]);
    assert!(common::mounts_below(d.data_root())
        .iter()
        .all(|m| !m.ends_with("t")));
}

#[test]
fn anonymous_volumes_from_v_and_image_volume() {
    let d = daemon();
    let tar = common::busybox_rootfs_tar();
    d.docker_ok(&[
        "import",
        "--change",
        "VOLUME /data",
        &tar.to_string_lossy(),
        "withvol",
    ]);
    let id = d.docker_ok(&["create", "withvol", "sh", "-c", "echo x > /data/f"]);
    let id = id.trim();
    let vols = lines(&d.docker_ok(&["volume", "ls", "-q"]));
    assert_eq!(vols.len(), 1, "{vols:?}");
    let anon = vols[0].clone();
    assert_eq!(anon.len(), 64);
    assert!(anon.chars().all(|c| c.is_ascii_hexdigit()));
    let m = d.docker_ok(&["inspect", "-f", "{{json .Mounts}}", id]);
    let m: serde_json::Value = serde_json::from_str(&m).unwrap();
    assert_eq!(m[0]["Type"], "volume");
    assert_eq!(m[0]["Name"], anon.as_str());
    assert_eq!(m[0]["Destination"], "/data");
    assert_eq!(m[0]["Driver"], "local");
    assert_eq!(m[0]["RW"], true);
    d.docker_ok(&["start", "-a", id]);
    assert_eq!(
        fs::read_to_string(volume_data(&d, &anon).join("f")).unwrap(),
        "x\n"
    );
    // `-v /path` also makes one; `rm` keeps it, `rm -v` removes the container's own.
    let id2 = d.docker_ok(&["create", "-v", "/other", "busybox", "true"]);
    assert_eq!(lines(&d.docker_ok(&["volume", "ls", "-q"])).len(), 2);
    d.docker_ok(&["rm", "-v", id]);
    assert!(!lines(&d.docker_ok(&["volume", "ls", "-q"])).contains(&anon));
    assert!(!d.data_root().join("volumes").join(&anon).exists());
    d.docker_ok(&["rm", id2.trim()]);
    let left = lines(&d.docker_ok(&["volume", "ls", "-q", "--filter", "dangling=true"]));
    assert_eq!(left.len(), 1, "{left:?}");
    // Prune removes unused anonymous volumes.
    d.docker_ok(&["volume", "prune", "-f"]);
    assert!(lines(&d.docker_ok(&["volume", "ls", "-q"])).is_empty());
    // `run --rm` takes its anonymous volumes along, as Docker does.
    d.docker_ok(&["run", "--rm", "withvol", "true"]);
    assert!(lines(&d.docker_ok(&["volume", "ls", "-q"])).is_empty());
}

/// An image where /data is a symlink to /etc: `-v vol:/data` mounts on the container's own /etc
/// (the link is resolved inside the root), never on the host's.
#[test]
fn symlinked_mount_target_stays_inside_the_container() {
    let d = daemon();
    let src = common::busybox_rootfs_tar();
    let out = d.scratch_dir().join("evil.tar");
    let mut ar = tar::Archive::new(fs::File::open(&src).unwrap());
    let mut b = tar::Builder::new(fs::File::create(&out).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let mut h = e.header().clone();
        b.append_data(&mut h, &path, &mut e).unwrap();
    }
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_mode(0o777);
    h.set_size(0);
    b.append_link(&mut h, "data", "/etc").unwrap();
    b.finish().unwrap();
    drop(b);
    d.docker_ok(&["import", &out.to_string_lossy(), "evil"]);

    let probe = format!("berth-probe-{}", common::random_hex(8));
    let host_probe = Path::new("/etc").join(&probe);
    d.docker_ok(&[
        "run",
        "--rm",
        "-v",
        "vol:/data",
        "evil",
        "sh",
        "-c",
        &format!("echo pwned > /data/{probe}"),
    ]);
    assert!(!host_probe.exists(), "the write reached the host's /etc");
    assert_eq!(
        fs::read_to_string(volume_data(&d, "vol").join(&probe)).unwrap(),
        "pwned\n"
    );
    // Bind mounts and tmpfs through the link stay inside too.
    let host = d.scratch_dir().join("b");
    fs::create_dir_all(&host).unwrap();
    d.docker_ok(&[
        "run",
        "--rm",
        "-v",
        &format!("{}:/data", host.display()),
        "--tmpfs",
        "/data/t",
        "evil",
        "sh",
        "-c",
        &format!("echo b > /data/{probe}"),
    ]);
    assert!(!host_probe.exists(), "the write reached the host's /etc");
    assert_eq!(fs::read_to_string(host.join(&probe)).unwrap(), "b\n");
}
