//! Host port reservation: a published port holds a bound socket on the host so that a second
//! publisher (berth, Docker or any program) gets "port is already allocated", as with Docker.
//!
//! The socket is bound and never listens (TCP) or reads (UDP): the traffic itself is DNATed by
//! the firewall before it could reach it. SO_REUSEADDR stays off, so that even another socket
//! with SO_REUSEADDR cannot bind the port while the reservation lives.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;

use nix::errno::Errno;
use nix::sys::socket::{bind, getsockname, socket, AddressFamily, SockFlag, SockType, SockaddrIn};

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
    let ip = host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
    let ty = match proto {
        Proto::Tcp => SockType::Stream,
        Proto::Udp => SockType::Datagram,
    };
    let fd = socket(AddressFamily::Inet, ty, SockFlag::SOCK_CLOEXEC, None)
        .map_err(|e| NetError::Io(e.into()))?;
    let addr = SockaddrIn::from(SocketAddrV4::new(ip, port));
    match bind(fd.as_raw_fd(), &addr) {
        Ok(()) => {}
        Err(Errno::EADDRINUSE) => {
            return Err(NetError::PortAllocated(format!(
                "Bind for {ip}:{port} failed: port is already allocated"
            )))
        }
        Err(Errno::EADDRNOTAVAIL) => {
            let p = match proto {
                Proto::Tcp => "tcp4",
                Proto::Udp => "udp4",
            };
            return Err(NetError::InvalidAddress(format!(
                "listen {p} {ip}:{port}: bind: cannot assign requested address"
            )));
        }
        Err(e) => {
            return Err(NetError::Io(std::io::Error::new(
                std::io::Error::from(e).kind(),
                format!("bind {ip}:{port}: {e}"),
            )))
        }
    }
    let bound = if port == 0 {
        getsockname::<SockaddrIn>(fd.as_raw_fd())
            .map_err(|e| NetError::Io(e.into()))?
            .port()
    } else {
        port
    };
    Ok(Reservation {
        proto,
        host_ip,
        port: bound,
        _socket: Some(fd),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, UdpSocket};

    fn range() -> (u16, u16) {
        let s = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
        let v: Vec<u16> = s.split_whitespace().map(|x| x.parse().unwrap()).collect();
        (v[0], v[1])
    }

    #[test]
    fn conflict_and_release() {
        let r = reserve(Proto::Tcp, None, 0).unwrap();
        let (lo, hi) = range();
        assert!(r.port >= lo && r.port <= hi, "{}", r.port);
        let e = reserve(Proto::Tcp, None, r.port).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "Bind for 0.0.0.0:{} failed: port is already allocated",
                r.port
            )
        );
        // A specific address conflicts with the wildcard reservation too.
        let e = reserve(Proto::Tcp, Some(Ipv4Addr::LOCALHOST), r.port).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "Bind for 127.0.0.1:{} failed: port is already allocated",
                r.port
            )
        );
        assert!(TcpListener::bind(("127.0.0.1", r.port)).is_err());
        // UDP is independent of TCP.
        let u = reserve(Proto::Udp, None, r.port).unwrap();
        assert!(UdpSocket::bind(("0.0.0.0", r.port)).is_err());
        assert!(reserve(Proto::Udp, None, r.port).is_err());
        let port = r.port;
        drop(r);
        drop(u);
        let again = reserve(Proto::Tcp, None, port).unwrap();
        assert_eq!(again.port, port);
        drop(again);
        let _u = reserve(Proto::Udp, None, port).unwrap();
    }

    #[test]
    fn conflicts_with_other_programs() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = l.local_addr().unwrap().port();
        let e = reserve(Proto::Tcp, None, p).unwrap_err();
        assert!(matches!(e, NetError::PortAllocated(_)), "{e}");
        drop(l);
        let r = reserve(Proto::Tcp, Some(Ipv4Addr::LOCALHOST), p).unwrap();
        assert_eq!(r.port, p);
        assert_eq!(r.host_ip, Some(Ipv4Addr::LOCALHOST));
        // Not an address of this host.
        let e = reserve(Proto::Tcp, Some(Ipv4Addr::new(192, 0, 2, 77)), 0).unwrap_err();
        assert!(
            e.to_string().contains("cannot assign requested address"),
            "{e}"
        );
    }
}
