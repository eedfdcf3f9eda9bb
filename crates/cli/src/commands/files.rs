//! `cp`, `diff`, `export`, `stats` and `update`, with docker's flags, path rules and output.

use std::fs;
use std::io::{IsTerminal, Read, Write};
use std::path::{Component, Path, PathBuf};

use clap::Args;
use futures_util::{StreamExt, TryStreamExt};
use serde_json::Value;
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::{out, s};
use crate::client::{body_stream, empty_body, encode, stream_body, Client, Query};
use crate::error::{CliError, Result};
use crate::units::human_size_prec;

#[derive(Args, Debug, Default)]
pub struct CpArgs {
    /// Archive mode (copy all uid/gid information)
    #[arg(short = 'a', long)]
    pub archive: bool,
    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long = "follow-link")]
    pub follow_link: bool,
    /// Suppress progress output during copy
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// CONTAINER:SRC_PATH or SRC_PATH|-
    pub src: String,
    /// DEST_PATH|- or CONTAINER:DEST_PATH
    pub dest: String,
}

#[derive(Args, Debug, Default)]
pub struct DiffArgs {
    pub container: String,
}

#[derive(Args, Debug, Default)]
pub struct ExportArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    pub container: String,
}

// ---- path helpers (docker's pkg/archive) ----

/// Go's `filepath.Clean` for unix paths.
fn clean(p: &str) -> String {
    let abs = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !abs {
                    parts.push("..");
                }
            }
            c => parts.push(c),
        }
    }
    let j = parts.join("/");
    match (abs, j.is_empty()) {
        (true, _) => format!("/{j}"),
        (false, true) => ".".into(),
        (false, false) => j,
    }
}

/// Go's `filepath.Base` (trailing slashes dropped; "dir/." → ".").
fn base(p: &str) -> String {
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        return if p.is_empty() { ".".into() } else { "/".into() };
    }
    t.rsplit('/').next().unwrap_or(t).to_string()
}

/// Go's `filepath.Dir`.
fn dir(p: &str) -> String {
    match p.rfind('/') {
        Some(i) => clean(&p[..=i]),
        None => ".".into(),
    }
}

fn specifies_current_dir(p: &str) -> bool {
    base(p) == "."
}

fn asserts_directory(p: &str) -> bool {
    p.ends_with('/') || specifies_current_dir(p)
}

/// docker's `SplitPathDirEntry`: ("dir", "entry"), keeping a trailing "/." as the entry ".".
fn split_dir_entry(p: &str) -> (String, String) {
    let mut c = clean(p);
    if specifies_current_dir(p) {
        c.push_str("/.");
    }
    (dir(&c), base(&c))
}

/// docker's `GetRebaseName`: carry "/." and "/" over to a resolved path; the name to rebase to.
fn rebase_name(path: &str, resolved: &str) -> (String, Option<String>) {
    let mut r = resolved.to_string();
    if specifies_current_dir(path) && !specifies_current_dir(&r) {
        r.push_str("/.");
    }
    if path.ends_with('/') && !r.ends_with('/') {
        r.push('/');
    }
    let rebase = (base(path) != base(&r)).then(|| base(path));
    (r, rebase)
}

fn join(a: &str, b: &str) -> String {
    clean(&format!("{a}/{b}"))
}

/// `CONTAINER:PATH` → (container, path); a local path has none (`./a:b` and `/a:b` are local).
fn split_cp_arg(arg: &str) -> (Option<&str>, &str) {
    if arg.starts_with('/') || arg.starts_with('.') {
        return (None, arg);
    }
    match arg.split_once(':') {
        Some((c, p)) if !c.is_empty() => (Some(c), p),
        _ => (None, arg),
    }
}

/// What a path is, docker's `CopyInfo`.
#[derive(Debug, Default, Clone)]
struct CopyInfo {
    path: String,
    exists: bool,
    is_dir: bool,
}

