//! Network create, remove and the network JSON.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use berth_net::Ipv4Net;
use serde_json::{json, Value};

use super::{
    host_routes, lock, net_err, CreateNetwork, NetworkRecord, NetworkService, OPT_BRIDGE_NAME,
    TABLE,
};
use crate::{EngineError, Result};

impl NetworkService {
    // ---- network create / remove / prune ----

    pub async fn create(&self, req: CreateNetwork) -> Result<NetworkRecord> {
        let name = req.name.trim().to_string();
        if name.is_empty() {
            return Err(EngineError::InvalidArgument(
                "network name must not be empty".into(),
            ));
        }
        let driver = if req.driver.is_empty() {
            "bridge".to_string()
        } else {
            req.driver.clone()
        };
        if driver == "host" || driver == "null" {
            return Err(EngineError::Forbidden(format!(
                "only one instance of \"{driver}\" network is allowed"
            )));
        }
        if driver != "bridge" {
            return Err(EngineError::NotFound(format!(
                "plugin \"{driver}\" not found"
            )));
        }
        if lock(&self.state).nets.values().any(|n| n.name == name) {
            return Err(EngineError::Conflict(format!(
                "network with name {name} already exists"
            )));
        }
        if req.ipam.len() > 1 {
            return Err(EngineError::InvalidArgument(
                "berth supports one IPv4 subnet per network".into(),
            ));
        }
        let cfg = req.ipam.first().cloned().unwrap_or_default();
        let id = berth_store::atomic::random_hex(32);
        // Hold `ops` so that two creates cannot pick the same subnet.
        let _ops = lock(&self.ops);
        // Again under `ops`: two creates of one name race to here.
        if lock(&self.state).nets.values().any(|n| n.name == name) {
            return Err(EngineError::Conflict(format!(
                "network with name {name} already exists"
            )));
        }
        let taken: Vec<Ipv4Net> = lock(&self.state)
            .nets
            .values()
            .filter_map(|n| n.subnet_net())
            .collect();
        let invalid = |what: &str, v: &str| {
            EngineError::InvalidArgument(format!("invalid {what}: {v:?} is not an IPv4 CIDR"))
        };
        let (subnet, user_subnet) = match cfg.subnet.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => {
                let n = Ipv4Net::parse(s).map_err(|_| invalid("subnet", s))?;
                if n.addr != n.network().addr {
                    return Err(EngineError::InvalidArgument(format!(
                        "invalid subnet {s}: it should be {}",
                        n.network()
                    )));
                }
                if taken.iter().any(|t| t.overlaps(&n)) {
                    return Err(EngineError::InvalidArgument(
                        "invalid pool request: Pool overlaps with other one on this address space"
                            .into(),
                    ));
                }
                (n, true)
            }
            None => {
                let mut t = taken.clone();
                t.extend(host_routes());
                let n = berth_net::ipam::next_subnet(&self.pools()?, &t).map_err(|_| {
                    EngineError::Forbidden(
                        "all predefined address pools have been fully subnetted".into(),
                    )
                })?;
                (n.network(), false)
            }
        };
        let gateway = match cfg.gateway.as_deref().filter(|s| !s.is_empty()) {
            Some(g) => {
                let ip: Ipv4Addr = g.parse().map_err(|_| invalid("gateway", g))?;
                if !subnet.contains(ip) {
                    return Err(EngineError::InvalidArgument(format!(
                        "no matching subnet for gateway {g}"
                    )));
                }
                ip
            }
            None => berth_net::ipam::default_gateway(&subnet).map_err(net_err)?,
        };
        let ip_range = match cfg.ip_range.as_deref().filter(|s| !s.is_empty()) {
            Some(r) => {
                let n = Ipv4Net::parse(r).map_err(|_| invalid("ip-range", r))?;
                if !subnet.contains(n.addr) || n.prefix < subnet.prefix {
                    return Err(EngineError::InvalidArgument(format!(
                        "no matching subnet for range {r}"
                    )));
                }
                Some(n.network().to_string())
            }
            None => None,
        };
        let bridge = req
            .options
            .get(OPT_BRIDGE_NAME)
            .cloned()
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| format!("br-{}", &id[..12]));
        if bridge.len() > 15 {
            return Err(EngineError::InvalidArgument(format!(
                "bridge name {bridge:?} is longer than 15 characters"
            )));
        }
        if lock(&self.state)
            .nets
            .values()
            .any(|n| n.bridge.as_deref() == Some(bridge.as_str()))
        {
            return Err(EngineError::Conflict(format!(
                "bridge name {bridge} is already used by another network"
            )));
        }
        let rec = NetworkRecord {
            id,
            name,
            driver,
            created: crate::containers::now_rfc3339(),
            subnet: Some(subnet.to_string()),
            gateway: Some(gateway.to_string()),
            ip_range,
            internal: req.internal,
            attachable: req.attachable,
            labels: req.labels,
            options: req.options,
            bridge: Some(bridge),
            predefined: false,
            user_subnet,
        };
        // The record first (still under `ops`, so no other create takes the subnet), then the
        // device: a crash in between leaves a record whose bridge the next start creates, never
        // a device no record names (which could not be told from another engine's).
        self.put_network(&rec)?;
        drop(_ops);
        if let Err(e) = self.bring_up(&rec).await {
            self.bring_down(&rec).await;
            if self.db.delete(TABLE, &rec.id).is_ok() {
                lock(&self.state).nets.remove(&rec.id);
            }
            return Err(e);
        }
        let _ops = lock(&self.ops);
        if let Err(e) = self.apply_firewall() {
            tracing::warn!("firewall after creating network {}: {e}", rec.name);
        }
        Ok(rec)
    }

    /// Remove a user network that has no running endpoint.
    pub async fn remove(&self, name_or_id: &str) -> Result<NetworkRecord> {
        let n = self.find(name_or_id)?;
        if n.predefined {
            return Err(EngineError::Forbidden(format!(
                "{} is a pre-defined network and cannot be removed",
                n.name
            )));
        }
        let active = self.active_endpoints(&n.id);
        if !active.is_empty() {
            return Err(EngineError::Forbidden(format!(
                "error while removing network: network {} has active endpoints",
                n.name
            )));
        }
        // The device first, the record last (see `create`).
        self.bring_down(&n).await;
        self.db.delete(TABLE, &n.id)?;
        lock(&self.state).nets.remove(&n.id);
        let _ops = lock(&self.ops);
        if let Err(e) = self.apply_firewall() {
            tracing::warn!("firewall after removing network {}: {e}", n.name);
        }
        Ok(n)
    }

    /// The network JSON of `GET /networks/{id}` (`containers`: id → (name, endpoint JSON)).
    pub fn to_json(&self, n: &NetworkRecord, containers: BTreeMap<String, Value>) -> Value {
        let config: Vec<Value> = match (&n.subnet, &n.gateway) {
            (Some(s), gw) => {
                let mut c = json!({"Subnet": s});
                if let Some(g) = gw {
                    c["Gateway"] = json!(g);
                }
                if let Some(r) = &n.ip_range {
                    c["IPRange"] = json!(r);
                }
                vec![c]
            }
            _ => Vec::new(),
        };
        let mut options: BTreeMap<String, String> = n
            .options
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if n.is_default_bridge() {
            for (k, v) in [
                ("com.docker.network.bridge.default_bridge", "true"),
                ("com.docker.network.bridge.enable_icc", "true"),
                ("com.docker.network.bridge.enable_ip_masquerade", "true"),
                ("com.docker.network.bridge.host_binding_ipv4", "0.0.0.0"),
                ("com.docker.network.driver.mtu", "1500"),
            ] {
                options.insert(k.into(), v.into());
            }
            if let Some(b) = &n.bridge {
                options.insert(OPT_BRIDGE_NAME.into(), b.clone());
            }
        }
        json!({
            "Name": n.name,
            "Id": n.id,
            "Created": n.created,
            "Scope": "local",
            "Driver": n.driver,
            "EnableIPv4": true,
            "EnableIPv6": false,
            "IPAM": {
                "Driver": "default",
                "Options": if n.is_bridge() && !n.is_default_bridge() { json!({}) } else { Value::Null },
                "Config": config,
            },
            "Internal": n.internal,
            "Attachable": n.attachable,
            "Ingress": false,
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": false,
            "Containers": containers,
            "Options": options,
            "Labels": n.labels,
        })
    }
}
