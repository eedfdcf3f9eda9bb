//! The build cache: (parent image, the step's expanded instruction with the hashes of the files
//! it reads and the build args it uses) → the image the step produced. Records live in the
//! metadata db (table `build_cache`), so they survive engine restarts; a record whose image is
//! gone is a miss.

use berth_store::meta::Db;
use berth_store::Digest;
use serde::{Deserialize, Serialize};

use crate::images::{ImageRecord, ImageService};
use crate::Result;

pub const CACHE_TABLE: &str = "build_cache";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CacheRecord {
    /// The image the step produced.
    pub image: Digest,
    /// What the step was (its history `created_by`), for `builder prune` listings.
    pub created_by: String,
    /// RFC 3339.
    pub created: String,
    /// Bytes of the layer the step added (0 for metadata steps).
    #[serde(default)]
    pub size: u64,
}

/// The cache key of a step: sha256 over the parent id and the step's parts (NUL-separated).
pub fn key(parent: &str, parts: &[&str]) -> String {
    let mut data = Vec::with_capacity(256);
    data.extend_from_slice(b"berth-build-cache-v1\0");
    data.extend_from_slice(parent.as_bytes());
    for p in parts {
        data.push(0);
        data.extend_from_slice(p.as_bytes());
    }
    Digest::of(&data).hex().to_string()
}

/// The image cached under `key`, if it is still there.
pub fn lookup(images: &ImageService, key: &str) -> Result<Option<ImageRecord>> {
    let Some(rec) = images.db.get::<CacheRecord>(CACHE_TABLE, key)? else {
        return Ok(None);
    };
    let img = images.get(&rec.image)?;
    Ok(img.filter(|i| i.layers.iter().all(|l| images.layers.exists(&l.chain_id))))
}

pub fn store(db: &Db, key: &str, image: &Digest, created_by: &str, size: u64) -> Result<()> {
    let rec = CacheRecord {
        image: image.clone(),
        created_by: created_by.to_string(),
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        size,
    };
    db.put(CACHE_TABLE, key, &rec)?;
    Ok(())
}

/// Every record (key, record).
pub fn list(db: &Db) -> Result<Vec<(String, CacheRecord)>> {
    Ok(db.list::<CacheRecord>(CACHE_TABLE)?)
}

/// Remove every record in one transaction; returns their keys and how many there were.
pub fn prune(db: &Db) -> Result<(Vec<String>, usize)> {
    let all = list(db)?;
    let mut b = berth_store::meta::Batch::default();
    for (k, _) in &all {
        b.delete(CACHE_TABLE, k);
    }
    if !all.is_empty() {
        db.write(b)?;
    }
    let n = all.len();
    Ok((all.into_iter().map(|(k, _)| k).collect(), n))
}

/// The records as Docker's `BuildCache` objects (`GET /system/df`).
pub fn usage(db: &Db) -> Vec<serde_json::Value> {
    list(db)
        .unwrap_or_default()
        .into_iter()
        .map(|(k, r)| {
            serde_json::json!({
                "ID": &k[..k.len().min(25)],
                "Parent": "",
                "Type": "regular",
                "Description": r.created_by,
                "InUse": false,
                "Shared": false,
                "Size": r.size,
                "CreatedAt": r.created,
                "LastUsedAt": null,
                "UsageCount": 0,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_records() {
        let a = key("sha256:1", &["RUN x"]);
        assert_eq!(a, key("sha256:1", &["RUN x"]));
        assert_ne!(a, key("sha256:2", &["RUN x"]));
        assert_ne!(a, key("sha256:1", &["RUN y"]));
        assert_ne!(key("p", &["a", "b"]), key("p", &["ab"]));
        let d = tempfile::tempdir().unwrap();
        let db = Db::open(&d.path().join("m.db")).unwrap();
        let img = Digest::of(b"img");
        store(&db, &a, &img, "RUN x", 3).unwrap();
        let u = usage(&db);
        assert_eq!(u.len(), 1);
        assert_eq!(u[0]["Size"], 3);
        assert_eq!(u[0]["Description"], "RUN x");
        assert_eq!(list(&db).unwrap().len(), 1);
        let (keys, n) = prune(&db).unwrap();
        assert_eq!((keys, n), (vec![a], 1));
        assert!(list(&db).unwrap().is_empty());
    }
}
