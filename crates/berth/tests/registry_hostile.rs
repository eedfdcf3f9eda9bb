//! Pulls from a misbehaving registry (an in-process HTTP server on 127.0.0.1 written for each
//! test): wrong digests, wrong Content-Type, a manifest that is also an index, huge manifests,
//! digests with `..`, redirects to another host (credentials must not follow), Bearer and Basic
//! auth, and an engine killed mid-pull. Each failure must be a clear error and store nothing.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::registry::{image_config, layer_tar, sha256_digest};
use common::TestDaemon;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

#[derive(Debug, Clone)]
struct Req {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Send no Content-Length (close-delimited body).
    no_length: bool,
    /// Send this many body bytes, then stall until the gate opens (or the client leaves).
    stall_after: Option<usize>,
}

fn resp(status: u16, ct: &str, body: Vec<u8>) -> Resp {
    Resp {
        status,
        headers: vec![("Content-Type".into(), ct.into())],
        body,
        ..Default::default()
    }
}

type Handler = Arc<dyn Fn(&Req) -> Resp + Send + Sync>;

/// A tiny HTTP/1.1 server (one thread per connection, `Connection: close`).
struct Server {
    addr: String,
    log: Arc<Mutex<Vec<Req>>>,
    gate: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    bytes_sent: Arc<AtomicUsize>,
}

impl Server {
    fn start(ip: &str, handler: Handler) -> Server {
        let l = TcpListener::bind(format!("{ip}:0")).expect("bind test server");
        let addr = l.local_addr().expect("addr").to_string();
        let log = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let bytes_sent = Arc::new(AtomicUsize::new(0));
        l.set_nonblocking(true).expect("nonblocking");
        let (log2, gate2, stop2, sent2) =
            (log.clone(), gate.clone(), stop.clone(), bytes_sent.clone());
        std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((s, _)) => {
                        let (h, log, gate, stop, sent) = (
                            handler.clone(),
                            log2.clone(),
                            gate2.clone(),
                            stop2.clone(),
                            sent2.clone(),
                        );
                        std::thread::spawn(move || {
                            let _ = serve_conn(s, &h, &log, &gate, &stop, &sent);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Server {
            addr,
            log,
            gate,
            stop,
            bytes_sent,
        }
    }

    fn requests(&self) -> Vec<Req> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.gate.store(true, Ordering::SeqCst);
    }
}

fn serve_conn(
    s: TcpStream,
    h: &Handler,
    log: &Mutex<Vec<Req>>,
    gate: &AtomicBool,
    stop: &AtomicBool,
    sent: &AtomicUsize,
) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut r = BufReader::new(s.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    let mut len = 0usize;
    loop {
        let mut l = String::new();
        if r.read_line(&mut l)? == 0 || l == "\r\n" {
            break;
        }
        if let Some((k, v)) = l.trim_end().split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    let req = Req {
        method,
        path,
        headers,
    };
    log.lock().unwrap().push(req.clone());
    let resp = h(&req);
    let mut w = s;
    let mut head = format!("HTTP/1.1 {} X\r\nConnection: close\r\n", resp.status);
    for (k, v) in &resp.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !resp.no_length {
        head.push_str(&format!("Content-Length: {}\r\n", resp.body.len()));
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    if req.method == "HEAD" {
        return Ok(());
    }
    let first = resp
        .stall_after
        .unwrap_or(resp.body.len())
        .min(resp.body.len());
    w.write_all(&resp.body[..first])?;
    w.flush()?;
    sent.fetch_add(first, Ordering::SeqCst);
    if resp.stall_after.is_some() {
        while !gate.load(Ordering::SeqCst) && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
        w.write_all(&resp.body[first..])?;
    }
    Ok(())
}

/// An image: (manifest bytes, config bytes, layer bytes, layer digest, config digest).
struct Image {
    manifest: Vec<u8>,
    config: Vec<u8>,
    layer: Vec<u8>,
    layer_digest: String,
    config_digest: String,
}

fn image(tag_text: &str) -> Image {
    let layer = layer_tar(&[("hostile.txt", tag_text.as_bytes())]);
    let layer_digest = sha256_digest(&layer);
    let config = image_config("amd64", std::slice::from_ref(&layer_digest), &["/bin/sh"]);
    let config_digest = sha256_digest(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}],
    }))
    .unwrap();
    Image {
        manifest,
        config,
        layer,
        layer_digest,
        config_digest,
    }
}

