//! Basic authentication from an htpasswd file with bcrypt entries (as Docker's registry: other
//! hash schemes are refused at load). Successful checks are cached (user → sha256 of the password)
//! so a pull does not pay one bcrypt per request.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use axum::http::{header, HeaderMap};
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use super::error::{Code, RegError, RegResult};
use super::storage::blocking;

pub const REALM: &str = "berth-registry";

pub struct Htpasswd {
    users: HashMap<String, String>,
    ok_cache: std::sync::Mutex<HashSet<(String, [u8; 32])>>,
}

impl Htpasswd {
    pub fn load(path: &Path) -> Result<Htpasswd, String> {
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        Htpasswd::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Htpasswd, String> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (u, h) = line
                .split_once(':')
                .ok_or_else(|| format!("line {}: expected user:hash", i + 1))?;
            if !["$2a$", "$2b$", "$2x$", "$2y$"]
                .iter()
                .any(|p| h.starts_with(p))
            {
                return Err(format!("line {}: only bcrypt entries are supported", i + 1));
            }
            users.insert(u.to_string(), h.to_string());
        }
        Ok(Htpasswd {
            users,
            ok_cache: std::sync::Mutex::new(HashSet::new()),
        })
    }

    /// Ok if the request carries valid Basic credentials, else 401 with a Basic challenge.
    pub async fn check(&self, headers: &HeaderMap) -> RegResult<()> {
        let deny = || {
            RegError::new(Code::Unauthorized)
                .header(header::WWW_AUTHENTICATE, format!("Basic realm=\"{REALM}\""))
        };
        let v = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(deny)?;
        let b64 = v
            .strip_prefix("Basic ")
            .or_else(|| v.strip_prefix("basic "))
            .ok_or_else(deny)?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| deny())?;
        let raw = String::from_utf8(raw).map_err(|_| deny())?;
        let (user, pass) = raw.split_once(':').ok_or_else(deny)?;
        let hash = self.users.get(user).ok_or_else(deny)?.clone();
        let key = (
            user.to_string(),
            <[u8; 32]>::from(Sha256::digest(pass.as_bytes())),
        );
        if self
            .ok_cache
            .lock()
            .map(|c| c.contains(&key))
            .unwrap_or(false)
        {
            return Ok(());
        }
        let pass = pass.to_string();
        let ok = blocking(move || Ok(bcrypt::verify(pass, &hash).unwrap_or(false))).await?;
        if !ok {
            return Err(deny());
        }
        if let Ok(mut c) = self.ok_cache.lock() {
            c.insert(key);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn basic(u: &str, p: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {v}")).unwrap(),
        );
        h
    }

    #[tokio::test]
    async fn htpasswd() {
        let hash = bcrypt::hash("s3cret", 4)
            .unwrap()
            .replacen("$2b$", "$2y$", 1);
        let h = Htpasswd::parse(&format!("# comment\nalice:{hash}\n")).unwrap();
        assert!(h.check(&basic("alice", "s3cret")).await.is_ok());
        assert!(h.check(&basic("alice", "s3cret")).await.is_ok()); // cached
        let e = h.check(&basic("alice", "wrong")).await.unwrap_err();
        assert_eq!(e.code, Code::Unauthorized);
        assert!(h.check(&basic("bob", "s3cret")).await.is_err());
        assert!(h.check(&HeaderMap::new()).await.is_err());
        assert!(Htpasswd::parse("carol:{SHA}abc").is_err());
    }
}
