//! `docker commit`, `docker diff`, `docker export` and `docker system df` through the real docker
//! CLI: changes (added, changed, deleted files, a deleted dir, a dir replaced by a file, an opaque
//! dir) survive a commit and a second commit on top (chain); `diff` lists exactly what the
//! committed layer holds; `--change`; a running container is paused for the commit and resumed;
//! export of the committed container equals a fresh container of the new image; a container's
//! symlinks to host paths are archived as links, never followed.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use common::{random_hex, TestDaemon};
use serde_json::Value;

fn sh(d: &TestDaemon, name: &str, image: &str, script: &str) {
    d.docker_ok(&["create", "--name", name, image, "sh", "-c", script]);
    let out = d.docker(&["start", "-a", name]);
    assert!(out.status.success(), "{}", d.describe(&out));
}

/// `docker save` of an image: the entries of its top layer tar, name → (type, data, link).
fn top_layer(d: &TestDaemon, image: &str) -> BTreeMap<String, (tar::EntryType, Vec<u8>, String)> {
    let o = d.docker(&["save", image]);
    assert!(o.status.success(), "{}", d.describe(&o));
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut a = tar::Archive::new(&o.stdout[..]);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let p = e.path().unwrap().to_string_lossy().into_owned();
        let mut v = Vec::new();
        e.read_to_end(&mut v).unwrap();
        files.insert(p, v);
    }
    let manifest: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let layers = manifest[0]["Layers"].as_array().unwrap();
    let top = layers.last().unwrap().as_str().unwrap();
    let mut out = BTreeMap::new();
    let mut a = tar::Archive::new(&files[top][..]);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let p = e.path().unwrap().to_string_lossy().into_owned();
        let link = e
            .link_name()
            .unwrap()
            .map(|l| l.to_string_lossy().into_owned())
            .unwrap_or_default();
        let kind = e.header().entry_type();
        let mut v = Vec::new();
        e.read_to_end(&mut v).unwrap();
        out.insert(p.trim_end_matches('/').to_string(), (kind, v, link));
    }
    out
}

/// `docker diff` lines as (kind letter, path).
fn diff_lines(d: &TestDaemon, c: &str) -> BTreeSet<(String, String)> {
    d.docker_ok(&["diff", c])
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, p)| (k.to_string(), p.to_string()))
        .collect()
}

