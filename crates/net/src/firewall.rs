//! berth's nftables rules, all in one table that berth owns (`ip <table>`), replaced as a whole in
//! one atomic transaction on every change, so that the kernel's state always equals what the
//! engine computed from its records (crash-safe, and nothing outside the table is touched).

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use crate::{Ipv4Net, NetError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

/// Rules for one network.
#[derive(Debug, Clone)]
pub struct NetRules {
    pub bridge: String,
    pub subnet: Ipv4Net,
    /// `--internal`: nothing leaves the subnet, the host is unreachable except the DNS port on
    /// the gateway address.
    pub internal: bool,
    /// Masquerade traffic from the subnet leaving through another interface.
    pub masquerade: bool,
    /// Inter-container communication on this bridge.
    pub icc: bool,
    /// Gateway address (for the DNS exception on internal networks).
    pub gateway: Ipv4Addr,
}

/// One published port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PortRule {
    pub proto: Proto,
    /// None = every host address (0.0.0.0).
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_ip: Ipv4Addr,
    pub container_port: u16,
}

pub struct Firewall {
    pub table: String,
    /// The script of the last successful apply: an identical apply is skipped (one nft
    /// transaction costs 10-20 ms, most container starts change nothing).
    applied: std::sync::Mutex<Option<String>>,
}

