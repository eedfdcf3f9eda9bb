//! Start-up and shutdown of the network service: load records, make sure the predefined
//! networks exist, bring bridges and DNS servers up; once containers are reconciled, rebuild
//! port reservations, firewall and DNS for running containers and remove what nobody uses.

use std::collections::{HashMap, HashSet};

use super::{
    lock, net_err, Attachment, NetworkRecord, NetworkService, DEFAULT_BIP, EP_TABLE, TABLE,
};
use crate::{EngineError, Result};

impl NetworkService {
    fn predefined(&self, name: &str, driver: &str) -> NetworkRecord {
        NetworkRecord {
            id: berth_store::atomic::random_hex(32),
            name: name.into(),
            driver: driver.into(),
            created: crate::containers::now_rfc3339(),
            subnet: None,
            gateway: None,
            ip_range: None,
            internal: false,
            attachable: false,
            labels: HashMap::new(),
            options: HashMap::new(),
            bridge: None,
            predefined: true,
            user_subnet: false,
        }
    }

    /// Load records and attachments, create the predefined networks, bring bridges up.
    pub async fn open(&self) -> Result<()> {
        let nets: Vec<(String, NetworkRecord)> = self.db.list(TABLE)?;
        let atts: Vec<(String, Attachment)> = self.db.list(EP_TABLE)?;
        {
            let mut st = lock(&self.state);
            st.nets = nets.into_iter().collect();
            st.atts = atts.into_iter().collect();
        }
        let bip = self
            .cfg
            .daemon
            .bip
            .clone()
            .unwrap_or_else(|| DEFAULT_BIP.to_string());
        let bip_net = berth_net::Ipv4Net::parse(&bip).map_err(|_| {
            EngineError::InvalidArgument(format!("invalid bip {bip:?}: not an IPv4 CIDR"))
        })?;
        for (name, driver) in [("bridge", "bridge"), ("host", "host"), ("none", "null")] {
            if name == "bridge" && !self.default_bridge_enabled {
                continue;
            }
            let existing = lock(&self.state)
                .nets
                .values()
                .find(|n| n.predefined && n.name == name)
                .cloned();
            let mut rec = existing.unwrap_or_else(|| self.predefined(name, driver));
            let before = serde_json::to_string(&rec).unwrap_or_default();
            if name == "bridge" {
                rec.subnet = Some(bip_net.network().to_string());
                rec.gateway = Some(bip_net.addr.to_string());
                rec.bridge = Some(self.default_bridge_name());
            }
            if serde_json::to_string(&rec).unwrap_or_default() != before
                || self.get_by_id(&rec.id).is_none()
            {
                self.db.put(TABLE, &rec.id, &rec)?;
                lock(&self.state).nets.insert(rec.id.clone(), rec);
            }
        }
        for n in self.all() {
            if n.is_bridge() {
                if let Err(e) = self.bring_up(&n).await {
                    tracing::warn!("bringing up network {}: {e}", n.name);
                }
            }
        }
        Ok(())
    }

    /// After container reconciliation. `live`: ids of running containers; `names`: for DNS.
    pub fn restore(
        &self,
        live: &HashSet<String>,
        exists: &HashSet<String>,
        names: &HashMap<String, (String, String)>,
    ) -> Result<()> {
        let _ops = lock(&self.ops);
        let (atts, fresh): (Vec<Attachment>, HashSet<String>) = {
            let st = lock(&self.state);
            (st.atts.values().cloned().collect(), st.started_here.clone())
        };
        for a in atts
            .into_iter()
            .filter(|a| !fresh.contains(&a.container_id))
        {
            if !exists.contains(&a.container_id) {
                self.release_locked(&a.container_id, names);
                self.delete_attachment(&a.container_id)?;
                continue;
            }
            if !a.running {
                continue;
            }
            if !live.contains(&a.container_id) {
                self.release_locked(&a.container_id, names);
                continue;
            }
            // A running container: its published ports are held again (a killed engine's
            // sockets went with it).
            let mut held = Vec::new();
            for p in &a.ports {
                match berth_net::ports::reserve(
                    super::files::proto(&p.proto),
                    p.host_ip,
                    p.host_port,
                ) {
                    Ok(r) => held.push(r),
                    Err(e) => tracing::warn!(
                        container = %a.container_id,
                        "re-reserving port {}: {e}",
                        p.host_port
                    ),
                }
            }
            lock(&self.state)
                .reservations
                .insert(a.container_id.clone(), held);
        }
        // Namespace files nobody runs in.
        if let Ok(rd) = std::fs::read_dir(self.netns_dir()) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if !live.contains(&name) && !fresh.contains(&name) {
                    tracing::info!("removing leftover netns {name}");
                    let _ = berth_net::link::remove_netns(&e.path());
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        self.apply_firewall()?;
        self.refresh_dns(names);
        Ok(())
    }

    /// Engine shutdown: with no container running, remove bridges, DNS servers and the
    /// firewall table (nothing is left behind); otherwise keep everything for them.
    pub async fn shutdown(&self, any_running: bool) {
        if any_running {
            return;
        }
        for n in self.all() {
            if n.is_bridge() {
                self.bring_down(&n).await;
            }
        }
        let fw = self.firewall.table.clone();
        let r =
            tokio::task::spawn_blocking(move || berth_net::firewall::Firewall::new(&fw).remove())
                .await;
        if let Ok(Err(e)) = r {
            tracing::warn!("removing the firewall table: {}", net_err(e));
        }
        let _ = std::fs::remove_dir_all(self.netns_dir());
    }
}