/// Where to extract and which top-level name the entries need (docker's `PrepareArchiveCopy`).
/// `src_base` is the name the source archive's entries start with (or its rebase name).
fn prepare_copy(src_base: &str, src_is_dir: bool, dst: &CopyInfo) -> Result<(String, String)> {
    let (dst_dir, dst_base) = split_dir_entry(&dst.path);
    if dst.exists && dst.is_dir {
        return Ok((dst.path.clone(), src_base.to_string()));
    }
    if dst.exists && src_is_dir {
        return Err(CliError::other("cannot copy directory"));
    }
    if !dst.exists && !src_is_dir && asserts_directory(&dst.path) {
        return Err(CliError::other("no such directory"));
    }
    Ok((dst_dir, dst_base))
}

/// Rename an entry whose first component is `old` to start with `new` (RebaseArchiveEntries).
fn rebase_entry(name: &str, old: &str, new: &str) -> String {
    if old == new {
        return name.to_string();
    }
    let trimmed = name.trim_start_matches("./");
    let (n, old) = if old == "." {
        (name, ".")
    } else {
        (trimmed, old)
    };
    if n == old || n.trim_end_matches('/') == old {
        return n.replacen(old, new, 1);
    }
    match n.strip_prefix(old) {
        Some(rest) if rest.starts_with('/') => format!("{new}{rest}"),
        _ => name.to_string(),
    }
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    };
    let bytes: Vec<u8> = s.bytes().filter(|&b| b != b'=').collect();
    let mut outv = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c)? << (18 - 6 * i);
        }
        outv.push((n >> 16) as u8);
        if chunk.len() > 2 {
            outv.push((n >> 8) as u8);
        }
        if chunk.len() > 3 {
            outv.push(n as u8);
        }
    }
    Some(outv)
}

const MODE_DIR: u64 = 1 << 31;
const MODE_SYMLINK: u64 = 1 << 27;