/// A registry serving `img` as `repo:1`, with `tweak` deciding first (None: normal behaviour).
fn registry_for(
    img: Image,
    tweak: impl Fn(&Req, &Image) -> Option<Resp> + Send + Sync + 'static,
) -> Server {
    let handler: Handler = Arc::new(move |req: &Req| {
        if let Some(r) = tweak(req, &img) {
            return r;
        }
        normal(req, &img)
    });
    Server::start("127.0.0.1", handler)
}

fn normal(req: &Req, img: &Image) -> Resp {
    let p = req.path.as_str();
    if p == "/v2/" {
        return resp(200, "application/json", b"{}".to_vec());
    }
    if p.ends_with("/manifests/1")
        || p.ends_with(&format!("/manifests/{}", sha256_digest(&img.manifest)))
    {
        let mut r = resp(200, OCI_MANIFEST, img.manifest.clone());
        r.headers
            .push(("Docker-Content-Digest".into(), sha256_digest(&img.manifest)));
        return r;
    }
    if p.ends_with(&format!("/blobs/{}", img.config_digest)) {
        return resp(200, "application/octet-stream", img.config.clone());
    }
    if p.ends_with(&format!("/blobs/{}", img.layer_digest)) {
        return resp(200, "application/octet-stream", img.layer.clone());
    }
    resp(
        404,
        "application/json",
        br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#.to_vec(),
    )
}

/// Everything under content/sha256 and layers/ (names), to compare before and after.
/// The content of `file` in any unpacked layer of the engine.
fn layer_file(d: &TestDaemon, file: &str) -> Option<Vec<u8>> {
    std::fs::read_dir(d.data_root().join("layers"))
        .ok()?
        .flatten()
        .find_map(|e| std::fs::read(e.path().join(file)).ok())
}

fn store(d: &TestDaemon) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for sub in ["content/sha256", "layers"] {
        if let Ok(rd) = std::fs::read_dir(d.data_root().join(sub)) {
            for e in rd.flatten() {
                out.insert(format!("{sub}/{}", e.file_name().to_string_lossy()));
            }
        }
    }
    out
}

