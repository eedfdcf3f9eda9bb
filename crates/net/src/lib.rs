//! berth-net: the kernel side of container networking, with no knowledge of containers or of the
//! Docker API (that is the engine's `networks` service).
//!
//! - [`ipam`]: IPv4 subnets and address allocation (pure).
//! - [`link`]: network namespaces, bridges, veth pairs, addresses and routes (rtnetlink, on a
//!   dedicated thread per call that needs another namespace).
//! - [`firewall`]: berth's nftables table: masquerade, isolation of networks, `--internal`,
//!   published ports (DNAT); applied as one atomic transaction.
//! - [`nft`]: runs nft scripts (libnftables with a kept-open context, or the `nft` binary).
//! - [`ports`]: host port reservation (the "port is already allocated" check) and random ports.
//! - [`dns`]: the embedded DNS server for user-defined networks (names → addresses, forwarding).

pub mod dns;
pub mod error;
pub mod firewall;
pub mod ipam;
pub mod link;
pub mod nft;
pub mod ports;

pub use error::{NetError, Result};
pub use ipam::Ipv4Net;
