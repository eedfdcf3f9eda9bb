//! `berth registry serve`: an OCI distribution server (Docker Registry HTTP API v2).
//!
//! One tokio task tree: an accept loop, one task per connection (hyper http1, optionally under
//! rustls), one axum router whose fallback dispatches on the spec's paths (repository names contain
//! slashes, so routing is done by [`names::parse_route`]). Bodies stream both ways; blobs are
//! hashed while written and published by rename only when the digest matches.

mod auth;
mod blobs;
mod error;
mod listing;
mod manifests;
mod names;
mod proxy;
mod storage;
mod tls;
mod uploads;

use std::collections::HashMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use clap::Parser;

use error::{Code, RegError, RegResult};
use names::Route;

#[derive(Parser, Debug)]
#[command(
    name = "berth registry serve",
    about = "Run an OCI distribution registry"
)]
struct ServeArgs {
    /// Address to listen on (host:port).
    #[arg(long, default_value = "127.0.0.1:5000")]
    addr: SocketAddr,
    /// Directory where the registry keeps its data.
    #[arg(long)]
    root: PathBuf,
    /// htpasswd file (bcrypt entries): require Basic authentication.
    #[arg(long)]
    htpasswd: Option<PathBuf>,
    /// TLS certificate chain (PEM).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Run as a pull-through cache of this registry (e.g. https://registry-1.docker.io).
    #[arg(long)]
    proxy_remote: Option<String>,
    /// User name for the upstream registry.
    #[arg(long, requires = "proxy_remote")]
    proxy_username: Option<String>,
    /// Password for the upstream registry.
    #[arg(long, requires = "proxy_remote")]
    proxy_password: Option<String>,
    /// Log level (debug, info, warn, error).
    #[arg(long, default_value = "info")]
    log_level: String,
}

/// Limit for a client to send a request's headers (and to finish a TLS handshake).
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The server's shared state.
pub(crate) struct Registry {
    pub store: storage::Storage,
    pub auth: Option<auth::Htpasswd>,
    pub proxy: Option<proxy::Proxy>,
    pub uploads: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<uploads::Session>>>>,
}

/// Entry point of `berth registry serve ARGS` (`args[0]` is "serve"); returns the exit code.
pub fn run(args: &[OsString]) -> i32 {
    // Usage lines name the whole command, not just "serve".
    let argv =
        std::iter::once(OsString::from("berth registry serve")).chain(args.iter().skip(1).cloned());
    let a = match ServeArgs::try_parse_from(argv) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&a.log_level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth registry: {e}");
            return 1;
        }
    };
    match rt.block_on(serve(a)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("berth registry: {e}");
            1
        }
    }
}

async fn serve(a: ServeArgs) -> Result<(), String> {
    let store = storage::Storage::open(&a.root).map_err(|e| format!("root {:?}: {e}", a.root))?;
    let auth = match &a.htpasswd {
        Some(p) => Some(auth::Htpasswd::load(p).map_err(|e| format!("htpasswd {p:?}: {e}"))?),
        None => None,
    };
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(c), Some(k)) => Some(tls::acceptor(c, k)?),
        _ => None,
    };
    let proxy = match &a.proxy_remote {
        Some(u) => Some(proxy::Proxy::new(
            u,
            a.proxy_username.clone(),
            a.proxy_password.clone(),
        )?),
        None => None,
    };
    let reg = Arc::new(Registry {
        store,
        auth,
        proxy,
        uploads: std::sync::Mutex::new(HashMap::new()),
    });
    let app = axum::Router::new().fallback(handle).with_state(reg);
    let listener = tokio::net::TcpListener::bind(a.addr)
        .await
        .map_err(|e| format!("listen on {}: {e}", a.addr))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(
        "berth registry listening on {}://{local}",
        if tls.is_some() { "https" } else { "http" }
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = term.recv() => return Ok(()),
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let svc = hyper_util::service::TowerToHyperService::new(app);
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            let res = match tls {
                Some(acc) => match tokio::time::timeout(HEADER_TIMEOUT, acc.accept(tcp)).await {
                    Ok(Ok(s)) => {
                        builder
                            .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                            .await
                    }
                    Ok(Err(e)) => {
                        tracing::debug!("tls handshake with {peer}: {e}");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!("tls handshake with {peer}: timed out");
                        return;
                    }
                },
                None => {
                    builder
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                        .await
                }
            };
            if let Err(e) = res {
                tracing::debug!("connection {peer}: {e}");
            }
        });
    }
}