/// POST /images/create over the engine socket with an optional X-Registry-Auth; returns
/// (HTTP status, body text).
fn pull_api(d: &TestDaemon, image: &str, auth: Option<&str>) -> (u16, String) {
    let mut s = UnixStream::connect(d.socket()).expect("connect engine");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!(
        "POST /images/create?fromImage={image}&tag=1 HTTP/1.1\r\nHost: berth\r\nConnection: close\r\nContent-Length: 0\r\n"
    );
    if let Some(a) = auth {
        req.push_str(&format!("X-Registry-Auth: {a}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let (st, body) = common::parse_http_response(&out).expect("http response");
    (st, String::from_utf8_lossy(&body).to_string())
}

/// The pull's error: the HTTP error body or the stream's error line.
fn pull_error(d: &TestDaemon, image: &str) -> String {
    let (st, body) = pull_api(d, image, None);
    if st != 200 {
        return body;
    }
    let err = body
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string));
    err.unwrap_or_else(|| panic!("pull of {image} succeeded: {body}"))
}

fn assert_refused(d: &TestDaemon, srv: &Server, want: &str) {
    let before = store(d);
    let err = pull_error(d, &format!("{}/h/img", srv.addr));
    assert!(err.contains(want), "want {want:?} in {err:?}");
    assert_eq!(store(d), before, "nothing may be stored after: {err}");
    assert!(d
        .docker(&["image", "inspect", &format!("{}/h/img:1", srv.addr)])
        .status
        .code()
        .is_some_and(|c| c != 0));
}

#[test]
fn wrong_blob_digest_is_refused_and_nothing_stored() {
    let d = TestDaemon::start();
    let srv = registry_for(image("layer"), |req, img| {
        req.path.ends_with(&img.layer_digest).then(|| {
            let mut bad = img.layer.clone();
            let n = bad.len();
            bad[n / 2] ^= 0xff;
            resp(200, "application/octet-stream", bad)
        })
    });
    assert_refused(&d, &srv, "digest mismatch");
    // A wrong config blob too (same size).
    let srv = registry_for(image("cfg"), |req, img| {
        req.path.ends_with(&img.config_digest).then(|| {
            let text = String::from_utf8(img.config.clone())
                .unwrap()
                .replace("amd64", "arm64");
            resp(200, "application/octet-stream", text.into_bytes())
        })
    });
    assert_refused(&d, &srv, "digest mismatch");
}

#[test]
fn manifest_media_type_lies_are_refused() {
    let d = TestDaemon::start();
    // Content-Type of an HTML page.
    let srv = registry_for(image("ct"), |req, img| {
        req.path
            .contains("/manifests/")
            .then(|| resp(200, "text/html", img.manifest.clone()))
    });
    assert_refused(&d, &srv, "unsupported media type");
    // Declared an index, the body is a manifest.
    let srv = registry_for(image("ct2"), |req, img| {
        req.path
            .contains("/manifests/")
            .then(|| resp(200, OCI_INDEX, img.manifest.clone()))
    });
    assert_refused(&d, &srv, "declared");
    // Both an index and a manifest.
    let srv = registry_for(image("both"), |req, img| {
        req.path.contains("/manifests/").then(|| {
            let mut v: serde_json::Value = serde_json::from_slice(&img.manifest).unwrap();
            v["manifests"] = serde_json::json!([]);
            v.as_object_mut().unwrap().remove("mediaType");
            resp(200, OCI_MANIFEST, serde_json::to_vec(&v).unwrap())
        })
    });
    assert_refused(&d, &srv, "both an index");
}

#[test]
fn huge_manifests_are_refused() {
    let d = TestDaemon::start();
    let big = |img: &Image| {
        let mut v: serde_json::Value = serde_json::from_slice(&img.manifest).unwrap();
        v["annotations"] = serde_json::json!({"pad": "x".repeat(5 << 20)});
        serde_json::to_vec(&v).unwrap()
    };
    let srv = registry_for(image("big"), move |req, img| {
        req.path
            .contains("/manifests/")
            .then(|| resp(200, OCI_MANIFEST, big(img)))
    });
    assert_refused(&d, &srv, "exceeds the limit");
    // Without a Content-Length: the cap applies while reading.
    let srv = registry_for(image("big2"), move |req, img| {
        req.path.contains("/manifests/").then(|| {
            let mut r = resp(200, OCI_MANIFEST, big(img));
            r.no_length = true;
            r
        })
    });
    assert_refused(&d, &srv, "exceeds the limit");
}

#[test]
fn digests_with_dot_dot_are_refused() {
    let d = TestDaemon::start();
    let evil = "sha256:../../../../../../etc/passwd";
    let srv = registry_for(image("dots"), move |req, img| {
        req.path.contains("/manifests/").then(|| {
            let text = String::from_utf8(img.manifest.clone())
                .unwrap()
                .replace(&img.layer_digest, evil);
            resp(200, OCI_MANIFEST, text.into_bytes())
        })
    });
    assert_refused(&d, &srv, "invalid digest");
    // In an index entry.
    let srv = registry_for(image("dots2"), move |req, _img| {
        req.path.contains("/manifests/").then(|| {
            let idx = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": evil, "size": 10,
                 "platform": {"os": "linux", "architecture": "amd64"}}]});
            resp(200, OCI_INDEX, serde_json::to_vec(&idx).unwrap())
        })
    });
    assert_refused(&d, &srv, "invalid digest");
    // In Docker-Content-Digest.
    let srv = registry_for(image("dots3"), move |req, img| {
        req.path.contains("/manifests/").then(|| {
            let mut r = resp(200, OCI_MANIFEST, img.manifest.clone());
            r.headers
                .push(("Docker-Content-Digest".into(), evil.into()));
            r
        })
    });
    assert_refused(&d, &srv, "invalid digest");
}

