//! `berth registry serve` with htpasswd auth, TLS, as a pull-through cache (of Debian's
//! docker-registry and of an https upstream), and with docker login/push/pull through the engine.

mod common;
#[path = "registry_server/helpers.rs"]
mod helpers;

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::registry::{header, http_tcp, sha256_digest, Registry as DockerRegistry};
use common::{random_hex, run_with_timeout, TestDaemon};
use helpers::*;

#[test]
fn htpasswd_basic_auth() {
    let scratch = Scratch::new("brs-auth");
    let hp = scratch.sub("htpasswd");
    fs::write(&hp, HTPASSWD).unwrap();
    let reg = BerthRegistry::start(&["--htpasswd", hp.to_str().unwrap()]);

    let (st, h, b) = reg.http("GET", "/v2/", &[], None);
    assert_eq!((st, error_code(&b)), (401, "UNAUTHORIZED".to_string()));
    assert_eq!(
        header(&h, "www-authenticate").as_deref(),
        Some("Basic realm=\"berth-registry\"")
    );
    let (st, _, _) = reg.http(
        "GET",
        "/v2/",
        &[("Authorization", &basic("berth", "wrong"))],
        None,
    );
    assert_eq!(st, 401);
    let (st, _, _) = reg.http(
        "GET",
        "/v2/_catalog",
        &[("Authorization", &basic("nobody", "berth-pw"))],
        None,
    );
    assert_eq!(st, 401);
    let (st, _, _) = reg.http(
        "GET",
        "/v2/",
        &[("Authorization", &basic("berth", "berth-pw"))],
        None,
    );
    assert_eq!(st, 200);

    // skopeo with the right credentials pushes and reads; with wrong ones it is refused.
    let img = scratch.sub("img");
    let layer_dir = img.join("blobs/sha256");
    fs::create_dir_all(&layer_dir).unwrap();
    let layer = noise(20_000, 9);
    let cfg = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
        .to_vec();
    for b in [&layer, &cfg] {
        fs::write(layer_dir.join(&sha256_digest(b)[7..]), b).unwrap();
    }
    let m = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256_digest(&cfg), "size": cfg.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256_digest(&layer), "size": layer.len()}]})).unwrap();
    fs::write(layer_dir.join(&sha256_digest(&m)[7..]), &m).unwrap();
    fs::write(img.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    fs::write(img.join("index.json"), serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": sha256_digest(&m), "size": m.len(), "annotations": {"org.opencontainers.image.ref.name": "v1"}}]})).unwrap()).unwrap();
    let a = reg.addr();
    let src = format!("oci:{}:v1", img.display());
    let out = skopeo(&[
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        "--dest-creds",
        "berth:wrong",
        &src,
        &format!("docker://{a}/sec/img:v1"),
    ]);
    assert!(!out.status.success());
    skopeo_ok(&[
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        "--dest-creds",
        "berth:berth-pw",
        &src,
        &format!("docker://{a}/sec/img:v1"),
    ]);
    let insp = json(
        skopeo_ok(&[
            "inspect",
            "--tls-verify=false",
            "--creds",
            "berth:berth-pw",
            &format!("docker://{a}/sec/img:v1"),
        ])
        .as_bytes(),
    );
    // skopeo compresses the uncompressed layer on the way: compare with what the registry has.
    let (st, h, _) = reg.http(
        "HEAD",
        "/v2/sec/img/manifests/v1",
        &[
            ("Authorization", &basic("berth", "berth-pw")),
            ("Accept", ACCEPT_ALL),
        ],
        None,
    );
    assert_eq!(st, 200);
    assert_eq!(
        insp["Digest"].as_str(),
        header(&h, "docker-content-digest").as_deref()
    );
    let out = skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{a}/sec/img:v1"),
    ]);
    assert!(!out.status.success());
}

