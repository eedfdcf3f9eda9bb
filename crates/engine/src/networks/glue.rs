//! The container service's use of networks: hooks called by create/start/exit/rm, the network
//! verbs that need container names (inspect, connect, disconnect, prune), and the network JSON of
//! container inspect and `ps`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use bollard_stubs::models::{EndpointSettings, HostConfig, NetworkingConfig};
use serde_json::{json, Value};

use super::endpoints::{mode_of, Mode, SetupInput};
use super::{Attachment, CreateNetwork, NetworkFilters, NetworkRecord};
use crate::containers::{ContainerService, Record};
use crate::{EngineError, Result};

fn mac_str(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl ContainerService {
    /// id → (name without `/`, hostname) of every container (DNS names).
    pub fn dns_names(&self) -> HashMap<String, (String, String)> {
        self.all()
            .iter()
            .map(|c| c.snapshot())
            .map(|r| {
                (
                    r.id.clone(),
                    (
                        r.name.trim_start_matches('/').to_string(),
                        r.config.hostname.clone().unwrap_or_default(),
                    ),
                )
            })
            .collect()
    }

    /// At create: validate and normalise the network settings. Record with [`Self::net_save_plan`].
    pub fn net_plan(
        &self,
        hc: &mut HostConfig,
        nc: Option<&NetworkingConfig>,
        exposed: &[String],
    ) -> Result<Attachment> {
        if let Mode::Container(other) = mode_of(hc) {
            self.get(&other)?;
        }
        self.networks.plan(hc, nc, exposed)
    }

    pub fn net_save_plan(&self, id: &str, mut att: Attachment) -> Result<()> {
        att.container_id = id.to_string();
        self.networks.save_attachment(&att)
    }

    /// Blocking, at start: set the network up; returns the netns for the spec.
    pub fn net_setup(&self, rec: &Record) -> Result<Option<PathBuf>> {
        let hc = &rec.host_config;
        let join = match mode_of(hc) {
            Mode::Container(other) => {
                let o = self.get(&other)?.snapshot();
                if !o.state.status.is_live() {
                    return Err(EngineError::Conflict(format!(
                        "cannot join network namespace of a non running container: {}",
                        o.id
                    )));
                }
                let ns = match self.networks.attachment(&o.id).and_then(|a| a.netns) {
                    Some(p) if p.exists() => p,
                    _ => PathBuf::from(format!("/proc/{}/ns/net", o.state.pid)),
                };
                Some((ns, self.dir(&o.id)))
            }
            _ => None,
        };
        let names = self.dns_names();
        let hostname = rec
            .config
            .hostname
            .clone()
            .unwrap_or_else(|| rec.id[..12].to_string());
        let exposed = rec.config.exposed_ports.clone().unwrap_or_default();
        let dir = self.dir(&rec.id);
        let netns = self.networks.setup(&SetupInput {
            id: &rec.id,
            name: rec.name.trim_start_matches('/'),
            hostname: &hostname,
            host_config: hc,
            exposed: &exposed,
            dir: &dir,
            join,
            names: &names,
        })?;
        // Docker's `network connect` events of a start, one per endpoint.
        for ep in self
            .networks
            .attachment(&rec.id)
            .map(|a| a.endpoints)
            .unwrap_or_default()
        {
            if let Some(n) = self.networks.get_by_id(&ep.network_id) {
                self.emit_network(&n, "connect", Some(&rec.id));
            }
        }
        Ok(netns)
    }

    /// `ps --filter network=X`: X names (or is the id or an id prefix of) one of its networks.
    pub fn on_networks(&self, r: &Record, wanted: &[String]) -> bool {
        let ids: Vec<String> = match mode_of(&r.host_config) {
            Mode::Host => self
                .networks
                .find("host")
                .map(|n| vec![n.id])
                .unwrap_or_default(),
            Mode::None => self
                .networks
                .find("none")
                .map(|n| vec![n.id])
                .unwrap_or_default(),
            Mode::Container(_) => Vec::new(),
            Mode::Net(_) => self
                .networks
                .attachment(&r.id)
                .map(|a| a.endpoints.into_iter().map(|e| e.network_id).collect())
                .unwrap_or_default(),
        };
        wanted.iter().any(|w| {
            ids.iter().any(|id| {
                id.starts_with(w.as_str())
                    || self
                        .networks
                        .get_by_id(id)
                        .map(|n| n.name == *w)
                        .unwrap_or(false)
            })
        })
    }

    /// After a rename: the DNS names follow.
    pub fn refresh_network_names(&self) {
        self.networks.refresh_dns(&self.dns_names());
    }

    /// Give back what a run took (idempotent; after exit, failed start, at rm).
    pub async fn release_network(&self, id: &str) {
        let was: Vec<String> = self
            .networks
            .attachment(id)
            .filter(|a| a.running)
            .map(|a| a.endpoints.iter().map(|e| e.network_id.clone()).collect())
            .unwrap_or_default();
        let nets = self.networks.clone();
        let names = self.dns_names();
        let cid = id.to_string();
        let _ = tokio::task::spawn_blocking(move || nets.release(&cid, &names)).await;
        for nid in was {
            if let Some(n) = self.networks.get_by_id(&nid) {
                self.emit_network(&n, "disconnect", Some(id));
            }
        }
    }

    /// At rm: release and forget the container's endpoints.
    pub async fn forget_network(&self, id: &str) {
        self.release_network(id).await;
        if let Err(e) = self.networks.delete_attachment(id) {
            tracing::warn!(container = %id, "forgetting network endpoints: {e}");
        }
    }

    /// Engine start, before container reconciliation.
    pub async fn open_networks(&self) -> Result<()> {
        self.networks.open().await
    }

    /// Engine start, after container reconciliation.
    pub async fn restore_networks(&self) -> Result<()> {
        let recs: Vec<Record> = self.all().iter().map(|c| c.snapshot()).collect();
        let live: HashSet<String> = recs
            .iter()
            .filter(|r| r.state.status.is_live())
            .map(|r| r.id.clone())
            .collect();
        let exists: HashSet<String> = recs.iter().map(|r| r.id.clone()).collect();
        let names = self.dns_names();
        let nets = self.networks.clone();
        tokio::task::spawn_blocking(move || nets.restore(&live, &exists, &names))
            .await
            .map_err(|e| EngineError::Internal(e.to_string()))?
    }

    /// Engine shutdown.
    pub async fn shutdown_networks(&self) {
        let any = self
            .all()
            .iter()
            .any(|c| c.snapshot().state.status.is_live());
        self.networks.shutdown(any).await;
    }

    fn emit_network(&self, n: &NetworkRecord, action: &str, container: Option<&str>) {
        let mut attrs = HashMap::from([
            ("name".to_string(), n.name.clone()),
            ("type".to_string(), n.driver.clone()),
        ]);
        if let Some(c) = container {
            attrs.insert("container".into(), c.to_string());
        }
        self.events.emit("network", action, &n.id, attrs);
    }

    // ---- network verbs ----

    pub async fn network_create(&self, req: CreateNetwork) -> Result<NetworkRecord> {
        let n = self.networks.create(req).await?;
        self.emit_network(&n, "create", None);
        Ok(n)
    }

    pub async fn network_remove(&self, name: &str) -> Result<()> {
        let n = self.networks.remove(name).await?;
        self.emit_network(&n, "destroy", None);
        Ok(())
    }

    fn endpoints_of(&self, n: &NetworkRecord) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        for cid in self.networks.active_endpoints(&n.id) {
            let Some(att) = self.networks.attachment(&cid) else {
                continue;
            };
            let Some(ep) = att.endpoints.iter().find(|e| e.network_id == n.id) else {
                continue;
            };
            let name = self
                .get(&cid)
                .map(|c| c.snapshot().name.trim_start_matches('/').to_string())
                .unwrap_or_default();
            out.insert(
                cid.clone(),
                json!({
                    "Name": name,
                    "EndpointID": ep.endpoint_id,
                    "MacAddress": ep.mac.as_ref().map(mac_str).unwrap_or_default(),
                    "IPv4Address": ep.ip.map(|ip| format!("{ip}/{}", ep.prefix)).unwrap_or_default(),
                    "IPv6Address": "",
                }),
            );
        }
        out
    }

    pub fn network_inspect(&self, name: &str) -> Result<Value> {
        let n = self.networks.find(name)?;
        Ok(self.networks.to_json(&n, self.endpoints_of(&n)))
    }

    pub fn network_list(&self, f: &NetworkFilters) -> Vec<Value> {
        self.networks
            .all()
            .into_iter()
            .filter(|n| f.matches(n))
            .map(|n| self.networks.to_json(&n, BTreeMap::new()))
            .collect()
    }

    /// Remove user networks without running endpoints that match `f`. Returns their names.
    pub async fn network_prune(&self, f: &NetworkFilters) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for n in self.networks.all() {
            if n.predefined || !f.matches(&n) || !self.networks.active_endpoints(&n.id).is_empty() {
                continue;
            }
            if self.network_remove(&n.id).await.is_ok() {
                removed.push(n.name.clone());
            }
        }
        Ok(removed)
    }

    pub async fn network_connect(
        self: &Arc<Self>,
        network: &str,
        container: &str,
        settings: Option<EndpointSettings>,
    ) -> Result<()> {
        let n = self.networks.find(network)?;
        let c = self.get(container)?;
        let _g = c.op_lock.lock().await;
        let rec = c.snapshot();
        let nets = self.networks.clone();
        let names = self.dns_names();
        let hc = rec.host_config.clone();
        let id = rec.id.clone();
        let n2 = n.clone();
        tokio::task::spawn_blocking(move || nets.connect(&id, &hc, &n2, settings.as_ref(), &names))
            .await
            .map_err(|e| EngineError::Internal(e.to_string()))??;
        self.emit_network(&n, "connect", Some(&rec.id));
        Ok(())
    }

    pub async fn network_disconnect(
        self: &Arc<Self>,
        network: &str,
        container: &str,
        _force: bool,
    ) -> Result<()> {
        let n = self.networks.find(network)?;
        let c = self.get(container)?;
        let _g = c.op_lock.lock().await;
        let rec = c.snapshot();
        let nets = self.networks.clone();
        let names = self.dns_names();
        let hc = rec.host_config.clone();
        let id = rec.id.clone();
        let n2 = n.clone();
        tokio::task::spawn_blocking(move || nets.disconnect(&id, &hc, &n2, &names))
            .await
            .map_err(|e| EngineError::Internal(e.to_string()))??;
        self.emit_network(&n, "disconnect", Some(&rec.id));
        Ok(())
    }

    // ---- JSON for containers ----

    fn endpoint_json(&self, net: &NetworkRecord, ep: Option<&super::Endpoint>) -> Value {
        let (aliases, ipam) = match ep {
            Some(e) => (
                (!e.aliases.is_empty()).then(|| json!(e.aliases)),
                e.wanted_ip.map(|ip| json!({"IPv4Address": ip.to_string()})),
            ),
            None => (None, None),
        };
        let live = ep.filter(|e| e.ip.is_some());
        json!({
            "IPAMConfig": ipam,
            "Links": null,
            "Aliases": aliases,
            "MacAddress": live.and_then(|e| e.mac.as_ref()).map(mac_str).unwrap_or_default(),
            "DriverOpts": null,
            "GwPriority": 0,
            "NetworkID": net.id,
            "EndpointID": live.map(|e| e.endpoint_id.clone()).unwrap_or_default(),
            "Gateway": live.and_then(|e| e.gateway).map(|g| g.to_string()).unwrap_or_default(),
            "IPAddress": live.and_then(|e| e.ip).map(|g| g.to_string()).unwrap_or_default(),
            "IPPrefixLen": live.map(|e| e.prefix).unwrap_or(0),
            "IPv6Gateway": "",
            "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "DNSNames": null,
        })
    }

    /// name → endpoint JSON of a container's networks.
    fn networks_json(&self, r: &Record) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        match mode_of(&r.host_config) {
            Mode::Host | Mode::None => {
                let name = if mode_of(&r.host_config) == Mode::Host {
                    "host"
                } else {
                    "none"
                };
                if let Ok(n) = self.networks.find(name) {
                    m.insert(name.into(), self.endpoint_json(&n, None));
                }
            }
            Mode::Container(_) => {}
            Mode::Net(primary) => {
                let att = self.networks.attachment(&r.id).unwrap_or_default();
                if att.endpoints.is_empty() {
                    if let Ok(n) = self.networks.find(&primary) {
                        m.insert(n.name.clone(), self.endpoint_json(&n, None));
                    }
                }
                for ep in &att.endpoints {
                    if let Some(n) = self.networks.get_by_id(&ep.network_id) {
                        m.insert(n.name.clone(), self.endpoint_json(&n, Some(ep)));
                    }
                }
            }
        }
        m
    }

    /// `NetworkSettings.Ports`: published ports of a running container, exposed ones as null.
    fn ports_json(&self, r: &Record) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        let att = self.networks.attachment(&r.id).unwrap_or_default();
        if !att.running {
            return m;
        }
        for e in r.config.exposed_ports.clone().unwrap_or_default() {
            let key = if e.contains('/') {
                e
            } else {
                format!("{e}/tcp")
            };
            m.insert(key, Value::Null);
        }
        for p in &att.ports {
            let key = format!("{}/{}", p.container_port, p.proto);
            let b = json!({
                "HostIp": p.host_ip.map(|i| i.to_string()).unwrap_or_else(|| "0.0.0.0".into()),
                "HostPort": p.host_port.to_string(),
            });
            match m.get_mut(&key) {
                Some(Value::Array(a)) => a.push(b),
                _ => {
                    m.insert(key, json!([b]));
                }
            }
        }
        m
    }

    /// `NetworkSettings` of container inspect.
    pub fn network_settings_json(&self, r: &Record) -> Value {
        let att = self.networks.attachment(&r.id).unwrap_or_default();
        let networks = self.networks_json(r);
        // Docker's legacy top-level fields mirror the default bridge's endpoint.
        let legacy = self
            .networks
            .find("bridge")
            .ok()
            .filter(|n| n.is_default_bridge())
            .and_then(|n| networks.get(&n.name).cloned())
            .unwrap_or_else(|| json!({}));
        let f = |k: &str, d: Value| legacy.get(k).cloned().unwrap_or(d);
        let sandbox = att
            .netns
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        json!({
            "Bridge": "",
            "SandboxID": if att.running { r.id.clone() } else { String::new() },
            "SandboxKey": sandbox,
            "Ports": self.ports_json(r),
            "HairpinMode": false,
            "LinkLocalIPv6Address": "",
            "LinkLocalIPv6PrefixLen": 0,
            "SecondaryIPAddresses": null,
            "SecondaryIPv6Addresses": null,
            "EndpointID": f("EndpointID", json!("")),
            "Gateway": f("Gateway", json!("")),
            "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "IPAddress": f("IPAddress", json!("")),
            "IPPrefixLen": f("IPPrefixLen", json!(0)),
            "IPv6Gateway": "",
            "MacAddress": f("MacAddress", json!("")),
            "Networks": networks,
        })
    }

    /// `Ports` and `NetworkSettings` of a `GET /containers/json` entry.
    pub fn network_summary_json(&self, r: &Record) -> (Value, Value) {
        let att = self.networks.attachment(&r.id).unwrap_or_default();
        let mut ports = Vec::new();
        if att.running {
            let mut published = HashSet::new();
            for p in &att.ports {
                published.insert(format!("{}/{}", p.container_port, p.proto));
                ports.push(json!({
                    "IP": p.host_ip.map(|i| i.to_string()).unwrap_or_else(|| "0.0.0.0".into()),
                    "PrivatePort": p.container_port,
                    "PublicPort": p.host_port,
                    "Type": p.proto,
                }));
            }
            for e in r.config.exposed_ports.clone().unwrap_or_default() {
                if let Ok((port, proto)) = super::files::parse_port_key(&e) {
                    if !published.contains(&format!("{port}/{proto}")) {
                        ports.push(json!({"PrivatePort": port, "Type": proto}));
                    }
                }
            }
        }
        (
            Value::Array(ports),
            json!({"Networks": self.networks_json(r)}),
        )
    }
}
