//! Images end to end through the real docker CLI: import, images, inspect, tag, rmi, prune,
//! history, save/load (docker-archive and OCI layout), the built-in hello-world and Docker's
//! error shapes. Hostile archives and crash safety are in `image_safety.rs`.

mod common;
#[path = "images/helpers.rs"]
mod helpers;

use common::TestDaemon;
use helpers::*;

use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

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