#[test]
fn tls_with_a_test_ca_and_an_https_upstream() {
    let scratch = Scratch::new("brs-tls");
    let dir = scratch.0.clone();
    fs::create_dir_all(dir.join("certs")).unwrap();
    // A CA, and a server certificate for IP 127.0.0.1 signed by it (the chain is served).
    let ca = dir.join("certs/ca.crt");
    let (leaf, key, chain) = (
        dir.join("leaf.crt"),
        dir.join("key.pem"),
        dir.join("chain.pem"),
    );
    let ext = dir.join("ext.cnf");
    fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    let p = |x: &PathBuf| x.to_str().unwrap().to_string();
    let steps: Vec<Vec<String>> = vec![
        vec![
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=berth test CA",
            "-keyout",
        ]
        .into_iter()
        .map(String::from)
        .chain([p(&dir.join("ca.key")), "-out".into(), p(&ca)])
        .collect(),
        vec![
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
        ]
        .into_iter()
        .map(String::from)
        .chain([p(&key), "-out".into(), p(&dir.join("leaf.csr"))])
        .collect(),
        vec!["x509", "-req", "-days", "1", "-CAcreateserial", "-in"]
            .into_iter()
            .map(String::from)
            .chain([
                p(&dir.join("leaf.csr")),
                "-CA".into(),
                p(&ca),
                "-CAkey".into(),
                p(&dir.join("ca.key")),
                "-extfile".into(),
                p(&ext),
                "-out".into(),
                p(&leaf),
            ])
            .collect(),
    ];
    for args in steps {
        let mut cmd = Command::new("openssl");
        cmd.args(&args);
        let out = run_with_timeout(cmd, None, Duration::from_secs(60));
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut pem = fs::read(&leaf).unwrap();
    pem.extend(fs::read(&ca).unwrap());
    fs::write(&chain, pem).unwrap();
    let cert = chain;
    let reg = BerthRegistry::start(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let a = reg.addr();

    // Plain HTTP to the TLS port gets no HTTP answer.
    assert!(http_tcp(&a, "GET", "/v2/", &[], None).is_err());
    // skopeo verifying against the CA, and with verification off.
    let d = TestDaemon::start();
    let archive = busybox_archive(&d);
    let certs = dir.join("certs");
    skopeo_ok(&[
        "copy",
        "--quiet",
        "--dest-cert-dir",
        certs.to_str().unwrap(),
        &format!("docker-archive:{archive}"),
        &format!("docker://{a}/tls/bb:v1"),
    ]);
    let insp = json(
        skopeo_ok(&[
            "inspect",
            "--cert-dir",
            certs.to_str().unwrap(),
            &format!("docker://{a}/tls/bb:v1"),
        ])
        .as_bytes(),
    );
    assert!(insp["Digest"].as_str().unwrap().starts_with("sha256:"));
    skopeo_ok(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{a}/tls/bb:v1"),
    ]);
    // Without trusting it, verification fails.
    let out = skopeo(&["inspect", &format!("docker://{a}/tls/bb:v1")]);
    assert!(!out.status.success());

    // A pull-through cache of the TLS registry (https upstream; its CA from SSL_CERT_FILE).
    let cache = BerthRegistry::start_env(
        &["--proxy-remote", &format!("https://{a}")],
        &[("SSL_CERT_FILE", ca.to_str().unwrap())],
    );
    let scratch2 = Scratch::new("brs-out");
    let out = scratch2.sub("img");
    skopeo_ok(&[
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &format!("docker://{}/tls/bb:v1", cache.addr()),
        &format!("dir:{}", out.display()),
    ]);
    assert_eq!(dir_manifest_digest(&out), insp["Digest"].as_str().unwrap());
    // Without the CA the upstream is not trusted: nothing to serve.
    let untrusting = BerthRegistry::start(&["--proxy-remote", &format!("https://{a}")]);
    let (st, _, _) = untrusting.http(
        "GET",
        "/v2/tls/bb/manifests/v1",
        &[("Accept", ACCEPT_ALL)],
        None,
    );
    assert_eq!(st, 404);
}

#[test]
fn pull_through_cache_of_docker_registry() {
    let d = TestDaemon::start();
    let upstream = DockerRegistry::start();
    let md = upstream.push_busybox(&d, "library/bb:v1", false);
    let reg = BerthRegistry::start(&["--proxy-remote", &format!("http://{}", upstream.addr())]);
    let a = reg.addr();

    // A pull through the cache: same digest, and the blobs are now on the cache's disk.
    let scratch = Scratch::new("brs-out");
    let out = scratch.sub("img");
    skopeo_ok(&[
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &format!("docker://{a}/library/bb:v1"),
        &format!("dir:{}", out.display()),
    ]);
    assert_eq!(dir_manifest_digest(&out), md);
    let m = json(
        &reg.http("GET", &format!("/v2/library/bb/manifests/{md}"), &[], None)
            .2,
    );
    let layer = m["layers"][0]["digest"].as_str().unwrap().to_string();
    let cached = reg.root().join("blobs/sha256").join(&layer[7..]);
    let data = fs::read(&cached).expect("layer cached");
    assert_eq!(sha256_digest(&data), layer);
    let (_, _, b) = reg.http("GET", "/v2/library/bb/tags/list", &[], None);
    assert_eq!(json(&b)["tags"], serde_json::json!(["v1"]));

    // Pushes are refused.
    let (st, _, b) = reg.http("POST", "/v2/library/bb/blobs/uploads/", &[], Some(b""));
    assert_eq!((st, error_code(&b)), (405, "UNSUPPORTED".to_string()));
    let (st, _, _) = reg.http(
        "PUT",
        "/v2/library/bb/manifests/v2",
        &[("Content-Type", OCI_MANIFEST)],
        Some(b"{}"),
    );
    assert_eq!(st, 405);

    // A tag moved upstream is seen at once (tags always ask upstream).
    let md2 = upstream.push_busybox(&d, "library/bb:v1", true);
    assert_ne!(md, md2);
    let (st, h, _) = reg.http(
        "HEAD",
        "/v2/library/bb/manifests/v1",
        &[("Accept", ACCEPT_ALL)],
        None,
    );
    assert_eq!(
        (st, header(&h, "docker-content-digest")),
        (200, Some(md2.clone()))
    );

    let scratch = Scratch::new("brs-out");
    let out = scratch.sub("img");
    skopeo_ok(&[
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &format!("docker://{a}/library/bb:v1"),
        &format!("dir:{}", out.display()),
    ]);
    assert_eq!(dir_manifest_digest(&out), md2);

    // Upstream gone: what was pulled is still served, by tag and by digest.
    drop(upstream);
    let insp = json(
        skopeo_ok(&[
            "inspect",
            "--tls-verify=false",
            &format!("docker://{a}/library/bb:v1"),
        ])
        .as_bytes(),
    );
    assert_eq!(insp["Digest"], md2.as_str());
    let scratch = Scratch::new("brs-out");
    let out = scratch.sub("img");
    skopeo_ok(&[
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &format!("docker://{a}/library/bb@{md}"),
        &format!("dir:{}", out.display()),
    ]);
    assert_eq!(dir_manifest_digest(&out), md);
    // What was never pulled is unavailable, not a crash.
    let (st, _, _) = reg.http("GET", "/v2/library/other/manifests/v1", &[], None);
    assert_eq!(st, 404);
}

#[test]
fn pull_through_cache_with_upstream_credentials() {
    // The upstream requires Basic auth; the cache logs in with --proxy-username/--proxy-password.
    let d = TestDaemon::start();
    let upstream = DockerRegistry::start_with(Some(HTPASSWD));
    let a_up = upstream.addr();
    let archive = busybox_archive(&d);
    skopeo_ok(&[
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        "--dest-creds",
        "berth:berth-pw",
        &format!("docker-archive:{archive}"),
        &format!("docker://{a_up}/sec/bb:v1"),
    ]);
    let denied = BerthRegistry::start(&["--proxy-remote", &format!("http://{a_up}")]);
    let (st, _, _) = denied.http(
        "GET",
        "/v2/sec/bb/manifests/v1",
        &[("Accept", ACCEPT_ALL)],
        None,
    );
    assert_ne!(st, 200);
    let reg = BerthRegistry::start(&[
        "--proxy-remote",
        &format!("http://{a_up}"),
        "--proxy-username",
        "berth",
        "--proxy-password",
        "berth-pw",
    ]);
    let scratch = Scratch::new("brs-out");
    let out = scratch.sub("img");
    skopeo_ok(&[
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &format!("docker://{}/sec/bb:v1", reg.addr()),
        &format!("dir:{}", out.display()),
    ]);
    assert!(dir_manifest_digest(&out).starts_with("sha256:"));
}

#[test]
fn docker_login_push_and_pull_through_the_engine() {
    let scratch = Scratch::new("brs-dk");
    let hp = scratch.sub("htpasswd");
    fs::write(&hp, HTPASSWD).unwrap();
    let reg = BerthRegistry::start(&["--htpasswd", hp.to_str().unwrap()]);
    let a = reg.addr();
    let d = TestDaemon::start();
    let src = format!("rs-src-{}:latest", random_hex(6));
    d.import_busybox(&src);
    let img = format!("{a}/dk/busybox:v1");
    d.docker_ok(&["tag", &src, &img]);

    // Without credentials the push is refused; docker login with a wrong password too.
    let out = d.docker(&["push", &img]);
    assert!(!out.status.success(), "{}", d.describe(&out));
    let out = d.docker(&["login", "-u", "berth", "-p", "wrong", &a]);
    assert!(!out.status.success(), "{}", d.describe(&out));
    let out = d.docker_stdin(
        &["login", "-u", "berth", "--password-stdin", &a],
        &b"berth-pw\n"[..],
    );
    assert!(out.status.success(), "{}", d.describe(&out));

    // Push, then the registry has the tag with the digest docker printed.
    let out = d.docker_ok(&["push", &img]);
    let auth = basic("berth", "berth-pw");
    let (st, h, _) = reg.http(
        "HEAD",
        "/v2/dk/busybox/manifests/v1",
        &[("Authorization", &auth), ("Accept", ACCEPT_ALL)],
        None,
    );
    assert_eq!(st, 200);
    let digest = header(&h, "docker-content-digest").unwrap();
    assert!(out.contains(&digest), "{out}");

    // A second repository: the layer is mounted, not uploaded again.
    let other = format!("{a}/dk/other:v1");
    d.docker_ok(&["tag", &img, &other]);
    let out = d.docker_ok(&["push", &other]);
    assert!(
        out.contains("Mounted from") || out.contains("already exists"),
        "{out}"
    );

    // Pull back into an engine without the image, run it, RepoDigests names the digest.
    d.docker_ok(&["rmi", &img, &other, &src]);
    d.docker_ok(&["pull", &img]);
    let rd = d.docker_ok(&["image", "inspect", "-f", "{{json .RepoDigests}}", &img]);
    assert!(rd.contains(&format!("{a}/dk/busybox@{digest}")), "{rd}");
    let out = d.docker_ok(&["run", "--rm", &img, "echo", "from-berth-registry"]);
    assert_eq!(out.trim(), "from-berth-registry");
    d.docker_ok(&["logout", &a]);
}
