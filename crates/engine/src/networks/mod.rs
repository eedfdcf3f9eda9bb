//! The network service: Docker's networks (`bridge`, `host`, `none` and user-defined bridge
//! networks) on top of berth-net's kernel parts. Networks are records in the metadata db (table
//! `networks`); what a container is attached to is recorded per container (table
//! `net_endpoints`: configured endpoints, and while it runs its addresses, interfaces and
//! published ports), so that an engine restart rebuilds the firewall, the port reservations and
//! the DNS names of running containers.
//!
//! - this file: records, the in-memory state, network create/list/inspect/remove/prune.
//! - [`endpoints`]: the container side (create plan, start set-up, release, connect/disconnect,
//!   the NetworkSettings of inspect), as `impl ContainerService`.
//! - [`files`]: /etc/hosts and /etc/resolv.conf of a container, published port specs.

pub mod endpoints;
pub mod files;
mod glue;
mod manage;
mod reconcile;

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use berth_net::dns::DnsServer;
use berth_net::firewall::{Firewall, NetRules};
use berth_net::ports::Reservation;
use berth_net::{Ipv4Net, NetError};
use berth_store::meta::Db;
use serde::{Deserialize, Serialize};

use crate::{EngineConfig, EngineError, Result};

pub const TABLE: &str = "networks";
pub const EP_TABLE: &str = "net_endpoints";

/// Defaults that keep clear of Docker's 172.17.0.0/16 so both engines can share a host.
pub const DEFAULT_BIP: &str = "10.88.0.1/16";
pub const DEFAULT_BRIDGE: &str = "berth0";
pub const DEFAULT_POOL: &str = "10.89.0.0/16";
pub const DEFAULT_POOL_SIZE: u8 = 24;
pub const DEFAULT_TABLE: &str = "berth";
pub const OPT_BRIDGE_NAME: &str = "com.docker.network.bridge.name";

/// A network as recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkRecord {
    pub id: String,
    pub name: String,
    /// "bridge", "host" or "null".
    pub driver: String,
    pub created: String,
    /// Network address with prefix, e.g. "10.89.0.0/24" (bridge driver only).
    #[serde(default)]
    pub subnet: Option<String>,
    #[serde(default)]
    pub gateway: Option<String>,
    #[serde(default)]
    pub ip_range: Option<String>,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub attachable: bool,
    #[serde(default)]
    pub labels: HashMap<String, String>,
    #[serde(default)]
    pub options: HashMap<String, String>,
    /// The bridge device (bridge driver only).
    #[serde(default)]
    pub bridge: Option<String>,
    /// `bridge`, `host`, `none`: listed, never removed.
    #[serde(default)]
    pub predefined: bool,
    /// Whether the user gave the subnet (else it came from the pools).
    #[serde(default)]
    pub user_subnet: bool,
}

impl NetworkRecord {
    pub fn is_bridge(&self) -> bool {
        self.driver == "bridge"
    }
    /// The default `bridge` network (no DNS, legacy inspect fields).
    pub fn is_default_bridge(&self) -> bool {
        self.predefined && self.is_bridge()
    }
    pub fn subnet_net(&self) -> Option<Ipv4Net> {
        self.subnet
            .as_deref()
            .and_then(|s| Ipv4Net::parse(s).ok())
            .map(|n| n.network())
    }
    pub fn gateway_ip(&self) -> Option<Ipv4Addr> {
        self.gateway.as_deref().and_then(|g| g.parse().ok())
    }
    pub fn range_net(&self) -> Option<Ipv4Net> {
        self.ip_range
            .as_deref()
            .and_then(|s| Ipv4Net::parse(s).ok())
    }
    /// The bridge as berth-net wants it (gateway address with the subnet's prefix).
    pub fn bridge_spec(&self) -> Option<berth_net::link::Bridge> {
        let (name, subnet, gw) = (self.bridge.clone()?, self.subnet_net()?, self.gateway_ip()?);
        Some(berth_net::link::Bridge {
            name,
            address: Ipv4Net {
                addr: gw,
                prefix: subnet.prefix,
            },
            mtu: None,
        })
    }
    pub fn rules(&self) -> Option<NetRules> {
        Some(NetRules {
            bridge: self.bridge.clone()?,
            subnet: self.subnet_net()?,
            internal: self.internal,
            masquerade: !self.internal
                && self
                    .options
                    .get("com.docker.network.bridge.enable_ip_masquerade")
                    .map(|v| v != "false")
                    .unwrap_or(true),
            icc: self
                .options
                .get("com.docker.network.bridge.enable_icc")
                .map(|v| v != "false")
                .unwrap_or(true),
            gateway: self.gateway_ip()?,
        })
    }
}

