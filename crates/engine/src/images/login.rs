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
