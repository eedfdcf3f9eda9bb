//! Crash-safe writes: temp file in the same directory + fsync + rename + fsync of the directory.
//! Temp names start with `.tmp-` so that [`clean_temp`] can remove what a crash left behind.

use std::path::{Path, PathBuf};

use crate::Result;

/// Prefix of every temporary file or directory the store creates.
pub const TEMP_PREFIX: &str = ".tmp-";

/// Write `data` to `path` atomically: readers see the old content or the new, never a mix.
pub fn write_file(path: &Path, data: &[u8]) -> Result<()> {
    todo!("{path:?} {}", data.len())
}

/// A fresh, uniquely named temporary path next to `final_path` (same directory, so rename is atomic).
pub fn temp_path_for(final_path: &Path) -> PathBuf {
    todo!("{final_path:?}")
}

/// fsync a directory so that a rename inside it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    todo!("{dir:?}")
}

/// Publish a fully written temporary directory as `final_dir` by rename.
/// If `final_dir` already exists (someone else published the same content), the temp dir is removed
/// and `Ok(false)` is returned.
pub fn publish_dir(tmp_dir: &Path, final_dir: &Path) -> Result<bool> {
    todo!("{tmp_dir:?} {final_dir:?}")
}

/// Remove every `.tmp-*` entry directly inside `dir` (leftovers of interrupted operations).
/// Returns how many were removed.
pub fn clean_temp(dir: &Path) -> Result<usize> {
    todo!("{dir:?}")
}

/// A random hex string of `n` bytes (2n chars), from the OS RNG.
pub fn random_hex(n: usize) -> String {
    todo!("{n}")
}
