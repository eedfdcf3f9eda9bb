//! The sources of COPY/ADD: entries of the build context (resolved and hashed by berth-build's
//! context walker, with its stat cache), paths inside a mounted stage or image root
//! (`--from`), and bytes (heredocs, URLs); and the content hash of a step's sources (Docker's
//! `file:`/`dir:`/`multi:` forms in history). Hashes cover names, types, permission bits, owners
//! and contents or link targets; never mtimes.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};

use berth_build::context::{ContextError, EntryKind, Match};
use berth_build::ignore::Ignore;
use sha2::{Digest as _, Sha256};

use super::context::Context;
use super::fsutil::{fstat, ioe, kind, list_dir, lstat_at, readlink_at, sys_openat};
use crate::{EngineError, Result};

/// One thing to copy.
#[derive(Debug, Clone)]
pub enum Item {
    /// An entry of the build context (as walked) and the name it is copied under.
    Ctx { path: String, name: String },
    /// A path (cleaned, relative, "" = the root) inside a mounted root filesystem.
    Path { root: PathBuf, rel: String },
    /// Bytes to write as a file (COPY heredocs, ADD of a URL).
    Data {
        name: String,
        data: Vec<u8>,
        mode: u32,
        mtime: i64,
    },
}

/// Docker's wording for a context error of COPY/ADD.
pub fn context_error(keyword: &str, e: ContextError) -> EngineError {
    match e {
        ContextError::Io { .. } | ContextError::Changed(_) => {
            EngineError::Internal(format!("{keyword} failed: {e}"))
        }
        e => EngineError::InvalidArgument(format!("{keyword} failed: {e}")),
    }
}

/// Resolve a (variable-expanded) source word in the build context.
pub fn resolve_context(ctx: &Context, src: &str, keyword: &str) -> Result<Vec<Item>> {
    let matches = ctx
        .walked()
        .resolve(src)
        .map_err(|e| context_error(keyword, e))?;
    Ok(matches
        .into_iter()
        .map(|m| Item::Ctx {
            path: m.path,
            name: m.name,
        })
        .collect())
}

/// Expand a source of `COPY --from` to the paths it names in `root` (a mounted stage or image):
/// globs matched against every path (Go's path.Match, a matching directory is taken whole), a
/// plain path must exist.
pub fn expand_source(root: &Path, src: &str, keyword: &str) -> Result<Vec<String>> {
    let rel = super::context::clean_source(src)?;
    if super::context::has_wildcards(&rel) {
        let mut out = Vec::new();
        let rootf = open_in(root, "")?;
        glob_walk(rootf.as_raw_fd(), "", &rel, &mut out)?;
        if out.is_empty() {
            return Err(EngineError::InvalidArgument(format!(
                "{keyword} failed: no source files were specified"
            )));
        }
        return Ok(out);
    }
    match open_in(root, &rel) {
        Ok(_) => Ok(vec![rel]),
        Err(_) => Err(EngineError::InvalidArgument(format!(
            "{keyword} failed: file not found in build context or excluded by .dockerignore: stat {src}: file does not exist"
        ))),
    }
}

fn glob_walk(dir: RawFd, prefix: &str, pattern: &str, out: &mut Vec<String>) -> Result<()> {
    for name in list_dir(dir).map_err(|e| ioe("read source dir", e))? {
        let n = String::from_utf8_lossy(name.to_bytes()).to_string();
        let rel = if prefix.is_empty() {
            n
        } else {
            format!("{prefix}/{n}")
        };
        if crate::images::glob_match(pattern, &rel) {
            out.push(rel);
            continue;
        }
        let st = lstat_at(dir, &name).map_err(|e| ioe(&rel, e))?;
        // Only descend where the pattern can still match (as many components left).
        if kind(&st) == libc::S_IFDIR && pattern.matches('/').count() > rel.matches('/').count() {
            let sub = sys_openat(
                dir,
                &name,
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                0,
            )
            .map_err(|e| ioe(&rel, e))?;
            glob_walk(sub.as_raw_fd(), &rel, pattern, out)?;
        }
    }
    Ok(())
}

/// Open `rel` inside `root` (symlinks resolved inside it).
pub fn open_in(root: &Path, rel: &str) -> Result<File> {
    let p = if rel.is_empty() {
        "/".to_string()
    } else {
        format!("/{rel}")
    };
    Ok(berth_store::safepath::open_in_root(root, Path::new(&p))?)
}

