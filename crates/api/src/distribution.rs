//! Registry reads: the pull branch of `POST /images/create?fromImage=&tag=&platform=` (Docker's
//! JSON progress messages, streamed) and `GET /distribution/{name}/json` (the descriptor and
//! platforms of a remote image, as `docker buildx imagetools`/`docker manifest` ask).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use berth_engine::images::pull::{self, PullRequest};
use berth_engine::images::registries::client::manifest::Manifest;
use berth_engine::images::registries::client::{RegistryClient, RegistryError};
use berth_engine::images::registries::{decode_registry_auth, engine_error, options_of, target};
use berth_engine::reference::Reference;
use berth_engine::EngineError;
use bytes::Bytes;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/distribution/{*name}", get(distribution_json))
}

fn error_line(msg: &str) -> Value {
    json!({"errorDetail": {"message": msg}, "message": msg, "error": msg})
}

fn line(v: &Value) -> Bytes {
    let mut b = v.to_string().into_bytes();
    b.push(b'\n');
    Bytes::from(b)
}

fn registry_auth(headers: &HeaderMap) -> Option<&str> {
    headers.get("x-registry-auth").and_then(|v| v.to_str().ok())
}

/// The pull branch of `POST /images/create`. An error before the first progress message is an
/// HTTP error (404 for an unknown image, as Docker); after it, an error message in the stream.
pub async fn pull_image(
    e: AppState,
    from_image: String,
    tag: Option<String>,
    platform: Option<String>,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let credentials = decode_registry_auth(registry_auth(headers))?;
    let req = PullRequest {
        from_image,
        tag,
        platform,
        credentials,
    };
    // Reject bad references before anything streams.
    pull::parse_request(&req)?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let images = e.images.clone();
    let opts = options_of(&e.cfg.daemon);
    // As dockerd's, the pull is cancelled when its client goes away (nothing of it is kept).
    let mut task = tokio::spawn(pull::pull(images, opts, req, tx));
    let first = tokio::select! {
        v = rx.recv() => v,
        res = &mut task => {
            let res = res.map_err(ApiError::internal)?;
            res?;
            None
        }
    };
    let first = match first {
        Some(v) => v,
        None => {
            // Finished without a message (should not happen), or the channel closed early.
            let res = task.await.map_err(ApiError::internal)?;
            res?;
            return Ok(([(header::CONTENT_TYPE, "application/json")], "").into_response());
        }
    };
    let (out_tx, out_rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(256);
    tokio::spawn(async move {
        let client_gone = out_tx.send(Ok(line(&first))).await.is_err();
        loop {
            let v = tokio::select! {
                _ = out_tx.closed() => None,
                v = rx.recv() => Some(v),
            };
            match v {
                Some(Some(v)) if !client_gone => {
                    if out_tx.send(Ok(line(&v))).await.is_err() {
                        break;
                    }
                }
                // The client left (closed, or its first line failed), or the pull ended.
                _ => break,
            }
        }
        if out_tx.is_closed() {
            task.abort();
            tracing::info!("pull cancelled: the client went away");
            return;
        }
        let res = match task.await {
            Ok(r) => r,
            Err(err) => Err(EngineError::Internal(err.to_string())),
        };
        if let Err(err) = res {
            tracing::info!(error = %err, "pull failed");
            if !client_gone {
                let _ = out_tx.send(Ok(line(&error_line(&err.to_string())))).await;
            }
        }
    });
    let body = Body::from_stream(tokio_stream_from(out_rx));
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// `GET /distribution/{name}/json`: `{"Descriptor": {...}, "Platforms": [...]}`.
async fn distribution_json(
    State(e): State<AppState>,
    Path(rest): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let Some(name) = rest.strip_suffix("/json") else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("page not found: /distribution/{rest}"),
        ));
    };
    let r = Reference::parse(name)?.with_default_tag();
    let credentials = decode_registry_auth(registry_auth(&headers))?;
    let t = target(&r, &options_of(&e.cfg.daemon));
    let reference = r.digest.clone().or(r.tag.clone()).unwrap_or_default();
    let mut last = None;
    let opts = options_of(&e.cfg.daemon);
    let attempts: Vec<_> = t
        .endpoints
        .iter()
        .flat_map(|ep| opts.candidates(ep))
        .collect();
    for (i, ep) in attempts.iter().enumerate() {
        let more = i + 1 < attempts.len();
        let client = match RegistryClient::new(ep, credentials.clone()) {
            Ok(c) => c,
            Err(err) => {
                last = Some(err);
                continue;
            }
        };
        match client.get_manifest(&t.repository, &reference).await {
            Ok(m) => {
                let platforms: Vec<Value> = match &m.manifest {
                    Manifest::Index { manifests, .. } => manifests
                        .iter()
                        .filter_map(|d| d.platform.as_ref())
                        .map(|p| serde_json::to_value(p).unwrap_or(Value::Null))
                        .collect(),
                    Manifest::Image(_) => Vec::new(),
                };
                return Ok(Json(json!({
                    "Descriptor": {
                        "mediaType": m.media_type,
                        "digest": m.digest,
                        "size": m.raw.len(),
                    },
                    "Platforms": platforms,
                }))
                .into_response());
            }
            Err(err) if ep.mirror => last = Some(err),
            Err(err @ RegistryError::Transport(_)) if more => last = Some(err),
            Err(err) => {
                last = Some(err);
                break;
            }
        }
    }
    let err = last.unwrap_or_else(|| RegistryError::Protocol("no registry endpoint".into()));
    Err(engine_error(err, &r.familiar_tagged(), &r.familiar_name()).into())
}
