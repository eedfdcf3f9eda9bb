//! Which registry a reference lives in, and with which credentials the engine talks to it:
//! the docker CLI's `X-Registry-Auth` header (base64url JSON) decoded into
//! [`Credentials`], and a [`Reference`] mapped to its registry host and repository path
//! (docker.io → registry-1.docker.io or a mirror, `library/` for official images).

use berth_registry::client::{base64, Credentials, Endpoint, RegistryError, RegistryOptions};

/// The registry client, for the API's registry routes (so they need no dependency of their own).
pub use berth_registry::client;
use serde::Deserialize;

use crate::config::DaemonFile;
use crate::reference::{Reference, DEFAULT_DOMAIN};
use crate::{EngineError, Result};

/// The JSON inside X-Registry-Auth (docker's `registry.AuthConfig`). Field names are matched
/// case-insensitively by Go's decoder; the CLI sends lower case.
#[derive(Debug, Default, Deserialize)]
struct AuthConfig {
    #[serde(default, alias = "Username")]
    username: String,
    #[serde(default, alias = "Password")]
    password: String,
    #[serde(default, alias = "Auth")]
    auth: String,
    #[serde(default, alias = "ServerAddress", alias = "serveraddress")]
    #[allow(dead_code)]
    serveraddress: String,
    #[serde(default, alias = "IdentityToken")]
    identitytoken: String,
    #[serde(default, alias = "RegistryToken")]
    registrytoken: String,
}

/// Decode an X-Registry-Auth header value. Empty, `{}` or absent → Anonymous. Standard or
/// URL-safe base64, padded or not. A malformed value is a 400, as in Docker.
pub fn decode_registry_auth(header: Option<&str>) -> Result<Credentials> {
    let Some(h) = header.map(str::trim).filter(|h| !h.is_empty()) else {
        return Ok(Credentials::Anonymous);
    };
    let bad = || EngineError::InvalidArgument("invalid X-Registry-Auth header".to_string());
    let raw = base64::decode(h).ok_or_else(bad)?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let text = text.trim();
    if text.is_empty() || text == "{}" || text == "null" {
        return Ok(Credentials::Anonymous);
    }
    let c: AuthConfig = serde_json::from_str(text).map_err(|_| bad())?;
    Ok(credentials_of(c))
}

fn credentials_of(mut c: AuthConfig) -> Credentials {
    if !c.identitytoken.is_empty() {
        return Credentials::IdentityToken(c.identitytoken);
    }
    if !c.registrytoken.is_empty() {
        return Credentials::RegistryToken(c.registrytoken);
    }
    if c.username.is_empty() && c.password.is_empty() && !c.auth.is_empty() {
        if let Some(s) = base64::decode(&c.auth).and_then(|b| String::from_utf8(b).ok()) {
            if let Some((u, p)) = s.split_once(':') {
                c.username = u.to_string();
                c.password = p.to_string();
            }
        }
    }
    if c.username.is_empty() && c.password.is_empty() {
        Credentials::Anonymous
    } else {
        Credentials::Basic {
            username: c.username,
            password: c.password,
        }
    }
}

/// The registry options of a daemon config file.
pub fn options_of(daemon: &DaemonFile) -> RegistryOptions {
    RegistryOptions {
        insecure: daemon.insecure_registries.clone(),
        mirrors: daemon.registry_mirrors.clone(),
    }
}

/// Where a reference is pulled from: the endpoints to try in order, and the repository path on
/// them (`library/busybox` for `busybox`).
#[derive(Debug, Clone)]
pub struct Target {
    /// The registry as references name it: `docker.io`, `127.0.0.1:5000`.
    pub registry: String,
    /// The repository path: `library/busybox`, `ns/repo`.
    pub repository: String,
    pub endpoints: Vec<Endpoint>,
}

/// Map a reference to its registry: docker.io (with `library/` for official images) goes to the
/// mirrors then registry-1.docker.io; anything else to its own host, over HTTP if insecure.
pub fn target(r: &Reference, opts: &RegistryOptions) -> Target {
    let mut repository = r.path.clone();
    if r.domain == DEFAULT_DOMAIN && !repository.contains('/') {
        repository = format!("library/{repository}");
    }
    Target {
        registry: r.domain.clone(),
        repository,
        endpoints: opts.endpoints(&r.domain),
    }
}

/// A registry error as the engine reports it. `what` is the familiar reference.
pub fn engine_error(e: RegistryError, what: &str, repo: &str) -> EngineError {
    match &e {
        RegistryError::Http { status: 404, .. } => {
            EngineError::NotFound(format!("manifest for {what} not found: {e}"))
        }
        _ if e.is_denied() => EngineError::NotFound(format!(
            "pull access denied for {repo}, repository does not exist or may require 'docker login': {e}"
        )),
        RegistryError::Transport(_) | RegistryError::TlsUnsupported(_) => {
            EngineError::Internal(e.to_string())
        }
        RegistryError::Http { .. } => EngineError::Internal(e.to_string()),
        _ => EngineError::InvalidArgument(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(s: &str) -> String {
        base64::encode_url(s.as_bytes())
    }

    #[test]
    fn decodes_registry_auth() {
        assert_eq!(decode_registry_auth(None).unwrap(), Credentials::Anonymous);
        assert_eq!(
            decode_registry_auth(Some(&enc("{}"))).unwrap(),
            Credentials::Anonymous
        );
        let j = r#"{"username":"u","password":"p?>","serveraddress":"127.0.0.1:5000"}"#;
        let want = Credentials::Basic {
            username: "u".into(),
            password: "p?>".into(),
        };
        assert_eq!(decode_registry_auth(Some(&enc(j))).unwrap(), want);
        // Unpadded, and the standard alphabet.
        let unpadded = enc(j).trim_end_matches('=').to_string();
        assert_eq!(decode_registry_auth(Some(&unpadded)).unwrap(), want);
        assert_eq!(
            decode_registry_auth(Some(&base64::encode(j.as_bytes()))).unwrap(),
            want
        );
        let j = r#"{"identitytoken":"tok"}"#;
        assert_eq!(
            decode_registry_auth(Some(&enc(j))).unwrap(),
            Credentials::IdentityToken("tok".into())
        );
        assert_eq!(
            decode_registry_auth(Some(&enc(r#"{"registrytoken":"rt"}"#))).unwrap(),
            Credentials::RegistryToken("rt".into())
        );
        let j = format!(r#"{{"auth":"{}"}}"#, base64::encode(b"a:b"));
        assert_eq!(
            decode_registry_auth(Some(&enc(&j))).unwrap(),
            Credentials::Basic {
                username: "a".into(),
                password: "b".into()
            }
        );
        assert!(decode_registry_auth(Some("!!!")).is_err());
        assert!(decode_registry_auth(Some(&enc("not json"))).is_err());
    }

    #[test]
    fn maps_references_to_registries() {
        let o = RegistryOptions::default();
        let t = target(&Reference::parse("busybox").unwrap(), &o);
        assert_eq!(t.registry, "docker.io");
        assert_eq!(t.repository, "library/busybox");
        assert_eq!(t.endpoints[0].base(), "https://registry-1.docker.io");
        let t = target(&Reference::parse("127.0.0.1:5000/a/b:1").unwrap(), &o);
        assert_eq!(t.repository, "a/b");
        assert_eq!(t.endpoints[0].base(), "http://127.0.0.1:5000");
        let t = target(&Reference::parse("quay.io/x/y").unwrap(), &o);
        assert_eq!(t.endpoints[0].base(), "https://quay.io");
    }
}
