//! Capabilities: Docker's default set and `--cap-add/--cap-drop` (names with or without `CAP_`,
//! any case, and `ALL`).

use crate::Result;

/// Docker's default capabilities (moby's `DefaultCapabilities`), as `CAP_*` names.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability the kernel knows (for `--privileged` and `--cap-add ALL`).
pub fn all_caps() -> Vec<String> {
    todo!()
}

/// The effective set for a container: start from the defaults (or all, when privileged),
/// apply `add` then `drop` as Docker does (`ALL` allowed in either). Unknown names are an
/// `InvalidArgument` error with Docker's message ("unknown capability: \"CAP_FOO\"").
pub fn effective(privileged: bool, add: &[String], drop: &[String]) -> Result<Vec<String>> {
    todo!("{privileged} {add:?} {drop:?}")
}
