//! Untrusted input and crashes: hostile tarballs through `docker import` and inside `docker load`
//! archives never write outside their target, and a `kill -9` of the engine in the middle of an
//! import or a load leaves nothing half-written.

mod common;
#[path = "images/helpers.rs"]
mod helpers;

use common::TestDaemon;
use helpers::*;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

// ---- hostile archives ----

struct Sentinels {
    host: Vec<PathBuf>,
    victims: Vec<PathBuf>,
    /// (mode, uid, gid, mtime) of each victim.
    victim_md: Vec<(u32, u32, u32, i64)>,
    passwd: Vec<u8>,
    passwd_nlink: u64,
}

impl Sentinels {
    fn new(d: &TestDaemon, rand: &str) -> Sentinels {
        let victims = vec![
            d.data_root().join(format!("victim-{rand}")),
            d.data_root().join("layers").join(format!("victim-{rand}")),
            PathBuf::from(format!("/tmp/berth-victim-{rand}")),
        ];
        let mut victim_md = Vec::new();
        for v in &victims {
            fs::write(v, "victim").expect("victim");
            fs::set_permissions(v, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .expect("chmod");
            let m = fs::metadata(v).expect("victim");
            victim_md.push((m.mode(), m.uid(), m.gid(), m.mtime()));
        }
        let md = fs::metadata("/etc/passwd").expect("/etc/passwd");
        Sentinels {
            host: vec![
                PathBuf::from(format!("/etc/berth-pwned-{rand}")),
                PathBuf::from(format!("/tmp/berth-pwned-{rand}")),
                d.data_root().join(format!("berth-pwned-{rand}")),
                d.data_root()
                    .join("layers")
                    .join(format!("berth-pwned-{rand}")),
                d.data_root()
                    .join("tmp")
                    .join(format!("berth-pwned-{rand}")),
            ],
            victims,
            victim_md,
            passwd: fs::read("/etc/passwd").expect("/etc/passwd"),
            passwd_nlink: md.nlink(),
        }
    }

    fn check(&self, case: &str, d: &TestDaemon) {
        for p in &self.host {
            assert!(!p.exists(), "{case}: {} was written", p.display());
        }
        for (p, md) in self.victims.iter().zip(&self.victim_md) {
            let m =
                fs::metadata(p).unwrap_or_else(|_| panic!("{case}: {} was removed", p.display()));
            assert_eq!(
                (m.mode(), m.uid(), m.gid(), m.mtime()),
                *md,
                "{case}: {} was changed",
                p.display()
            );
        }
        assert_eq!(
            fs::read("/etc/passwd").expect("passwd"),
            self.passwd,
            "{case}"
        );
        let md = fs::metadata("/etc/passwd").expect("passwd");
        assert_eq!(
            md.nlink(),
            self.passwd_nlink,
            "{case}: /etc/passwd was linked"
        );
        // No device node and no link to the host's /etc/passwd anywhere in the store.
        let mut stack = vec![d.data_root().to_path_buf()];
        while let Some(dir) = stack.pop() {
            let Ok(rd) = fs::read_dir(&dir) else { continue };
            for e in rd.flatten() {
                let Ok(m) = e.path().symlink_metadata() else {
                    continue;
                };
                let ft = m.file_type();
                assert!(
                    !(ft.is_block_device() || (ft.is_char_device() && m.rdev() != 0)),
                    "{case}: device node {}",
                    e.path().display()
                );
                assert!(
                    !(m.ino() == md.ino() && m.dev() == md.dev()),
                    "{case}: {} is /etc/passwd",
                    e.path().display()
                );
                if ft.is_dir() {
                    stack.push(e.path());
                }
            }
        }
    }
}

impl Drop for Sentinels {
    /// Also when a check failed: no victim files are left in /tmp.
    fn drop(&mut self) {
        for p in self.victims.iter().chain(self.host.iter()) {
            let _ = fs::remove_file(p);
        }
    }
}

/// The hostile layer tars: (case, tar).
fn hostile_layers(rand: &str) -> Vec<(String, Vec<u8>)> {
    let up = "../".repeat(12);
    let p = |s: &str| s.replace("RAND", rand).replace("UP/", &up);
    let f = |n: &str| file(&p(n), b"x");
    let wh = |n: &str| file(&p(n), b"");
    let cases: Vec<(&str, Vec<Ent>)> = vec![
        ("absolute", vec![f("/etc/berth-pwned-RAND")]),
        ("dotdot", vec![f("../../berth-pwned-RAND")]),
        ("dotdot-deep", vec![f("UP/tmp/berth-pwned-RAND")]),
        (
            "symlink-root",
            vec![symlink("escape", "/"), f("escape/tmp/berth-pwned-RAND")],
        ),
        (
            "symlink-up",
            vec![symlink("up", &p("UP/tmp")), f("up/berth-pwned-RAND")],
        ),
        (
            "symlink-dir-then-dir",
            vec![
                symlink("d", &p("UP/tmp")),
                Ent::Dir("d/".to_string()),
                f("d/berth-pwned-RAND"),
            ],
        ),
        (
            "hardlink-passwd",
            vec![hardlink("pw", "/etc/passwd"), file("pw", b"pwned")],
        ),
        (
            "hardlink-dotdot",
            vec![hardlink("pw2", &p("UP/etc/passwd"))],
        ),
        (
            "hardlink-via-symlink",
            vec![symlink("e", "/etc"), hardlink("pw3", "e/passwd")],
        ),
        (
            "file-over-symlink",
            vec![symlink("x", &p("/tmp/berth-pwned-RAND")), f("x")],
        ),
        (
            "hardlink-to-outside-symlink",
            vec![
                symlink("s", &p("/tmp/berth-pwned-RAND")),
                hardlink("h", "s"),
                f("h"),
            ],
        ),
        (
            "dir-through-symlink",
            vec![symlink("e", "/tmp"), Ent::Dir(p("e/berth-pwned-RAND/"))],
        ),
        (
            "pax-path",
            vec![Ent::PaxFile(p("UP/tmp/berth-pwned-RAND"), b"x".to_vec())],
        ),
        (
            "metadata-through-symlink",
            vec![symlink("v", &p("/tmp/berth-victim-RAND"))],
        ),
        ("whiteout-up", vec![wh("../.wh.victim-RAND")]),
        ("whiteout-deep", vec![wh("UP/tmp/.wh.berth-victim-RAND")]),
        (
            "whiteout-via-symlink",
            vec![symlink("t", "/tmp"), wh("t/.wh.berth-victim-RAND")],
        ),
        (
            "devices",
            vec![
                Ent::Dir("dev/".to_string()),
                Ent::CharDev("dev/mem".to_string(), 1, 1),
                Ent::CharDev("sda".to_string(), 8, 0),
                file("ok", b"fine"),
            ],
        ),
    ];
    cases
        .into_iter()
        .map(|(name, ents)| (name.to_string(), raw_tar(&ents)))
        .collect()
}

/// Rejected with 400 and Docker's CLI shape, or accepted with everything contained.
fn check_hostile(d: &TestDaemon, case: &str, out: &std::process::Output, before: &[String]) {
    if out.status.success() {
        return;
    }
    assert_eq!(out.status.code(), Some(1), "{case}: {}", d.describe(out));
    let e = stderr_of(out);
    assert!(e.starts_with("Error response from daemon: "), "{case}: {e}");
    assert_eq!(image_ids(d), before, "{case}: an image was recorded");
}

/// An accepted hostile layer: what it wrote is inside its layer dir.
fn check_contained(d: &TestDaemon, case: &str, image: &str, rand: &str) {
    let v = inspect(d, image);
    let diff = v["RootFS"]["Layers"][0].as_str().expect("layer");
    let dir = d
        .data_root()
        .join("layers")
        .join(diff.trim_start_matches("sha256:"));
    let read = |p: &str| fs::read_to_string(dir.join(p)).ok();
    let pwned = format!("berth-pwned-{rand}");
    match case {
        "absolute" => assert_eq!(read(&format!("etc/{pwned}")).as_deref(), Some("x")),
        "symlink-dir-then-dir" => {
            assert!(dir.join("d").symlink_metadata().expect("d").is_dir());
            assert_eq!(read(&format!("d/{pwned}")).as_deref(), Some("x"));
        }
        "devices" => {
            assert_eq!(read("ok").as_deref(), Some("fine"));
            for p in ["sda", "dev/mem"] {
                assert!(dir.join(p).symlink_metadata().is_err(), "{p} was created");
            }
        }
        // The later entry replaces the link; it is not written through it.
        "file-over-symlink" | "hardlink-to-outside-symlink" => {
            let name = if case == "file-over-symlink" {
                "x"
            } else {
                "h"
            };
            assert!(dir.join(name).symlink_metadata().expect(name).is_file());
            assert_eq!(read(name).as_deref(), Some("x"));
        }
        // A dangling symlink is fine in a layer; its owner is the link's own.
        "metadata-through-symlink" => {
            let m = dir.join("v").symlink_metadata().expect("v");
            assert!(m.file_type().is_symlink());
            assert_eq!(m.uid(), 4242);
        }
        other => panic!("{other}: accepted, should have been refused"),
    }
}

#[test]
fn hostile_import_tarballs() {
    let d = TestDaemon::start();
    let rand = common::random_hex(8);
    let s = Sentinels::new(&d, &rand);
    let before = image_ids(&d);
    for (case, tar) in hostile_layers(&rand) {
        // Through the API: a rejection is a 400 with a message.
        let (st, body) = d.api_raw(
            "POST",
            "/v1.47/images/create?fromSrc=-&repo=hostile&tag=api",
            Some(&tar),
            "application/x-tar",
        );
        let body = String::from_utf8_lossy(&body).into_owned();
        assert!(
            st == 200 || (st == 400 && body.contains("\"message\"")),
            "{case}: {st} {body}"
        );
        s.check(&case, &d);
        let out = d.docker_stdin(&["import", "-", &format!("hostile:{case}")], &tar[..]);
        s.check(&case, &d);
        if st == 400 {
            assert!(
                !out.status.success(),
                "{case}: CLI accepted what the API refused"
            );
        }
        check_hostile(&d, &case, &out, &before);
        if out.status.success() {
            check_contained(&d, &case, &format!("hostile:{case}"), &rand);
        }
        for tag in [format!("hostile:{case}"), "hostile:api".to_string()] {
            let _ = d.docker(&["rmi", &tag]);
        }
        assert!(all_temp_leftovers(&d).is_empty(), "{case}: temp files left");
    }
}

#[test]
fn hostile_load_archives() {
    let d = TestDaemon::start();
    let rand = common::random_hex(8);
    let s = Sentinels::new(&d, &rand);
    let before = image_ids(&d);
    for (case, layer) in hostile_layers(&rand) {
        let archive = docker_archive(&[layer], &format!("hostile:{case}"));
        let out = d.docker_stdin(&["load"], &archive[..]);
        s.check(&case, &d);
        check_hostile(&d, &case, &out, &before);
        if out.status.success() {
            check_contained(&d, &case, &format!("hostile:{case}"), &rand);
        }
        let _ = d.docker(&["rmi", &format!("hostile:{case}")]);
    }
    // The archive itself hostile: its own paths escape, or its manifest points outside.
    let up = "../".repeat(12);
    let outer: Vec<(&str, Vec<u8>)> = vec![
        (
            "archive-abs",
            raw_tar(&[file(&format!("/tmp/berth-pwned-{rand}"), b"x")]),
        ),
        (
            "archive-dotdot",
            raw_tar(&[file(&format!("{up}tmp/berth-pwned-{rand}"), b"x")]),
        ),
        (
            "archive-symlink",
            raw_tar(&[
                symlink("s", "/tmp"),
                file(&format!("s/berth-pwned-{rand}"), b"x"),
            ]),
        ),
        (
            "manifest-outside",
            raw_tar(&[file(
                "manifest.json",
                br#"[{"Config":"../../../../../../etc/passwd","RepoTags":["x:y"],"Layers":[]}]"#,
            )]),
        ),
        (
            "manifest-symlink",
            raw_tar(&[
                symlink("c.json", "/etc/passwd"),
                file(
                    "manifest.json",
                    br#"[{"Config":"c.json","RepoTags":["x:y"],"Layers":[]}]"#,
                ),
            ]),
        ),
    ];
    for (case, archive) in outer {
        let out = d.docker_stdin(&["load"], &archive[..]);
        s.check(case, &d);
        assert!(!out.status.success(), "{case} was loaded");
        check_hostile(&d, case, &out, &before);
        let (st, body) = d.api_raw(
            "POST",
            "/v1.47/images/load",
            Some(&archive),
            "application/x-tar",
        );
        assert_eq!(st, 400, "{case}: {}", String::from_utf8_lossy(&body));
    }
    assert!(all_temp_leftovers(&d).is_empty());
}

// ---- crash safety ----

/// Feed `total` bytes of a tar stream (`header` then random data) to `docker <args>` through a
/// pipe; after `kill_at` bytes, SIGKILL the engine, then close the pipe. Returns the CLI's status.
fn kill_mid_stream(d: &TestDaemon, args: &[&str], prefix: &[u8], kill_at: usize) -> bool {
    let mut cmd = Command::new(common::docker_exe());
    cmd.env("DOCKER_HOST", d.host())
        .env_remove("DOCKER_CONTEXT")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("docker");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(prefix).expect("write header");
    let mut urandom = fs::File::open("/dev/urandom").expect("urandom");
    let mut buf = vec![0u8; 1 << 20];
    let mut sent = 0;
    while sent < kill_at {
        std::io::Read::read_exact(&mut urandom, &mut buf).expect("urandom");
        stdin.write_all(&buf).expect("write to docker");
        sent += buf.len();
    }
    // The engine is writing a temp file now.
    poll("a temp file of the import", Duration::from_secs(30), || {
        !all_temp_leftovers(d).is_empty()
    });
    d.kill9();
    drop(stdin);
    let st = child.wait().expect("wait docker");
    st.success()
}

fn tar_header(name: &str, size: u64) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.set_path(name).expect("path");
    h.set_size(size);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    h.as_bytes().to_vec()
}

