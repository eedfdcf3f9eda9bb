//! berth-engine: the services behind the API: images, containers, events; the state machine of a
//! container; reconciliation at start. Blocking disk work is done in plain functions; async callers
//! use `spawn_blocking`.
//!
//! - [`config`]: the engine's paths and options (data-root, exec-root, ...).
//! - [`error`]: [`EngineError`], the one error type the API maps to HTTP statuses.
//! - [`events`]: the event bus behind `/events`.
//! - [`reference`]: Docker's image reference rules (`busybox` → `docker.io/library/busybox:latest`).
//! - [`images`]: the image service (records, tags, inspect, history, rmi, prune).
//! - [`archive`]: import of rootfs tarballs, `docker load` (docker-archive and OCI layout), `docker save`.
//! - [`hello`]: the `hello-world` image built into the binary.
//! - [`containers`]: the container service (create/start/stop/kill/wait/rm/...), split by verb.

pub mod archive;
pub mod build;
pub mod config;
pub mod containers;
pub mod engine;
pub mod error;
pub mod events;
pub mod hello;
pub mod images;
pub mod layerdiff;
pub mod networks;
pub mod reference;
pub mod volumes;

pub use config::EngineConfig;
pub use engine::Engine;
pub use error::{EngineError, Result};
