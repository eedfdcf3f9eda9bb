//! The engine's error type. Each variant maps to one HTTP status at the API edge:
//! NotFound 404, InvalidArgument 400, Conflict 409, NotModified 304, Forbidden 403, Internal 500.

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotModified(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, EngineError>;

impl From<berth_store::StoreError> for EngineError {
    fn from(e: berth_store::StoreError) -> Self {
        use berth_store::StoreError as S;
        match e {
            S::InvalidDigest(_)
            | S::UnsafeEntry { .. }
            | S::InvalidArchive(_)
            | S::DigestMismatch { .. } => EngineError::InvalidArgument(e.to_string()),
            S::NotFound(_) => EngineError::NotFound(e.to_string()),
            _ => EngineError::Internal(e.to_string()),
        }
    }
}

impl From<berth_runtime::RuntimeError> for EngineError {
    fn from(e: berth_runtime::RuntimeError) -> Self {
        use berth_runtime::RuntimeError as R;
        match e {
            R::InvalidArgument(_) | R::UserNotFound(_) | R::GroupNotFound(_) | R::Seccomp(_) => {
                EngineError::InvalidArgument(e.to_string())
            }
            _ => EngineError::Internal(e.to_string()),
        }
    }
}

impl From<berth_shim::ShimError> for EngineError {
    fn from(e: berth_shim::ShimError) -> Self {
        EngineError::Internal(e.to_string())
    }
}

impl From<std::io::Error> for EngineError {
    fn from(e: std::io::Error) -> Self {
        EngineError::Internal(e.to_string())
    }
}
