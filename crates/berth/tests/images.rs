//! Images end to end through the real docker CLI: import, images, inspect, tag, rmi, prune,
//! history, save/load (docker-archive and OCI layout), the built-in hello-world, hostile
//! archives, crash safety of import and load, and Docker's error shapes.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::TestDaemon;
use serde_json::Value;

// ---- helpers ----

fn sha256_hex(data: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum");
    let mut stdin = child.stdin.take().expect("stdin");
    let data = data.to_vec();
    let w = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().expect("sha256sum output");
    w.join().expect("writer").expect("write to sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("digest")
        .to_string()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let out = common::run_with_timeout(
        {
            let mut c = Command::new("gzip");
            c.arg("-c");
            c
        },
        Some(data),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "gzip failed");
    out.stdout
}

fn inspect(d: &TestDaemon, name: &str) -> Value {
    let out = d.docker_ok(&["image", "inspect", name]);
    let v: Value = serde_json::from_str(&out).expect("inspect JSON");
    v[0].clone()
}

/// `docker images -aq --no-trunc`, sorted.
fn image_ids(d: &TestDaemon) -> Vec<String> {
    let mut v: Vec<String> = d
        .docker_ok(&["images", "-aq", "--no-trunc"])
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v.dedup();
    v
}

/// A tar entry with raw (unchecked) names, as a hostile archive would have.
enum Ent {
    File(String, Vec<u8>),
    Dir(String),
    Symlink(String, String),
    Hardlink(String, String),
    CharDev(String, u32, u32),
    /// A regular file whose real name is in a PAX extended header.
    PaxFile(String, Vec<u8>),
}

fn file(n: &str, d: &[u8]) -> Ent {
    Ent::File(n.to_string(), d.to_vec())
}
fn symlink(n: &str, t: &str) -> Ent {
    Ent::Symlink(n.to_string(), t.to_string())
}
fn hardlink(n: &str, t: &str) -> Ent {
    Ent::Hardlink(n.to_string(), t.to_string())
}

fn raw_tar(entries: &[Ent]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        if let Ent::PaxFile(name, data) = e {
            // "<len> path=<name>\n", where <len> counts itself.
            let body = format!(" path={name}\n");
            let mut n = body.len() + 1;
            while (n.to_string().len() + body.len()) != n {
                n += 1;
            }
            let rec = format!("{n}{body}");
            let mut x = tar::Header::new_ustar();
            x.set_path("PaxHeaders/x").expect("path");
            x.set_entry_type(tar::EntryType::XHeader);
            x.set_size(rec.len() as u64);
            x.set_mode(0o644);
            x.set_cksum();
            b.append(&x, rec.as_bytes()).expect("pax");
            let mut h = tar::Header::new_ustar();
            h.set_path("innocent").expect("path");
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append(&h, &data[..]).expect("append");
            continue;
        }
        let mut h = tar::Header::new_old();
        let (name, link, ty, data): (&str, Option<&str>, tar::EntryType, &[u8]) = match e {
            Ent::File(n, d) => (n, None, tar::EntryType::Regular, d),
            Ent::Dir(n) => (n, None, tar::EntryType::Directory, &[]),
            Ent::Symlink(n, t) => (n, Some(t), tar::EntryType::Symlink, &[]),
            Ent::Hardlink(n, t) => (n, Some(t), tar::EntryType::Link, &[]),
            Ent::CharDev(n, _, _) => (n, None, tar::EntryType::Char, &[]),
            Ent::PaxFile(..) => unreachable!("handled above"),
        };
        {
            let old = h.as_old_mut();
            assert!(name.len() < 100, "name too long for a v7 header");
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(l) = link {
                old.linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
        }
        h.set_entry_type(ty);
        // Links carry an owner and mode: an unpacker that chowns/chmods through them would
        // change their (host) target.
        let link_entry = matches!(e, Ent::Symlink(..) | Ent::Hardlink(..));
        h.set_mode(match e {
            Ent::Dir(_) => 0o755,
            _ if link_entry => 0o777,
            _ => 0o644,
        });
        if link_entry {
            h.set_uid(4242);
            h.set_gid(4242);
        }
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        if let Ent::CharDev(_, maj, min) = e {
            let _ = h.set_device_major(*maj);
            let _ = h.set_device_minor(*min);
        }
        h.set_cksum();
        b.append(&h, data).expect("append");
    }
    b.into_inner().expect("tar")
}

/// A docker-archive (what `docker save` writes) with one image of the given layer tars.
fn docker_archive(layers: &[Vec<u8>], tag: &str) -> Vec<u8> {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| format!("sha256:{}", sha256_hex(l)))
        .collect();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    .to_string();
    let chex = sha256_hex(config.as_bytes());
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, path, data).expect("append");
    };
    add(&format!("{chex}.json"), config.as_bytes());
    let mut names = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let p = format!("layer{i}/layer.tar");
        add(&p, l);
        names.push(p);
    }
    let manifest = serde_json::json!([{
        "Config": format!("{chex}.json"), "RepoTags": [tag], "Layers": names,
    }])
    .to_string();
    add("manifest.json", manifest.as_bytes());
    b.into_inner().expect("tar")
}

