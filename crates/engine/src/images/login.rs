//! `POST /auth` (`docker login`): check credentials against a registry's `/v2/` endpoint, with
//! Basic auth or the Bearer token flow (the shared registry client does both).

use berth_registry::client::{Credentials, RegistryClient, RegistryError, RegistryOptions};

use crate::reference::DEFAULT_DOMAIN;
use crate::{EngineError, Result};

/// What the registry said about the credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginOutcome {
    /// Accepted. Docker returns an identity token when the registry hands out refresh tokens;
    /// berth does not ask for one (always empty).
    Succeeded { identity_token: String },
    /// Refused: Docker's message (the API answers 401 with it).
    Denied(String),
}

/// The registry host a login's `serveraddress` names: scheme and path dropped; empty, docker.io
/// and Docker Hub's index URL mean docker.io.
pub fn login_host(server: &str) -> String {
    let s = server.trim();
    let s = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
        .unwrap_or(s);
    let host = s.split('/').next().unwrap_or("").to_ascii_lowercase();
    match host.as_str() {
        "" | "index.docker.io" | "registry-1.docker.io" | DEFAULT_DOMAIN => {
            DEFAULT_DOMAIN.to_string()
        }
        _ => host,
    }
}

/// Check `username`/`password` against the registry named by `server`.
pub async fn login(
    options: &RegistryOptions,
    username: &str,
    password: &str,
    server: &str,
) -> Result<LoginOutcome> {
    let host = login_host(server);
    let Some(endpoint) = options.endpoints(&host).pop() else {
        return Err(EngineError::InvalidArgument(format!(
            "no endpoint for registry {host}"
        )));
    };
    let creds = if username.is_empty() && password.is_empty() {
        Credentials::Anonymous
    } else {
        Credentials::Basic {
            username: username.to_string(),
            password: password.to_string(),
        }
    };
    let url = format!("{}/v2/", endpoint.base());
    let denied = || {
        LoginOutcome::Denied(format!(
            "login attempt to {url} failed with status: 401 Unauthorized"
        ))
    };
    let client =
        RegistryClient::new(&endpoint, creds).map_err(|e| EngineError::Internal(e.to_string()))?;
    match client.ping().await {
        Ok(true) => Ok(LoginOutcome::Succeeded {
            identity_token: String::new(),
        }),
        Ok(false) => Ok(denied()),
        Err(e @ RegistryError::Unauthorized(_)) => {
            Ok(LoginOutcome::Denied(format!("Get \"{url}\": {e}")))
        }
        Err(e) if e.is_denied() => Ok(denied()),
        Err(e) => Err(EngineError::Internal(format!("Get \"{url}\": {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A registry on 127.0.0.1 that wants a Bearer token from its realm, which hands one out
    /// for `u`/`right` only. Returns its `host:port`.
    async fn bearer_registry() -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let realm = format!("http://{addr}/token");
        tokio::spawn(async move {
            loop {
                let Ok((mut c, _)) = l.accept().await else {
                    return;
                };
                let realm = realm.clone();
                tokio::spawn(async move {
                    let mut req = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                        match c.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&req).to_string();
                    let path = text.split(' ').nth(1).unwrap_or("").to_string();
                    let auth = text
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("authorization")
                                .then(|| v.trim().to_string())
                        })
                        .unwrap_or_default();
                    let good_basic = format!(
                        "Basic {}",
                        berth_registry::client::base64::encode(b"u:right")
                    );
                    let (status, extra, body) = if path.starts_with("/token") {
                        if auth == good_basic {
                            ("200 OK", String::new(), r#"{"token":"good-token"}"#)
                        } else {
                            (
                                "401 Unauthorized",
                                String::new(),
                                r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#,
                            )
                        }
                    } else if auth == "Bearer good-token" {
                        ("200 OK", String::new(), "{}")
                    } else {
                        (
                            "401 Unauthorized",
                            format!(
                                "WWW-Authenticate: Bearer realm=\"{realm}\",service=\"fake\"\r\n"
                            ),
                            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
                        )
                    };
                    let resp = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = c.write_all(resp.as_bytes()).await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn login_through_a_token_realm() {
        let addr = bearer_registry().await;
        let o = RegistryOptions::default();
        let ok = login(&o, "u", "right", &addr).await.unwrap();
        assert_eq!(
            ok,
            LoginOutcome::Succeeded {
                identity_token: String::new()
            }
        );
        match login(&o, "u", "wrong", &addr).await.unwrap() {
            LoginOutcome::Denied(m) => assert!(m.contains(&addr), "{m}"),
            other => panic!("wrong password accepted: {other:?}"),
        }
        // Nothing listens there: an error, not a denial.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        assert!(login(&o, "u", "right", &closed).await.is_err());
    }

    #[test]
    fn hosts_of_login_addresses() {
        assert_eq!(login_host(""), "docker.io");
        assert_eq!(login_host("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(login_host("docker.io"), "docker.io");
        assert_eq!(login_host("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(login_host("http://127.0.0.1:5000/v2/"), "127.0.0.1:5000");
        assert_eq!(login_host("Reg.Example.com"), "reg.example.com");
    }
}
