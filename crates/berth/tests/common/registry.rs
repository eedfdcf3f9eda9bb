//! A real registry for tests: Debian's `docker-registry` (distribution 2.8) on 127.0.0.1 with a
//! free port and its own temp storage, plus helpers to fill it: `push_busybox` (docker save from a
//! TestDaemon + `skopeo copy`) and raw blob/manifest uploads (`put_blob`, `put_manifest`) to build
//! any image by hand (OCI or Docker media types, indexes). Drop kills it and removes its dirs.

#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use super::{random_hex, run_with_timeout, TestDaemon};

pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
const START_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Registry {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
    /// `user:password` when started with Basic auth (sent by the helpers here).
    creds: Option<String>,
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// Status, headers (lower-case names) and body of a response.
pub type HttpResponse = (u16, Vec<(String, String)>, Vec<u8>);

pub fn sha256_hex(data: &[u8]) -> String {
    hex_lower(&Sha256::digest(data))
}

pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Registry {
    /// Start docker-registry; panics (with its log) if it does not answer /v2/ in time.
    pub fn start() -> Registry {
        Self::start_with(None)
    }

    /// Basic auth required for `user` / `password` (bcrypt htpasswd made with python3's crypt).
    pub fn start_with_auth(user: &str, password: &str) -> Registry {
        let out = Command::new("python3")
            .args([
                "-W",
                "ignore",
                "-c",
                "import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))",
                password,
            ])
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "bcrypt: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let mut r = Self::start_with(Some(&format!("{user}:{hash}\n")));
        r.creds = Some(format!("{user}:{password}"));
        r
    }

    /// With `htpasswd` (a file content, bcrypt lines): Basic auth required.
    pub fn start_with(htpasswd: Option<&str>) -> Registry {
        let mut last_err = String::new();
        for _attempt in 0..3 {
            let dir = PathBuf::from(format!("/tmp/br-{}", random_hex(8)));
            fs::create_dir_all(dir.join("storage")).expect("create registry dir");
            let port = free_port();
            let mut auth = String::new();
            if let Some(h) = htpasswd {
                fs::write(dir.join("htpasswd"), h).expect("write htpasswd");
                auth = format!(
                    "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                    dir.join("htpasswd").display()
                );
            }
            let config = format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: {}\n{auth}",
                dir.join("storage").display(),
                random_hex(16)
            );
            fs::write(dir.join("config.yml"), config).expect("write registry config");
            let log = fs::File::create(dir.join("registry.log")).expect("create registry log");
            let log2 = log.try_clone().expect("clone log fd");
            let child = Command::new(REGISTRY_BIN)
                .arg("serve")
                .arg(dir.join("config.yml"))
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log2)
                .spawn()
                .expect("start docker-registry");
            let mut r = Registry {
                dir,
                port,
                child: Some(child),
                creds: None,
            };
            let deadline = Instant::now() + START_TIMEOUT;
            while Instant::now() < deadline {
                if let Some(Ok(Some(_))) = r.child.as_mut().map(|c| c.try_wait()) {
                    break;
                }
                if let Ok((status, _, _)) = r.http("GET", "/v2/", &[], None) {
                    if status == 200 || status == 401 {
                        return r;
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            last_err = fs::read_to_string(r.dir.join("registry.log")).unwrap_or_default();
            drop(r);
        }
        panic!("docker-registry did not start: {last_err}");
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn storage(&self) -> PathBuf {
        self.dir.join("storage")
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }

    /// One HTTP/1.1 request (Connection: close): status, headers (lower-case names), body.
    pub fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> std::io::Result<HttpResponse> {
        let auth = self
            .creds
            .as_ref()
            .map(|c| format!("Basic {}", base64(c.as_bytes())));
        let mut h: Vec<(&str, &str)> = headers.to_vec();
        if let Some(a) = &auth {
            h.push(("Authorization", a));
        }
        http_tcp(&self.addr(), method, path, &h, body)
    }

    /// Upload a blob (monolithic POST + PUT); returns its digest.
    pub fn put_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = sha256_digest(data);
        let (st, h, body) = self
            .http(
                "POST",
                &format!("/v2/{repo}/blobs/uploads/"),
                &[],
                Some(b""),
            )
            .expect("start upload");
        assert_eq!(st, 202, "upload start: {}", String::from_utf8_lossy(&body));
        let loc = header(&h, "location").expect("upload location");
        let loc = loc
            .strip_prefix(&format!("http://{}", self.addr()))
            .unwrap_or(&loc)
            .to_string();
        let sep = if loc.contains('?') { '&' } else { '?' };
        let (st, _, body) = self
            .http(
                "PUT",
                &format!("{loc}{sep}digest={digest}"),
                &[("Content-Type", "application/octet-stream")],
                Some(data),
            )
            .expect("finish upload");
        assert_eq!(st, 201, "upload put: {}", String::from_utf8_lossy(&body));
        digest
    }

    /// PUT a manifest under a tag or digest; returns its digest.
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        data: &[u8],
    ) -> String {
        let (st, _, body) = self
            .http(
                "PUT",
                &format!("/v2/{repo}/manifests/{reference}"),
                &[("Content-Type", media_type)],
                Some(data),
            )
            .expect("put manifest");
        assert_eq!(st, 201, "put manifest: {}", String::from_utf8_lossy(&body));
        sha256_digest(data)
    }

    /// Put an import of busybox into the registry as `repo:tag` (docker save from `daemon`, then
    /// skopeo copy, which gzips the layer: a Docker schema 2 manifest). `oci` selects OCI media
    /// types. Returns the manifest digest.
    pub fn push_busybox(&self, daemon: &TestDaemon, repo_tag: &str, oci: bool) -> String {
        let local = format!("bbsrc-{}:latest", random_hex(6));
        daemon.import_busybox(&local);
        let archive = daemon
            .scratch_dir()
            .join(format!("bb-{}.tar", random_hex(6)));
        let archive_s = archive.to_string_lossy().to_string();
        daemon.docker_ok(&["save", "-o", &archive_s, &local]);
        daemon.docker_ok(&["rmi", &local]);
        self.skopeo_copy_in(&format!("docker-archive:{archive_s}"), repo_tag, oci);
        let _ = fs::remove_file(&archive);
        self.manifest_digest(repo_tag)
    }

    /// `skopeo copy SRC docker://ADDR/repo_tag`.
    pub fn skopeo_copy_in(&self, src: &str, repo_tag: &str, oci: bool) {
        let dest = format!("docker://{}/{repo_tag}", self.addr());
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if let Some(c) = &self.creds {
            cmd.args(["--dest-creds", c]);
        }
        if oci {
            cmd.args(["--format", "oci"]);
        }
        cmd.args([src, &dest]);
        let out = run_with_timeout(cmd, None, Duration::from_secs(120));
        assert!(
            out.status.success(),
            "skopeo copy {src} {dest}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The digest the registry gives for `repo:tag`.
    pub fn manifest_digest(&self, repo_tag: &str) -> String {
        let (repo, tag) = repo_tag.rsplit_once(':').expect("repo:tag");
        let accept = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";
        let (st, h, body) = self
            .http(
                "GET",
                &format!("/v2/{repo}/manifests/{tag}"),
                &[("Accept", accept)],
                None,
            )
            .expect("get manifest");
        assert_eq!(
            st,
            200,
            "manifest {repo_tag}: {}",
            String::from_utf8_lossy(&body)
        );
        let d = sha256_digest(&body);
        if let Some(hd) = header(&h, "docker-content-digest") {
            assert_eq!(hd, d);
        }
        d
    }

    /// GET a manifest's body.
    pub fn get_manifest(&self, repo: &str, reference: &str) -> Vec<u8> {
        let accept = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";
        let (st, _, body) = self
            .http(
                "GET",
                &format!("/v2/{repo}/manifests/{reference}"),
                &[("Accept", accept)],
                None,
            )
            .expect("get manifest");
        assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
        body
    }

    /// GET a blob.
    pub fn get_blob(&self, repo: &str, digest: &str) -> Vec<u8> {
        let (st, _, body) = self
            .http("GET", &format!("/v2/{repo}/blobs/{digest}"), &[], None)
            .expect("get blob");
        assert_eq!(st, 200);
        body
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("[berth test] registry log: {}", self.log());
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub fn header(h: &[(String, String)], name: &str) -> Option<String> {
    h.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}

/// One HTTP/1.1 request over TCP with `Connection: close`.
pub fn http_tcp(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> std::io::Result<HttpResponse> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    if let Some(b) = body {
        // A server may answer (e.g. 416) and close before reading the whole body: then the
        // write fails but the answer is still there to read.
        if let Err(e) = s.write_all(b) {
            if !matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ) {
                return Err(e);
            }
        }
    }
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let end = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of headers"))?;
    let head = String::from_utf8_lossy(&resp[..end]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    let hs: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let (_, body) = super::parse_http_response(&resp)?;
    Ok((status, hs, body))
}

/// A tar (uncompressed) with the given regular files (path, content, mode).
pub fn layer_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o755);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, *data).expect("tar append");
    }
    b.into_inner().expect("tar finish")
}

/// A minimal image config (linux/`arch`) for the given diff ids.
pub fn image_config(arch: &str, diff_ids: &[String], cmd: &[&str]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": cmd, "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": diff_ids.iter().map(|_| serde_json::json!({"created_by": "test"})).collect::<Vec<_>>(),
    }))
    .expect("config json")
}