/// Every path at or below `root` whose name starts with `.tmp-`.
fn temp_leftovers(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(".tmp-") {
                out.push(e.path());
            }
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(e.path());
            }
        }
    }
    out
}

fn all_temp_leftovers(d: &TestDaemon) -> Vec<PathBuf> {
    ["content", "layers", "tmp"]
        .iter()
        .flat_map(|s| temp_leftovers(&d.data_root().join(s)))
        .collect()
}

fn poll(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stderr_of(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

// ---- import, inspect, history ----

#[test]
fn import_file_stdin_gzip_with_changes() {
    let d = TestDaemon::start();
    let tar_path = common::busybox_rootfs_tar();
    let tar = fs::read(&tar_path).expect("busybox tar");
    let diff_id = format!("sha256:{}", sha256_hex(&tar));

    // From a file, with changes, a message and REPOSITORY:TAG.
    let id = d
        .docker_ok(&[
            "import",
            "-c",
            r#"CMD ["/bin/sh"]"#,
            "-c",
            "ENV A=b",
            "-m",
            "my message",
            &tar_path.to_string_lossy(),
            "imp/file:v1",
        ])
        .trim()
        .to_string();
    assert!(id.starts_with("sha256:") && id.len() == 71, "id: {id}");
    let v = inspect(&d, "imp/file:v1");
    assert_eq!(v["Id"], id.as_str());
    assert_eq!(v["RepoTags"], serde_json::json!(["imp/file:v1"]));
    assert_eq!(v["RootFS"]["Layers"], serde_json::json!([diff_id]));
    assert_eq!(v["Config"]["Cmd"], serde_json::json!(["/bin/sh"]));
    let env: Vec<String> = serde_json::from_value(v["Config"]["Env"].clone()).expect("Env");
    assert!(env.contains(&"A=b".to_string()), "Env: {env:?}");
    assert_eq!(v["Comment"], "my message");
    assert_eq!(v["Architecture"], "amd64");
    assert_eq!(v["Os"], "linux");
    // Size: the unpacked layer; at least the busybox binary, at most the tar.
    let size = v["Size"].as_u64().expect("Size");
    let bb = fs::metadata("/bin/busybox").expect("busybox").len();
    assert!(size >= bb && size <= tar.len() as u64, "Size {size}");

    // The id is the sha256 of the config blob: fetch it from `docker save`.
    let saved = d.scratch_dir().join("imp.tar");
    d.docker_ok(&["save", "-o", &saved.to_string_lossy(), "imp/file:v1"]);
    let mut ar = tar::Archive::new(fs::File::open(&saved).expect("saved"));
    let hex = id.trim_start_matches("sha256:");
    let mut config = None;
    for e in ar.entries().expect("entries") {
        let mut e = e.expect("entry");
        if e.path().expect("path").to_string_lossy() == format!("blobs/sha256/{hex}") {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut buf).expect("read");
            config = Some(buf);
        }
    }
    let config = config.expect("config blob in the saved archive");
    assert_eq!(sha256_hex(&config), hex);

    // history shows the message.
    let h = d.docker_ok(&["history", "--no-trunc", "imp/file:v1"]);
    assert!(h.contains("my message"), "history:\n{h}");
    assert_eq!(h.lines().count(), 2, "history:\n{h}");

    // From stdin: the same layer, the same diff id.
    let out = d.docker_stdin(&["import", "-", "imp/stdin"], &tar[..]);
    assert!(out.status.success(), "{}", d.describe(&out));
    let v = inspect(&d, "imp/stdin:latest");
    assert_eq!(v["RootFS"]["Layers"], serde_json::json!([diff_id]));
    assert_eq!(v["Comment"], "Imported from -");

    // gzip'd: the diff id is that of the uncompressed tar.
    let out = d.docker_stdin(&["import", "-", "imp/gz:1"], &gzip(&tar)[..]);
    assert!(out.status.success(), "{}", d.describe(&out));
    let v = inspect(&d, "imp/gz:1");
    assert_eq!(v["RootFS"]["Layers"], serde_json::json!([diff_id]));
    let out = d.docker_ok(&["run", "--rm", "imp/gz:1", "cat", "/etc/group"]);
    assert!(out.starts_with("root:x:0:"), "{out}");

    // CMD from the import is what a container runs.
    let out = d.docker_ok(&["run", "--rm", "imp/file:v1", "sh", "-c", "echo $A"]);
    assert_eq!(out, "b\n");
}

#[test]
fn images_list_flags_and_filters() {
    let d = TestDaemon::start();
    let tar = common::busybox_rootfs_tar();
    let tar = tar.to_string_lossy();
    let bb = d.import_busybox("busybox:latest");
    let labeled = d
        .docker_ok(&["import", "-c", "LABEL team=blue", &tar, "other:1"])
        .trim()
        .to_string();
    let dangling = d.docker_ok(&["import", &tar]).trim().to_string();
    assert_ne!(bb, labeled);

    let q = d.docker_ok(&["images", "-q"]);
    let short = |id: &str| id.trim_start_matches("sha256:")[..12].to_string();
    for id in [&bb, &labeled] {
        assert!(q.lines().any(|l| l == short(id)), "{id} not in -q:\n{q}");
    }
    // Docker hides dangling images only with intermediate parents; a top-level <none> shows.
    let all = d.docker_ok(&["images", "-a", "--no-trunc"]);
    assert!(all.contains(&dangling), "-a --no-trunc:\n{all}");
    assert!(all.contains("hello-world"), "{all}");

    let f = d.docker_ok(&["images", "-q", "--no-trunc", "--filter", "dangling=true"]);
    assert_eq!(f.lines().collect::<Vec<_>>(), vec![dangling.as_str()]);
    let f = d.docker_ok(&[
        "images",
        "--format",
        "{{.Repository}}",
        "--filter",
        "reference=bus*",
    ]);
    assert_eq!(f.lines().collect::<Vec<_>>(), vec!["busybox"]);
    let f = d.docker_ok(&["images", "-q", "--no-trunc", "--filter", "label=team=blue"]);
    assert_eq!(f.lines().collect::<Vec<_>>(), vec![labeled.as_str()]);
    let f = d.docker_ok(&["images", "-q", "--filter", "label=team=red"]);
    assert_eq!(f, "");
    let out = d.docker(&["images", "--filter", "nosuch=1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_of(&out).contains("Error response from daemon: invalid filter 'nosuch'"));
}

#[test]
fn tag_moves_and_rmi_rules() {
    let d = TestDaemon::start();
    let tar = common::busybox_rootfs_tar();
    let a = d.import_busybox("busybox");
    let b = d
        .docker_ok(&["import", "-c", "ENV X=1", &tar.to_string_lossy()])
        .trim()
        .to_string();
    d.docker_ok(&["tag", "busybox", "localhost:5000/x/y:1"]);
    assert_eq!(inspect(&d, "localhost:5000/x/y:1")["Id"], a.as_str());
    let tags = inspect(&d, &a)["RepoTags"].clone();
    assert_eq!(
        tags,
        serde_json::json!(["busybox:latest", "localhost:5000/x/y:1"])
    );
    // Tagging another image with an existing name moves the tag.
    d.docker_ok(&["tag", &b, "localhost:5000/x/y:1"]);
    assert_eq!(inspect(&d, "localhost:5000/x/y:1")["Id"], b.as_str());
    assert_eq!(
        inspect(&d, &a)["RepoTags"],
        serde_json::json!(["busybox:latest"])
    );

    // Untag while other tags remain; the image stays.
    d.docker_ok(&["tag", "busybox", "bb2"]);
    let out = d.docker_ok(&["rmi", "bb2"]);
    assert_eq!(out.trim(), "Untagged: bb2:latest");
    assert_eq!(inspect(&d, "busybox")["Id"], a.as_str());

    // A stopped container uses `busybox`: 409 without -f.
    let cid = d
        .docker_ok(&["create", "busybox", "true"])
        .trim()
        .to_string();
    let (st, v) = d.api_json("DELETE", "/v1.47/images/busybox", None);
    assert_eq!(st, 409, "{v}");
    let msg = v["message"].as_str().unwrap_or_default().to_string();
    assert!(
        msg.starts_with(
            "conflict: unable to remove repository reference \"busybox\" (must force) - container "
        ) && msg.contains(&cid[..12]),
        "{msg}"
    );
    let e = d.docker_err(&["rmi", "busybox"]);
    assert!(e.starts_with("Error response from daemon: conflict"), "{e}");
    let e = d.docker_err(&["rmi", &a]);
    assert!(
        e.contains("(must be forced) - image is being used by stopped container"),
        "{e}"
    );
    // A running container: refused even with -f.
    let run = d
        .docker_ok(&["run", "-d", "busybox", "sleep", "1000"])
        .trim()
        .to_string();
    let e = d.docker_err(&["rmi", "-f", &a]);
    assert!(
        e.contains("(cannot be forced) - image is being used by running container"),
        "{e}"
    );
    let (st, v) = d.api_json("DELETE", &format!("/v1.47/images/{a}?force=1"), None);
    assert_eq!(st, 409, "{v}");
    assert_eq!(inspect(&d, &a)["Id"], a.as_str());
    // By name, -f only untags (as Docker: the conflict is not reported once the tag is gone).
    let out = d.docker_ok(&["rmi", "-f", "busybox"]);
    assert_eq!(out.trim(), "Untagged: busybox:latest");
    assert_eq!(inspect(&d, &a)["RepoTags"], serde_json::json!([]));
    d.docker_ok(&["tag", &a, "busybox"]);
    d.docker_ok(&["rm", "-f", &run]);
    // -f with only the stopped container left: deleted.
    let out = d.docker_ok(&["rmi", "-f", "busybox"]);
    assert!(out.contains("Untagged: busybox:latest"), "{out}");
    assert!(out.contains(&format!("Deleted: {a}")), "{out}");
    let e = d.docker_err(&["image", "inspect", &a]);
    assert!(e.contains("No such image"), "{e}");
    d.docker_ok(&["rm", &cid]);

    // An unused image: deleted with its tag and layer.
    let out = d.docker_ok(&["rmi", "localhost:5000/x/y:1"]);
    assert!(out.contains("Untagged: localhost:5000/x/y:1"), "{out}");
    assert!(out.contains(&format!("Deleted: {b}")), "{out}");
    assert!(!image_ids(&d).contains(&b));
}

#[test]
fn image_prune_dangling_and_all() {
    let d = TestDaemon::start();
    let tar = common::busybox_rootfs_tar();
    let tar = tar.to_string_lossy();
    let used = d.import_busybox("busybox");
    let unused = d
        .docker_ok(&["import", "-c", "ENV U=1", &tar, "unused:1"])
        .trim()
        .to_string();
    let dangling = d
        .docker_ok(&["import", "-c", "ENV D=1", &tar])
        .trim()
        .to_string();
    let cid = d
        .docker_ok(&["create", "busybox", "true"])
        .trim()
        .to_string();

    let out = d.docker_ok(&["image", "prune", "-f"]);
    assert!(out.contains(&format!("deleted: {dangling}")), "{out}");
    assert!(out.contains("Total reclaimed space:"), "{out}");
    let ids = image_ids(&d);
    assert!(!ids.contains(&dangling) && ids.contains(&unused) && ids.contains(&used));

    let out = d.docker_ok(&["image", "prune", "-a", "-f"]);
    assert!(out.contains(&format!("deleted: {unused}")), "{out}");
    assert!(out.contains("untagged: unused:1"), "{out}");
    let ids = image_ids(&d);
    assert!(!ids.contains(&unused), "{ids:?}");
    assert!(
        ids.contains(&used),
        "an image a container uses survives prune -a"
    );
    d.docker_ok(&["rm", &cid]);
}

// ---- save / load ----

#[test]
fn save_load_round_trip_docker_and_oci() {
    let src = TestDaemon::start();
    let id = src.import_busybox("busybox:latest");
    src.docker_ok(&["tag", "busybox", "localhost:5000/bb:2"]);
    let dir = src.scratch_dir();

    // docker save to stdout → docker load from stdin.
    let out = src.docker(&["save", "busybox:latest", "localhost:5000/bb:2"]);
    assert!(out.status.success(), "{}", src.describe(&out));
    let archive = out.stdout;
    let dst = TestDaemon::start();
    let out = dst.docker_stdin(&["load"], &archive[..]);
    assert!(out.status.success(), "{}", dst.describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Loaded image: busybox:latest"), "{text}");
    assert!(text.contains("Loaded image: localhost:5000/bb:2"), "{text}");
    let v = inspect(&dst, "busybox");
    assert_eq!(v["Id"], id.as_str());
    assert_eq!(
        v["RepoTags"],
        serde_json::json!(["busybox:latest", "localhost:5000/bb:2"])
    );
    assert_eq!(v["RootFS"], inspect(&src, "busybox")["RootFS"]);
    assert_eq!(
        dst.docker_ok(&["run", "--rm", "busybox", "echo", "ok"]),
        "ok\n"
    );

    // save -o / load -i, into a third engine.
    let file = dir.join("bb.tar");
    src.docker_ok(&["save", "-o", &file.to_string_lossy(), "busybox"]);
    let third = TestDaemon::start();
    let out = third.docker_ok(&["load", "-i", &file.to_string_lossy()]);
    assert!(out.contains("Loaded image: busybox:latest"), "{out}");
    assert_eq!(inspect(&third, "busybox")["Id"], id.as_str());

    // An OCI layout written by skopeo.
    let oci = dir.join("bb-oci.tar");
    let st = Command::new("skopeo")
        .arg("copy")
        .arg(format!("docker-archive:{}", file.display()))
        .arg(format!("oci-archive:{}:busybox:oci", oci.display()))
        .output()
        .expect("skopeo");
    assert!(st.status.success(), "skopeo: {}", stderr_of(&st));
    let fourth = TestDaemon::start();
    let out = fourth.docker_ok(&["load", "-i", &oci.to_string_lossy()]);
    assert!(out.contains("Loaded image"), "{out}");
    // skopeo rewrites the config as an OCI config (and gzips the layer): the id is the digest of
    // the config it wrote; the diff ids are unchanged.
    let v = inspect(&fourth, "busybox:oci");
    assert_eq!(v["Id"], oci_config_digest(&oci).as_str());
    assert_eq!(v["RootFS"], inspect(&src, "busybox")["RootFS"]);
    assert_eq!(
        fourth.docker_ok(&["run", "--rm", "busybox:oci", "echo", "oci"]),
        "oci\n"
    );

    // berth save / berth load.
    let bfile = dir.join("berth.tar");
    src.berth_ok(&[
        "save",
        "-o",
        &bfile.to_string_lossy(),
        "localhost:5000/bb:2",
    ]);
    let out = fourth.berth_ok(&["load", "-i", &bfile.to_string_lossy()]);
    assert!(out.contains("Loaded image: localhost:5000/bb:2"), "{out}");
    assert_eq!(inspect(&fourth, "localhost:5000/bb:2")["Id"], id.as_str());
}

/// The config digest of the only image of an OCI-layout tarball.
fn oci_config_digest(path: &Path) -> String {
    let mut files = std::collections::HashMap::new();
    let mut ar = tar::Archive::new(fs::File::open(path).expect("oci archive"));
    for e in ar.entries().expect("entries") {
        let mut e = e.expect("entry");
        if e.size() > 1 << 20 {
            continue;
        }
        let name = e.path().expect("path").to_string_lossy().into_owned();
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut buf).expect("read");
        files.insert(name, buf);
    }
    let json = |name: &str| -> Value {
        serde_json::from_slice(files.get(name).unwrap_or_else(|| panic!("{name} missing")))
            .expect("json")
    };
    let index = json("index.json");
    let m = index["manifests"][0]["digest"].as_str().expect("digest");
    let manifest = json(&format!("blobs/sha256/{}", m.trim_start_matches("sha256:")));
    manifest["config"]["digest"]
        .as_str()
        .expect("config")
        .to_string()
}

// ---- hello-world ----

#[test]
fn hello_world_is_built_in() {
    let d = TestDaemon::start();
    let out = d.docker_ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(out.trim(), "hello-world:latest");
    let a = inspect(&d, "hello-world")["Id"].clone();
    let out = d.docker_ok(&["run", "--rm", "hello-world"]);
    assert!(out.contains("Hello from berth!"), "{out}");
    let out = d.berth_ok(&["run", "hello-world"]);
    assert!(out.contains("Hello from berth!"), "{out}");
    // Byte-identical in another engine.
    let d2 = TestDaemon::start();
    assert_eq!(inspect(&d2, "hello-world")["Id"], a);
}

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

// ---- error shapes ----

#[test]
fn error_shapes_match_docker() {
    let d = TestDaemon::start();
    d.import_busybox("busybox");
    let (st, v) = d.api_json("GET", "/v1.47/images/nosuch/json", None);
    assert_eq!(st, 404);
    assert_eq!(v["message"], "No such image: nosuch:latest");
    let out = d.docker(&["image", "inspect", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr_of(&out).trim(),
        "Error response from daemon: No such image: nosuch:latest"
    );
    let e = d.docker_err(&["rmi", "nosuch"]);
    assert_eq!(
        e.trim(),
        "Error response from daemon: No such image: nosuch:latest"
    );
    let e = d.docker_err(&["tag", "busybox", "Bad:Name"]);
    assert!(e.contains("invalid reference format"), "{e}");
    let e = d.docker_err(&["tag", "nosuch", "x:y"]);
    assert_eq!(
        e.trim(),
        "Error response from daemon: No such image: nosuch:latest"
    );
    // The API itself refuses a bad reference with 400.
    let (st, v) = d.api_json("POST", "/v1.47/images/busybox/tag?repo=Bad&tag=Name", None);
    assert_eq!(st, 400, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains("invalid reference format"),
        "{v}"
    );
    let (st, v) = d.api_json("GET", "/v1.99/version", None);
    assert_eq!(st, 400);
    assert_eq!(
        v["message"],
        "client version 1.99 is too new. Maximum supported API version is 1.50"
    );
    let e = d.docker_err(&["save", "nosuch"]);
    assert!(e.contains("No such image: nosuch"), "{e}");
    let out = d.docker_stdin(&["load"], &b"not a tar at all"[..]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).starts_with("Error response from daemon: "),
        "{}",
        stderr_of(&out)
    );
    let e = d.docker_err(&[
        "import",
        "-c",
        "BOGUS x",
        &common::busybox_rootfs_tar().to_string_lossy(),
    ]);
    assert!(e.contains("BOGUS is not a valid change command"), "{e}");
}

/// `rmi -f` of an image a stopped container uses: the container still starts (it keeps its own
/// chain of layers), also after the engine restarts and reconciles unreferenced layers.
#[test]
fn force_removed_image_keeps_its_containers_startable() {
    let d = TestDaemon::start();
    let id = d.import_busybox("busybox:forced");
    d.docker_ok(&[
        "create",
        "--name",
        "orphaned",
        "busybox:forced",
        "echo",
        "still-here",
    ]);
    d.docker_ok(&["rmi", "-f", "busybox:forced"]);
    let short = id.trim().trim_start_matches("sha256:")[..12].to_string();
    assert!(
        !image_ids(&d).iter().any(|i| i.contains(&short)),
        "the image record should be gone"
    );
    let out = d.docker_ok(&["start", "-a", "orphaned"]);
    assert_eq!(out.trim(), "still-here");
    d.kill9();
    d.start_again();
    let out = d.docker_ok(&["start", "-a", "orphaned"]);
    assert_eq!(out.trim(), "still-here");
}
