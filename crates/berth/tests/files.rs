//! Files and stats through the real docker CLI: `cp` both ways (Docker's naming rules, stopped
//! containers, `-a`), the symlink-swap race, hostile uploads, `diff`, `export`, `stats`, `update`.

mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{random_hex, TestDaemon};

fn run_d(d: &TestDaemon, args: &[&str]) -> String {
    let mut a = vec!["run", "-d"];
    a.extend_from_slice(args);
    d.docker_ok(&a).trim().to_string()
}

/// Poll `f` until true or 20 s.
fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn tar_names(data: &[u8]) -> Vec<String> {
    let mut a = tar::Archive::new(data);
    a.entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn cp_both_ways_with_docker_rules() {
    let d = TestDaemon::start();
    d.import_busybox("bb:cp");
    let id = run_d(&d, &["bb:cp", "sleep", "1000"]);
    let host = d.scratch_dir();
    fs::create_dir_all(host.join("src/sub")).unwrap();
    fs::write(host.join("src/a.txt"), b"alpha").unwrap();
    fs::write(host.join("src/sub/b.txt"), b"beta").unwrap();
    fs::write(host.join("one.txt"), b"one").unwrap();
    let p = |s: &str| host.join(s).to_string_lossy().into_owned();
    let c = |s: &str| format!("{id}:{s}");

    // A file into a dir, and under a new name.
    d.docker_ok(&["cp", &p("one.txt"), &c("/tmp/")]);
    d.docker_ok(&["cp", &p("one.txt"), &c("/tmp/renamed")]);
    assert_eq!(d.docker_ok(&["exec", &id, "cat", "/tmp/one.txt"]), "one");
    assert_eq!(d.docker_ok(&["exec", &id, "cat", "/tmp/renamed"]), "one");
    // Without -a files belong to root in the container.
    assert_eq!(
        d.docker_ok(&["exec", &id, "stat", "-c", "%u", "/tmp/one.txt"])
            .trim(),
        "0"
    );
    // A dir to a missing path: created with that name; to an existing dir: nested.
    d.docker_ok(&["cp", &p("src"), &c("/tmp/newdir")]);
    d.docker_ok(&["cp", &p("src"), &c("/tmp")]);
    // `src/.`: the contents into an existing dir.
    d.docker_ok(&["exec", &id, "mkdir", "/tmp/contents"]);
    d.docker_ok(&["cp", &format!("{}/.", p("src")), &c("/tmp/contents")]);
    let ls = d.docker_ok(&[
        "exec",
        &id,
        "find",
        "/tmp/newdir",
        "/tmp/src",
        "/tmp/contents",
    ]);
    for want in [
        "/tmp/newdir/a.txt",
        "/tmp/newdir/sub/b.txt",
        "/tmp/src/a.txt",
        "/tmp/src/sub/b.txt",
        "/tmp/contents/a.txt",
        "/tmp/contents/sub/b.txt",
    ] {
        assert!(ls.lines().any(|l| l == want), "{want} missing in:\n{ls}");
    }
    // A file onto a missing dir path (trailing slash) is refused.
    let err = d.docker_err(&["cp", &p("one.txt"), &c("/nonexistent/")]);
    assert!(!err.is_empty());

    // Out: file, dir, dir/. and a missing path.
    let out = host.join("out");
    fs::create_dir_all(&out).unwrap();
    d.docker_ok(&["cp", &c("/tmp/src/a.txt"), &p("out/")]);
    assert_eq!(fs::read(out.join("a.txt")).unwrap(), b"alpha");
    d.docker_ok(&["cp", &c("/tmp/src"), &p("out/copied")]);
    assert_eq!(fs::read(out.join("copied/sub/b.txt")).unwrap(), b"beta");
    d.docker_ok(&["cp", &c("/tmp/src"), &p("out")]);
    assert_eq!(fs::read(out.join("src/a.txt")).unwrap(), b"alpha");
    fs::create_dir_all(out.join("dot")).unwrap();
    d.docker_ok(&["cp", &c("/tmp/src/."), &p("out/dot")]);
    assert_eq!(fs::read(out.join("dot/sub/b.txt")).unwrap(), b"beta");
    d.docker_ok(&["cp", &c("/tmp/src/."), &p("out/dotnew")]);
    assert_eq!(fs::read(out.join("dotnew/a.txt")).unwrap(), b"alpha");
    let err = d.docker_err(&["cp", &c("/no/such/file"), &p("out/")]);
    assert!(err.contains("Could not find the file"), "{err}");
    // `-` streams a tar.
    let o = d.docker(&["cp", &c("/tmp/src/a.txt"), "-"]);
    assert!(o.status.success());
    assert_eq!(tar_names(&o.stdout), vec!["a.txt"]);
    // -L follows a symlink (the CLI stats it and copies the target).
    d.docker_ok(&["exec", &id, "ln", "-s", "/tmp/src/a.txt", "/tmp/link"]);
    d.docker_ok(&["cp", &c("/tmp/link"), &p("out/nofollow")]);
    assert!(fs::symlink_metadata(out.join("nofollow"))
        .unwrap()
        .file_type()
        .is_symlink());
    d.docker_ok(&["cp", "-L", &c("/tmp/link"), &p("out/followed")]);
    assert_eq!(fs::read(out.join("followed")).unwrap(), b"alpha");
    d.docker_ok(&["rm", "-f", &id]);
}

#[test]
fn cp_into_stopped_container_and_archive_mode() {
    let d = TestDaemon::start();
    d.import_busybox("bb:cps");
    let id = d
        .docker_ok(&["create", "bb:cps", "cat", "/data/f"])
        .trim()
        .to_string();
    let host = d.scratch_dir();
    fs::create_dir_all(host.join("data")).unwrap();
    fs::write(host.join("data/f"), b"from the host").unwrap();
    std::os::unix::fs::chown(host.join("data/f"), Some(1234), Some(5678)).unwrap();
    d.docker_ok(&[
        "cp",
        "-a",
        &host.join("data").to_string_lossy(),
        &format!("{id}:/"),
    ]);
    // Not left mounted once the copy is done (poll: the unmount runs after the response).
    let rootfs = d.data_root().join("containers").join(&id).join("rootfs");
    wait_for("rootfs unmounted", || {
        !common::mounts_below(d.data_root())
            .iter()
            .any(|m| m == &rootfs)
    });
    d.docker_ok(&["start", "-a", &id]);
    let logs = d.docker_ok(&["logs", &id]);
    assert_eq!(logs, "from the host");
    // -a kept the owner inside (the tar the engine sends shows it); the stopped container's
    // file comes back out.
    let o = d.docker(&["cp", &format!("{id}:/data/f"), "-"]);
    assert!(o.status.success());
    let mut a = tar::Archive::new(&o.stdout[..]);
    let e = a.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(
        (e.header().uid().unwrap(), e.header().gid().unwrap()),
        (1234, 5678)
    );
    let out = host.join("back");
    d.docker_ok(&["cp", &format!("{id}:/data/f"), &out.to_string_lossy()]);
    assert_eq!(fs::read(&out).unwrap(), b"from the host");
    // Without -a, root owns what is copied in.
    d.docker_ok(&[
        "cp",
        &host.join("data/f").to_string_lossy(),
        &format!("{id}:/g"),
    ]);
    let o = d.docker(&["cp", &format!("{id}:/g"), "-"]);
    let mut a = tar::Archive::new(&o.stdout[..]);
    let e = a.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(
        (e.header().uid().unwrap(), e.header().gid().unwrap()),
        (0, 0)
    );
    d.docker_ok(&["rm", &id]);
}

/// A container swaps `/x/p` between a directory and a symlink to `/` while we copy in and out
/// through it: no host file is ever read or written.
#[test]
fn cp_symlink_swap_race_never_touches_the_host() {
    let d = TestDaemon::start();
    d.import_busybox("bb:race");
    let host = d.scratch_dir();
    // The sentinel: a unique file and a target dir on the host, at the same paths the
    // container's `/x/p/...` would reach if the symlink to `/` were followed on the host.
    let secret = format!("host-secret-{}", random_hex(16));
    let hdir = host.join("hostdir");
    fs::create_dir_all(&hdir).unwrap();
    fs::write(hdir.join("sentinel"), &secret).unwrap();
    let hrel = hdir
        .strip_prefix("/")
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let script = format!(
        "mkdir -p /x/real/{hrel} && echo inside > /x/real/{hrel}/sentinel && \
         while true; do rm -rf /x/p; ln -s / /x/p; rm -f /x/p; ln -s /x/real /x/p; \
         rm -f /x/p; mkdir -p /x/p/{hrel}; done"
    );
    let id = run_d(&d, &["bb:race", "sh", "-c", &script]);
    let up = host.join("up.txt");
    fs::write(&up, b"upload").unwrap();
    let out = host.join("out");
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut rounds = 0;
    while Instant::now() < deadline {
        let _ = d.docker(&[
            "cp",
            &format!("{id}:/x/p/{hrel}/sentinel"),
            &out.to_string_lossy(),
        ]);
        if let Ok(b) = fs::read(&out) {
            assert!(
                !String::from_utf8_lossy(&b).contains(&secret),
                "a host file was read through the container"
            );
            let _ = fs::remove_file(&out);
        }
        let _ = d.docker(&["cp", &up.to_string_lossy(), &format!("{id}:/x/p/{hrel}/")]);
        rounds += 1;
    }
    assert!(rounds > 3, "only {rounds} rounds");
    // The host dir holds only the sentinel, unchanged.
    let names: Vec<_> = fs::read_dir(&hdir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("sentinel")]);
    assert_eq!(fs::read_to_string(hdir.join("sentinel")).unwrap(), secret);
    assert!(!Path::new("/up.txt").exists());
    d.docker_ok(&["rm", "-f", &id]);
}

