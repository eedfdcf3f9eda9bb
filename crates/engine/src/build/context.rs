//! The build context: a tar body unpacked (through the store's safe unpacker: no entry escapes)
//! into `<data-root>/tmp/build-ctx-<rand>/`, removed when the build ends; or a directory read in
//! place (`berth build`). Sources of COPY/ADD are cleaned lexically (a path climbing out of the
//! context is refused) and opened inside the context root (openat2 RESOLVE_IN_ROOT: a symlink in
//! the context cannot lead out of it).

use std::fs;
use std::io::{self, BufReader, Read};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use berth_store::unpack::{self, UnpackOptions};

use super::ContextSource;
use crate::{EngineError, Result};

/// How much of a refused upload is read and discarded (so the client sees the error).
const DRAIN_LIMIT: u64 = 256 << 20;

pub struct Context {
    root: PathBuf,
    /// The unpacked copy, removed on drop.
    tmp: Option<PathBuf>,
    /// The context as walked by berth-build (`.dockerignore` applied): sources are resolved,
    /// hashed and read through it.
    walked: berth_build::context::Context,
    /// File digests by stat (persistent for a directory read in place).
    cache: berth_build::statcache::StatCache,
}

impl Drop for Context {
    fn drop(&mut self) {
        if let Some(t) = self.tmp.take() {
            if let Err(e) = fs::remove_dir_all(&t) {
                tracing::warn!("removing build context {t:?}: {e}");
            }
        }
    }
}

/// Clean a source path of COPY/ADD relative to a context root: `/` and `.` dropped, `..`
/// resolved; a path that would climb out is refused with Docker's "forbidden path" error.
pub fn clean_source(orig: &str) -> Result<String> {
    let mut out: Vec<&str> = Vec::new();
    for c in orig.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if out.pop().is_none() {
                    return Err(EngineError::InvalidArgument(format!(
                        "forbidden path outside the build context: {orig} ()"
                    )));
                }
            }
            c => out.push(c),
        }
    }
    Ok(out.join("/"))
}

/// Whether a source has glob characters.
pub fn has_wildcards(p: &str) -> bool {
    let mut esc = false;
    for c in p.chars() {
        if esc {
            esc = false;
            continue;
        }
        match c {
            '\\' => esc = true,
            '*' | '?' | '[' => return true,
            _ => {}
        }
    }
    false
}

impl Context {
    /// Take in the context. A tar is read to its end (and drained on error). `cache_dir` keeps
    /// the stat caches of directories read in place.
    pub fn open(src: ContextSource, tmp_dir: &Path, cache_dir: &Path) -> Result<Context> {
        let (root, tmp) = match src {
            ContextSource::Dir(d) => {
                if !d.is_absolute() {
                    return Err(EngineError::InvalidArgument(format!(
                        "berth-context must be an absolute path: {}",
                        d.display()
                    )));
                }
                let md = fs::metadata(&d).map_err(|e| {
                    EngineError::InvalidArgument(format!(
                        "unable to prepare context: {}: {e}",
                        d.display()
                    ))
                })?;
                if !md.is_dir() {
                    return Err(EngineError::InvalidArgument(format!(
                        "unable to prepare context: path {:?} is not a directory",
                        d.display().to_string()
                    )));
                }
                (d, None)
            }
            ContextSource::Tar(mut r) => {
                fs::create_dir_all(tmp_dir)?;
                let dir = tmp_dir.join(format!("build-ctx-{}", berth_store::atomic::random_hex(8)));
                fs::create_dir(&dir)?;
                if let Err(e) = unpack_context(&mut r, &dir) {
                    let _ = io::copy(&mut (&mut r).take(DRAIN_LIMIT), &mut io::sink());
                    let _ = fs::remove_dir_all(&dir);
                    return Err(e);
                }
                (dir.clone(), Some(dir))
            }
        };
        let walked = match berth_build::context::Context::open(&root) {
            Ok(w) => w,
            Err(e) => {
                if let Some(t) = &tmp {
                    let _ = fs::remove_dir_all(t);
                }
                return Err(EngineError::InvalidArgument(format!(
                    "unable to prepare context: {e}"
                )));
            }
        };
        let cache = match &tmp {
            None => {
                let _ = fs::create_dir_all(cache_dir);
                berth_build::statcache::StatCache::for_context(cache_dir, walked.root())
            }
            Some(_) => berth_build::statcache::StatCache::in_memory(),
        };
        Ok(Context {
            root,
            tmp,
            walked,
            cache,
        })
    }

    pub fn walked(&self) -> &berth_build::context::Context {
        &self.walked
    }

