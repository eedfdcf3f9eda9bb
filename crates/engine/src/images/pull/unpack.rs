//! The unpacking side of a pull: every missing layer is unpacked on its own thread into a temp dir
//! of the layer store while its blob is still arriving (reading its spool), so layers decompress,
//! hash and unpack in parallel. Only when every layer's blob digest and diff id checked out are
//! they published, in order (a layer's chain id needs its parent in the store): a failed pull
//! publishes nothing.

use std::io::{self, BufReader, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use berth_store::digest::DigestReader;
use berth_store::layers::LayerInfo;
use berth_store::{compress, unpack, Digest};

use super::spool::{Spool, SpoolReader};
use super::{layer_status, progress, ProgressTx, PROGRESS_EVERY};
use crate::images::ImageService;
use crate::{EngineError, Result};

/// One layer to unpack: its parent chain id (None for a base layer), chain id, expected diff id,
/// short id (progress) and compressed size.
pub(super) struct Item {
    pub parent: Option<Digest>,
    pub chain: Digest,
    pub diff_id: Digest,
    pub short: String,
    pub total: u64,
}

/// A counting semaphore (permits taken in order by one coordinator).
struct Permits {
    free: Mutex<usize>,
    cv: Condvar,
}

impl Permits {
    fn acquire(&self) {
        let mut f = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *f == 0 {
            f = self.cv.wait(f).unwrap_or_else(|e| e.into_inner());
        }
        *f -= 1;
    }
    fn release(&self) {
        *self.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.cv.notify_one();
    }
}

/// Removes a temp layer dir unless it was published.
struct TempDir(Option<PathBuf>);

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

/// Unpack every item (in parallel, at most `parallel` at once), then publish them in order. On
/// the first failure every spool is failed (the other readers stop) and nothing is published.
pub(super) fn unpack_all(
    images: &ImageService,
    items: &[Item],
    spools: &[Arc<Spool>],
    tx: &ProgressTx,
    parallel: usize,
) -> Result<()> {
    let permits = Permits {
        free: Mutex::new(parallel.max(1)),
        cv: Condvar::new(),
    };
    let failed = AtomicBool::new(false);
    let first_err: Mutex<Option<EngineError>> = Mutex::new(None);
    let done: Mutex<Vec<Option<(TempDir, LayerInfo)>>> =
        Mutex::new(items.iter().map(|_| None).collect());
    let fail = |e: EngineError| {
        failed.store(true, Ordering::SeqCst);
        for s in spools {
            s.finish(Err(format!("pull aborted: {e}")));
        }
        let mut fe = first_err.lock().unwrap_or_else(|p| p.into_inner());
        if fe.is_none() {
            *fe = Some(e);
        }
    };
    std::thread::scope(|scope| {
        for (i, (item, spool)) in items.iter().zip(spools).enumerate() {
            permits.acquire();
            if failed.load(Ordering::SeqCst) {
                permits.release();
                break;
            }
            let (permits, fail, done) = (&permits, &fail, &done);
            scope.spawn(move || {
                match unpack_one(images, item, spool, tx) {
                    Ok(r) => done.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(r),
                    Err(e) => fail(e),
                }
                permits.release();
            });
        }
    });
    if let Some(e) = first_err.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    for (item, r) in items
        .iter()
        .zip(done.into_inner().unwrap_or_else(|p| p.into_inner()))
    {
        let Some((mut guard, info)) = r else {
            return Err(EngineError::Internal(format!(
                "layer {} was not unpacked",
                item.short
            )));
        };
        let Some(tmp) = guard.0.take() else {
            return Err(EngineError::Internal("temp layer dir gone".into()));
        };
        images.layers.publish(&tmp, info)?;
        layer_status(tx, &item.short, "Pull complete");
    }
    Ok(())
}

/// Unpack one layer into a temp dir; returns it (removed on drop) with the layer's info once the
/// blob and the diff id are verified.
fn unpack_one(
    images: &ImageService,
    item: &Item,
    spool: &Spool,
    tx: &ProgressTx,
) -> Result<(TempDir, LayerInfo)> {
    let short = item.short.as_str();
    let tmp = images.layers.temp_dir()?;
    let guard = TempDir(Some(tmp.clone()));
    let mut reader = ProgressReader {
        inner: spool.reader()?,
        tx,
        short,
        total: item.total,
        last: Instant::now(),
    };
    let (diff_id, size) = {
        let plain = compress::decompressed(BufReader::with_capacity(1 << 16, &mut reader))?;
        let mut hashed = DigestReader::new(plain);
        let stats = unpack::unpack_layer(&mut hashed, &tmp)?;
        // tar stops at its end-of-archive blocks; the diff id covers every byte.
        io::copy(&mut hashed, &mut io::sink())
            .map_err(|e| EngineError::InvalidArgument(format!("layer {short}: {e}")))?;
        let (_, d, _) = hashed.finish();
        (d, stats.size)
    };
    // The blob's last read is its verification: read to its end whatever the decoder left.
    io::copy(&mut reader, &mut io::sink())
        .map_err(|e| EngineError::InvalidArgument(format!("layer {short}: {e}")))?;
    if !spool.is_verified() {
        return Err(EngineError::InvalidArgument(format!(
            "layer {short}: blob not verified"
        )));
    }
    if diff_id != item.diff_id {
        return Err(EngineError::InvalidArgument(format!(
            "layer {short}: diff id mismatch: the config says {}, the layer is {diff_id}",
            item.diff_id
        )));
    }
    let info = LayerInfo {
        chain_id: item.chain.clone(),
        diff_id,
        parent: item.parent.clone(),
        size,
    };
    Ok((guard, info))
}

struct ProgressReader<'a> {
    inner: SpoolReader<'a>,
    tx: &'a ProgressTx,
    short: &'a str,
    total: u64,
    last: Instant,
}

impl Read for ProgressReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if self.last.elapsed() >= PROGRESS_EVERY {
            self.last = Instant::now();
            progress(
                self.tx,
                self.short,
                "Extracting",
                self.inner.position(),
                self.total,
            );
        }
        Ok(n)
    }
}
