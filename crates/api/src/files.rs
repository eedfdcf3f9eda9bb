//! Files and stats of a container: the archive API (`docker cp`), `changes` (diff), `export`,
//! `stats` and `update`.

use std::io::{self, Write};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query as AxQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use berth_engine::containers::archive::{path_stat_json, RootfsGuard};
use berth_engine::containers::stats::stats_json;
use berth_engine::containers::ContainerService;
use berth_store::inroot::ExtractOptions;
use futures_util::StreamExt;
use serde_json::json;

use crate::error::{ApiError, ApiResult};
use crate::query::{flag, Query};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/containers/{id}/archive",
            get(archive_get).head(archive_head).put(archive_put),
        )
        .route("/containers/{id}/changes", get(changes))
        .route("/containers/{id}/export", get(export))
        .route("/containers/{id}/stats", get(stats))
        .route("/containers/{id}/update", post(update))
}

const STAT_HEADER: &str = "X-Docker-Container-Path-Stat";

/// Standard base64 with padding (Go's `base64.StdEncoding`).
fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

fn path_param(q: &Query) -> ApiResult<String> {
    q.get("path")
        .filter(|p| !p.is_empty())
        .cloned()
        .ok_or_else(|| ApiError::bad_request("path is required"))
}

async fn stat_header(e: &AppState, id: &str, path: &str) -> ApiResult<HeaderValue> {
    let st = e.containers.archive_stat(id, path).await?;
    let v = path_stat_json(&st).to_string();
    HeaderValue::from_str(&base64(v.as_bytes())).map_err(ApiError::internal)
}

async fn archive_head(
    State(e): State<AppState>,
    Path(id): Path<String>,
    AxQuery(q): AxQuery<Query>,
) -> ApiResult<Response> {
    let path = path_param(&q)?;
    let h = stat_header(&e, &id, &path).await?;
    let mut r = StatusCode::OK.into_response();
    r.headers_mut().insert(STAT_HEADER, h);
    Ok(r)
}

/// A `Write` that hands chunks to an async body.
struct ChanWriter(tokio::sync::mpsc::Sender<Result<Bytes, io::Error>>);

impl Write for ChanWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "client went away"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Stream what `f` writes (in a blocking thread holding `g`) as an x-tar body.
fn tar_body(
    g: RootfsGuard,
    f: impl FnOnce(&RootfsGuard, &mut dyn Write) -> berth_engine::Result<()> + Send + 'static,
) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, io::Error>>(16);
    tokio::task::spawn_blocking(move || {
        let tx2 = tx.clone();
        let mut w = io::BufWriter::with_capacity(256 * 1024, ChanWriter(tx));
        let res = f(&g, &mut w).and_then(|_| w.flush().map_err(Into::into));
        drop(w);
        drop(g);
        if let Err(err) = res {
            tracing::warn!("archive: {err}");
            let _ = tx2.blocking_send(Err(io::Error::other(err.to_string())));
        }
    });
    let s =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
    Body::from_stream(s)
}

async fn archive_get(
    State(e): State<AppState>,
    Path(id): Path<String>,
    AxQuery(q): AxQuery<Query>,
) -> ApiResult<Response> {
    let path = path_param(&q)?;
    // Stat first: a missing path is a 404, not a broken stream.
    let h = stat_header(&e, &id, &path).await?;
    let g = e.containers.open_rootfs(&id).await?;
    let body = tar_body(g, move |g, w| ContainerService::archive_write(g, &path, w));
    let mut r = ([(header::CONTENT_TYPE, "application/x-tar")], body).into_response();
    r.headers_mut().insert(STAT_HEADER, h);
    Ok(r)
}

/// How much of an upload is read and discarded after it was refused.
const DRAIN_LIMIT: u64 = 256 << 20;

/// Chunks of an upload read ahead of the extraction (bounds the memory held per upload).
const READ_AHEAD_CHUNKS: usize = 32;

