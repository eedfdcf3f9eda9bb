//! /images/... routes. Image names may contain `/`, so `/images/{*rest}` is dispatched on its
//! last path segment (`json`, `history`, `tag`, `get`), as Docker's `{name:.*}` routes do.

use std::io::{self, Write};

use axum::body::Body;
use axum::extract::{Path, Query as AxQuery, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use berth_engine::archive::{self, ImportOptions};
use berth_engine::images::ImageFilters;
use bytes::Bytes;
use futures_util::TryStreamExt;
use serde_json::json;
use tokio_util::io::{StreamReader, SyncIoBridge};

use crate::error::{blocking, ApiError, ApiResult};
use crate::query::{filters, flag, Query};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/images/json", get(list))
        .route("/images/create", post(create))
        .route("/images/load", post(load))
        .route("/images/get", get(save_many))
        .route("/images/prune", post(prune))
        .route(
            "/images/{*rest}",
            get(get_dispatch).post(post_dispatch).delete(remove),
        )
}

/// All values of a repeated query parameter (`names=a&names=b`).
fn multi(raw: &Option<String>, key: &str) -> Vec<String> {
    let Some(raw) = raw else { return Vec::new() };
    url_pairs(raw)
        .into_iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v)
        .collect()
}

fn url_pairs(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let dec = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .to_string()
            };
            (dec(k), dec(v))
        })
        .collect()
}

async fn list(
    State(e): State<AppState>,
    AxQuery(q): AxQuery<Query>,
) -> ApiResult<Json<serde_json::Value>> {
    let f = filters(&q)?;
    let mut imf = ImageFilters::default();
    for (k, vals) in &f {
        match k.as_str() {
            "dangling" => {
                let v = vals.first().map(|s| s.as_str()).unwrap_or("true");
                imf.dangling = Some(match v {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "invalid filter 'dangling={v}'"
                        )))
                    }
                });
            }
            "reference" => imf.reference = vals.clone(),
            "label" => imf.label = vals.clone(),
            "before" | "since" | "until" => {}
            _ => return Err(ApiError::bad_request(format!("invalid filter '{k}'"))),
        }
    }
    let all = flag(&q, "all");
    let counts = e.containers.count_by_image();
    let images = e.images.clone();
    let list = blocking(move || images.list(all, &imf, &counts)).await?;
    Ok(Json(
        serde_json::to_value(list).map_err(ApiError::internal)?,
    ))
}

async fn get_dispatch(State(e): State<AppState>, Path(rest): Path<String>) -> ApiResult<Response> {
    let images = e.images.clone();
    if let Some(name) = rest.strip_suffix("/json") {
        let name = name.to_string();
        let v = blocking(move || images.inspect(&name)).await?;
        return Ok(Json(v).into_response());
    }
    if let Some(name) = rest.strip_suffix("/history") {
        let name = name.to_string();
        let v = blocking(move || images.history(&name)).await?;
        return Ok(Json(v).into_response());
    }
    if let Some(name) = rest.strip_suffix("/get") {
        return save(e, vec![name.to_string()]).await;
    }
    Err(ApiError(
        StatusCode::NOT_FOUND,
        format!("page not found: /images/{rest}"),
    ))
}

async fn post_dispatch(
    State(e): State<AppState>,
    Path(rest): Path<String>,
    AxQuery(q): AxQuery<Query>,
    headers: axum::http::HeaderMap,
) -> ApiResult<Response> {
    if let Some(name) = rest.strip_suffix("/tag") {
        let repo = q.get("repo").cloned().unwrap_or_default();
        if repo.is_empty() {
            return Err(ApiError::bad_request(
                "repository name must have at least one component",
            ));
        }
        let tag = q.get("tag").cloned().filter(|t| !t.is_empty());
        let name = name.to_string();
        let images = e.images.clone();
        blocking(move || images.tag(&name, &repo, tag.as_deref())).await?;
        return Ok(StatusCode::CREATED.into_response());
    }
    if let Some(name) = rest.strip_suffix("/push") {
        return crate::push::push_image(e, name, &q, &headers).await;
    }
    Err(ApiError(
        StatusCode::NOT_FOUND,
        format!("page not found: /images/{rest}"),
    ))
}

async fn remove(
    State(e): State<AppState>,
    Path(name): Path<String>,
    AxQuery(q): AxQuery<Query>,
) -> ApiResult<Response> {
    let force = flag(&q, "force");
    let images = e.images.clone();
    let containers = e.containers.clone();
    let v = blocking(move || images.remove(&name, force, &|id| containers.image_user(id))).await?;
    Ok(Json(v).into_response())
}

