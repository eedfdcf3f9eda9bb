//! `berth registry serve`: the OCI distribution server, driven by skopeo, raw HTTP and (as the
//! upstream of its pull-through cache) Debian's docker-registry.

mod common;

use std::fs;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::registry::{free_port, header, http_tcp, sha256_digest, Registry as DockerRegistry};
use common::{berth_exe, random_hex, run_with_timeout, TestDaemon};

const START_TIMEOUT: Duration = Duration::from_secs(20);
const DOCKER_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const ACCEPT_ALL: &str = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";

type Resp = (u16, Vec<(String, String)>, Vec<u8>);

/// A `berth registry serve` process on 127.0.0.1 with a free port and its own root.
struct BerthRegistry {
    dir: PathBuf,
    port: u16,
    args: Vec<String>,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl BerthRegistry {
    fn start(extra: &[&str]) -> BerthRegistry {
        Self::start_env(extra, &[])
    }

    fn start_env(extra: &[&str], env: &[(&str, &str)]) -> BerthRegistry {
        let dir = PathBuf::from(format!("/tmp/brs-{}", random_hex(8)));
        fs::create_dir_all(&dir).expect("create registry dir");
        let mut r = BerthRegistry {
            dir,
            port: 0,
            args: extra.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
        };
        r.spawn();
        r
    }

    fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("serve.log")).unwrap_or_default()
    }

    /// Start (or restart on the same root); the listening socket is bound only once the
    /// storage, auth and TLS set-up succeeded, so a TCP connect means ready.
    fn spawn(&mut self) {
        for _attempt in 0..3 {
            if self.port == 0 || self.child.is_some() {
                self.port = free_port();
            }
            let log = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join("serve.log"))
                .expect("log");
            let log2 = log.try_clone().expect("log fd");
            let mut child = Command::new(berth_exe())
                .args(["registry", "serve", "--addr", &self.addr(), "--root"])
                .arg(self.root())
                .args(&self.args)
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log2)
                .spawn()
                .expect("start berth registry serve");
            let deadline = Instant::now() + START_TIMEOUT;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if TcpStream::connect(self.addr()).is_ok() {
                    self.child = Some(child);
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            self.port = 0;
        }
        panic!("berth registry did not start: {}", self.log());
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }

    fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Resp {
        http_tcp(&self.addr(), method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.log()))
    }

    /// Monolithic upload (POST ?digest=); returns the digest.
    fn put_blob(&self, repo: &str, data: &[u8]) -> String {
        let d = sha256_digest(data);
        let (st, h, b) = self.http(
            "POST",
            &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
            &[("Content-Type", "application/octet-stream")],
            Some(data),
        );
        assert_eq!(st, 201, "{}", String::from_utf8_lossy(&b));
        assert_eq!(
            header(&h, "docker-content-digest").as_deref(),
            Some(d.as_str())
        );
        d
    }

    fn put_manifest(&self, repo: &str, reference: &str, mt: &str, data: &[u8]) -> Resp {
        self.http(
            "PUT",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Content-Type", mt)],
            Some(data),
        )
    }

    /// An image of `layers` (random-looking bytes) with an OCI or Docker manifest under `tag`.
    fn push_image(&self, repo: &str, tag: &str, layers: &[Vec<u8>], mt: &str) -> (String, Vec<u8>) {
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}
        }))
        .unwrap();
        let cd = self.put_blob(repo, &config);
        let descs: Vec<_> = layers
            .iter()
            .map(|l| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": self.put_blob(repo, l), "size": l.len()}))
            .collect();
        let m = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": mt,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
            "layers": descs,
        }))
        .unwrap();
        let (st, h, b) = self.put_manifest(repo, tag, mt, &m);
        assert_eq!(st, 201, "{}", String::from_utf8_lossy(&b));
        let d = sha256_digest(&m);
        assert_eq!(header(&h, "docker-content-digest"), Some(d.clone()));
        (d, m)
    }
}

