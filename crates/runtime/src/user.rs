//! `-u user[:group]` resolution against files inside the container root (read with
//! `berth_store::safepath`, so an image's symlinks cannot make the engine read host files).

use std::path::Path;

use crate::Result;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups from /etc/group memberships.
    pub additional_gids: Vec<u32>,
    /// Home directory from /etc/passwd (for HOME), `/` when unknown.
    pub home: String,
}

/// Resolve `spec` ("", "name", "uid", "name:group", "uid:gid", ...) as Docker does: empty means
/// root; numeric ids need no passwd entry; names must exist in the root's /etc/passwd or /etc/group.
pub fn resolve(rootfs: &Path, spec: &str) -> Result<ResolvedUser> {
    todo!("{rootfs:?} {spec}")
}