/// One endpoint of a container: configured at create/connect, live while the container runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Endpoint {
    pub network_id: String,
    /// Network-scoped aliases (`--network-alias`, `connect --alias`).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// `--ip`.
    #[serde(default)]
    pub wanted_ip: Option<Ipv4Addr>,
    // ---- while running ----
    #[serde(default)]
    pub endpoint_id: String,
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
    #[serde(default)]
    pub prefix: u8,
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
    #[serde(default)]
    pub mac: Option<[u8; 6]>,
    #[serde(default)]
    pub ifname: String,
    #[serde(default)]
    pub host_ifname: String,
}

impl Endpoint {
    pub fn clear_live(&mut self) {
        self.endpoint_id.clear();
        self.ip = None;
        self.prefix = 0;
        self.gateway = None;
        self.mac = None;
        self.ifname.clear();
        self.host_ifname.clear();
    }
}

/// A published port while the container runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedPort {
    /// "tcp" or "udp".
    pub proto: String,
    pub container_port: u16,
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
}

/// Everything networking about one container (table `net_endpoints`, key = container id).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Attachment {
    pub container_id: String,
    /// In interface order (eth0 first) for bridge modes.
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    #[serde(default)]
    pub ports: Vec<PublishedPort>,
    /// The namespace file while running (bridge modes).
    #[serde(default)]
    pub netns: Option<PathBuf>,
    #[serde(default)]
    pub running: bool,
}

/// State shared by the network code, behind one lock.
#[derive(Default)]
pub(crate) struct State {
    pub nets: HashMap<String, NetworkRecord>,
    pub atts: HashMap<String, Attachment>,
    pub reservations: HashMap<String, Vec<Reservation>>,
    pub dns_listening: HashSet<Ipv4Addr>,
    /// Containers set up by this engine process (restore leaves them alone: a restart policy
    /// may start one while restore runs).
    pub started_here: HashSet<String>,
}

pub struct NetworkService {
    pub cfg: EngineConfig,
    db: Arc<Db>,
    pub(crate) state: Mutex<State>,
    /// Serialises changes of the kernel's state (set-up, teardown, firewall).
    pub(crate) ops: Mutex<()>,
    pub firewall: Firewall,
    pub dns: Arc<DnsServer>,
    /// False when the daemon config says `"bridge": "none"`.
    pub default_bridge_enabled: bool,
}

pub(crate) fn net_err(e: NetError) -> EngineError {
    match e {
        NetError::InvalidAddress(_) => EngineError::InvalidArgument(e.to_string()),
        NetError::AddressInUse(_) => EngineError::Conflict(e.to_string()),
        _ => EngineError::Internal(e.to_string()),
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The host's resolv.conf as containers should see it: /etc/resolv.conf, or systemd-resolved's
/// list of real upstreams when /etc/resolv.conf names only a loopback stub (as Docker does).
pub fn host_resolv_text() -> String {
    let etc = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let has_real = etc
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .any(|a| {
            let a = a.trim();
            !a.starts_with("127.") && a != "::1"
        });
    if !has_real {
        if let Ok(t) = std::fs::read_to_string("/run/systemd/resolve/resolv.conf") {
            return t;
        }
    }
    etc
}

/// The upstream resolvers of the host (non-loopback nameservers, see [`host_resolv_text`]).
pub fn host_nameservers() -> Vec<Ipv4Addr> {
    let text = host_resolv_text();
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse::<Ipv4Addr>().ok())
        .filter(|a| !a.is_loopback())
        .collect()
}

/// IPv4 routes of the host (from /proc/net/route), default route excluded.
pub fn host_routes() -> Vec<Ipv4Net> {
    let text = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        let (Ok(dst), Ok(mask)) = (u32::from_str_radix(f[1], 16), u32::from_str_radix(f[7], 16))
        else {
            continue;
        };
        // The kernel prints the address as a native (little-endian) u32.
        let dst = Ipv4Addr::from(dst.to_le_bytes());
        let prefix = mask.count_ones() as u8;
        if prefix == 0 {
            continue;
        }
        out.push(Ipv4Net { addr: dst, prefix }.network());
    }
    out
}

