//! Pulling images from a real registry (Debian's docker-registry on 127.0.0.1, see
//! common/registry.rs) with the docker CLI and berth's CLI.

mod common;

use common::registry::{self, layer_tar, push_image, sha256_digest, Registry};
use common::TestDaemon;

fn inspect(d: &TestDaemon, name: &str, fmt: &str) -> String {
    d.docker_ok(&["image", "inspect", "-f", fmt, name])
        .trim()
        .to_string()
}

/// Files under the data-root's content/sha256 and layers/ (names only).
fn store_entries(d: &TestDaemon) -> (Vec<String>, Vec<String>) {
    let ls = |p: std::path::PathBuf| {
        let mut v: Vec<String> = std::fs::read_dir(&p)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    (
        ls(d.data_root().join("content/sha256")),
        ls(d.data_root().join("layers")),
    )
}

#[test]
fn harness_registry_holds_a_pushed_busybox() {
    let d = TestDaemon::start();
    let reg = Registry::start();
    let digest = reg.push_busybox(&d, "bb/harness:1", false);
    assert!(digest.starts_with("sha256:"), "{digest}");
    let m = reg.get_manifest("bb/harness", "1");
    let v: serde_json::Value = serde_json::from_slice(&m).unwrap();
    assert_eq!(
        v["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    let layer = v["layers"][0]["digest"].as_str().unwrap();
    let blob = reg.get_blob("bb/harness", layer);
    assert_eq!(registry::sha256_digest(&blob), layer);
}

#[test]
fn docker_pull_runs_and_records_repo_digest() {
    let d = TestDaemon::start();
    let reg = Registry::start();
    let digest = reg.push_busybox(&d, "bb/pull:1", false);
    let name = format!("{}/bb/pull:1", reg.addr());
    let out = d.docker_ok(&["pull", &name]);
    assert!(out.contains("1: Pulling from bb/pull"), "{out}");
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    assert!(
        out.contains(&format!("Status: Downloaded newer image for {name}")),
        "{out}"
    );
    let rd = inspect(&d, &name, "{{json .RepoDigests}}");
    assert!(
        rd.contains(&format!("{}/bb/pull@{digest}", reg.addr())),
        "{rd}"
    );
    let run = d.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        &name,
        "echo",
        "pulled-ok",
    ]);
    assert_eq!(run.trim(), "pulled-ok");
    // The compressed blob is kept (push can reuse it) and matches its digest.
    let m: serde_json::Value = serde_json::from_slice(&reg.get_manifest("bb/pull", "1")).unwrap();
    let layer = m["layers"][0]["digest"].as_str().unwrap();
    let stored = std::fs::read(
        d.data_root()
            .join("content/sha256")
            .join(layer.trim_start_matches("sha256:")),
    )
    .unwrap();
    assert_eq!(sha256_digest(&stored), layer);
    // Again: nothing to download.
    let out = d.docker_ok(&["pull", &name]);
    assert!(
        out.contains(&format!("Status: Image is up to date for {name}")),
        "{out}"
    );
    // By digest: the same image, no tag added.
    let by_digest = format!("{}/bb/pull@{digest}", reg.addr());
    let out = d.docker_ok(&["pull", &by_digest]);
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    assert_eq!(
        inspect(&d, &by_digest, "{{.Id}}"),
        inspect(&d, &name, "{{.Id}}")
    );
    // rmi of the only tag takes the repository's digest and then the image with it (Docker).
    let id = inspect(&d, &name, "{{.Id}}");
    let out = d.docker_ok(&["rmi", &name]);
    assert!(out.contains(&format!("Untagged: {name}")), "{out}");
    assert!(out.contains(&format!("Untagged: {by_digest}")), "{out}");
    assert!(out.contains(&format!("Deleted: {id}")), "{out}");
    let left = d.docker_ok(&["images", "-aq", "--no-trunc"]);
    assert!(!left.contains(&id), "{left}");
}

#[test]
fn oci_manifest_by_digest_and_unknown_names() {
    let d = TestDaemon::start();
    let reg = Registry::start();
    let l1 = layer_tar(&[("a.txt", b"first layer\n")]);
    let l2 = layer_tar(&[("b.txt", b"second layer\n")]);
    let (digest, _) = push_image(&reg, "oci/img", "v1", "amd64", &[l1, l2], true);
    let by_digest = format!("{}/oci/img@{digest}", reg.addr());
    let out = d.docker_ok(&["pull", &by_digest]);
    assert!(
        out.contains(&format!("Status: Downloaded newer image for {by_digest}")),
        "{out}"
    );
    let layers = inspect(&d, &by_digest, "{{len .RootFS.Layers}}");
    assert_eq!(layers, "2");
    // Unknown tag and unknown repository: Docker's messages, nothing stored.
    let before = store_entries(&d);
    let err = d.docker_err(&["pull", &format!("{}/oci/img:nope", reg.addr())]);
    assert!(
        err.contains(&format!(
            "manifest for {}/oci/img:nope not found",
            reg.addr()
        )),
        "{err}"
    );
    let err = d.docker_err(&["pull", &format!("{}/no/such:1", reg.addr())]);
    assert!(err.contains("not found") || err.contains("denied"), "{err}");
    assert_eq!(store_entries(&d), before);
    // A digest that is not there.
    let missing = format!("{}/oci/img@sha256:{}", reg.addr(), "0".repeat(64));
    let err = d.docker_err(&["pull", &missing]);
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn manifest_list_picks_platform_and_pull_all_tags() {
    let d = TestDaemon::start();
    let reg = Registry::start();
    let amd = layer_tar(&[("arch", b"amd64\n")]);
    let arm = layer_tar(&[("arch", b"arm64\n")]);
    let (amd_d, amd_m) = push_image(&reg, "multi/img", "amd", "amd64", &[amd], true);
    let (arm_d, arm_m) = push_image(&reg, "multi/img", "arm", "arm64", &[arm], true);
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": arm_d, "size": arm_m.len(),
             "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": amd_d, "size": amd_m.len(),
             "platform": {"architecture": "amd64", "os": "linux"}},
        ]
    }))
    .unwrap();
    let idx_d = reg.put_manifest(
        "multi/img",
        "latest",
        "application/vnd.oci.image.index.v1+json",
        &index,
    );
    let name = format!("{}/multi/img", reg.addr());
    let out = d.docker_ok(&["pull", &name]);
    assert!(out.contains(&format!("Digest: {idx_d}")), "{out}");
    assert_eq!(inspect(&d, &name, "{{.Architecture}}"), "amd64");
    assert!(inspect(&d, &name, "{{json .RepoDigests}}").contains(&idx_d));
    let out = d.docker_ok(&[
        "pull",
        "--platform",
        "linux/arm64",
        &format!("{name}:latest"),
    ]);
    assert!(out.contains("Downloaded newer image"), "{out}");
    assert_eq!(inspect(&d, &name, "{{.Architecture}}"), "arm64");
    let err = d.docker_err(&["pull", "--platform", "linux/s390x", &name]);
    assert!(
        err.contains("no matching manifest for linux/s390x"),
        "{err}"
    );
    // All tags.
    let out = d.docker_ok(&["pull", "-a", &name]);
    for t in ["amd", "arm", "latest"] {
        assert!(
            out.contains(&format!("{t}: Pulling from multi/img")),
            "{out}"
        );
    }
    let tags = d.docker_ok(&["images", "--format", "{{.Tag}}", &name]);
    let mut tags: Vec<&str> = tags.lines().collect();
    tags.sort();
    assert_eq!(tags, ["amd", "arm", "latest"]);
    // berth's CLI: --platform and -a.
    d.docker_ok(&[
        "rmi",
        "-f",
        &format!("{name}:latest"),
        &format!("{name}:arm"),
        &format!("{name}:amd"),
    ]);
    let out = d.berth_ok(&[
        "pull",
        "-q",
        "--platform",
        "linux/arm64",
        &format!("{name}:latest"),
    ]);
    assert_eq!(out.trim(), format!("{name}:latest"));
    assert_eq!(inspect(&d, &name, "{{.Architecture}}"), "arm64");
    let out = d.berth_ok(&["pull", "-a", &name]);
    assert!(out.contains("arm: Pulling from multi/img"), "{out}");
    assert!(out.trim_end().ends_with(&name), "{out}");
    assert_eq!(
        inspect(&d, &format!("{name}:amd"), "{{.Architecture}}"),
        "amd64"
    );
}

