//! The registry client used by the engine's pull and push (Docker Registry HTTP API v2 / OCI
//! distribution), written on hyper rather than oci-client:
//!
//! - every byte goes through code of ours, so limits are ours: manifests are read with a cap
//!   ([`MAX_MANIFEST_SIZE`]), blobs are streamed frame by frame and hashed as they pass
//!   ([`blob::VerifiedBlob`]), nothing is buffered whole;
//! - redirects are followed by hand (GET/HEAD only, at most [`MAX_REDIRECTS`]): credentials are
//!   sent only to the registry's own host (scheme, host and port), never to a redirect target on
//!   another host;
//! - oci-client's reqwest/rustls/aws-lc stack is not compiled (aws-lc-sys alone is ~3 min of CPU);
//!   HTTPS is rustls with the ring provider that `berth registry serve` uses anyway ([`tls`]).
//!
//! Use: `RegistryClient::new(&endpoint, credentials)` for one registry endpoint (see
//! [`RegistryOptions::endpoints`] for the endpoints of a registry host: mirrors first for
//! docker.io, plain HTTP for localhost, 127.0.0.0/8 and `insecure-registries`). Then
//! [`RegistryClient::get_manifest`], [`RegistryClient::get_blob`], or for anything else
//! (push's HEAD/POST/PATCH/PUT) [`RegistryClient::request`] with a [`Scope`]: authentication
//! (Basic, or Bearer tokens from the challenge's realm/service/scope) is handled there.
//! A streamed (non-replayable) body cannot be re-sent after a 401: call
//! [`RegistryClient::authorize`] with the scope first.

pub mod auth;
pub mod base64;
pub mod blob;
mod endpoint;
pub mod manifest;
pub mod push;
pub mod tls;

pub use endpoint::{Endpoint, RegistryOptions};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, LOCATION, USER_AGENT};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Manifests (and token responses, error bodies) larger than this are refused.
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;
/// Redirects followed for one GET/HEAD.
pub const MAX_REDIRECTS: usize = 5;
/// Docker Hub's registry host (references say `docker.io`).
pub const DOCKER_HUB_HOST: &str = "registry-1.docker.io";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// A response body that sends nothing for this long is abandoned (a stalled registry must not
/// hold a pull forever).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// What the client authenticates with.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Credentials {
    #[default]
    Anonymous,
    Basic {
        username: String,
        password: String,
    },
    /// An OAuth2 refresh token (docker login's `identitytoken`), traded at the token realm.
    IdentityToken(String),
    /// A ready bearer token for the registry (the `registrytoken` of an AuthConfig): sent as is,
    /// the token realm is not asked.
    RegistryToken(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Anonymous => write!(f, "Anonymous"),
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Credentials::IdentityToken(_) => write!(f, "IdentityToken(***)"),
            Credentials::RegistryToken(_) => write!(f, "RegistryToken(***)"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry answered with an error (its first `errors[]` entry, if any).
    #[error("{}", http_message(*.status, .code, .message))]
    Http {
        status: u16,
        code: String,
        message: String,
    },
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: String, actual: String },
    #[error("invalid digest {0:?}")]
    InvalidDigest(String),
    #[error("{what} exceeds the limit of {limit} bytes")]
    TooLarge { what: String, limit: u64 },
    #[error("unsupported media type {0:?}")]
    MediaType(String),
    #[error("invalid manifest: {0}")]
    InvalidManifest(String),
    #[error("no matching manifest for {0} in the manifest list entries")]
    NoMatchingPlatform(String),
    #[error("redirect refused: {0}")]
    Redirect(String),
    #[error("{0}")]
    Transport(String),
    #[error("https registries are not supported by this build (use insecure-registries for {0})")]
    TlsUnsupported(String),
    #[error("{0}")]
    Protocol(String),
}

