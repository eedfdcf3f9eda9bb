//! Crash-safe writes: temp file in the same directory + fsync + rename + fsync of the directory.
//! Temp names start with `.tmp-` so that [`clean_temp`] can remove what a crash left behind.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{IoContext, Result};

/// Prefix of every temporary file or directory the store creates.
pub const TEMP_PREFIX: &str = ".tmp-";

/// Write `data` to `path` atomically: readers see the old content or the new, never a mix.
pub fn write_file(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = temp_path_for(path);
    let res = (|| -> Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_CLOEXEC)
            .open(&tmp)
            .ctx(|| format!("create {tmp:?}"))?;
        f.write_all(data).ctx(|| format!("write {tmp:?}"))?;
        f.sync_all().ctx(|| format!("fsync {tmp:?}"))?;
        drop(f);
        fs::rename(&tmp, path).ctx(|| format!("rename {tmp:?} to {path:?}"))?;
        Ok(())
    })();
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(parent_of(path))
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A fresh, uniquely named temporary path next to `final_path` (same directory, so rename is atomic).
pub fn temp_path_for(final_path: &Path) -> PathBuf {
    parent_of(final_path).join(format!("{TEMP_PREFIX}{}", random_hex(8)))
}

/// fsync a directory so that a rename inside it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let f = File::open(dir).ctx(|| format!("open dir {dir:?}"))?;
    f.sync_all().ctx(|| format!("fsync dir {dir:?}"))
}

/// Publish a fully written temporary directory as `final_dir` by rename.
/// If `final_dir` already exists (someone else published the same content), the temp dir is removed
/// and `Ok(false)` is returned.
pub fn publish_dir(tmp_dir: &Path, final_dir: &Path) -> Result<bool> {
    // RENAME_NOREPLACE: a plain rename would silently replace an existing empty directory.
    match nix::fcntl::renameat2(
        None,
        tmp_dir,
        None,
        final_dir,
        nix::fcntl::RenameFlags::RENAME_NOREPLACE,
    ) {
        Ok(()) => {
            sync_dir(parent_of(final_dir))?;
            Ok(true)
        }
        Err(nix::errno::Errno::EEXIST) | Err(nix::errno::Errno::ENOTEMPTY) => {
            fs::remove_dir_all(tmp_dir).ctx(|| format!("remove {tmp_dir:?}"))?;
            Ok(false)
        }
        Err(e) => Err(crate::StoreError::Io {
            context: format!("rename {tmp_dir:?} to {final_dir:?}"),
            source: io::Error::from(e),
        }),
    }
}

/// Remove every `.tmp-*` entry directly inside `dir` (leftovers of interrupted operations).
/// Returns how many were removed.
pub fn clean_temp(dir: &Path) -> Result<usize> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).ctx(|| format!("read dir {dir:?}")),
    };
    let mut n = 0;
    for ent in rd {
        let ent = ent.ctx(|| format!("read dir {dir:?}"))?;
        if !ent.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            continue;
        }
        let p = ent.path();
        let ft = ent.file_type().ctx(|| format!("stat {p:?}"))?;
        let r = if ft.is_dir() {
            fs::remove_dir_all(&p)
        } else {
            fs::remove_file(&p)
        };
        match r {
            Ok(()) => n += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).ctx(|| format!("remove {p:?}")),
        }
    }
    Ok(n)
}

/// A random hex string of `n` bytes (2n chars), from the OS RNG.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    if getrandom::fill(&mut buf).is_err() {
        // The OS RNG is practically never unavailable; still never panic: fall back to a
        // time/pid/counter mix, which is unique enough for temp names.
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let mut x =
            nanos ^ (u64::from(std::process::id()) << 32) ^ COUNTER.fetch_add(1, Ordering::Relaxed);
        for b in buf.iter_mut() {
            // xorshift64
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
    }
    hex::encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_file_replaces_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        write_file(&p, b"one").unwrap();
        write_file(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn temp_names_are_unique_and_prefixed() {
        let a = temp_path_for(Path::new("/x/y"));
        let b = temp_path_for(Path::new("/x/y"));
        assert_ne!(a, b);
        assert_eq!(a.parent(), Some(Path::new("/x")));
        assert!(a
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(TEMP_PREFIX));
        assert_eq!(random_hex(4).len(), 8);
    }

    #[test]
    fn publish_dir_race() {
        let d = tempfile::tempdir().unwrap();
        let fin = d.path().join("final");
        let t1 = d.path().join(".tmp-1");
        fs::create_dir(&t1).unwrap();
        fs::write(t1.join("a"), b"1").unwrap();
        assert!(publish_dir(&t1, &fin).unwrap());
        assert!(!t1.exists());
        // A second publisher loses, its temp dir goes away and the first content stays.
        let t2 = d.path().join(".tmp-2");
        fs::create_dir(&t2).unwrap();
        fs::write(t2.join("a"), b"2").unwrap();
        assert!(!publish_dir(&t2, &fin).unwrap());
        assert!(!t2.exists());
        assert_eq!(fs::read(fin.join("a")).unwrap(), b"1");
        // Even an existing empty dir is not replaced.
        let empty = d.path().join("empty");
        fs::create_dir(&empty).unwrap();
        let t3 = d.path().join(".tmp-3");
        fs::create_dir(&t3).unwrap();
        fs::write(t3.join("a"), b"3").unwrap();
        assert!(!publish_dir(&t3, &empty).unwrap());
        assert!(!empty.join("a").exists());
    }

    #[test]
    fn clean_temp_removes_only_temp() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join(".tmp-a"), b"").unwrap();
        fs::create_dir_all(d.path().join(".tmp-b/c")).unwrap();
        fs::write(d.path().join("keep"), b"").unwrap();
        assert_eq!(clean_temp(d.path()).unwrap(), 2);
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
        assert_eq!(clean_temp(&d.path().join("missing")).unwrap(), 0);
    }
}