#[test]
fn berth_pull_draws_progress_and_run_pulls_missing_images() {
    let d = TestDaemon::start();
    let reg = Registry::start();
    let digest = reg.push_busybox(&d, "bb/cli:latest", false);
    let name = format!("{}/bb/cli", reg.addr());
    let out = d.berth_ok(&["pull", &name]);
    assert!(out.starts_with("Using default tag: latest\n"), "{out}");
    assert!(out.contains("latest: Pulling from bb/cli"), "{out}");
    assert!(out.contains(": Pull complete"), "{out}");
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    assert!(
        out.ends_with(&format!(
            "Status: Downloaded newer image for {name}:latest\n{name}:latest\n"
        )),
        "{out}"
    );
    let out = d.berth_ok(&["pull", "-q", &format!("{name}:latest")]);
    assert_eq!(out, format!("{name}:latest\n"));
    let out = d.berth_ok(&["pull", "-q", &format!("{name}@{digest}")]);
    assert_eq!(out, format!("{name}@{digest}\n"));
    // -a with a tag is a usage error, as docker's.
    let o = d.berth(&["pull", "-a", &format!("{name}:latest")]);
    assert!(!o.status.success());
    // run: the image is missing, pulled first (progress on stderr), then run.
    d.docker_ok(&["rmi", &format!("{name}:latest")]);
    let o = d.berth(&[
        "run",
        "--rm",
        "--network",
        "none",
        &name,
        "echo",
        "auto-pulled",
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "auto-pulled");
    assert!(
        stderr.contains(&format!("Unable to find image '{name}:latest' locally")),
        "{stderr}"
    );
    assert!(stderr.contains("Pulling from bb/cli"), "{stderr}");
}

#[test]
fn docker_hub_names_go_to_the_configured_mirror() {
    let reg = Registry::start();
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = cfg_dir.path().join("daemon.json");
    std::fs::write(
        &cfg,
        format!(r#"{{"registry-mirrors": ["http://{}"]}}"#, reg.addr()),
    )
    .unwrap();
    let d = TestDaemon::start_with_args(&["--config-file", cfg.to_str().unwrap()]);
    // Official images live under library/ on the mirror.
    let digest = reg.push_busybox(&d, "library/mirrored:1", false);
    let out = d.docker_ok(&["pull", "mirrored:1"]);
    assert!(out.contains("1: Pulling from library/mirrored"), "{out}");
    assert!(
        out.contains("Status: Downloaded newer image for mirrored:1"),
        "{out}"
    );
    let rd = inspect(&d, "mirrored:1", "{{json .RepoDigests}}");
    assert!(rd.contains(&format!("mirrored@{digest}")), "{rd}");
    let r = d.api("GET", "/distribution/mirrored:1/json", None);
    assert_eq!(r.0, 200, "{}", r.1);
    assert!(r.1.contains(&digest), "{}", r.1);
}

/// `berth registry serve` with a self-signed certificate; killed and removed on drop.
struct TlsRegistry {
    dir: tempfile::TempDir,
    child: std::process::Child,
    addr: String,
}

impl TlsRegistry {
    fn start() -> TlsRegistry {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        let out = std::process::Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args([
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let addr = format!("127.0.0.1:{}", registry::free_port());
        let child = std::process::Command::new(common::berth_exe())
            .args(["registry", "serve", "--addr", &addr, "--log-level", "warn"])
            .arg("--root")
            .arg(dir.path().join("root"))
            .arg("--tls-cert")
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "berth registry did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        TlsRegistry { dir, child, addr }
    }
}

impl Drop for TlsRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = self.dir.path();
    }
}

#[test]
fn a_tls_registry_on_loopback_is_reached_over_https() {
    let d = TestDaemon::start();
    let reg = TlsRegistry::start();
    d.import_busybox("tls-src:1");
    let archive = d.scratch_dir().join("tls-src.tar");
    let archive = archive.to_str().unwrap();
    d.docker_ok(&["save", "-o", archive, "tls-src:1"]);
    let dest = format!("docker://{}/tls/bb:1", reg.addr);
    let out = std::process::Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("docker-archive:{archive}"))
        .arg(&dest)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Plain HTTP fails to connect, HTTPS (loopback: certificate not verified) works.
    let name = format!("{}/tls/bb:1", reg.addr);
    let out = d.docker_ok(&["pull", &name]);
    assert!(out.contains("Downloaded newer image"), "{out}");
    let run = d.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        &name,
        "echo",
        "over-tls",
    ]);
    assert_eq!(run.trim(), "over-tls");
}

