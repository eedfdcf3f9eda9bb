//! Manifests: fetched with a size cap, their media type checked against what the registry declared,
//! their digest verified, and parsed into an image manifest or an index (manifest list).

use hyper::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_TYPE};
use hyper::Method;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::{
    check_status, header_str, read_limited, Body, RegistryClient, RegistryError, Result, Scope,
    MAX_MANIFEST_SIZE,
};

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_FOREIGN_LAYER: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
const SCHEMA1: &[&str] = &[
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// The Accept header of a manifest GET.
pub const ACCEPT_MANIFESTS: &str = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";

/// Layer media types berth can unpack.
pub fn is_layer_type(mt: &str) -> bool {
    matches!(
        mt,
        DOCKER_LAYER_GZIP | OCI_LAYER | OCI_LAYER_GZIP | OCI_LAYER_ZSTD
    ) || mt == "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        || mt == DOCKER_FOREIGN_LAYER
}

/// Check a digest string: `sha256:` and 64 lower-case hex characters, nothing else (no `..`,
/// no other algorithm: the store keys files by it).
pub fn check_digest(d: &str) -> Result<()> {
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

pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq, Default)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(
        default,
        rename = "os.version",
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
}

impl Platform {
    /// `os/arch[/variant]`, e.g. `linux/arm64/v8`; `arch` alone means linux. Normalises
    /// Docker's aliases (x86_64 → amd64, aarch64 → arm64, armhf → arm/v7).
    pub fn parse(s: &str) -> Option<Platform> {
        let parts: Vec<&str> = s.trim().split('/').collect();
        let (os, arch, variant) = match parts.as_slice() {
            [a] => ("linux", *a, None),
            [o, a] => (*o, *a, None),
            [o, a, v] => (*o, *a, Some(*v)),
            _ => return None,
        };
        if os.is_empty() || arch.is_empty() {
            return None;
        }
        let os = os.to_ascii_lowercase();
        let (arch, mut variant) = match arch.to_ascii_lowercase().as_str() {
            "x86_64" | "x86-64" => ("amd64".to_string(), variant.map(str::to_string)),
            "aarch64" => ("arm64".to_string(), variant.map(str::to_string)),
            "armhf" => ("arm".to_string(), Some("v7".to_string())),
            "armel" => ("arm".to_string(), Some("v6".to_string())),
            a => (a.to_string(), variant.map(str::to_string)),
        };
        if arch == "arm64" && variant.as_deref() == Some("v8") {
            variant = None;
        }
        Some(Platform {
            architecture: arch,
            os,
            variant,
            os_version: None,
        })
    }

    /// The platform this engine runs.
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "arm" => "arm",
            "powerpc64" => "ppc64le",
            "s390x" => "s390x",
            "riscv64" => "riscv64",
            other => other,
        };
        Platform {
            architecture: arch.into(),
            os: "linux".into(),
            variant: None,
            os_version: None,
        }
    }

    /// Whether an index entry's platform satisfies this wanted platform (variant only compared
    /// when wanted; arm64's v8 is the default).
    pub fn matches(&self, entry: &Platform) -> bool {
        if !entry.os.eq_ignore_ascii_case(&self.os)
            || !entry.architecture.eq_ignore_ascii_case(&self.architecture)
        {
            return false;
        }
        match &self.variant {
            None => true,
            Some(v) => {
                let ev = entry.variant.as_deref().unwrap_or("");
                ev.eq_ignore_ascii_case(v)
            }
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
}

impl Descriptor {
    fn check(&self, what: &str) -> Result<()> {
        check_digest(&self.digest)?;
        if self.size < 0 {
            return Err(RegistryError::InvalidManifest(format!(
                "{what} {} has a negative size",
                self.digest
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageManifest {
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    Image(ImageManifest),
    /// Manifest list / OCI index: its entries.
    Index {
        media_type: String,
        manifests: Vec<Descriptor>,
    },
}

/// A manifest as fetched: raw bytes (what the digest covers), its media type and digest.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub raw: Vec<u8>,
    pub media_type: String,
    pub digest: String,
    pub manifest: Manifest,
}

#[derive(Deserialize)]
struct RawManifest {
    #[serde(rename = "schemaVersion", default)]
    schema_version: Option<i64>,
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    fs_layers: Option<serde_json::Value>,
    #[serde(rename = "fsLayers", default)]
    fs_layers2: Option<serde_json::Value>,
}

/// Parse manifest bytes given the media type the registry declared (Content-Type). The declared
/// type, the body's `mediaType` and the body's shape must agree; a document with both
/// `manifests` and `layers`/`config` is refused.
pub fn parse(raw: &[u8], declared: Option<&str>) -> Result<(String, Manifest)> {
    let m: RawManifest = serde_json::from_slice(raw)
        .map_err(|e| RegistryError::InvalidManifest(format!("not a JSON manifest: {e}")))?;
    let declared = declared
        .map(|d| {
            d.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|d| !d.is_empty());
    if let Some(d) = &declared {
        if SCHEMA1.contains(&d.as_str()) || m.fs_layers.is_some() || m.fs_layers2.is_some() {
            return Err(RegistryError::MediaType(format!(
                "{d}: Docker Image manifest version 2, schema 1 is not supported"
            )));
        }
    }
    let generic = |d: &str| d == "application/json" || d == "text/plain";
    let media_type = match (&declared, &m.media_type) {
        (Some(d), Some(b)) if !generic(d) && d != b => {
            return Err(RegistryError::MediaType(format!(
                "the registry declared {d} but the manifest says {b}"
            )))
        }
        (Some(d), _) if !generic(d) => d.clone(),
        (_, Some(b)) => b.clone(),
        // Neither says: an OCI document without mediaType; decide by shape below.
        (_, None) => String::new(),
    };
    if m.schema_version != Some(2) {
        return Err(RegistryError::InvalidManifest(format!(
            "unsupported schemaVersion {:?}",
            m.schema_version
        )));
    }
    let is_index_shape = m.manifests.is_some();
    let is_image_shape = m.config.is_some() || m.layers.is_some();
    if is_index_shape && is_image_shape {
        return Err(RegistryError::InvalidManifest(
            "the document is both an index (manifests) and an image manifest (config, layers)"
                .into(),
        ));
    }
    let media_type = if media_type.is_empty() {
        if is_index_shape {
            OCI_INDEX.to_string()
        } else {
            OCI_MANIFEST.to_string()
        }
    } else {
        media_type
    };
    match media_type.as_str() {
        DOCKER_LIST | OCI_INDEX => {
            let manifests = m.manifests.ok_or_else(|| {
                RegistryError::InvalidManifest(format!("{media_type} without manifests"))
            })?;
            if is_image_shape {
                return Err(RegistryError::InvalidManifest(
                    "an index with config or layers".into(),
                ));
            }
            for d in &manifests {
                d.check("manifest")?;
            }
            Ok((
                media_type.clone(),
                Manifest::Index {
                    media_type,
                    manifests,
                },
            ))
        }
        DOCKER_MANIFEST | OCI_MANIFEST => {
            if is_index_shape {
                return Err(RegistryError::InvalidManifest(
                    "an image manifest with manifests".into(),
                ));
            }
            let config = m.config.ok_or_else(|| {
                RegistryError::InvalidManifest(format!("{media_type} without a config"))
            })?;
            config.check("config")?;
            let layers = m.layers.unwrap_or_default();
            for l in &layers {
                l.check("layer")?;
                if !is_layer_type(&l.media_type) {
                    return Err(RegistryError::MediaType(format!(
                        "layer {} has media type {:?}",
                        l.digest, l.media_type
                    )));
                }
            }
            Ok((
                media_type.clone(),
                Manifest::Image(ImageManifest {
                    media_type,
                    config,
                    layers,
                }),
            ))
        }
        other => Err(RegistryError::MediaType(other.to_string())),
    }
}

/// Pick the entry of an index for `want` (exact os/arch, variant when asked).
pub fn choose<'a>(manifests: &'a [Descriptor], want: &Platform) -> Option<&'a Descriptor> {
    manifests
        .iter()
        .filter(|d| d.platform.as_ref().is_some_and(|p| want.matches(p)))
        .find(|d| {
            // Prefer an entry without a variant or the wanted one; the filter already did that.
            d.media_type != "application/vnd.in-toto+json"
        })
}

pub(super) async fn fetch(
    client: &RegistryClient,
    repository: &str,
    reference: &str,
) -> Result<Fetched> {
    let by_digest = reference.contains(':');
    if by_digest {
        check_digest(reference)?;
    }
    let mut headers = HeaderMap::new();
    headers.insert(ACCEPT, HeaderValue::from_static(ACCEPT_MANIFESTS));
    let resp = client
        .request(
            Method::GET,
            &format!("/v2/{repository}/manifests/{reference}"),
            Some(&Scope::pull(repository)),
            headers,
            Body::Empty,
        )
        .await?;
    let resp = check_status(resp).await?;
    if let Some(len) =
        header_str(resp.headers(), "content-length").and_then(|v| v.parse::<u64>().ok())
    {
        if len > MAX_MANIFEST_SIZE {
            return Err(RegistryError::TooLarge {
                what: "manifest".into(),
                limit: MAX_MANIFEST_SIZE,
            });
        }
    }
    let declared = header_str(resp.headers(), CONTENT_TYPE.as_str()).map(str::to_string);
    let header_digest = header_str(resp.headers(), "docker-content-digest").map(str::to_string);
    let raw = read_limited(resp.into_body(), MAX_MANIFEST_SIZE, "manifest").await?;
    let actual = sha256_digest(&raw);
    if by_digest && actual != reference {
        return Err(RegistryError::DigestMismatch {
            expected: reference.to_string(),
            actual,
        });
    }
    if let Some(h) = header_digest {
        // Only sha256 digests are ours to compare; anything else claimed is refused.
        check_digest(&h)?;
        if h != actual {
            return Err(RegistryError::DigestMismatch {
                expected: h,
                actual,
            });
        }
    }
    let (media_type, manifest) = parse(&raw, declared.as_deref())?;
    Ok(Fetched {
        raw,
        media_type,
        digest: actual,
        manifest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn image(mt: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{mt}","config":{{"mediaType":"{DOCKER_CONFIG}","digest":"{D}","size":3}},"layers":[{{"mediaType":"{DOCKER_LAYER_GZIP}","digest":"{D}","size":5}}]}}"#
        )
    }

    #[test]
    fn parses_and_checks_types() {
        let (mt, m) = parse(image(DOCKER_MANIFEST).as_bytes(), Some(DOCKER_MANIFEST)).unwrap();
        assert_eq!(mt, DOCKER_MANIFEST);
        assert!(matches!(m, Manifest::Image(ref i) if i.layers.len() == 1));
        // Body says Docker, header says OCI.
        assert!(matches!(
            parse(image(DOCKER_MANIFEST).as_bytes(), Some(OCI_MANIFEST)),
            Err(RegistryError::MediaType(_))
        ));
        // A generic content type falls back to the body.
        assert!(parse(image(OCI_MANIFEST).as_bytes(), Some("application/json")).is_ok());
        // Unknown type.
        assert!(matches!(
            parse(image(DOCKER_MANIFEST).as_bytes(), Some("text/html")),
            Err(RegistryError::MediaType(_))
        ));
    }

    #[test]
    fn refuses_index_and_manifest_at_once() {
        let both = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{OCI_CONFIG}","digest":"{D}","size":3}},"layers":[],"manifests":[]}}"#
        );
        for ct in [Some(OCI_INDEX), Some(OCI_MANIFEST), None] {
            let e = parse(both.as_bytes(), ct).unwrap_err();
            assert!(e.to_string().contains("both"), "{e}");
        }
    }

    #[test]
    fn refuses_bad_digests() {
        let bad = image(DOCKER_MANIFEST).replace(D, "sha256:../../../etc/passwd");
        assert!(matches!(
            parse(bad.as_bytes(), Some(DOCKER_MANIFEST)),
            Err(RegistryError::InvalidDigest(_))
        ));
        assert!(check_digest("sha512:00").is_err());
        assert!(check_digest(D).is_ok());
    }

    #[test]
    fn platforms() {
        let p = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(p.to_string(), "linux/arm64");
        let entry = Platform {
            architecture: "arm64".into(),
            os: "linux".into(),
            variant: Some("v8".into()),
            os_version: None,
        };
        assert!(p.matches(&entry));
        assert!(!Platform::parse("linux/amd64").unwrap().matches(&entry));
        assert_eq!(
            Platform::parse("x86_64").unwrap().to_string(),
            "linux/amd64"
        );
        assert!(Platform::parse("a/b/c/d").is_none());
    }
}
