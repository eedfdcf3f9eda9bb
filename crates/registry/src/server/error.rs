//! Registry errors in the distribution spec's JSON shape: `{"errors":[{"code","message","detail"}]}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// An error code of the distribution spec, with its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    TagInvalid,
    Unauthorized,
    Unsupported,
    PaginationNumberInvalid,
    RangeInvalid,
    Unavailable,
    Unknown,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::BlobUnknown => "BLOB_UNKNOWN",
            Code::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            Code::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            Code::DigestInvalid => "DIGEST_INVALID",
            Code::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            Code::ManifestInvalid => "MANIFEST_INVALID",
            Code::ManifestUnknown => "MANIFEST_UNKNOWN",
            Code::NameInvalid => "NAME_INVALID",
            Code::NameUnknown => "NAME_UNKNOWN",
            Code::TagInvalid => "TAG_INVALID",
            Code::Unauthorized => "UNAUTHORIZED",
            Code::Unsupported => "UNSUPPORTED",
            Code::PaginationNumberInvalid => "PAGINATION_NUMBER_INVALID",
            Code::RangeInvalid => "RANGE_INVALID",
            Code::Unavailable => "UNAVAILABLE",
            Code::Unknown => "UNKNOWN",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Code::BlobUnknown
            | Code::BlobUploadUnknown
            | Code::ManifestUnknown
            | Code::NameUnknown => StatusCode::NOT_FOUND,
            Code::Unauthorized => StatusCode::UNAUTHORIZED,
            Code::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
            Code::RangeInvalid => StatusCode::RANGE_NOT_SATISFIABLE,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn default_message(self) -> &'static str {
        match self {
            Code::BlobUnknown => "blob unknown to registry",
            Code::BlobUploadInvalid => "blob upload invalid",
            Code::BlobUploadUnknown => "blob upload unknown to registry",
            Code::DigestInvalid => "provided digest did not match uploaded content",
            Code::ManifestBlobUnknown => "blob unknown to registry",
            Code::ManifestInvalid => "manifest invalid",
            Code::ManifestUnknown => "manifest unknown",
            Code::NameInvalid => "invalid repository name",
            Code::NameUnknown => "repository name not known to registry",
            Code::TagInvalid => "manifest tag did not match URI",
            Code::Unauthorized => "authentication required",
            Code::Unsupported => "The operation is unsupported.",
            Code::PaginationNumberInvalid => "invalid number of results requested",
            Code::RangeInvalid => "invalid content range",
            Code::Unavailable => "service unavailable",
            Code::Unknown => "unknown error",
        }
    }
}

/// A registry error: a spec code, an optional message override and a detail (any JSON).
#[derive(Debug, thiserror::Error)]
#[error("{}: {}", code.as_str(), message)]
pub struct RegError {
    pub code: Code,
    pub message: String,
    pub detail: serde_json::Value,
    /// Extra headers (e.g. Content-Range on 416, WWW-Authenticate on 401).
    pub headers: Vec<(header::HeaderName, String)>,
}

impl RegError {
    pub fn new(code: Code) -> RegError {
        RegError {
            code,
            message: code.default_message().to_string(),
            detail: serde_json::Value::Null,
            headers: Vec::new(),
        }
    }
    pub fn msg(mut self, m: impl Into<String>) -> RegError {
        self.message = m.into();
        self
    }
    pub fn detail(mut self, d: impl Into<serde_json::Value>) -> RegError {
        self.detail = d.into();
        self
    }
    pub fn header(mut self, name: header::HeaderName, value: impl Into<String>) -> RegError {
        self.headers.push((name, value.into()));
        self
    }
    /// An internal error (I/O etc.): logged, 500 with the UNKNOWN code.
    pub fn internal(e: impl std::fmt::Display) -> RegError {
        tracing::error!("registry: {e}");
        RegError::new(Code::Unknown).msg(e.to_string())
    }
}

impl From<std::io::Error> for RegError {
    fn from(e: std::io::Error) -> RegError {
        RegError::internal(e)
    }
}

impl From<berth_store::StoreError> for RegError {
    fn from(e: berth_store::StoreError) -> RegError {
        RegError::internal(e)
    }
}

impl IntoResponse for RegError {
    fn into_response(self) -> Response {
        let mut entry = serde_json::json!({"code": self.code.as_str(), "message": self.message});
        if !self.detail.is_null() {
            entry["detail"] = self.detail;
        }
        let body = serde_json::json!({ "errors": [entry] }).to_string();
        let mut resp = (self.code.status(), body).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(name, v);
            }
        }
        resp
    }
}

pub type RegResult<T> = Result<T, RegError>;