/// HEAD the archive endpoint: the engine's path stat (404 → Ok(None)).
async fn stat_path(c: &Client, id: &str, path: &str) -> Result<Option<Value>> {
    let q = Query::new().add("path", path).render();
    let resp = match c
        .request(
            hyper::Method::HEAD,
            &format!("/containers/{}/archive{q}", encode(id)),
            None,
            empty_body(),
        )
        .await
    {
        Ok(r) => r,
        Err(e) if e.is_not_found() => {
            // A missing container is an error; a missing path is not.
            c.get_json::<Value>(&format!("/containers/{}/json", encode(id)))
                .await?;
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let h = resp
        .headers()
        .get("X-Docker-Container-Path-Stat")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let raw = decode_base64(h)
        .ok_or_else(|| CliError::other("unable to decode container path stat header"))?;
    Ok(Some(serde_json::from_slice(&raw)?))
}

fn stat_mode(v: &Value) -> u64 {
    v.get("mode").and_then(Value::as_u64).unwrap_or(0)
}

pub async fn cp(c: &Client, a: CpArgs) -> Result<i32> {
    let (sc, sp) = split_cp_arg(&a.src);
    let (dc, dp) = split_cp_arg(&a.dest);
    match (sc, dc) {
        (Some(_), Some(_)) => Err(CliError::Usage(
            "copying between containers is not supported".into(),
        )),
        (None, None) => Err(CliError::Usage(
            "must specify at least one container source".into(),
        )),
        (Some(id), None) => {
            if sp.is_empty() {
                return Err(CliError::other("source can not be empty"));
            }
            if dp.is_empty() {
                return Err(CliError::other("destination can not be empty"));
            }
            copy_from(c, &a, id, sp, dp).await
        }
        (None, Some(id)) => {
            if sp.is_empty() {
                return Err(CliError::other("source can not be empty"));
            }
            if dp.is_empty() {
                return Err(CliError::other("destination can not be empty"));
            }
            copy_to(c, &a, id, sp, dp).await
        }
    }
}

/// docker's `CopyInfoDestinationPath` for a local destination.
fn local_dest_info(path: &str) -> Result<CopyInfo> {
    let mut p = path.to_string();
    let mut n = 0;
    loop {
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                n += 1;
                if n > 10 {
                    return Err(CliError::other(format!("too many symlinks in {path}")));
                }
                let t = fs::read_link(&p)?.to_string_lossy().into_owned();
                p = if t.starts_with('/') {
                    t
                } else {
                    join(&split_dir_entry(&p).0, &t)
                };
            }
            Ok(m) => {
                return Ok(CopyInfo {
                    path: p,
                    exists: true,
                    is_dir: m.is_dir(),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let parent = split_dir_entry(&p).0;
                let m = fs::metadata(&parent)
                    .map_err(|e| CliError::other(format!("lstat {parent}: {e}")))?;
                if !m.is_dir() {
                    return Err(CliError::other("not a directory"));
                }
                return Ok(CopyInfo {
                    path: p,
                    ..Default::default()
                });
            }
            Err(e) => return Err(e.into()),
        }
    }
}

async fn copy_from(c: &Client, a: &CpArgs, id: &str, src: &str, dst: &str) -> Result<i32> {
    let mut src = src.to_string();
    let mut rebase = None;
    if a.follow_link {
        if let Some(st) = stat_path(c, id, &src).await? {
            if stat_mode(&st) & MODE_SYMLINK != 0 {
                let t = s(&st, "linkTarget").to_string();
                let t = if t.starts_with('/') {
                    t
                } else {
                    join(&split_dir_entry(&src).0, &t)
                };
                let (r, n) = rebase_name(&src, &t);
                src = r;
                rebase = n;
            }
        }
    }
    let q = Query::new().add("path", src.as_str()).render();
    let resp = c
        .request(
            hyper::Method::GET,
            &format!("/containers/{}/archive{q}", encode(id)),
            None,
            empty_body(),
        )
        .await?;
    let h = resp
        .headers()
        .get("X-Docker-Container-Path-Stat")
        .and_then(|v| v.to_str().ok())
        .and_then(decode_base64)
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .unwrap_or(Value::Null);
    let src_is_dir = stat_mode(&h) & MODE_DIR != 0;
    let stream = body_stream(resp).map_err(std::io::Error::other);
    if dst == "-" {
        let mut stream = Box::pin(stream);
        let mut o = std::io::stdout().lock();
        while let Some(chunk) = stream.next().await {
            o.write_all(&chunk?)?;
        }
        o.flush()?;
        return Ok(0);
    }
    let dst_info = local_dest_info(dst)?;
    let server_base = split_dir_entry(&src).1;
    let src_base = rebase.clone().unwrap_or_else(|| server_base.clone());
    let (dst_dir, top) = prepare_copy(&src_base, src_is_dir, &dst_info)?;
    let reader = SyncIoBridge::new(StreamReader::new(stream));
    let copied = tokio::task::spawn_blocking(move || {
        extract(reader, Path::new(&dst_dir), &server_base, &top)
    })
    .await
    .map_err(|e| CliError::other(e.to_string()))??;
    if !a.quiet && std::io::stderr().is_terminal() {
        eprintln!(
            "Successfully copied {} to {dst}",
            human_size_prec(copied as f64, 4)
        );
    }
    Ok(0)
}

/// A tar entry name as a relative path; `..` or an absolute name is refused.
fn inside(name: &str) -> Result<PathBuf> {
    let p = Path::new(name);
    let mut outp = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => outp.push(n),
            Component::CurDir => {}
            _ => {
                return Err(CliError::other(format!(
                    "invalid archive entry {name:?}: outside the destination"
                )))
            }
        }
    }
    Ok(outp)
}

