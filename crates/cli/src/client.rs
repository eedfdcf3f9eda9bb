//! A small Docker Engine API client over a unix socket (hyper 1, one connection per request).

use std::path::PathBuf;

use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, BodyStream, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

use crate::error::{CliError, Result};

/// API version prefix used for every request.
pub const API_PREFIX: &str = "/v1.47";
pub const DEFAULT_HOST: &str = "unix:///run/berth/berth.sock";

/// Characters left alone in query values and path segments (RFC 3986 unreserved).
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

pub fn encode(s: &str) -> String {
    utf8_percent_encode(s, ENCODE).to_string()
}

pub type ReqBody = UnsyncBoxBody<Bytes, std::io::Error>;

/// Builds a query string: `?a=1&b=x`.
#[derive(Default, Debug, Clone)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn add(mut self, key: &str, value: impl Into<String>) -> Self {
        self.0.push((key.to_string(), value.into()));
        self
    }
    pub fn add_if(self, cond: bool, key: &str, value: impl Into<String>) -> Self {
        if cond {
            self.add(key, value)
        } else {
            self
        }
    }
    pub fn add_opt(self, key: &str, value: Option<impl Into<String>>) -> Self {
        match value {
            Some(v) => self.add(key, v),
            None => self,
        }
    }
    pub fn render(&self) -> String {
        if self.0.is_empty() {
            return String::new();
        }
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        format!("?{}", parts.join("&"))
    }
}

/// Resolve the socket path: -H, then BERTH_HOST, then DOCKER_HOST, then the default.
pub fn resolve_host(flag: Option<&str>) -> Result<PathBuf> {
    let host = flag
        .map(str::to_string)
        .or_else(|| std::env::var("BERTH_HOST").ok().filter(|s| !s.is_empty()))
        .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| DEFAULT_HOST.to_string());
    socket_path(&host)
}

pub fn socket_path(host: &str) -> Result<PathBuf> {
    if let Some(p) = host.strip_prefix("unix://") {
        if p.is_empty() {
            return Err(CliError::Usage(format!("invalid host: {host}")));
        }
        return Ok(PathBuf::from(p));
    }
    if host.starts_with('/') {
        return Ok(PathBuf::from(host));
    }
    Err(CliError::Usage(format!(
        "unsupported host {host:?}: only unix:// is supported"
    )))
}

/// Filters as docker sends them: `{"key":{"value":true}}`.
pub fn filters_json(filters: &[String]) -> Result<Option<String>> {
    if filters.is_empty() {
        return Ok(None);
    }
    let mut map = serde_json::Map::new();
    for f in filters {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| CliError::Usage("bad format of filter (expected name=value)".into()))?;
        let entry = map
            .entry(k.trim().to_lowercase())
            .or_insert_with(|| serde_json::Value::Object(Default::default()));
        if let serde_json::Value::Object(m) = entry {
            m.insert(v.to_string(), serde_json::Value::Bool(true));
        }
    }
    Ok(Some(serde_json::Value::Object(map).to_string()))
}

pub fn empty_body() -> ReqBody {
    Empty::<Bytes>::new().map_err(|e| match e {}).boxed_unsync()
}

pub fn bytes_body(b: impl Into<Bytes>) -> ReqBody {
    Full::new(b.into()).map_err(|e| match e {}).boxed_unsync()
}

/// A streaming request body from any byte stream (files, stdin).
pub fn stream_body<S>(s: S) -> ReqBody
where
    S: Stream<Item = std::io::Result<Bytes>> + Send + 'static,
{
    BodyExt::boxed_unsync(StreamBody::new(s.map_ok(Frame::data)))
}

#[derive(Debug, Clone)]
pub struct Client {
    pub socket: PathBuf,
}

impl Client {
    pub fn new(socket: PathBuf) -> Self {
        Self { socket }
    }

    pub async fn connect(&self) -> Result<UnixStream> {
        UnixStream::connect(&self.socket)
            .await
            .map_err(|source| CliError::Connect {
                path: self.socket.display().to_string(),
                source,
            })
    }

    /// Send a request; non-2xx statuses become `CliError::Daemon` with the engine's message.
    pub async fn request(
        &self,
        method: Method,
        path_and_query: &str,
        content_type: Option<&str>,
        body: ReqBody,
    ) -> Result<Response<Incoming>> {
        self.request_with_headers(method, path_and_query, content_type, &[], body)
            .await
    }

