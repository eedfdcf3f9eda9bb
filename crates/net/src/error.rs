//! The one error type of berth-net.

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("invalid address or subnet {0:?}")]
    InvalidAddress(String),
    #[error("no available addresses in {0}")]
    PoolExhausted(String),
    #[error("address {0} is already in use")]
    AddressInUse(String),
    #[error("netlink: {0}")]
    Netlink(String),
    #[error("nftables: {0}")]
    Firewall(String),
    #[error("dns: {0}")]
    Dns(String),
    #[error("{0}")]
    PortAllocated(String),
    #[error("not implemented yet: {0}")]
    NotImplemented(&'static str),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub type Result<T> = std::result::Result<T, NetError>;
