//! `POST /commit` (a container's changes → a new image) and `GET /system/df` (disk usage).

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use berth_engine::containers::CommitOptions;
use serde_json::{json, Value};

use crate::error::{blocking, ApiError, ApiResult};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/commit", post(commit))
        .route("/system/df", get(system_df))
}

/// Every `key=value` of a query string, decoded, in order (repeated keys kept).
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

/// Docker's boolean with a default when absent.
fn flag_or(v: Option<&String>, default: bool) -> bool {
    match v {
        None => default,
        Some(v) => !matches!(v.to_ascii_lowercase().as_str(), "" | "0" | "false" | "no"),
    }
}

async fn commit(
    State(e): State<AppState>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> ApiResult<Response> {
    let q = pairs(raw.as_deref().unwrap_or(""));
    let get1 = |k: &str| q.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.clone());
    let container = get1("container").unwrap_or_default();
    if container.is_empty() {
        return Err(ApiError::bad_request("container is required"));
    }
    let config = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid container config: {e}")))?;
        (!v.is_null()).then_some(v)
    };
    let opts = CommitOptions {
        repo: get1("repo").unwrap_or_default(),
        tag: get1("tag").unwrap_or_default(),
        comment: get1("comment").unwrap_or_default(),
        author: get1("author").unwrap_or_default(),
        pause: flag_or(q.iter().find(|(k, _)| k == "pause").map(|(_, v)| v), true),
        changes: q
            .iter()
            .filter(|(k, _)| k == "changes")
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
            .collect(),
        config,
    };
    let id = e.containers.commit(&container, opts).await?;
    Ok((StatusCode::CREATED, Json(json!({ "Id": id.to_string() }))).into_response())
}

async fn system_df(State(e): State<AppState>) -> ApiResult<Response> {
    let containers = e.containers.clone();
    let v = blocking(move || containers.disk_usage()).await?;
    Ok(Json(v).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_pairs_keep_repeated_changes() {
        let q = pairs("container=c1&changes=CMD+%5B%22echo%22%5D&changes=ENV%20A%3Db&pause=0");
        let changes: Vec<&str> = q
            .iter()
            .filter(|(k, _)| k == "changes")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(changes, ["CMD [\"echo\"]", "ENV A=b"]);
        assert!(!flag_or(
            q.iter().find(|(k, _)| k == "pause").map(|(_, v)| v),
            true
        ));
        assert!(flag_or(None, true));
    }
}
