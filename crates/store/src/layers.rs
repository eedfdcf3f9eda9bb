//! Unpacked layers: `<root>/<chain-id-hex>/` holding exactly that layer's files (with overlayfs
//! whiteouts), plus `<root>/<chain-id-hex>.json` with its [`LayerInfo`]. Read-only lowers for overlayfs.
//! A layer is unpacked into a temp dir and published by rename, so a layer dir that exists is complete.

use std::fs;
use std::io::{self, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::atomic::{self, TEMP_PREFIX};
use crate::digest::DigestReader;
use crate::{compress, unpack, Digest, IoContext, Result, StoreError};

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

/// Removes a temp dir unless disarmed.
struct TempDir(Option<PathBuf>);

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            if let Err(e) = fs::remove_dir_all(&p) {
                tracing::warn!(path = ?p, error = %e, "cannot remove temp layer dir");
            }
        }
    }
}

impl LayerStore {
    pub fn open(root: &Path) -> Result<LayerStore> {
        fs::create_dir_all(root).ctx(|| format!("create {root:?}"))?;
        Ok(LayerStore {
            root: root.to_path_buf(),
        })
    }

    fn info_path(&self, chain_id: &Digest) -> PathBuf {
        self.root.join(format!("{}.json", chain_id.hex()))
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
        if let Some(p) = parent {
            if !self.exists(p) {
                return Err(StoreError::NotFound(format!("parent layer {p}")));
            }
        }
        let tmp = self
            .root
            .join(format!("{TEMP_PREFIX}{}", atomic::random_hex(8)));
        fs::create_dir(&tmp).ctx(|| format!("create {tmp:?}"))?;
        let mut guard = TempDir(Some(tmp.clone()));
        // Layer roots are 0755 whatever the umask (the overlay's root comes from the upper dir).
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))
            .ctx(|| format!("chmod {tmp:?}"))?;

        let plain = compress::decompressed(BufReader::with_capacity(1 << 16, r))?;
        let mut hashed = DigestReader::new(plain);
        let stats = unpack::unpack_layer(&mut hashed, &tmp)?;
        // tar stops reading at the end-of-archive blocks; the diff id covers every byte.
        io::copy(&mut hashed, &mut io::sink()).ctx(|| "read layer stream".to_string())?;
        let (_, diff_id, _) = hashed.finish();
        if let Some(exp) = expected_diff_id {
            if *exp != diff_id {
                return Err(StoreError::DigestMismatch {
                    expected: exp.to_string(),
                    actual: diff_id.to_string(),
                });
            }
        }
        let chain = chain_id(parent, &diff_id);
        let info = LayerInfo {
            chain_id: chain.clone(),
            diff_id,
            parent: parent.cloned(),
            size: stats.size,
        };
        if self.exists(&chain) {
            // Already there: our copy is dropped by the guard.
            return Ok(self.get(&chain)?.unwrap_or(info));
        }
        guard.0 = None;
        // publish_dir removes our temp dir itself when another copy won the race.
        atomic::publish_dir(&tmp, &self.dir(&chain))?;
        let json = serde_json::to_vec(&info).map_err(|e| StoreError::Db(e.to_string()))?;
        atomic::write_file(&self.info_path(&chain), &json)?;
        Ok(info)
    }

    /// A fresh temp directory in the layer root (removed by `clean_partial` if never published),
    /// for a layer whose files are written directly (commit, build steps), then [`publish`](Self::publish)ed.
    pub fn temp_dir(&self) -> Result<PathBuf> {
        let tmp = self
            .root
            .join(format!("{TEMP_PREFIX}{}", atomic::random_hex(8)));
        fs::create_dir(&tmp).ctx(|| format!("create {tmp:?}"))?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))
            .ctx(|| format!("chmod {tmp:?}"))?;
        Ok(tmp)
    }

    /// Publish a fully written (and synced) temp dir from [`temp_dir`](Self::temp_dir) as the
    /// layer `info` describes, then its info file. If the layer exists already, the temp dir is
    /// removed and the existing layer returned.
    pub fn publish(&self, tmp: &Path, info: LayerInfo) -> Result<LayerInfo> {
        if let Some(p) = &info.parent {
            if !self.exists(p) {
                let _ = fs::remove_dir_all(tmp);
                return Err(StoreError::NotFound(format!("parent layer {p}")));
            }
        }
        if self.exists(&info.chain_id) {
            fs::remove_dir_all(tmp).ctx(|| format!("remove {tmp:?}"))?;
            return Ok(self.get(&info.chain_id)?.unwrap_or(info));
        }
        atomic::publish_dir(tmp, &self.dir(&info.chain_id))?;
        if !self.info_path(&info.chain_id).is_file() {
            let json = serde_json::to_vec(&info).map_err(|e| StoreError::Db(e.to_string()))?;
            atomic::write_file(&self.info_path(&info.chain_id), &json)?;
        }
        Ok(info)
    }

    /// [`publish`](Self::publish) without any fsync: the caller syncs the filesystem before
    /// and after (one `syncfs` each instead of a sync per rename; a crash before the second
    /// leaves at worst a temp dir or a layer without its info file, both removed at start).
    pub fn publish_unsynced(&self, tmp: &Path, info: LayerInfo) -> Result<LayerInfo> {
        if let Some(p) = &info.parent {
            if !self.exists(p) {
                let _ = fs::remove_dir_all(tmp);
                return Err(StoreError::NotFound(format!("parent layer {p}")));
            }
        }
        let dir = self.dir(&info.chain_id);
        let flags = nix::fcntl::RenameFlags::RENAME_NOREPLACE;
        match nix::fcntl::renameat2(None, tmp, None, &dir, flags) {
            Ok(()) => {}
            Err(nix::errno::Errno::EEXIST) | Err(nix::errno::Errno::ENOTEMPTY) => {
                fs::remove_dir_all(tmp).ctx(|| format!("remove {tmp:?}"))?;
                if let Some(existing) = self.get(&info.chain_id)? {
                    return Ok(existing);
                }
            }
            Err(e) => {
                return Err(StoreError::Io {
                    context: format!("rename {tmp:?} to {dir:?}"),
                    source: io::Error::from(e),
                })
            }
        }
        let path = self.info_path(&info.chain_id);
        if !path.is_file() {
            let json = serde_json::to_vec(&info).map_err(|e| StoreError::Db(e.to_string()))?;
            let t = atomic::temp_path_for(&path);
            fs::write(&t, &json).ctx(|| format!("write {t:?}"))?;
            fs::rename(&t, &path).ctx(|| format!("rename {t:?}"))?;
        }
        Ok(info)
    }

    pub fn get(&self, chain_id: &Digest) -> Result<Option<LayerInfo>> {
        let p = self.info_path(chain_id);
        let data = match fs::read(&p) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).ctx(|| format!("read {p:?}")),
        };
        serde_json::from_slice(&data)
            .map(Some)
            .map_err(|e| StoreError::Io {
                context: format!("decode {p:?}"),
                source: io::Error::new(io::ErrorKind::InvalidData, e),
            })
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
        let info = self.info_path(chain_id);
        match fs::remove_file(&info) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).ctx(|| format!("remove {info:?}")),
        }
        // Rename first so that a crash mid-removal leaves only a temp dir behind.
        let dir = self.dir(chain_id);
        let tmp = atomic::temp_path_for(&dir);
        match fs::rename(&dir, &tmp) {
            Ok(()) => fs::remove_dir_all(&tmp).ctx(|| format!("remove {tmp:?}")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).ctx(|| format!("rename {dir:?}")),
        }
    }

    pub fn list(&self) -> Result<Vec<LayerInfo>> {
        let mut out = Vec::new();
        for ent in fs::read_dir(&self.root).ctx(|| format!("read dir {:?}", self.root))? {
            let ent = ent.ctx(|| format!("read dir {:?}", self.root))?;
            let name = ent.file_name();
            let Some(hex) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            let Ok(d) = Digest::from_hex(hex) else {
                continue;
            };
            match self.get(&d) {
                Ok(Some(info)) if self.dir(&d).is_dir() => out.push(info),
                Ok(_) => {}
                Err(e) => tracing::warn!(layer = %d, error = %e, "skipping unreadable layer info"),
            }
        }
        out.sort_by(|a, b| a.chain_id.cmp(&b.chain_id));
        Ok(out)
    }

    /// Remove temp dirs left by interrupted unpacks, and layer dirs without an info file.
    pub fn clean_partial(&self) -> Result<usize> {
        let mut n = atomic::clean_temp(&self.root)?;
        for ent in fs::read_dir(&self.root).ctx(|| format!("read dir {:?}", self.root))? {
            let ent = ent.ctx(|| format!("read dir {:?}", self.root))?;
            let Some(name) = ent.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let Ok(d) = Digest::from_hex(&name) else {
                continue;
            };
            if !self.info_path(&d).is_file() {
                let p = ent.path();
                fs::remove_dir_all(&p).ctx(|| format!("remove {p:?}"))?;
                n += 1;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn layer(files: &[(&str, &[u8])], trailing: usize) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (p, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(1);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, p, *data).unwrap();
        }
        let mut v = b.into_inner().unwrap();
        v.extend(std::iter::repeat_n(0u8, trailing));
        v
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn apply_two_layers_gzip_and_chain() {
        let d = tempfile::tempdir().unwrap();
        let ls = LayerStore::open(d.path()).unwrap();
        // Extra zero padding after the end-of-archive must be part of the diff id.
        let l0 = layer(&[("a", b"1")], 4096);
        let i0 = ls
            .apply(None, &mut &gz(&l0)[..], Some(&Digest::of(&l0)))
            .unwrap();
        assert_eq!(i0.diff_id, Digest::of(&l0));
        assert_eq!(i0.chain_id, i0.diff_id);
        assert_eq!(i0.size, 1);
        assert!(ls.exists(&i0.chain_id));
        assert_eq!(fs::read(ls.dir(&i0.chain_id).join("a")).unwrap(), b"1");

        let l1 = layer(&[("b", b"22")], 0);
        let zs = zstd::stream::encode_all(&l1[..], 1).unwrap();
        let i1 = ls.apply(Some(&i0.chain_id), &mut &zs[..], None).unwrap();
        assert_eq!(i1.chain_id, chain_id(Some(&i0.chain_id), &Digest::of(&l1)));
        assert_eq!(i1.parent.as_ref(), Some(&i0.chain_id));
        assert_eq!(ls.get(&i1.chain_id).unwrap(), Some(i1.clone()));
        assert_eq!(ls.list().unwrap().len(), 2);

        // Applying again returns the existing layer and leaves no temp dir.
        let again = ls.apply(None, &mut &l0[..], None).unwrap();
        assert_eq!(again, i0);
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 4);

        ls.remove(&i1.chain_id).unwrap();
        ls.remove(&i1.chain_id).unwrap();
        assert!(!ls.exists(&i1.chain_id));
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 2);
    }

    #[test]
    fn mismatch_and_bad_archives_keep_nothing() {
        let d = tempfile::tempdir().unwrap();
        let ls = LayerStore::open(d.path()).unwrap();
        let l0 = layer(&[("a", b"1")], 0);
        let r = ls.apply(None, &mut &l0[..], Some(&Digest::of(b"x")));
        assert!(matches!(r, Err(StoreError::DigestMismatch { .. })));
        let mut evil = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..5].copy_from_slice(b"../x\0");
        h.set_size(0);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        evil.append(&h, &b""[..]).unwrap();
        let evil = evil.into_inner().unwrap();
        assert!(matches!(
            ls.apply(None, &mut &evil[..], None),
            Err(StoreError::UnsafeEntry { .. })
        ));
        let missing = Digest::of(b"nope");
        assert!(matches!(
            ls.apply(Some(&missing), &mut &l0[..], None),
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 0);
        assert!(ls.list().unwrap().is_empty());
    }

    #[test]
    fn clean_partial_removes_leftovers() {
        let d = tempfile::tempdir().unwrap();
        let ls = LayerStore::open(d.path()).unwrap();
        let i = ls
            .apply(None, &mut &layer(&[("a", b"1")], 0)[..], None)
            .unwrap();
        fs::create_dir_all(d.path().join(".tmp-abc/x")).unwrap();
        fs::create_dir(d.path().join(Digest::of(b"orphan").hex())).unwrap();
        assert_eq!(ls.clean_partial().unwrap(), 2);
        assert!(ls.exists(&i.chain_id));
    }
}
