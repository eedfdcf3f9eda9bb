//! Blobs: HEAD/GET (single byte ranges → 206) and DELETE (removes the repository's link).

use std::io::SeekFrom;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use berth_store::Digest;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::error::{Code, RegError, RegResult};
use super::{empty, Registry};

/// Read buffer of blob responses.
const CHUNK: usize = 256 * 1024;

/// A byte range request resolved against a size: `Ok(None)` means the whole blob.
pub fn parse_range(h: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = h.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None); // multiple ranges: serve the whole blob (allowed by RFC 9110)
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        // Suffix range: the last b bytes.
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 || size == 0 {
            return Err(());
        }
        (size.saturating_sub(n), size - 1)
    } else {
        let start: u64 = a.parse().map_err(|_| ())?;
        let end: u64 = if b.is_empty() {
            size.saturating_sub(1)
        } else {
            b.parse::<u64>()
                .map_err(|_| ())?
                .min(size.saturating_sub(1))
        };
        if start >= size || end < start {
            return Err(());
        }
        (start, end)
    };
    Ok(Some(range))
}

/// Serve a file of the store (a blob), honouring `Range`.
pub async fn serve_blob(
    path: std::path::PathBuf,
    size: u64,
    d: &Digest,
    head: bool,
    headers: &HeaderMap,
) -> RegResult<Response> {
    let range = parse_range(
        headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
        size,
    )
    .map_err(|_| {
        RegError::new(Code::RangeInvalid)
            .msg("requested range not satisfiable")
            .header(header::CONTENT_RANGE, format!("bytes */{size}"))
    })?;
    let (status, start, len) = match range {
        Some((a, b)) => (StatusCode::PARTIAL_CONTENT, a, b - a + 1),
        None => (StatusCode::OK, 0, size),
    };
    let mut hs = vec![
        ("content-type", "application/octet-stream".to_string()),
        ("content-length", len.to_string()),
        ("docker-content-digest", d.to_string()),
        ("etag", format!("\"{d}\"")),
        ("accept-ranges", "bytes".to_string()),
        ("cache-control", "max-age=31536000".to_string()),
    ];
    if range.is_some() {
        hs.push((
            "content-range",
            format!("bytes {start}-{}/{size}", start + len - 1),
        ));
    }
    let mut resp = empty(status, &hs);
    if head {
        return Ok(resp);
    }
    let mut f = tokio::fs::File::open(&path).await?;
    if start > 0 {
        f.seek(SeekFrom::Start(start)).await?;
    }
    let stream = tokio_util::io::ReaderStream::with_capacity(f.take(len), CHUNK);
    *resp.body_mut() = Body::from_stream(stream);
    Ok(resp)
}

pub async fn get(
    reg: &Arc<Registry>,
    name: &str,
    d: &Digest,
    head: bool,
    headers: &HeaderMap,
) -> RegResult<Response> {
    match reg.store.repo_blob(name, d).await {
        Some(size) => serve_blob(reg.store.blob_path(d), size, d, head, headers).await,
        None => match &reg.proxy {
            Some(p) => p.blob(reg, name, d, head, headers).await,
            None => Err(RegError::new(Code::BlobUnknown).detail(d.to_string())),
        },
    }
}

/// DELETE: the blob leaves the repository (202). Its content stays on disk while other
/// repositories may use it.
pub async fn delete(reg: &Arc<Registry>, name: &str, d: &Digest) -> RegResult<Response> {
    if reg.store.unlink_blob(name, d).await? {
        Ok(empty(
            StatusCode::ACCEPTED,
            &[
                ("docker-content-digest", d.to_string()),
                ("content-length", "0".into()),
            ],
        ))
    } else {
        Err(RegError::new(Code::BlobUnknown).detail(d.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=0-3"), 10), Ok(Some((0, 3))));
        assert_eq!(parse_range(Some("bytes=5-"), 10), Ok(Some((5, 9))));
        assert_eq!(parse_range(Some("bytes=-4"), 10), Ok(Some((6, 9))));
        assert_eq!(parse_range(Some("bytes=2-100"), 10), Ok(Some((2, 9))));
        assert_eq!(parse_range(Some("bytes=10-"), 10), Err(()));
        assert_eq!(parse_range(Some("bytes=4-2"), 10), Err(()));
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), Ok(None));
        assert_eq!(parse_range(Some("items=0-1"), 10), Ok(None));
    }
}