/// Create the missing directories above `rel` in the destination whose canonical path is
/// `root`, refusing any that resolves outside it. Returns the parent, canonical.
fn ensure_parent(root: &Path, rel: &Path) -> Result<PathBuf> {
    let escape = || {
        CliError::other(format!(
            "invalid archive entry {:?}: outside the destination",
            rel.display().to_string()
        ))
    };
    let mut cur = root.to_path_buf();
    let comps: Vec<_> = rel.components().collect();
    for c in comps.iter().take(comps.len().saturating_sub(1)) {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                cur = fs::canonicalize(&cur)?;
                if !cur.starts_with(root) {
                    return Err(escape());
                }
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir(&cur)?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let cur = fs::canonicalize(&cur)?;
    if !cur.starts_with(root) || !cur.is_dir() {
        return Err(escape());
    }
    Ok(cur)
}

/// Read buffer between the connection and the tar parser, and the most file data written at
/// once (a file up to this size is written with one `write`).
const EXTRACT_BUF: usize = 1024 * 1024;

/// Write a regular file entry to `target` (which does not exist): its data in large writes, then
/// its mode and times (what `tar::Entry::unpack` does, without 8 KiB writes).
fn write_file(
    e: &mut impl Read,
    target: &Path,
    mode: u32,
    mtime: u64,
    buf: &mut Vec<u8>,
) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(target)?;
    buf.resize(EXTRACT_BUF, 0);
    loop {
        let mut n = 0;
        while n < buf.len() {
            match e.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err.into()),
            }
        }
        if n == 0 {
            break;
        }
        f.write_all(&buf[..n])?;
        if n < buf.len() {
            break;
        }
    }
    f.set_permissions(fs::Permissions::from_mode(mode & 0o7777))?;
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime);
    f.set_times(fs::FileTimes::new().set_accessed(t).set_modified(t))?;
    Ok(())
}

/// Safely extract a tar into `dst`, renaming the top entry `old` to `new` (docker's `Untar` with
/// NoLchown and NoOverwriteDirNonDir). Returns the number of bytes of file content.
fn extract(r: impl Read, dst: &Path, old: &str, new: &str) -> Result<u64> {
    let mut ar = tar::Archive::new(std::io::BufReader::with_capacity(EXTRACT_BUF, r));
    ar.set_preserve_permissions(true);
    ar.set_preserve_mtime(true);
    ar.set_overwrite(true);
    let mut dirs: Vec<(PathBuf, u64)> = Vec::new();
    let mut total = 0u64;
    let root = fs::canonicalize(dst)?;
    // The parent of the last regular file: (its name in the archive, canonical path). Reused
    // for the next regular file in the same directory; dropped after any other kind of entry
    // and before an entry that could replace it or one of its ancestors.
    let mut last_parent: Option<(PathBuf, PathBuf)> = None;
    let mut buf = Vec::new();
    for e in ar.entries()? {
        let mut e = e?;
        let name = e.path()?.to_string_lossy().into_owned();
        let renamed = rebase_entry(&name, old, new);
        let rel = inside(&renamed)?;
        let kind = e.header().entry_type();
        let mut hard_src = None;
        if kind.is_hard_link() {
            let l = e
                .link_name()?
                .map(|l| l.to_string_lossy().into_owned())
                .unwrap_or_default();
            let l = inside(&rebase_entry(&l, old, new))?;
            let p = ensure_parent(&root, &l)?;
            hard_src = Some(p.join(l.file_name().unwrap_or_default()));
        }
        if rel.as_os_str().is_empty() {
            // The destination directory itself.
            continue;
        }
        if kind.is_symlink() {
            let l = e
                .link_name()?
                .map(|l| l.to_string_lossy().into_owned())
                .unwrap_or_default();
            let parent = rel.parent().map(|p| p.to_string_lossy().into_owned());
            let joined = clean(&format!("{}/{l}", parent.unwrap_or_default()));
            if !l.starts_with('/') && (joined == ".." || joined.starts_with("../")) {
                return Err(CliError::other(format!(
                    "invalid symlink {renamed:?} -> {l:?}: outside the destination"
                )));
            }
        }
        let is_dir = kind.is_dir();
        let regular = kind == tar::EntryType::Regular && hard_src.is_none();
        let rel_parent = rel.parent().map(Path::to_path_buf).unwrap_or_default();
        if let Some((cached, _)) = &last_parent {
            if !regular || cached.starts_with(&rel) {
                last_parent = None;
            }
        }
        let parent = match &last_parent {
            Some((cached, p)) if *cached == rel_parent => p.clone(),
            _ => ensure_parent(&root, &rel)?,
        };
        if regular {
            last_parent = Some((rel_parent, parent.clone()));
        }
        let target = parent.join(rel.file_name().unwrap_or_default());
        if let Ok(m) = fs::symlink_metadata(&target) {
            let exist_dir = m.is_dir();
            if exist_dir && !is_dir {
                return Err(CliError::other(format!(
                    "cannot overwrite directory {:?} with non-directory {:?}",
                    target.display().to_string(),
                    renamed
                )));
            }
            if !exist_dir && is_dir {
                return Err(CliError::other(format!(
                    "cannot overwrite non-directory {:?} with directory {:?}",
                    target.display().to_string(),
                    renamed
                )));
            }
            if !exist_dir {
                fs::remove_file(&target)?;
            }
        }
        e.set_unpack_xattrs(false);
        let mtime = e.header().mtime().unwrap_or(0);
        let size = e.header().size().unwrap_or(0);
        match hard_src {
            Some(src) => fs::hard_link(src, &target)?,
            None if regular => {
                let mode = e.header().mode().unwrap_or(0o644);
                write_file(&mut e, &target, mode, mtime, &mut buf)?;
            }
            None => {
                e.unpack(&target)?;
            }
        }
        if is_dir {
            dirs.push((target, mtime));
        } else if kind.is_file() {
            total += size;
        }
    }
    for (d, mtime) in dirs.into_iter().rev() {
        let t = nix::sys::time::TimeSpec::new(mtime as i64, 0);
        let _ = nix::sys::stat::utimensat(
            None,
            &d,
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        );
    }
    Ok(total)
}

