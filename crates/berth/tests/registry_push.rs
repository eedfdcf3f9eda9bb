//! `docker push`, `docker login`/`logout` (and berth's own CLI) against Debian's docker-registry
//! on 127.0.0.1: uploads, "Layer already exists", cross-repository mounts, `push -a`, tags that
//! move while digests stay, Basic auth with an htpasswd file, Docker's error for a missing image,
//! and what skopeo sees of the result.

mod common;

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::registry::{header, Registry};
use common::{random_hex, run_with_timeout, TestDaemon};
use serde_json::Value;

/// `docker push` (or `berth push`) output, stdout and stderr together.
fn push_out(d: &TestDaemon, cli: &str, args: &[&str]) -> String {
    let out = if cli == "docker" {
        d.docker(args)
    } else {
        d.berth(args)
    };
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{cli} {args:?} failed\n{}",
        d.describe(&out)
    );
    all
}

/// The digest printed by push: "TAG: digest: sha256:... size: N".
fn pushed_digest(out: &str, tag: &str) -> String {
    let prefix = format!("{tag}: digest: ");
    let line = out
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no digest line for {tag} in:\n{out}"));
    let rest = &line[prefix.len()..];
    let d = rest.split(' ').next().unwrap_or("").to_string();
    assert!(d.starts_with("sha256:") && d.len() == 71, "{line}");
    assert!(rest.contains(" size: "), "{line}");
    d
}

