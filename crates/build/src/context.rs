//! A build context read straight from a directory: the walk (with `.dockerignore` applied),
//! COPY/ADD source resolution (globs, `..` refused, symlinks never followed out of the
//! context) and content digests of source sets (contents, modes, link targets and names — not
//! mtimes, not owners), with a [`StatCache`] so that unchanged files are not re-hashed.
//!
//! File contents are always opened relative to the context's directory fd with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`: a path swapped for a symlink after the walk
//! fails instead of reading outside.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::ignore::{clean_path, glob_match, has_glob, Ignore};
use crate::statcache::{hashing_started, StatCache, StatKey};

/// Errors of context access. The executor prefixes them ("COPY failed: ...").
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("forbidden path outside the build context: {0} ()")]
    Forbidden(String),
    #[error("file not found in build context or excluded by .dockerignore: stat {0}: file does not exist")]
    NotFound(String),
    #[error("no source files were specified")]
    NoSourceFiles,
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{0}: changed while the build was reading it")]
    Changed(String),
}

fn io_err(path: &str, source: io::Error) -> ContextError {
    ContextError::Io {
        path: path.to_string(),
        source,
    }
}

/// What a context entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File,
    /// A symbolic link and its target as stored (never followed by the walk).
    Symlink(String),
    /// FIFO, socket or device node.
    Other,
}

/// One entry of the context (lstat of it).
#[derive(Debug, Clone)]
pub struct Entry {
    /// Relative to the context root, `/`-separated; `""` is the root itself.
    pub path: String,
    pub kind: EntryKind,
    /// Full `st_mode` (type and permission bits).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
    pub ino: u64,
    pub dev: u64,
}

impl Entry {
    fn stat_key(&self) -> StatKey {
        StatKey {
            size: self.size,
            mtime_ns: self.mtime_ns,
            ctime_ns: self.ctime_ns,
            ino: self.ino,
            dev: self.dev,
        }
    }
}

/// A resolved COPY/ADD source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// The entry in the context (symlinks in parents, and a followed final link, resolved).
    pub path: String,
    /// The name it is copied under when the destination is a directory: the last component
    /// of the source as written (of the matched path for globs).
    pub name: String,
}

/// A walked context directory.
#[derive(Debug)]
pub struct Context {
    root: PathBuf,
    root_fd: OwnedFd,
    entries: Vec<Entry>,
    index: HashMap<String, usize>,
    subtree_end: Vec<usize>,
}

