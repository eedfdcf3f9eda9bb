//! Engine errors → HTTP. Docker's body shape: `{"message": "..."}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_engine::EngineError;

#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let status = match &e {
            EngineError::NotFound(_) => StatusCode::NOT_FOUND,
            EngineError::InvalidArgument(_) => StatusCode::BAD_REQUEST,
            EngineError::Conflict(_) => StatusCode::CONFLICT,
            EngineError::NotModified(_) => StatusCode::NOT_MODIFIED,
            EngineError::Forbidden(_) => StatusCode::FORBIDDEN,
            EngineError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

impl ApiError {
    pub fn bad_request(msg: impl Into<String>) -> ApiError {
        ApiError(StatusCode::BAD_REQUEST, msg.into())
    }
    pub fn internal(msg: impl std::fmt::Display) -> ApiError {
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, msg.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.0 == StatusCode::NOT_MODIFIED {
            return StatusCode::NOT_MODIFIED.into_response();
        }
        if self.0.is_server_error() {
            tracing::warn!("{}: {}", self.0, self.1);
        }
        (self.0, Json(serde_json::json!({ "message": self.1 }))).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        format!("page not found: {}", uri.path()),
    )
}

/// Run blocking engine work off the async threads.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> berth_engine::Result<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn maps_engine_errors_to_docker_statuses_and_bodies() {
        let cases = [
            (
                EngineError::NotFound("No such container: x".into()),
                StatusCode::NOT_FOUND,
            ),
            (
                EngineError::InvalidArgument("bad".into()),
                StatusCode::BAD_REQUEST,
            ),
            (EngineError::Conflict("in use".into()), StatusCode::CONFLICT),
            (
                EngineError::Internal("boom".into()),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ];
        for (err, status) in cases {
            let msg = err.to_string();
            let resp = ApiError::from(err).into_response();
            assert_eq!(resp.status(), status);
            let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
                .await
                .unwrap();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["message"], msg);
        }
        let resp = ApiError::from(EngineError::NotModified("x".into())).into_response();
        assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    }
}