fn skopeo_inspect(reg: &Registry, repo_tag: &str, raw: bool) -> Value {
    let mut cmd = Command::new("skopeo");
    cmd.args(["inspect", "--tls-verify=false"]);
    if raw {
        cmd.arg("--raw");
    }
    cmd.arg(format!("docker://{}/{repo_tag}", reg.addr()));
    let out = run_with_timeout(cmd, None, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "skopeo inspect {repo_tag}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("skopeo json")
}

fn image_id(d: &TestDaemon, name: &str) -> String {
    d.docker_ok(&["inspect", "--format", "{{.Id}}", name])
        .trim()
        .to_string()
}

fn repo_digests(d: &TestDaemon, name: &str) -> Vec<String> {
    let v: Value =
        serde_json::from_str(&d.docker_ok(&["inspect", "--format", "{{json .RepoDigests}}", name]))
            .expect("repo digests json");
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn tags_list(reg: &Registry, repo: &str) -> Vec<String> {
    let (st, _, body) = reg
        .http("GET", &format!("/v2/{repo}/tags/list"), &[], None)
        .expect("tags list");
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).expect("tags json");
    let mut t: Vec<String> = v["tags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    t.sort();
    t
}

fn docker_config_file(d: &TestDaemon) -> PathBuf {
    d.log_path()
        .parent()
        .expect("test base dir")
        .join("docker-config")
        .join("config.json")
}

#[test]
fn push_skopeo_inspect_repush_and_pull_back() {
    let reg = Registry::start();
    let d = TestDaemon::start();
    let name = format!("{}/pb-{}", reg.addr(), random_hex(6));
    let img = format!("{name}:v1");
    d.import_busybox(&img);
    let id = image_id(&d, &img);

    let out = push_out(&d, "docker", &["push", &img]);
    assert!(
        out.contains(&format!("The push refers to repository [{name}]")),
        "{out}"
    );
    assert!(out.contains(": Pushed"), "{out}");
    let digest = pushed_digest(&out, "v1");
    assert!(
        repo_digests(&d, &img).contains(&format!("{name}@{digest}")),
        "RepoDigests of {img}: {:?}",
        repo_digests(&d, &img)
    );

    // What the registry holds: a Docker schema 2 manifest with our config and a gzip layer.
    let repo = name.split_once('/').expect("repo").1.to_string();
    assert_eq!(reg.manifest_digest(&format!("{repo}:v1")), digest);
    let raw = skopeo_inspect(&reg, &format!("{repo}:v1"), true);
    assert_eq!(
        raw["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(raw["config"]["digest"], id.as_str());
    assert_eq!(
        raw["layers"][0]["mediaType"],
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    let layer_digest = raw["layers"][0]["digest"].as_str().expect("layer digest");
    let blob = reg.get_blob(&repo, layer_digest);
    assert_eq!(&blob[..2], &[0x1f, 0x8b], "the layer is gzip");
    assert_eq!(raw["layers"][0]["size"].as_u64(), Some(blob.len() as u64));
    let info = skopeo_inspect(&reg, &format!("{repo}:v1"), false);
    assert_eq!(info["Digest"], digest.as_str());
    assert_eq!(info["Os"], "linux");
    assert_eq!(info["Layers"][0], layer_digest);

    // Again: the registry has everything, the digest stays.
    let out = push_out(&d, "docker", &["push", &img]);
    assert!(out.contains(": Layer already exists"), "{out}");
    assert!(!out.contains(": Pushed"), "{out}");
    assert_eq!(pushed_digest(&out, "v1"), digest);
}

#[test]
fn pushed_image_pulls_back_on_another_engine() {
    let reg = Registry::start();
    let d = TestDaemon::start();
    let name = format!("{}/pull-{}", reg.addr(), random_hex(6));
    let img = format!("{name}:v1");
    d.import_busybox(&img);
    let id = image_id(&d, &img);
    let digest = pushed_digest(&push_out(&d, "docker", &["push", &img]), "v1");

    // Pulled back by a second engine: the same image id.
    let d2 = TestDaemon::start();
    d2.docker_ok(&["pull", &img]);
    assert_eq!(image_id(&d2, &img), id);
    let run = d2.docker_ok(&["run", "--rm", &img, "/bin/echo", "pulled-ok"]);
    assert_eq!(run.trim(), "pulled-ok");
    let by_digest = format!("{name}@{digest}");
    d2.docker_ok(&["pull", &by_digest]);
    assert_eq!(image_id(&d2, &by_digest), id);
}

#[test]
fn push_to_second_repository_mounts_and_all_tags() {
    let reg = Registry::start();
    let d = TestDaemon::start();
    let suffix = random_hex(6);
    let first = format!("{}/mnt-a-{suffix}", reg.addr());
    let second = format!("{}/mnt-b-{suffix}", reg.addr());
    d.import_busybox(&format!("{first}:v1"));
    push_out(&d, "docker", &["push", &format!("{first}:v1")]);

    d.docker_ok(&["tag", &format!("{first}:v1"), &format!("{second}:v1")]);
    let out = push_out(&d, "docker", &["push", &format!("{second}:v1")]);
    let from = first.split_once('/').expect("repo").1;
    assert!(out.contains(&format!("Mounted from {from}")), "{out}");
    assert!(!out.contains(": Pushed"), "{out}");

    // -a: every tag of the repository, in one push.
    d.docker_ok(&["tag", &format!("{first}:v1"), &format!("{second}:v2")]);
    d.docker_ok(&["tag", &format!("{first}:v1"), &format!("{second}:v3")]);
    let out = push_out(&d, "docker", &["push", "-a", &second]);
    let d1 = pushed_digest(&out, "v1");
    let d2 = pushed_digest(&out, "v2");
    let d3 = pushed_digest(&out, "v3");
    assert_eq!(d1, d2);
    assert_eq!(d2, d3);
    let repo = second.split_once('/').expect("repo").1;
    assert_eq!(tags_list(&reg, repo), vec!["v1", "v2", "v3"]);

    // berth's own CLI: -a with a tag is refused as docker does; a plain push works.
    let out = d.berth(&["push", "-a", &format!("{second}:v1")]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("tag can't be used with --all-tags/-a"),
        "{}",
        d.describe(&out)
    );
    let out = push_out(&d, "berth", &["push", &format!("{second}:v2")]);
    assert!(out.contains("Layer already exists"), "{out}");
    assert_eq!(pushed_digest(&out, "v2"), d1);
}

#[test]
fn tags_move_digests_stay() {
    let reg = Registry::start();
    let d = TestDaemon::start();
    let name = format!("{}/mv-{}", reg.addr(), random_hex(6));
    let img = format!("{name}:t");
    d.import_busybox(&img);
    let first = pushed_digest(&push_out(&d, "docker", &["push", &img]), "t");

    // A different image (another config, same layer) under the same tag.
    let tar = common::busybox_rootfs_tar();
    d.docker_ok(&["import", "-c", "ENV MOVED=1", &tar.to_string_lossy(), &img]);
    let out = push_out(&d, "docker", &["push", &img]);
    assert!(out.contains("Layer already exists"), "{out}");
    let second = pushed_digest(&out, "t");
    assert_ne!(first, second);

    let repo = name.split_once('/').expect("repo").1;
    assert_eq!(reg.manifest_digest(&format!("{repo}:t")), second);
    // The old manifest is still there by digest.
    let old = reg.get_manifest(repo, &first);
    assert_eq!(common::registry::sha256_digest(&old), first);

    // The layer is now stored as the gzip that was pushed: save (which writes the tar) and load
    // give the same image back.
    let id = image_id(&d, &img);
    let archive = d.scratch_dir().join("saved.tar");
    d.docker_ok(&["save", "-o", &archive.to_string_lossy(), &img]);
    d.docker_ok(&["rmi", &img]);
    d.docker_ok(&["load", "-i", &archive.to_string_lossy()]);
    assert_eq!(image_id(&d, &img), id);
    let run = d.docker_ok(&["run", "--rm", &img, "/bin/sh", "-c", "echo $MOVED"]);
    assert_eq!(run.trim(), "1");
}

#[test]
fn push_of_missing_image_is_docker_error() {
    let reg = Registry::start();
    let d = TestDaemon::start();
    let name = format!("{}/missing-{}", reg.addr(), random_hex(6));
    let err = d.docker_err(&["push", &format!("{name}:v1")]);
    assert!(
        err.contains(&format!(
            "An image does not exist locally with the tag: {name}"
        )),
        "{err}"
    );
    // The name exists but not that tag.
    d.import_busybox(&format!("{name}:other"));
    let err = d.docker_err(&["push", &format!("{name}:v1")]);
    assert!(
        err.contains(&format!("tag does not exist: {name}:v1")),
        "{err}"
    );
    let out = d.berth(&["push", &format!("{name}:v1")]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("tag does not exist"),
        "{}",
        d.describe(&out)
    );
    // Nothing reached the registry.
    let repo = name.split_once('/').expect("repo").1;
    let (st, _, _) = reg
        .http("GET", &format!("/v2/{repo}/tags/list"), &[], None)
        .expect("tags list");
    assert_eq!(st, 404);
}

#[test]
fn login_push_logout_with_basic_auth() {
    let user = "pushuser";
    let pass = format!("pw-{}", random_hex(8));
    let hash = bcrypt::hash(&pass, 5).expect("bcrypt");
    let reg = Registry::start_with(Some(&format!("{user}:{hash}\n")));
    let d = TestDaemon::start();
    let name = format!("{}/auth-{}", reg.addr(), random_hex(6));
    let img = format!("{name}:v1");
    d.import_busybox(&img);
    let cfg = docker_config_file(&d);

    // Without credentials: refused.
    let err = d.docker_err(&["push", &img]);
    assert!(
        err.contains("no basic auth credentials") || err.contains("unauthorized"),
        "{err}"
    );

    // A wrong password: 401 with Docker's message, nothing stored.
    let err = d.docker_err(&["login", "-u", user, "-p", "wrong", &reg.addr()]);
    assert!(err.contains("401 Unauthorized"), "{err}");
    let stored = fs::read_to_string(&cfg).unwrap_or_default();
    assert!(!stored.contains(&reg.addr()), "{stored}");

    // The right one, on stdin: config.json gets auths[host].auth = base64(user:pass).
    let out = d.docker_stdin(
        &["login", "-u", user, "--password-stdin", &reg.addr()],
        format!("{pass}\n").as_bytes(),
    );
    assert!(out.status.success(), "{}", d.describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Login Succeeded"));
    let v: Value =
        serde_json::from_str(&fs::read_to_string(&cfg).expect("config.json")).expect("config json");
    let auth = v["auths"][reg.addr()]["auth"].as_str().expect("auth entry");
    assert_eq!(auth, base64_std(format!("{user}:{pass}").as_bytes()));

    // Push with the stored credentials (docker sends X-Registry-Auth).
    let out = push_out(&d, "docker", &["push", &img]);
    assert!(out.contains(": Pushed"), "{out}");
    let digest = pushed_digest(&out, "v1");
    let (st, h, _) = reg
        .http(
            "HEAD",
            &format!("/v2/{}/manifests/v1", name.split_once('/').expect("repo").1),
            &[
                (
                    "Authorization",
                    &format!("Basic {}", base64_std(format!("{user}:{pass}").as_bytes())),
                ),
                (
                    "Accept",
                    "application/vnd.docker.distribution.manifest.v2+json",
                ),
            ],
            None,
        )
        .expect("head manifest");
    assert_eq!(st, 200);
    assert_eq!(header(&h, "docker-content-digest"), Some(digest.clone()));

    // berth's CLI reads the same file.
    let out = push_out(&d, "berth", &["push", &img]);
    assert!(out.contains("Layer already exists"), "{out}");

    // Logout removes the entry; a push is refused again.
    let out = d.docker_ok(&["logout", &reg.addr()]);
    assert!(out.contains("Removing login credentials"), "{out}");
    let stored = fs::read_to_string(&cfg).unwrap_or_default();
    assert!(!stored.contains(&reg.addr()), "{stored}");
    d.docker_err(&["push", &img]);

    // berth login/logout write and remove the same entry.
    let out = d.berth_stdin(
        &["login", "-u", user, "--password-stdin", &reg.addr()],
        pass.as_bytes(),
    );
    assert!(out.status.success(), "{}", d.describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Login Succeeded"));
    let v: Value =
        serde_json::from_str(&fs::read_to_string(&cfg).expect("config.json")).expect("config json");
    assert_eq!(
        v["auths"][reg.addr()]["auth"].as_str(),
        Some(base64_std(format!("{user}:{pass}").as_bytes()).as_str())
    );
    let out = push_out(&d, "docker", &["push", &img]);
    assert_eq!(pushed_digest(&out, "v1"), digest);
    let out = d.berth(&["login", "-u", user, "-p", "nope", &reg.addr()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401 Unauthorized"));
    let out = d.berth_ok(&["logout", &reg.addr()]);
    assert!(out.contains("Removing login credentials"), "{out}");
    let out = d.berth_ok(&["logout", &reg.addr()]);
    assert!(out.contains("Not logged in"), "{out}");

    // Asked for on stdin (not a terminal): username, then password.
    let out = d.berth_stdin(
        &["login", &reg.addr()],
        format!("{user}\n{pass}\n").as_bytes(),
    );
    assert!(out.status.success(), "{}", d.describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Login Succeeded"));
    let stored = fs::read_to_string(&cfg).expect("config.json");
    assert!(stored.contains(&reg.addr()), "{stored}");
    // Logged in already: the stored credentials are used without asking.
    let out = d.berth(&["login", &reg.addr()]);
    assert!(out.status.success(), "{}", d.describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Authenticating with existing credentials"),
        "{}",
        d.describe(&out)
    );
    // Other keys of the file survive a logout.
    let mut v: Value = serde_json::from_str(&stored).expect("config json");
    v["psFormat"] = Value::String("table {{.ID}}".into());
    fs::write(&cfg, serde_json::to_vec(&v).expect("json")).expect("write config");
    d.berth_ok(&["logout", &reg.addr()]);
    let v: Value =
        serde_json::from_str(&fs::read_to_string(&cfg).expect("config.json")).expect("config json");
    assert_eq!(v["psFormat"], "table {{.ID}}");
    assert!(v["auths"].get(reg.addr()).is_none(), "{v}");
}

fn base64_std(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn pulled_images_push_back_in_their_own_format() {
    let reg = Registry::start();
    let d = TestDaemon::start();
    let suffix = random_hex(6);
    for (oci, mt) in [
        (
            false,
            "application/vnd.docker.distribution.manifest.v2+json",
        ),
        (true, "application/vnd.oci.image.manifest.v1+json"),
    ] {
        let src = format!("src-{suffix}-{oci}:1");
        reg.push_busybox(&d, &src, oci);
        let pulled = format!("{}/{src}", reg.addr());
        d.docker_ok(&["pull", &pulled]);
        let id = image_id(&d, &pulled);
        let dest = format!("{}/dst-{suffix}-{oci}:1", reg.addr());
        d.docker_ok(&["tag", &pulled, &dest]);
        let out = push_out(&d, "docker", &["push", &dest]);
        // Pulled from that registry: its RepoDigest names a repository holding the layer (the
        // second round may mount from the first round's destination: the same gzip blob).
        assert!(out.contains("Mounted from "), "{out}");
        assert!(!out.contains(": Pushed"), "{out}");
        pushed_digest(&out, "1");
        let raw = skopeo_inspect(&reg, &format!("dst-{suffix}-{oci}:1"), true);
        assert_eq!(raw["mediaType"], mt, "{raw}");
        assert_eq!(raw["config"]["digest"], id.as_str());
        // The same layer blob as the source (pushed as pulled, not recompressed).
        let src_raw = skopeo_inspect(&reg, &src, true);
        assert_eq!(raw["layers"][0]["digest"], src_raw["layers"][0]["digest"]);
    }
}

#[test]
fn large_layers_stream_in_chunks_and_known_layers_are_not_sent_again() {
    let reg = Registry::start();
    let d = TestDaemon::start();
    // 20 MB of incompressible data: several 8 MiB chunks while compressing, and two 16 MiB
    // PATCHes when pushed again from the stored gzip.
    let mut data = vec![0u8; 20 << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let tar = common::registry::layer_tar(&[("big.bin", &data)]);
    let tar_path = d.scratch_dir().join("big.tar");
    fs::write(&tar_path, &tar).expect("write tar");
    let name = format!("{}/big-{}", reg.addr(), random_hex(6));
    d.docker_ok(&["import", &tar_path.to_string_lossy(), &format!("{name}:1")]);
    let id = image_id(&d, &format!("{name}:1"));
    let out = push_out(&d, "docker", &["push", &format!("{name}:1")]);
    assert!(out.contains(": Pushed"), "{out}");
    let repo = name.split_once('/').expect("repo").1;
    let raw = skopeo_inspect(&reg, &format!("{repo}:1"), true);
    let layer = raw["layers"][0]["digest"]
        .as_str()
        .expect("layer")
        .to_string();
    let blob = reg.get_blob(repo, &layer);
    assert_eq!(common::registry::sha256_digest(&blob), layer);
    assert!(blob.len() > 16 << 20, "{}", blob.len());

    // A second registry: the stored gzip goes up in 16 MiB chunks; pulled back intact.
    let reg2 = Registry::start();
    let name2 = format!("{}/big", reg2.addr());
    d.docker_ok(&["tag", &format!("{name}:1"), &format!("{name2}:1")]);
    let out = push_out(&d, "docker", &["push", &format!("{name2}:1")]);
    assert!(out.contains(": Pushed"), "{out}");
    let raw2 = skopeo_inspect(&reg2, "big:1", true);
    assert_eq!(raw2["layers"][0]["digest"], layer.as_str());
    let d2 = TestDaemon::start();
    d2.docker_ok(&["pull", &format!("{name2}:1")]);
    assert_eq!(image_id(&d2, &format!("{name2}:1")), id);

    // The image removed (its gzip with it) and imported again: the layer is known to be in the
    // registry as that digest, so nothing is compressed or sent.
    d.docker_ok(&["rmi", &format!("{name}:1"), &format!("{name2}:1")]);
    d.docker_ok(&["import", &tar_path.to_string_lossy(), &format!("{name}:2")]);
    let out = push_out(&d, "docker", &["push", &format!("{name}:2")]);
    assert!(out.contains("Layer already exists"), "{out}");
    assert!(!out.contains(": Pushed"), "{out}");
    let raw = skopeo_inspect(&reg, &format!("{repo}:2"), true);
    assert_eq!(raw["layers"][0]["digest"], layer.as_str());
}

#[test]
fn committed_image_pushes_and_pulls_back() {
    let reg = Registry::start();
    let d = TestDaemon::start();
    let base = format!("base-{}:1", random_hex(6));
    d.import_busybox(&base);
    let ctr = format!("c-{}", random_hex(6));
    d.docker_ok(&[
        "run",
        "--name",
        &ctr,
        &base,
        "/bin/sh",
        "-c",
        "echo committed-data > /marker",
    ]);
    let img = format!("{}/committed-{}:1", reg.addr(), random_hex(6));
    d.docker_ok(&["commit", &ctr, &img]);
    d.docker_ok(&["rm", &ctr]);
    let id = image_id(&d, &img);
    let out = push_out(&d, "docker", &["push", &img]);
    assert_eq!(out.matches(": Pushed").count(), 2, "{out}");
    let d2 = TestDaemon::start();
    d2.docker_ok(&["pull", &img]);
    assert_eq!(image_id(&d2, &img), id);
    let run = d2.docker_ok(&["run", "--rm", &img, "/bin/cat", "/marker"]);
    assert_eq!(run.trim(), "committed-data");
}