impl NetworkService {
    pub fn new(cfg: EngineConfig, db: Arc<Db>) -> Arc<NetworkService> {
        let table = cfg
            .daemon
            .nft_table
            .clone()
            .unwrap_or_else(|| DEFAULT_TABLE.to_string());
        let upstreams = host_nameservers()
            .into_iter()
            .map(|a| std::net::SocketAddr::from((a, 53)))
            .collect();
        let default_bridge_enabled = cfg.daemon.bridge.as_deref() != Some("none");
        Arc::new(NetworkService {
            cfg,
            db,
            state: Mutex::new(State::default()),
            ops: Mutex::new(()),
            firewall: Firewall::new(&table),
            dns: DnsServer::new(upstreams),
            default_bridge_enabled,
        })
    }

    pub fn netns_dir(&self) -> PathBuf {
        self.cfg.exec_root.join("netns")
    }
    pub fn netns_path(&self, container_id: &str) -> PathBuf {
        self.netns_dir().join(container_id)
    }

    pub fn default_bridge_name(&self) -> String {
        match self.cfg.daemon.bridge.as_deref() {
            Some(b) if !b.is_empty() && b != "none" => b.to_string(),
            _ => DEFAULT_BRIDGE.to_string(),
        }
    }

    fn pools(&self) -> Result<Vec<(Ipv4Net, u8)>> {
        if self.cfg.daemon.default_address_pools.is_empty() {
            return Ok(vec![(
                Ipv4Net::parse(DEFAULT_POOL).map_err(net_err)?,
                DEFAULT_POOL_SIZE,
            )]);
        }
        self.cfg
            .daemon
            .default_address_pools
            .iter()
            .map(|p| {
                Ipv4Net::parse(&p.base).map(|n| (n, p.size)).map_err(|_| {
                    EngineError::InvalidArgument(format!(
                        "invalid default-address-pools base {:?}",
                        p.base
                    ))
                })
            })
            .collect()
    }

    // ---- lookups ----