impl Drop for BerthRegistry {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("[berth test] berth registry log:\n{}", self.log());
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A temp directory removed on drop (also when the test panics).
struct Scratch(PathBuf);

impl Scratch {
    fn new(prefix: &str) -> Scratch {
        let p = PathBuf::from(format!("/tmp/{prefix}-{}", random_hex(8)));
        fs::create_dir_all(&p).expect("create scratch dir");
        Scratch(p)
    }
    /// A path inside that does not exist yet (skopeo creates it).
    fn sub(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Deterministic bytes that do not compress.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn json(b: &[u8]) -> serde_json::Value {
    serde_json::from_slice(b).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(b)))
}

fn error_code(b: &[u8]) -> String {
    json(b)["errors"][0]["code"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn skopeo(args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new("skopeo");
    cmd.args(args);
    run_with_timeout(cmd, None, Duration::from_secs(180))
}

fn skopeo_ok(args: &[&str]) -> String {
    let out = skopeo(args);
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A docker-archive of busybox made by a fresh engine (import + docker save).
fn busybox_archive(d: &TestDaemon) -> String {
    let local = format!("rs-bb-{}:latest", random_hex(6));
    d.import_busybox(&local);
    let archive = d.scratch_dir().join(format!("bb-{}.tar", random_hex(6)));
    let s = archive.to_string_lossy().to_string();
    d.docker_ok(&["save", "-o", &s, &local]);
    s
}

/// The manifest digest of an image copied to skopeo's `dir:` transport (manifest kept verbatim),
/// after checking that every blob there hashes to its name.
fn dir_manifest_digest(dir: &Path) -> String {
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().to_string();
        if name.len() == 64 {
            let data = fs::read(e.path()).unwrap();
            assert_eq!(sha256_digest(&data), format!("sha256:{name}"));
        }
    }
    sha256_digest(&fs::read(dir.join("manifest.json")).expect("manifest.json"))
}

#[test]
fn skopeo_copies_images_in_and_out() {
    let d = TestDaemon::start();
    let archive = busybox_archive(&d);
    let reg = BerthRegistry::start(&[]);
    let a = reg.addr();

    // Docker schema 2 and OCI, in.
    skopeo_ok(&[
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        &format!("docker-archive:{archive}"),
        &format!("docker://{a}/lib/busybox:v1"),
    ]);
    skopeo_ok(&[
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        "--format",
        "oci",
        &format!("docker-archive:{archive}"),
        &format!("docker://{a}/lib/busybox-oci:v1"),
    ]);

    for (repo, mt) in [
        ("lib/busybox", DOCKER_V2),
        ("lib/busybox-oci", OCI_MANIFEST),
    ] {
        let (st, h, body) = reg.http(
            "GET",
            &format!("/v2/{repo}/manifests/v1"),
            &[("Accept", ACCEPT_ALL)],
            None,
        );
        assert_eq!(st, 200);
        assert_eq!(header(&h, "content-type").as_deref(), Some(mt), "{repo}");
        let digest = sha256_digest(&body);
        assert_eq!(header(&h, "docker-content-digest"), Some(digest.clone()));

        // skopeo inspect sees the same digest and the one layer.
        let insp = json(
            skopeo_ok(&[
                "inspect",
                "--tls-verify=false",
                &format!("docker://{a}/{repo}:v1"),
            ])
            .as_bytes(),
        );
        assert_eq!(insp["Digest"], digest.as_str());
        assert_eq!(insp["Layers"].as_array().map(|l| l.len()), Some(1));
        assert_eq!(insp["RepoTags"], serde_json::json!(["v1"]));

        // And out again, byte for byte (same manifest digest, blobs that hash to their names).
        let scratch = Scratch::new("brs-out");
        let out = scratch.sub("img");
        skopeo_ok(&[
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            &format!("docker://{a}/{repo}:v1"),
            &format!("dir:{}", out.display()),
        ]);
        assert_eq!(dir_manifest_digest(&out), digest);
    }

    // The manifest by digest, HEAD with the same headers, the catalog, the tags.
    let (st, h, _) = reg.http(
        "HEAD",
        "/v2/lib/busybox/manifests/v1",
        &[("Accept", ACCEPT_ALL)],
        None,
    );
    assert_eq!(st, 200);
    let dg = header(&h, "docker-content-digest").unwrap();
    let (st, _, body) = reg.http("GET", &format!("/v2/lib/busybox/manifests/{dg}"), &[], None);
    assert_eq!((st, sha256_digest(&body)), (200, dg));
    let (_, _, body) = reg.http("GET", "/v2/_catalog", &[], None);
    assert_eq!(
        json(&body)["repositories"],
        serde_json::json!(["lib/busybox", "lib/busybox-oci"])
    );
    skopeo_ok(&[
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!("docker://{a}/lib/busybox:v1"),
        &format!("docker://{a}/lib/busybox:v2"),
    ]);
    let tags = json(
        skopeo_ok(&[
            "list-tags",
            "--tls-verify=false",
            &format!("docker://{a}/lib/busybox"),
        ])
        .as_bytes(),
    );
    assert_eq!(tags["Tags"], serde_json::json!(["v1", "v2"]));
}

#[test]
fn chunked_uploads_ranges_and_digest_checks() {
    let reg = BerthRegistry::start(&[]);
    let (st, h, _) = reg.http("GET", "/v2/", &[], None);
    assert_eq!(st, 200);
    assert_eq!(
        header(&h, "docker-distribution-api-version").as_deref(),
        Some("registry/2.0")
    );

    let data = noise(300_000, 1);
    let digest = sha256_digest(&data);
    let (st, h, _) = reg.http("POST", "/v2/up/blobs/uploads/", &[], Some(b""));
    assert_eq!(st, 202);
    let loc = header(&h, "location").expect("location");
    assert!(header(&h, "docker-upload-uuid").is_some());
    assert_eq!(header(&h, "range").as_deref(), Some("0-0"));

    // Chunk 1, then a chunk with a gap (416, nothing appended), then chunk 2.
    let (st, h, _) = reg.http(
        "PATCH",
        &loc,
        &[
            ("Content-Range", "0-99999"),
            ("Content-Type", "application/octet-stream"),
        ],
        Some(&data[..100_000]),
    );
    assert_eq!(st, 202);
    assert_eq!(header(&h, "range").as_deref(), Some("0-99999"));
    let (st, h, b) = reg.http(
        "PATCH",
        &loc,
        &[("Content-Range", "100001-100010")],
        Some(&data[100_001..100_011]),
    );
    assert_eq!(st, 416, "{}", String::from_utf8_lossy(&b));
    assert_eq!(header(&h, "range").as_deref(), Some("0-99999"));
    // A Content-Range that does not match the body length: 416, nothing appended.
    let (st, _, _) = reg.http(
        "PATCH",
        &loc,
        &[("Content-Range", "100000-100099")],
        Some(&data[100_000..100_050]),
    );
    assert_eq!(st, 416);
    let (st, h, _) = reg.http("GET", &loc, &[], None);
    assert_eq!(st, 204);
    assert_eq!(header(&h, "range").as_deref(), Some("0-99999"));
    let (st, _, _) = reg.http(
        "PATCH",
        &loc,
        &[("Content-Range", "100000-199999")],
        Some(&data[100_000..200_000]),
    );
    assert_eq!(st, 202);

    // The wrong digest: 400 DIGEST_INVALID, nothing published, the session is gone.
    let wrong = sha256_digest(b"something else");
    let (st, _, b) = reg.http(
        "PUT",
        &format!("{loc}?digest={wrong}"),
        &[],
        Some(&data[200_000..]),
    );
    assert_eq!((st, error_code(&b)), (400, "DIGEST_INVALID".to_string()));
    for d in [&wrong, &digest] {
        let (st, _, _) = reg.http("HEAD", &format!("/v2/up/blobs/{d}"), &[], None);
        assert_eq!(st, 404);
    }
    let (st, _, b) = reg.http("GET", &loc, &[], None);
    assert_eq!(
        (st, error_code(&b)),
        (404, "BLOB_UPLOAD_UNKNOWN".to_string())
    );
    assert_eq!(
        fs::read_dir(reg.root().join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );

    // Again, right: chunks then PUT with the last chunk.
    let (_, h, _) = reg.http("POST", "/v2/up/blobs/uploads/", &[], Some(b""));
    let loc = header(&h, "location").unwrap();
    let (st, h, _) = reg.http("PATCH", &loc, &[], Some(&data[..150_000]));
    assert_eq!(st, 202);
    let loc = header(&h, "location").unwrap();
    let (st, h, _) = reg.http(
        "PUT",
        &format!("{loc}?digest={digest}"),
        &[("Content-Range", "150000-299999")],
        Some(&data[150_000..]),
    );
    assert_eq!(st, 201);
    assert_eq!(
        header(&h, "location"),
        Some(format!("/v2/up/blobs/{digest}"))
    );
    assert_eq!(header(&h, "docker-content-digest"), Some(digest.clone()));

    // HEAD and GET, whole and in ranges.
    let blob = format!("/v2/up/blobs/{digest}");
    let (st, h, b) = reg.http("HEAD", &blob, &[], None);
    assert_eq!((st, b.len()), (200, 0));
    assert_eq!(header(&h, "content-length").as_deref(), Some("300000"));
    let (st, _, b) = reg.http("GET", &blob, &[], None);
    assert_eq!((st, b == data), (200, true));
    let (st, h, b) = reg.http("GET", &blob, &[("Range", "bytes=1000-1999")], None);
    assert_eq!(st, 206);
    assert_eq!(b, &data[1000..2000]);
    assert_eq!(
        header(&h, "content-range").as_deref(),
        Some("bytes 1000-1999/300000")
    );
    let (st, _, b) = reg.http("GET", &blob, &[("Range", "bytes=-10")], None);
    assert_eq!((st, b.as_slice()), (206, &data[299_990..]));
    let (st, _, b) = reg.http("GET", &blob, &[("Range", "bytes=299999-")], None);
    assert_eq!((st, b.as_slice()), (206, &data[299_999..]));
    let (st, h, _) = reg.http("GET", &blob, &[("Range", "bytes=300000-")], None);
    assert_eq!(st, 416);
    assert_eq!(
        header(&h, "content-range").as_deref(),
        Some("bytes */300000")
    );

    // Monolithic with a wrong digest publishes nothing.
    let other = noise(1000, 2);
    let (st, _, b) = reg.http(
        "POST",
        &format!("/v2/up/blobs/uploads/?digest={}", sha256_digest(b"x")),
        &[],
        Some(&other),
    );
    assert_eq!((st, error_code(&b)), (400, "DIGEST_INVALID".to_string()));
    assert_eq!(
        fs::read_dir(reg.root().join("blobs/sha256"))
            .unwrap()
            .count(),
        1
    );
    assert_eq!(fs::read_dir(reg.root().join("uploads")).unwrap().count(), 0);

    // Cross-repository mount: 201 from a repo that has it, a new session otherwise.
    let (st, h, _) = reg.http(
        "POST",
        &format!("/v2/other/blobs/uploads/?mount={digest}&from=up"),
        &[],
        Some(b""),
    );
    assert_eq!(st, 201);
    assert_eq!(
        header(&h, "location"),
        Some(format!("/v2/other/blobs/{digest}"))
    );
    let (st, _, _) = reg.http("HEAD", &format!("/v2/other/blobs/{digest}"), &[], None);
    assert_eq!(st, 200);
    let (st, h, _) = reg.http(
        "POST",
        &format!("/v2/third/blobs/uploads/?mount={digest}&from=nowhere"),
        &[],
        Some(b""),
    );
    assert_eq!(st, 202);
    let loc = header(&h, "location").unwrap();
    // A session belongs to its repository; DELETE cancels it.
    let (st, _, _) = reg.http("GET", &loc.replace("/third/", "/up/"), &[], None);
    assert_eq!(st, 404);
    let (st, _, _) = reg.http("DELETE", &loc, &[], None);
    assert_eq!(st, 204);
    let (st, _, _) = reg.http("GET", &loc, &[], None);
    assert_eq!(st, 404);

    // Blob DELETE removes it from that repository only.
    let (st, _, _) = reg.http("DELETE", &format!("/v2/other/blobs/{digest}"), &[], None);
    assert_eq!(st, 202);
    let (st, _, b) = reg.http("GET", &format!("/v2/other/blobs/{digest}"), &[], None);
    assert_eq!((st, error_code(&b)), (404, "BLOB_UNKNOWN".to_string()));
    let (st, _, _) = reg.http("HEAD", &blob, &[], None);
    assert_eq!(st, 200);
}

#[test]
fn manifests_indexes_referrers_and_errors() {
    let reg = BerthRegistry::start(&[]);
    let layer = noise(5000, 3);
    let (md, m) = reg.push_image("app", "v1", std::slice::from_ref(&layer), OCI_MANIFEST);

    // The media type is stored and served back, by tag and digest.
    for r in ["v1", md.as_str()] {
        let (st, h, b) = reg.http(
            "GET",
            &format!("/v2/app/manifests/{r}"),
            &[("Accept", ACCEPT_ALL)],
            None,
        );
        assert_eq!(st, 200);
        assert_eq!(header(&h, "content-type").as_deref(), Some(OCI_MANIFEST));
        assert_eq!(b, m);
    }

    // A manifest naming a blob the repository lacks: MANIFEST_BLOB_UNKNOWN, nothing stored.
    let missing = sha256_digest(b"not uploaded");
    let bad = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": DOCKER_V2,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": missing, "size": 12},
        "layers": [],
    }))
    .unwrap();
    let (st, _, b) = reg.put_manifest("app", "broken", DOCKER_V2, &bad);
    assert_eq!(
        (st, error_code(&b)),
        (400, "MANIFEST_BLOB_UNKNOWN".to_string())
    );
    assert_eq!(json(&b)["errors"][0]["detail"]["digest"], missing.as_str());
    let (st, _, b) = reg.http("GET", "/v2/app/manifests/broken", &[], None);
    assert_eq!((st, error_code(&b)), (404, "MANIFEST_UNKNOWN".to_string()));
    // A blob of another repository is not enough.
    let foreign = reg.put_blob("elsewhere", b"cfg");
    let bad2 = String::from_utf8(bad.clone())
        .unwrap()
        .replace(&missing, &foreign);
    let (st, _, _) = reg.put_manifest("app", "broken", DOCKER_V2, bad2.as_bytes());
    assert_eq!(st, 400);
    // A digest reference that does not match the body; a Content-Type that contradicts it.
    let (st, _, b) = reg.put_manifest("app", &missing, OCI_MANIFEST, &m);
    assert_eq!((st, error_code(&b)), (400, "DIGEST_INVALID".to_string()));
    let (st, _, b) = reg.put_manifest("app", "v9", DOCKER_V2, &m);
    assert_eq!((st, error_code(&b)), (400, "MANIFEST_INVALID".to_string()));

