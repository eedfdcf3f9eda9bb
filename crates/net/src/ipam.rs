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

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

impl Ipv4Net {
    /// Parse "a.b.c.d/n" (a bare address means /32). Error for prefix > 32.
    pub fn parse(s: &str) -> Result<Ipv4Net> {
        let bad = || NetError::InvalidAddress(s.to_string());
        let t = s.trim();
        let (a, p) = match t.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (t, None),
        };
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let prefix = match p {
            None => 32,
            Some(p) => {
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                p.parse::<u8>().map_err(|_| bad())?
            }
        };
        if prefix > 32 {
            return Err(bad());
        }
        Ok(Ipv4Net { addr, prefix })
    }
    /// The network address (host bits cleared) with the same prefix.
    pub fn network(&self) -> Ipv4Net {
        Ipv4Net {
            addr: Ipv4Addr::from(u32::from(self.addr) & mask(self.prefix)),
            prefix: self.prefix,
        }
    }
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let m = mask(self.prefix);
        u32::from(ip) & m == u32::from(self.addr) & m
    }
    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        // Two prefixes overlap iff the shorter one contains the other's network address.
        let m = mask(self.prefix.min(other.prefix));
        u32::from(self.addr) & m == u32::from(other.addr) & m
    }
    /// The broadcast address (all host bits set).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !mask(self.prefix))
    }
    /// Number of addresses in the prefix (2^(32-prefix)), as u64 so /0 fits.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix.min(32)))
    }
}

impl std::str::FromStr for Ipv4Net {
    type Err = NetError;
    fn from_str(s: &str) -> Result<Ipv4Net> {
        Ipv4Net::parse(s)
    }
}