    pub fn stat_cache(&self) -> &berth_build::statcache::StatCache {
        &self.cache
    }

    /// Keep what the stat cache learnt (entries of files gone dropped).
    pub fn save_cache(&self) {
        if self.tmp.is_some() {
            return;
        }
        self.walked.prune_cache(&self.cache);
        if let Err(e) = self.cache.save() {
            tracing::warn!("saving the build context's stat cache: {e}");
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A file of the context (resolved inside it), None if missing.
    pub fn read_file(&self, rel: &str) -> Result<Option<Vec<u8>>> {
        Ok(berth_store::safepath::read_in_root(
            &self.root,
            Path::new(rel),
        )?)
    }

    /// The Dockerfile named by the `dockerfile` parameter (default `Dockerfile`, then
    /// `dockerfile`), with Docker's error when it is missing.
    pub fn dockerfile(&self, name: &str) -> Result<String> {
        let name = if name.is_empty() { "Dockerfile" } else { name };
        let rel = clean_source(name).map_err(|_| {
            EngineError::InvalidArgument(format!("Cannot locate specified Dockerfile: {name}"))
        })?;
        let mut found = self.read_file(&rel)?;
        if found.is_none() && name == "Dockerfile" {
            found = self.read_file("dockerfile")?;
        }
        match found {
            Some(b) => String::from_utf8(b).map_err(|_| {
                EngineError::InvalidArgument(format!("Dockerfile {name} is not valid UTF-8"))
            }),
            None => Err(EngineError::InvalidArgument(format!(
                "Cannot locate specified Dockerfile: {name}"
            ))),
        }
    }
}

fn unpack_context(r: &mut dyn Read, dir: &Path) -> Result<()> {
    // docker's CLI may cut the tar after the last entry (-f outside/stdin): complete it.
    let plain = berth_build::tarpad::CompleteTarTail::new(berth_store::compress::decompressed(
        BufReader::with_capacity(1 << 16, r),
    )?);
    let mut plain = plain;
    let f = fs::File::open(dir)?;
    let opts = UnpackOptions {
        reset_owner: true,
        refuse_whiteouts: true,
        no_overwrite_dir_non_dir: false,
        xattrs: false,
    };
    unpack::unpack_into(&mut plain, f.as_fd(), opts).map_err(|e| {
        EngineError::InvalidArgument(format!("unable to read the build context: {e}"))
    })?;
    // The rest of the stream (tar padding).
    io::copy(&mut plain, &mut io::sink())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleaning_sources() {
        assert_eq!(clean_source("/a/./b/").unwrap(), "a/b");
        assert_eq!(clean_source("a/../b").unwrap(), "b");
        assert_eq!(clean_source(".").unwrap(), "");
        assert!(clean_source("../x").is_err());
        assert!(clean_source("a/../../x").is_err());
        assert!(has_wildcards("*.txt"));
        assert!(!has_wildcards("a\\*b"));
    }

    #[test]
    fn hostile_context_tar_stays_inside() {
        let base = tempfile::tempdir().unwrap();
        let sentinel = base.path().join("sentinel");
        fs::create_dir(&sentinel).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..7].copy_from_slice(b"../evil");
        h.set_size(1);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        let data = b.into_inner().unwrap();
        let tmp = base.path().join("tmp");
        let r = Context::open(
            ContextSource::Tar(Box::new(io::Cursor::new(data))),
            &tmp,
            base.path(),
        );
        assert!(r.is_err());
        assert!(!base.path().join("evil").exists());
        assert!(!tmp.join("evil").exists());
    }

    #[test]
    fn tar_context_dockerfile_and_cleanup() {
        let base = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        for (p, d) in [
            ("Dockerfile", &b"FROM scratch\n"[..]),
            (".dockerignore", b"**/*.tmp\n"),
            ("sub/x.tmp", b"1"),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(d.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, p, d).unwrap();
        }
        let data = b.into_inner().unwrap();
        let tmp = base.path().join("tmp");
        let ctx = Context::open(
            ContextSource::Tar(Box::new(io::Cursor::new(data))),
            &tmp,
            base.path(),
        )
        .unwrap();
        assert_eq!(ctx.dockerfile("").unwrap(), "FROM scratch\n");
        assert!(ctx.dockerfile("nope").is_err());
        assert!(ctx.walked().entry("sub/x.tmp").is_none());
        assert!(ctx.walked().entry("Dockerfile").is_some());
        let root = ctx.root().to_path_buf();
        assert!(root.starts_with(&tmp));
        drop(ctx);
        assert!(!root.exists());
    }
}
