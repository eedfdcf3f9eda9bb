//! The container side of networking: the plan recorded at create, the set-up at start (netns,
//! veths, addresses, published ports, firewall, DNS, hosts and resolv.conf), the release at
//! exit/stop/rm, connect/disconnect, and the JSON of inspect and `ps`.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use berth_net::ports::Reservation;
use bollard_stubs::models::{EndpointSettings, HostConfig, NetworkingConfig};

use super::files::{self, PortWish};
use super::{lock, net_err, Attachment, Endpoint, NetworkRecord, NetworkService, PublishedPort};
use crate::{EngineError, Result};

/// A container's network mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Host,
    None,
    /// `container:<name or id>`
    Container(String),
    /// A bridge network by name or id (`bridge` is the default one).
    Net(String),
}

pub fn mode_of(hc: &HostConfig) -> Mode {
    match hc.network_mode.as_deref().unwrap_or("") {
        "" | "default" | "bridge" => Mode::Net("bridge".into()),
        "host" => Mode::Host,
        "none" => Mode::None,
        m => match m.strip_prefix("container:") {
            Some(c) => Mode::Container(c.to_string()),
            None => Mode::Net(m.to_string()),
        },
    }
}

/// What `setup` needs to know about the container.
pub struct SetupInput<'a> {
    pub id: &'a str,
    /// Container name without the leading `/`.
    pub name: &'a str,
    pub hostname: &'a str,
    pub host_config: &'a HostConfig,
    pub exposed: &'a [String],
    /// The container's dir (hosts, resolv.conf are written there).
    pub dir: &'a Path,
    /// `container:` mode: the other container's netns path and dir.
    pub join: Option<(PathBuf, PathBuf)>,
    /// id → (name, hostname) of every container, for DNS.
    pub names: &'a HashMap<String, (String, String)>,
}

fn random_ifname() -> String {
    format!("veth{}", &berth_store::atomic::random_hex(4)[..7])
}

fn ip_in_use_err(ip: Ipv4Addr) -> EngineError {
    EngineError::Conflict(format!("Address already in use: {ip}"))
}

impl NetworkService {
    /// Validate a create request's network settings; normalises `NetworkMode` (empty and
    /// `default` become `bridge`) and returns the attachment to record.
    pub fn plan(
        &self,
        hc: &mut HostConfig,
        nc: Option<&NetworkingConfig>,
        exposed: &[String],
    ) -> Result<Attachment> {
        let given = hc.network_mode.clone().unwrap_or_default();
        let nm = match given.as_str() {
            "" | "default" if !self.default_bridge_enabled => "none".to_string(),
            "" | "default" => "bridge".to_string(),
            _ => given.clone(),
        };
        hc.network_mode = Some(nm.clone());
        files::port_wishes(hc, exposed)?;
        let eps: HashMap<String, EndpointSettings> = nc
            .and_then(|n| n.endpoints_config.clone())
            .unwrap_or_default();
        let mut att = Attachment::default();
        match mode_of(hc) {
            Mode::Container(_) => {
                // Docker's runconfig rules: the other container's network decides all that.
                let conflict = |what: &str| {
                    Err(EngineError::InvalidArgument(format!(
                        "conflicting options: {what} and the container type network mode"
                    )))
                };
                let some = |v: &Option<Vec<String>>| v.as_ref().is_some_and(|v| !v.is_empty());
                if hc.port_bindings.as_ref().is_some_and(|p| !p.is_empty())
                    || hc.publish_all_ports == Some(true)
                {
                    return conflict("port publishing");
                }
                if some(&hc.dns) {
                    return Err(EngineError::InvalidArgument(
                        "conflicting options: dns and the network mode".into(),
                    ));
                }
                if some(&hc.extra_hosts) {
                    return Err(EngineError::InvalidArgument(
                        "conflicting options: custom host-to-IP mapping and the network mode"
                            .into(),
                    ));
                }
                return Ok(att);
            }
            Mode::Host | Mode::None => return Ok(att),
            Mode::Net(name) => {
                let primary = self.find(&name)?;
                let mut order = vec![(primary.clone(), None::<EndpointSettings>)];
                for (k, s) in &eps {
                    // The CLI keys the primary endpoint by the mode as given ("default").
                    if k == &name || k == &primary.id || k == &given || k == "default" {
                        if order[0].1.is_none() {
                            order[0].1 = Some(s.clone());
                        }
                        continue;
                    }
                    let n = self.find(k)?;
                    if order.iter().all(|(o, _)| o.id != n.id) {
                        order.push((n, Some(s.clone())));
                    }
                }
                for (n, s) in order {
                    att.endpoints.push(endpoint_config(&n, s.as_ref())?);
                }
            }
        }
        Ok(att)
    }