fn assert_clean_after_crash(d: &TestDaemon, before: &[String]) {
    d.start_again();
    assert_eq!(image_ids(d), before, "a partial image was recorded");
    let left = all_temp_leftovers(d);
    assert!(left.is_empty(), "temp leftovers: {left:?}");
    let tmp: Vec<_> = fs::read_dir(d.data_root().join("tmp"))
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(tmp.is_empty(), "tmp/ not empty: {tmp:?}");
    // Every blob left belongs to a recorded image (config or layer).
    let mut known = Vec::new();
    for id in image_ids(d) {
        let v = inspect(d, &id);
        known.push(id.trim_start_matches("sha256:").to_string());
        for l in v["RootFS"]["Layers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            known.push(
                l.as_str()
                    .unwrap_or_default()
                    .trim_start_matches("sha256:")
                    .to_string(),
            );
        }
    }
    let blobs = d.data_root().join("content/sha256");
    for e in fs::read_dir(&blobs).expect("blobs").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(known.contains(&name), "orphan blob {name} after the crash");
    }
}

#[test]
fn kill9_during_import_leaves_nothing() {
    let d = TestDaemon::start();
    let before = image_ids(&d);
    let size: u64 = 200 << 20;
    let header = tar_header("big1", size);
    let ok = kill_mid_stream(&d, &["import", "-", "big:1"], &header, 100 << 20);
    assert!(!ok, "the import succeeded although the engine was killed");
    assert_clean_after_crash(&d, &before);
    // A retried import succeeds.
    let id = d.import_busybox("retry:1");
    assert_eq!(inspect(&d, "retry:1")["Id"], id.as_str());
}

