//! The push side of the registry client: blob existence (HEAD), cross-repository mounts, chunked
//! uploads (POST, PATCH chunks with Content-Range, PUT ?digest=), and manifests by tag.
//!
//! Uploads read the blob in chunks of [`DEFAULT_CHUNK`] bytes; each chunk is one PATCH with a
//! replayable body, so an authentication round trip never loses data and memory stays bounded
//! (one chunk per concurrent upload). Blobs up to [`MONOLITHIC_MAX`] go in a single PUT.

use std::future::Future;

use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use hyper::{Method, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{check_status, drain, header_str, Body, RegistryClient, RegistryError, Result, Scope};

/// Bytes per PATCH of a chunked upload.
pub const DEFAULT_CHUNK: usize = 16 << 20;
/// Blobs up to this size are uploaded with one PUT (POST + PUT with the body).
pub const MONOLITHIC_MAX: u64 = 1 << 20;

/// What a mount attempt gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount {
    /// The registry linked the blob into the repository (201).
    Mounted,
    /// The registry did not mount it and opened an upload session instead (202): its location.
    Upload(String),
}

fn valid_digest(d: &str) -> Result<()> {
    let ok = d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if ok {
        Ok(())
    } else {
        Err(RegistryError::InvalidDigest(d.to_string()))
    }
}

fn location(h: &HeaderMap, what: &str) -> Result<String> {
    h.get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .ok_or_else(|| RegistryError::Protocol(format!("{what}: the registry gave no Location")))
}

/// `location` with `key=value` added to its query.
fn with_query(location: &str, key: &str, value: &str) -> String {
    let enc: String = percent_encode(value);
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}{key}={enc}")
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn octet_headers(len: usize) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    h
}

