//! Request paths of the distribution API, repository names and references, validated per spec.
//!
//! Repository names become directories under the root, so nothing but the spec's grammar is
//! accepted (`[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` per component, `/`-separated): no `..`, no
//! empty component, nothing starting with `_` (the storage's own directories).

use berth_store::Digest;

use super::error::{Code, RegError, RegResult};

/// What a request path under /v2/ names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Base,
    Catalog,
    Tags(String),
    Manifest(String, Reference),
    Blob(String, Digest),
    UploadStart(String),
    Upload(String, String),
    Referrers(String, Digest),
}

/// A manifest reference: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(String),
    Digest(Digest),
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reference::Tag(t) => f.write_str(t),
            Reference::Digest(d) => write!(f, "{d}"),
        }
    }
}

/// Parse a request path. `Ok(None)`: not a registry path (404 without a spec body).
pub fn parse_route(path: &str) -> RegResult<Option<Route>> {
    let rest = match path.strip_prefix("/v2") {
        Some("") | Some("/") => return Ok(Some(Route::Base)),
        Some(r) => match r.strip_prefix('/') {
            Some(r) => r,
            None => return Ok(None),
        },
        None => return Ok(None),
    };
    if rest == "_catalog" {
        return Ok(Some(Route::Catalog));
    }
    let segs: Vec<&str> = rest.split('/').collect();
    let n = segs.len();
    if n < 2 {
        return Ok(None);
    }
    let name_of = |k: usize| -> RegResult<String> {
        if k == 0 {
            return Err(RegError::new(Code::NameInvalid));
        }
        let name = segs[..k].join("/");
        validate_name(&name)?;
        Ok(name)
    };
    if segs[n - 2] == "tags" && segs[n - 1] == "list" {
        return Ok(Some(Route::Tags(name_of(n - 2)?)));
    }
    if n >= 3 && segs[n - 3] == "blobs" && segs[n - 2] == "uploads" {
        let name = name_of(n - 3)?;
        return Ok(Some(if segs[n - 1].is_empty() {
            Route::UploadStart(name)
        } else {
            Route::Upload(name, segs[n - 1].to_string())
        }));
    }
    if segs[n - 2] == "blobs" && segs[n - 1] == "uploads" {
        return Ok(Some(Route::UploadStart(name_of(n - 2)?)));
    }
    let last = decode_colon(segs[n - 1]);
    match segs[n - 2] {
        "manifests" => {
            let name = name_of(n - 2)?;
            let r = if last.contains(':') {
                Reference::Digest(parse_digest(&last)?)
            } else {
                validate_tag(&last)?;
                Reference::Tag(last)
            };
            Ok(Some(Route::Manifest(name, r)))
        }
        "blobs" => Ok(Some(Route::Blob(name_of(n - 2)?, parse_digest(&last)?))),
        "referrers" => Ok(Some(Route::Referrers(
            name_of(n - 2)?,
            parse_digest(&last)?,
        ))),
        _ => Ok(None),
    }
}

fn decode_colon(s: &str) -> String {
    s.replace("%3A", ":").replace("%3a", ":")
}

/// A digest as the API receives it; only sha256 is supported.
pub fn parse_digest(s: &str) -> RegResult<Digest> {
    Digest::parse(s).map_err(|_| {
        RegError::new(Code::DigestInvalid)
            .msg("invalid or unsupported digest")
            .detail(s)
    })
}

fn component_ok(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or "-+", followed by an alphanumeric.
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// A repository name per the distribution spec (at most 255 characters).
pub fn validate_name(name: &str) -> RegResult<()> {
    if !name.is_empty() && name.len() <= 255 && name.split('/').all(component_ok) {
        Ok(())
    } else {
        Err(RegError::new(Code::NameInvalid).detail(serde_json::json!({ "name": name })))
    }
}

/// A tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn validate_tag(tag: &str) -> RegResult<()> {
    let b = tag.as_bytes();
    let first = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    let ok = !b.is_empty()
        && b.len() <= 128
        && first(b[0])
        && b[1..].iter().all(|&x| first(x) || x == b'.' || x == b'-');
    if ok {
        Ok(())
    } else {
        Err(RegError::new(Code::TagInvalid)
            .msg("invalid tag")
            .detail(serde_json::json!({ "tag": tag })))
    }
}

/// An upload session id as we create them (32 hex characters); anything else is unknown.
pub fn valid_upload_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn names() {
        for ok in ["a", "library/busybox", "a.b/c-d/e__f", "x--y", "0/1/2"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "A",
            "a/",
            "/a",
            "a//b",
            "..",
            "a/../b",
            "a/.",
            "_a",
            "a_",
            "a___b",
            "a.-b",
            "a/_layers",
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        assert!(validate_name(&"a".repeat(256)).is_err());
    }

    #[test]
    fn tags() {
        assert!(validate_tag("latest").is_ok());
        assert!(validate_tag("_v1.2-rc").is_ok());
        assert!(validate_tag(".x").is_err());
        assert!(validate_tag("a/b").is_err());
        assert!(validate_tag(&"a".repeat(129)).is_err());
    }

    #[test]
    fn routes() {
        assert_eq!(parse_route("/v2/").unwrap(), Some(Route::Base));
        assert_eq!(parse_route("/v2").unwrap(), Some(Route::Base));
        assert_eq!(parse_route("/v2/_catalog").unwrap(), Some(Route::Catalog));
        assert_eq!(
            parse_route("/v2/a/b/tags/list").unwrap(),
            Some(Route::Tags("a/b".into()))
        );
        assert_eq!(
            parse_route("/v2/a/blobs/uploads/").unwrap(),
            Some(Route::UploadStart("a".into()))
        );
        assert_eq!(
            parse_route("/v2/a/blobs/uploads/0123456789abcdef0123456789abcdef").unwrap(),
            Some(Route::Upload(
                "a".into(),
                "0123456789abcdef0123456789abcdef".into()
            ))
        );
        let d = Digest::parse(D).unwrap();
        assert_eq!(
            parse_route(&format!("/v2/a/manifests/x/manifests/{D}")).unwrap(),
            Some(Route::Manifest(
                "a/manifests/x".into(),
                Reference::Digest(d.clone())
            ))
        );
        assert_eq!(
            parse_route(&format!("/v2/a/blobs/{D}")).unwrap(),
            Some(Route::Blob("a".into(), d.clone()))
        );
        assert_eq!(
            parse_route(&format!("/v2/a/referrers/{D}")).unwrap(),
            Some(Route::Referrers("a".into(), d))
        );
        assert!(parse_route("/v2/../x/manifests/latest").is_err());
        assert!(parse_route("/v2/a/blobs/sha256:..%2f").is_err());
        assert!(parse_route("/v2/a/manifests/bad:tag").is_err());
        assert_eq!(parse_route("/v3/").unwrap(), None);
    }
}
