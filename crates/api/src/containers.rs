//! /containers/... routes.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query as AxQuery, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use berth_engine::containers::{
    parse_time, AttachStreams, CreateRequest, ListOptions, LogOptions, WaitCondition,
};
use berth_shim::logs::Stream;
use serde_json::json;

use crate::error::{ApiError, ApiResult};
use crate::hijack;
use crate::query::{filters, flag, int, Query};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/containers/json", get(list))
        .route("/containers/create", post(create))
        .route("/containers/prune", post(prune))
        .route("/containers/{id}/json", get(inspect))
        .route("/containers/{id}/start", post(start))
        .route("/containers/{id}/stop", post(stop))
        .route("/containers/{id}/restart", post(restart))
        .route("/containers/{id}/kill", post(kill))
        .route("/containers/{id}/wait", post(wait))
        .route("/containers/{id}", delete(remove))
        .route("/containers/{id}/rename", post(rename))
        .route("/containers/{id}/pause", post(pause))
        .route("/containers/{id}/unpause", post(unpause))
        .route("/containers/{id}/top", get(top))
        .route("/containers/{id}/logs", get(logs))
        .route("/containers/{id}/attach", post(attach))
        .route("/containers/{id}/resize", post(resize))
}

async fn list(
    State(e): State<AppState>,
    AxQuery(q): AxQuery<Query>,
) -> ApiResult<Json<serde_json::Value>> {
    let opts = ListOptions {
        all: flag(&q, "all"),
        limit: int(&q, "limit")?.unwrap_or(0),
        filters: filters(&q)?,
    };
    let v = e.containers.list(&opts)?;
    Ok(Json(serde_json::Value::Array(v)))
}

async fn create(
    State(e): State<AppState>,
    AxQuery(q): AxQuery<Query>,
    body: Bytes,
) -> ApiResult<Response> {
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "config cannot be empty in order to create a container",
        ));
    }
    let parsed = serde_json::from_slice(&body)
        .map_err(|err| ApiError::bad_request(format!("invalid JSON: {err}")))?;
    let req = CreateRequest {
        name: q.get("name").cloned(),
        body: parsed,
    };
    let (id, warnings) = e.containers.create(req).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"Id": id, "Warnings": warnings})),
    )
        .into_response())
}

async fn inspect(
    State(e): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    Ok(Json(e.containers.inspect(&id)?))
}