impl RegistryClient {
    /// HEAD a blob in `repository`: its size when the registry has it, None when not (404).
    pub async fn blob_exists(&self, repository: &str, digest: &str) -> Result<Option<u64>> {
        valid_digest(digest)?;
        let scope = Scope::push(repository);
        let resp = self
            .request(
                Method::HEAD,
                &format!("/v2/{repository}/blobs/{digest}"),
                Some(&scope),
                HeaderMap::new(),
                Body::Empty,
            )
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            drain(resp).await;
            return Ok(None);
        }
        let resp = check_status(resp).await?;
        let size = header_str(resp.headers(), "content-length")
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        drain(resp).await;
        Ok(Some(size))
    }

    /// Ask the registry to mount `digest` from repository `from` into `repository`.
    pub async fn mount_blob(&self, repository: &str, digest: &str, from: &str) -> Result<Mount> {
        valid_digest(digest)?;
        let scope = Scope::push(repository);
        let path = format!(
            "/v2/{repository}/blobs/uploads/?mount={}&from={}",
            percent_encode(digest),
            percent_encode(from)
        );
        let resp = self
            .request(
                Method::POST,
                &path,
                Some(&scope),
                octet_headers(0),
                Body::Empty,
            )
            .await?;
        let status = resp.status();
        let resp = check_status(resp).await?;
        let loc = location(resp.headers(), "mount");
        drain(resp).await;
        match status {
            StatusCode::CREATED => Ok(Mount::Mounted),
            _ => Ok(Mount::Upload(loc?)),
        }
    }

    /// Open an upload session: its location.
    pub async fn start_upload(&self, repository: &str) -> Result<String> {
        let scope = Scope::push(repository);
        let resp = self
            .request(
                Method::POST,
                &format!("/v2/{repository}/blobs/uploads/"),
                Some(&scope),
                octet_headers(0),
                Body::Empty,
            )
            .await?;
        let resp = check_status(resp).await?;
        let loc = location(resp.headers(), "start upload");
        drain(resp).await;
        loc
    }

    /// Finish an upload session with its last bytes (may be empty) and the blob's digest.
    pub async fn finish_upload(
        &self,
        repository: &str,
        location: &str,
        digest: &str,
        last: Bytes,
    ) -> Result<()> {
        let scope = Scope::push(repository);
        let url = with_query(location, "digest", digest);
        let resp = self
            .request(
                Method::PUT,
                &url,
                Some(&scope),
                octet_headers(last.len()),
                Body::Bytes(last),
            )
            .await?;
        let resp = check_status(resp).await?;
        if let Some(got) = header_str(resp.headers(), "docker-content-digest") {
            if got != digest {
                let got = got.to_string();
                drain(resp).await;
                return Err(RegistryError::DigestMismatch {
                    expected: digest.to_string(),
                    actual: got,
                });
            }
        }
        drain(resp).await;
        Ok(())
    }

    /// Upload a small blob held in memory (POST, then one PUT with the body).
    pub async fn push_blob_bytes(&self, repository: &str, digest: &str, data: Bytes) -> Result<()> {
        valid_digest(digest)?;
        let loc = self.start_upload(repository).await?;
        self.finish_upload(repository, &loc, digest, data).await
    }

    /// Upload a blob of `size` bytes read from `r`, in `chunk`-byte PATCHes, into the session at
    /// `session` (from a failed mount) or a new one; `progress` gets the bytes sent so far.
    /// Blobs up to [`MONOLITHIC_MAX`] go in the final PUT.
    #[allow(clippy::too_many_arguments)]
    pub async fn push_blob<R, F, Fut>(
        &self,
        repository: &str,
        session: Option<String>,
        digest: &str,
        size: u64,
        mut r: R,
        chunk: usize,
        mut progress: F,
    ) -> Result<()>
    where
        R: AsyncRead + Unpin,
        F: FnMut(u64) -> Fut,
        Fut: Future<Output = ()>,
    {
        valid_digest(digest)?;
        let mut loc = match session {
            Some(l) => l,
            None => self.start_upload(repository).await?,
        };
        let chunk = chunk.max(64 << 10);
        let read_err = |e: std::io::Error| RegistryError::Transport(format!("read blob: {e}"));
        if size <= MONOLITHIC_MAX {
            let mut data = Vec::with_capacity(size as usize);
            (&mut r)
                .take(size)
                .read_to_end(&mut data)
                .await
                .map_err(read_err)?;
            if data.len() as u64 != size {
                return Err(RegistryError::Protocol(format!(
                    "blob {digest}: read {} of {size} bytes",
                    data.len()
                )));
            }
            self.finish_upload(repository, &loc, digest, Bytes::from(data))
                .await?;
            progress(size).await;
            return Ok(());
        }
        let mut sent: u64 = 0;
        while sent < size {
            let want = chunk.min((size - sent) as usize);
            let mut buf = vec![0u8; want];
            r.read_exact(&mut buf).await.map_err(read_err)?;
            loc = self
                .patch_chunk(repository, &loc, sent, Bytes::from(buf))
                .await?;
            sent += want as u64;
            progress(sent).await;
        }
        self.finish_upload(repository, &loc, digest, Bytes::new())
            .await
    }

    /// Send one chunk of an upload session (`offset` = bytes sent before it); returns the
    /// session's next location.
    pub async fn patch_chunk(
        &self,
        repository: &str,
        at: &str,
        offset: u64,
        data: Bytes,
    ) -> Result<String> {
        if data.is_empty() {
            return Ok(at.to_string());
        }
        let scope = Scope::push(repository);
        let mut h = octet_headers(data.len());
        let range = format!("{}-{}", offset, offset + data.len() as u64 - 1);
        h.insert(
            "content-range",
            HeaderValue::from_str(&range)
                .map_err(|e| RegistryError::Protocol(format!("content-range: {e}")))?,
        );
        let resp = self
            .request(Method::PATCH, at, Some(&scope), h, Body::Bytes(data))
            .await?;
        let resp = check_status(resp).await?;
        let loc = location(resp.headers(), "upload chunk");
        drain(resp).await;
        loc
    }

    /// PUT a manifest by tag (or digest). Returns the digest the registry reports (checked
    /// against the sha256 of `data` by the caller's `expected`).
    pub async fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        data: Bytes,
        expected: &str,
    ) -> Result<String> {
        let scope = Scope::push(repository);
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_str(media_type)
                .map_err(|_| RegistryError::MediaType(media_type.to_string()))?,
        );
        h.insert(CONTENT_LENGTH, HeaderValue::from(data.len()));
        let resp = self
            .request(
                Method::PUT,
                &format!("/v2/{repository}/manifests/{reference}"),
                Some(&scope),
                h,
                Body::Bytes(data),
            )
            .await?;
        let resp = check_status(resp).await?;
        let got = header_str(resp.headers(), "docker-content-digest")
            .unwrap_or(expected)
            .to_string();
        drain(resp).await;
        if got != expected {
            return Err(RegistryError::DigestMismatch {
                expected: expected.to_string(),
                actual: got,
            });
        }
        Ok(got)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_appended() {
        assert_eq!(
            with_query("/v2/x/blobs/uploads/u?_state=a%3D", "digest", "sha256:ab"),
            "/v2/x/blobs/uploads/u?_state=a%3D&digest=sha256%3Aab"
        );
        assert_eq!(
            with_query("http://h:1/v2/x/blobs/uploads/u", "digest", "sha256:ab"),
            "http://h:1/v2/x/blobs/uploads/u?digest=sha256%3Aab"
        );
    }

    #[test]
    fn digests_are_checked() {
        assert!(valid_digest(&format!("sha256:{}", "a".repeat(64))).is_ok());
        assert!(valid_digest("sha256:../../x").is_err());
        assert!(valid_digest("md5:00").is_err());
    }
}
