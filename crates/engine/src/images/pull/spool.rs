//! A layer blob on its way from the network into the layer store. The downloader appends to a temp
//! file in the content store's blob dir and publishes how far it got; the unpacker reads the same
//! file behind it (waiting when it catches up), so unpacking starts with the first bytes and a
//! layer whose parent is still unpacking keeps downloading at full speed. The reader's last read
//! is an error unless the downloader finished *and* the digest matched: the layer store only
//! publishes a layer after reading its stream to the end, so an unverified layer is never kept.
//! When the whole pull succeeded, the temp file becomes the blob (`commit`); otherwise Drop
//! removes it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use berth_store::{atomic, Digest};

#[derive(Default)]
struct State {
    written: u64,
    /// None while downloading; Some(Err) on failure or abort.
    done: Option<Result<(), String>>,
}

pub struct Spool {
    path: PathBuf,
    state: Mutex<State>,
    cv: Condvar,
    committed: AtomicBool,
}

impl Spool {
    /// Create the temp file in `dir`; returns the spool and the file to write to.
    pub fn create(dir: &Path) -> io::Result<(Spool, File)> {
        let path = dir.join(format!(
            "{}pull-{}",
            atomic::TEMP_PREFIX,
            atomic::random_hex(8)
        ));
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)?;
        Ok((
            Spool {
                path,
                state: Mutex::new(State::default()),
                cv: Condvar::new(),
                committed: AtomicBool::new(false),
            },
            f,
        ))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `n` more bytes are in the file.
    pub fn advance(&self, n: u64) {
        self.lock().written += n;
        self.cv.notify_all();
    }

    /// The download ended (Ok: complete and verified). The first outcome wins.
    pub fn finish(&self, r: Result<(), String>) {
        let mut st = self.lock();
        if st.done.is_none() {
            st.done = Some(r);
        }
        drop(st);
        self.cv.notify_all();
    }

    pub fn is_verified(&self) -> bool {
        matches!(self.lock().done, Some(Ok(())))
    }

    /// A reader following the download.
    pub fn reader(&self) -> io::Result<SpoolReader<'_>> {
        Ok(SpoolReader {
            spool: self,
            file: File::open(&self.path)?,
            pos: 0,
        })
    }

    /// fsync the complete file (called by the downloader once verified, so that the flush
    /// overlaps with unpacking).
    pub fn sync(&self) -> io::Result<()> {
        File::open(&self.path)?.sync_all()
    }

    /// Move the verified file into the content store as `digest` (at `final_path`).
    pub fn commit(&self, final_path: &Path) -> io::Result<()> {
        if !self.is_verified() {
            return Err(io::Error::other("blob not verified"));
        }
        if final_path.exists() {
            // Another pull stored the same blob first: ours goes with Drop.
            return Ok(());
        }
        fs::rename(&self.path, final_path)?;
        self.committed.store(true, Ordering::SeqCst);
        Ok(())
    }
}

impl Spool {
    /// Remove the temp file now (a failed pull), whoever still holds the spool.
    pub fn discard(&self) {
        if !self.committed.load(Ordering::SeqCst) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        if !self.committed.load(Ordering::SeqCst) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

pub struct SpoolReader<'a> {
    spool: &'a Spool,
    file: File,
    pos: u64,
}

impl SpoolReader<'_> {
    /// Bytes handed out so far.
    pub fn position(&self) -> u64 {
        self.pos
    }
}

impl Read for SpoolReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut st = self.spool.lock();
        loop {
            if st.written > self.pos {
                let avail = (st.written - self.pos).min(buf.len() as u64) as usize;
                drop(st);
                let n = self.file.read(&mut buf[..avail])?;
                if n == 0 {
                    return Err(io::Error::other("spool file shorter than announced"));
                }
                self.pos += n as u64;
                return Ok(n);
            }
            match &st.done {
                Some(Ok(())) => return Ok(0),
                Some(Err(e)) => return Err(io::Error::other(e.clone())),
                None => {
                    st = self
                        .spool
                        .cv
                        .wait_timeout(st, Duration::from_secs(1))
                        .map(|(g, _)| g)
                        .unwrap_or_else(|e| e.into_inner().0);
                }
            }
        }
    }
}

/// A writer into a spool's file that announces each write.
pub struct SpoolWriter<'a> {
    pub spool: &'a Spool,
    pub file: File,
}

impl SpoolWriter<'_> {
    pub fn append(&mut self, data: &[u8]) -> io::Result<()> {
        self.file.write_all(data)?;
        self.spool.advance(data.len() as u64);
        Ok(())
    }
}

/// The final path of a blob in the content store dir.
pub fn blob_path(dir: &Path, d: &Digest) -> PathBuf {
    dir.join(d.hex())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn reader_follows_and_fails_on_error() {
        let d = tempfile::tempdir().unwrap();
        let (s, f) = Spool::create(d.path()).unwrap();
        let s = Arc::new(s);
        let s2 = s.clone();
        let t = std::thread::spawn(move || {
            let mut w = SpoolWriter {
                spool: &s2,
                file: f,
            };
            for i in 0..10u8 {
                w.append(&[i; 1000]).unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
            s2.finish(Ok(()));
        });
        let mut out = Vec::new();
        s.reader().unwrap().read_to_end(&mut out).unwrap();
        t.join().unwrap();
        assert_eq!(out.len(), 10_000);
        assert_eq!(out[9999], 9);

        let (s, f) = Spool::create(d.path()).unwrap();
        let mut w = SpoolWriter { spool: &s, file: f };
        w.append(b"abc").unwrap();
        s.finish(Err("digest mismatch".into()));
        let mut out = Vec::new();
        let e = s.reader().unwrap().read_to_end(&mut out).unwrap_err();
        assert!(e.to_string().contains("digest mismatch"));
        let p = s.path.clone();
        drop(w);
        drop(s);
        assert!(!p.exists(), "an uncommitted spool is removed");
    }
}