fn b64url(s: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let b = s.as_bytes();
    let mut out = String::new();
    for c in b.chunks(3) {
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

#[test]
fn bearer_auth_and_redirects_never_carry_credentials_to_other_hosts() {
    let d = TestDaemon::start();
    let img = image("redirected");
    let layer = img.layer.clone();
    // The blob's real home, on another host (127.0.0.2).
    let other = Server::start(
        "127.0.0.2",
        Arc::new(move |_req: &Req| resp(200, "application/octet-stream", layer.clone())),
    );
    let other_addr = other.addr.clone();
    let realm_addr = Arc::new(Mutex::new(String::new()));
    let realm2 = realm_addr.clone();
    // "user:secret" in Basic form, as the token endpoint expects.
    let basic = "Basic dXNlcjpzZWNyZXQ=".to_string();
    let srv = registry_for(img, move |req, img| {
        let realm = realm2.lock().unwrap().clone();
        if req.path.starts_with("/token") {
            if req.header("authorization") != Some(basic.as_str()) {
                return Some(resp(401, "application/json", b"{}".to_vec()));
            }
            assert!(
                req.path.contains("scope=repository%3Ah%2Fimg%3Apull"),
                "{}",
                req.path
            );
            return Some(resp(
                200,
                "application/json",
                br#"{"token":"tok-123"}"#.to_vec(),
            ));
        }
        if req.header("authorization") != Some("Bearer tok-123") {
            let mut r = resp(
                401,
                "application/json",
                br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#
                    .to_vec(),
            );
            r.headers.push((
                "WWW-Authenticate".into(),
                format!(r#"Bearer realm="http://{realm}/token",service="hostile",scope="repository:h/img:pull""#),
            ));
            return Some(r);
        }
        if req.path.ends_with(&img.layer_digest) {
            let mut r = resp(307, "text/plain", Vec::new());
            r.headers.push((
                "Location".into(),
                format!("http://{other_addr}/storage/{}?sig=x", img.layer_digest),
            ));
            return Some(r);
        }
        None
    });
    *realm_addr.lock().unwrap() = srv.addr.clone();
    let name = format!("{}/h/img", srv.addr);
    // Anonymous: denied, nothing stored.
    let before = store(&d);
    let err = pull_error(&d, &name);
    assert!(
        err.contains("pull access denied") || err.contains("unauthorized"),
        "{err}"
    );
    assert_eq!(store(&d), before);
    // With credentials.
    let auth = b64url(&format!(
        r#"{{"username":"user","password":"secret","serveraddress":"{}"}}"#,
        srv.addr
    ));
    let (st, body) = pull_api(&d, &name, Some(&auth));
    assert_eq!(st, 200, "{body}");
    assert!(!body.contains("\"error\""), "{body}");
    assert!(body.contains("Downloaded newer image"), "{body}");
    let got = other.requests();
    assert!(!got.is_empty(), "the redirect target was not asked");
    for r in &got {
        assert!(
            r.header("authorization").is_none(),
            "credentials leaked: {r:?}"
        );
    }
    assert!(srv
        .requests()
        .iter()
        .any(|r| r.header("authorization") == Some("Bearer tok-123")));
    assert_eq!(
        layer_file(&d, "hostile.txt").as_deref(),
        Some(&b"redirected"[..])
    );
    // A ready registry token (X-Registry-Auth's registrytoken) is sent as is: no token request.
    let id = d.docker_ok(&["image", "inspect", "-f", "{{.Id}}", &format!("{name}:1")]);
    d.docker_ok(&["rmi", "-f", id.trim()]);
    let tokens_before = srv
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/token"))
        .count();
    let (st, body) = pull_api(&d, &name, Some(&b64url(r#"{"registrytoken":"tok-123"}"#)));
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("Downloaded newer image"), "{body}");
    let tokens_after = srv
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/token"))
        .count();
    assert_eq!(tokens_before, tokens_after);
}

#[test]
fn engine_killed_mid_pull_leaves_nothing_and_a_retry_completes() {
    let d = TestDaemon::start();
    // A big layer, sent half then held back.
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for i in 0..8 {
        let data: Vec<u8> = (0..(1 << 20))
            .map(|j: u32| (j.wrapping_mul(2654435761).wrapping_add(i) >> 13) as u8)
            .collect();
        files.push((format!("f{i}"), data));
    }
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    let layer = layer_tar(&refs);
    let layer_digest = sha256_digest(&layer);
    let config = image_config("amd64", std::slice::from_ref(&layer_digest), &["/bin/sh"]);
    let config_digest = sha256_digest(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}],
    }))
    .unwrap();
    let img = Image {
        manifest,
        config,
        layer,
        layer_digest,
        config_digest,
    };
    let hold = Arc::new(AtomicBool::new(true));
    let hold2 = hold.clone();
    let srv = registry_for(img, move |req, img| {
        (req.path.ends_with(&img.layer_digest) && hold2.load(Ordering::SeqCst)).then(|| {
            let mut r = resp(200, "application/octet-stream", img.layer.clone());
            r.stall_after = Some(img.layer.len() / 2);
            r
        })
    });
    let before = store(&d);
    let name = format!("{}/h/img", srv.addr);
    let sock = d.socket().to_path_buf();
    let name2 = name.clone();
    let t = std::thread::spawn(move || {
        // The connection dies with the engine; the result does not matter.
        if let Ok(mut s) = UnixStream::connect(&sock) {
            let _ = s.write_all(format!("POST /images/create?fromImage={name2}&tag=1 HTTP/1.1\r\nHost: b\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").as_bytes());
            let _ = s.read_to_end(&mut Vec::new());
        }
    });
    // Wait until half the layer went out (and the engine has had it spooled/unpacking).
    let deadline = Instant::now() + Duration::from_secs(30);
    while srv.bytes_sent.load(Ordering::SeqCst) < (4 << 20) {
        assert!(Instant::now() < deadline, "the pull never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let spooled = |d: &TestDaemon| {
        std::fs::read_dir(d.data_root().join("content/sha256"))
            .map(|rd| {
                rd.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
            })
            .unwrap_or(false)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !spooled(&d) {
        assert!(Instant::now() < deadline, "no spool file appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    d.kill9();
    let _ = t.join();
    d.start_again();
    assert_eq!(store(&d), before, "an interrupted pull left files behind");
    // Retry with the registry behaving.
    hold.store(false, Ordering::SeqCst);
    let (st, body) = pull_api(&d, &name, None);
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("Downloaded newer image"), "{body}");
    assert_eq!(layer_file(&d, "f7").as_deref(), Some(files[7].1.as_slice()));
    d.docker_ok(&["image", "inspect", &format!("{name}:1")]);
}

/// A 3-layer image whose last layer arrives corrupted, or whose config names a wrong diff id:
/// the good layers were unpacked meanwhile, yet nothing may be published.
#[test]
fn a_bad_last_layer_or_diff_id_publishes_no_layer_at_all() {
    let d = TestDaemon::start();
    for case in ["bad-blob", "bad-diff-id"] {
        let layers: Vec<Vec<u8>> = (0..3)
            .map(|i| {
                let data: Vec<u8> = (0..(1u32 << 20))
                    .map(|j| (j.wrapping_mul(2654435761).wrapping_add(i) >> 9) as u8)
                    .collect();
                layer_tar(&[(&format!("l{i}-{case}"), &data)])
            })
            .collect();
        let mut diff_ids: Vec<String> = layers.iter().map(|l| sha256_digest(l)).collect();
        if case == "bad-diff-id" {
            diff_ids[1] = sha256_digest(b"something else");
        }
        let config = image_config("amd64", &diff_ids, &["/bin/sh"]);
        let config_digest = sha256_digest(&config);
        let descs: Vec<serde_json::Value> = layers
            .iter()
            .map(|l| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256_digest(l), "size": l.len()}))
            .collect();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": descs,
        }))
        .unwrap();
        let corrupt_last = case == "bad-blob";
        let handler: Handler = Arc::new(move |req: &Req| {
            let p = req.path.as_str();
            if p == "/v2/" {
                return resp(200, "application/json", b"{}".to_vec());
            }
            if p.contains("/manifests/") {
                return resp(200, OCI_MANIFEST, manifest.clone());
            }
            if p.ends_with(&config_digest) {
                return resp(200, "application/octet-stream", config.clone());
            }
            for (i, l) in layers.iter().enumerate() {
                if p.ends_with(&sha256_digest(l)) {
                    let mut body = l.clone();
                    if corrupt_last && i == 2 {
                        body[1000] ^= 1;
                    }
                    return resp(200, "application/octet-stream", body);
                }
            }
            resp(404, "application/json", b"{}".to_vec())
        });
        let srv = Server::start("127.0.0.1", handler);
        let want = if corrupt_last {
            "digest mismatch"
        } else {
            "diff id mismatch"
        };
        assert_refused(&d, &srv, want);
    }
}

