//! berth's own `cp`, `diff`, `export`, `stats` and `update`, compared with the docker CLI against
//! the same engine: the same files on disk, the same lines, the same tar listing.

mod common;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;

use common::TestDaemon;

fn run_d(d: &TestDaemon, args: &[&str]) -> String {
    let mut a = vec!["run", "-d"];
    a.extend_from_slice(args);
    d.docker_ok(&a).trim().to_string()
}

/// Every entry below `root`: relative path, type, mode, content or link target.
fn tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let m = fs::symlink_metadata(&p).unwrap();
            let mode = m.permissions().mode() & 0o7777;
            if m.file_type().is_symlink() {
                out.push(format!(
                    "{rel} link -> {}",
                    fs::read_link(&p).unwrap().display()
                ));
            } else if m.is_dir() {
                out.push(format!("{rel} dir {mode:o}"));
                walk(root, &p, out);
            } else {
                let c = String::from_utf8_lossy(&fs::read(&p).unwrap()).into_owned();
                out.push(format!("{rel} file {mode:o} {c:?}"));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out
}

fn tar_names(data: &[u8]) -> Vec<String> {
    tar::Archive::new(data)
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

fn ok(d: &TestDaemon, o: &Output, what: &str) {
    assert!(o.status.success(), "{what}\n{}", d.describe(o));
}

#[test]
fn cp_out_matches_docker() {
    let d = TestDaemon::start();
    d.import_busybox("bb:cpo");
    let id = run_d(
        &d,
        &[
            "bb:cpo",
            "sh",
            "-c",
            "mkdir -p /src/sub && echo alpha > /src/a.txt && echo beta > /src/sub/b.txt && \
             printf '#!/bin/sh\\n' > /src/run.sh && chmod 750 /src/run.sh && \
             ln -s a.txt /src/link && ln -s /src/a.txt /abslink && touch /ready && sleep 1000",
        ],
    );
    let ready = || {
        d.docker(&["exec", &id, "test", "-e", "/ready"])
            .status
            .success()
    };
    let start = std::time::Instant::now();
    while !ready() {
        assert!(start.elapsed().as_secs() < 20, "container setup timed out");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let host = d.scratch_dir();
    let (dd, bd) = (host.join("docker"), host.join("berth"));
    for root in [&dd, &bd] {
        for sub in ["exist", "dotexist", "out"] {
            fs::create_dir_all(root.join(sub)).unwrap();
        }
        fs::write(root.join("existfile"), b"old").unwrap();
    }
    let cases: &[(&[&str], &str, &str)] = &[
        (&[], "/src/a.txt", "out/"),
        (&[], "/src/a.txt", "renamed"),
        (&[], "/src/a.txt", "existfile"),
        (&[], "/src", "newdir"),
        (&[], "/src", "exist"),
        (&[], "/src/.", "dotexist"),
        (&[], "/src/.", "dotnew"),
        (&[], "/src/", "slashnew"),
        (&[], "/abslink", "nofollow"),
        (&["-L"], "/abslink", "followed"),
        (&["-L"], "/src/link", "out"),
    ];
    for (flags, src, dst) in cases {
        for (prog, root) in [("docker", &dd), ("berth", &bd)] {
            let mut args = vec!["cp"];
            args.extend_from_slice(flags);
            let s = format!("{id}:{src}");
            let t = format!("{}/{dst}", root.display());
            args.extend([s.as_str(), t.as_str()]);
            let o = if prog == "docker" {
                d.docker(&args)
            } else {
                d.berth(&args)
            };
            ok(&d, &o, &format!("{prog} {args:?}"));
        }
    }
    let (td, tb) = (tree(&dd), tree(&bd));
    assert!(
        td.iter().any(|l| l.starts_with("dotnew/sub/b.txt file")),
        "{td:#?}"
    );
    assert_eq!(td, tb);

    // Both refuse the same things.
    for (src, dst) in [
        ("/src/a.txt", "missing/"),
        ("/no/such", "x"),
        ("/src", "existfile"),
    ] {
        let s = format!("{id}:{src}");
        let t = format!("{}/{dst}", bd.display());
        let o = d.berth(&["cp", &s, &t]);
        assert!(!o.status.success(), "berth cp {src} {dst} succeeded");
        let t = format!("{}/{dst}", dd.display());
        assert!(!d.docker(&["cp", &s, &t]).status.success());
    }
    assert_eq!(tree(&dd), tree(&bd));

    // `-` streams the engine's tar unchanged.
    let s = format!("{id}:/src");
    let o = d.berth(&["cp", &s, "-"]);
    ok(&d, &o, "berth cp to stdout");
    let od = d.docker(&["cp", &s, "-"]);
    assert_eq!(tar_names(&o.stdout), tar_names(&od.stdout));
    d.docker_ok(&["rm", "-f", &id]);
}

/// A symlink in the container pointing above the destination: docker refuses it (breakout), so
/// does berth, and nothing lands outside the destination.
#[test]
fn cp_out_does_not_follow_links_out_of_the_destination() {
    let d = TestDaemon::start();
    d.import_busybox("bb:cpx");
    let id = run_d(
        &d,
        &[
            "bb:cpx",
            "sh",
            "-c",
            "mkdir -p /evil && ln -s ../../outside /evil/esc && touch /ready && sleep 1000",
        ],
    );
    let start = std::time::Instant::now();
    while !d
        .docker(&["exec", &id, "test", "-e", "/ready"])
        .status
        .success()
    {
        assert!(start.elapsed().as_secs() < 20, "container setup timed out");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let host = d.scratch_dir();
    let dst: PathBuf = host.join("a/b");
    fs::create_dir_all(&dst).unwrap();
    let o = d.berth(&["cp", &format!("{id}:/evil"), &dst.to_string_lossy()]);
    // docker refuses such a link (breakout); berth too, and writes nothing outside.
    assert!(!o.status.success(), "{}", d.describe(&o));
    assert!(!host.join("outside").exists());
    let o = d.docker(&["cp", &format!("{id}:/evil"), &dst.to_string_lossy()]);
    assert!(!o.status.success(), "{}", d.describe(&o));
    d.docker_ok(&["rm", "-f", &id]);
}

/// `find` in the container below `dir`: relative path, type, mode, size.
fn ctree(d: &TestDaemon, id: &str, dir: &str) -> Vec<String> {
    let out = d.docker_ok(&[
        "exec",
        id,
        "sh",
        "-c",
        &format!("cd {dir} && find . -exec stat -c '%n %F %a %s %u' {{}} + | sort"),
    ]);
    out.lines().map(str::to_string).collect()
}

#[test]
fn cp_in_matches_docker() {
    let d = TestDaemon::start();
    d.import_busybox("bb:cpi");
    let id = run_d(&d, &["bb:cpi", "sleep", "1000"]);
    let host = d.scratch_dir();
    fs::create_dir_all(host.join("src/sub")).unwrap();
    fs::write(host.join("src/a.txt"), b"alpha").unwrap();
    fs::write(host.join("src/sub/b.txt"), b"beta").unwrap();
    fs::set_permissions(host.join("src/a.txt"), fs::Permissions::from_mode(0o640)).unwrap();
    symlink("a.txt", host.join("src/link")).unwrap();
    symlink(host.join("src/a.txt"), host.join("hostlink")).unwrap();
    std::os::unix::fs::chown(host.join("src/sub/b.txt"), Some(1234), Some(5678)).unwrap();
    let p = |s: &str| format!("{}/{s}", host.display());
    d.docker_ok(&[
        "exec",
        &id,
        "mkdir",
        "-p",
        "/d/exist",
        "/d/dotexist",
        "/b/exist",
        "/b/dotexist",
    ]);
    d.docker_ok(&[
        "exec",
        &id,
        "sh",
        "-c",
        "echo old > /d/existfile; echo old > /b/existfile",
    ]);
    let cases: Vec<(&[&str], String, &str)> = vec![
        (&[], p("src/a.txt"), "/"),
        (&[], p("src/a.txt"), "/renamed"),
        (&[], p("src/a.txt"), "/existfile"),
        (&[], p("src"), "/newdir"),
        (&[], p("src"), "/exist"),
        (&[], p("src/."), "/dotexist"),
        (&[], p("src/."), "/dotnew"),
        (&["-a"], p("src"), "/archived"),
        (&[], p("hostlink"), "/nofollow"),
        (&["-L"], p("hostlink"), "/followed"),
    ];
    for (flags, src, dst) in &cases {
        for (prog, root) in [("docker", "/d"), ("berth", "/b")] {
            let mut args = vec!["cp"];
            args.extend_from_slice(flags);
            let t = format!("{id}:{root}{dst}");
            args.extend([src.as_str(), t.as_str()]);
            let o = if prog == "docker" {
                d.docker(&args)
            } else {
                d.berth(&args)
            };
            ok(&d, &o, &format!("{prog} {args:?}"));
        }
    }
    // A tar on stdin into a directory.
    let mut b = tar::Builder::new(Vec::new());
    b.append_path_with_name(host.join("src/sub/b.txt"), "fromstdin")
        .unwrap();
    let t = b.into_inner().unwrap();
    for root in ["/d", "/b"] {
        let dst = format!("{id}:{root}/exist");
        let o = d.docker_stdin(&["cp", "-", &dst], &t[..]);
        let o2 = d.berth_stdin(&["cp", "-", &dst], &t[..]);
        ok(&d, &o, "docker cp -");
        ok(&d, &o2, "berth cp -");
    }
    let (cd, cb) = (ctree(&d, &id, "/d"), ctree(&d, &id, "/b"));
    assert!(
        cd.iter()
            .any(|l| l.starts_with("./archived/sub/b.txt regular file 644 4 1234")),
        "{cd:#?}"
    );
    assert!(
        cd.iter().any(|l| l.starts_with("./followed regular file")),
        "{cd:#?}"
    );
    assert_eq!(cd, cb);
    // A file onto a missing directory path is refused by both.
    let t = format!("{id}:/nonexistent/");
    assert!(!d.berth(&["cp", &p("src/a.txt"), &t]).status.success());
    assert!(!d.docker(&["cp", &p("src/a.txt"), &t]).status.success());
    // `-` needs a directory.
    let t = format!("{id}:/b/existfile");
    assert!(!d.berth_stdin(&["cp", "-", &t], &b""[..]).status.success());
    d.docker_ok(&["rm", "-f", &id]);
}

#[test]
fn diff_and_export_match_docker() {
    let d = TestDaemon::start();
    d.import_busybox("bb:cdiff");
    let id = d
        .docker_ok(&[
            "create",
            "bb:cdiff",
            "sh",
            "-c",
            "mkdir /newdir && echo x > /newdir/f && echo more >> /etc/passwd && rm /bin/ls",
        ])
        .trim()
        .to_string();
    d.docker_ok(&["start", "-a", &id]);
    let want = d.docker_ok(&["diff", &id]);
    assert!(want.lines().any(|l| l == "D /bin/ls"), "{want}");
    assert_eq!(d.berth_ok(&["diff", &id]), want);
    assert_eq!(d.berth_ok(&["container", "diff", &id]), want);

    let host = d.scratch_dir();
    let (fd, fb) = (host.join("d.tar"), host.join("b.tar"));
    d.docker_ok(&["export", "-o", &fd.to_string_lossy(), &id]);
    d.berth_ok(&["export", "-o", &fb.to_string_lossy(), &id]);
    let (nd, nb) = (
        tar_names(&fs::read(&fd).unwrap()),
        tar_names(&fs::read(&fb).unwrap()),
    );
    assert!(nd.iter().any(|n| n == "newdir/f"));
    assert_eq!(nd, nb);
    let o = d.berth(&["export", &id]);
    ok(&d, &o, "berth export to a pipe");
    assert_eq!(tar_names(&o.stdout), nd);
    // A missing container: docker's error, exit 1, and no file left behind.
    let o = d.berth(&[
        "export",
        "-o",
        &host.join("x.tar").to_string_lossy(),
        "nosuch",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("No such container"),
        "{}",
        d.describe(&o)
    );
    assert!(!host.join("x.tar").exists());
    d.docker_ok(&["rm", &id]);
}

#[test]
fn stats_and_update_like_docker() {
    let d = TestDaemon::start();
    d.import_busybox("bb:cstats");
    let id = run_d(
        &d,
        &[
            "--name",
            "statbox",
            "--memory",
            "64m",
            "bb:cstats",
            "sleep",
            "1000",
        ],
    );
    let out = d.berth_ok(&["stats", "--no-stream"]);
    let mut lines = out.lines();
    let header = lines.next().unwrap();
    let cols: Vec<&str> = header
        .split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        cols,
        [
            "CONTAINER ID",
            "NAME",
            "CPU %",
            "MEM USAGE / LIMIT",
            "MEM %",
            "NET I/O",
            "BLOCK I/O",
            "PIDS"
        ],
        "{out}"
    );
    let row = lines.next().unwrap_or("");
    assert!(
        row.starts_with(&format!("{}   statbox ", &id[..12])),
        "{out}"
    );
    assert!(row.contains(" / 64MiB"), "{out}");
    assert!(row.trim_end().ends_with(" 1"), "{out}");
    // The same template output as docker's (CPU and memory usage move, limits and pids do not).
    let f = "{{.ID}} {{.Name}} {{.Container}} {{.PIDs}}";
    assert_eq!(
        d.berth_ok(&["stats", "--no-stream", "--format", f, "statbox"]),
        d.docker_ok(&["stats", "--no-stream", "--format", f, "statbox"])
    );

    assert_eq!(
        d.berth_ok(&["update", "--memory", "128m", "--memory-swap", "256m", &id])
            .trim(),
        id
    );
    let (_, v) = d.api_json("GET", &format!("/containers/{id}/json"), None);
    assert_eq!(v["HostConfig"]["Memory"], 134217728);
    assert_eq!(v["HostConfig"]["MemorySwap"], 268435456);
    let cg = Path::new("/sys/fs/cgroup/memory")
        .join(d.cgroup_parent())
        .join(&id)
        .join("memory.limit_in_bytes");
    assert_eq!(fs::read_to_string(&cg).unwrap().trim(), "134217728");
    let out = d.berth_ok(&["stats", "--no-stream", "--format", "{{.MemUsage}}", &id]);
    assert!(out.trim_end().ends_with("/ 128MiB"), "{out}");
    d.berth_ok(&[
        "container",
        "update",
        "--cpus",
        "0.5",
        "--cpu-shares",
        "512",
        "--pids-limit",
        "50",
        "--restart",
        "on-failure:3",
        "statbox",
    ]);
    let (_, v) = d.api_json("GET", &format!("/containers/{id}/json"), None);
    assert_eq!(v["HostConfig"]["PidsLimit"], 50);
    assert_eq!(v["HostConfig"]["NanoCpus"], 500000000);
    assert_eq!(v["HostConfig"]["CpuShares"], 512);
    assert_eq!(v["HostConfig"]["RestartPolicy"]["Name"], "on-failure");
    assert_eq!(v["HostConfig"]["RestartPolicy"]["MaximumRetryCount"], 3);
    // No flags: docker's error.
    let o = d.berth(&["update", &id]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("you must provide one or more flags"));
    d.docker_ok(&["rm", "-f", &id]);
}
