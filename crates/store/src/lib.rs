//! berth-store: everything berth keeps on disk.
//!
//! - [`digest`]: sha256 digests, parsed strictly (a digest never becomes a path unless it is 64 hex chars).
//! - [`atomic`]: crash-safe writes (temp file + fsync + rename; directories published by rename).
//! - [`content`]: immutable blobs by digest under `<data-root>/content/sha256/`.
//! - [`unpack`]: applying an untrusted layer tar to a directory without ever writing outside it.
//! - [`layers`]: unpacked, read-only layer directories keyed by chain id.
//! - [`overlay`]: overlayfs mounts for container root filesystems.
//! - [`safepath`]: opening paths inside a root that symlinks cannot escape (openat2 RESOLVE_IN_ROOT).
//! - [`meta`]: the metadata database (redb), JSON values in named tables, written in transactions.
//! - [`compress`]: detecting and undoing gzip/zstd compression of a stream.

pub mod atomic;
pub mod compress;
pub mod content;
pub mod digest;
pub mod inroot;
pub mod layers;
pub mod meta;
pub mod overlay;
pub mod safepath;
pub mod unpack;

pub use digest::Digest;

/// Errors of the store. Callers map them to API status codes at the edge.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid digest {0:?}")]
    InvalidDigest(String),
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: String, actual: String },
    #[error("content {0} not found")]
    NotFound(String),
    /// An archive entry that would write outside its target, or another hostile construct.
    #[error("invalid archive entry {path:?}: {reason}")]
    UnsafeEntry { path: String, reason: String },
    #[error("invalid archive: {0}")]
    InvalidArchive(String),
    #[error("metadata database: {0}")]
    Db(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Attach a context string to an io::Error.
pub trait IoContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| StoreError::Io {
            context: context(),
            source,
        })
    }
}
