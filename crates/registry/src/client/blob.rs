//! Blobs, streamed and verified as they pass: every chunk is hashed; more bytes than the
//! descriptor's size is an error at once, and at the end the digest and size must match, else the
//! last read is an error. Consumers must treat what they received as unverified until
//! [`VerifiedBlob::next_chunk`] returned `Ok(None)`.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::Method;
use sha2::{Digest as _, Sha256};

use super::manifest::check_digest;
use super::{check_status, header_str, Body, RegistryClient, RegistryError, Result, Scope};

pub struct VerifiedBlob {
    body: Incoming,
    hasher: Sha256,
    expected: String,
    expected_size: Option<u64>,
    /// Content-Length of the response, if given.
    pub content_length: Option<u64>,
    received: u64,
    done: bool,
}

impl VerifiedBlob {
    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The next piece of the blob; `Ok(None)` once the whole blob arrived and matched its digest.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        if self.done {
            return Ok(None);
        }
        loop {
            let frame = tokio::time::timeout(super::IDLE_TIMEOUT, self.body.frame())
                .await
                .map_err(|_| {
                    self.done = true;
                    RegistryError::Transport(format!(
                        "read blob {}: no data for {} s",
                        self.expected,
                        super::IDLE_TIMEOUT.as_secs()
                    ))
                })?;
            match frame {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    if data.is_empty() {
                        continue;
                    }
                    self.received += data.len() as u64;
                    if let Some(max) = self.expected_size {
                        if self.received > max {
                            self.done = true;
                            return Err(RegistryError::TooLarge {
                                what: format!("blob {}", self.expected),
                                limit: max,
                            });
                        }
                    }
                    self.hasher.update(&data);
                    return Ok(Some(data));
                }
                Some(Err(e)) => {
                    self.done = true;
                    return Err(RegistryError::Transport(format!(
                        "read blob {}: {e}",
                        self.expected
                    )));
                }
                None => {
                    self.done = true;
                    let actual = format!(
                        "sha256:{}",
                        hex::encode(std::mem::take(&mut self.hasher).finalize())
                    );
                    if actual != self.expected {
                        return Err(RegistryError::DigestMismatch {
                            expected: self.expected.clone(),
                            actual,
                        });
                    }
                    if let Some(s) = self.expected_size {
                        if s != self.received {
                            return Err(RegistryError::Protocol(format!(
                                "blob {} is {} bytes, the manifest says {s}",
                                self.expected, self.received
                            )));
                        }
                    }
                    return Ok(None);
                }
            }
        }
    }
}

pub(super) async fn fetch(
    client: &RegistryClient,
    repository: &str,
    digest: &str,
    expected_size: Option<u64>,
) -> Result<VerifiedBlob> {
    check_digest(digest)?;
    let resp = client
        .request(
            Method::GET,
            &format!("/v2/{repository}/blobs/{digest}"),
            Some(&Scope::pull(repository)),
            HeaderMap::new(),
            Body::Empty,
        )
        .await?;
    let resp = check_status(resp).await?;
    let content_length =
        header_str(resp.headers(), "content-length").and_then(|v| v.parse::<u64>().ok());
    if let (Some(cl), Some(s)) = (content_length, expected_size) {
        if cl != s {
            return Err(RegistryError::Protocol(format!(
                "blob {digest}: the registry sends {cl} bytes, the manifest says {s}"
            )));
        }
    }
    Ok(VerifiedBlob {
        body: resp.into_body(),
        hasher: Sha256::new(),
        expected: digest.to_string(),
        expected_size,
        content_length,
        received: 0,
        done: false,
    })
}

/// GET a small blob (an image config) whole, capped at `limit`, verified.
pub async fn fetch_small(
    client: &RegistryClient,
    repository: &str,
    digest: &str,
    limit: u64,
) -> Result<Vec<u8>> {
    let mut b = fetch(client, repository, digest, None).await?;
    let mut out = Vec::new();
    while let Some(c) = b.next_chunk().await? {
        if out.len() as u64 + c.len() as u64 > limit {
            return Err(RegistryError::TooLarge {
                what: format!("blob {digest}"),
                limit,
            });
        }
        out.extend_from_slice(&c);
    }
    Ok(out)
}
