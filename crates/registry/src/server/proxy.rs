//! Pull-through cache of another registry (`--proxy-remote URL`), as Docker's registry's proxy
//! mode: manifests by tag are always asked upstream (tags move) and the cached copy is served when
//! upstream is unreachable; manifests by digest and blobs are served locally when present, else
//! fetched upstream. A fetched blob streams to the client while it is written to a temp file and
//! hashed; it is published only if the digest matches. Pushes are refused (405 UNSUPPORTED).
//!
//! Upstream auth: Basic with `--proxy-username/--proxy-password`, and Bearer tokens
//! (`WWW-Authenticate: Bearer realm=,service=,scope=`, as Docker Hub) fetched with those
//! credentials. Redirects (blob CDNs) are followed without credentials to other hosts.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Request as HttpRequest, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use berth_store::{atomic, Digest};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;

use super::error::{Code, RegError, RegResult};
use super::manifests::{self, DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use super::names::Reference;
use super::{empty, Registry};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_REDIRECTS: usize = 5;

/// An absolute http(s) URL, split.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Target {
    https: bool,
    host: String,
    port: u16,
    /// Path and query, starting with `/`.
    path: String,
}

fn parse_url(u: &str) -> Result<Target, String> {
    let (https, rest) = if let Some(r) = u.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = u.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!("{u}: only http:// and https:// URLs are supported"));
    };
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => match p.parse::<u16>() {
            Ok(p) => (h.to_string(), p),
            Err(_) => (hostport.to_string(), if https { 443 } else { 80 }),
        },
        _ => (hostport.to_string(), if https { 443 } else { 80 }),
    };
    if host.is_empty() {
        return Err(format!("{u}: no host"));
    }
    Ok(Target {
        https,
        host,
        port,
        path,
    })
}

impl Target {
    fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
    /// Resolve a Location header against this URL.
    fn join(&self, loc: &str) -> Result<Target, String> {
        if loc.starts_with("http://") || loc.starts_with("https://") {
            parse_url(loc)
        } else if loc.starts_with('/') {
            Ok(Target {
                path: loc.to_string(),
                ..self.clone()
            })
        } else {
            Err(format!("unsupported redirect {loc}"))
        }
    }
}

pub struct Proxy {
    base: Target,
    basic: Option<String>,
    /// Bearer tokens by scope.
    tokens: std::sync::Mutex<HashMap<String, String>>,
    tls: tokio_rustls::TlsConnector,
}

fn unavailable(e: impl std::fmt::Display) -> RegError {
    RegError::new(Code::Unavailable).msg(format!("upstream registry: {e}"))
}