#[test]
fn commit_chain_diff_matches_layer_and_history() {
    let d = TestDaemon::start();
    d.import_busybox("bb:commit");
    let c1 = format!("c1-{}", random_hex(6));
    sh(
        &d,
        &c1,
        "bb:commit",
        "mkdir -p /victim/sub /replaced /opq && echo v > /victim/sub/f && echo r > /replaced/x \
         && echo o > /opq/old && echo keep > /keep && echo more >> /etc/passwd && rm /bin/ls",
    );
    let id1 = d
        .docker_ok(&[
            "commit",
            "-m",
            "first step",
            "-a",
            "Tester <t@x>",
            &c1,
            "img1:v1",
        ])
        .trim()
        .to_string();
    assert!(id1.starts_with("sha256:") && id1.len() == 71, "{id1}");
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "img1:v1",
        "sh",
        "-c",
        "cat /keep; test -e /bin/ls || echo gone; tail -n 1 /etc/passwd; cat /victim/sub/f",
    ]);
    assert_eq!(out, "keep\ngone\nmore\nv\n");
    let insp: Value = serde_json::from_str(&d.docker_ok(&["image", "inspect", "img1:v1"])).unwrap();
    assert_eq!(insp[0]["Author"], "Tester <t@x>");
    assert_eq!(insp[0]["RootFS"]["Layers"].as_array().unwrap().len(), 2);

    // Second commit on top of the committed image: a deleted dir, a dir replaced by a file, a
    // dir replaced by a new dir (opaque), an added file.
    let c2 = format!("c2-{}", random_hex(6));
    sh(
        &d,
        &c2,
        "img1:v1",
        "rm -rf /victim /replaced /opq && echo file > /replaced && mkdir /opq && echo n > /opq/new \
         && echo added > /added",
    );
    let diff = diff_lines(&d, &c2);
    for want in [
        ("D", "/victim"),
        ("C", "/replaced"),
        ("C", "/opq"),
        ("A", "/opq/new"),
        ("A", "/added"),
    ] {
        assert!(
            diff.contains(&(want.0.to_string(), want.1.to_string())),
            "{want:?} not in {diff:?}"
        );
    }
    let id2 = d
        .docker_ok(&["commit", "-m", "second", &c2, "img2"])
        .trim()
        .to_string();
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "img2",
        "sh",
        "-c",
        "test -e /victim || echo no-victim; cat /replaced; ls /opq; cat /keep /added",
    ]);
    assert_eq!(out, "no-victim\nfile\nnew\nkeep\nadded\n");

    // What diff shows is exactly what the layer holds.
    let layer = top_layer(&d, "img2");
    let mut from_layer = BTreeSet::new();
    for (name, (kind, _, _)) in &layer {
        let (dir, base) = match name.rsplit_once('/') {
            Some((dd, b)) => (format!("/{dd}"), b.to_string()),
            None => (String::new(), name.clone()),
        };
        if base == ".wh..wh..opq" {
            continue;
        }
        if let Some(del) = base.strip_prefix(".wh.") {
            from_layer.insert(("D".to_string(), format!("{dir}/{del}")));
        } else {
            assert_ne!(*kind, tar::EntryType::Char, "{name}");
            from_layer.insert(("?".to_string(), format!("/{name}")));
        }
    }
    let from_diff: BTreeSet<(String, String)> = diff
        .iter()
        .map(|(k, p)| (if k == "D" { "D" } else { "?" }.to_string(), p.clone()))
        .collect();
    assert_eq!(from_diff, from_layer);
    assert!(layer.contains_key("opq/.wh..wh..opq"), "{:?}", layer.keys());
    assert_eq!(layer["replaced"].1, b"file\n");

    // History: the new layers with their sizes and comments, the parent chain's ids.
    let h = d.docker_ok(&[
        "history",
        "--no-trunc",
        "--format",
        "{{.ID}}|{{.Size}}|{{.Comment}}",
        "img2",
    ]);
    let rows: Vec<Vec<&str>> = h.lines().map(|l| l.split('|').collect()).collect();
    assert_eq!(rows.len(), 3, "{h}");
    // /replaced (5) + /opq/new (2) + /added (6).
    assert_eq!(rows[0], [id2.as_str(), "13B", "second"]);
    assert_eq!(rows[1][0], id1);
    assert_eq!(rows[1][2], "first step");
    assert_ne!(rows[1][1], "0B");
}