async fn prune(State(e): State<AppState>, AxQuery(q): AxQuery<Query>) -> ApiResult<Response> {
    let f = filters(&q)?;
    let all = f
        .get("dangling")
        .map(|v| v.iter().any(|s| s == "false" || s == "0"))
        .unwrap_or(false);
    let images = e.images.clone();
    let containers = e.containers.clone();
    let (deleted, space) =
        blocking(move || images.prune(all, &|id| containers.image_user(id).is_some())).await?;
    Ok(Json(json!({"ImagesDeleted": deleted, "SpaceReclaimed": space})).into_response())
}

fn body_reader(body: Body) -> SyncIoBridge<impl tokio::io::AsyncRead + Unpin> {
    let s = body.into_data_stream().map_err(io::Error::other);
    SyncIoBridge::new(StreamReader::new(s))
}

/// How much of an upload is read and discarded after it was refused.
const DRAIN_LIMIT: u64 = 256 << 20;

/// Run `f` on the request body; if it fails, read (and discard) what the client is still
/// sending, up to [`DRAIN_LIMIT`], so the client reads the error response instead of a broken
/// pipe (Docker's CLI reports "write: broken pipe" when the engine closes while it writes).
fn with_drain<T>(
    r: &mut dyn io::Read,
    f: impl FnOnce(&mut dyn io::Read) -> berth_engine::Result<T>,
) -> berth_engine::Result<T> {
    let res = f(r);
    if res.is_err() {
        let _ = io::copy(&mut io::Read::take(r, DRAIN_LIMIT), &mut io::sink());
    }
    res
}

/// `POST /images/create`: `fromSrc=-` imports the body; `fromImage` would pull (not yet).
async fn create(
    State(e): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: axum::http::HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let pairs = url_pairs(raw.as_deref().unwrap_or(""));
    let get1 = |k: &str| {
        pairs
            .iter()
            .find(|(kk, _)| kk == k)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    if let Some(src) = get1("fromSrc") {
        if src != "-" {
            return Err(ApiError::bad_request(
                "importing from a URL is not supported; use fromSrc=-",
            ));
        }
        let reference = match (get1("repo"), get1("tag")) {
            (Some(r), Some(t)) => Some(format!("{r}:{t}")),
            (Some(r), None) => Some(r),
            _ => None,
        };
        let opts = ImportOptions {
            reference,
            changes: pairs
                .iter()
                .filter(|(k, _)| k == "changes")
                .map(|(_, v)| v.clone())
                .collect(),
            message: get1("message"),
            platform: get1("platform"),
        };
        let images = e.images.clone();
        let mut r = body_reader(body);
        let id =
            blocking(move || with_drain(&mut r, |r| archive::import(&images, r, &opts))).await?;
        return Ok(json_lines(vec![json!({"status": id.to_string()})]));
    }
    if let Some(img) = get1("fromImage") {
        let (tag, platform) = (get1("tag"), get1("platform"));
        return crate::distribution::pull_image(e, img, tag, platform, &headers).await;
    }
    Err(ApiError::bad_request("fromSrc or fromImage is required"))
}

async fn load(
    State(e): State<AppState>,
    AxQuery(q): AxQuery<Query>,
    body: Body,
) -> ApiResult<Response> {
    let _quiet = flag(&q, "quiet");
    let images = e.images.clone();
    let mut r = body_reader(body);
    let lines = blocking(move || with_drain(&mut r, |r| archive::load(&images, r))).await?;
    Ok(json_lines(
        lines
            .into_iter()
            .map(|l| json!({"stream": format!("{l}\n")}))
            .collect(),
    ))
}

fn json_lines(items: Vec<serde_json::Value>) -> Response {
    let mut out = Vec::new();
    for i in items {
        out.extend_from_slice(i.to_string().as_bytes());
        out.push(b'\n');
    }
    ([(header::CONTENT_TYPE, "application/json")], out).into_response()
}

async fn save_many(State(e): State<AppState>, RawQuery(raw): RawQuery) -> ApiResult<Response> {
    let names = multi(&raw, "names");
    save(e, names).await
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

async fn save(e: AppState, names: Vec<String>) -> ApiResult<Response> {
    if names.is_empty() {
        return Err(ApiError::bad_request("no image names given"));
    }
    // Resolve first so an unknown name is a 404, not a broken stream.
    let images = e.images.clone();
    let n2 = names.clone();
    blocking(move || n2.iter().try_for_each(|n| images.resolve(n).map(|_| ()))).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, io::Error>>(16);
    let images = e.images.clone();
    tokio::task::spawn_blocking(move || {
        let tx2 = tx.clone();
        let mut w = io::BufWriter::with_capacity(256 * 1024, ChanWriter(tx));
        let res =
            archive::save(&images, &names, &mut w).and_then(|_| w.flush().map_err(Into::into));
        if let Err(err) = res {
            tracing::warn!("save: {err}");
            let _ = tx2.blocking_send(Err(io::Error::other(err.to_string())));
        }
    });
    let s =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
    Ok((
        [(header::CONTENT_TYPE, "application/x-tar")],
        Body::from_stream(s),
    )
        .into_response())
}
