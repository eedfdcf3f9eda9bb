//! Blob uploads: monolithic POST ?digest=, sessions (POST → 202, PATCH chunks with Content-Range
//! checks, GET status, PUT ?digest= to finish, DELETE), and cross-repository mounts.
//!
//! A session's bytes go to `uploads/<id>/data`, hashed as they arrive (the hasher lives in memory;
//! after a restart it is rebuilt from the file on first use). Finishing checks the digest, fsyncs
//! the file and renames it into `blobs/`; a mismatch deletes the session and publishes nothing.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use berth_store::Digest;
use futures_util::StreamExt;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::error::{Code, RegError, RegResult};
use super::names::{parse_digest, valid_upload_id, validate_name};
use super::storage::blocking;
use super::{empty, Registry};

/// Write buffer between the request body and the upload file.
const WRITE_BUF: usize = 1024 * 1024;

pub struct Session {
    repo: String,
    /// Hash of the bytes received so far; `None` until rebuilt after a restart.
    hasher: Option<Sha256>,
    size: u64,
    /// Finished or cancelled: a request that waited for the lock must not touch it.
    closed: bool,
}

fn location(name: &str, id: &str) -> String {
    format!("/v2/{name}/blobs/uploads/{id}")
}

fn range_value(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

fn progress(status: StatusCode, name: &str, id: &str, size: u64) -> Response {
    empty(
        status,
        &[
            ("location", location(name, id)),
            ("range", range_value(size)),
            ("docker-upload-uuid", id.to_string()),
            ("content-length", "0".into()),
        ],
    )
}

fn unknown(id: &str) -> RegError {
    RegError::new(Code::BlobUploadUnknown).detail(id.to_string())
}

/// The session `id` of repository `name` (loaded from disk after a restart).
async fn session(
    reg: &Arc<Registry>,
    name: &str,
    id: &str,
) -> RegResult<tokio::sync::OwnedMutexGuard<Session>> {
    if !valid_upload_id(id) {
        return Err(unknown(id));
    }
    let found = reg.uploads.lock().ok().and_then(|m| m.get(id).cloned());
    let s = match found {
        Some(s) => s,
        None => {
            let repo = reg.store.upload_repo(id).await.ok_or_else(|| unknown(id))?;
            let size = tokio::fs::metadata(reg.store.upload_data(id))
                .await
                .map_err(|_| unknown(id))?
                .len();
            let fresh = Arc::new(tokio::sync::Mutex::new(Session {
                repo,
                hasher: None,
                size,
                closed: false,
            }));
            match reg.uploads.lock() {
                Ok(mut m) => m.entry(id.to_string()).or_insert(fresh).clone(),
                Err(_) => return Err(RegError::internal("upload table poisoned")),
            }
        }
    };
    let g = s.lock_owned().await;
    if g.repo != name || g.closed {
        return Err(unknown(id));
    }
    Ok(g)
}

async fn forget(reg: &Arc<Registry>, id: &str) {
    if let Ok(mut m) = reg.uploads.lock() {
        m.remove(id);
    }
    reg.store.remove_upload(id).await;
}

/// Rebuild the hasher from the file (after a restart).
async fn ensure_hasher(reg: &Arc<Registry>, id: &str, s: &mut Session) -> RegResult<()> {
    if s.hasher.is_some() {
        return Ok(());
    }
    let mut f = tokio::fs::File::open(reg.store.upload_data(id)).await?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n_total = 0u64;
    loop {
        let n = f.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        n_total += n as u64;
    }
    s.hasher = Some(h);
    s.size = n_total;
    Ok(())
}

/// `Content-Range: <start>-<end>` (also with a `bytes ` prefix or a `/total` suffix).
fn content_range(headers: &HeaderMap) -> RegResult<Option<(u64, u64)>> {
    let Some(v) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let bad = || RegError::new(Code::RangeInvalid).msg("invalid Content-Range");
    let s = v.to_str().map_err(|_| bad())?.trim();
    let s = s
        .strip_prefix("bytes ")
        .or_else(|| s.strip_prefix("bytes="))
        .unwrap_or(s);
    let s = s.split('/').next().unwrap_or(s);
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let a: u64 = a.trim().parse().map_err(|_| bad())?;
    let b: u64 = b.trim().parse().map_err(|_| bad())?;
    if b < a {
        return Err(bad());
    }
    Ok(Some((a, b)))
}

/// Append a request body to the session, all or nothing.
async fn append(
    reg: &Arc<Registry>,
    name: &str,
    id: &str,
    s: &mut Session,
    body: Body,
    range: Option<(u64, u64)>,
) -> RegResult<()> {
    ensure_hasher(reg, id, s).await?;
    if let Some((start, _)) = range {
        if start != s.size {
            return Err(RegError::new(Code::RangeInvalid)
                .msg(format!(
                    "chunk starts at {start}, upload has {} bytes",
                    s.size
                ))
                .header(header::RANGE, range_value(s.size))
                .header(header::LOCATION, location(name, id))
                .header(
                    header::HeaderName::from_static("docker-upload-uuid"),
                    id.to_string(),
                ));
        }
    }
    let old_size = s.size;
    let old_hasher = s.hasher.clone();
    let path = reg.store.upload_data(id);
    let f = tokio::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .await?;
    let mut w = tokio::io::BufWriter::with_capacity(WRITE_BUF, f);
    let mut n = 0u64;
    let mut stream = body.into_data_stream();
    let res: RegResult<()> = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                RegError::new(Code::BlobUploadInvalid).msg(format!("reading body: {e}"))
            })?;
            if let Some(h) = s.hasher.as_mut() {
                h.update(&chunk);
            }
            w.write_all(&chunk).await?;
            n += chunk.len() as u64;
        }
        w.flush().await?;
        if let Some((a, b)) = range {
            if b - a + 1 != n {
                return Err(RegError::new(Code::RangeInvalid)
                    .msg(format!("Content-Range {a}-{b} but {n} bytes received")));
            }
        }
        Ok(())
    }
    .await;
    match res {
        Ok(()) => {
            s.size = old_size + n;
            Ok(())
        }
        Err(e) => {
            // Undo the partial chunk so the session stays consistent.
            let f = w.into_inner();
            f.set_len(old_size).await?;
            s.hasher = old_hasher;
            s.size = old_size;
            Err(e)
        }
    }
}