impl Context {
    /// Walk `root`, applying its `.dockerignore` if there is one.
    pub fn open(root: &Path) -> Result<Context, ContextError> {
        let ignore = match std::fs::read_to_string(root.join(".dockerignore")) {
            Ok(text) => Ignore::parse(&text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ignore::default(),
            Err(e) => return Err(io_err(".dockerignore", e)),
        };
        Context::open_with(root, &ignore)
    }

    /// Walk `root` with the given ignore rules.
    pub fn open_with(root: &Path, ignore: &Ignore) -> Result<Context, ContextError> {
        let root = root
            .canonicalize()
            .map_err(|e| io_err(&root.display().to_string(), e))?;
        let root_fd = open_dir_fd(&root).map_err(|e| io_err(&root.display().to_string(), e))?;
        let meta = std::fs::symlink_metadata(&root).map_err(|e| io_err("", e))?;
        let mut ctx = Context {
            root,
            root_fd,
            entries: Vec::new(),
            index: HashMap::new(),
            subtree_end: Vec::new(),
        };
        ctx.push(String::new(), &meta, EntryKind::Dir);
        ctx.walk_dir(0, ignore)?;
        Ok(ctx)
    }

    fn push(&mut self, path: String, meta: &std::fs::Metadata, kind: EntryKind) -> usize {
        let i = self.entries.len();
        self.index.insert(path.clone(), i);
        self.entries.push(Entry {
            path,
            kind,
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
            size: meta.size(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            ctime_ns: meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128,
            ino: meta.ino(),
            dev: meta.dev(),
        });
        self.subtree_end.push(i + 1);
        i
    }

    /// Add the children of entry `dir_idx` (pre-order, names sorted), then set its subtree end.
    fn walk_dir(&mut self, dir_idx: usize, ignore: &Ignore) -> Result<(), ContextError> {
        let dir_rel = self.entries[dir_idx].path.clone();
        self.walk_path(&dir_rel, ignore)?;
        self.subtree_end[dir_idx] = self.entries.len();
        Ok(())
    }

    fn walk_path(&mut self, dir_rel: &str, ignore: &Ignore) -> Result<(), ContextError> {
        let abs = if dir_rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(dir_rel)
        };
        let rd = std::fs::read_dir(&abs).map_err(|e| io_err(dir_rel, e))?;
        let mut names: Vec<String> = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| io_err(dir_rel, e))?;
            match ent.file_name().into_string() {
                Ok(n) => names.push(n),
                Err(n) => {
                    return Err(io_err(
                        &format!("{dir_rel}/{}", n.to_string_lossy()),
                        io::Error::new(io::ErrorKind::InvalidData, "file name is not UTF-8"),
                    ))
                }
            }
        }
        names.sort_unstable();
        for name in names {
            let rel = if dir_rel.is_empty() {
                name.clone()
            } else {
                format!("{dir_rel}/{name}")
            };
            let meta = match std::fs::symlink_metadata(abs.join(&name)) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&rel, e)),
            };
            let ft = meta.file_type();
            let excluded = !ignore.is_empty() && ignore.matches(&rel);
            if excluded {
                if ft.is_dir() && ignore.must_descend(&rel) {
                    // Exceptions below it may be included: the directory is kept (as the
                    // parent that extracting Docker's context tar would create) only if
                    // something below it is.
                    let i = self.push(rel, &meta, EntryKind::Dir);
                    self.walk_dir(i, ignore)?;
                    if self.entries.len() == i + 1 {
                        let e = self.entries.pop();
                        self.subtree_end.pop();
                        if let Some(e) = e {
                            self.index.remove(&e.path);
                        }
                    }
                }
                continue;
            }
            if ft.is_dir() {
                let i = self.push(rel, &meta, EntryKind::Dir);
                self.walk_dir(i, ignore)?;
            } else if ft.is_symlink() {
                let target = std::fs::read_link(abs.join(&name)).map_err(|e| io_err(&rel, e))?;
                let target = target.to_string_lossy().into_owned();
                self.push(rel, &meta, EntryKind::Symlink(target));
            } else if ft.is_file() {
                self.push(rel, &meta, EntryKind::File);
            } else {
                self.push(rel, &meta, EntryKind::Other);
            }
        }
        Ok(())
    }

    /// The context directory (canonical).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every included entry, pre-order (a directory before its contents, names sorted);
    /// `entries()[0]` is the root.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn entry(&self, path: &str) -> Option<&Entry> {
        self.index.get(path).map(|&i| &self.entries[i])
    }

    /// `path` and everything below it (just the entry for a file), pre-order.
    pub fn subtree(&self, path: &str) -> &[Entry] {
        match self.index.get(path) {
            Some(&i) => &self.entries[i..self.subtree_end[i]],
            None => &[],
        }
    }

    /// Resolve one source word (already expanded) of COPY/ADD.
    pub fn resolve(&self, source: &str) -> Result<Vec<Match>, ContextError> {
        let stripped = source.trim_start_matches('/');
        let cleaned = clean_path(if stripped.is_empty() { "." } else { stripped });
        if cleaned == ".." || cleaned.starts_with("../") {
            return Err(ContextError::Forbidden(source.to_string()));
        }
        if has_glob(&cleaned) {
            let depth = cleaned.split('/').count();
            let mut out = Vec::new();
            for e in &self.entries[1..] {
                if e.path.split('/').count() == depth && glob_match(&cleaned, &e.path) {
                    out.push(Match {
                        path: e.path.clone(),
                        name: last_component(&e.path),
                    });
                }
            }
            if out.is_empty() {
                return Err(ContextError::NoSourceFiles);
            }
            return Ok(out);
        }
        let path = if cleaned == "." {
            String::new()
        } else {
            cleaned
        };
        let resolved = self
            .resolve_path(&path, true)?
            .ok_or_else(|| ContextError::NotFound(source.to_string()))?;
        Ok(vec![Match {
            name: last_component(&path),
            path: resolved,
        }])
    }

    /// Resolve every source; an error names the first bad one.
    pub fn resolve_all(&self, sources: &[String]) -> Result<Vec<Match>, ContextError> {
        let mut out = Vec::new();
        for s in sources {
            out.extend(self.resolve(s)?);
        }
        Ok(out)
    }

    /// Follow symlinks met in `path` inside the context. A link in a parent that leads out
    /// (absolute target, or `..` past the root) is refused; a final link that leads out (or
    /// nowhere) is not followed: the link itself is the source. `None`: not in the context.
    fn resolve_path(&self, path: &str, follow_final: bool) -> Result<Option<String>, ContextError> {
        let mut todo: Vec<String> = path
            .split('/')
            .filter(|p| !p.is_empty())
            .rev()
            .map(str::to_string)
            .collect();
        let mut cur: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(part) = todo.pop() {
            match part.as_str() {
                "." => continue,
                ".." => {
                    if cur.pop().is_none() {
                        return Err(ContextError::Forbidden(path.to_string()));
                    }
                    continue;
                }
                _ => {}
            }
            cur.push(part);
            let joined = cur.join("/");
            let Some(e) = self.entry(&joined) else {
                return Ok(None);
            };
            let EntryKind::Symlink(target) = &e.kind else {
                continue;
            };
            let is_final = todo.is_empty();
            if is_final && !follow_final {
                continue;
            }
            hops += 1;
            let leads_out = target.starts_with('/') || hops > 40 || {
                let base = cur[..cur.len() - 1].join("/");
                let t = clean_path(&if base.is_empty() {
                    target.clone()
                } else {
                    format!("{base}/{target}")
                });
                t == ".." || t.starts_with("../")
            };
            if leads_out {
                if is_final {
                    return Ok(Some(joined));
                }
                return Err(ContextError::Forbidden(path.to_string()));
            }
            if is_final {
                // Follow only if the target is in the context; else copy the link itself.
                let base = cur[..cur.len() - 1].join("/");
                let t = if base.is_empty() {
                    target.clone()
                } else {
                    format!("{base}/{target}")
                };
                return match self.resolve_path(&t, true) {
                    Ok(Some(p)) => Ok(Some(p)),
                    _ => Ok(Some(joined)),
                };
            }
            cur.pop();
            for p in target.split('/').filter(|p| !p.is_empty()).rev() {
                todo.push(p.to_string());
            }
        }
        Ok(Some(cur.join("/")))
    }

    /// Open a regular file of the context for reading: beneath the root, no symlink anywhere
    /// in the path. Does not consult `.dockerignore` (used for the Dockerfile too).
    pub fn open_file(&self, path: &str) -> Result<File, ContextError> {
        let fd = openat2_beneath(self.root_fd.as_raw_fd(), path).map_err(|e| {
            if e.raw_os_error() == Some(libc::ENOENT) {
                ContextError::NotFound(path.to_string())
            } else if e.raw_os_error() == Some(libc::ELOOP) || e.raw_os_error() == Some(libc::EXDEV)
            {
                ContextError::Forbidden(path.to_string())
            } else {
                io_err(path, e)
            }
        })?;
        let f = File::from(fd);
        let meta = f.metadata().map_err(|e| io_err(path, e))?;
        if !meta.is_file() {
            return Err(io_err(
                path,
                io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"),
            ));
        }
        Ok(f)
    }

    /// Read a whole file of the context (e.g. the Dockerfile), see [`Context::open_file`].
    pub fn read_file(&self, path: &str) -> Result<Vec<u8>, ContextError> {
        let mut f = self.open_file(path)?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).map_err(|e| io_err(path, e))?;
        Ok(buf)
    }

    /// The sha256 of a file's content, from the cache when its stat is unchanged.
    fn file_digest(&self, e: &Entry, cache: &StatCache) -> Result<[u8; 32], ContextError> {
        if let Some(d) = cache.get(&e.path, &e.stat_key()) {
            return Ok(d);
        }
        let started = hashing_started();
        let mut f = self.open_file(&e.path)?;
        let meta = f.metadata().map_err(|err| io_err(&e.path, err))?;
        if meta.ino() != e.ino || meta.dev() != e.dev {
            return Err(ContextError::Changed(e.path.clone()));
        }
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = f.read(&mut buf).map_err(|err| io_err(&e.path, err))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        let d: [u8; 32] = h.finalize().into();
        cache.put(&e.path, e.stat_key(), d, started);
        Ok(d)
    }

    /// Digest (`sha256:<hex>`) of what copying `matches` would produce: for every entry below
    /// each match, its name (relative to the match, under the match's name), type and
    /// permission bits, and content digest or link target. `excludes` (COPY `--exclude`) are
    /// applied to paths relative to each match. Not mtimes, and not the context's owners: COPY
    /// and ADD create files as 0:0 (or `--chown`) whatever the source's owner, and the docker
    /// CLI's tar says 0:0 anyway, so a context read in place and the same context sent as a
    /// tar give the same digest.
    pub fn digest(
        &self,
        matches: &[Match],
        excludes: &Ignore,
        cache: &StatCache,
    ) -> Result<String, ContextError> {
        let mut groups: Vec<Vec<(String, &Entry)>> = Vec::with_capacity(matches.len());
        for m in matches {
            let mut g = Vec::new();
            for e in self.subtree(&m.path) {
                let rel = if e.path.len() > m.path.len() {
                    let cut = if m.path.is_empty() {
                        0
                    } else {
                        m.path.len() + 1
                    };
                    e.path[cut..].to_string()
                } else {
                    String::new()
                };
                if !rel.is_empty() && !excludes.is_empty() && excludes.matches(&rel) {
                    continue;
                }
                g.push((rel, e));
            }
            groups.push(g);
        }
        self.prefetch(groups.iter().flatten().map(|(_, e)| *e), cache)?;
        let mut h = Sha256::new();
        for (m, g) in matches.iter().zip(&groups) {
            h.update(b"M\0");
            h.update(m.name.as_bytes());
            h.update(b"\0");
            for (rel, e) in g {
                h.update(rel.as_bytes());
                h.update(b"\0");
                h.update(format!("{:o}\0", e.mode).as_bytes());
                match &e.kind {
                    EntryKind::File => h.update(self.file_digest(e, cache)?),
                    EntryKind::Symlink(t) => {
                        h.update(b"L");
                        h.update(t.as_bytes());
                    }
                    EntryKind::Dir => h.update(b"D"),
                    EntryKind::Other => h.update(b"O"),
                }
                h.update(b"\n");
            }
        }
        Ok(format!("sha256:{}", hex::encode(h.finalize())))
    }

    /// Hash the files the cache does not know, several at a time.
    fn prefetch<'a>(
        &self,
        entries: impl Iterator<Item = &'a Entry>,
        cache: &StatCache,
    ) -> Result<(), ContextError> {
        let todo: Vec<&Entry> = entries
            .filter(|e| e.kind == EntryKind::File && cache.get(&e.path, &e.stat_key()).is_none())
            .collect();
        let bytes: u64 = todo.iter().map(|e| e.size).sum();
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(4);
        if todo.len() < 8 || bytes < (4 << 20) || threads < 2 {
            for e in todo {
                self.file_digest(e, cache)?;
            }
            return Ok(());
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| -> Result<(), ContextError> {
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(e) = todo.get(i) else {
                                return Ok(());
                            };
                            self.file_digest(e, cache)?;
                        }
                    })
                })
                .collect();
            for h in handles {
                match h.join() {
                    Ok(r) => r?,
                    Err(_) => return Err(io_err("", io::Error::other("hashing thread panicked"))),
                }
            }
            Ok(())
        })
    }

    /// Drop cache entries of files that are no longer in the context.
    pub fn prune_cache(&self, cache: &StatCache) {
        cache.retain(&|p| self.index.contains_key(p));
    }
}