#[test]
fn docker_login_then_pull_from_a_registry_with_basic_auth() {
    let d = TestDaemon::start();
    let reg = Registry::start_with_auth("puller", "s3cret-pw");
    reg.push_busybox(&d, "auth/bb:1", false);
    let name = format!("{}/auth/bb:1", reg.addr());
    let before = store_entries(&d);
    let err = d.docker_err(&["pull", &name]);
    assert!(
        err.contains("pull access denied") || err.contains("unauthorized"),
        "{err}"
    );
    assert_eq!(store_entries(&d), before);
    d.docker_ok(&["login", "-u", "puller", "-p", "s3cret-pw", &reg.addr()]);
    let out = d.docker_ok(&["pull", &name]);
    assert!(out.contains("Downloaded newer image"), "{out}");
    // berth's CLI sends the same stored credentials.
    d.docker_ok(&["rmi", &name]);
    let out = d.berth_ok(&["pull", "-q", &name]);
    assert_eq!(out.trim(), name);
}

#[test]
fn a_digest_keeps_its_content_when_the_tag_moves() {
    let d = TestDaemon::start();
    let reg = Registry::start();
    let (v1, _) = push_image(
        &reg,
        "moving/img",
        "t",
        "amd64",
        &[layer_tar(&[("v", b"one\n")])],
        true,
    );
    let (v2, _) = push_image(
        &reg,
        "moving/img",
        "t",
        "amd64",
        &[layer_tar(&[("v", b"two\n")])],
        true,
    );
    assert_ne!(v1, v2);
    let repo = format!("{}/moving/img", reg.addr());
    d.docker_ok(&["pull", &format!("{repo}:t")]);
    d.docker_ok(&["pull", &format!("{repo}@{v1}")]);
    let id_tag = inspect(&d, &format!("{repo}:t"), "{{.Id}}");
    let id_v1 = inspect(&d, &format!("{repo}@{v1}"), "{{.Id}}");
    assert_ne!(
        id_tag, id_v1,
        "the tag follows the registry, the digest does not"
    );
    assert!(inspect(&d, &format!("{repo}:t"), "{{json .RepoDigests}}").contains(&v2));
    // The old digest still gives the old layer.
    let layers = inspect(&d, &format!("{repo}@{v1}"), "{{json .RootFS.Layers}}");
    assert!(
        layers.contains(&sha256_digest(&layer_tar(&[("v", b"one\n")]))),
        "{layers}"
    );
}