fn tar_with(entries: &[(&str, &[u8])]) -> Vec<u8> {
    // Raw headers: the tar crate refuses `..` and absolute names, which are the point here.
    let mut out = Vec::new();
    for (name, data) in entries {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

#[test]
fn hostile_upload_stays_inside() {
    let d = TestDaemon::start();
    d.import_busybox("bb:hostile");
    let id = run_d(&d, &["bb:hostile", "sleep", "1000"]);
    let tag = random_hex(12);
    let host_target = format!("/tmp/berth-escape-{tag}");
    // An absolute entry lands inside the target dir (leading `/` stripped).
    let abs = tar_with(&[(&format!("{host_target}-abs"), b"abs")]);
    let (st, body) = d.api_raw(
        "PUT",
        &format!("/containers/{id}/archive?path=/tmp"),
        Some(&abs),
        "application/x-tar",
    );
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        d.docker_ok(&["exec", &id, "cat", &format!("/tmp{host_target}-abs")]),
        "abs"
    );
    // `..` that climbs out is refused; nothing is written on the host or above the target.
    let dotdot = tar_with(&[(&format!("../../../../../../..{host_target}-dd"), b"dd")]);
    let (st, _) = d.api_raw(
        "PUT",
        &format!("/containers/{id}/archive?path=/tmp"),
        Some(&dotdot),
        "application/x-tar",
    );
    assert_eq!(st, 400);
    assert!(!Path::new(&format!("{host_target}-abs")).exists());
    assert!(!Path::new(&format!("{host_target}-dd")).exists());
    let o = d.docker(&["exec", &id, "ls", &format!("{host_target}-dd")]);
    assert!(!o.status.success());
    // A missing target is a 404; HEAD of a missing path too.
    let (st, _) = d.api_raw(
        "PUT",
        &format!("/containers/{id}/archive?path=/nope"),
        Some(&abs),
        "application/x-tar",
    );
    assert_eq!(st, 404);
    let (st, _) = d.api(
        "HEAD",
        &format!("/containers/{id}/archive?path=/nope"),
        None,
    );
    assert_eq!(st, 404);
    d.docker_ok(&["rm", "-f", &id]);
}

#[test]
fn diff_and_export() {
    let d = TestDaemon::start();
    d.import_busybox("bb:diff");
    let id = d
        .docker_ok(&[
            "create",
            "bb:diff",
            "sh",
            "-c",
            "mkdir /newdir && echo x > /newdir/f && echo more >> /etc/passwd && rm /bin/ls",
        ])
        .trim()
        .to_string();
    d.docker_ok(&["start", "-a", &id]);
    let diff = d.docker_ok(&["diff", &id]);
    for want in [
        "A /newdir",
        "A /newdir/f",
        "C /etc",
        "C /etc/passwd",
        "C /bin",
        "D /bin/ls",
    ] {
        assert!(
            diff.lines().any(|l| l == want),
            "{want:?} missing in:\n{diff}"
        );
    }
    assert!(!diff.contains("/proc"), "{diff}");
    let o = d.docker(&["export", &id]);
    assert!(o.status.success());
    let names = tar_names(&o.stdout);
    for want in ["newdir/f", "etc/passwd", "bin/sh"] {
        assert!(names.iter().any(|n| n == want), "{want} missing in export");
    }
    assert!(!names.iter().any(|n| n == "bin/ls"));
    let mut a = tar::Archive::new(&o.stdout[..]);
    let passwd = a
        .entries()
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| e.path().unwrap().to_string_lossy() == "etc/passwd")
        .map(|mut e| {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut e, &mut s).unwrap();
            s
        })
        .unwrap();
    assert!(passwd.ends_with("more\n"), "{passwd}");
    d.docker_ok(&["rm", &id]);
}