    /// IPs in use on network `id` (running endpoints).
    fn used_ips(&self, id: &str) -> BTreeSet<Ipv4Addr> {
        lock(&self.state)
            .atts
            .values()
            .filter(|a| a.running)
            .flat_map(|a| a.endpoints.iter())
            .filter(|e| e.network_id == id)
            .filter_map(|e| e.ip)
            .collect()
    }

    /// Allocate an address and plug `ep` into `netns` as `ifname`. Fills its live fields.
    fn plug(
        &self,
        ep: &mut Endpoint,
        net: &NetworkRecord,
        netns: &Path,
        ifname: &str,
        default_route: bool,
        also_used: &BTreeSet<Ipv4Addr>,
    ) -> Result<()> {
        let (Some(subnet), Some(gw), Some(bridge)) =
            (net.subnet_net(), net.gateway_ip(), net.bridge.clone())
        else {
            return Err(EngineError::Internal(format!(
                "network {} has no subnet or bridge",
                net.name
            )));
        };
        let mut used = self.used_ips(&net.id);
        used.extend(also_used.iter().copied());
        let range = net.range_net();
        let ip = berth_net::ipam::allocate(&subnet, range.as_ref(), gw, &used, ep.wanted_ip)
            .map_err(|e| match e {
                berth_net::NetError::AddressInUse(_) => ip_in_use_err(ep.wanted_ip.unwrap_or(gw)),
                berth_net::NetError::PoolExhausted(_) => EngineError::Internal(format!(
                    "no available IPv4 addresses on this network's address pools: {} ({})",
                    net.name, net.id
                )),
                e => net_err(e),
            })?;
        let mac = berth_net::ipam::mac_for(ip);
        let host_ifname = random_ifname();
        let link_ep = berth_net::link::Endpoint {
            netns: netns.to_path_buf(),
            bridge,
            host_ifname: host_ifname.clone(),
            ifname: ifname.to_string(),
            address: berth_net::Ipv4Net {
                addr: ip,
                prefix: subnet.prefix,
            },
            gateway: (default_route && !net.internal).then_some(gw),
            mac,
            mtu: None,
        };
        if let Err(e) = berth_net::link::attach(&link_ep) {
            let _ = berth_net::link::delete_link(&host_ifname);
            return Err(net_err(e));
        }
        ep.endpoint_id = berth_store::atomic::random_hex(32);
        ep.ip = Some(ip);
        ep.prefix = subnet.prefix;
        ep.gateway = Some(gw);
        ep.mac = Some(mac);
        ep.ifname = ifname.to_string();
        ep.host_ifname = host_ifname;
        Ok(())
    }

    /// Reserve the host ports of `wishes`. All or nothing.
    fn reserve_ports(
        &self,
        wishes: &[PortWish],
        name: &str,
        ep_id: &str,
    ) -> Result<(Vec<PublishedPort>, Vec<Reservation>)> {
        let mut ports = Vec::new();
        let mut held = Vec::new();
        for w in wishes {
            let proto = files::proto(&w.proto);
            let (lo, hi) = w.host_ports;
            let mut last_err = None;
            let mut got = None;
            for p in lo..=hi {
                match berth_net::ports::reserve(proto, w.host_ip, p) {
                    Ok(r) => {
                        got = Some(r);
                        break;
                    }
                    Err(e) => last_err = Some(e),
                }
            }
            let r = match got {
                Some(r) => r,
                None => {
                    let msg = last_err.map(|e| e.to_string()).unwrap_or_default();
                    return Err(EngineError::Internal(format!(
                        "driver failed programming external connectivity on endpoint {name} ({ep_id}): {msg}"
                    )));
                }
            };
            ports.push(PublishedPort {
                proto: w.proto.clone(),
                container_port: w.container_port,
                host_ip: w.host_ip,
                host_port: r.port,
            });
            held.push(r);
        }
        Ok((ports, held))
    }

