//! Host port reservation: a published port holds a bound socket on the host so that a second
//! publisher (berth, Docker or any program) gets "port is already allocated", as with Docker.

use std::net::Ipv4Addr;

use crate::firewall::Proto;
use crate::{NetError, Result};

/// A held host port; dropping it releases the port.
#[derive(Debug)]
pub struct Reservation {
    pub proto: Proto,
    pub host_ip: Option<Ipv4Addr>,
    pub port: u16,
    _socket: Option<std::os::fd::OwnedFd>,
}

/// Reserve `port` (0 = a free port from the ephemeral range). Error text as Docker's:
/// "Bind for 0.0.0.0:8080 failed: port is already allocated".
pub fn reserve(proto: Proto, host_ip: Option<Ipv4Addr>, port: u16) -> Result<Reservation> {
    let _ = (proto, host_ip, port);
    Err(NetError::NotImplemented("ports::reserve"))
}
