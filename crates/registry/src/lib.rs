//! berth-registry: both sides of the OCI distribution protocol (Docker Registry HTTP API v2).
//!
//! - [`client`]: pull and push for the engine (auth, manifests, streamed and verified blobs).
//! - [`server`]: `berth registry serve`, a registry of berth's own (storage, uploads, auth,
//!   pull-through cache).

pub mod client;
pub mod server;
