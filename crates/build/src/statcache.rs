//! A persistent stat cache: (path, size, mtime, ctime, inode, device) → content sha256, so that
//! a rebuild with unchanged files re-hashes nothing.
//!
//! One file per context directory (named after a hash of its path) in a directory the engine
//! chooses. The format is a small binary table ending in a sha256 of everything before it; a
//! torn or foreign file is ignored (everything is re-hashed), never trusted.
//! Entries whose ctime/mtime is too close to the moment the file was hashed are not kept
//! ("racily clean", as git does): a write in the same timestamp tick could go unnoticed.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

const MAGIC: &[u8; 8] = b"BSTATC01";
/// Entries changed less than this before hashing are not persisted.
const RACY_WINDOW_NS: i128 = 100_000_000;

/// The stat fields that must all be unchanged for a cached digest to be reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatKey {
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
    pub ino: u64,
    pub dev: u64,
}

#[derive(Debug, Clone, Copy)]
struct CacheEntry {
    key: StatKey,
    digest: [u8; 32],
    /// When the content was hashed (ns since the epoch), for the racy-clean rule.
    hashed_at_ns: i128,
}

/// The cache. Shared by the stages of a build (`&self` methods, internal lock).
#[derive(Debug)]
pub struct StatCache {
    file: Option<PathBuf>,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<String, CacheEntry>,
    dirty: bool,
    /// How many digests were computed (cache misses) since load.
    misses: u64,
}

fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

impl StatCache {
    /// A cache that lives only in memory.
    pub fn in_memory() -> StatCache {
        StatCache {
            file: None,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The cache of context directory `root`, stored in `cache_dir` (loaded if present and
    /// intact, else empty).
    pub fn for_context(cache_dir: &Path, root: &Path) -> StatCache {
        let name = hex::encode(&Sha256::digest(root.as_os_str().as_encoded_bytes())[..16]);
        StatCache::load(&cache_dir.join(format!("{name}.statcache")))
    }

    /// Load from `file` (missing, torn or foreign → empty).
    pub fn load(file: &Path) -> StatCache {
        let map = std::fs::read(file)
            .ok()
            .and_then(|b| decode(&b))
            .unwrap_or_default();
        StatCache {
            file: Some(file.to_path_buf()),
            inner: Mutex::new(Inner {
                map,
                dirty: false,
                misses: 0,
            }),
        }
    }

    /// The cached digest of `path` if its stat key is unchanged.
    pub fn get(&self, path: &str, key: &StatKey) -> Option<[u8; 32]> {
        let inner = self.inner.lock().ok()?;
        inner
            .map
            .get(path)
            .filter(|e| e.key == *key)
            .map(|e| e.digest)
    }

    /// Record a freshly computed digest. `hashed_at_ns`: when hashing started.
    pub fn put(&self, path: &str, key: StatKey, digest: [u8; 32], hashed_at_ns: i128) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.map.insert(
                path.to_string(),
                CacheEntry {
                    key,
                    digest,
                    hashed_at_ns,
                },
            );
            inner.dirty = true;
            inner.misses += 1;
        }
    }

    /// How many files were hashed (not found in the cache) since the cache was loaded.
    pub fn misses(&self) -> u64 {
        self.inner.lock().map(|i| i.misses).unwrap_or(0)
    }

    /// Forget paths not in `keep` (files deleted from the context).
    pub fn retain(&self, keep: &dyn Fn(&str) -> bool) {
        if let Ok(mut inner) = self.inner.lock() {
            let before = inner.map.len();
            inner.map.retain(|k, _| keep(k));
            if inner.map.len() != before {
                inner.dirty = true;
            }
        }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().map(|i| i.map.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Write the cache back if it changed: temp file in the same directory, then rename (a
    /// crash leaves the old file or the new one; a torn one is detected by its checksum).
    pub fn save(&self) -> std::io::Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let bytes = {
            let Ok(mut inner) = self.inner.lock() else {
                return Ok(());
            };
            if !inner.dirty {
                return Ok(());
            }
            inner.dirty = false;
            encode(&inner.map)
        };
        let dir = file.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            file.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("statcache")
        ));
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_data()?;
        }
        std::fs::rename(&tmp, file)
    }
}

