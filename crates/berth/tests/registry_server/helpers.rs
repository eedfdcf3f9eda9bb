//! Shared by registry_server.rs and registry_server_access.rs: a `berth registry serve` process
//! per test (free port, own root, killed and removed on drop), scratch dirs, skopeo, test data.

#![allow(dead_code)]

use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::registry::{free_port, header, http_tcp, sha256_digest};
use crate::common::{berth_exe, random_hex, run_with_timeout, TestDaemon};

pub const START_TIMEOUT: Duration = Duration::from_secs(20);
pub const DOCKER_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const ACCEPT_ALL: &str = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";

pub type Resp = (u16, Vec<(String, String)>, Vec<u8>);

/// A `berth registry serve` process on 127.0.0.1 with a free port and its own root.
pub struct BerthRegistry {
    dir: PathBuf,
    port: u16,
    args: Vec<String>,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl BerthRegistry {
    pub fn start(extra: &[&str]) -> BerthRegistry {
        Self::start_env(extra, &[])
    }

    pub fn start_env(extra: &[&str], env: &[(&str, &str)]) -> BerthRegistry {
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

    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("serve.log")).unwrap_or_default()
    }

    /// Start (or restart on the same root); the listening socket is bound only once the
    /// storage, auth and TLS set-up succeeded, so a TCP connect means ready.
    pub fn spawn(&mut self) {
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

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }

    pub fn http(
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
    pub fn put_blob(&self, repo: &str, data: &[u8]) -> String {
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

    pub fn put_manifest(&self, repo: &str, reference: &str, mt: &str, data: &[u8]) -> Resp {
        self.http(
            "PUT",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Content-Type", mt)],
            Some(data),
        )
    }

    /// An image of `layers` (random-looking bytes) with an OCI or Docker manifest under `tag`.
    pub fn push_image(
        &self,
        repo: &str,
        tag: &str,
        layers: &[Vec<u8>],
        mt: &str,
    ) -> (String, Vec<u8>) {
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
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(prefix: &str) -> Scratch {
        let p = PathBuf::from(format!("/tmp/{prefix}-{}", random_hex(8)));
        fs::create_dir_all(&p).expect("create scratch dir");
        Scratch(p)
    }
    /// A path inside that does not exist yet (skopeo creates it).
    pub fn sub(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Deterministic bytes that do not compress.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
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

pub fn json(b: &[u8]) -> serde_json::Value {
    serde_json::from_slice(b).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(b)))
}

pub fn error_code(b: &[u8]) -> String {
    json(b)["errors"][0]["code"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

pub fn skopeo(args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new("skopeo");
    cmd.args(args);
    run_with_timeout(cmd, None, Duration::from_secs(180))
}

pub fn skopeo_ok(args: &[&str]) -> String {
    let out = skopeo(args);
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A docker-archive of busybox made by a fresh engine (import + docker save).
pub fn busybox_archive(d: &TestDaemon) -> String {
    let local = format!("rs-bb-{}:latest", random_hex(6));
    d.import_busybox(&local);
    let archive = d.scratch_dir().join(format!("bb-{}.tar", random_hex(6)));
    let s = archive.to_string_lossy().to_string();
    d.docker_ok(&["save", "-o", &s, &local]);
    s
}

/// The manifest digest of an image copied to skopeo's `dir:` transport (manifest kept verbatim),
/// after checking that every blob there hashes to its name.
pub fn dir_manifest_digest(dir: &Path) -> String {
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

/// htpasswd -B style entry ($2y$, cost 5) for user `berth`, password `berth-pw`.
pub const HTPASSWD: &str = "berth:$2y$05$abcdefghijklmnopqrstuuV7hzyQoc/wdtt/ayAjveKWWBkjUuU0O\n";

pub fn basic(user: &str, pw: &str) -> String {
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
