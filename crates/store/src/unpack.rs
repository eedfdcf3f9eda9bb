//! Applying an untrusted layer tarball to a directory.
//!
//! Guarantees, whatever the archive holds: nothing is created, changed or removed outside `target`.
//! - absolute paths and `..` components: leading `/` is stripped (as Docker does); a path that would
//!   climb out of the target is rejected with `UnsafeEntry`;
//! - no entry is written through a symlink (parents are resolved inside the target: a symlink
//!   component that would leave the target is rejected);
//! - hard links must point to a path inside the target (and not through a symlink);
//! - whiteouts (`.wh.name`, `.wh..wh..opq`) are converted to overlayfs whiteouts (0/0 char device,
//!   `trusted.overlay.opaque=y` xattr); a whiteout whose name escapes is rejected;
//! - block/char device nodes and FIFOs in the archive are skipped (berth does not create device nodes
//!   from images: /dev comes from the runtime), and counted in `UnpackStats::skipped`;
//! - setuid/setgid bits, owners, modes and mtimes are kept as in the archive.

use std::io::Read;
use std::path::Path;

use crate::Result;

#[derive(Debug, Default, Clone)]
pub struct UnpackStats {
    /// Sum of regular file sizes written.
    pub size: u64,
    pub entries: u64,
    pub skipped: u64,
}

/// Unpack the (already decompressed) tar stream `r` into the existing directory `target`.
pub fn unpack_layer(r: &mut dyn Read, target: &Path) -> Result<UnpackStats> {
    todo!("{:p} {target:?}", r)
}