/// A `Write` feeding a streaming request body.
struct ChanWriter(tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>);

impl Write for ChanWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(bytes::Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "upload ended"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// docker's `ResolveHostSourcePath` + `CopyInfoSourcePath`: (resolved path, rebase name, is dir).
fn local_source(path: &str, follow: bool) -> Result<(String, Option<String>, bool)> {
    let not_found = |e: std::io::Error| CliError::other(format!("lstat {path}: {e}"));
    let (resolved, rebase) = if follow {
        let r = fs::canonicalize(path).map_err(not_found)?;
        rebase_name(path, &r.to_string_lossy())
    } else {
        let (d, b) = match path.rfind('/') {
            Some(i) => (&path[..=i], &path[i + 1..]),
            None => ("", path),
        };
        let d = if d.is_empty() { "." } else { d };
        let rd = fs::canonicalize(d).map_err(not_found)?;
        let r = format!("{}/{b}", rd.to_string_lossy().trim_end_matches('/'));
        let rebase = (path.ends_with('/') && base(path) != base(&r)).then(|| base(path));
        (r, rebase)
    };
    let m = fs::symlink_metadata(clean(&resolved)).map_err(not_found)?;
    Ok((resolved, rebase, m.is_dir()))
}

async fn copy_to(c: &Client, a: &CpArgs, id: &str, src: &str, dst: &str) -> Result<i32> {
    let mut info = CopyInfo {
        path: dst.to_string(),
        ..Default::default()
    };
    let mut st = stat_path(c, id, dst).await?;
    if let Some(v) = &st {
        if stat_mode(v) & MODE_SYMLINK != 0 {
            let t = s(v, "linkTarget").to_string();
            let t = if t.starts_with('/') {
                t
            } else {
                join(&split_dir_entry(dst).0, &t)
            };
            info.path = t.clone();
            st = stat_path(c, id, &t).await?;
            if let Some(v) = &st {
                // Only a directory or a regular file (no device, pipe, socket, link).
                if stat_mode(v) & (1 << 26 | 1 << 25 | 1 << 24 | 1 << 21) != 0 {
                    return Err(CliError::other(format!(
                        "destination \"{id}:{dst}\" must be a directory or a regular file"
                    )));
                }
            }
        }
    }
    if let Some(v) = &st {
        info.exists = true;
        info.is_dir = stat_mode(v) & MODE_DIR != 0;
    }
    let (dst_dir, body) =
        if src == "-" {
            if !info.is_dir {
                return Err(CliError::other(format!(
                    "destination \"{id}:{dst}\" must be a directory"
                )));
            }
            let stdin = tokio_util::io::ReaderStream::with_capacity(tokio::io::stdin(), 256 * 1024);
            (info.path.clone(), stream_body(stdin))
        } else {
            let (resolved, rebase, is_dir) = local_source(src, a.follow_link)?;
            let src_base = rebase.unwrap_or_else(|| split_dir_entry(&resolved).1);
            let (dst_dir, top) = prepare_copy(&src_base, is_dir, &info)?;
            let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(16);
            let local = clean(&resolved);
            tokio::task::spawn_blocking(move || {
                let err_tx = tx.clone();
                let w = std::io::BufWriter::with_capacity(256 * 1024, ChanWriter(tx));
                let mut b = tar::Builder::new(w);
                b.follow_symlinks(false);
                let res = if is_dir {
                    b.append_dir_all(&top, &local)
                } else {
                    b.append_path_with_name(&local, &top)
                };
                let res = res.and_then(|_| b.into_inner()).and_then(|mut w| w.flush());
                if let Err(e) = res {
                    let _ = err_tx.blocking_send(Err(e));
                }
            });
            let s = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|b| (b, rx))
            });
            (dst_dir, stream_body(s))
        };
    let q = Query::new()
        .add("path", dst_dir.as_str())
        .add("noOverwriteDirNonDir", "true")
        .add_if(a.archive, "copyUIDGID", "true")
        .render();
    let resp = c
        .request(
            hyper::Method::PUT,
            &format!("/containers/{}/archive{q}", encode(id)),
            Some("application/x-tar"),
            body,
        )
        .await?;
    http_body_util::BodyExt::collect(resp.into_body()).await?;
    Ok(0)
}