    // Indexes: OCI index and Docker list over existing manifests; children must exist.
    for (tag, mt) in [("multi", OCI_INDEX), ("list", DOCKER_LIST)] {
        let child_mt = if mt == OCI_INDEX {
            OCI_MANIFEST
        } else {
            DOCKER_V2
        };
        let idx = |d: &str| {
            serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2, "mediaType": mt,
                "manifests": [{"mediaType": child_mt, "digest": d, "size": m.len(), "platform": {"architecture": "amd64", "os": "linux"}}],
            }))
            .unwrap()
        };
        let (st, _, b) = reg.put_manifest("app", tag, mt, &idx(&missing));
        assert_eq!(
            (st, error_code(&b)),
            (400, "MANIFEST_BLOB_UNKNOWN".to_string())
        );
        let body = idx(&md);
        let (st, _, _) = reg.put_manifest("app", tag, mt, &body);
        assert_eq!(st, 201);
        let (_, h, b) = reg.http(
            "GET",
            &format!("/v2/app/manifests/{tag}"),
            &[("Accept", ACCEPT_ALL)],
            None,
        );
        assert_eq!(header(&h, "content-type").as_deref(), Some(mt));
        assert_eq!(b, body);
    }

    // Referrers: an artifact whose subject is the image.
    let art_cfg = reg.put_blob("app", b"{}");
    let artifact = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.sbom",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": art_cfg, "size": 2},
        "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": md, "size": m.len()},
        "annotations": {"org.example": "yes"},
    }))
    .unwrap();
    let ad = sha256_digest(&artifact);
    let (st, h, _) = reg.put_manifest("app", &ad, OCI_MANIFEST, &artifact);
    assert_eq!(st, 201);
    assert_eq!(header(&h, "oci-subject"), Some(md.clone()));
    let (st, h, b) = reg.http("GET", &format!("/v2/app/referrers/{md}"), &[], None);
    assert_eq!(st, 200);
    assert_eq!(header(&h, "content-type").as_deref(), Some(OCI_INDEX));
    let v = json(&b);
    assert_eq!(v["manifests"][0]["digest"], ad.as_str());
    assert_eq!(
        v["manifests"][0]["artifactType"],
        "application/vnd.example.sbom"
    );
    assert_eq!(v["manifests"][0]["annotations"]["org.example"], "yes");
    let (_, h, b) = reg.http(
        "GET",
        &format!("/v2/app/referrers/{md}?artifactType=application%2Fvnd.other"),
        &[],
        None,
    );
    assert_eq!(
        header(&h, "oci-filters-applied").as_deref(),
        Some("artifactType")
    );
    assert_eq!(json(&b)["manifests"], serde_json::json!([]));
    let (st, _, b) = reg.http("GET", &format!("/v2/app/referrers/{missing}"), &[], None);
    assert_eq!(
        (st, json(&b)["manifests"].clone()),
        (200, serde_json::json!([]))
    );

    // Names and references per the spec.
    for p in [
        "/v2/UPPER/tags/list",
        "/v2/a/../b/tags/list",
        "/v2/a//b/tags/list",
        "/v2/_x/tags/list",
    ] {
        let (st, _, b) = reg.http("GET", p, &[], None);
        assert_eq!(
            (st, error_code(&b)),
            (400, "NAME_INVALID".to_string()),
            "{p}"
        );
    }
    let (st, _, b) = reg.http("GET", "/v2/app/blobs/sha256:..%2F..%2Fetc", &[], None);
    assert_eq!((st, error_code(&b)), (400, "DIGEST_INVALID".to_string()));
    let (st, _, b) = reg.http("GET", "/v2/nothere/tags/list", &[], None);
    assert_eq!((st, error_code(&b)), (404, "NAME_UNKNOWN".to_string()));

    // DELETE by digest takes its tags along; by tag only the tag.
    let (st, _, _) = reg.http("DELETE", "/v2/app/manifests/list", &[], None);
    assert_eq!(st, 202);
    let (st, _, _) = reg.http("DELETE", &format!("/v2/app/manifests/{ad}"), &[], None);
    assert_eq!(st, 202);
    let (_, _, b) = reg.http("GET", &format!("/v2/app/referrers/{md}"), &[], None);
    assert_eq!(json(&b)["manifests"], serde_json::json!([]));
    let (st, _, _) = reg.http("DELETE", &format!("/v2/app/manifests/{md}"), &[], None);
    assert_eq!(st, 202);
    let (st, _, _) = reg.http("GET", "/v2/app/manifests/v1", &[], None);
    assert_eq!(st, 404);
    let (_, _, b) = reg.http("GET", "/v2/app/tags/list", &[], None);
    assert_eq!(json(&b)["tags"], serde_json::json!(["multi"]));
}