/// The whole stream is sent; the kill comes while the layer is being unpacked (after its blob
/// was stored, before the image is recorded).
#[test]
fn kill9_during_unpack_leaves_nothing() {
    let d = TestDaemon::start();
    let before = image_ids(&d);
    let mut data = Vec::new();
    let mut urandom = fs::File::open("/dev/urandom").expect("urandom");
    let mut chunk = vec![0u8; 40 << 20];
    for i in 0..5 {
        std::io::Read::read_exact(&mut urandom, &mut chunk).expect("urandom");
        data.extend_from_slice(&tar_header(&format!("f{i}"), chunk.len() as u64));
        data.extend_from_slice(&chunk);
    }
    data.extend_from_slice(&[0u8; 1024]);
    let mut child = Command::new(common::docker_exe())
        .env("DOCKER_HOST", d.host())
        .args(["import", "-", "big:2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker");
    let mut stdin = child.stdin.take().expect("stdin");
    let w = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let layers = d.data_root().join("layers");
    poll("the layer's temp dir", Duration::from_secs(60), || {
        !temp_leftovers(&layers).is_empty()
    });
    d.kill9();
    let _ = w.join();
    assert!(!child.wait().expect("wait").success());
    assert_clean_after_crash(&d, &before);
    d.import_busybox("retry:3");
}

#[test]
fn kill9_during_load_leaves_nothing() {
    let d = TestDaemon::start();
    let before = image_ids(&d);
    let header = tar_header("layer0/layer.tar", 200 << 20);
    let ok = kill_mid_stream(&d, &["load"], &header, 100 << 20);
    assert!(!ok, "the load succeeded although the engine was killed");
    assert_clean_after_crash(&d, &before);
    let layer = fs::read(common::busybox_rootfs_tar()).expect("tar");
    let out = d.docker_stdin(&["load"], &docker_archive(&[layer], "retry:2")[..]);
    assert!(out.status.success(), "{}", d.describe(&out));
    d.docker_ok(&["run", "--rm", "retry:2", "true"]);
}

#[test]
fn leftover_container_dirs_removed_at_start() {
    let d = TestDaemon::start();
    d.import_busybox("busybox");
    let keep = d
        .docker_ok(&["create", "busybox", "true"])
        .trim()
        .to_string();
    d.kill9();
    let fake = d
        .data_root()
        .join("containers")
        .join(common::random_hex(64));
    fs::create_dir_all(fake.join("upper/etc")).expect("fake dir");
    fs::write(fake.join("hostname"), "x").expect("file");
    d.start_again();
    assert!(!fake.exists(), "{} left", fake.display());
    assert!(d.data_root().join("containers").join(&keep).is_dir());
    d.docker_ok(&["start", "-a", &keep]);
}
