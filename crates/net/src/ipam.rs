//! IPv4 subnets and address allocation. Pure: the engine persists what is allocated.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use crate::{NetError, Result};

/// An address with a prefix length: "10.88.0.1/16" (an interface address) or "10.88.0.0/16".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Net {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Net {
    /// Parse "a.b.c.d/n" (a bare address means /32). Error for prefix > 32.
    pub fn parse(s: &str) -> Result<Ipv4Net> {
        let _ = s;
        Err(NetError::NotImplemented("Ipv4Net::parse"))
    }
    /// The network address (host bits cleared) with the same prefix.
    pub fn network(&self) -> Ipv4Net {
        *self
    }
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let _ = ip;
        false
    }
    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        let _ = other;
        false
    }
}

impl std::fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The first usable address of `subnet` (Docker's default gateway: .1).
pub fn default_gateway(subnet: &Ipv4Net) -> Result<Ipv4Addr> {
    let _ = subnet;
    Err(NetError::NotImplemented("default_gateway"))
}

/// Pick an address for an endpoint: `wanted` if given (must be inside `subnet`, not the
/// network/broadcast address, not the gateway, not in `used` → else an error), otherwise the
/// lowest free address inside `range` (or `subnet` when `range` is None).
pub fn allocate(
    subnet: &Ipv4Net,
    range: Option<&Ipv4Net>,
    gateway: Ipv4Addr,
    used: &BTreeSet<Ipv4Addr>,
    wanted: Option<Ipv4Addr>,
) -> Result<Ipv4Addr> {
    let _ = (subnet, range, gateway, used, wanted);
    Err(NetError::NotImplemented("allocate"))
}

/// Carve the first subnet of `size` bits out of `pools` (base, size) that overlaps none of
/// `taken` (subnets of existing networks and of the host's routes).
pub fn next_subnet(pools: &[(Ipv4Net, u8)], taken: &[Ipv4Net]) -> Result<Ipv4Net> {
    let _ = (pools, taken);
    Err(NetError::NotImplemented("next_subnet"))
}

/// Docker's MAC for an address: 02:42:<the 4 bytes of the address>.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}