fn last_component(path: &str) -> String {
    path.rsplit('/').next().unwrap_or(path).to_string()
}

fn open_dir_fd(root: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(root.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: valid C string; the fd returned is owned below.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fd nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_NO_SYMLINKS: u64 = 0x04;
const RESOLVE_BENEATH: u64 = 0x08;

/// Open `rel` for reading beneath `dir`, refusing symlinks and `..` escapes; non-blocking so
/// that a FIFO swapped in cannot hang the build.
fn openat2_beneath(dir: RawFd, rel: &str) -> io::Result<OwnedFd> {
    let rel = if rel.is_empty() { "." } else { rel };
    let c = CString::new(rel).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let how = OpenHow {
        flags: (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK) as u64,
        mode: 0,
        resolve: RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    let mut last = io::Error::from_raw_os_error(libc::EAGAIN);
    for _ in 0..16 {
        // SAFETY: valid fd, C string and open_how of the size passed.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir,
                c.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if fd >= 0 {
            // SAFETY: a new fd from the kernel.
            let owned = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
            // Back to blocking reads for regular files.
            // SAFETY: fcntl on an fd we own.
            unsafe {
                let fl = libc::fcntl(owned.as_raw_fd(), libc::F_GETFL);
                if fl >= 0 {
                    libc::fcntl(owned.as_raw_fd(), libc::F_SETFL, fl & !libc::O_NONBLOCK);
                }
            }
            return Ok(owned);
        }
        last = io::Error::last_os_error();
        if last.raw_os_error() != Some(libc::EAGAIN) {
            break;
        }
    }
    Err(last)
}

#[cfg(test)]
#[path = "context_tests.rs"]
mod tests;