fn http_message(status: u16, code: &str, message: &str) -> String {
    match (code.is_empty(), message.is_empty()) {
        (true, true) => format!("registry answered HTTP {status}"),
        (false, true) => code.to_lowercase().replace('_', " "),
        (true, false) => message.to_string(),
        (false, false) => format!("{}: {message}", code.to_lowercase().replace('_', " ")),
    }
}

impl RegistryError {
    /// The HTTP status the registry gave, if this error is an answer of the registry.
    pub fn status(&self) -> Option<u16> {
        match self {
            RegistryError::Http { status, .. } => Some(*status),
            RegistryError::Unauthorized(_) => Some(401),
            _ => None,
        }
    }

    /// The registry said the manifest/blob/repository does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, RegistryError::Http { status: 404, .. })
    }

    /// Authentication or authorization failed.
    pub fn is_denied(&self) -> bool {
        matches!(
            self,
            RegistryError::Unauthorized(_)
                | RegistryError::Http {
                    status: 401 | 403,
                    ..
                }
        )
    }
}

pub type Result<T> = std::result::Result<T, RegistryError>;

/// The access a request needs: `repository:<name>:<actions>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    pub repository: String,
    /// e.g. `["pull"]`, `["pull", "push"]`
    pub actions: Vec<String>,
}

impl Scope {
    pub fn pull(repository: &str) -> Scope {
        Scope {
            repository: repository.to_string(),
            actions: vec!["pull".into()],
        }
    }
    pub fn push(repository: &str) -> Scope {
        Scope {
            repository: repository.to_string(),
            actions: vec!["pull".into(), "push".into()],
        }
    }
    /// `repository:name:pull,push`
    pub fn as_token_scope(&self) -> String {
        format!("repository:{}:{}", self.repository, self.actions.join(","))
    }
}

/// A request body: replayable (empty, bytes) or streamed (sent once).
pub enum Body {
    Empty,
    Bytes(Bytes),
    Stream(BoxBody<Bytes, std::io::Error>),
}

impl Body {
    fn replay(&self) -> Option<BoxBody<Bytes, std::io::Error>> {
        match self {
            Body::Empty => Some(Empty::new().map_err(|never| match never {}).boxed()),
            Body::Bytes(b) => Some(Full::new(b.clone()).map_err(|never| match never {}).boxed()),
            Body::Stream(_) => None,
        }
    }
}

type HttpClient = Client<tls::Connector, BoxBody<Bytes, std::io::Error>>;

struct Inner {
    endpoint: Endpoint,
    credentials: Credentials,
    http: HttpClient,
    /// The /v2/ challenge once known (None: not asked yet).
    challenge: Mutex<Option<auth::Challenge>>,
    /// Bearer tokens by scope string.
    tokens: Mutex<HashMap<String, String>>,
    timeout: Duration,
}

/// A client of one registry endpoint. Cheap to clone (shared connection pool and tokens).
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

fn transport(e: impl std::fmt::Display, what: &str) -> RegistryError {
    RegistryError::Transport(format!("{what}: {e}"))
}

impl RegistryClient {
    pub fn new(endpoint: &Endpoint, credentials: Credentials) -> Result<RegistryClient> {
        let mut conn = HttpConnector::new();
        conn.set_nodelay(true);
        conn.set_connect_timeout(Some(Duration::from_secs(15)));
        let tls = tls::client_config(&endpoint.authority, endpoint.skip_verify)
            .map_err(RegistryError::Transport)?;
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(tls::Connector::new(conn, tls));
        Ok(RegistryClient {
            inner: Arc::new(Inner {
                endpoint: endpoint.clone(),
                credentials,
                http,
                challenge: Mutex::new(None),
                tokens: Mutex::new(HashMap::new()),
                timeout: DEFAULT_TIMEOUT,
            }),
        })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.inner.endpoint
    }

    pub fn credentials(&self) -> &Credentials {
        &self.inner.credentials
    }

