//! The content store: immutable blobs under `<root>/sha256/<hex>`.
//! Blobs are written to a temp file, verified, fsynced and renamed into place, so a blob that exists
//! is always complete and matches its digest.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::{Digest, Result};

#[derive(Debug, Clone)]
pub struct ContentStore {
    root: PathBuf,
}

impl ContentStore {
    /// Open (creating if needed) a content store rooted at `root` (e.g. `<data-root>/content`).
    pub fn open(root: &Path) -> Result<ContentStore> {
        todo!("{root:?}")
    }

    /// Store `data`, returning its digest. Idempotent.
    pub fn put(&self, data: &[u8]) -> Result<Digest> {
        todo!("{} {:?}", data.len(), self.root)
    }

    /// Stream `r` into the store. If `expected` is given and the content does not match it,
    /// nothing is stored and `DigestMismatch` is returned. Returns the digest and size.
    pub fn ingest(&self, r: &mut dyn Read, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        todo!("{:p} {expected:?}", r)
    }

    pub fn exists(&self, d: &Digest) -> bool {
        self.path(d).exists()
    }

    /// Path of a blob (it may not exist).
    pub fn path(&self, d: &Digest) -> PathBuf {
        self.root.join("sha256").join(d.hex())
    }

    pub fn open_blob(&self, d: &Digest) -> Result<File> {
        todo!("{d}")
    }

    pub fn read(&self, d: &Digest) -> Result<Vec<u8>> {
        todo!("{d}")
    }

    pub fn size(&self, d: &Digest) -> Result<u64> {
        todo!("{d}")
    }

    /// Remove a blob; removing a missing blob is not an error.
    pub fn delete(&self, d: &Digest) -> Result<()> {
        todo!("{d}")
    }

    /// Every blob digest present.
    pub fn list(&self) -> Result<Vec<Digest>> {
        todo!()
    }

    /// Remove leftovers of interrupted writes. Returns how many were removed.
    pub fn clean_partial(&self) -> Result<usize> {
        todo!()
    }
}