#[test]
fn commit_change_instructions_and_errors() {
    let d = TestDaemon::start();
    d.import_busybox("bb:chg");
    let c = format!("chg-{}", random_hex(6));
    sh(&d, &c, "bb:chg", "echo x > /x");
    d.docker_ok(&[
        "commit",
        "--change",
        r#"CMD ["echo","hi"]"#,
        "-c",
        "ENV FOO=bar",
        "-c",
        "LABEL team=core",
        "-c",
        "EXPOSE 8080",
        "-c",
        "WORKDIR /tmp",
        "-c",
        "ONBUILD RUN echo child",
        &c,
        "chg:v1",
    ]);
    let v: Value = serde_json::from_str(&d.docker_ok(&["image", "inspect", "chg:v1"])).unwrap();
    let cfg = &v[0]["Config"];
    assert_eq!(cfg["Cmd"], serde_json::json!(["echo", "hi"]));
    assert!(cfg["Env"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e == "FOO=bar"));
    assert_eq!(cfg["Labels"]["team"], "core");
    assert!(cfg["ExposedPorts"].get("8080/tcp").is_some(), "{cfg}");
    assert_eq!(cfg["WorkingDir"], "/tmp");
    assert_eq!(cfg["OnBuild"], serde_json::json!(["RUN echo child"]));
    assert_eq!(d.docker_ok(&["run", "--rm", "chg:v1"]), "hi\n");
    assert_eq!(
        d.docker_ok(&[
            "run",
            "--rm",
            "chg:v1",
            "sh",
            "-c",
            "echo $FOO; pwd; cat /x"
        ]),
        "bar\n/tmp\nx\n"
    );

    // berth's CLI: the same request.
    let id = d
        .berth_ok(&[
            "commit",
            "-c",
            "ENV A=1",
            "-m",
            "via berth",
            &c,
            "chg:berth",
        ])
        .trim()
        .to_string();
    assert!(id.starts_with("sha256:"), "{id}");
    let env = d.docker_ok(&[
        "image",
        "inspect",
        "-f",
        "{{json .Config.Env}}",
        "chg:berth",
    ]);
    assert!(env.contains("\"A=1\""), "{env}");

    // The API's body: a config whose empty fields come from the container's (Docker's merge).
    let (st, v) = d.api_json(
        "POST",
        &format!("/commit?container={c}&repo=api-img&tag=t1&comment=api"),
        Some(r#"{"Cmd":["echo","from-api"],"Labels":{"x":"y"}}"#),
    );
    assert_eq!(st, 201, "{v}");
    assert!(v["Id"].as_str().unwrap().starts_with("sha256:"), "{v}");
    assert_eq!(d.docker_ok(&["run", "--rm", "api-img:t1"]), "from-api\n");
    let labels = d.docker_ok(&[
        "image",
        "inspect",
        "-f",
        "{{json .Config.Labels}}",
        "api-img:t1",
    ]);
    assert!(labels.contains("\"x\":\"y\""), "{labels}");
    let (st, _) = d.api("POST", "/commit?container=no-such-ctr-x", None);
    assert_eq!(st, 404);
    let (st, _) = d.api(
        "POST",
        &format!("/commit?container={c}&changes=FROM%20x"),
        None,
    );
    assert_eq!(st, 400);

    // Errors: an instruction commit does not take, a missing container, a digest reference.
    let e = d.docker_err(&["commit", "-c", "RUN echo no", &c]);
    assert!(e.contains("RUN is not a valid change command"), "{e}");
    let o = d.berth(&["commit", &c, &format!("x@sha256:{}", "0".repeat(64))]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("digest reference"),
        "{}",
        d.describe(&o)
    );
    let e = d.docker_err(&["commit", "no-such-container-x"]);
    assert!(e.contains("No such container"), "{e}");
    // No change at all: still an image (an empty layer in its history).
    let empty = format!("empty-{}", random_hex(6));
    d.docker_ok(&["create", "--name", &empty, "bb:chg", "true"]);
    let id = d.docker_ok(&["commit", &empty]).trim().to_string();
    let layers = d.docker_ok(&["image", "inspect", "-f", "{{len .RootFS.Layers}}", &id]);
    assert_eq!(layers.trim(), "1");
}

#[test]
fn commit_pauses_running_container_and_resumes_it() {
    let d = TestDaemon::start();
    d.import_busybox("bb:run");
    let c = format!("run-{}", random_hex(6));
    d.docker_ok(&["run", "-d", "--name", &c, "bb:run", "sleep", "1000"]);
    d.docker_ok(&["exec", &c, "sh", "-c", "echo live > /live"]);
    let since = chrono_now(&d);
    d.docker_ok(&["commit", &c, "live:v1"]);
    let until = chrono_now(&d);
    let events = d.docker_ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        &format!("container={c}"),
        "--format",
        "{{.Action}}",
    ]);
    let actions: Vec<&str> = events.lines().collect();
    assert_eq!(actions, ["pause", "commit", "unpause"], "{events}");
    assert_eq!(
        d.docker_ok(&["inspect", "-f", "{{.State.Status}}", &c])
            .trim(),
        "running"
    );
    assert_eq!(d.docker_ok(&["exec", &c, "cat", "/live"]), "live\n");
    assert_eq!(
        d.docker_ok(&["run", "--rm", "live:v1", "cat", "/live"]),
        "live\n"
    );
    // -p=false: no pause.
    let since = chrono_now(&d);
    d.docker_ok(&["commit", "-p=false", &c, "live:v2"]);
    let until = chrono_now(&d);
    let events = d.docker_ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        &format!("container={c}"),
        "--format",
        "{{.Action}}",
    ]);
    assert_eq!(events.lines().collect::<Vec<_>>(), ["commit"], "{events}");
    d.docker_ok(&["rm", "-f", &c]);
}

/// The engine's clock as unix seconds with nanos (for `events --since/--until`).
fn chrono_now(_d: &TestDaemon) -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{}.{:09}", t.as_secs(), t.subsec_nanos())
}

