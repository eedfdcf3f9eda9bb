//! Unpacked layers: `<root>/<chain-id-hex>/` holding exactly that layer's files (with overlayfs
//! whiteouts), plus `<root>/<chain-id-hex>.json` with its [`LayerInfo`]. Read-only lowers for overlayfs.
//! A layer is unpacked into a temp dir and published by rename, so a layer dir that exists is complete.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::{Digest, Result};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct LayerInfo {
    pub chain_id: Digest,
    pub diff_id: Digest,
    pub parent: Option<Digest>,
    /// Bytes of regular files in this layer.
    pub size: u64,
}

/// The OCI chain id: chain(L0) = diff(L0); chain(Ln) = sha256(chain(Ln-1) + " " + diff(Ln)).
pub fn chain_id(parent: Option<&Digest>, diff_id: &Digest) -> Digest {
    match parent {
        None => diff_id.clone(),
        Some(p) => Digest::of(format!("{p} {diff_id}").as_bytes()),
    }
}

#[derive(Debug, Clone)]
pub struct LayerStore {
    root: PathBuf,
}

impl LayerStore {
    pub fn open(root: &Path) -> Result<LayerStore> {
        todo!("{root:?}")
    }

    /// Unpack a layer stream (compressed or not: auto-detected) on top of `parent` (a chain id that
    /// must exist, or None for a base layer). Computes the diff id (sha256 of the uncompressed tar)
    /// while unpacking. If `expected_diff_id` is given and differs, nothing is kept and
    /// `DigestMismatch` is returned. If the layer already exists, the stream is still read (to check
    /// it) and the existing layer is returned.
    pub fn apply(
        &self,
        parent: Option<&Digest>,
        r: &mut dyn Read,
        expected_diff_id: Option<&Digest>,
    ) -> Result<LayerInfo> {
        todo!("{parent:?} {:p} {expected_diff_id:?} {:?}", r, self.root)
    }

    pub fn get(&self, chain_id: &Digest) -> Result<Option<LayerInfo>> {
        todo!("{chain_id}")
    }

    /// The directory of a layer's files.
    pub fn dir(&self, chain_id: &Digest) -> PathBuf {
        self.root.join(chain_id.hex())
    }

    pub fn exists(&self, chain_id: &Digest) -> bool {
        self.dir(chain_id).is_dir() && self.root.join(format!("{}.json", chain_id.hex())).is_file()
    }

    /// Remove a layer (info file first, then the directory).
    pub fn remove(&self, chain_id: &Digest) -> Result<()> {
        todo!("{chain_id}")
    }

    pub fn list(&self) -> Result<Vec<LayerInfo>> {
        todo!()
    }

    /// Remove temp dirs left by interrupted unpacks, and layer dirs without an info file.
    pub fn clean_partial(&self) -> Result<usize> {
        todo!()
    }
}