/// The client goes away mid-pull: the pull is cancelled (as dockerd's) and leaves nothing.
#[test]
fn a_client_leaving_mid_pull_cancels_it_and_nothing_stays() {
    let d = TestDaemon::start();
    let data: Vec<u8> = (0..(6u32 << 20))
        .map(|j| (j.wrapping_mul(2654435761) >> 7) as u8)
        .collect();
    let mut img = image("cancel");
    img.layer = layer_tar(&[("big", &data)]);
    img.layer_digest = sha256_digest(&img.layer);
    img.config = image_config(
        "amd64",
        std::slice::from_ref(&img.layer_digest),
        &["/bin/sh"],
    );
    img.config_digest = sha256_digest(&img.config);
    img.manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": img.config_digest, "size": img.config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": img.layer_digest, "size": img.layer.len()}],
    }))
    .unwrap();
    let srv = registry_for(img, |req, img| {
        req.path.ends_with(&img.layer_digest).then(|| {
            let mut r = resp(200, "application/octet-stream", img.layer.clone());
            r.stall_after = Some(img.layer.len() / 2);
            r
        })
    });
    let before = store(&d);
    let name = format!("{}/h/img", srv.addr);
    let mut s = UnixStream::connect(d.socket()).unwrap();
    s.write_all(
        format!("POST /images/create?fromImage={name}&tag=1 HTTP/1.1\r\nHost: b\r\nContent-Length: 0\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while srv.bytes_sent.load(Ordering::SeqCst) < (3 << 20) {
        assert!(Instant::now() < deadline, "the pull never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Read the first progress lines, then hang up.
    let mut buf = [0u8; 512];
    let _ = s.read(&mut buf);
    drop(s);
    let deadline = Instant::now() + Duration::from_secs(15);
    while store(&d) != before {
        assert!(
            Instant::now() < deadline,
            "a cancelled pull left {:?}",
            store(&d).difference(&before).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let err = d.docker_err(&["image", "inspect", &format!("{name}:1")]);
    assert!(err.to_lowercase().contains("no such image"), "{err}");
}
