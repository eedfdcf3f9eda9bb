//! berth-runtime: from a container's configuration to an OCI runtime spec, with Docker's security
//! defaults; and the cgroup operations the engine does itself (freeze, list pids, stats, cleanup).
//!
//! - [`spec`]: [`spec::SpecInput`] → `oci_spec::runtime::Spec` (namespaces, caps, seccomp, masked
//!   paths, devices, mounts, resources, user).
//! - [`seccomp`]: Docker's default profile (assets/seccomp-default.json, Apache-2.0 from moby) or a
//!   user's profile file → the OCI seccomp section, filtered by capabilities and architecture.
//! - [`caps`]: Docker's default capability set and `--cap-add/--cap-drop` arithmetic.
//! - [`cgroups`]: cgroup v1, v2 and hybrid hosts: paths, freezer, pids, OOM kill detection, cleanup.
//! - [`user`]: resolving `-u name[:group]` against the image's /etc/passwd and /etc/group, read
//!   inside the container root.

pub mod caps;
pub mod cgroups;
pub mod seccomp;
pub mod spec;
pub mod user;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("unable to find user {0}: no matching entries in passwd file")]
    UserNotFound(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    GroupNotFound(String),
    #[error("seccomp profile: {0}")]
    Seccomp(String),
    #[error("cgroup: {0}")]
    Cgroup(String),
    #[error(transparent)]
    Store(#[from] berth_store::StoreError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, RuntimeError>;
