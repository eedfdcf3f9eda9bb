//! Opening paths inside a root directory so that no symlink or `..` can lead outside it.
//! Uses openat2(2) with RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS (Linux 5.6+).

use std::fs::File;
use std::path::Path;

use crate::Result;

/// Open `path` (interpreted as if `root` were `/`) for reading.
pub fn open_in_root(root: &Path, path: &Path) -> Result<File> {
    todo!("{root:?} {path:?}")
}

/// Read a whole file inside `root` (e.g. an image's /etc/passwd). `Ok(None)` if it does not exist.
pub fn read_in_root(root: &Path, path: &Path) -> Result<Option<Vec<u8>>> {
    todo!("{root:?} {path:?}")
}

/// Create (mkdir -p) a directory inside `root`, resolving every component inside it.
/// Used for working directories and mount targets.
pub fn mkdir_all_in_root(root: &Path, path: &Path, mode: u32) -> Result<()> {
    todo!("{root:?} {path:?} {mode}")
}
