//! The content store: immutable blobs under `<root>/sha256/<hex>`.
//! Blobs are written to a temp file, verified, fsynced and renamed into place, so a blob that exists
//! is always complete and matches its digest.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::atomic;
use crate::digest::DigestWriter;
use crate::{Digest, IoContext, Result, StoreError};

#[derive(Debug, Clone)]
pub struct ContentStore {
    root: PathBuf,
}

impl ContentStore {
    /// Open (creating if needed) a content store rooted at `root` (e.g. `<data-root>/content`).
    pub fn open(root: &Path) -> Result<ContentStore> {
        let blobs = root.join("sha256");
        fs::create_dir_all(&blobs).ctx(|| format!("create {blobs:?}"))?;
        Ok(ContentStore {
            root: root.to_path_buf(),
        })
    }

    fn blob_dir(&self) -> PathBuf {
        self.root.join("sha256")
    }

    /// Store `data`, returning its digest. Idempotent.
    pub fn put(&self, data: &[u8]) -> Result<Digest> {
        let d = Digest::of(data);
        if self.exists(&d) {
            return Ok(d);
        }
        self.ingest(&mut &data[..], Some(&d)).map(|(d, _)| d)
    }

    /// Stream `r` into the store. If `expected` is given and the content does not match it,
    /// nothing is stored and `DigestMismatch` is returned. Returns the digest and size.
    pub fn ingest(&self, r: &mut dyn Read, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        let dir = self.blob_dir();
        let tmp = dir.join(format!("{}{}", atomic::TEMP_PREFIX, atomic::random_hex(8)));
        let res = self.ingest_to(r, expected, &tmp);
        // Whatever happened, the temp file must not stay (after success it was renamed away).
        let _ = fs::remove_file(&tmp);
        res
    }

    fn ingest_to(
        &self,
        r: &mut dyn Read,
        expected: Option<&Digest>,
        tmp: &Path,
    ) -> Result<(Digest, u64)> {
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_CLOEXEC)
            .open(tmp)
            .ctx(|| format!("create {tmp:?}"))?;
        let mut w = DigestWriter::new(f);
        io::copy(r, &mut w).ctx(|| format!("write {tmp:?}"))?;
        let (f, d, n) = w.finish();
        if let Some(exp) = expected {
            if *exp != d {
                return Err(StoreError::DigestMismatch {
                    expected: exp.to_string(),
                    actual: d.to_string(),
                });
            }
        }
        let fin = self.path(&d);
        if fin.exists() {
            return Ok((d, n));
        }
        f.sync_all().ctx(|| format!("fsync {tmp:?}"))?;
        drop(f);
        fs::rename(tmp, &fin).ctx(|| format!("rename {tmp:?} to {fin:?}"))?;
        atomic::sync_dir(&self.blob_dir())?;
        Ok((d, n))
    }

    pub fn exists(&self, d: &Digest) -> bool {
        self.path(d).exists()
    }

    /// Path of a blob (it may not exist).
    pub fn path(&self, d: &Digest) -> PathBuf {
        self.root.join("sha256").join(d.hex())
    }

    pub fn open_blob(&self, d: &Digest) -> Result<File> {
        let p = self.path(d);
        File::open(&p).map_err(|e| not_found_or(e, d, &p))
    }

    pub fn read(&self, d: &Digest) -> Result<Vec<u8>> {
        let p = self.path(d);
        fs::read(&p).map_err(|e| not_found_or(e, d, &p))
    }

    pub fn size(&self, d: &Digest) -> Result<u64> {
        let p = self.path(d);
        fs::metadata(&p)
            .map(|m| m.len())
            .map_err(|e| not_found_or(e, d, &p))
    }

    /// Remove a blob; removing a missing blob is not an error.
    pub fn delete(&self, d: &Digest) -> Result<()> {
        let p = self.path(d);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).ctx(|| format!("remove {p:?}")),
        }
    }

    /// Every blob digest present.
    pub fn list(&self) -> Result<Vec<Digest>> {
        let dir = self.blob_dir();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).ctx(|| format!("read dir {dir:?}")),
        };
        let mut out = Vec::new();
        for ent in rd {
            let ent = ent.ctx(|| format!("read dir {dir:?}"))?;
            if let Some(name) = ent.file_name().to_str() {
                if let Ok(d) = Digest::from_hex(name) {
                    out.push(d);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Remove leftovers of interrupted writes. Returns how many were removed.
    pub fn clean_partial(&self) -> Result<usize> {
        Ok(atomic::clean_temp(&self.blob_dir())? + atomic::clean_temp(&self.root.join("tmp"))?)
    }
}

fn not_found_or(e: io::Error, d: &Digest, p: &Path) -> StoreError {
    if e.kind() == io::ErrorKind::NotFound {
        StoreError::NotFound(d.to_string())
    } else {
        StoreError::Io {
            context: format!("open {p:?}"),
            source: e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_read_list_delete() {
        let d = tempfile::tempdir().unwrap();
        let cs = ContentStore::open(&d.path().join("content")).unwrap();
        let dg = cs.put(b"hello").unwrap();
        assert_eq!(dg, Digest::of(b"hello"));
        assert_eq!(cs.put(b"hello").unwrap(), dg);
        assert!(cs.exists(&dg));
        assert_eq!(cs.read(&dg).unwrap(), b"hello");
        assert_eq!(cs.size(&dg).unwrap(), 5);
        let mut s = String::new();
        cs.open_blob(&dg).unwrap().read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello");
        assert_eq!(cs.list().unwrap(), vec![dg.clone()]);
        cs.delete(&dg).unwrap();
        cs.delete(&dg).unwrap();
        assert!(matches!(cs.read(&dg), Err(StoreError::NotFound(_))));
        assert!(cs.list().unwrap().is_empty());
    }

    #[test]
    fn ingest_verifies_and_leaves_nothing_on_mismatch() {
        let d = tempfile::tempdir().unwrap();
        let cs = ContentStore::open(d.path()).unwrap();
        let wrong = Digest::of(b"other");
        let r = cs.ingest(&mut &b"data"[..], Some(&wrong));
        assert!(matches!(r, Err(StoreError::DigestMismatch { .. })));
        assert_eq!(fs::read_dir(d.path().join("sha256")).unwrap().count(), 0);
        let (dg, n) = cs
            .ingest(&mut &b"data"[..], Some(&Digest::of(b"data")))
            .unwrap();
        assert_eq!((dg, n), (Digest::of(b"data"), 4));
        let (dg2, _) = cs.ingest(&mut &b"more"[..], None).unwrap();
        assert_eq!(dg2, Digest::of(b"more"));
        assert_eq!(fs::read_dir(d.path().join("sha256")).unwrap().count(), 2);
    }

    #[test]
    fn clean_partial_removes_temps() {
        let d = tempfile::tempdir().unwrap();
        let cs = ContentStore::open(d.path()).unwrap();
        cs.put(b"x").unwrap();
        fs::write(d.path().join("sha256/.tmp-abc"), b"partial").unwrap();
        assert_eq!(cs.clean_partial().unwrap(), 1);
        assert_eq!(cs.list().unwrap().len(), 1);
    }
}
