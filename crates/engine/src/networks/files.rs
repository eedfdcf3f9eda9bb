//! A container's /etc/hosts and /etc/resolv.conf, and published port specs.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use berth_net::firewall::Proto;
use bollard_stubs::models::{HostConfig, PortBinding};

use crate::{EngineError, Result};

pub const HOSTS_BASE: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n";

pub fn proto(s: &str) -> Proto {
    if s.eq_ignore_ascii_case("udp") {
        Proto::Udp
    } else {
        Proto::Tcp
    }
}

/// `--add-host` entries (`name:ip` or `name=ip`; `host-gateway` → `gateway`) as hosts lines.
pub fn extra_host_lines(extra: &[String], gateway: Option<Ipv4Addr>) -> Result<String> {
    let mut out = String::new();
    for e in extra {
        let (name, ip) = e
            .split_once('=')
            .or_else(|| e.split_once(':'))
            .ok_or_else(|| {
                EngineError::InvalidArgument(format!("invalid extra host entry {e:?}"))
            })?;
        let ip = if ip == "host-gateway" {
            match gateway {
                Some(g) => g.to_string(),
                None => {
                    return Err(EngineError::InvalidArgument(
                        "unable to derive the IP value for host-gateway".into(),
                    ))
                }
            }
        } else {
            ip.trim_start_matches('[').trim_end_matches(']').to_string()
        };
        out.push_str(&format!("{ip}\t{name}\n"));
    }
    Ok(out)
}

/// /etc/hosts: Docker's base entries, the extra hosts, then the container's own address with
/// its hostname and aliases.
pub fn hosts(
    own: Option<Ipv4Addr>,
    hostname: &str,
    aliases: &[String],
    extra: &[String],
    gateway: Option<Ipv4Addr>,
) -> Result<String> {
    let mut s = HOSTS_BASE.to_string();
    s.push_str(&extra_host_lines(extra, gateway)?);
    if let Some(ip) = own {
        let mut names = vec![hostname.to_string()];
        for a in aliases {
            if !names.contains(a) {
                names.push(a.clone());
            }
        }
        s.push_str(&format!("{ip}\t{}\n", names.join(" ")));
    }
    Ok(s)
}

/// /etc/resolv.conf. `nameserver`: Some(gateway) on user networks (berth's DNS server), else the
/// `--dns` servers or the host's non-loopback ones (Docker's public fallback when none is left).
pub fn resolv_conf(host_text: &str, hc: &HostConfig, nameserver: Option<Ipv4Addr>) -> String {
    let mut servers: Vec<String> = Vec::new();
    let mut search: Vec<String> = Vec::new();
    let mut options: Vec<String> = Vec::new();
    for line in host_text.lines() {
        let mut f = line.split_whitespace();
        match f.next() {
            Some("nameserver") => {
                if let Some(a) = f.next() {
                    let loopback = a.starts_with("127.") || a == "::1";
                    if !loopback {
                        servers.push(a.to_string());
                    }
                }
            }
            Some("search") | Some("domain") => search = f.map(String::from).collect(),
            Some("options") => options.extend(f.map(String::from)),
            _ => {}
        }
    }
    let dns = hc.dns.clone().unwrap_or_default();
    if !dns.is_empty() {
        servers = dns;
    }
    if let Some(ns) = nameserver {
        servers = vec![ns.to_string()];
    }
    if servers.is_empty() {
        servers = vec!["8.8.8.8".into(), "8.8.4.4".into()];
    }
    let ds = hc.dns_search.clone().unwrap_or_default();
    if !ds.is_empty() {
        search = ds.into_iter().filter(|s| s != ".").collect();
    }
    let dopts = hc.dns_options.clone().unwrap_or_default();
    if !dopts.is_empty() {
        options = dopts;
    }
    let mut out = String::new();
    for s in servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

/// `80/tcp` → (80, "tcp").
pub fn parse_port_key(k: &str) -> Result<(u16, String)> {
    let (p, proto) = k.split_once('/').unwrap_or((k, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if proto != "tcp" && proto != "udp" {
        return Err(EngineError::InvalidArgument(format!(
            "unsupported protocol {proto:?} in port {k:?} (berth publishes tcp and udp)"
        )));
    }
    let port: u16 = p.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
        EngineError::InvalidArgument(format!("invalid port specification: {k:?}"))
    })?;
    Ok((port, proto))
}

/// Host port part: "" → any (0..=0), "8080", "8080-8090".
pub fn parse_host_ports(s: &str) -> Result<(u16, u16)> {
    let bad = || EngineError::InvalidArgument(format!("invalid hostPort: {s}"));
    if s.is_empty() {
        return Ok((0, 0));
    }
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b): (u16, u16) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
            if b < a {
                return Err(bad());
            }
            Ok((a, b))
        }
        None => {
            let p: u16 = s.parse().map_err(|_| bad())?;
            Ok((p, p))
        }
    }
}

