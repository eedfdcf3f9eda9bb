//! The CLI's error type and how each error maps to an exit code.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum CliError {
    #[error("Cannot connect to the berth daemon at unix://{path}. Is the berth daemon running?")]
    Connect {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Error response from daemon: {message}")]
    Daemon { status: u16, message: String },
    /// Bad flags or arguments (docker exits 125 for these).
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("error during connect: {0}")]
    Http(#[from] hyper::Error),
    #[error("invalid response from daemon: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Other(String),
    /// Exit with this status and print nothing more (e.g. a container's exit code).
    #[error("exit status {0}")]
    Exit(i32),
}

impl CliError {
    pub fn other(msg: impl Into<String>) -> Self {
        CliError::Other(msg.into())
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, CliError::Daemon { status: 404, .. })
    }
}

pub type Result<T> = std::result::Result<T, CliError>;