#[test]
fn catalog_and_tags_paginate() {
    let reg = BerthRegistry::start(&[]);
    let repos = ["p/a", "p/b", "p/c", "p/d", "p/e"];
    let mut md = String::new();
    for (i, r) in repos.iter().enumerate() {
        md = reg
            .push_image(r, "t0", &[noise(100, i as u64)], OCI_MANIFEST)
            .0;
    }
    for t in ["t1", "t2", "t3"] {
        let (_, _, m) = reg.http("GET", &format!("/v2/p/e/manifests/{md}"), &[], None);
        let (st, _, _) = reg.put_manifest("p/e", t, OCI_MANIFEST, &m);
        assert_eq!(st, 201);
    }

    // Follow the Link headers two at a time.
    let mut path = "/v2/_catalog?n=2".to_string();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let (st, h, b) = reg.http("GET", &path, &[], None);
        assert_eq!(st, 200);
        let page: Vec<String> = serde_json::from_value(json(&b)["repositories"].clone()).unwrap();
        assert!(page.len() <= 2);
        seen.extend(page);
        pages += 1;
        match header(&h, "link") {
            Some(l) => {
                assert!(l.ends_with("rel=\"next\""), "{l}");
                path = l[l.find('<').unwrap() + 1..l.find('>').unwrap()].to_string();
            }
            None => break,
        }
    }
    assert_eq!(seen, repos);
    assert_eq!(pages, 3);

    let (_, h, b) = reg.http("GET", "/v2/p/e/tags/list?n=3", &[], None);
    assert_eq!(json(&b)["tags"], serde_json::json!(["t0", "t1", "t2"]));
    assert_eq!(
        header(&h, "link").as_deref(),
        Some("</v2/p/e/tags/list?last=t2&n=3>; rel=\"next\"")
    );
    let (_, h, b) = reg.http("GET", "/v2/p/e/tags/list?n=3&last=t2", &[], None);
    assert_eq!(json(&b)["tags"], serde_json::json!(["t3"]));
    assert!(header(&h, "link").is_none());
    // Page sizes are bounded: a huge n is served as at most 1000; a bad one is refused.
    let (st, _, b) = reg.http("GET", "/v2/_catalog?n=100000000", &[], None);
    assert_eq!(
        (st, json(&b)["repositories"].as_array().unwrap().len()),
        (200, 5)
    );
    let (st, _, b) = reg.http("GET", "/v2/_catalog?n=-1", &[], None);
    assert_eq!(
        (st, error_code(&b)),
        (400, "PAGINATION_NUMBER_INVALID".to_string())
    );
}

