//! The registry's files under `--root`. Crash-safe like the engine's store: every file is written
//! to a temp name, fsynced and renamed into place; a blob becomes visible only after its digest was
//! checked, so a killed server never serves a partial blob.
//!
//! ```text
//! <root>/blobs/sha256/<hex>                               blob content (layers, configs, manifests)
//! <root>/blobs/sha256/.tmp-*                              proxy fetches in flight (removed at start)
//! <root>/uploads/<id>/{repo,data}                         upload sessions (never served as blobs)
//! <root>/repositories/<name>/_layers/<hex>                the blob is part of the repository
//! <root>/repositories/<name>/_manifests/revisions/<hex>   a manifest of the repository (its media type)
//! <root>/repositories/<name>/_manifests/tags/<tag>        the digest the tag points to
//! <root>/repositories/<name>/_referrers/<subject>/<hex>   descriptor of a manifest with that subject
//! ```
//! Names and tags are validated before they get here (`names.rs`), digests are 64 hex characters.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use berth_store::{atomic, Digest};

use super::error::{RegError, RegResult};

/// Upload sessions untouched for this long are removed at start (as Docker's registry, a week).
const UPLOAD_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

pub struct Storage {
    root: PathBuf,
}

/// Run blocking file work off the async workers.
pub async fn blocking<T, F>(f: F) -> RegResult<T>
where
    F: FnOnce() -> RegResult<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(RegError::internal)?
}

