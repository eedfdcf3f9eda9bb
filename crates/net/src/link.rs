//! Namespaces, bridges, veth pairs, addresses and routes. Every function is blocking and may be
//! called from any thread (it never `setns`es the calling thread); callers in async code use
//! `spawn_blocking`.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::{Ipv4Net, NetError, Result};

/// Create a new network namespace bind-mounted at `path` (the file is created), with `lo` up.
pub fn create_netns(path: &Path) -> Result<()> {
    let _ = path;
    Err(NetError::NotImplemented("create_netns"))
}

/// Unmount and remove a namespace made by [`create_netns`]; absent is not an error. Interfaces
/// inside it go with it (the host end of a veth disappears too).
pub fn remove_netns(path: &Path) -> Result<()> {
    let _ = path;
    Err(NetError::NotImplemented("remove_netns"))
}

/// A bridge berth owns.
#[derive(Debug, Clone)]
pub struct Bridge {
    /// Device name (≤ 15 bytes), e.g. "berth0" or "br-0123456789ab".
    pub name: String,
    /// The gateway's address on the bridge with the subnet's prefix, e.g. 10.88.0.1/16.
    pub address: Ipv4Net,
    pub mtu: Option<u32>,
}

/// Create the bridge if missing, make sure it has `address` (and no other IPv4 address) and is
/// up. Idempotent; also enables IPv4 forwarding and `route_localnet` on the bridge.
pub fn ensure_bridge(b: &Bridge) -> Result<()> {
    let _ = b;
    Err(NetError::NotImplemented("ensure_bridge"))
}

/// Delete a link by name in the host namespace; absent is not an error.
pub fn delete_link(name: &str) -> Result<()> {
    let _ = name;
    Err(NetError::NotImplemented("delete_link"))
}

/// Names of host links that start with `prefix` (for reconciliation at engine start).
pub fn links_with_prefix(prefix: &str) -> Result<Vec<String>> {
    let _ = prefix;
    Err(NetError::NotImplemented("links_with_prefix"))
}

/// One interface of a container on a bridge.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The container's namespace (from [`create_netns`]).
    pub netns: PathBuf,
    pub bridge: String,
    /// Host end of the veth pair (≤ 15 bytes; unique per endpoint, e.g. "veth" + 7 hex chars).
    pub host_ifname: String,
    /// Name inside the container: "eth0", "eth1", ...
    pub ifname: String,
    pub address: Ipv4Net,
    /// Default route via this gateway (None: no default route, e.g. an `--internal` network or
    /// a second network).
    pub gateway: Option<Ipv4Addr>,
    pub mac: [u8; 6],
    pub mtu: Option<u32>,
}

/// Create the veth pair, attach the host end to the bridge, move the other end into the
/// namespace under `ifname`, set address, MAC, up, and the default route if any.
pub fn attach(ep: &Endpoint) -> Result<()> {
    let _ = ep;
    Err(NetError::NotImplemented("attach"))
}

/// Remove interface `ifname` from the namespace (its host end goes with it); absent is fine.
pub fn detach(netns: &Path, ifname: &str) -> Result<()> {
    let _ = (netns, ifname);
    Err(NetError::NotImplemented("detach"))
}