/// Verify, publish and link the session's blob; the session is gone afterwards either way
/// (except on I/O errors, where the client may retry).
async fn complete(
    reg: &Arc<Registry>,
    name: &str,
    id: &str,
    s: &mut Session,
    expected: &Digest,
) -> RegResult<Response> {
    ensure_hasher(reg, id, s).await?;
    let h = s.hasher.clone().unwrap_or_default();
    let actual = Digest::from_hex(&hex::encode(h.finalize()))?;
    if &actual != expected {
        s.closed = true;
        forget(reg, id).await;
        return Err(
            RegError::new(Code::DigestInvalid).detail(serde_json::json!({
                "expected": expected.to_string(),
                "actual": actual.to_string(),
            })),
        );
    }
    let data = reg.store.upload_data(id);
    let p = data.clone();
    blocking(move || Ok(std::fs::File::open(&p)?.sync_all()?)).await?;
    reg.store.publish_blob(data, expected).await?;
    reg.store.link_blob(name, expected).await?;
    s.closed = true;
    forget(reg, id).await;
    Ok(empty(
        StatusCode::CREATED,
        &[
            ("location", format!("/v2/{name}/blobs/{expected}")),
            ("docker-content-digest", expected.to_string()),
            ("content-length", "0".into()),
        ],
    ))
}

/// POST /v2/<name>/blobs/uploads/ (?digest= monolithic, ?mount=&from= cross-repo mount).
pub async fn start(
    reg: &Arc<Registry>,
    name: &str,
    query: &HashMap<String, String>,
    req: Request,
) -> RegResult<Response> {
    if let (Some(m), Some(from)) = (query.get("mount"), query.get("from")) {
        let d = parse_digest(m)?;
        validate_name(from)?;
        if reg.store.repo_blob(from, &d).await.is_some() {
            reg.store.link_blob(name, &d).await?;
            return Ok(empty(
                StatusCode::CREATED,
                &[
                    ("location", format!("/v2/{name}/blobs/{d}")),
                    ("docker-content-digest", d.to_string()),
                    ("content-length", "0".into()),
                ],
            ));
        }
    }
    let expected = match query.get("digest") {
        Some(d) => Some(parse_digest(d)?),
        None => None,
    };
    let id = reg.store.new_upload(name).await?;
    let mut s = session(reg, name, &id).await?;
    s.hasher = Some(Sha256::new());
    let Some(expected) = expected else {
        return Ok(progress(StatusCode::ACCEPTED, name, &id, 0));
    };
    let res = async {
        append(reg, name, &id, &mut s, req.into_body(), None).await?;
        complete(reg, name, &id, &mut s, &expected).await
    }
    .await;
    if res.is_err() {
        forget(reg, &id).await;
    }
    res
}

/// PATCH: append a chunk (Content-Range must continue where the upload is, else 416).
pub async fn patch(reg: &Arc<Registry>, name: &str, id: &str, req: Request) -> RegResult<Response> {
    let mut s = session(reg, name, id).await?;
    let range = content_range(req.headers())?;
    append(reg, name, id, &mut s, req.into_body(), range).await?;
    Ok(progress(StatusCode::ACCEPTED, name, id, s.size))
}

/// GET: where the upload is (204 with `Range: 0-<last byte>`).
pub async fn status(reg: &Arc<Registry>, name: &str, id: &str) -> RegResult<Response> {
    let s = session(reg, name, id).await?;
    Ok(progress(StatusCode::NO_CONTENT, name, id, s.size))
}

/// PUT ?digest=: an optional last chunk, then verify and publish.
pub async fn finish(
    reg: &Arc<Registry>,
    name: &str,
    id: &str,
    query: &HashMap<String, String>,
    req: Request,
) -> RegResult<Response> {
    let expected = parse_digest(query.get("digest").map(String::as_str).unwrap_or(""))?;
    let mut s = session(reg, name, id).await?;
    let range = content_range(req.headers())?;
    append(reg, name, id, &mut s, req.into_body(), range).await?;
    complete(reg, name, id, &mut s, &expected).await
}

/// DELETE: cancel the upload.
pub async fn cancel(reg: &Arc<Registry>, name: &str, id: &str) -> RegResult<Response> {
    let mut g = session(reg, name, id).await?;
    g.closed = true;
    forget(reg, id).await;
    Ok(empty(
        StatusCode::NO_CONTENT,
        &[("content-length", "0".into())],
    ))
}
