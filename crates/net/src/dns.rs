//! The embedded DNS server of user-defined networks. It listens on each network's gateway
//! address (port 53, UDP and TCP), answers A queries for names of that network's scope, and
//! forwards other names to the host's upstream resolvers unless the scope is internal.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use crate::{NetError, Result};

pub struct DnsServer {
    _upstreams: Vec<SocketAddr>,
}

impl DnsServer {
    /// A server that forwards to `upstreams` (the engine passes the host's resolv.conf servers).
    pub fn new(upstreams: Vec<SocketAddr>) -> Arc<DnsServer> {
        Arc::new(DnsServer {
            _upstreams: upstreams,
        })
    }
    /// Start answering on `addr:port` for network `scope` (port 53 in production; tests may use
    /// another). `forward` false: unknown names get NXDOMAIN (internal networks).
    pub async fn listen(
        &self,
        scope: &str,
        addr: Ipv4Addr,
        port: u16,
        forward: bool,
    ) -> Result<()> {
        let _ = (scope, addr, port, forward);
        Err(NetError::NotImplemented("DnsServer::listen"))
    }
    /// Stop answering on `addr`.
    pub async fn unlisten(&self, addr: Ipv4Addr) {
        let _ = addr;
    }
    /// Replace the names of `scope` (lower-cased by the server; a name may map to several
    /// addresses: round robin as Docker for aliases shared by containers).
    pub fn set_records(&self, scope: &str, records: HashMap<String, Vec<Ipv4Addr>>) {
        let _ = (scope, records);
    }
}