impl Firewall {
    pub fn new(table: &str) -> Firewall {
        Firewall {
            table: table.to_string(),
            applied: std::sync::Mutex::new(None),
        }
    }
    /// Replace the table's content with rules for exactly these networks and ports. Skipped
    /// when the rules equal those of the previous successful apply of this `Firewall` (see
    /// [`Firewall::invalidate`]).
    pub fn apply(&self, nets: &[NetRules], ports: &[PortRule]) -> Result<()> {
        let script = self.render(nets, ports)?;
        let mut applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        if applied.as_deref() == Some(script.as_str()) {
            return Ok(());
        }
        *applied = None;
        crate::nft::run(&script)?;
        *applied = Some(script);
        Ok(())
    }
    /// Forget what was applied: the next [`Firewall::apply`] runs even if nothing changed
    /// (e.g. when something else may have touched the table).
    pub fn invalidate(&self) {
        *self.applied.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
    /// Delete the table (both families); absent is fine.
    pub fn remove(&self) -> Result<()> {
        check_name(&self.table, "table")?;
        self.invalidate();
        // Declaring the table first makes the delete succeed when it is absent.
        crate::nft::run(&format!(
            "table ip {t}\ndelete table ip {t}\ntable bridge {t}\ndelete table bridge {t}\n",
            t = self.table
        ))
    }

    /// The `nft -f` script [`Firewall::apply`] runs: one transaction that (re)creates the table
    /// (and a `bridge` family table of the same name, only for `icc` false).
    ///
    /// - `prerouting`/`output` (nat): packets to a local address (`fib daddr type local`) go
    ///   through `ports`, which DNATs each published port (only for its host address if one is
    ///   set), so 127.0.0.1:PORT works from the host too (with `route_localnet` on the bridge).
    /// - `postrouting` (nat): per bridge, masquerade 127.0.0.0/8 sources leaving through it
    ///   (the localhost case above), DNATed traffic from its own subnet (hairpin), and, when
    ///   `masquerade`, its subnet leaving through any other interface.
    /// - `forward` (filter): internal bridges reach nothing outside themselves; DNATed flows
    ///   are accepted; `icc` false drops bridge-to-same-bridge traffic (needs br_netfilter);
    ///   different bridges are isolated from each other.
    /// - `input` (filter): nothing from a bridge to 127.0.0.0/8 except replies of DNATed flows;
    ///   internal bridges reach only the gateway's port 53 (and replies).
    pub fn render(&self, nets: &[NetRules], ports: &[PortRule]) -> Result<String> {
        self.render_for(nets, ports, br_netfilter_active())
    }

    /// [`Firewall::render`] for a host with or without br_netfilter (bridged IPv4 frames going
    /// through the ip family's hooks, `net.bridge.bridge-nf-call-iptables` = 1).
    pub fn render_for(
        &self,
        nets: &[NetRules],
        ports: &[PortRule],
        br_netfilter: bool,
    ) -> Result<String> {
        check_name(&self.table, "table")?;
        for n in nets {
            check_name(&n.bridge, "bridge")?;
        }
        let t = &self.table;
        let mut s = String::new();
        let _ = writeln!(s, "table ip {t}");
        let _ = writeln!(s, "delete table ip {t}");
        let _ = writeln!(s, "table ip {t} {{");

        // --- nat ---
        s.push_str("  chain ports {\n");
        for p in ports {
            let proto = match p.proto {
                Proto::Tcp => "tcp",
                Proto::Udp => "udp",
            };
            let daddr = match p.host_ip {
                Some(ip) if !ip.is_unspecified() => format!("ip daddr {ip} "),
                _ => String::new(),
            };
            let _ = writeln!(
                s,
                "    {daddr}{proto} dport {} dnat to {}:{}",
                p.host_port, p.container_ip, p.container_port
            );
        }
        s.push_str("  }\n");
        s.push_str(
            "  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n    fib daddr type local jump ports\n  }\n",
        );
        s.push_str(
            "  chain output {\n    type nat hook output priority -100; policy accept;\n    fib daddr type local jump ports\n  }\n",
        );
        s.push_str(
            "  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n",
        );
        for n in nets {
            let (br, sub) = (&n.bridge, n.subnet.network());
            let _ = writeln!(s, "    oifname \"{br}\" ip saddr 127.0.0.0/8 masquerade");
            let _ = writeln!(
                s,
                "    oifname \"{br}\" ip saddr {sub} ct status dnat masquerade"
            );
            if n.masquerade && !n.internal {
                let _ = writeln!(s, "    ip saddr {sub} oifname != \"{br}\" masquerade");
            }
        }
        s.push_str("  }\n");

        // --- filter ---
        s.push_str(
            "  chain forward {\n    type filter hook forward priority filter; policy accept;\n",
        );
        for n in nets.iter().filter(|n| n.internal) {
            let br = &n.bridge;
            let _ = writeln!(s, "    iifname \"{br}\" oifname != \"{br}\" drop");
            let _ = writeln!(s, "    oifname \"{br}\" iifname != \"{br}\" drop");
        }
        s.push_str("    ct status dnat accept\n");
        for n in nets.iter().filter(|n| !n.icc) {
            let br = &n.bridge;
            let _ = writeln!(s, "    iifname \"{br}\" oifname \"{br}\" drop");
        }
        if nets.len() > 1 {
            for n in nets {
                let others: Vec<String> = nets
                    .iter()
                    .filter(|o| o.bridge != n.bridge)
                    .map(|o| format!("\"{}\"", o.bridge))
                    .collect();
                if !others.is_empty() {
                    let _ = writeln!(
                        s,
                        "    iifname \"{}\" oifname {{ {} }} drop",
                        n.bridge,
                        others.join(", ")
                    );
                }
            }
        }
        s.push_str("  }\n");
        s.push_str("  chain input {\n    type filter hook input priority filter; policy accept;\n");
        // route_localnet on the bridges lets 127.0.0.0/8 through them (needed for the replies
        // of 127.0.0.1:PORT connections): anything else to loopback from a bridge is dropped,
        // so containers cannot reach services the host binds to 127.0.0.1.
        for n in nets {
            let br = &n.bridge;
            let _ = writeln!(
                s,
                "    iifname \"{br}\" ip daddr 127.0.0.0/8 ct status dnat accept"
            );
            let _ = writeln!(s, "    iifname \"{br}\" ip daddr 127.0.0.0/8 drop");
        }
        for n in nets.iter().filter(|n| n.internal) {
            let (br, gw) = (&n.bridge, n.gateway);
            let _ = writeln!(
                s,
                "    iifname \"{br}\" ct state established,related accept"
            );
            let _ = writeln!(s, "    iifname \"{br}\" ip daddr {gw} udp dport 53 accept");
            let _ = writeln!(s, "    iifname \"{br}\" ip daddr {gw} tcp dport 53 accept");
            let _ = writeln!(s, "    iifname \"{br}\" drop");
        }
        s.push_str("  }\n}\n");

        // `icc` false without br_netfilter: frames bridged between two ports never reach the
        // ip family's forward hook, so drop them in a bridge-family table of the same name.
        let _ = writeln!(s, "table bridge {t}");
        let _ = writeln!(s, "delete table bridge {t}");
        // (With br_netfilter the ip family's forward rule above sees bridged frames, and a
        // DNATed hairpin flow is bridged directly: the bridge table would drop it.)
        let no_icc: Vec<&NetRules> = if br_netfilter {
            Vec::new()
        } else {
            nets.iter().filter(|n| !n.icc).collect()
        };
        if !no_icc.is_empty() {
            let _ = writeln!(s, "table bridge {t} {{");
            s.push_str(
                "  chain forward {\n    type filter hook forward priority filter; policy accept;\n",
            );
            for n in no_icc {
                // (meta ibrname needs nft_meta_bridge, missing on some kernels: match the
                // subnet on both ends instead; traffic to the gateway is not bridged.)
                let sub = n.subnet.network();
                let _ = writeln!(s, "    ip saddr {sub} ip daddr {sub} drop");
            }
            s.push_str("  }\n}\n");
        }
        Ok(s)
    }
}

fn br_netfilter_active() -> bool {
    std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables")
        .map(|s| s.trim() == "1")
        .unwrap_or(false)
}

/// Names that go into the script unquoted or quoted: letters, digits, `_ - .` only.
fn check_name(name: &str, what: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && name.as_bytes()[0].is_ascii_alphabetic();
    if ok {
        Ok(())
    } else {
        Err(NetError::Firewall(format!("invalid {what} name {name:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(br: &str, sub: &str, internal: bool) -> NetRules {
        let subnet = Ipv4Net::parse(sub).unwrap();
        NetRules {
            bridge: br.into(),
            subnet,
            internal,
            masquerade: true,
            icc: true,
            gateway: crate::ipam::default_gateway(&subnet).unwrap(),
        }
    }

    #[test]
    fn render_rules() {
        let fw = Firewall::new("berth");
        let nets = [
            net("berth0", "172.17.0.0/16", false),
            net("br-a", "172.18.0.0/16", true),
        ];
        let ports = [PortRule {
            proto: Proto::Udp,
            host_ip: Some("127.0.0.1".parse().unwrap()),
            host_port: 5353,
            container_ip: "172.17.0.2".parse().unwrap(),
            container_port: 53,
        }];
        let s = fw.render(&nets, &ports).unwrap();
        assert!(s.starts_with("table ip berth\ndelete table ip berth\ntable ip berth {"));
        assert!(s.contains("ip daddr 127.0.0.1 udp dport 5353 dnat to 172.17.0.2:53"));
        assert!(s.contains("ip saddr 172.17.0.0/16 oifname != \"berth0\" masquerade"));
        assert!(!s.contains("ip saddr 172.18.0.0/16 oifname != \"br-a\" masquerade"));
        assert!(s.contains("iifname \"br-a\" oifname != \"br-a\" drop"));
        assert!(s.contains("iifname \"berth0\" oifname { \"br-a\" } drop"));
        assert!(s.contains("iifname \"br-a\" ip daddr 172.18.0.1 udp dport 53 accept"));
    }

    #[test]
    fn rejects_injection() {
        assert!(Firewall::new("t; flush ruleset").render(&[], &[]).is_err());
        let n = net("x\" drop", "10.0.0.0/24", false);
        assert!(Firewall::new("t").render(&[n], &[]).is_err());
    }
}
