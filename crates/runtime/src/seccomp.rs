//! Seccomp profiles in Docker's JSON format → OCI `LinuxSeccomp`.

use oci_spec::runtime::LinuxSeccomp;

use crate::Result;

/// Docker's default profile, embedded (assets/seccomp-default.json).
pub const DEFAULT_PROFILE: &str = include_str!("../assets/seccomp-default.json");

/// Convert a Docker-format profile to the OCI section for this host's architecture, keeping the
/// rules whose `includes`/`excludes` (caps, arches, minKernel) match `caps` (effective capability
/// names `CAP_*`). Errors name the problem (bad JSON, unknown action).
pub fn from_docker_profile(json: &str, caps: &[String]) -> Result<LinuxSeccomp> {
    todo!("{} {caps:?}", json.len())
}
