//! `POST /build` (the classic builder's endpoint: the body is the context tar, progress comes
//! back as JSON lines) and `POST /build/prune`. berth's CLI may pass `berth-context=<abs dir>`
//! with an empty body: the engine then reads that directory in place.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;

use axum::body::Body;
use axum::extract::{Query as AxQuery, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use berth_engine::build::{BuildOptions, ContextSource, Output};
use bytes::Bytes;
use futures_util::TryStreamExt;
use serde_json::json;
use tokio_util::io::{StreamReader, SyncIoBridge};

use crate::error::{blocking, ApiError, ApiResult};
use crate::query::{flag, Query};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/build", post(build))
        .route("/build/prune", post(prune))
}

fn pairs(raw: &str) -> Vec<(String, String)> {
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

fn is_true(v: &str) -> bool {
    !matches!(v.to_ascii_lowercase().as_str(), "" | "0" | "false" | "no")
}

/// The build's options from Docker's query parameters.
fn options(p: &[(String, String)]) -> Result<(BuildOptions, Option<PathBuf>), ApiError> {
    let get = |k: &str| {
        p.iter()
            .rev()
            .find(|(kk, _)| kk == k)
            .map(|(_, v)| v.clone())
    };
    let mut o = BuildOptions {
        dockerfile: get("dockerfile").unwrap_or_default(),
        tags: p
            .iter()
            .filter(|(k, v)| k == "t" && !v.is_empty())
            .map(|(_, v)| v.clone())
            .collect(),
        target: get("target").unwrap_or_default(),
        nocache: get("nocache").is_some_and(|v| is_true(&v)),
        pull: get("pull").is_some_and(|v| is_true(&v)),
        quiet: get("q").is_some_and(|v| is_true(&v)),
        rm: get("rm").map(|v| is_true(&v)).unwrap_or(true),
        forcerm: get("forcerm").is_some_and(|v| is_true(&v)),
        network_mode: get("networkmode").unwrap_or_default(),
        ..BuildOptions::default()
    };
    if let Some(b) = get("buildargs").filter(|s| !s.is_empty()) {
        let m: BTreeMap<String, Option<String>> = serde_json::from_str(&b)
            .map_err(|e| ApiError::bad_request(format!("invalid buildargs: {e}")))?;
        o.buildargs = m;
    }
    if let Some(l) = get("labels").filter(|s| !s.is_empty()) {
        let m: BTreeMap<String, String> = serde_json::from_str(&l)
            .map_err(|e| ApiError::bad_request(format!("invalid labels: {e}")))?;
        o.labels = m;
    }
    if !matches!(
        o.network_mode.as_str(),
        "" | "default" | "none" | "host" | "bridge"
    ) {
        return Err(ApiError::bad_request(format!(
            "network mode {:?} is not supported for builds (none, host, default)",
            o.network_mode
        )));
    }
    for (k, v) in p.iter().filter(|(k, _)| k == "berth-build-context") {
        let _ = k;
        let (name, dir) = v
            .split_once('=')
            .ok_or_else(|| ApiError::bad_request(format!("invalid build context {v:?}")))?;
        o.build_contexts
            .insert(name.to_string(), PathBuf::from(dir));
    }
    let dir = get("berth-context")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from);
    Ok((o, dir))
}

async fn build(
    State(e): State<AppState>,
    RawQuery(raw): RawQuery,
    body: Body,
) -> ApiResult<Response> {
    let p = pairs(raw.as_deref().unwrap_or(""));
    let (opts, dir) = options(&p)?;
    let source = match dir {
        Some(d) => ContextSource::Dir(d),
        None => {
            let s = body.into_data_stream().map_err(io::Error::other);
            ContextSource::Tar(Box::new(SyncIoBridge::new(StreamReader::new(s))))
        }
    };
    let (out, mut rx) = Output::channel(opts.quiet);
    let svc = e.builds.clone();
    let task = tokio::spawn(async move { svc.build(opts, source, out).await });
    // Until the first message, a failure is an error status (Docker does the same).
    let first = match rx.recv().await {
        Some(b) => b,
        None => {
            return match task.await {
                Ok(Ok(_)) => Ok(([(header::CONTENT_TYPE, "application/json")], "").into_response()),
                Ok(Err(err)) => Err(err.into()),
                Err(join) => Err(ApiError::internal(join)),
            };
        }
    };
    let head = futures_util::stream::once(async move { Ok::<Bytes, io::Error>(first) });
    let rest = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<Bytes, io::Error>(b), rx))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(futures_util::StreamExt::chain(head, rest)),
    )
        .into_response())
}

async fn prune(State(e): State<AppState>, AxQuery(q): AxQuery<Query>) -> ApiResult<Response> {
    let all = flag(&q, "all");
    let svc = e.builds.clone();
    let (ids, space) = blocking(move || svc.prune(all)).await?;
    Ok(Json(json!({"CachesDeleted": ids, "SpaceReclaimed": space})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_options() {
        let p = pairs("t=a%3A1&t=b&buildargs=%7B%22X%22%3A%221%22%2C%22Y%22%3Anull%7D&rm=0&q=1&networkmode=none&berth-context=%2Ftmp%2Fc");
        let (o, d) = options(&p).unwrap();
        assert_eq!(o.tags, vec!["a:1", "b"]);
        assert_eq!(o.buildargs.get("X"), Some(&Some("1".to_string())));
        assert_eq!(o.buildargs.get("Y"), Some(&None));
        assert!(!o.rm && o.quiet);
        assert_eq!(o.network_mode, "none");
        assert_eq!(d, Some(PathBuf::from("/tmp/c")));
        let (o, _) = options(&pairs("")).unwrap();
        assert!(o.rm && !o.nocache);
        assert!(options(&pairs("networkmode=weird")).is_err());
    }
}