/// An export, as name → (type, mode, uid, gid, data or link), without the runtime's mount
/// points and without directory mtimes.
fn export_map(d: &TestDaemon, c: &str) -> BTreeMap<String, String> {
    let o = d.docker(&["export", c]);
    assert!(o.status.success(), "{}", d.describe(&o));
    let mut out = BTreeMap::new();
    let mut a = tar::Archive::new(&o.stdout[..]);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let p = e.path().unwrap().to_string_lossy().into_owned();
        let p = p.trim_end_matches('/').to_string();
        let top = p.split('/').next().unwrap_or("");
        if ["dev", "proc", "sys", ".dockerenv"].contains(&top)
            || ["etc/hosts", "etc/hostname", "etc/resolv.conf"].contains(&p.as_str())
        {
            continue;
        }
        let h = e.header().clone();
        let kind = h.entry_type();
        let link = e
            .link_name()
            .unwrap()
            .map(|l| l.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut v = Vec::new();
        e.read_to_end(&mut v).unwrap();
        let mtime = if kind == tar::EntryType::Directory {
            0
        } else {
            h.mtime().unwrap()
        };
        out.insert(
            p,
            format!(
                "{kind:?} {:o} {}:{} {mtime} {link} {}",
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.gid().unwrap(),
                String::from_utf8_lossy(&v).len()
            ) + &format!("{:x?}", &v[..v.len().min(64)]),
        );
    }
    out
}

#[test]
fn export_of_committed_container_equals_new_image_rootfs() {
    let d = TestDaemon::start();
    d.import_busybox("bb:exp");
    let c = format!("exp-{}", random_hex(6));
    sh(
        &d,
        &c,
        "bb:exp",
        "mkdir -p /a/b && echo hi > /a/b/f && chmod 4755 /a/b/f && ln /a/b/f /a/hard \
         && ln -s /a/b/f /a/soft && rm -rf /usr && chown 12:34 /a/b",
    );
    d.docker_ok(&["commit", &c, "exp:v1"]);
    let fresh = format!("fresh-{}", random_hex(6));
    d.docker_ok(&["run", "--name", &fresh, "exp:v1", "true"]);
    let before = export_map(&d, &c);
    let after = export_map(&d, &fresh);
    assert!(before.contains_key("a/b/f") && before.contains_key("a/soft"));
    assert!(!before.keys().any(|k| k.starts_with("usr")));
    assert_eq!(before, after);
}

#[test]
fn commit_never_follows_symlinks_to_host() {
    let d = TestDaemon::start();
    d.import_busybox("bb:host");
    let scratch = d.scratch_dir();
    std::fs::create_dir_all(&scratch).unwrap();
    let secret = format!("host-secret-{}", random_hex(12));
    let secret_path = scratch.join("secret");
    std::fs::write(&secret_path, &secret).unwrap();
    let sp = secret_path.to_string_lossy().into_owned();
    let c = format!("host-{}", random_hex(6));
    sh(
        &d,
        &c,
        "bb:host",
        &format!(
            "ln -s / /hostroot && ln -s {sp} /leak && mkdir -p /d && ln -s ../../../../.. /d/up \
             && ln -s {dir} /dirlink",
            dir = scratch.to_string_lossy()
        ),
    );
    d.docker_ok(&["commit", &c, "host:v1"]);
    let layer = top_layer(&d, "host:v1");
    assert_eq!(layer["hostroot"].0, tar::EntryType::Symlink);
    assert_eq!(layer["hostroot"].2, "/");
    assert_eq!(layer["leak"].2, sp);
    assert_eq!(layer["dirlink"].0, tar::EntryType::Symlink);
    assert!(
        layer
            .keys()
            .all(|k| !k.starts_with("hostroot/") && !k.starts_with("dirlink/")),
        "{:?}",
        layer.keys()
    );
    for (k, (_, data, _)) in &layer {
        assert!(
            !String::from_utf8_lossy(data).contains(&secret),
            "host file read through {k}"
        );
    }
    let o = d.docker(&["save", "host:v1"]);
    assert!(!String::from_utf8_lossy(&o.stdout).contains(&secret));
    let o = d.docker(&["export", &c]);
    assert!(!String::from_utf8_lossy(&o.stdout).contains(&secret));
    // The host file is untouched, and inside the new image the link leads nowhere.
    assert_eq!(std::fs::read_to_string(&secret_path).unwrap(), secret);
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "host:v1",
        "sh",
        "-c",
        "cat /leak || echo unreadable",
    ]);
    assert!(out.contains("unreadable"), "{out}");
}