fn hash_entry(h: &mut Sha256, rel: &[u8], st: &libc::stat, extra: &[u8]) {
    h.update(rel);
    h.update([0]);
    let size = if kind(st) == libc::S_IFREG {
        st.st_size
    } else {
        0
    };
    h.update(format!("{:o} {} {} {size}", st.st_mode, st.st_uid, st.st_gid).as_bytes());
    h.update([0]);
    h.update(extra);
    h.update([0]);
}

fn file_digest(f: &File) -> Result<[u8; 32]> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut r = f;
    loop {
        let n = r.read(&mut buf).map_err(|e| ioe("read source", e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}

fn hash_dir(h: &mut Sha256, dir: RawFd, below: &[u8]) -> Result<()> {
    for name in list_dir(dir).map_err(|e| ioe("read source dir", e))? {
        let mut rel = below.to_vec();
        rel.push(b'/');
        rel.extend_from_slice(name.to_bytes());
        let shown = String::from_utf8_lossy(&rel).to_string();
        let st = lstat_at(dir, &name).map_err(|e| ioe(&shown, e))?;
        match kind(&st) {
            libc::S_IFDIR => {
                hash_entry(h, &rel, &st, b"");
                let sub = sys_openat(
                    dir,
                    &name,
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                    0,
                )
                .map_err(|e| ioe(&shown, e))?;
                hash_dir(h, sub.as_raw_fd(), &rel)?;
            }
            libc::S_IFREG => {
                let f = File::from(
                    sys_openat(dir, &name, libc::O_RDONLY | libc::O_NOFOLLOW, 0)
                        .map_err(|e| ioe(&shown, e))?,
                );
                hash_entry(h, &rel, &st, &file_digest(&f)?);
            }
            libc::S_IFLNK => {
                let t = readlink_at(dir, &name).map_err(|e| ioe(&shown, e))?;
                hash_entry(h, &rel, &st, &t);
            }
            _ => hash_entry(h, &rel, &st, b""),
        }
    }
    Ok(())
}

/// The content hash of the sources of one COPY/ADD, as Docker writes it in history:
/// `file:<hex>` (one file), `dir:<hex>` (one directory) or `multi:<hex>`.
pub fn hash_items(items: &[Item], ctx: Option<&Context>, excludes: &Ignore) -> Result<String> {
    let mut outer = Sha256::new();
    let mut is_dir = false;
    let ctx_matches: Vec<Match> = items
        .iter()
        .filter_map(|it| match it {
            Item::Ctx { path, name } => Some(Match {
                path: path.clone(),
                name: name.clone(),
            }),
            _ => None,
        })
        .collect();
    if !ctx_matches.is_empty() {
        let c =
            ctx.ok_or_else(|| EngineError::Internal("context sources without a context".into()))?;
        let d = c
            .walked()
            .digest(&ctx_matches, excludes, c.stat_cache())
            .map_err(|e| context_error("COPY", e))?;
        outer.update(d.as_bytes());
        if let [m] = &ctx_matches[..] {
            is_dir = c
                .walked()
                .entry(&m.path)
                .is_some_and(|e| e.kind == EntryKind::Dir);
        }
    }
    for it in items {
        let mut h = Sha256::new();
        match it {
            Item::Ctx { .. } => continue,
            Item::Data {
                name, data, mode, ..
            } => {
                h.update(name.as_bytes());
                h.update(format!("{mode:o}").as_bytes());
                h.update(Sha256::digest(data));
            }
            Item::Path { root, rel } => {
                let f = open_in(root, rel)?;
                let st = fstat(f.as_raw_fd()).map_err(|e| ioe(rel, e))?;
                if kind(&st) == libc::S_IFDIR {
                    is_dir = true;
                    hash_dir(&mut h, f.as_raw_fd(), b"")?;
                } else {
                    hash_entry(&mut h, b"", &st, &file_digest(&f)?);
                }
            }
        }
        outer.update(h.finalize());
    }
    let hexd = hex::encode(outer.finalize());
    Ok(match (items.len(), is_dir) {
        (1, true) => format!("dir:{hexd}"),
        (1, false) => format!("file:{hexd}"),
        _ => format!("multi:{hexd}"),
    })
}