/// `Bearer realm="...",service="...",scope="..."` → its parameters.
fn parse_challenge(v: &str) -> Option<HashMap<String, String>> {
    let rest = v
        .trim()
        .strip_prefix("Bearer ")
        .or_else(|| v.trim().strip_prefix("bearer "))?;
    let mut out = HashMap::new();
    let mut s = rest;
    while !s.is_empty() {
        let (k, after) = s.split_once('=')?;
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let (val, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (q[..end].to_string(), &q[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        out.insert(k, val);
        s = next.trim_start_matches(',').trim();
    }
    Some(out)
}

fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Proxy {
    pub fn new(url: &str, user: Option<String>, pass: Option<String>) -> Result<Proxy, String> {
        let mut base = parse_url(url)?;
        base.path = base.path.trim_end_matches('/').to_string();
        let basic = user.map(|u| {
            let raw = format!("{u}:{}", pass.unwrap_or_default());
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            )
        });
        let mut roots = rustls::RootCertStore::empty();
        // The system's CA bundle, or the one SSL_CERT_FILE names (as Go and OpenSSL honour it).
        let bundle = std::env::var_os("SSL_CERT_FILE")
            .unwrap_or_else(|| "/etc/ssl/certs/ca-certificates.crt".into());
        if let Ok(it) = CertificateDer::pem_file_iter(&bundle) {
            for c in it.flatten() {
                let _ = roots.add(c);
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Proxy {
            base,
            basic,
            tokens: std::sync::Mutex::new(HashMap::new()),
            tls: tokio_rustls::TlsConnector::from(Arc::new(cfg)),
        })
    }

    /// One request on a fresh connection.
    async fn send_once(
        &self,
        method: &str,
        t: &Target,
        headers: &[(header::HeaderName, String)],
    ) -> RegResult<hyper::Response<Incoming>> {
        let tcp = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio::net::TcpStream::connect(t.authority()),
        )
        .await
        .map_err(|_| unavailable(format!("connect {}: timed out", t.authority())))?
        .map_err(|e| unavailable(format!("connect {}: {e}", t.authority())))?;
        let _ = tcp.set_nodelay(true);
        let host_hdr = if (t.https && t.port == 443) || (!t.https && t.port == 80) {
            t.host.clone()
        } else {
            t.authority()
        };
        let mut b = HttpRequest::builder()
            .method(method)
            .uri(&t.path)
            .header(header::HOST, host_hdr)
            .header(header::USER_AGENT, "berth-registry");
        for (k, v) in headers {
            b = b.header(k, v);
        }
        let req = b
            .body(Empty::<Bytes>::new())
            .map_err(|e| unavailable(format!("request: {e}")))?;
        let mut sender = if t.https {
            let name = ServerName::try_from(t.host.clone())
                .map_err(|e| unavailable(format!("{}: {e}", t.host)))?;
            let tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|e| unavailable(format!("TLS {}: {e}", t.authority())))?;
            let (s, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                    .await
                    .map_err(unavailable)?;
            tokio::spawn(conn);
            s
        } else {
            let (s, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                    .await
                    .map_err(unavailable)?;
            tokio::spawn(conn);
            s
        };
        sender.send_request(req).await.map_err(unavailable)
    }

    /// Fetch a Bearer token for a challenge (credentials go to the realm only if configured).
    async fn token(&self, ch: &HashMap<String, String>) -> RegResult<String> {
        let realm = ch
            .get("realm")
            .ok_or_else(|| unavailable("Bearer challenge without realm"))?;
        let mut t = parse_url(realm).map_err(unavailable)?;
        let mut q = Vec::new();
        for k in ["service", "scope"] {
            if let Some(v) = ch.get(k) {
                q.push(format!("{k}={}", query_escape(v)));
            }
        }
        if !q.is_empty() {
            t.path = format!(
                "{}{}{}",
                t.path,
                if t.path.contains('?') { "&" } else { "?" },
                q.join("&")
            );
        }
        let mut hs = Vec::new();
        if let Some(b) = &self.basic {
            hs.push((header::AUTHORIZATION, b.clone()));
        }
        let resp = self.send_once("GET", &t, &hs).await?;
        if !resp.status().is_success() {
            return Err(unavailable(format!("token endpoint: {}", resp.status())));
        }
        let body = http_body_util::Limited::new(resp.into_body(), 1 << 20)
            .collect()
            .await
            .map_err(unavailable)?
            .to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(unavailable)?;
        v.get("token")
            .or_else(|| v.get("access_token"))
            .and_then(|t| t.as_str())
            .map(str::to_string)
            .ok_or_else(|| unavailable("token endpoint: no token"))
    }

    /// A request to upstream for `path` (under the base URL), with auth and redirects.
    async fn request(
        &self,
        method: &str,
        path: &str,
        scope: &str,
        extra: &[(header::HeaderName, String)],
    ) -> RegResult<hyper::Response<Incoming>> {
        let mut t = self.base.clone();
        t.path = format!("{}{path}", self.base.path);
        let mut retried_auth = false;
        let mut redirects = 0;
        loop {
            let same_host = t.host == self.base.host && t.port == self.base.port;
            let mut hs = extra.to_vec();
            if same_host {
                let tok = self.tokens.lock().ok().and_then(|m| m.get(scope).cloned());
                if let Some(tok) = tok {
                    hs.push((header::AUTHORIZATION, format!("Bearer {tok}")));
                } else if let Some(b) = &self.basic {
                    hs.push((header::AUTHORIZATION, b.clone()));
                }
            }
            let resp = self.send_once(method, &t, &hs).await?;
            let st = resp.status();
            if st == StatusCode::UNAUTHORIZED && same_host && !retried_auth {
                let ch = resp
                    .headers()
                    .get(header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_challenge);
                if let Some(ch) = ch {
                    let tok = self.token(&ch).await?;
                    if let Ok(mut m) = self.tokens.lock() {
                        m.insert(scope.to_string(), tok);
                    }
                    retried_auth = true;
                    continue;
                }
            }
            if st.is_redirection() && redirects < MAX_REDIRECTS {
                if let Some(loc) = resp
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                {
                    t = t.join(loc).map_err(unavailable)?;
                    redirects += 1;
                    continue;
                }
            }
            return Ok(resp);
        }
    }

    fn scope(name: &str) -> String {
        format!("repository:{name}:pull")
    }

    async fn fetch_manifest(
        &self,
        name: &str,
        r: &Reference,
    ) -> RegResult<(Bytes, Option<String>)> {
        let accept = [DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX].join(", ");
        let resp = self
            .request(
                "GET",
                &format!("/v2/{name}/manifests/{r}"),
                &Self::scope(name),
                &[(header::ACCEPT, accept)],
            )
            .await?;
        let st = resp.status();
        if st == StatusCode::NOT_FOUND {
            return Err(RegError::new(Code::ManifestUnknown)
                .detail(serde_json::json!({ "reference": r.to_string() })));
        }
        if !st.is_success() {
            return Err(unavailable(format!("manifest {name}:{r}: {st}")));
        }
        let ct = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let want = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = http_body_util::Limited::new(resp.into_body(), manifests::MAX_MANIFEST)
            .collect()
            .await
            .map_err(unavailable)?
            .to_bytes();
        if let Some(w) = want {
            if Digest::parse(&w).ok() != Some(Digest::of(&body)) {
                return Err(unavailable(format!("manifest {name}:{r}: digest mismatch")));
            }
        }
        Ok((body, ct))
    }

    /// GET/HEAD a manifest through the cache.
    pub async fn manifest(
        &self,
        reg: &Registry,
        name: &str,
        r: &Reference,
        head: bool,
        _headers: &HeaderMap,
    ) -> RegResult<Response> {
        match self.fetch_manifest(name, r).await {
            Ok((body, ct)) => {
                let (d, _, _) =
                    manifests::store_manifest(reg, name, r, ct.as_deref(), body, false).await?;
                manifests::serve_local(reg, name, &Reference::Digest(d), head).await
            }
            Err(e) if e.code == Code::Unavailable => {
                tracing::warn!("{e}; serving {name}:{r} from the cache");
                manifests::serve_local(reg, name, r, head).await
            }
            Err(e) => Err(e),
        }
    }

    /// GET/HEAD a blob not present locally.
    pub async fn blob(
        &self,
        reg: &Arc<Registry>,
        name: &str,
        d: &Digest,
        head: bool,
        headers: &HeaderMap,
    ) -> RegResult<Response> {
        if let Some(size) = reg.store.blob_size(d).await {
            reg.store.link_blob(name, d).await?;
            return super::blobs::serve_blob(reg.store.blob_path(d), size, d, head, headers).await;
        }
        let range = headers
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut extra = Vec::new();
        if let Some(r) = &range {
            extra.push((header::RANGE, r.clone()));
        }
        let resp = self
            .request(
                if head { "HEAD" } else { "GET" },
                &format!("/v2/{name}/blobs/{d}"),
                &Self::scope(name),
                &extra,
            )
            .await?;
        let st = resp.status();
        if st == StatusCode::NOT_FOUND {
            return Err(RegError::new(Code::BlobUnknown).detail(d.to_string()));
        }
        if !(st == StatusCode::OK || st == StatusCode::PARTIAL_CONTENT) {
            return Err(unavailable(format!("blob {d}: {st}")));
        }
        let mut out = empty(st, &[]);
        for h in [header::CONTENT_LENGTH, header::CONTENT_RANGE] {
            if let Some(v) = resp.headers().get(&h) {
                out.headers_mut().insert(h, v.clone());
            }
        }
        let hs = out.headers_mut();
        hs.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        if let Ok(v) = HeaderValue::from_str(&d.to_string()) {
            hs.insert("docker-content-digest", v);
        }
        if head {
            return Ok(out);
        }
        if st == StatusCode::PARTIAL_CONTENT || range.is_some() {
            // A part: pass it through, nothing is cached.
            *out.body_mut() = Body::new(resp.into_body());
            return Ok(out);
        }
        // hyper stops polling a body once Content-Length bytes went out: the tee then finishes
        // on the last byte instead of at the end of the stream.
        let len = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let tee = Tee::new(reg.clone(), name, d, len).await;
        *out.body_mut() = Body::from_stream(tee_stream(resp.into_body(), tee));
        Ok(out)
    }

    /// Tags of a repository, from upstream (the cache's own list when upstream is down).
    pub async fn tags(&self, name: &str, query: &str) -> RegResult<Option<Response>> {
        let q = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        let resp = match self
            .request(
                "GET",
                &format!("/v2/{name}/tags/list{q}"),
                &Self::scope(name),
                &[],
            )
            .await
        {
            Ok(r) => r,
            Err(e) if e.code == Code::Unavailable => return Ok(None),
            Err(e) => return Err(e),
        };
        let st = resp.status();
        // Upstream trouble (5xx, refused credentials): the cache's own list.
        if !st.is_success() && st != StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let mut out = empty(st, &[]);
        for h in [header::CONTENT_TYPE, header::LINK] {
            if let Some(v) = resp.headers().get(&h) {
                out.headers_mut().insert(h, v.clone());
            }
        }
        let body = http_body_util::Limited::new(resp.into_body(), 16 << 20)
            .collect()
            .await
            .map_err(unavailable)?
            .to_bytes();
        *out.body_mut() = Body::from(body);
        Ok(Some(out))
    }
}

/// Writes a blob streamed from upstream to a temp file; publishes it if the digest matches.
/// Dropped before the end (client gone, upstream error): the temp file is removed.
struct Tee {
    reg: Arc<Registry>,
    name: String,
    digest: Digest,
    tmp: PathBuf,
    file: Option<tokio::io::BufWriter<tokio::fs::File>>,
    hasher: Sha256,
    received: u64,
    expected_len: Option<u64>,
}

impl Tee {
    async fn new(reg: Arc<Registry>, name: &str, d: &Digest, expected_len: Option<u64>) -> Tee {
        let tmp = atomic::temp_path_for(&reg.store.blob_path(d));
        let file = tokio::fs::File::create(&tmp)
            .await
            .ok()
            .map(|f| tokio::io::BufWriter::with_capacity(1024 * 1024, f));
        Tee {
            reg,
            name: name.to_string(),
            digest: d.clone(),
            tmp,
            file,
            hasher: Sha256::new(),
            received: 0,
            expected_len,
        }
    }

    async fn write(&mut self, data: &[u8]) {
        self.hasher.update(data);
        self.received += data.len() as u64;
        if let Some(f) = self.file.as_mut() {
            if let Err(e) = f.write_all(data).await {
                tracing::warn!(
                    "cache write {:?}: {e}; not caching {}",
                    self.tmp,
                    self.digest
                );
                self.file = None;
            }
        }
        if Some(self.received) == self.expected_len {
            self.finish().await;
        }
    }

    async fn finish(&mut self) {
        let Some(mut f) = self.file.take() else {
            return;
        };
        let actual = hex::encode(self.hasher.clone().finalize());
        if actual != self.digest.hex() {
            tracing::warn!(
                "upstream sent sha256:{actual} for {}; not cached",
                self.digest
            );
            return;
        }
        let res: RegResult<()> = async {
            f.flush().await?;
            f.get_ref().sync_all().await?;
            drop(f);
            self.reg
                .store
                .publish_blob(self.tmp.clone(), &self.digest)
                .await?;
            self.reg.store.link_blob(&self.name, &self.digest).await
        }
        .await;
        if let Err(e) = res {
            tracing::warn!("caching {}: {e}", self.digest);
        }
    }
}

impl Drop for Tee {
    fn drop(&mut self) {
        // Published: the temp name is gone already; otherwise remove the partial file.
        let _ = std::fs::remove_file(&self.tmp);
    }
}

fn tee_stream(
    body: Incoming,
    tee: Tee,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    futures_util::stream::unfold(Some((body, tee)), |state| async move {
        let (mut body, mut tee) = state?;
        loop {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        tee.write(&data).await;
                        return Some((Ok(data), Some((body, tee))));
                    }
                }
                Some(Err(e)) => return Some((Err(std::io::Error::other(e)), None)),
                None => {
                    tee.finish().await;
                    return None;
                }
            }
        }
    })
}

#[cfg(test)]
#[path = "proxy_tests.rs"]
mod tests;
