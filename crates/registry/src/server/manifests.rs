//! Manifests (Docker schema 2, Docker manifest list, OCI manifest, OCI index) by tag and digest,
//! and the referrers API (manifests whose `subject` is a given digest).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use berth_store::Digest;
use serde_json::Value;

use super::error::{Code, RegError, RegResult};
use super::names::Reference;
use super::{empty, Registry};

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Largest manifest accepted (as Docker's registry).
pub const MAX_MANIFEST: usize = 4 * 1024 * 1024;

fn invalid(msg: impl Into<String>) -> RegError {
    RegError::new(Code::ManifestInvalid).detail(Value::String(msg.into()))
}

/// The media type of a manifest: Content-Type if it names one, else the body's `mediaType`, else
/// a guess from its shape (OCI allows omitting `mediaType`).
pub fn media_type(content_type: Option<&str>, v: &Value) -> RegResult<String> {
    let ct = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim().to_string())
        .filter(|c| !c.is_empty() && c != "application/json" && c != "application/octet-stream");
    let body_mt = v
        .get("mediaType")
        .and_then(Value::as_str)
        .map(str::to_string);
    if v.get("manifests").is_some() && v.get("layers").is_some() {
        return Err(invalid("manifest has both manifests and layers"));
    }
    let mt = match (ct, body_mt) {
        (Some(c), Some(b)) if c != b => {
            return Err(invalid(format!(
                "Content-Type {c} does not match mediaType {b}"
            )))
        }
        (Some(c), _) => c,
        (None, Some(b)) => b,
        (None, None) if v.get("manifests").is_some() => OCI_INDEX.to_string(),
        (None, None) => OCI_MANIFEST.to_string(),
    };
    if ![DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX].contains(&mt.as_str()) {
        return Err(invalid(format!("unsupported manifest media type {mt}")));
    }
    if v.get("schemaVersion").and_then(Value::as_u64) != Some(2) {
        return Err(invalid("schemaVersion must be 2"));
    }
    Ok(mt)
}

fn descriptor_digest(d: &Value) -> RegResult<Digest> {
    let s = d
        .get("digest")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("descriptor without digest"))?;
    Digest::parse(s).map_err(|_| invalid(format!("invalid digest {s}")))
}

fn blob_unknown(d: &Digest) -> RegError {
    RegError::new(Code::ManifestBlobUnknown).detail(serde_json::json!({ "digest": d.to_string() }))
}

/// Every blob or child manifest the manifest names must exist in the repository.
async fn check_references(reg: &Registry, name: &str, mt: &str, v: &Value) -> RegResult<()> {
    if mt == DOCKER_LIST || mt == OCI_INDEX {
        let list = v
            .get("manifests")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("index without manifests"))?;
        for m in list {
            let d = descriptor_digest(m)?;
            if reg.store.manifest_type(name, &d).await.is_none() {
                return Err(blob_unknown(&d));
            }
        }
        return Ok(());
    }
    let config = v
        .get("config")
        .ok_or_else(|| invalid("manifest without config"))?;
    let mut refs = vec![config];
    match v.get("layers") {
        Some(Value::Array(ls)) => refs.extend(ls.iter()),
        None => {}
        Some(_) => return Err(invalid("layers is not a list")),
    }
    for r in refs {
        let d = descriptor_digest(r)?;
        // Foreign layers (with urls) live elsewhere.
        if r.get("urls")
            .and_then(Value::as_array)
            .is_some_and(|u| !u.is_empty())
        {
            continue;
        }
        if reg.store.repo_blob(name, &d).await.is_none() {
            return Err(blob_unknown(&d));
        }
    }
    Ok(())
}

/// Validate and store a manifest; returns its digest and media type. Used by PUT and by the
/// pull-through cache.
pub async fn store_manifest(
    reg: &Registry,
    name: &str,
    r: &Reference,
    content_type: Option<&str>,
    body: bytes::Bytes,
    check_refs: bool,
) -> RegResult<(Digest, String, Option<Digest>)> {
    let v: Value =
        serde_json::from_slice(&body).map_err(|e| invalid(format!("invalid JSON: {e}")))?;
    let mt = media_type(content_type, &v)?;
    let d = Digest::of(&body);
    if let Reference::Digest(want) = r {
        if want != &d {
            return Err(
                RegError::new(Code::DigestInvalid).detail(serde_json::json!({
                    "expected": want.to_string(), "actual": d.to_string(),
                })),
            );
        }
    }
    if check_refs {
        check_references(reg, name, &mt, &v).await?;
    }
    let subject = match v.get("subject") {
        Some(s) => Some(descriptor_digest(s)?),
        None => None,
    };
    reg.store.put_small_blob(body.clone()).await?;
    reg.store.link_blob(name, &d).await?;
    reg.store.link_manifest(name, &d, &mt).await?;
    if let Some(s) = &subject {
        let mut desc = serde_json::json!({
            "mediaType": mt, "digest": d.to_string(), "size": body.len(),
        });
        let at = v
            .get("artifactType")
            .or_else(|| v.get("config").and_then(|c| c.get("mediaType")));
        if let Some(at) = at {
            desc["artifactType"] = at.clone();
        }
        if let Some(a) = v.get("annotations") {
            desc["annotations"] = a.clone();
        }
        reg.store.add_referrer(name, s, &d, &desc).await?;
    }
    if let Reference::Tag(t) = r {
        reg.store.set_tag(name, t, &d).await?;
    }
    Ok((d, mt, subject))
}