#[test]
fn stats_and_update() {
    let d = TestDaemon::start();
    d.import_busybox("bb:stats");
    let id = run_d(&d, &["--memory", "64m", "bb:stats", "sleep", "1000"]);
    let out = d.docker_ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.ID}} {{.MemUsage}} {{.PIDs}} {{.CPUPerc}} {{.NetIO}} {{.BlockIO}}",
        &id,
    ]);
    assert!(out.starts_with(&id[..12]), "{out}");
    assert!(out.contains("/ 64MiB"), "{out}");
    assert!(out.contains(" 1 "), "{out}");
    assert!(out.contains('%'), "{out}");

    d.docker_ok(&["update", "--memory", "128m", "--memory-swap", "256m", &id]);
    let cg = Path::new("/sys/fs/cgroup/memory")
        .join(d.cgroup_parent())
        .join(&id)
        .join("memory.limit_in_bytes");
    assert_eq!(fs::read_to_string(&cg).unwrap().trim(), "134217728");
    let (_, v) = d.api_json("GET", &format!("/containers/{id}/json"), None);
    assert_eq!(v["HostConfig"]["Memory"], 134217728);
    let out = d.docker_ok(&["stats", "--no-stream", "--format", "{{.MemUsage}}", &id]);
    assert!(out.contains("/ 128MiB"), "{out}");
    d.docker_ok(&[
        "update",
        "--pids-limit",
        "50",
        "--restart",
        "on-failure:3",
        &id,
    ]);
    let (_, v) = d.api_json("GET", &format!("/containers/{id}/json"), None);
    assert_eq!(v["HostConfig"]["PidsLimit"], 50);
    assert_eq!(v["HostConfig"]["RestartPolicy"]["Name"], "on-failure");
    // Streaming sends one document per interval.
    let (st, body) = d.api(
        "GET",
        &format!("/containers/{id}/stats?stream=false&one-shot=true"),
        None,
    );
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(v["memory_stats"]["usage"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["pids_stats"]["current"], 1);
    d.docker_ok(&["rm", "-f", &id]);
}
