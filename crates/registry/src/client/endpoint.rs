//! Where a registry is reached: its endpoints (scheme and authority), plain HTTP for loopback
//! and `insecure-registries`, and mirrors for Docker Hub.

use std::net::IpAddr;

use super::{RegistryError, Result, DOCKER_HUB_HOST};

/// How the engine reaches registries (daemon.json's `insecure-registries` and `registry-mirrors`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryOptions {
    /// `host[:port]` or IPv4 CIDR (`10.0.0.0/8`): reached over plain HTTP. localhost, ::1 and
    /// 127.0.0.0/8 always are.
    pub insecure: Vec<String>,
    /// Mirror URLs (`http://127.0.0.1:5000`, `https://mirror.example`) tried in order before
    /// Docker Hub, for docker.io images only.
    pub mirrors: Vec<String>,
}

/// One base URL of a registry: `http://127.0.0.1:5000`, `https://registry-1.docker.io`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// "http" or "https"
    pub scheme: String,
    /// `host[:port]`
    pub authority: String,
    /// Path prefix of a mirror (without trailing `/`), usually empty.
    pub prefix: String,
    /// True for a docker.io mirror (failures fall through to the next endpoint).
    pub mirror: bool,
    /// HTTPS without certificate verification (insecure registries, as Docker's).
    pub skip_verify: bool,
}

impl Endpoint {
    /// Parse `http://host:port[/prefix]` (a mirror URL) or a bare `host[:port]` (https).
    pub fn parse(url: &str) -> Result<Endpoint> {
        let (scheme, rest) = match url.split_once("://") {
            Some((s, r)) => (s.to_ascii_lowercase(), r),
            None => ("https".to_string(), url),
        };
        if scheme != "http" && scheme != "https" {
            return Err(RegistryError::Protocol(format!("unsupported URL {url:?}")));
        }
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(RegistryError::Protocol(format!("invalid URL {url:?}")));
        }
        Ok(Endpoint {
            scheme,
            authority: authority.to_string(),
            prefix: prefix.to_string(),
            mirror: false,
            skip_verify: false,
        })
    }

    /// `scheme://authority`
    pub fn base(&self) -> String {
        format!("{}://{}{}", self.scheme, self.authority, self.prefix)
    }
}

/// The host of `host[:port]` / `[v6]:port`, lower-cased, without brackets.
fn host_of(authority: &str) -> String {
    let a = authority.to_ascii_lowercase();
    if let Some(rest) = a.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("").to_string();
    }
    match a.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h.to_string(),
        _ => a,
    }
}

fn ipv4_in_cidr(ip: std::net::Ipv4Addr, cidr: &str) -> bool {
    let Some((net, bits)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(net), Ok(bits)) = (net.parse::<std::net::Ipv4Addr>(), bits.parse::<u32>()) else {
        return false;
    };
    if bits > 32 {
        return false;
    }
    let mask = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits)
    };
    (u32::from(ip) & mask) == (u32::from(net) & mask)
}

impl RegistryOptions {
    /// Whether `authority` (`host[:port]`) is reached over plain HTTP.
    pub fn is_insecure(&self, authority: &str) -> bool {
        let host = host_of(authority);
        let ip = host.parse::<IpAddr>().ok();
        if host == "localhost" || ip.is_some_and(|i| i.is_loopback()) {
            return true;
        }
        self.insecure.iter().any(|e| {
            let e = e.trim().trim_end_matches('/');
            let e = e
                .strip_prefix("http://")
                .or_else(|| e.strip_prefix("https://"))
                .unwrap_or(e);
            if e.eq_ignore_ascii_case(authority) || (!e.contains(':') && e == host) {
                return true;
            }
            matches!(ip, Some(IpAddr::V4(v4)) if ipv4_in_cidr(v4, e))
        })
    }

    /// The endpoints to try for a registry host as references name it (`docker.io`,
    /// `127.0.0.1:5000`): the mirrors then registry-1.docker.io for docker.io; otherwise the host
    /// itself, over HTTP when insecure, else HTTPS.
    pub fn endpoints(&self, registry: &str) -> Vec<Endpoint> {
        let mut out = Vec::new();
        if registry == "docker.io" || registry == "index.docker.io" || registry == DOCKER_HUB_HOST {
            for m in &self.mirrors {
                match Endpoint::parse(m) {
                    Ok(mut e) => {
                        e.mirror = true;
                        out.push(e);
                    }
                    Err(err) => tracing::warn!(mirror = %m, error = %err, "ignoring mirror"),
                }
            }
            out.push(Endpoint {
                scheme: "https".into(),
                authority: DOCKER_HUB_HOST.into(),
                prefix: String::new(),
                mirror: false,
                skip_verify: false,
            });
            return out;
        }
        let scheme = if self.is_insecure(registry) {
            "http"
        } else {
            "https"
        };
        out.push(Endpoint {
            scheme: scheme.into(),
            authority: registry.to_string(),
            prefix: String::new(),
            mirror: false,
            skip_verify: false,
        });
        out
    }
}

impl RegistryOptions {
    /// The ways to reach one endpoint of [`RegistryOptions::endpoints`], tried in order while the
    /// previous one fails to connect: an insecure registry's plain-HTTP endpoint is also tried
    /// over HTTPS without certificate verification (first for loopback hosts, which are usually
    /// plain; Docker tries HTTPS first everywhere).
    pub fn candidates(&self, ep: &Endpoint) -> Vec<Endpoint> {
        if ep.scheme != "http" || ep.mirror || !self.is_insecure(&ep.authority) {
            return vec![ep.clone()];
        }
        let mut tls = ep.clone();
        tls.scheme = "https".into();
        tls.skip_verify = true;
        let host = host_of(&ep.authority);
        let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|i| i.is_loopback());
        if loopback {
            vec![ep.clone(), tls]
        } else {
            vec![tls, ep.clone()]
        }
    }
}
