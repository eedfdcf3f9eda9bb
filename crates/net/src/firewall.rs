//! berth's nftables rules, all in one table that berth owns (`ip <table>`), replaced as a whole in
//! one atomic transaction on every change, so that the kernel's state always equals what the
//! engine computed from its records (crash-safe, and nothing outside the table is touched).

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
}

impl Firewall {
    pub fn new(table: &str) -> Firewall {
        Firewall {
            table: table.to_string(),
        }
    }
    /// Replace the table's content with rules for exactly these networks and ports.
    pub fn apply(&self, nets: &[NetRules], ports: &[PortRule]) -> Result<()> {
        let _ = (nets, ports);
        Err(NetError::NotImplemented("Firewall::apply"))
    }
    /// Delete the table; absent is fine.
    pub fn remove(&self) -> Result<()> {
        Err(NetError::NotImplemented("Firewall::remove"))
    }
}