    /// Blocking: everything a container needs before its process starts. Returns the netns the
    /// spec must join (None: host network, or a fresh namespace with loopback only).
    pub fn setup(&self, inp: &SetupInput) -> Result<Option<PathBuf>> {
        let hc = inp.host_config;
        let host_resolv = super::host_resolv_text();
        let extra = hc.extra_hosts.clone().unwrap_or_default();
        // Regenerated at every start, before the container exists: plain writes, no fsync,
        // in place over the file create wrote (no unlink, create or block allocation: on this
        // loaded ext4 those stalled in the journal for 2 to 80 ms), and not at all when the
        // text is already there. Never truncated to zero (ext4's auto_da_alloc would flush it
        // on close).
        let write = |hosts: &str, resolv: &str| -> Result<()> {
            for (name, text) in [("hosts", hosts), ("resolv.conf", resolv)] {
                let p = inp.dir.join(name);
                if std::fs::read(&p).is_ok_and(|old| old == text.as_bytes()) {
                    continue;
                }
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&p)?;
                std::io::Write::write_all(&mut f, text.as_bytes())?;
                f.set_len(text.len() as u64)?;
            }
            Ok(())
        };
        match mode_of(hc) {
            Mode::Host => {
                let mut h = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
                h.push_str(&files::extra_host_lines(&extra, None)?);
                write(&h, &files::resolv_conf(&host_resolv, hc, None))?;
                return Ok(None);
            }
            Mode::None => {
                write(
                    &files::hosts(None, inp.hostname, &[], &extra, None)?,
                    &files::resolv_conf(&host_resolv, hc, None),
                )?;
                return Ok(None);
            }
            Mode::Container(_) => {
                let Some((ns, other_dir)) = &inp.join else {
                    return Err(EngineError::Conflict(
                        "cannot join the network namespace of a container that is not running"
                            .into(),
                    ));
                };
                let h = std::fs::read_to_string(other_dir.join("hosts")).unwrap_or_default();
                let r = std::fs::read_to_string(other_dir.join("resolv.conf")).unwrap_or_default();
                write(&h, &r)?;
                return Ok(Some(ns.clone()));
            }
            Mode::Net(_) => {}
        }
        let t0 = std::time::Instant::now();
        let _ops = lock(&self.ops);
        let mut att = self.attachment(inp.id).unwrap_or_else(|| Attachment {
            container_id: inp.id.to_string(),
            ..Attachment::default()
        });
        att.container_id = inp.id.to_string();
        if att.endpoints.is_empty() {
            // A record from before networks existed, or a lost plan: the mode's network.
            if let Mode::Net(n) = mode_of(hc) {
                let net = self.find(&n)?;
                att.endpoints.push(Endpoint {
                    network_id: net.id,
                    ..Endpoint::default()
                });
            }
        }
        let mut nets = Vec::new();
        for ep in &att.endpoints {
            let n = self.get_by_id(&ep.network_id).ok_or_else(|| {
                EngineError::NotFound(format!("network {} not found", ep.network_id))
            })?;
            nets.push(n);
        }
        let wishes = files::port_wishes(hc, inp.exposed)?;
        let netns = self.netns_path(inp.id);
        std::fs::create_dir_all(self.netns_dir())?;
        let _ = berth_net::link::remove_netns(&netns);
        berth_net::link::create_netns(&netns).map_err(net_err)?;
        let t_netns = t0.elapsed();
        let mut plugged: Vec<String> = Vec::new();
        let mut reservations = Vec::new();
        let result = (|| -> Result<()> {
            let mut mine = BTreeSet::new();
            for (i, (ep, net)) in att.endpoints.iter_mut().zip(nets.iter()).enumerate() {
                ep.clear_live();
                self.plug(ep, net, &netns, &format!("eth{i}"), i == 0, &mine)?;
                plugged.push(ep.host_ifname.clone());
                if let Some(ip) = ep.ip {
                    mine.insert(ip);
                }
            }
            let ep_id = att
                .endpoints
                .first()
                .map(|e| e.endpoint_id.clone())
                .unwrap_or_default();
            let t_plug = t0.elapsed();
            let (ports, held) = self.reserve_ports(&wishes, inp.name, &ep_id)?;
            att.ports = ports;
            reservations = held;
            att.netns = Some(netns.clone());
            att.running = true;
            self.save_attachment_lazy(&att)?;
            let t_saved = t0.elapsed();
            {
                let mut st = lock(&self.state);
                st.reservations
                    .insert(inp.id.to_string(), std::mem::take(&mut reservations));
                st.started_here.insert(inp.id.to_string());
            }
            // The rules depend on networks and published ports only.
            if !att.ports.is_empty() {
                self.apply_firewall()?;
            }
            let t_fw = t0.elapsed();
            let first = att.endpoints.first();
            let own = first.and_then(|e| e.ip);
            let gw = first.and_then(|e| e.gateway);
            let user_net = nets
                .first()
                .map(|n| !n.is_default_bridge())
                .unwrap_or(false);
            let aliases = first.map(|e| e.aliases.clone()).unwrap_or_default();
            write(
                &files::hosts(own, inp.hostname, &aliases, &extra, gw)?,
                &files::resolv_conf(&host_resolv, hc, if user_net { gw } else { None }),
            )?;
            tracing::debug!(
                container = %inp.id,
                "network set-up: netns {t_netns:?}, plugged {t_plug:?}, recorded {t_saved:?}, firewall {t_fw:?}, files {:?}",
                t0.elapsed()
            );
            Ok(())
        })();
        if let Err(e) = result {
            tracing::warn!(container = %inp.id, "network set-up failed: {e}");
            lock(&self.state).reservations.remove(inp.id);
            drop(reservations);
            let _ = berth_net::link::remove_netns(&netns);
            for h in plugged {
                let _ = berth_net::link::delete_link(&h);
            }
            for ep in att.endpoints.iter_mut() {
                ep.clear_live();
            }
            att.ports.clear();
            att.netns = None;
            att.running = false;
            let _ = self.save_attachment_lazy(&att);
            let _ = self.apply_firewall();
            return Err(e);
        }
        self.refresh_dns(inp.names);
        Ok(Some(netns))
    }

    /// Blocking and idempotent: give back everything a container's run took (ports, addresses,
    /// interfaces, the netns file, firewall rules, DNS names).
    pub fn release(&self, id: &str, names: &HashMap<String, (String, String)>) {
        let _ops = lock(&self.ops);
        self.release_locked(id, names)
    }

    /// [`Self::release`] with `ops` held by the caller.
    pub(crate) fn release_locked(&self, id: &str, names: &HashMap<String, (String, String)>) {
        let held = {
            let mut st = lock(&self.state);
            st.started_here.remove(id);
            st.reservations.remove(id)
        };
        drop(held);
        let netns = self.netns_path(id);
        if let Err(e) = berth_net::link::remove_netns(&netns) {
            tracing::warn!(container = %id, "removing netns: {e}");
        }
        let Some(mut att) = self.attachment(id) else {
            return;
        };
        if !att.running && att.netns.is_none() {
            return;
        }
        for ep in att.endpoints.iter_mut() {
            if !ep.host_ifname.is_empty() {
                let _ = berth_net::link::delete_link(&ep.host_ifname);
            }
            ep.clear_live();
        }
        let had_ports = !att.ports.is_empty();
        att.ports.clear();
        att.netns = None;
        att.running = false;
        // Memory only: the next start or rm records the attachment anyway, and a record that
        // still says "running" for a container that is not is released again by `restore`.
        // (Saves one durable commit per container exit.)
        lock(&self.state).atts.insert(id.to_string(), att);
        if had_ports {
            if let Err(e) = self.apply_firewall() {
                tracing::warn!("firewall after releasing {id}: {e}");
            }
        }
        self.refresh_dns(names);
    }

    /// Connect a container to a network. `running`: its netns, to plug the interface now.
    pub fn connect(
        &self,
        container_id: &str,
        hc: &HostConfig,
        net: &NetworkRecord,
        settings: Option<&EndpointSettings>,
        names: &HashMap<String, (String, String)>,
    ) -> Result<()> {
        match mode_of(hc) {
            Mode::Host => {
                return Err(EngineError::Forbidden(
                    "container cannot be disconnected from host network or connected to host network".into(),
                ))
            }
            Mode::None | Mode::Container(_) => {
                return Err(EngineError::Forbidden(format!(
                    "container sharing network namespace with another container or host cannot be connected to any other network (network mode {})",
                    hc.network_mode.as_deref().unwrap_or("")
                )))
            }
            Mode::Net(_) => {}
        }
        if !net.is_bridge() {
            return Err(EngineError::Forbidden(format!(
                "container cannot be disconnected from host network or connected to {} network",
                net.name
            )));
        }
        let _ops = lock(&self.ops);
        let mut att = self.attachment(container_id).unwrap_or_else(|| Attachment {
            container_id: container_id.to_string(),
            ..Attachment::default()
        });
        if att.endpoints.iter().any(|e| e.network_id == net.id) {
            return Err(EngineError::Forbidden(format!(
                "endpoint with name {} already exists in network {}",
                names
                    .get(container_id)
                    .map(|n| n.0.as_str())
                    .unwrap_or(container_id),
                net.name
            )));
        }
        let mut ep = endpoint_config(net, settings)?;
        if att.running {
            let netns = att
                .netns
                .clone()
                .unwrap_or_else(|| self.netns_path(container_id));
            let taken: Vec<&str> = att.endpoints.iter().map(|e| e.ifname.as_str()).collect();
            let ifname = (0..)
                .map(|i| format!("eth{i}"))
                .find(|n| !taken.contains(&n.as_str()))
                .unwrap_or_else(|| "eth9".into());
            let first = att.endpoints.iter().all(|e| e.ip.is_none());
            self.plug(&mut ep, net, &netns, &ifname, first, &BTreeSet::new())?;
            att.endpoints.push(ep);
            if let Err(e) = self.save_attachment(&att) {
                if let Some(ep) = att.endpoints.last() {
                    let _ = berth_net::link::delete_link(&ep.host_ifname);
                }
                return Err(e);
            }
            self.refresh_dns(names);
        } else {
            att.endpoints.push(ep);
            self.save_attachment(&att)?;
        }
        Ok(())
    }

    pub fn disconnect(
        &self,
        container_id: &str,
        hc: &HostConfig,
        net: &NetworkRecord,
        names: &HashMap<String, (String, String)>,
    ) -> Result<()> {
        if mode_of(hc) == Mode::Host || net.driver == "host" {
            return Err(EngineError::Forbidden(
                "container cannot be disconnected from host network or connected to host network"
                    .into(),
            ));
        }
        let _ops = lock(&self.ops);
        let mut att = self.attachment(container_id).unwrap_or_default();
        let Some(pos) = att.endpoints.iter().position(|e| e.network_id == net.id) else {
            return Err(EngineError::Forbidden(format!(
                "container {container_id} is not connected to network {}",
                net.name
            )));
        };
        let ep = att.endpoints.remove(pos);
        if att.running {
            if let Some(ns) = &att.netns {
                if let Err(e) = berth_net::link::detach(ns, &ep.ifname) {
                    tracing::warn!("detaching {}: {e}", ep.ifname);
                }
            }
            if !ep.host_ifname.is_empty() {
                let _ = berth_net::link::delete_link(&ep.host_ifname);
            }
        }
        self.save_attachment(&att)?;
        if att.running && !att.ports.is_empty() {
            if let Err(e) = self.apply_firewall() {
                tracing::warn!("firewall after disconnect: {e}");
            }
            self.refresh_dns(names);
        }
        Ok(())
    }
}