/// One wanted publication: container port, proto, host ip, host port range (0,0 = random).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortWish {
    pub container_port: u16,
    pub proto: String,
    pub host_ip: Option<Ipv4Addr>,
    pub host_ports: (u16, u16),
}

/// The publications of a container: its PortBindings, plus every exposed port for `-P`.
/// IPv6 host addresses are skipped (berth publishes IPv4 only).
pub fn port_wishes(hc: &HostConfig, exposed: &[String]) -> Result<Vec<PortWish>> {
    let mut out = Vec::new();
    let bindings: BTreeMap<String, Option<Vec<PortBinding>>> = hc
        .port_bindings
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    for (key, list) in &bindings {
        let (port, proto) = parse_port_key(key)?;
        let list = list.clone().unwrap_or_default();
        let list = if list.is_empty() {
            vec![PortBinding::default()]
        } else {
            list
        };
        for b in list {
            let ip = b.host_ip.clone().unwrap_or_default();
            let host_ip = match ip.as_str() {
                "" | "0.0.0.0" => None,
                s if s.contains(':') => continue,
                s => Some(s.parse::<Ipv4Addr>().map_err(|_| {
                    EngineError::InvalidArgument(format!("invalid host IP address: {s}"))
                })?),
            };
            out.push(PortWish {
                container_port: port,
                proto: proto.clone(),
                host_ip,
                host_ports: parse_host_ports(b.host_port.as_deref().unwrap_or(""))?,
            });
        }
    }
    if hc.publish_all_ports == Some(true) {
        let mut keys: Vec<&String> = exposed.iter().collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            if bindings.contains_key(key) {
                continue;
            }
            let (port, proto) = parse_port_key(key)?;
            out.push(PortWish {
                container_port: port,
                proto,
                host_ip: None,
                host_ports: (0, 0),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn hosts_file() {
        let h = hosts(
            Some("10.1.0.2".parse().unwrap()),
            "abc",
            &["web".into()],
            &["gw:host-gateway".into(), "db=10.9.9.9".into()],
            Some("10.1.0.1".parse().unwrap()),
        )
        .unwrap();
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.contains("10.1.0.1\tgw\n"));
        assert!(h.contains("10.9.9.9\tdb\n"));
        assert!(h.ends_with("10.1.0.2\tabc web\n"));
        assert!(hosts(None, "x", &[], &["bad".into()], None).is_err());
        assert!(hosts(None, "x", &[], &["a:host-gateway".into()], None).is_err());
    }

    #[test]
    fn resolv() {
        let host =
            "nameserver 127.0.0.53\nnameserver 192.0.2.1\nsearch example.org\noptions edns0\n";
        let hc = HostConfig::default();
        assert_eq!(
            resolv_conf(host, &hc, None),
            "nameserver 192.0.2.1\nsearch example.org\noptions edns0\n"
        );
        assert_eq!(
            resolv_conf(host, &hc, Some("10.1.0.1".parse().unwrap())),
            "nameserver 10.1.0.1\nsearch example.org\noptions edns0\n"
        );
        let hc = HostConfig {
            dns: Some(vec!["192.0.2.9".into()]),
            dns_search: Some(vec!["a.test".into()]),
            dns_options: Some(vec!["ndots:2".into()]),
            ..Default::default()
        };
        assert_eq!(
            resolv_conf("nameserver 127.0.0.1\n", &hc, None),
            "nameserver 192.0.2.9\nsearch a.test\noptions ndots:2\n"
        );
        assert!(resolv_conf("", &HostConfig::default(), None).contains("8.8.8.8"));
    }

    #[test]
    fn ports() {
        assert_eq!(parse_port_key("80/tcp").unwrap(), (80, "tcp".into()));
        assert_eq!(parse_port_key("53/UDP").unwrap(), (53, "udp".into()));
        assert!(parse_port_key("80/sctp").is_err());
        assert!(parse_port_key("x").is_err());
        assert_eq!(parse_host_ports("").unwrap(), (0, 0));
        assert_eq!(parse_host_ports("8080-8082").unwrap(), (8080, 8082));
        assert!(parse_host_ports("9-8").is_err());
        let hc = HostConfig {
            port_bindings: Some(HashMap::from([(
                "80/tcp".to_string(),
                Some(vec![PortBinding {
                    host_ip: Some("127.0.0.1".into()),
                    host_port: Some("8080".into()),
                }]),
            )])),
            publish_all_ports: Some(true),
            ..Default::default()
        };
        let w = port_wishes(&hc, &["80/tcp".into(), "53/udp".into()]).unwrap();
        assert_eq!(w.len(), 2);
        // Bindings first, then -P's random ones.
        assert_eq!(w[0].host_ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(w[0].host_ports, (8080, 8080));
        assert_eq!(w[1].proto, "udp");
        assert_eq!(w[1].host_ports, (0, 0));
        assert_eq!(w[1].host_ip, None);
    }
}