impl std::fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Lowest and highest host addresses of `subnet` (network and broadcast excluded for prefixes
/// up to /30; /31 and /32 use every address, as point-to-point links do).
fn host_bounds(subnet: &Ipv4Net) -> (u32, u32) {
    let net = u32::from(subnet.network().addr);
    let bc = u32::from(subnet.broadcast());
    if subnet.prefix >= 31 {
        (net, bc)
    } else {
        (net + 1, bc - 1)
    }
}

/// The first usable address of `subnet` (Docker's default gateway: .1).
pub fn default_gateway(subnet: &Ipv4Net) -> Result<Ipv4Addr> {
    if subnet.prefix > 30 {
        return Err(NetError::PoolExhausted(subnet.network().to_string()));
    }
    Ok(Ipv4Addr::from(host_bounds(subnet).0))
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
    let (lo, hi) = host_bounds(subnet);
    if let Some(ip) = wanted {
        let v = u32::from(ip);
        if !subnet.contains(ip) || v < lo || v > hi {
            return Err(NetError::InvalidAddress(format!(
                "{ip} is not a usable address of {}",
                subnet.network()
            )));
        }
        if ip == gateway || used.contains(&ip) {
            return Err(NetError::AddressInUse(ip.to_string()));
        }
        return Ok(ip);
    }
    let (mut start, mut end) = (lo, hi);
    if let Some(r) = range {
        if !subnet.contains(r.addr) || r.prefix < subnet.prefix {
            return Err(NetError::InvalidAddress(format!(
                "range {r} is not inside {}",
                subnet.network()
            )));
        }
        start = start.max(u32::from(r.network().addr));
        end = end.min(u32::from(r.broadcast()));
    }
    let mut v = start;
    while v <= end {
        let ip = Ipv4Addr::from(v);
        if ip != gateway && !used.contains(&ip) {
            return Ok(ip);
        }
        if v == u32::MAX {
            break;
        }
        v += 1;
    }
    Err(NetError::PoolExhausted(
        range.copied().unwrap_or(*subnet).network().to_string(),
    ))
}

/// Carve the first subnet of `size` bits out of `pools` (base, size) that overlaps none of
/// `taken` (subnets of existing networks and of the host's routes).
pub fn next_subnet(pools: &[(Ipv4Net, u8)], taken: &[Ipv4Net]) -> Result<Ipv4Net> {
    for (base, size) in pools {
        let base = base.network();
        if *size < base.prefix || *size > 32 {
            continue;
        }
        let step = 1u64 << (32 - u32::from(*size));
        let first = u64::from(u32::from(base.addr));
        let last = first + base.size();
        let mut a = first;
        while a < last {
            let cand = Ipv4Net {
                addr: Ipv4Addr::from(a as u32),
                prefix: *size,
            };
            match taken.iter().find(|t| t.overlaps(&cand)) {
                None => return Ok(cand),
                Some(t) => {
                    // Skip past whichever is larger: the candidate or the taken block.
                    let tn = t.network();
                    let t_end = u64::from(u32::from(tn.addr)) + tn.size();
                    a = (a + step).max(t_end);
                    // Re-align to the candidate size.
                    a = a.div_ceil(step) * step;
                }
            }
        }
    }
    Err(NetError::PoolExhausted(
        "all predefined address pools have been fully subnetted".to_string(),
    ))
}

/// Docker's MAC for an address: 02:42:<the 4 bytes of the address>.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Ipv4Net {
        Ipv4Net::parse(s).unwrap()
    }
    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn parse_and_display() {
        assert_eq!(n("10.88.0.1/16").addr, ip("10.88.0.1"));
        assert_eq!(n("10.88.0.1/16").prefix, 16);
        assert_eq!(n("1.2.3.4").prefix, 32);
        assert_eq!(n(" 10.0.0.0/8 ").to_string(), "10.0.0.0/8");
        assert_eq!(n("0.0.0.0/0").prefix, 0);
        for bad in [
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0/8",
            "x/8",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
            "",
            "::1/64",
        ] {
            assert!(Ipv4Net::parse(bad).is_err(), "{bad} parsed");
        }
        assert_eq!(n("10.88.3.7/16").network(), n("10.88.0.0/16"));
        assert_eq!(n("10.88.3.7/0").network(), n("0.0.0.0/0"));
        assert_eq!(n("10.88.3.7/32").network(), n("10.88.3.7/32"));
        assert_eq!(n("10.88.0.0/16").broadcast(), ip("10.88.255.255"));
    }

    #[test]
    fn contains_and_overlaps() {
        let s = n("172.18.0.0/16");
        assert!(s.contains(ip("172.18.0.0")));
        assert!(s.contains(ip("172.18.255.255")));
        assert!(!s.contains(ip("172.19.0.1")));
        assert!(n("0.0.0.0/0").contains(ip("8.8.8.8")));
        assert!(n("1.2.3.4/32").contains(ip("1.2.3.4")));
        assert!(!n("1.2.3.4/32").contains(ip("1.2.3.5")));
        assert!(s.overlaps(&n("172.18.5.0/24")));
        assert!(n("172.18.5.0/24").overlaps(&s));
        assert!(!s.overlaps(&n("172.19.0.0/16")));
        assert!(n("10.0.0.0/8").overlaps(&n("10.200.1.1/32")));
        assert!(!n("10.0.0.0/24").overlaps(&n("10.0.1.0/24")));
    }

    #[test]
    fn gateway() {
        assert_eq!(
            default_gateway(&n("10.88.0.0/16")).unwrap(),
            ip("10.88.0.1")
        );
        assert_eq!(
            default_gateway(&n("10.88.4.9/24")).unwrap(),
            ip("10.88.4.1")
        );
        assert!(default_gateway(&n("10.88.4.9/31")).is_err());
    }

    #[test]
    fn allocate_lowest_free() {
        let s = n("10.1.0.0/24");
        let gw = ip("10.1.0.1");
        let mut used = BTreeSet::new();
        assert_eq!(allocate(&s, None, gw, &used, None).unwrap(), ip("10.1.0.2"));
        used.insert(ip("10.1.0.2"));
        used.insert(ip("10.1.0.4"));
        assert_eq!(allocate(&s, None, gw, &used, None).unwrap(), ip("10.1.0.3"));
        // A gateway that is not .1: .1 becomes usable.
        assert_eq!(
            allocate(&s, None, ip("10.1.0.254"), &used, None).unwrap(),
            ip("10.1.0.1")
        );
    }

    #[test]
    fn allocate_range() {
        let s = n("10.1.0.0/16");
        let gw = ip("10.1.0.1");
        let r = n("10.1.5.0/30");
        let mut used = BTreeSet::new();
        assert_eq!(
            allocate(&s, Some(&r), gw, &used, None).unwrap(),
            ip("10.1.5.0")
        );
        used.insert(ip("10.1.5.0"));
        used.insert(ip("10.1.5.1"));
        used.insert(ip("10.1.5.2"));
        assert_eq!(
            allocate(&s, Some(&r), gw, &used, None).unwrap(),
            ip("10.1.5.3")
        );
        used.insert(ip("10.1.5.3"));
        assert!(matches!(
            allocate(&s, Some(&r), gw, &used, None),
            Err(NetError::PoolExhausted(_))
        ));
        // A range at the start of the subnet never yields the network address.
        let r0 = n("10.1.0.0/30");
        assert_eq!(
            allocate(&s, Some(&r0), gw, &BTreeSet::new(), None).unwrap(),
            ip("10.1.0.2")
        );
        assert!(allocate(&s, Some(&n("10.2.0.0/24")), gw, &used, None).is_err());
    }

    #[test]
    fn allocate_wanted() {
        let s = n("10.1.0.0/24");
        let gw = ip("10.1.0.1");
        let mut used = BTreeSet::new();
        used.insert(ip("10.1.0.9"));
        assert_eq!(
            allocate(&s, None, gw, &used, Some(ip("10.1.0.50"))).unwrap(),
            ip("10.1.0.50")
        );
        assert!(matches!(
            allocate(&s, None, gw, &used, Some(ip("10.1.0.9"))),
            Err(NetError::AddressInUse(_))
        ));
        assert!(matches!(
            allocate(&s, None, gw, &used, Some(gw)),
            Err(NetError::AddressInUse(_))
        ));
        for bad in ["10.1.0.0", "10.1.0.255", "10.1.1.5"] {
            assert!(matches!(
                allocate(&s, None, gw, &used, Some(ip(bad))),
                Err(NetError::InvalidAddress(_))
            ));
        }
    }

    #[test]
    fn allocate_exhausted() {
        let s = n("10.1.0.0/30"); // hosts .1 and .2
        let gw = ip("10.1.0.1");
        let mut used = BTreeSet::new();
        assert_eq!(allocate(&s, None, gw, &used, None).unwrap(), ip("10.1.0.2"));
        used.insert(ip("10.1.0.2"));
        assert!(matches!(
            allocate(&s, None, gw, &used, None),
            Err(NetError::PoolExhausted(_))
        ));
    }

    #[test]
    fn next_subnet_skips_taken() {
        let pools = [(n("172.17.0.0/16"), 16), (n("172.18.0.0/15"), 16)];
        assert_eq!(next_subnet(&pools, &[]).unwrap(), n("172.17.0.0/16"));
        let taken = [n("172.17.0.0/16"), n("172.18.3.0/24")];
        assert_eq!(next_subnet(&pools, &taken).unwrap(), n("172.19.0.0/16"));
        // A big taken block skips several candidates.
        let pools = [(n("10.0.0.0/8"), 24)];
        let taken = [n("10.0.0.0/22"), n("10.0.4.128/25")];
        assert_eq!(next_subnet(&pools, &taken).unwrap(), n("10.0.5.0/24"));
        // A host route elsewhere is irrelevant; a route covering all of the pool exhausts it.
        let pools = [(n("192.168.0.0/20"), 24)];
        assert!(matches!(
            next_subnet(&pools, &[n("192.168.0.0/16")]),
            Err(NetError::PoolExhausted(_))
        ));
        // Invalid size is skipped.
        assert!(next_subnet(&[(n("10.0.0.0/16"), 8)], &[]).is_err());
    }

    #[test]
    fn mac() {
        assert_eq!(mac_for(ip("172.17.0.2")), [0x02, 0x42, 172, 17, 0, 2]);
    }
}
