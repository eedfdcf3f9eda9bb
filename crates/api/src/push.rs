//! `POST /images/{name}/push?tag=` (streamed as Docker's JSON progress messages) and
//! `POST /auth` (docker login).

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use berth_engine::images::login::{login, LoginOutcome};
use berth_engine::images::push;
use berth_engine::images::registries::{decode_registry_auth, options_of};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::query::Query;
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/auth", post(auth))
}

/// Docker's in-stream error message.
fn error_line(msg: &str) -> Value {
    json!({"errorDetail": {"message": msg}, "error": msg})
}

/// `POST /images/{name}/push`. `name` is the image path parameter (without `/push`).
pub async fn push_image(
    e: AppState,
    name: &str,
    q: &Query,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let auth = headers.get("x-registry-auth").and_then(|v| v.to_str().ok());
    let credentials = decode_registry_auth(auth)?;
    let tag = q.get("tag").map(String::as_str).filter(|t| !t.is_empty());
    let plan = push::plan(name, tag, credentials, options_of(&e.cfg.daemon))?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Value>(64);
    let images = e.images.clone();
    let (out_tx, out_rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    tokio::spawn(async move {
        let task = tokio::spawn(push::push(images, plan, tx));
        while let Some(v) = rx.recv().await {
            let mut line = v.to_string().into_bytes();
            line.push(b'\n');
            if out_tx.send(Ok(Bytes::from(line))).await.is_err() {
                // The client went away: the push is cancelled (as Docker's).
                task.abort();
                return;
            }
        }
        let res = match task.await {
            Ok(r) => r,
            Err(e) => Err(berth_engine::EngineError::Internal(e.to_string())),
        };
        if let Err(err) = res {
            tracing::info!("push: {err}");
            let mut line = error_line(&err.to_string()).to_string().into_bytes();
            line.push(b'\n');
            let _ = out_tx.send(Ok(Bytes::from(line))).await;
        }
    });
    let s =
        futures_util::stream::unfold(
            out_rx,
            |mut rx| async move { rx.recv().await.map(|b| (b, rx)) },
        );
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(s),
    )
        .into_response())
}

#[derive(Debug, Default, Deserialize)]
struct AuthBody {
    #[serde(default, alias = "Username")]
    username: String,
    #[serde(default, alias = "Password")]
    password: String,
    #[serde(default, alias = "ServerAddress")]
    serveraddress: String,
}

/// `POST /auth`: 200 `{"Status":"Login Succeeded","IdentityToken":""}` or 401 with Docker's
/// message.
async fn auth(State(e): State<AppState>, body: Bytes) -> ApiResult<Response> {
    let b: AuthBody = if body.iter().all(|c| c.is_ascii_whitespace()) {
        AuthBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|err| ApiError::bad_request(format!("invalid JSON body: {err}")))?
    };
    let options = options_of(&e.cfg.daemon);
    match login(&options, &b.username, &b.password, &b.serveraddress).await? {
        LoginOutcome::Succeeded { identity_token } => Ok(Json(json!({
            "Status": "Login Succeeded",
            "IdentityToken": identity_token,
        }))
        .into_response()),
        LoginOutcome::Denied(msg) => Err(ApiError(StatusCode::UNAUTHORIZED, msg)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_lines_are_docker_shaped() {
        let v = error_line("boom");
        assert_eq!(v["error"], "boom");
        assert_eq!(v["errorDetail"]["message"], "boom");
    }
}