    /// `base + path` (path starts with `/v2/`), or an absolute URL (an upload `Location`) as is;
    /// a relative Location is resolved against the endpoint.
    pub fn url(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
            path_or_url.to_string()
        } else {
            format!("{}{}", self.inner.endpoint.base(), path_or_url)
        }
    }

    /// Whether a URL goes to this endpoint's own scheme+host+port (credentials may be sent).
    pub fn same_origin(&self, url: &str) -> bool {
        let Ok(u) = url.parse::<Uri>() else {
            return false;
        };
        let ep = &self.inner.endpoint;
        u.scheme_str()
            .is_some_and(|s| s.eq_ignore_ascii_case(&ep.scheme))
            && u.authority()
                .is_some_and(|a| a.as_str().eq_ignore_ascii_case(&ep.authority))
    }

    /// One raw exchange, no auth, no redirects.
    async fn send_once(
        &self,
        method: &Method,
        url: &str,
        headers: &HeaderMap,
        body: BoxBody<Bytes, std::io::Error>,
    ) -> Result<Response<Incoming>> {
        let uri: Uri = url
            .parse()
            .map_err(|e| RegistryError::Protocol(format!("invalid URL {url:?}: {e}")))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err(RegistryError::Protocol(format!("unsupported URL {url:?}")));
        }
        let mut req = Request::builder()
            .method(method.clone())
            .uri(uri)
            .body(body)
            .map_err(|e| RegistryError::Protocol(format!("request {url:?}: {e}")))?;
        *req.headers_mut() = headers.clone();
        req.headers_mut()
            .insert(USER_AGENT, HeaderValue::from_static("berth/0.1"));
        let fut = self.inner.http.request(req);
        match tokio::time::timeout(self.inner.timeout, fut).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(transport(
                error_chain(&e),
                &format!("{method} {}", redact(url)),
            )),
            Err(_) => Err(transport("timed out", &format!("{method} {}", redact(url)))),
        }
    }

    /// Send a request with authentication and (GET/HEAD) redirects. `path_or_url` is a `/v2/...`
    /// path or an absolute URL. Error statuses are returned as responses, not errors (see
    /// [`check_status`]); only a 401 after authenticating becomes `Unauthorized`.
    pub async fn request(
        &self,
        method: Method,
        path_or_url: &str,
        scope: Option<&Scope>,
        headers: HeaderMap,
        body: Body,
    ) -> Result<Response<Incoming>> {
        let url = self.url(path_or_url);
        let mut tried_auth = false;
        let (mut stream_body, replayable) = match body {
            Body::Stream(s) => (Some(s), None),
            other => (None, Some(other)),
        };
        loop {
            let mut h = headers.clone();
            if self.same_origin(&url) {
                if let Some(v) = self.auth_header(scope)? {
                    h.insert(AUTHORIZATION, v);
                }
            }
            let b = match (
                stream_body.take(),
                replayable.as_ref().and_then(Body::replay),
            ) {
                (Some(s), _) => s,
                (None, Some(b)) => b,
                (None, None) => {
                    return Err(RegistryError::Unauthorized(
                        "authentication needed before a streamed upload".into(),
                    ))
                }
            };
            let resp = self.send_once(&method, &url, &h, b).await?;
            if resp.status() == StatusCode::UNAUTHORIZED && !tried_auth {
                tried_auth = true;
                let ch = auth::Challenge::from_headers(resp.headers());
                drain(resp).await;
                if let Some(ch) = ch {
                    *self.lock_challenge() = Some(ch);
                    self.fetch_token(scope).await?;
                    continue;
                }
                return Err(RegistryError::Unauthorized(
                    "the registry asked for authentication without a usable challenge".into(),
                ));
            }
            if resp.status().is_redirection() && (method == Method::GET || method == Method::HEAD) {
                return self.follow(method, &url, headers, scope, resp).await;
            }
            return Ok(resp);
        }
    }

    /// Follow redirects of a GET/HEAD. Credentials go along only while the target stays on the
    /// endpoint's origin.
    async fn follow(
        &self,
        method: Method,
        from: &str,
        headers: HeaderMap,
        scope: Option<&Scope>,
        mut resp: Response<Incoming>,
    ) -> Result<Response<Incoming>> {
        let mut current = from.to_string();
        for _ in 0..MAX_REDIRECTS {
            let loc = resp
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .ok_or_else(|| RegistryError::Redirect("redirect without a Location".into()))?;
            drain(resp).await;
            let next = resolve_location(&current, &loc)?;
            let mut h = headers.clone();
            h.remove(AUTHORIZATION);
            if self.same_origin(&next) {
                if let Some(v) = self.auth_header(scope)? {
                    h.insert(AUTHORIZATION, v);
                }
            }
            tracing::debug!(to = %redact(&next), "following redirect");
            resp = self
                .send_once(
                    &method,
                    &next,
                    &h,
                    Empty::new().map_err(|never| match never {}).boxed(),
                )
                .await?;
            current = next;
            if !resp.status().is_redirection() {
                return Ok(resp);
            }
        }
        Err(RegistryError::Redirect(format!(
            "more than {MAX_REDIRECTS} redirects"
        )))
    }

    fn lock_challenge(&self) -> std::sync::MutexGuard<'_, Option<auth::Challenge>> {
        self.inner
            .challenge
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn auth_header(&self, scope: Option<&Scope>) -> Result<Option<HeaderValue>> {
        let ch = self.lock_challenge().clone();
        let v = match ch {
            None => None,
            Some(auth::Challenge::Basic) => match &self.inner.credentials {
                Credentials::Basic { username, password } => Some(format!(
                    "Basic {}",
                    base64::encode(format!("{username}:{password}").as_bytes())
                )),
                _ => None,
            },
            Some(auth::Challenge::Bearer { .. }) => {
                let key = scope.map(Scope::as_token_scope).unwrap_or_default();
                let tokens = self.inner.tokens.lock().unwrap_or_else(|e| e.into_inner());
                tokens.get(&key).map(|t| format!("Bearer {t}"))
            }
        };
        v.map(|s| {
            HeaderValue::from_str(&s)
                .map_err(|_| RegistryError::Protocol("credentials not valid in a header".into()))
        })
        .transpose()
    }

    async fn fetch_token(&self, scope: Option<&Scope>) -> Result<()> {
        let ch = self.lock_challenge().clone();
        if let (Some(auth::Challenge::Bearer { .. }), Credentials::RegistryToken(t)) =
            (&ch, &self.inner.credentials)
        {
            let key = scope.map(Scope::as_token_scope).unwrap_or_default();
            self.inner
                .tokens
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key, t.clone());
            return Ok(());
        }
        let Some(auth::Challenge::Bearer { realm, service, .. }) = ch else {
            if matches!(self.inner.credentials, Credentials::Basic { .. }) {
                return Ok(());
            }
            return Err(RegistryError::Unauthorized(
                "authentication required".into(),
            ));
        };
        let token = auth::fetch_token(self, &realm, service.as_deref(), scope).await?;
        let key = scope.map(Scope::as_token_scope).unwrap_or_default();
        self.inner
            .tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, token);
        Ok(())
    }

    /// Learn the registry's challenge (GET /v2/) and get a token for `scope` now, so that a
    /// streamed upload is sent with credentials the first time. Fails when the credentials are
    /// refused.
    pub async fn authorize(&self, scope: &Scope) -> Result<()> {
        let resp = self
            .request(
                Method::GET,
                "/v2/",
                Some(scope),
                HeaderMap::new(),
                Body::Empty,
            )
            .await?;
        let status = resp.status();
        drain(resp).await;
        if status == StatusCode::UNAUTHORIZED {
            return Err(RegistryError::Unauthorized(
                "authentication required".into(),
            ));
        }
        let bearer = matches!(*self.lock_challenge(), Some(auth::Challenge::Bearer { .. }));
        if bearer {
            self.fetch_token(Some(scope)).await?;
        }
        Ok(())
    }

    /// GET /v2/: the registry answers (any status but a transport error). Ok(true) when
    /// accessible with our credentials.
    pub async fn ping(&self) -> Result<bool> {
        let resp = self
            .request(Method::GET, "/v2/", None, HeaderMap::new(), Body::Empty)
            .await;
        match resp {
            Ok(r) => {
                let ok = r.status().is_success();
                drain(r).await;
                Ok(ok)
            }
            Err(RegistryError::Unauthorized(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The tags of a repository (`GET /v2/<name>/tags/list`, following `Link` pages).
    pub async fn tags(&self, repository: &str) -> Result<Vec<String>> {
        let scope = Scope::pull(repository);
        let mut out = Vec::new();
        let mut next = Some(format!("/v2/{repository}/tags/list"));
        let mut pages = 0;
        while let Some(path) = next.take() {
            pages += 1;
            if pages > 1000 {
                return Err(RegistryError::Protocol("too many tag pages".into()));
            }
            let resp = self
                .request(
                    Method::GET,
                    &path,
                    Some(&scope),
                    HeaderMap::new(),
                    Body::Empty,
                )
                .await?;
            let resp = check_status(resp).await?;
            next = resp
                .headers()
                .get("link")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_link_next);
            let body = read_limited(resp.into_body(), MAX_MANIFEST_SIZE, "tag list").await?;
            #[derive(serde::Deserialize)]
            struct Tags {
                #[serde(default)]
                tags: Option<Vec<String>>,
            }
            let t: Tags = serde_json::from_slice(&body)
                .map_err(|e| RegistryError::Protocol(format!("tag list: {e}")))?;
            out.extend(t.tags.unwrap_or_default());
        }
        Ok(out)
    }

    /// GET a manifest by tag or digest (capped, media type checked, digest verified: against
    /// `reference` when it is a digest, else computed and compared with Docker-Content-Digest).
    pub async fn get_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<manifest::Fetched> {
        manifest::fetch(self, repository, reference).await
    }

    /// GET a blob, verified while it streams (the last item is an error on a digest or size
    /// mismatch).
    pub async fn get_blob(
        &self,
        repository: &str,
        digest: &str,
        expected_size: Option<u64>,
    ) -> Result<blob::VerifiedBlob> {
        blob::fetch(self, repository, digest, expected_size).await
    }
}

/// The `</v2/...?n=..&last=..>; rel="next"` target of a Link header.
fn parse_link_next(v: &str) -> Option<String> {
    for part in v.split(',') {
        let part = part.trim();
        if !part.contains("rel=\"next\"") && !part.contains("rel=next") {
            continue;
        }
        let start = part.find('<')? + 1;
        let end = part.find('>')?;
        return part.get(start..end).map(str::to_string);
    }
    None
}

/// Resolve a Location against the URL that answered.
fn resolve_location(current: &str, loc: &str) -> Result<String> {
    if loc.starts_with("http://") || loc.starts_with("https://") {
        return Ok(loc.to_string());
    }
    let u: Uri = current
        .parse()
        .map_err(|e| RegistryError::Redirect(format!("{e}")))?;
    let (Some(s), Some(a)) = (u.scheme_str(), u.authority()) else {
        return Err(RegistryError::Redirect(format!("bad URL {current:?}")));
    };
    if let Some(rest) = loc.strip_prefix("//") {
        return Ok(format!("{s}://{rest}"));
    }
    if loc.starts_with('/') {
        return Ok(format!("{s}://{a}{loc}"));
    }
    Err(RegistryError::Redirect(format!(
        "unsupported Location {loc:?}"
    )))
}

/// The URL without its query (which may carry signed tokens).
pub fn redact(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_string()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Read and drop a response body (so the connection can be reused), bounded.
pub async fn drain(resp: Response<Incoming>) {
    let _ = read_limited(resp.into_body(), 1 << 16, "body").await;
}

/// Read a whole body, refusing more than `limit` bytes.
pub async fn read_limited(mut body: Incoming, limit: u64, what: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let frame = tokio::time::timeout(IDLE_TIMEOUT, body.frame())
            .await
            .map_err(|_| transport("no data for 120 s", &format!("read {what}")))?;
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|e| transport(error_chain(&e), &format!("read {what}")))?;
        if let Ok(data) = frame.into_data() {
            if out.len() as u64 + data.len() as u64 > limit {
                return Err(RegistryError::TooLarge {
                    what: what.to_string(),
                    limit,
                });
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

/// Pass a success through; turn an error status into `RegistryError::Http` with the registry's
/// first `errors[]` entry (code, message).
pub async fn check_status(resp: Response<Incoming>) -> Result<Response<Incoming>> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = read_limited(resp.into_body(), 1 << 16, "error body")
        .await
        .unwrap_or_default();
    let (code, message) = parse_errors(&body);
    if status == StatusCode::UNAUTHORIZED {
        let m = http_message(401, &code, &message);
        return Err(RegistryError::Unauthorized(m));
    }
    Err(RegistryError::Http {
        status: status.as_u16(),
        code,
        message,
    })
}

fn parse_errors(body: &[u8]) -> (String, String) {
    #[derive(serde::Deserialize)]
    struct E {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    #[derive(serde::Deserialize)]
    struct Errs {
        #[serde(default)]
        errors: Vec<E>,
    }
    match serde_json::from_slice::<Errs>(body) {
        Ok(e) => e
            .errors
            .into_iter()
            .next()
            .map(|e| (e.code, e.message))
            .unwrap_or_default(),
        Err(_) => (String::new(), String::new()),
    }
}

/// A header value as a string, if present and valid.
pub fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(HeaderName::from_bytes(name.as_bytes()).ok()?)
        .and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insecure_rules() {
        let o = RegistryOptions {
            insecure: vec!["myreg:5000".into(), "10.0.0.0/8".into(), "plain".into()],
            mirrors: vec![],
        };
        assert!(o.is_insecure("localhost:5000"));
        assert!(o.is_insecure("127.0.0.1:5000"));
        assert!(o.is_insecure("127.3.4.5"));
        assert!(o.is_insecure("[::1]:5000"));
        assert!(o.is_insecure("myreg:5000"));
        assert!(!o.is_insecure("myreg:5001"));
        assert!(o.is_insecure("plain:443"));
        assert!(o.is_insecure("10.1.2.3:5000"));
        assert!(!o.is_insecure("11.1.2.3:5000"));
        assert!(!o.is_insecure("quay.io"));
    }

    #[test]
    fn endpoints_for_hub_use_mirrors_first() {
        let o = RegistryOptions {
            insecure: vec![],
            mirrors: vec!["http://127.0.0.1:5000/".into()],
        };
        let e = o.endpoints("docker.io");
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].base(), "http://127.0.0.1:5000");
        assert!(e[0].mirror);
        assert_eq!(e[1].base(), "https://registry-1.docker.io");
        let e = o.endpoints("127.0.0.1:6000");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].base(), "http://127.0.0.1:6000");
        assert_eq!(o.endpoints("quay.io")[0].base(), "https://quay.io");
    }

    #[test]
    fn link_and_location() {
        assert_eq!(
            parse_link_next("</v2/x/tags/list?n=2&last=b>; rel=\"next\"").as_deref(),
            Some("/v2/x/tags/list?n=2&last=b")
        );
        assert_eq!(
            resolve_location("http://a:1/v2/x", "/b").unwrap(),
            "http://a:1/b"
        );
        assert_eq!(
            resolve_location("http://a:1/v2/x", "http://c/d").unwrap(),
            "http://c/d"
        );
        assert!(resolve_location("http://a:1/v2/x", "rel").is_err());
    }

    #[test]
    fn errors_read_like_docker() {
        let (c, m) = parse_errors(
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
        );
        let e = RegistryError::Http {
            status: 404,
            code: c,
            message: m,
        };
        assert_eq!(e.to_string(), "manifest unknown: manifest unknown");
        assert!(e.is_not_found());
    }
}