#[test]
fn concurrent_pulls_of_one_image_both_succeed() {
    let d = TestDaemon::start();
    let reg = Registry::start();
    let big: Vec<u8> = (0..(4u32 << 20))
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    push_image(
        &reg,
        "conc/img",
        "1",
        "amd64",
        &[layer_tar(&[("big", &big)]), layer_tar(&[("small", b"x")])],
        true,
    );
    let name = format!("{}/conc/img:1", reg.addr());
    std::thread::scope(|s| {
        let a = s.spawn(|| d.docker(&["pull", &name]));
        let b = s.spawn(|| d.docker(&["pull", &name]));
        for o in [a.join().unwrap(), b.join().unwrap()] {
            assert!(o.status.success(), "{}", d.describe(&o));
        }
    });
    assert_eq!(inspect(&d, &name, "{{len .RootFS.Layers}}"), "2");
    let (content, _) = store_entries(&d);
    assert!(
        !content.iter().any(|f| f.starts_with(".tmp-")),
        "{content:?}"
    );
}

#[test]
fn shared_layers_are_not_downloaded_twice() {
    let d = TestDaemon::start();
    let reg = Registry::start();
    let base = layer_tar(&[("base", b"shared base layer\n")]);
    let base_digest = sha256_digest(&base);
    push_image(
        &reg,
        "share/a",
        "1",
        "amd64",
        &[base.clone(), layer_tar(&[("a", b"a")])],
        true,
    );
    push_image(
        &reg,
        "share/b",
        "1",
        "amd64",
        &[base, layer_tar(&[("b", b"b")])],
        true,
    );
    d.docker_ok(&["pull", &format!("{}/share/a:1", reg.addr())]);
    let out = d.docker_ok(&["pull", &format!("{}/share/b:1", reg.addr())]);
    let short = &base_digest["sha256:".len().."sha256:".len() + 12];
    assert!(out.contains(&format!("{short}: Already exists")), "{out}");
    assert!(out.contains(": Pull complete"), "{out}");
    // A single-platform image that is not the platform asked for.
    let err = d.docker_err(&[
        "pull",
        "--platform",
        "linux/arm64",
        &format!("{}/share/b:1", reg.addr()),
    ]);
    assert!(
        err.contains(
            "does not match the specified platform: wanted linux/arm64, actual: linux/amd64"
        ),
        "{err}"
    );
}