/// The time a racy-clean check compares against.
pub(crate) fn hashing_started() -> i128 {
    now_ns()
}

fn encode(map: &HashMap<String, CacheEntry>) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + map.len() * 120);
    out.extend_from_slice(MAGIC);
    let kept: Vec<(&String, &CacheEntry)> = map
        .iter()
        .filter(|(_, e)| {
            let newest = e.key.mtime_ns.max(e.key.ctime_ns);
            newest < e.hashed_at_ns - RACY_WINDOW_NS
        })
        .collect();
    out.extend_from_slice(&(kept.len() as u64).to_le_bytes());
    for (path, e) in kept {
        out.extend_from_slice(&(path.len() as u32).to_le_bytes());
        out.extend_from_slice(path.as_bytes());
        out.extend_from_slice(&e.key.size.to_le_bytes());
        out.extend_from_slice(&e.key.mtime_ns.to_le_bytes());
        out.extend_from_slice(&e.key.ctime_ns.to_le_bytes());
        out.extend_from_slice(&e.key.ino.to_le_bytes());
        out.extend_from_slice(&e.key.dev.to_le_bytes());
        out.extend_from_slice(&e.digest);
        out.extend_from_slice(&e.hashed_at_ns.to_le_bytes());
    }
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out
}

struct Reader<'a> {
    b: &'a [u8],
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.b.len() < n {
            return None;
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Some(h)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn i128(&mut self) -> Option<i128> {
        Some(i128::from_le_bytes(self.take(16)?.try_into().ok()?))
    }
}

fn decode(bytes: &[u8]) -> Option<HashMap<String, CacheEntry>> {
    if bytes.len() < MAGIC.len() + 8 + 32 {
        return None;
    }
    let (body, sum) = bytes.split_at(bytes.len() - 32);
    if Sha256::digest(body).as_slice() != sum {
        return None;
    }
    let mut r = Reader { b: body };
    if r.take(8)? != MAGIC {
        return None;
    }
    let n = r.u64()? as usize;
    let mut map = HashMap::with_capacity(n.min(1 << 20));
    for _ in 0..n {
        let len = r.u32()? as usize;
        let path = std::str::from_utf8(r.take(len)?).ok()?.to_string();
        let key = StatKey {
            size: r.u64()?,
            mtime_ns: r.i128()?,
            ctime_ns: r.i128()?,
            ino: r.u64()?,
            dev: r.u64()?,
        };
        let digest: [u8; 32] = r.take(32)?.try_into().ok()?;
        let hashed_at_ns = r.i128()?;
        map.insert(
            path,
            CacheEntry {
                key,
                digest,
                hashed_at_ns,
            },
        );
    }
    Some(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> StatKey {
        StatKey {
            size: i,
            mtime_ns: 1_000,
            ctime_ns: 2_000,
            ino: i,
            dev: 1,
        }
    }

    #[test]
    fn round_trip_and_racy_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("c.statcache");
        let c = StatCache::load(&f);
        assert!(c.is_empty());
        c.put("a", key(1), [1; 32], 10_000_000_000);
        // Changed right before hashing: not persisted.
        c.put(
            "racy",
            StatKey {
                mtime_ns: 9_950_000_000,
                ..key(2)
            },
            [2; 32],
            10_000_000_000,
        );
        c.save().expect("save");
        let d = StatCache::load(&f);
        assert_eq!(d.get("a", &key(1)), Some([1; 32]));
        assert_eq!(d.get("a", &key(9)), None);
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn torn_or_foreign_files_are_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("c.statcache");
        let c = StatCache::load(&f);
        c.put("a", key(1), [1; 32], 10_000_000_000);
        c.save().expect("save");
        let mut bytes = std::fs::read(&f).expect("read");
        bytes.truncate(bytes.len() - 5);
        std::fs::write(&f, &bytes).expect("write");
        assert!(StatCache::load(&f).is_empty());
        std::fs::write(&f, b"garbage").expect("write");
        assert!(StatCache::load(&f).is_empty());
    }
}