/// An endpoint's configuration from the API's EndpointSettings, validated against the network.
fn endpoint_config(n: &NetworkRecord, s: Option<&EndpointSettings>) -> Result<Endpoint> {
    let aliases: Vec<String> = s
        .and_then(|s| s.aliases.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|a| !a.is_empty())
        .collect();
    let wanted = s
        .and_then(|s| s.ipam_config.as_ref())
        .and_then(|c| c.ipv4_address.clone())
        .filter(|a| !a.is_empty());
    if n.is_default_bridge() || !n.is_bridge() {
        if wanted.is_some() {
            return Err(EngineError::InvalidArgument(
                "user specified IP address is supported on user defined networks only".into(),
            ));
        }
        if !aliases.is_empty() {
            return Err(EngineError::InvalidArgument(
                "network-scoped alias is supported only for containers in user defined networks"
                    .into(),
            ));
        }
    }
    let wanted_ip = match wanted {
        Some(a) => {
            let ip: Ipv4Addr = a
                .parse()
                .map_err(|_| EngineError::InvalidArgument(format!("invalid IPv4 address: {a}")))?;
            let inside = n.subnet_net().map(|s| s.contains(ip)).unwrap_or(false);
            if !inside {
                return Err(EngineError::InvalidArgument(format!(
                    "invalid endpoint settings:\nno configured subnet or ip-range contain the IP address {ip}"
                )));
            }
            if Some(ip) == n.gateway_ip() {
                return Err(ip_in_use_err(ip));
            }
            Some(ip)
        }
        None => None,
    };
    Ok(Endpoint {
        network_id: n.id.clone(),
        aliases,
        wanted_ip,
        ..Endpoint::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard_stubs::models::EndpointIpamConfig;

    fn net(name: &str, predefined: bool) -> NetworkRecord {
        NetworkRecord {
            id: format!("{name}-id"),
            name: name.into(),
            driver: "bridge".into(),
            created: String::new(),
            subnet: Some("10.5.0.0/24".into()),
            gateway: Some("10.5.0.1".into()),
            ip_range: None,
            internal: false,
            attachable: false,
            labels: HashMap::new(),
            options: HashMap::new(),
            bridge: Some("br-x".into()),
            predefined,
            user_subnet: true,
        }
    }

    fn settings(ip: Option<&str>, aliases: &[&str]) -> EndpointSettings {
        EndpointSettings {
            ipam_config: ip.map(|i| EndpointIpamConfig {
                ipv4_address: Some(i.into()),
                ..Default::default()
            }),
            aliases: Some(aliases.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn modes() {
        let hc = |m: &str| HostConfig {
            network_mode: Some(m.into()),
            ..Default::default()
        };
        assert_eq!(mode_of(&hc("default")), Mode::Net("bridge".into()));
        assert_eq!(mode_of(&hc("host")), Mode::Host);
        assert_eq!(mode_of(&hc("none")), Mode::None);
        assert_eq!(mode_of(&hc("container:abc")), Mode::Container("abc".into()));
        assert_eq!(mode_of(&hc("mynet")), Mode::Net("mynet".into()));
        assert_eq!(mode_of(&HostConfig::default()), Mode::Net("bridge".into()));
    }

    #[test]
    fn endpoint_rules() {
        let user = net("u", false);
        let e = endpoint_config(&user, Some(&settings(Some("10.5.0.9"), &["web"]))).unwrap();
        assert_eq!(e.wanted_ip, Some("10.5.0.9".parse().unwrap()));
        assert_eq!(e.aliases, vec!["web".to_string()]);
        let err = endpoint_config(&user, Some(&settings(Some("10.6.0.9"), &[]))).unwrap_err();
        assert!(matches!(err, EngineError::InvalidArgument(_)), "{err}");
        assert!(endpoint_config(&user, Some(&settings(Some("10.5.0.1"), &[]))).is_err());
        let def = net("bridge", true);
        assert!(endpoint_config(&def, Some(&settings(Some("10.5.0.9"), &[]))).is_err());
        assert!(endpoint_config(&def, Some(&settings(None, &["x"]))).is_err());
        assert!(endpoint_config(&def, None).is_ok());
    }
}