pub async fn diff(c: &Client, a: DiffArgs) -> Result<i32> {
    let v: Value = c
        .get_json(&format!("/containers/{}/changes", encode(&a.container)))
        .await?;
    let mut buf = String::new();
    for ch in v.as_array().into_iter().flatten() {
        let k = match ch.get("Kind").and_then(Value::as_i64) {
            Some(0) => "C",
            Some(1) => "A",
            Some(2) => "D",
            _ => "?",
        };
        buf.push_str(&format!("{k} {}\n", s(ch, "Path")));
    }
    out(&buf)?;
    Ok(0)
}

pub async fn export(c: &Client, a: ExportArgs) -> Result<i32> {
    if a.output.is_none() && std::io::stdout().is_terminal() {
        return Err(CliError::other(
            "cowardly refusing to save to a terminal. Use the -o flag or redirect",
        ));
    }
    let resp = c
        .request(
            hyper::Method::GET,
            &format!("/containers/{}/export", encode(&a.container)),
            None,
            empty_body(),
        )
        .await?;
    let mut stream = body_stream(resp);
    match &a.output {
        Some(p) => {
            // Write next to the target and rename, so a failed export leaves no partial file.
            let tmp = format!("{p}.berth-tmp-{}", std::process::id());
            let res = async {
                let mut f = fs::File::create(&tmp)
                    .map_err(|e| CliError::other(format!("failed to export container: {e}")))?;
                while let Some(chunk) = stream.next().await {
                    f.write_all(&chunk?)?;
                }
                f.sync_all()?;
                fs::rename(&tmp, p)?;
                Ok::<(), CliError>(())
            }
            .await;
            if res.is_err() {
                let _ = fs::remove_file(&tmp);
            }
            res?;
        }
        None => {
            let mut o = std::io::stdout().lock();
            while let Some(chunk) = stream.next().await {
                o.write_all(&chunk?)?;
            }
            o.flush()?;
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_path_helpers() {
        assert_eq!(clean("/a/./b/../c/"), "/a/c");
        assert_eq!(clean("a/.."), ".");
        assert_eq!(base("/a/b/"), "b");
        assert_eq!(base("/a/."), ".");
        assert_eq!(split_dir_entry("/a/b/."), ("/a/b".into(), ".".into()));
        assert_eq!(split_dir_entry("/a/b/"), ("/a".into(), "b".into()));
        assert!(asserts_directory("/x/") && asserts_directory("/x/.") && !asserts_directory("/x"));
        assert_eq!(split_cp_arg("c1:/tmp"), (Some("c1"), "/tmp"));
        assert_eq!(split_cp_arg("./a:b"), (None, "./a:b"));
        assert_eq!(decode_base64("eyJhIjoxfQ==").unwrap(), b"{\"a\":1}");
    }

    #[test]
    fn rebase_and_prepare() {
        assert_eq!(rebase_entry("src/a.txt", "src", "new"), "new/a.txt");
        assert_eq!(rebase_entry("src", "src", "new"), "new");
        assert_eq!(rebase_entry("./a.txt", ".", "new"), "new/a.txt");
        assert_eq!(rebase_entry("srcx/a", "src", "new"), "srcx/a");
        let dir = CopyInfo {
            path: "/d".into(),
            exists: true,
            is_dir: true,
        };
        assert_eq!(
            prepare_copy("a", false, &dir).unwrap(),
            ("/d".into(), "a".into())
        );
        let file = CopyInfo {
            path: "/d/f".into(),
            exists: true,
            is_dir: false,
        };
        assert!(prepare_copy("a", true, &file).is_err());
        let missing = CopyInfo {
            path: "/d/n/".into(),
            ..Default::default()
        };
        assert!(prepare_copy("a", false, &missing).is_err());
        assert_eq!(
            prepare_copy("a", true, &missing).unwrap(),
            ("/d".into(), "n".into())
        );
    }

    /// A tar of (name, kind, link target or file data) entries.
    fn tar_of(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, v) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(if kind.is_dir() { 0o755 } else { 0o640 });
            h.set_mtime(1_600_000_000);
            if kind.is_symlink() {
                h.set_size(0);
                b.append_link(&mut h, name, v).unwrap();
            } else {
                h.set_size(if kind.is_file() { v.len() as u64 } else { 0 });
                b.append_data(&mut h, name, v.as_bytes()).unwrap();
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn extract_keeps_files_inside_with_the_parent_cache() {
        use tar::EntryType as T;
        let tmp = tempfile::tempdir().unwrap();
        let dst = tmp.path().join("dst");
        fs::create_dir(&dst).unwrap();
        // Files of one directory (cached parent), a symlink to that directory inside, a file
        // through it, then a symlink out of the destination and a file through that.
        let ok = tar_of(&[
            ("t/", T::Directory, ""),
            ("t/d/", T::Directory, ""),
            ("t/d/f1", T::Regular, "one"),
            ("t/d/f2", T::Regular, "two"),
            ("t/l", T::Symlink, "d"),
            ("t/l/f3", T::Regular, "three"),
        ]);
        assert_eq!(extract(&ok[..], &dst, "t", "n").unwrap(), 11);
        assert_eq!(fs::read_to_string(dst.join("n/d/f1")).unwrap(), "one");
        assert_eq!(fs::read_to_string(dst.join("n/d/f3")).unwrap(), "three");
        use std::os::unix::fs::PermissionsExt;
        let m = fs::metadata(dst.join("n/d/f2")).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o640);
        assert_eq!(
            m.modified().unwrap(),
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000)
        );
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        let bad = tar_of(&[
            ("t/", T::Directory, ""),
            ("t/a", T::Regular, "a"),
            ("t/e", T::Symlink, outside.to_str().unwrap()),
            ("t/e/f", T::Regular, "escaped"),
        ]);
        assert!(extract(&bad[..], &dst, "t", "m").is_err());
        assert!(!outside.join("f").exists());
    }
}