    pub fn all(&self) -> Vec<NetworkRecord> {
        let mut v: Vec<NetworkRecord> = lock(&self.state).nets.values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Docker's order: full id, exact name, unique id prefix.
    pub fn find(&self, name_or_id: &str) -> Result<NetworkRecord> {
        let st = lock(&self.state);
        let not_found = || EngineError::NotFound(format!("network {name_or_id} not found"));
        if name_or_id.is_empty() {
            return Err(not_found());
        }
        if let Some(n) = st.nets.get(name_or_id) {
            return Ok(n.clone());
        }
        if let Some(n) = st.nets.values().find(|n| n.name == name_or_id) {
            return Ok(n.clone());
        }
        let m: Vec<&NetworkRecord> = st
            .nets
            .values()
            .filter(|n| n.id.starts_with(name_or_id))
            .collect();
        match m.len() {
            1 => Ok(m[0].clone()),
            0 => Err(not_found()),
            _ => Err(EngineError::InvalidArgument(format!(
                "network {name_or_id} is ambiguous ({} matches found based on ID prefix)",
                m.len()
            ))),
        }
    }

    pub fn get_by_id(&self, id: &str) -> Option<NetworkRecord> {
        lock(&self.state).nets.get(id).cloned()
    }

    /// Ids of running containers with an endpoint on network `id`.
    pub fn active_endpoints(&self, id: &str) -> Vec<String> {
        let st = lock(&self.state);
        let mut v: Vec<String> = st
            .atts
            .values()
            .filter(|a| a.running && a.endpoints.iter().any(|e| e.network_id == id))
            .map(|a| a.container_id.clone())
            .collect();
        v.sort();
        v
    }

    pub fn attachment(&self, container_id: &str) -> Option<Attachment> {
        lock(&self.state).atts.get(container_id).cloned()
    }

    pub(crate) fn save_attachment(&self, a: &Attachment) -> Result<()> {
        self.db.put(EP_TABLE, &a.container_id, a)?;
        lock(&self.state)
            .atts
            .insert(a.container_id.clone(), a.clone());
        Ok(())
    }

    /// [`Self::save_attachment`] without its own fsync, for the start path: the container's
    /// durable "running" record follows in the same database and carries this one to disk. A
    /// crash before it leaves the older record, which `restore` reconciles (the namespace of a
    /// container that is not live is removed, and the pair with it).
    pub(crate) fn save_attachment_lazy(&self, a: &Attachment) -> Result<()> {
        self.db.put_lazy(EP_TABLE, &a.container_id, a)?;
        lock(&self.state)
            .atts
            .insert(a.container_id.clone(), a.clone());
        Ok(())
    }

    pub(crate) fn delete_attachment(&self, container_id: &str) -> Result<()> {
        self.db.delete(EP_TABLE, container_id)?;
        lock(&self.state).atts.remove(container_id);
        Ok(())
    }

    fn put_network(&self, n: &NetworkRecord) -> Result<()> {
        self.db.put(TABLE, &n.id, n)?;
        lock(&self.state).nets.insert(n.id.clone(), n.clone());
        Ok(())
    }

    /// Apply the firewall for every bridge network and every running container's ports.
    pub(crate) fn apply_firewall(&self) -> Result<()> {
        let (nets, ports) = {
            let st = lock(&self.state);
            let nets: Vec<NetRules> = st
                .nets
                .values()
                .filter(|n| n.is_bridge())
                .filter_map(|n| n.rules())
                .collect();
            let mut ports = Vec::new();
            for a in st.atts.values().filter(|a| a.running) {
                let Some(ip) = a.endpoints.first().and_then(|e| e.ip) else {
                    continue;
                };
                for p in &a.ports {
                    ports.push(berth_net::firewall::PortRule {
                        proto: files::proto(&p.proto),
                        host_ip: p.host_ip,
                        host_port: p.host_port,
                        container_ip: ip,
                        container_port: p.container_port,
                    });
                }
            }
            (nets, ports)
        };
        self.firewall.apply(&nets, &ports).map_err(net_err)
    }

    /// Replace the DNS names of every user-defined network from the running endpoints.
    /// `names`: container id → (name, hostname).
    pub(crate) fn refresh_dns(&self, names: &HashMap<String, (String, String)>) {
        let st = lock(&self.state);
        let mut scopes: HashMap<String, HashMap<String, Vec<Ipv4Addr>>> = st
            .nets
            .values()
            .filter(|n| n.is_bridge() && !n.is_default_bridge())
            .map(|n| (n.id.clone(), HashMap::new()))
            .collect();
        for a in st.atts.values().filter(|a| a.running) {
            let Some((name, _host)) = names.get(&a.container_id) else {
                continue;
            };
            for ep in &a.endpoints {
                let (Some(ip), Some(scope)) = (ep.ip, scopes.get_mut(&ep.network_id)) else {
                    continue;
                };
                let mut add = |n: &str| {
                    let e = scope.entry(n.to_ascii_lowercase()).or_default();
                    if !e.contains(&ip) {
                        e.push(ip);
                    }
                };
                add(name);
                add(&a.container_id[..12.min(a.container_id.len())]);
                for al in &ep.aliases {
                    add(al);
                }
            }
        }
        for (scope, records) in scopes {
            self.dns.set_records(&scope, records);
        }
    }

    /// Create the bridge device of a network and start its DNS server (user networks).
    pub(crate) async fn bring_up(&self, n: &NetworkRecord) -> Result<()> {
        let Some(spec) = n.bridge_spec() else {
            return Ok(());
        };
        tokio::task::spawn_blocking(move || berth_net::link::ensure_bridge(&spec))
            .await
            .map_err(|e| EngineError::Internal(e.to_string()))?
            .map_err(net_err)?;
        if !n.is_default_bridge() {
            if let Some(gw) = n.gateway_ip() {
                let already = lock(&self.state).dns_listening.contains(&gw);
                if !already {
                    match self.dns.listen(&n.id, gw, 53, !n.internal).await {
                        Ok(()) => {
                            lock(&self.state).dns_listening.insert(gw);
                        }
                        Err(NetError::NotImplemented(w)) => {
                            tracing::warn!("network {}: no DNS server ({w})", n.name)
                        }
                        Err(e) => return Err(net_err(e)),
                    }
                }
            }
        }
        Ok(())
    }

    /// Stop the DNS server of a network and delete its bridge.
    pub(crate) async fn bring_down(&self, n: &NetworkRecord) {
        if let Some(gw) = n.gateway_ip() {
            let was = lock(&self.state).dns_listening.remove(&gw);
            if was {
                self.dns.unlisten(gw).await;
            }
        }
        if let Some(b) = n.bridge.clone() {
            let r = tokio::task::spawn_blocking(move || berth_net::link::delete_link(&b)).await;
            if let Ok(Err(e)) = r {
                tracing::warn!("deleting bridge of network {}: {e}", n.name);
            }
        }
    }
}

/// `POST /networks/create` after the API decoded it.
#[derive(Debug, Clone, Default)]
pub struct CreateNetwork {
    pub name: String,
    pub driver: String,
    pub internal: bool,
    pub attachable: bool,
    pub ipam: Vec<IpamPool>,
    pub options: HashMap<String, String>,
    pub labels: HashMap<String, String>,
}

#[derive(Debug, Clone, Default)]
pub struct IpamPool {
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub ip_range: Option<String>,
}

/// Filters of `GET /networks` and `POST /networks/prune`, decoded.
#[derive(Debug, Clone, Default)]
pub struct NetworkFilters {
    pub name: Vec<String>,
    pub id: Vec<String>,
    pub label: Vec<String>,
    pub label_not: Vec<String>,
    pub driver: Vec<String>,
    /// "custom" / "builtin".
    pub typ: Vec<String>,
    /// Prune: only networks created before this RFC 3339 time.
    pub until: Option<chrono::DateTime<chrono::Utc>>,
}

fn label_match(labels: &HashMap<String, String>, want: &str) -> bool {
    match want.split_once('=') {
        Some((k, v)) => labels.get(k).map(|x| x == v).unwrap_or(false),
        None => labels.contains_key(want),
    }
}

impl NetworkFilters {
    pub fn matches(&self, n: &NetworkRecord) -> bool {
        (self.name.is_empty() || self.name.iter().any(|v| n.name.contains(v.as_str())))
            && (self.id.is_empty() || self.id.iter().any(|v| n.id.starts_with(v.as_str())))
            && self.label.iter().all(|l| label_match(&n.labels, l))
            && !self.label_not.iter().any(|l| label_match(&n.labels, l))
            && (self.driver.is_empty() || self.driver.contains(&n.driver))
            && (self.typ.is_empty()
                || self
                    .typ
                    .iter()
                    .any(|t| (t == "custom" && !n.predefined) || (t == "builtin" && n.predefined)))
            && match self.until {
                Some(t) => chrono::DateTime::parse_from_rfc3339(&n.created)
                    .map(|c| c.with_timezone(&chrono::Utc) < t)
                    .unwrap_or(false),
                None => true,
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters() {
        let n = NetworkRecord {
            id: "abcdef".into(),
            name: "front-net".into(),
            driver: "bridge".into(),
            created: "2026-01-01T00:00:00Z".into(),
            subnet: Some("10.1.0.0/24".into()),
            gateway: Some("10.1.0.1".into()),
            ip_range: None,
            internal: false,
            attachable: false,
            labels: HashMap::from([("tier".to_string(), "web".to_string())]),
            options: HashMap::new(),
            bridge: Some("br-abcdef".into()),
            predefined: false,
            user_subnet: true,
        };
        let mut f = NetworkFilters::default();
        assert!(f.matches(&n));
        f.name = vec!["front".into()];
        assert!(f.matches(&n));
        f.label = vec!["tier=web".into()];
        assert!(f.matches(&n));
        f.typ = vec!["builtin".into()];
        assert!(!f.matches(&n));
        f.typ = vec!["custom".into()];
        f.label_not = vec!["tier".into()];
        assert!(!f.matches(&n));
        let r = n.rules().unwrap();
        assert!(r.masquerade && r.icc && !r.internal);
        assert_eq!(r.subnet.to_string(), "10.1.0.0/24");
        let b = n.bridge_spec().unwrap();
        assert_eq!(b.address.to_string(), "10.1.0.1/24");
    }

    #[test]
    fn routes_parse() {
        // Only checks that reading the host's table does not panic and skips the default.
        assert!(host_routes().iter().all(|r| r.prefix > 0));
    }
}