pub async fn put(
    reg: &Arc<Registry>,
    name: &str,
    r: &Reference,
    req: Request,
) -> RegResult<Response> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = axum::body::to_bytes(req.into_body(), MAX_MANIFEST)
        .await
        .map_err(|e| {
            invalid(format!(
                "reading manifest (at most {MAX_MANIFEST} bytes): {e}"
            ))
        })?;
    let (d, _mt, subject) = store_manifest(reg, name, r, ct.as_deref(), body, true).await?;
    let mut hs = vec![
        ("location", format!("/v2/{name}/manifests/{d}")),
        ("docker-content-digest", d.to_string()),
        ("content-length", "0".to_string()),
    ];
    if let Some(s) = subject {
        hs.push(("oci-subject", s.to_string()));
    }
    Ok(empty(StatusCode::CREATED, &hs))
}

fn manifest_unknown(r: &Reference) -> RegError {
    RegError::new(Code::ManifestUnknown).detail(serde_json::json!({ "reference": r.to_string() }))
}

/// Serve a manifest from local storage.
pub async fn serve_local(
    reg: &Registry,
    name: &str,
    r: &Reference,
    head: bool,
) -> RegResult<Response> {
    let d = match r {
        Reference::Tag(t) => reg.store.tag(name, t).await,
        Reference::Digest(d) => Some(d.clone()),
    }
    .ok_or_else(|| manifest_unknown(r))?;
    let mt = reg
        .store
        .manifest_type(name, &d)
        .await
        .ok_or_else(|| manifest_unknown(r))?;
    let data = tokio::fs::read(reg.store.blob_path(&d)).await?;
    let mut resp = empty(
        StatusCode::OK,
        &[
            ("content-type", mt),
            ("content-length", data.len().to_string()),
            ("docker-content-digest", d.to_string()),
            ("etag", format!("\"{d}\"")),
        ],
    );
    if !head {
        *resp.body_mut() = Body::from(data);
    }
    Ok(resp)
}

pub async fn get(
    reg: &Arc<Registry>,
    name: &str,
    r: &Reference,
    head: bool,
    headers: &HeaderMap,
) -> RegResult<Response> {
    match (&reg.proxy, r) {
        // By tag, a cache always asks upstream first (tags move); serve_local if it is down.
        (Some(p), Reference::Tag(_)) => p.manifest(reg, name, r, head, headers).await,
        (Some(p), Reference::Digest(_)) => match serve_local(reg, name, r, head).await {
            Ok(resp) => Ok(resp),
            Err(e) if e.code == Code::ManifestUnknown => {
                p.manifest(reg, name, r, head, headers).await
            }
            Err(e) => Err(e),
        },
        (None, _) => serve_local(reg, name, r, head).await,
    }
}

/// DELETE by digest (the manifest and the tags pointing at it) or by tag (the tag only).
pub async fn delete(reg: &Arc<Registry>, name: &str, r: &Reference) -> RegResult<Response> {
    let found = match r {
        Reference::Tag(t) => reg.store.delete_tag(name, t).await?,
        Reference::Digest(d) => {
            let f = reg.store.delete_manifest(name, d).await?;
            if f {
                reg.store.remove_referrer(name, d).await?;
            }
            f
        }
    };
    if !found {
        return Err(manifest_unknown(r));
    }
    Ok(empty(
        StatusCode::ACCEPTED,
        &[("content-length", "0".to_string())],
    ))
}

/// GET /v2/<name>/referrers/<digest>[?artifactType=]: an OCI index of the referring manifests.
pub async fn referrers(
    reg: &Arc<Registry>,
    name: &str,
    subject: &Digest,
    query: &HashMap<String, String>,
) -> RegResult<Response> {
    let mut list = reg.store.referrers(name, subject).await?;
    let filter = query.get("artifactType").filter(|s| !s.is_empty());
    if let Some(at) = filter {
        list.retain(|d| d.get("artifactType").and_then(Value::as_str) == Some(at.as_str()));
    }
    let body = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": list,
    })
    .to_string();
    let mut hs = vec![
        ("content-type", OCI_INDEX.to_string()),
        ("content-length", body.len().to_string()),
    ];
    if filter.is_some() {
        hs.push(("oci-filters-applied", "artifactType".to_string()));
    }
    let mut resp = empty(StatusCode::OK, &hs);
    *resp.body_mut() = Body::from(body);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types() {
        let m = serde_json::json!({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "config": {}});
        assert_eq!(media_type(None, &m).unwrap(), DOCKER_MANIFEST);
        assert_eq!(
            media_type(Some(DOCKER_MANIFEST), &m).unwrap(),
            DOCKER_MANIFEST
        );
        assert!(media_type(Some(OCI_MANIFEST), &m).is_err());
        let oci = serde_json::json!({"schemaVersion": 2, "config": {}, "layers": []});
        assert_eq!(
            media_type(Some("application/json"), &oci).unwrap(),
            OCI_MANIFEST
        );
        let idx = serde_json::json!({"schemaVersion": 2, "manifests": []});
        assert_eq!(media_type(None, &idx).unwrap(), OCI_INDEX);
        let both = serde_json::json!({"schemaVersion": 2, "manifests": [], "layers": []});
        assert!(media_type(None, &both).is_err());
        let v1 = serde_json::json!({"schemaVersion": 1});
        assert!(media_type(None, &v1).is_err());
        assert!(media_type(Some("text/plain"), &oci).is_err());
    }
}