/// Every request: auth, routing, then the API version header on the response.
async fn handle(State(reg): State<Arc<Registry>>, req: Request) -> Response {
    let started = std::time::Instant::now();
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let mut resp = match dispatch(&reg, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    resp.headers_mut().insert(
        HeaderName::from_static("docker-distribution-api-version"),
        HeaderValue::from_static("registry/2.0"),
    );
    tracing::debug!(
        "{method} {path} -> {} ({} ms to headers)",
        resp.status().as_u16(),
        started.elapsed().as_millis()
    );
    resp
}

async fn dispatch(reg: &Arc<Registry>, req: Request) -> RegResult<Response> {
    if let Some(a) = &reg.auth {
        a.check(req.headers()).await?;
    }
    let path = req.uri().path().to_string();
    let query = parse_query(req.uri().query().unwrap_or(""));
    let route = match names::parse_route(&path)? {
        Some(r) => r,
        None => {
            return Err(RegError::new(Code::NameUnknown)
                .msg("not found")
                .detail(path))
        }
    };
    let m = req.method().clone();
    let write = !(m == Method::GET || m == Method::HEAD);
    if write && reg.proxy.is_some() {
        return Err(RegError::new(Code::Unsupported));
    }
    match route {
        Route::Base if m == Method::GET || m == Method::HEAD => Ok((
            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
            "{}",
        )
            .into_response()),
        Route::Catalog if m == Method::GET => listing::catalog(reg, &query).await,
        Route::Tags(name) if m == Method::GET => {
            listing::tags(reg, &name, &query, req.uri().query().unwrap_or("")).await
        }
        Route::Manifest(name, r) => match m {
            Method::GET | Method::HEAD => {
                manifests::get(reg, &name, &r, m == Method::HEAD, req.headers()).await
            }
            Method::PUT => manifests::put(reg, &name, &r, req).await,
            Method::DELETE => manifests::delete(reg, &name, &r).await,
            _ => Err(RegError::new(Code::Unsupported)),
        },
        Route::Referrers(name, d) if m == Method::GET => {
            manifests::referrers(reg, &name, &d, &query).await
        }
        Route::Blob(name, d) => match m {
            Method::GET | Method::HEAD => {
                blobs::get(reg, &name, &d, m == Method::HEAD, req.headers()).await
            }
            Method::DELETE => blobs::delete(reg, &name, &d).await,
            _ => Err(RegError::new(Code::Unsupported)),
        },
        Route::UploadStart(name) if m == Method::POST => {
            uploads::start(reg, &name, &query, req).await
        }
        Route::Upload(name, id) => match m {
            Method::GET => uploads::status(reg, &name, &id).await,
            Method::PATCH => uploads::patch(reg, &name, &id, req).await,
            Method::PUT => uploads::finish(reg, &name, &id, &query, req).await,
            Method::DELETE => uploads::cancel(reg, &name, &id).await,
            _ => Err(RegError::new(Code::Unsupported)),
        },
        _ => Err(RegError::new(Code::Unsupported)),
    }
}

/// Query parameters (Go's url.ParseQuery rules: `+` is a space, %XX decoded); first value wins.
pub(crate) fn parse_query(q: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.entry(unescape(k)).or_insert_with(|| unescape(v));
    }
    out
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hexval(b[i + 1]), hexval(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hexval(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|v| v as u8)
}

/// A response with an empty body and these headers.
pub(crate) fn empty(status: axum::http::StatusCode, headers: &[(&str, String)]) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(*k), HeaderValue::from_str(v)) {
            r.headers_mut().insert(k, v);
        }
    }
    r
}

#[cfg(test)]
mod tests {
    #[test]
    fn query() {
        let q = super::parse_query("digest=sha256%3Aab&n=2&x&artifactType=a%2Bb+c&n=3");
        assert_eq!(q["digest"], "sha256:ab");
        assert_eq!(q["n"], "2");
        assert_eq!(q["x"], "");
        assert_eq!(q["artifactType"], "a+b c");
        assert_eq!(super::unescape("%zz%4"), "%zz%4");
    }
}
