//! Image references as Docker parses them: `busybox` → `docker.io/library/busybox:latest`,
//! `host:port/ns/repo:tag`, `repo@sha256:...`, `repo:tag@sha256:...`. Names are shown the way
//! Docker shows them (familiar form: `busybox:latest`, `localhost:5000/x:1`).

use crate::{EngineError, Result};

/// The registry assumed when a reference names none.
pub const DEFAULT_DOMAIN: &str = "docker.io";
const OFFICIAL_PREFIX: &str = "library/";
const MAX_NAME_LEN: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Registry host, e.g. `docker.io`, `localhost:5000`.
    pub domain: String,
    /// Repository path, e.g. `library/busybox`.
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

fn invalid() -> EngineError {
    EngineError::InvalidArgument("invalid reference format".to_string())
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`
fn valid_path_component(c: &str) -> bool {
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
        // A separator run between two alphanumeric runs.
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

/// `[\w][\w.-]{0,127}`
fn valid_tag(t: &str) -> bool {
    let w = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && w(b[0])
        && b[1..].iter().all(|&x| w(x) || x == b'.' || x == b'-')
}

/// `sha256:[0-9a-f]{64}`
fn valid_digest(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|x| x.is_ascii_digit() || (b'a'..=b'f').contains(&x))
    })
}

/// A registry host: dot-separated labels `[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?` (or a bracketed
/// IPv6 address), with an optional `:port`.
fn valid_domain(d: &str) -> bool {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        let Some(end) = rest.find(']') else {
            return false;
        };
        let addr = &rest[..end];
        if addr.is_empty()
            || !addr
                .bytes()
                .all(|x| x.is_ascii_hexdigit() || x == b':' || x == b'.')
        {
            return false;
        }
        let after = &rest[end + 1..];
        match after.strip_prefix(':') {
            Some(p) => ("", Some(p)),
            None if after.is_empty() => ("", None),
            None => return false,
        }
    } else {
        match d.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (d, None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|x| x.is_ascii_digit()) {
            return false;
        }
    }
    if d.starts_with('[') {
        return true;
    }
    !host.is_empty()
        && host.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|&x| x.is_ascii_alphanumeric() || x == b'-')
        })
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|x| x.is_ascii_digit() || (b'a'..=b'f').contains(&x))
}

impl Reference {
    /// Parse a reference; errors carry Docker's messages ("invalid reference format", "invalid
    /// reference format: repository name (library/Busybox) must be lowercase").
    pub fn parse(s: &str) -> Result<Reference> {
        if s.is_empty() {
            return Err(invalid());
        }
        if is_hex64(s) {
            return Err(EngineError::InvalidArgument(format!(
                "invalid repository name ({s}), cannot specify 64-byte hexadecimal strings"
            )));
        }
        let (name_tag, digest) = match s.split_once('@') {
            Some((n, d)) => {
                if !valid_digest(d) {
                    return Err(invalid());
                }
                (n, Some(d.to_string()))
            }
            None => (s, None),
        };
        // A tag is after the last ':' that follows the last '/'.
        let last_slash = name_tag.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => {
                let t = &name_tag[last_slash + i + 1..];
                if !valid_tag(t) {
                    return Err(invalid());
                }
                (&name_tag[..last_slash + i], Some(t.to_string()))
            }
            None => (name_tag, None),
        };
        if name.is_empty() {
            return Err(invalid());
        }
        // Domain detection as Docker's splitDockerDomain.
        let (mut domain, mut path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.')
                    || first.contains(':')
                    || first == "localhost"
                    || first.to_lowercase() != first =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
        };
        if domain == "index.docker.io" {
            domain = DEFAULT_DOMAIN.to_string();
        }
        if domain == DEFAULT_DOMAIN && !path.contains('/') {
            path = format!("{OFFICIAL_PREFIX}{path}");
        }
        if path.to_lowercase() != path {
            return Err(EngineError::InvalidArgument(format!(
                "invalid reference format: repository name ({path}) must be lowercase"
            )));
        }
        if !valid_domain(&domain) || !path.split('/').all(valid_path_component) {
            return Err(invalid());
        }
        if domain.len() + 1 + path.len() > MAX_NAME_LEN {
            return Err(EngineError::InvalidArgument(
                "invalid reference format: repository name must not be more than 255 characters"
                    .to_string(),
            ));
        }
        Ok(Reference {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// The repository in familiar form: `busybox`, `localhost:5000/x`.
    pub fn familiar_name(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            match self.path.strip_prefix(OFFICIAL_PREFIX) {
                Some(rest) if !rest.contains('/') => rest.to_string(),
                _ => self.path.clone(),
            }
        } else {
            format!("{}/{}", self.domain, self.path)
        }
    }

    /// `familiar_name:tag` with the tag defaulting to `latest` when neither tag nor digest is set.
    /// A reference with only a digest gives `familiar_name@digest`.
    pub fn familiar_tagged(&self) -> String {
        let name = self.familiar_name();
        match (&self.tag, &self.digest) {
            (Some(t), _) => format!("{name}:{t}"),
            (None, Some(d)) => format!("{name}@{d}"),
            (None, None) => format!("{name}:latest"),
        }
    }

    /// The full repository name: `docker.io/library/busybox`.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The full form with everything present: `docker.io/library/busybox:1@sha256:..`.
    pub fn full_string(&self) -> String {
        let mut s = self.full_name();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }

    /// The reference with `latest` added if it has neither tag nor digest.
    pub fn with_default_tag(mut self) -> Reference {
        if self.tag.is_none() && self.digest.is_none() {
            self.tag = Some("latest".to_string());
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Reference {
        Reference::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &str) -> String {
        match Reference::parse(s) {
            Ok(r) => panic!("{s} parsed as {r:?}"),
            Err(e) => e.to_string(),
        }
    }

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// input, domain, path, tag, has digest, familiar name, familiar tagged
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        Option<&'a str>,
        bool,
        &'a str,
        &'a str,
    );

    #[test]
    fn valid_references() {
        let cases: &[Case] = &[
            // input, domain, path, tag, has digest, familiar name, familiar tagged
            (
                "busybox",
                "docker.io",
                "library/busybox",
                None,
                false,
                "busybox",
                "busybox:latest",
            ),
            (
                "busybox:1.36",
                "docker.io",
                "library/busybox",
                Some("1.36"),
                false,
                "busybox",
                "busybox:1.36",
            ),
            (
                "library/busybox",
                "docker.io",
                "library/busybox",
                None,
                false,
                "busybox",
                "busybox:latest",
            ),
            (
                "docker.io/library/busybox:x",
                "docker.io",
                "library/busybox",
                Some("x"),
                false,
                "busybox",
                "busybox:x",
            ),
            (
                "index.docker.io/busybox",
                "docker.io",
                "library/busybox",
                None,
                false,
                "busybox",
                "busybox:latest",
            ),
            (
                "docker.io/foo",
                "docker.io",
                "library/foo",
                None,
                false,
                "foo",
                "foo:latest",
            ),
            (
                "user/repo:v1",
                "docker.io",
                "user/repo",
                Some("v1"),
                false,
                "user/repo",
                "user/repo:v1",
            ),
            (
                "a/b/c",
                "docker.io",
                "a/b/c",
                None,
                false,
                "a/b/c",
                "a/b/c:latest",
            ),
            (
                "library/a/b",
                "docker.io",
                "library/a/b",
                None,
                false,
                "library/a/b",
                "library/a/b:latest",
            ),
            (
                "localhost/x",
                "localhost",
                "x",
                None,
                false,
                "localhost/x",
                "localhost/x:latest",
            ),
            (
                "localhost:5000/x:1",
                "localhost:5000",
                "x",
                Some("1"),
                false,
                "localhost:5000/x",
                "localhost:5000/x:1",
            ),
            (
                "127.0.0.1:5000/ns/img:t",
                "127.0.0.1:5000",
                "ns/img",
                Some("t"),
                false,
                "127.0.0.1:5000/ns/img",
                "127.0.0.1:5000/ns/img:t",
            ),
            (
                "quay.io/coreos/etcd",
                "quay.io",
                "coreos/etcd",
                None,
                false,
                "quay.io/coreos/etcd",
                "quay.io/coreos/etcd:latest",
            ),
            (
                "[::1]:5000/x",
                "[::1]:5000",
                "x",
                None,
                false,
                "[::1]:5000/x",
                "[::1]:5000/x:latest",
            ),
            (
                "Registry.Example/x",
                "Registry.Example",
                "x",
                None,
                false,
                "Registry.Example/x",
                "Registry.Example/x:latest",
            ),
            (
                "a.b_c__d-e---f",
                "docker.io",
                "library/a.b_c__d-e---f",
                None,
                false,
                "a.b_c__d-e---f",
                "a.b_c__d-e---f:latest",
            ),
            (
                "busybox:Tag_1.x-y",
                "docker.io",
                "library/busybox",
                Some("Tag_1.x-y"),
                false,
                "busybox",
                "busybox:Tag_1.x-y",
            ),
            (
                "busybox:_t",
                "docker.io",
                "library/busybox",
                Some("_t"),
                false,
                "busybox",
                "busybox:_t",
            ),
        ];
        for (input, domain, path, tag, digest, fam, famt) in cases {
            let r = p(input);
            assert_eq!(&r.domain, domain, "{input}");
            assert_eq!(&r.path, path, "{input}");
            assert_eq!(r.tag.as_deref(), *tag, "{input}");
            assert_eq!(r.digest.is_some(), *digest, "{input}");
            assert_eq!(&r.familiar_name(), fam, "{input}");
            assert_eq!(&r.familiar_tagged(), famt, "{input}");
        }
    }

    #[test]
    fn digests() {
        let r = p(&format!("busybox@{D}"));
        assert_eq!(r.digest.as_deref(), Some(D));
        assert_eq!(r.tag, None);
        assert_eq!(r.familiar_tagged(), format!("busybox@{D}"));
        assert_eq!(r.clone().with_default_tag().tag, None);

        let r = p(&format!("localhost:5000/x:1@{D}"));
        assert_eq!(r.domain, "localhost:5000");
        assert_eq!(r.tag.as_deref(), Some("1"));
        assert_eq!(r.digest.as_deref(), Some(D));
        assert_eq!(r.full_string(), format!("localhost:5000/x:1@{D}"));

        assert_eq!(err("busybox@sha256:abc"), "invalid reference format");
        assert_eq!(
            err(&format!("busybox@{}", D.to_uppercase())),
            "invalid reference format"
        );
        assert_eq!(err("busybox@md5:0123"), "invalid reference format");
    }

    #[test]
    fn invalid_references() {
        for s in [
            "",
            ":",
            "busybox:",
            ":latest",
            "busybox:-x",
            "busybox:.x",
            "busybox:a b",
            "bus box",
            "busybox/",
            "/busybox",
            "a//b",
            "-busybox",
            "busybox-",
            "a..b",
            "a___b",
            "a._b",
            "localhost:x/y",
            "-host.com/x",
            "host-.com/x",
            "busybox:latest:x",
            "busybox@",
            &format!("busybox:{}", "t".repeat(129)),
        ] {
            assert_eq!(err(s), "invalid reference format", "{s:?}");
        }
        assert!(Reference::parse(&format!("busybox:{}", "t".repeat(128))).is_ok());
    }

    #[test]
    fn uppercase_messages() {
        assert_eq!(
            err("Foo"),
            "invalid reference format: repository name (library/Foo) must be lowercase"
        );
        assert_eq!(
            err("Busybox:1"),
            "invalid reference format: repository name (library/Busybox) must be lowercase"
        );
        assert_eq!(
            err("user/Repo"),
            "invalid reference format: repository name (user/Repo) must be lowercase"
        );
        assert_eq!(
            err("localhost:5000/Repo"),
            "invalid reference format: repository name (Repo) must be lowercase"
        );
        // An upper-case first component is taken as a domain.
        assert_eq!(p("Foo/bar").domain, "Foo");
    }

    #[test]
    fn hex_and_length() {
        let hex = "a".repeat(64);
        assert!(err(&hex).contains("cannot specify 64-byte hexadecimal strings"));
        // 63 hex chars is a valid name.
        assert!(Reference::parse(&"a".repeat(63)).is_ok());
        let long = format!("x/{}", "a".repeat(260));
        assert!(err(&long).contains("must not be more than 255 characters"));
    }

    #[test]
    fn default_tag() {
        assert_eq!(
            p("busybox").with_default_tag().tag.as_deref(),
            Some("latest")
        );
        assert_eq!(p("busybox:1").with_default_tag().tag.as_deref(), Some("1"));
        assert_eq!(
            p("busybox").with_default_tag().full_string(),
            "docker.io/library/busybox:latest"
        );
    }
}