/// A request body as a blocking `Read`. A task pulls the body ahead into a queue, so the
/// extraction thread takes chunks as they come instead of waking the connection for each read
/// and waiting for it (as a `SyncIoBridge` does).
fn body_reader(body: Body) -> ChanReader {
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(READ_AHEAD_CHUNKS);
    tokio::spawn(async move {
        let mut s = body.into_data_stream();
        while let Some(chunk) = s.next().await {
            let chunk = chunk.map_err(io::Error::other);
            let failed = chunk.is_err();
            // The reader is gone (done or failed): stop reading the body.
            if tx.send(chunk).await.is_err() || failed {
                break;
            }
        }
    });
    ChanReader {
        rx,
        cur: Bytes::new(),
    }
}

/// The reading end of [`body_reader`].
struct ChanReader {
    rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
    cur: Bytes,
}

impl io::Read for ChanReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

async fn archive_put(
    State(e): State<AppState>,
    Path(id): Path<String>,
    AxQuery(q): AxQuery<Query>,
    body: Body,
) -> ApiResult<Response> {
    let path = path_param(&q)?;
    let opts = ExtractOptions {
        no_overwrite_dir_non_dir: flag(&q, "noOverwriteDirNonDir"),
        keep_owner: flag(&q, "copyUIDGID"),
    };
    let g = e.containers.open_rootfs(&id).await?;
    let mut r = body_reader(body);
    tokio::task::spawn_blocking(move || {
        let res = ContainerService::archive_extract(&g, &path, &mut r, opts);
        // Read what the client still sends so it sees our answer, not a broken pipe.
        let _ = io::copy(&mut io::Read::take(&mut r, DRAIN_LIMIT), &mut io::sink());
        drop(g);
        res
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(StatusCode::OK.into_response())
}

async fn changes(State(e): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let list = e.containers.changes(&id).await?;
    if list.is_empty() {
        return Ok(Json(serde_json::Value::Null).into_response());
    }
    let v: Vec<_> = list
        .into_iter()
        .map(|(p, k)| json!({"Path": p, "Kind": k}))
        .collect();
    Ok(Json(v).into_response())
}

async fn export(State(e): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let g = e.containers.open_rootfs(&id).await?;
    let body = tar_body(g, ContainerService::export_write);
    Ok(([(header::CONTENT_TYPE, "application/x-tar")], body).into_response())
}

const STATS_INTERVAL: Duration = Duration::from_secs(1);

async fn stats(
    State(e): State<AppState>,
    Path(id): Path<String>,
    AxQuery(q): AxQuery<Query>,
) -> ApiResult<Response> {
    // Docker: stream defaults to true.
    let stream = !q.contains_key("stream") || flag(&q, "stream");
    let one_shot = flag(&q, "one-shot");
    let (cid, name, first) = e.containers.stats_sample(&id).await?;
    if !stream {
        if one_shot || !first.running {
            return Ok(Json(stats_json(&cid, &name, &first, None)).into_response());
        }
        tokio::time::sleep(STATS_INTERVAL).await;
        let (_, _, second) = e.containers.stats_sample(&id).await?;
        return Ok(Json(stats_json(&cid, &name, &second, Some(&first))).into_response());
    }
    let doc = |v: serde_json::Value| {
        let mut b = v.to_string().into_bytes();
        b.push(b'\n');
        Ok::<Bytes, io::Error>(Bytes::from(b))
    };
    let first_doc = doc(stats_json(&cid, &name, &first, None));
    let state = (e, id, first);
    let rest = futures_util::stream::unfold(state, move |(e, id, prev)| async move {
        tokio::time::sleep(STATS_INTERVAL).await;
        let (cid, name, cur) = e.containers.stats_sample(&id).await.ok()?;
        let v = stats_json(&cid, &name, &cur, Some(&prev));
        Some((doc(v), (e, id, cur)))
    });
    let s = futures_util::stream::once(async move { first_doc }).chain(rest);
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(s),
    )
        .into_response())
}

async fn update(
    State(e): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let v: serde_json::Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&body)
            .map_err(|err| ApiError::bad_request(format!("invalid JSON: {err}")))?
    };
    let warnings = e.containers.update(&id, &v).await?;
    Ok(Json(json!({"Warnings": warnings})).into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_go() {
        assert_eq!(super::base64(b""), "");
        assert_eq!(super::base64(b"f"), "Zg==");
        assert_eq!(super::base64(b"fo"), "Zm8=");
        assert_eq!(super::base64(b"foo"), "Zm9v");
        assert_eq!(super::base64(b"{\"a\":1}"), "eyJhIjoxfQ==");
    }
}