    /// [`request`](Self::request) with extra headers (e.g. `X-Registry-Auth`).
    pub async fn request_with_headers(
        &self,
        method: Method,
        path_and_query: &str,
        content_type: Option<&str>,
        headers: &[(String, String)],
        body: ReqBody,
    ) -> Result<Response<Incoming>> {
        let stream = self.connect().await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{API_PREFIX}{path_and_query}"))
            .header("Host", "api")
            .header(
                "User-Agent",
                concat!("berth-cli/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(ct) = content_type {
            builder = builder.header("Content-Type", ct);
        }
        for (k, v) in headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        let req = builder
            .body(body)
            .map_err(|e| CliError::other(format!("building request: {e}")))?;
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        if status.is_success() || status.is_informational() {
            return Ok(resp);
        }
        let bytes = resp.into_body().collect().await?.to_bytes();
        Err(daemon_error(status.as_u16(), &bytes))
    }

    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let resp = self.request(Method::GET, path, None, empty_body()).await?;
        read_json(resp).await
    }

    /// GET and return the body's bytes as the engine sent them.
    pub async fn get_bytes(&self, path: &str) -> Result<Bytes> {
        let resp = self.request(Method::GET, path, None, empty_body()).await?;
        Ok(resp.into_body().collect().await?.to_bytes())
    }

    pub async fn post_json<T: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T> {
        let resp = self.post(path, body).await?;
        read_json(resp).await
    }

    /// POST with an optional JSON body; the response is returned unread.
    pub async fn post(
        &self,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Response<Incoming>> {
        match body {
            Some(v) => {
                self.request(
                    Method::POST,
                    path,
                    Some("application/json"),
                    bytes_body(serde_json::to_vec(v)?),
                )
                .await
            }
            None => self.request(Method::POST, path, None, empty_body()).await,
        }
    }

    /// POST and drain the response.
    pub async fn post_discard(&self, path: &str) -> Result<()> {
        let resp = self.post(path, None).await?;
        resp.into_body().collect().await?;
        Ok(())
    }

    pub async fn delete(&self, path: &str) -> Result<Response<Incoming>> {
        self.request(Method::DELETE, path, None, empty_body()).await
    }
}

pub fn daemon_error(status: u16, body: &[u8]) -> CliError {
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    let message = if message.is_empty() {
        format!("{status}")
    } else {
        message
    };
    CliError::Daemon { status, message }
}

pub async fn read_json<T: DeserializeOwned>(resp: Response<Incoming>) -> Result<T> {
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok(serde_json::from_slice(&bytes)?)
}

/// The response body as a stream of data chunks.
pub fn body_stream(resp: Response<Incoming>) -> impl Stream<Item = Result<Bytes>> + Unpin {
    BodyStream::new(resp.into_body()).filter_map(|f| {
        std::future::ready(match f {
            Ok(frame) => frame.into_data().ok().map(Ok),
            Err(e) => Some(Err(CliError::from(e))),
        })
    })
}

/// Iterate over a JSON-lines body (events, pull/load progress), calling `f` per message.
pub async fn for_each_json_line<F>(resp: Response<Incoming>, mut f: F) -> Result<()>
where
    F: FnMut(serde_json::Value) -> Result<()>,
{
    let mut stream = Box::pin(body_stream(resp));
    let mut buf: Vec<u8> = Vec::new();
    while let Some(chunk) = stream.next().await {
        buf.extend_from_slice(&chunk?);
        while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let line = line.trim_ascii();
            if !line.is_empty() {
                f(serde_json::from_slice(line)?)?;
            }
        }
    }
    let rest = buf.trim_ascii();
    if !rest.is_empty() {
        f(serde_json::from_slice(rest)?)?;
    }
    Ok(())
}

/// A JSON-lines progress message carrying an error (`errorDetail` / `error`).
pub fn stream_error(msg: &serde_json::Value) -> Option<String> {
    if let Some(m) = msg
        .get("errorDetail")
        .and_then(|d| d.get("message"))
        .and_then(|m| m.as_str())
    {
        return Some(m.to_string());
    }
    msg.get("error")
        .and_then(|e| e.as_str())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_encoded() {
        let q = Query::new().add("name", "a b/c").add_if(false, "x", "1");
        assert_eq!(q.render(), "?name=a%20b%2Fc");
        assert_eq!(Query::new().render(), "");
    }

    #[test]
    fn filters_are_docker_shaped() {
        let f = filters_json(&[
            "label=a=b".into(),
            "status=exited".into(),
            "status=created".into(),
        ])
        .unwrap()
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&f).unwrap();
        assert_eq!(v["label"]["a=b"], true);
        assert_eq!(v["status"]["exited"], true);
        assert_eq!(v["status"]["created"], true);
        assert!(filters_json(&["nokey".into()]).is_err());
    }

    #[test]
    fn host_parsing() {
        assert_eq!(
            socket_path("unix:///x/y.sock").unwrap(),
            PathBuf::from("/x/y.sock")
        );
        assert!(socket_path("tcp://1.2.3.4:2375").is_err());
    }

    #[test]
    fn daemon_error_message() {
        let e = daemon_error(404, br#"{"message":"No such container: x"}"#);
        assert!(e.is_not_found());
        assert_eq!(
            e.to_string(),
            "Error response from daemon: No such container: x"
        );
    }
}
