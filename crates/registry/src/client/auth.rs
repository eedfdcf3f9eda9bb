//! Registry authentication: the `WWW-Authenticate` challenge of `/v2/` (Basic, or Bearer with
//! realm/service/scope) and the token exchange at the realm (GET with Basic credentials, or the
//! OAuth2 POST with a refresh token for identity tokens).

use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::Method;
use percent_encoding::utf8_percent_encode;

use super::{
    base64, check_status, read_limited, Body, Credentials, RegistryClient, RegistryError, Result,
    Scope, MAX_MANIFEST_SIZE,
};

const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

impl Challenge {
    /// The first usable challenge (Bearer preferred) among the WWW-Authenticate headers.
    pub fn from_headers(h: &HeaderMap) -> Option<Challenge> {
        let mut basic = false;
        for v in h.get_all(WWW_AUTHENTICATE) {
            let Ok(s) = v.to_str() else { continue };
            match Challenge::parse(s) {
                Some(c @ Challenge::Bearer { .. }) => return Some(c),
                Some(Challenge::Basic) => basic = true,
                None => {}
            }
        }
        basic.then_some(Challenge::Basic)
    }

    /// `Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="..."`
    /// or `Basic realm="..."`.
    pub fn parse(s: &str) -> Option<Challenge> {
        let s = s.trim();
        let (scheme, rest) = s.split_once(' ').unwrap_or((s, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Challenge::Basic);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let params = parse_params(rest);
        let get = |k: &str| {
            params
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.clone())
        };
        let realm = get("realm")?;
        if !(realm.starts_with("http://") || realm.starts_with("https://")) {
            return None;
        }
        Some(Challenge::Bearer {
            realm,
            service: get("service"),
            scope: get("scope"),
        })
    }
}

/// `k="v", k2=v2` (quoted values may contain commas and `\"`).
fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b',' || b[i] == b' ') {
            i += 1;
        }
        let ks = i;
        while i < b.len() && b[i] != b'=' && b[i] != b',' {
            i += 1;
        }
        let key = s[ks..i].trim().to_string();
        if i >= b.len() || b[i] != b'=' {
            continue;
        }
        i += 1;
        let mut val = String::new();
        if i < b.len() && b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' && i + 1 < b.len() {
                    i += 1;
                }
                let ch = s[i..].chars().next().unwrap_or(' ');
                val.push(ch);
                i += ch.len_utf8();
            }
            i += 1;
        } else {
            let vs = i;
            while i < b.len() && b[i] != b',' {
                i += 1;
            }
            val = s[vs..i].trim().to_string();
        }
        if !key.is_empty() {
            out.push((key, val));
        }
    }
    out
}

fn enc(s: &str) -> String {
    utf8_percent_encode(s, QUERY_VALUE).to_string()
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

/// Get a Bearer token for `scope` at `realm`.
pub(super) async fn fetch_token(
    client: &RegistryClient,
    realm: &str,
    service: Option<&str>,
    scope: Option<&Scope>,
) -> Result<String> {
    let mut headers = HeaderMap::new();
    let (method, url, body) = match client.credentials() {
        Credentials::IdentityToken(refresh) => {
            let mut form = format!(
                "grant_type=refresh_token&client_id=berth&refresh_token={}",
                enc(refresh)
            );
            if let Some(s) = service {
                form.push_str(&format!("&service={}", enc(s)));
            }
            if let Some(sc) = scope {
                form.push_str(&format!("&scope={}", enc(&sc.as_token_scope())));
            }
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            );
            (
                Method::POST,
                realm.to_string(),
                Body::Bytes(Bytes::from(form)),
            )
        }
        creds => {
            let mut q = Vec::new();
            if let Some(s) = service {
                q.push(format!("service={}", enc(s)));
            }
            if let Some(sc) = scope {
                q.push(format!("scope={}", enc(&sc.as_token_scope())));
            }
            if let Credentials::Basic { username, password } = creds {
                q.push(format!("account={}", enc(username)));
                let v = format!(
                    "Basic {}",
                    base64::encode(format!("{username}:{password}").as_bytes())
                );
                headers.insert(
                    AUTHORIZATION,
                    HeaderValue::from_str(&v).map_err(|_| {
                        RegistryError::Protocol("credentials not valid in a header".into())
                    })?,
                );
            }
            let sep = if realm.contains('?') { '&' } else { '?' };
            let url = if q.is_empty() {
                realm.to_string()
            } else {
                format!("{realm}{sep}{}", q.join("&"))
            };
            (Method::GET, url, Body::Empty)
        }
    };
    let b = body
        .replay()
        .ok_or_else(|| RegistryError::Protocol("token request body".into()))?;
    let resp = client.send_once(&method, &url, &headers, b).await?;
    let resp = check_status(resp).await.map_err(|e| match e {
        RegistryError::Unauthorized(m) => RegistryError::Unauthorized(m),
        RegistryError::Http {
            status: 403,
            message,
            ..
        } => RegistryError::Unauthorized(message),
        other => other,
    })?;
    let data = read_limited(resp.into_body(), MAX_MANIFEST_SIZE, "token response").await?;
    let t: TokenResponse = serde_json::from_slice(&data)
        .map_err(|e| RegistryError::Protocol(format!("token response: {e}")))?;
    t.token
        .filter(|t| !t.is_empty())
        .or(t.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| RegistryError::Protocol("token response without a token".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        assert_eq!(
            Challenge::parse(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull,push".into()),
            })
        );
        assert_eq!(
            Challenge::parse(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(Challenge::parse("Bearer service=x"), None);
        assert_eq!(Challenge::parse(r#"Bearer realm="file:///x""#), None);
        assert_eq!(Challenge::parse("Digest realm=x"), None);
    }

    #[test]
    fn encodes_scope() {
        assert_eq!(
            enc("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
    }
}
