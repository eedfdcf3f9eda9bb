//! overlayfs mounts for container root filesystems.

use std::path::{Path, PathBuf};

use crate::Result;

/// Mount an overlay at `target` with `lowers` (top-most first), `upper` and `work`.
/// With no lowers (an image from scratch with no layers) an empty read-only lower is needed:
/// the caller passes one. Long lowerdir lists are handled (mount data is limited to a page).
pub fn mount(lowers: &[PathBuf], upper: &Path, work: &Path, target: &Path) -> Result<()> {
    todo!("{lowers:?} {upper:?} {work:?} {target:?}")
}

/// Unmount `target` (lazily if busy). Not mounted is not an error.
pub fn unmount(target: &Path) -> Result<()> {
    todo!("{target:?}")
}

/// Whether `path` is a mount point (from /proc/self/mountinfo).
pub fn is_mounted(path: &Path) -> bool {
    let _ = path;
    todo!()
}

/// Every mount point at or under `prefix` (from /proc/self/mountinfo), deepest first.
pub fn mounts_under(prefix: &Path) -> Vec<PathBuf> {
    let _ = prefix;
    todo!()
}