#[test]
fn system_df_tables() {
    let d = TestDaemon::start();
    d.import_busybox("bb:df");
    let c = format!("df-{}", random_hex(6));
    sh(&d, &c, "bb:df", "head -c 5000 /dev/zero > /blob");
    let docker = d.docker_ok(&["system", "df"]);
    let lines: Vec<Vec<&str>> = docker
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
        "{docker}"
    );
    // busybox and the built-in hello-world; only busybox has a container.
    let n_images = d.docker_ok(&["images", "-q"]).lines().count().to_string();
    assert_eq!(
        lines[1][..3],
        ["Images", n_images.as_str(), "1"],
        "{docker}"
    );
    assert_eq!(lines[2][..4], ["Containers", "1", "0", "5kB"], "{docker}");
    assert_eq!(lines[2][4..], ["5kB", "(100%)"], "{docker}");
    assert_eq!(lines[3][..4], ["Local", "Volumes", "0", "0"], "{docker}");
    assert_eq!(
        lines[4],
        ["Build", "Cache", "0", "0", "0B", "0B"],
        "{docker}"
    );
    // berth's CLI prints the same table.
    assert_eq!(d.berth_ok(&["system", "df"]), docker);
    // -v: the same text ("N seconds ago" may tick between the two runs: a few attempts).
    let mut last = (String::new(), String::new());
    let same = (0..3).any(|_| {
        let v = d.docker_ok(&["system", "df", "-v"]);
        let bv = d.berth_ok(&["system", "df", "-v"]);
        last = (v, bv);
        last.0 == last.1
    });
    assert!(same, "docker:\n{}\nberth:\n{}", last.0, last.1);
    assert!(
        last.0.contains("Containers space usage:") && last.0.contains(&c),
        "{}",
        last.0
    );
}

/// Timing of `docker commit` of a small change through the CLI, and both CLIs' `system df -v`
/// (run with `--ignored --nocapture`).
#[test]
#[ignore]
fn bench_docker_commit() {
    let d = TestDaemon::start();
    d.import_busybox("bb:bench");
    let mut ms = Vec::new();
    for i in 0..5 {
        let c = format!("bench-{i}-{}", random_hex(4));
        sh(
            &d,
            &c,
            "bb:bench",
            "echo a > /a && mkdir -p /app && echo b > /app/b",
        );
        let t = std::time::Instant::now();
        d.docker_ok(&["commit", &c, &format!("bench:{i}")]);
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    eprintln!("docker commit (small diff): {ms:.1?} ms");
    eprintln!("docker:\n{}", d.docker_ok(&["system", "df", "-v"]));
    eprintln!("berth:\n{}", d.berth_ok(&["system", "df", "-v"]));
}

/// Entries of a store directory whose names start with `.tmp-`.
fn temps(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".tmp-"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn engine_killed_mid_commit_leaves_no_partial_layer() {
    let d = TestDaemon::start();
    d.import_busybox("bb:crash");
    let c = format!("crash-{}", random_hex(6));
    // ~40 MB in 200 files: the commit takes long enough to be caught in the middle.
    sh(
        &d,
        &c,
        "bb:crash",
        "mkdir /big && for i in $(seq 1 200); do head -c 200000 /dev/urandom > /big/f$i; done",
    );
    let layers = d.data_root().join("layers");
    let blobs = d.data_root().join("content/sha256");
    let layers_before: BTreeSet<String> = std::fs::read_dir(&layers)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let mut caught = false;
    std::thread::scope(|s| {
        let commit = s.spawn(|| d.docker(&["commit", &c, "crash:big"]));
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_secs(30) && !commit.is_finished() {
            if !temps(&layers).is_empty() {
                d.kill9();
                caught = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let _ = commit.join();
    });
    d.start_again();
    assert!(temps(&layers).is_empty(), "{:?}", temps(&layers));
    assert!(temps(&blobs).is_empty(), "{:?}", temps(&blobs));
    // Every layer dir has its info file, and the image is whole or absent.
    for e in std::fs::read_dir(&layers).unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if e.path().is_dir() {
            assert!(
                layers.join(format!("{n}.json")).is_file(),
                "{n} has no info"
            );
        }
    }
    let listed = d.docker_ok(&["images", "-q", "crash:big"]);
    if caught {
        eprintln!(
            "engine killed mid-commit; image listed: {:?}",
            listed.trim()
        );
    }
    if listed.trim().is_empty() {
        let after: BTreeSet<String> = std::fs::read_dir(&layers)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(after, layers_before);
    }
    // The container is still there and commits fine now.
    d.docker_ok(&["commit", &c, "crash:big"]);
    let n = d.docker_ok(&["run", "--rm", "crash:big", "sh", "-c", "ls /big | wc -l"]);
    assert_eq!(n.trim(), "200");
}