/// htpasswd -B style entry ($2y$, cost 5) for user `berth`, password `berth-pw`.
const HTPASSWD: &str = "berth:$2y$05$abcdefghijklmnopqrstuuV7hzyQoc/wdtt/ayAjveKWWBkjUuU0O\n";

fn basic(user: &str, pw: &str) -> String {
    // Base64 by hand (no dependency for one header).
    let raw = format!("{user}:{pw}");
    let t = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in raw.as_bytes().chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(t[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    format!("Basic {out}")
}

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

/// Send headers announcing `total` bytes, then only `sent` of them, and leave the connection open.
fn start_partial_request(
    addr: &str,
    method: &str,
    path: &str,
    data: &[u8],
    sent: usize,
) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    let head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n", data.len());
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&data[..sent]).unwrap();
    s.flush().unwrap();
    s
}

/// Poll until the upload data file has at least `n` bytes (the server has written them).
fn wait_upload_bytes(root: &Path, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut best = 0;
        if let Ok(rd) = fs::read_dir(root.join("uploads")) {
            for e in rd.flatten() {
                best = best.max(
                    fs::metadata(e.path().join("data"))
                        .map(|m| m.len())
                        .unwrap_or(0),
                );
            }
        }
        if best >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "upload never reached {n} bytes (at {best})"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn kill9_mid_upload_never_serves_a_partial_blob() {
    let mut reg = BerthRegistry::start(&[]);
    // 8 MiB, more than the server's 1 MiB write buffer, so bytes reach the disk mid-request.
    let data = noise(8 << 20, 5);
    let digest = sha256_digest(&data);

    // A monolithic upload killed half way.
    let s1 = start_partial_request(
        &reg.addr(),
        "POST",
        &format!("/v2/crash/blobs/uploads/?digest={digest}"),
        &data,
        4 << 20,
    );
    wait_upload_bytes(&reg.root(), 2 << 20);
    reg.kill9();
    drop(s1);
    reg.spawn();
    let (st, _, _) = reg.http("HEAD", &format!("/v2/crash/blobs/{digest}"), &[], None);
    assert_eq!(st, 404);
    let names: Vec<_> = fs::read_dir(reg.root().join("blobs/sha256"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(names.is_empty(), "{names:?}");

    // A chunked session killed during its PUT: restarted, the session resumes where the disk is.
    let (_, h, _) = reg.http("POST", "/v2/crash/blobs/uploads/", &[], Some(b""));
    let loc = header(&h, "location").unwrap();
    let (st, _, _) = reg.http(
        "PATCH",
        &loc,
        &[("Content-Range", "0-1048575")],
        Some(&data[..1 << 20]),
    );
    assert_eq!(st, 202);
    let s2 = start_partial_request(
        &reg.addr(),
        "PUT",
        &format!("{loc}?digest={digest}"),
        &data[1 << 20..],
        5 << 20,
    );
    wait_upload_bytes(&reg.root(), 3 << 20);
    reg.kill9();
    drop(s2);
    reg.spawn();
    let (st, _, _) = reg.http("GET", &format!("/v2/crash/blobs/{digest}"), &[], None);
    assert_eq!(st, 404);
    // The status tells how much the disk holds; the finish is refused by digest, not published.
    let (st, h, _) = reg.http("GET", &loc, &[], None);
    assert_eq!(st, 204);
    let have: usize = header(&h, "range")
        .unwrap()
        .split('-')
        .nth(1)
        .unwrap()
        .parse::<usize>()
        .unwrap()
        + 1;
    assert!(have >= 1 << 20 && have < data.len(), "{have}");
    let (st, _, _) = reg.http(
        "PUT",
        &format!("{loc}?digest={digest}"),
        &[("Content-Range", &format!("{have}-{}", data.len() - 1))],
        Some(&data[have..]),
    );
    assert_eq!(st, 201, "resumed upload");
    let (st, _, b) = reg.http("GET", &format!("/v2/crash/blobs/{digest}"), &[], None);
    assert_eq!((st, b == data), (200, true));

    // And a fresh monolithic upload of another blob works.
    let d2 = reg.put_blob("crash", &data[..1000]);
    let (st, _, _) = reg.http("HEAD", &format!("/v2/crash/blobs/{d2}"), &[], None);
    assert_eq!(st, 200);
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