fn not_found_ok(r: std::io::Result<()>) -> RegResult<bool> {
    match r {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Write a small file atomically, creating its directory first.
fn write_small(path: &Path, data: &[u8]) -> RegResult<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    atomic::write_file(path, data)?;
    Ok(())
}

impl Storage {
    /// Create the layout and remove what an interrupted server left behind (temp files).
    pub fn open(root: &Path) -> RegResult<Storage> {
        let s = Storage {
            root: root.to_path_buf(),
        };
        for d in [
            s.blob_dir(),
            s.root.join("uploads"),
            s.root.join("repositories"),
        ] {
            std::fs::create_dir_all(&d)?;
        }
        atomic::clean_temp(&s.blob_dir())?;
        s.purge_uploads(UPLOAD_MAX_AGE);
        Ok(s)
    }

    pub fn blob_dir(&self) -> PathBuf {
        self.root.join("blobs/sha256")
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.blob_dir().join(d.hex())
    }

    /// Size of a published blob (any repository), if present.
    pub async fn blob_size(&self, d: &Digest) -> Option<u64> {
        tokio::fs::metadata(self.blob_path(d))
            .await
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len())
    }

    fn repo_dir(&self, name: &str) -> PathBuf {
        self.root.join("repositories").join(name)
    }

    fn layer_link(&self, name: &str, d: &Digest) -> PathBuf {
        self.repo_dir(name).join("_layers").join(d.hex())
    }

    fn revision(&self, name: &str, d: &Digest) -> PathBuf {
        self.repo_dir(name)
            .join("_manifests/revisions")
            .join(d.hex())
    }

    fn tag_path(&self, name: &str, tag: &str) -> PathBuf {
        self.repo_dir(name).join("_manifests/tags").join(tag)
    }

    pub async fn repo_exists(&self, name: &str) -> bool {
        tokio::fs::metadata(self.repo_dir(name).join("_manifests"))
            .await
            .is_ok()
            || tokio::fs::metadata(self.repo_dir(name).join("_layers"))
                .await
                .is_ok()
    }

    /// The blob's size if it is part of repository `name`.
    pub async fn repo_blob(&self, name: &str, d: &Digest) -> Option<u64> {
        if tokio::fs::metadata(self.layer_link(name, d)).await.is_err() {
            return None;
        }
        self.blob_size(d).await
    }

    /// Make a published blob part of a repository.
    pub async fn link_blob(&self, name: &str, d: &Digest) -> RegResult<()> {
        let p = self.layer_link(name, d);
        if tokio::fs::metadata(&p).await.is_ok() {
            return Ok(());
        }
        blocking(move || write_small(&p, b"")).await
    }

    /// Remove a blob from a repository (the content stays for other repositories).
    pub async fn unlink_blob(&self, name: &str, d: &Digest) -> RegResult<bool> {
        not_found_ok(tokio::fs::remove_file(self.layer_link(name, d)).await)
    }

    /// Publish a fully written, fsynced file as blob `d` (the caller verified the digest).
    pub async fn publish_blob(&self, tmp: PathBuf, d: &Digest) -> RegResult<()> {
        let dest = self.blob_path(d);
        let dir = self.blob_dir();
        blocking(move || {
            if dest.is_file() {
                let _ = std::fs::remove_file(&tmp);
                return Ok(());
            }
            std::fs::rename(&tmp, &dest)?;
            atomic::sync_dir(&dir)?;
            Ok(())
        })
        .await
    }

    /// Store a small blob (a manifest) from memory.
    pub async fn put_small_blob(&self, data: bytes::Bytes) -> RegResult<Digest> {
        let d = Digest::of(&data);
        let p = self.blob_path(&d);
        if self.blob_size(&d).await == Some(data.len() as u64) {
            return Ok(d);
        }
        blocking(move || write_small(&p, &data)).await?;
        Ok(d)
    }

    /// Media type of manifest `d` if it is part of repository `name`.
    pub async fn manifest_type(&self, name: &str, d: &Digest) -> Option<String> {
        let t = tokio::fs::read_to_string(self.revision(name, d))
            .await
            .ok()?;
        self.blob_size(d).await?;
        Some(t)
    }

    pub async fn link_manifest(&self, name: &str, d: &Digest, media_type: &str) -> RegResult<()> {
        let p = self.revision(name, d);
        let mt = media_type.as_bytes().to_vec();
        blocking(move || write_small(&p, &mt)).await
    }

    /// Delete manifest `d` from a repository and every tag pointing at it.
    pub async fn delete_manifest(&self, name: &str, d: &Digest) -> RegResult<bool> {
        if !not_found_ok(tokio::fs::remove_file(self.revision(name, d)).await)? {
            return Ok(false);
        }
        for t in self.tags(name).await?.unwrap_or_default() {
            if self.tag(name, &t).await.as_ref() == Some(d) {
                self.delete_tag(name, &t).await?;
            }
        }
        Ok(true)
    }

    pub async fn tag(&self, name: &str, tag: &str) -> Option<Digest> {
        let s = tokio::fs::read_to_string(self.tag_path(name, tag))
            .await
            .ok()?;
        Digest::parse(s.trim()).ok()
    }

    pub async fn set_tag(&self, name: &str, tag: &str, d: &Digest) -> RegResult<()> {
        let p = self.tag_path(name, tag);
        let s = d.to_string();
        blocking(move || write_small(&p, s.as_bytes())).await
    }

    pub async fn delete_tag(&self, name: &str, tag: &str) -> RegResult<bool> {
        not_found_ok(tokio::fs::remove_file(self.tag_path(name, tag)).await)
    }

    /// Sorted tags of a repository; `None` if the repository is unknown.
    pub async fn tags(&self, name: &str) -> RegResult<Option<Vec<String>>> {
        if !self.repo_exists(name).await {
            return Ok(None);
        }
        let dir = self.repo_dir(name).join("_manifests/tags");
        blocking(move || {
            let mut out = Vec::new();
            match std::fs::read_dir(&dir) {
                Ok(rd) => {
                    for e in rd {
                        let n = e?.file_name().to_string_lossy().into_owned();
                        if !n.starts_with(atomic::TEMP_PREFIX) {
                            out.push(n);
                        }
                    }
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
            out.sort();
            Ok(Some(out))
        })
        .await
    }

    /// Every repository with manifests, sorted.
    pub async fn catalog(&self) -> RegResult<Vec<String>> {
        let top = self.root.join("repositories");
        blocking(move || {
            let mut out = Vec::new();
            let mut stack = vec![(top.clone(), String::new())];
            while let Some((dir, name)) = stack.pop() {
                if !name.is_empty() && dir.join("_manifests").is_dir() {
                    out.push(name.clone());
                }
                let rd = match std::fs::read_dir(&dir) {
                    Ok(rd) => rd,
                    Err(e) if e.kind() == ErrorKind::NotFound => continue,
                    Err(e) => return Err(e.into()),
                };
                for e in rd {
                    let e = e?;
                    let n = e.file_name().to_string_lossy().into_owned();
                    if n.starts_with('_') || n.starts_with('.') || !e.file_type()?.is_dir() {
                        continue;
                    }
                    let child = if name.is_empty() {
                        n
                    } else {
                        format!("{name}/{n}")
                    };
                    stack.push((e.path(), child));
                }
            }
            out.sort();
            Ok(out)
        })
        .await
    }

    fn referrer_dir(&self, name: &str, subject: &Digest) -> PathBuf {
        self.repo_dir(name).join("_referrers").join(subject.hex())
    }

    pub async fn add_referrer(
        &self,
        name: &str,
        subject: &Digest,
        d: &Digest,
        descriptor: &serde_json::Value,
    ) -> RegResult<()> {
        let p = self.referrer_dir(name, subject).join(d.hex());
        let data = descriptor.to_string().into_bytes();
        blocking(move || write_small(&p, &data)).await
    }

    /// Remove manifest `d` from every subject's referrers list of the repository.
    pub async fn remove_referrer(&self, name: &str, d: &Digest) -> RegResult<()> {
        let top = self.repo_dir(name).join("_referrers");
        let hex = d.hex().to_string();
        blocking(move || {
            if let Ok(rd) = std::fs::read_dir(&top) {
                for e in rd.flatten() {
                    not_found_ok(std::fs::remove_file(e.path().join(&hex)))?;
                }
            }
            Ok(())
        })
        .await
    }

    /// Descriptors of the manifests whose subject is `subject`, sorted by digest.
    pub async fn referrers(
        &self,
        name: &str,
        subject: &Digest,
    ) -> RegResult<Vec<serde_json::Value>> {
        let dir = self.referrer_dir(name, subject);
        blocking(move || {
            let mut files = Vec::new();
            match std::fs::read_dir(&dir) {
                Ok(rd) => {
                    for e in rd {
                        let e = e?;
                        if !e.file_name().to_string_lossy().starts_with('.') {
                            files.push(e.path());
                        }
                    }
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
            files.sort();
            let mut out = Vec::new();
            for f in files {
                if let Ok(v) = serde_json::from_slice(&std::fs::read(&f)?) {
                    out.push(v);
                }
            }
            Ok(out)
        })
        .await
    }

    // Upload sessions.

    /// Remove sessions whose data was not written for `max_age` (and malformed leftovers).
    fn purge_uploads(&self, max_age: std::time::Duration) {
        let Ok(rd) = std::fs::read_dir(self.root.join("uploads")) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let stale = match std::fs::metadata(p.join("data")).and_then(|m| m.modified()) {
                Ok(t) => t.elapsed().map(|a| a > max_age).unwrap_or(false),
                Err(_) => true,
            };
            if stale {
                tracing::info!("removing stale upload {p:?}");
                let _ = std::fs::remove_dir_all(&p);
            }
        }
    }

    pub fn upload_dir(&self, id: &str) -> PathBuf {
        self.root.join("uploads").join(id)
    }

    pub fn upload_data(&self, id: &str) -> PathBuf {
        self.upload_dir(id).join("data")
    }

    /// Start a session for repository `name`; returns its id.
    pub async fn new_upload(&self, name: &str) -> RegResult<String> {
        let id = atomic::random_hex(16);
        let dir = self.upload_dir(&id);
        let repo = name.as_bytes().to_vec();
        blocking(move || {
            std::fs::create_dir(&dir)?;
            std::fs::File::create(dir.join("data"))?;
            write_small(&dir.join("repo"), &repo)
        })
        .await?;
        Ok(id)
    }

    /// The repository of an upload session, if it exists.
    pub async fn upload_repo(&self, id: &str) -> Option<String> {
        tokio::fs::read_to_string(self.upload_dir(id).join("repo"))
            .await
            .ok()
    }

    pub async fn remove_upload(&self, id: &str) {
        let _ = tokio::fs::remove_dir_all(self.upload_dir(id)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn layout_catalog_tags_and_cleanup() {
        let d = tempfile::tempdir().unwrap();
        let s = Storage::open(d.path()).unwrap();
        let m = s
            .put_small_blob(bytes::Bytes::from_static(b"{}"))
            .await
            .unwrap();
        for repo in ["b/c", "a", "b"] {
            s.link_manifest(repo, &m, "application/vnd.oci.image.manifest.v1+json")
                .await
                .unwrap();
        }
        s.set_tag("a", "v1", &m).await.unwrap();
        s.set_tag("a", "v0", &m).await.unwrap();
        assert_eq!(s.catalog().await.unwrap(), ["a", "b", "b/c"]);
        assert_eq!(s.tags("a").await.unwrap().unwrap(), ["v0", "v1"]);
        assert!(s.tags("zzz").await.unwrap().is_none());
        assert_eq!(s.tag("a", "v1").await, Some(m.clone()));
        assert!(s.delete_manifest("a", &m).await.unwrap());
        assert_eq!(s.tags("a").await.unwrap().unwrap(), Vec::<String>::new());
        assert!(s.manifest_type("a", &m).await.is_none());
        assert!(s.manifest_type("b", &m).await.is_some());

        // Leftovers of a crash: a temp blob goes, a fresh session stays, a broken one goes.
        let id = s.new_upload("a").await.unwrap();
        std::fs::write(s.blob_dir().join(".tmp-x"), b"partial").unwrap();
        std::fs::create_dir(d.path().join("uploads/broken")).unwrap();
        drop(s);
        let s = Storage::open(d.path()).unwrap();
        assert!(!s.blob_dir().join(".tmp-x").exists());
        assert_eq!(s.upload_repo(&id).await.as_deref(), Some("a"));
        assert!(!d.path().join("uploads/broken").exists());
        s.purge_uploads(std::time::Duration::ZERO);
        assert!(s.upload_repo(&id).await.is_none());
    }
}