/// Upload layers (uncompressed tars) and a config; PUT an OCI (or Docker) manifest under `tag`.
/// Returns (manifest digest, manifest bytes).
pub fn push_image(
    reg: &Registry,
    repo: &str,
    tag: &str,
    arch: &str,
    layers: &[Vec<u8>],
    oci: bool,
) -> (String, Vec<u8>) {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha256_digest(l)).collect();
    let config = image_config(arch, &diff_ids, &["/bin/sh"]);
    let config_digest = reg.put_blob(repo, &config);
    let mut descs = Vec::new();
    for l in layers {
        let d = reg.put_blob(repo, l);
        descs.push(serde_json::json!({
            "mediaType": if oci { "application/vnd.oci.image.layer.v1.tar" } else { "application/vnd.docker.image.rootfs.diff.tar.gzip" },
            "digest": d, "size": l.len()}));
    }
    let (mt, cmt) = if oci {
        (
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.config.v1+json",
        )
    } else {
        (
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.container.image.v1+json",
        )
    };
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": mt,
        "config": {"mediaType": cmt, "digest": config_digest, "size": config.len()},
        "layers": descs,
    }))
    .expect("manifest json");
    let d = reg.put_manifest(repo, tag, mt, &manifest);
    (d, manifest)
}

/// Remove a directory tree, ignoring errors.
pub fn remove_all(p: &Path) {
    let _ = fs::remove_dir_all(p);
}