async fn start(State(e): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    e.containers.start_by_user(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn timeout(q: &Query) -> ApiResult<Option<i64>> {
    match int(q, "t")? {
        Some(t) => Ok(Some(t)),
        None => int(q, "timeout"),
    }
}

async fn stop(
    State(e): State<AppState>,
    Path(id): Path<String>,
    AxQuery(q): AxQuery<Query>,
) -> ApiResult<StatusCode> {
    e.containers
        .stop(&id, timeout(&q)?, q.get("signal").map(|s| s.as_str()))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn restart(
    State(e): State<AppState>,
    Path(id): Path<String>,
    AxQuery(q): AxQuery<Query>,
) -> ApiResult<StatusCode> {
    e.containers
        .restart(&id, timeout(&q)?, q.get("signal").map(|s| s.as_str()))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn kill(
    State(e): State<AppState>,
    Path(id): Path<String>,
    AxQuery(q): AxQuery<Query>,
) -> ApiResult<StatusCode> {
    e.containers
        .kill(&id, q.get("signal").map(|s| s.as_str()))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Headers go out at once (the CLI waits for them before it starts the container); the body
/// follows when the condition is met.
async fn wait(
    State(e): State<AppState>,
    Path(id): Path<String>,
    AxQuery(q): AxQuery<Query>,
) -> ApiResult<Response> {
    let cond = WaitCondition::parse(q.get("condition").map(|s| s.as_str()).unwrap_or(""))?;
    let c = e.containers.get(&id)?;
    let svc = e.containers.clone();
    let fut = async move {
        let body = match svc.wait(c, cond).await {
            Ok(code) => json!({"StatusCode": code, "Error": null}),
            Err(err) => json!({"StatusCode": -1, "Error": {"Message": err.to_string()}}),
        };
        Ok::<_, Infallible>(Bytes::from(format!("{body}\n")))
    };
    let s = futures_util::stream::once(fut);
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(s),
    )
        .into_response())
}

async fn remove(
    State(e): State<AppState>,
    Path(id): Path<String>,
    AxQuery(q): AxQuery<Query>,
) -> ApiResult<StatusCode> {
    if flag(&q, "link") {
        return Err(ApiError::bad_request("legacy links are not supported"));
    }
    e.containers
        .remove(&id, flag(&q, "force"), flag(&q, "v"))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn rename(
    State(e): State<AppState>,
    Path(id): Path<String>,
    AxQuery(q): AxQuery<Query>,
) -> ApiResult<StatusCode> {
    let name = q.get("name").cloned().unwrap_or_default();
    e.containers.rename(&id, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn pause(State(e): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    e.containers.pause(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn unpause(State(e): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    e.containers.unpause(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn top(
    State(e): State<AppState>,
    Path(id): Path<String>,
    AxQuery(q): AxQuery<Query>,
) -> ApiResult<Json<serde_json::Value>> {
    let (titles, procs) = e
        .containers
        .top(&id, q.get("ps_args").map(|s| s.as_str()).unwrap_or(""))
        .await?;
    Ok(Json(json!({"Titles": titles, "Processes": procs})))
}

async fn prune(
    State(e): State<AppState>,
    AxQuery(q): AxQuery<Query>,
) -> ApiResult<Json<serde_json::Value>> {
    let f = filters(&q)?;
    let labels = f.get("label").cloned().unwrap_or_default();
    let until = match f.get("until").and_then(|v| v.first()) {
        Some(u) => parse_time(u)?,
        None => None,
    };
    let keep = move |r: &berth_engine::containers::Record| {
        let l = r.config.labels.clone().unwrap_or_default();
        let label_ok = labels.iter().all(|want| match want.split_once('=') {
            Some((k, v)) => l.get(k).map(|x| x == v).unwrap_or(false),
            None => l.contains_key(want),
        });
        let until_ok = until
            .map(|u| {
                chrono::DateTime::parse_from_rfc3339(&r.created)
                    .map(|c| c < u)
                    .unwrap_or(true)
            })
            .unwrap_or(true);
        !(label_ok && until_ok)
    };
    let removed = e.containers.prune(&keep).await?;
    Ok(Json(
        json!({"ContainersDeleted": removed, "SpaceReclaimed": 0}),
    ))
}

/// Docker's multiplexed frame: stream byte, 3 zeros, big-endian length, payload.
pub fn frame(stream: u8, payload: &[u8]) -> Bytes {
    let mut b = Vec::with_capacity(payload.len() + 8);
    b.push(stream);
    b.extend_from_slice(&[0, 0, 0]);
    b.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    b.extend_from_slice(payload);
    b.into()
}

async fn logs(
    State(e): State<AppState>,
    Path(id): Path<String>,
    AxQuery(q): AxQuery<Query>,
) -> ApiResult<Response> {
    let (stdout, stderr) = (flag(&q, "stdout"), flag(&q, "stderr"));
    if !stdout && !stderr {
        return Err(ApiError::bad_request(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    let tail = match q.get("tail").map(|s| s.as_str()) {
        None | Some("") | Some("all") => None,
        Some(t) => Some(
            t.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("invalid tail value {t:?}")))?
                .max(0) as usize,
        ),
    };
    let opts = LogOptions {
        follow: flag(&q, "follow"),
        stdout,
        stderr,
        since: parse_time(q.get("since").map(|s| s.as_str()).unwrap_or(""))?,
        until: parse_time(q.get("until").map(|s| s.as_str()).unwrap_or(""))?,
        timestamps: flag(&q, "timestamps"),
        tail,
    };
    let (tty, rx) = e.containers.logs(&id, opts)?;
    let s = futures_util::stream::unfold(rx, move |mut rx| async move {
        let (stream, data) = rx.recv().await?;
        let b = if tty {
            Bytes::from(data)
        } else {
            frame(if stream == Stream::Stdout { 1 } else { 2 }, &data)
        };
        Some((Ok::<_, Infallible>(b), rx))
    });
    let ct = if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    };
    Ok(([(header::CONTENT_TYPE, ct)], Body::from_stream(s)).into_response())
}

async fn attach(
    State(e): State<AppState>,
    Path(id): Path<String>,
    AxQuery(q): AxQuery<Query>,
    req: Request,
) -> ApiResult<Response> {
    let streams = AttachStreams {
        stdin: flag(&q, "stdin"),
        stdout: flag(&q, "stdout"),
        stderr: flag(&q, "stderr"),
    };
    let keys = match q.get("detachKeys").filter(|k| !k.is_empty()) {
        Some(k) => crate::exec::parse_detach_keys(k).map_err(ApiError::bad_request)?,
        None => vec![16, 17],
    };
    let (tty, target) = e.containers.attach(&id, streams).await?;
    hijack::upgrade_keys(req, tty, target, keys).await
}

/// The tty's window size (TIOCSWINSZ through the shim).
async fn resize(
    State(e): State<AppState>,
    Path(id): Path<String>,
    AxQuery(q): AxQuery<Query>,
) -> ApiResult<StatusCode> {
    let h = int(&q, "h")?.unwrap_or(0);
    let w = int(&q, "w")?.unwrap_or(0);
    let (Ok(h), Ok(w)) = (u16::try_from(h), u16::try_from(w)) else {
        return Err(ApiError::bad_request("invalid terminal size"));
    };
    e.containers.resize_tty(&id, h, w).await?;
    Ok(StatusCode::OK)
}
