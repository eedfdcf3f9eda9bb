//! Namespaces, bridges, veth pairs, addresses and routes. Every function is blocking and may be
//! called from any thread (it never `setns`es the calling thread); callers in async code use
//! `spawn_blocking`.
//!
//! Each call runs on a short-lived dedicated OS thread with its own current-thread tokio runtime
//! and one rtnetlink connection per namespace it talks to: a netlink socket belongs to the
//! namespace of the thread that created it, so the thread opens the host socket first and only
//! then `setns()`es itself into the container's namespace for the in-namespace work.

use std::fs::File;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkInfo, LinkMessage, State,
};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{
    new_connection, Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth,
    RouteMessageBuilder,
};

use crate::{Ipv4Net, NetError, Result};

/// Create a new network namespace bind-mounted at `path` (the file is created), with `lo` up.
/// A file already at `path` (a stale namespace left by a crash) is unmounted and replaced.
pub fn create_netns(path: &Path) -> Result<()> {
    if path.exists() {
        remove_netns(path)?;
    }
    let path = path.to_path_buf();
    on_thread("berth-netns", move || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        let made = (|| -> Result<()> {
            unshare(CloneFlags::CLONE_NEWNET).map_err(|e| sys("unshare(CLONE_NEWNET)", e))?;
            mount(
                Some("/proc/thread-self/ns/net"),
                &path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| sys("bind-mounting the namespace", e))?;
            block_on(async {
                let h = connect()?;
                // The loopback device is always index 1 in a new namespace.
                h.link()
                    .set(LinkUnspec::new_with_index(1).up().build())
                    .execute()
                    .await
                    .map_err(|e| nl("setting lo up", e))
            })
        })();
        if made.is_err() {
            let _ = umount2(&path, MntFlags::MNT_DETACH);
            let _ = std::fs::remove_file(&path);
        }
        made
    })
}

/// Unmount and remove a namespace made by [`create_netns`]; absent is not an error. Interfaces
/// inside it go with it (the host end of a veth disappears too).
pub fn remove_netns(path: &Path) -> Result<()> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(sys("unmounting the namespace", e)),
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
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
    check_ifname(&b.name)?;
    let b = b.clone();
    on_thread("berth-bridge", move || {
        block_on(async {
            let h = connect()?;
            let idx = match link_msg(&h, &b.name).await? {
                Some(m) if is_bridge(&m) => m.header.index,
                Some(_) => {
                    return Err(NetError::Netlink(format!(
                        "{} exists and is not a bridge",
                        b.name
                    )))
                }
                None => {
                    // A fixed MAC: otherwise the bridge takes the lowest MAC of its ports and
                    // changes it as containers come and go (ARP caches of the peers go stale).
                    let mut msg = LinkBridge::new(&b.name)
                        .address(crate::ipam::mac_for(b.address.addr).to_vec());
                    if let Some(m) = b.mtu {
                        msg = msg.mtu(m);
                    }
                    match h.link().add(msg.build()).execute().await {
                        Ok(()) => {}
                        Err(e) if errno(&e) == Some(libc::EEXIST) => {}
                        Err(e) => return Err(nl(&format!("creating bridge {}", b.name), e)),
                    }
                    link_index(&h, &b.name).await?.ok_or_else(|| {
                        NetError::Netlink(format!("bridge {} vanished after creation", b.name))
                    })?
                }
            };
            let mut have = false;
            let mut addrs = h.address().get().set_link_index_filter(idx).execute();
            let mut stale = Vec::new();
            while let Some(msg) = addrs
                .try_next()
                .await
                .map_err(|e| nl("listing addresses", e))?
            {
                if msg.header.family != AddressFamily::Inet || msg.header.index != idx {
                    continue;
                }
                let local = msg.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
                    _ => None,
                });
                if local == Some(b.address.addr) && msg.header.prefix_len == b.address.prefix {
                    have = true;
                } else {
                    stale.push(msg);
                }
            }
            for msg in stale {
                match h.address().del(msg).execute().await {
                    Ok(()) => {}
                    Err(e) if errno(&e) == Some(libc::EADDRNOTAVAIL) => {}
                    Err(e) => return Err(nl("removing a stale bridge address", e)),
                }
            }
            if !have {
                match h
                    .address()
                    .add(idx, IpAddr::V4(b.address.addr), b.address.prefix)
                    .execute()
                    .await
                {
                    Ok(()) => {}
                    Err(e) if errno(&e) == Some(libc::EEXIST) => {}
                    Err(e) => return Err(nl(&format!("adding {} to {}", b.address, b.name), e)),
                }
            }
            let mut up = LinkUnspec::new_with_index(idx).up();
            if let Some(m) = b.mtu {
                up = up.mtu(m);
            }
            h.link()
                .set(up.build())
                .execute()
                .await
                .map_err(|e| nl(&format!("setting {} up", b.name), e))
        })?;
        sysctl("/proc/sys/net/ipv4/ip_forward", "1")?;
        sysctl(
            &format!("/proc/sys/net/ipv4/conf/{}/route_localnet", b.name),
            "1",
        )
    })
}

/// Delete a link by name in the host namespace; absent is not an error.
pub fn delete_link(name: &str) -> Result<()> {
    check_ifname(name)?;
    let name = name.to_string();
    on_thread("berth-link", move || {
        block_on(async {
            let h = connect()?;
            del_by_name(&h, &name).await
        })
    })
}

/// Names of host links that start with `prefix` (for reconciliation at engine start).
pub fn links_with_prefix(prefix: &str) -> Result<Vec<String>> {
    let prefix = prefix.to_string();
    on_thread("berth-link", move || {
        block_on(async {
            let h = connect()?;
            let mut out = Vec::new();
            let mut links = h.link().get().execute();
            while let Some(msg) = links.try_next().await.map_err(|e| nl("listing links", e))? {
                for a in &msg.attributes {
                    if let LinkAttribute::IfName(n) = a {
                        if n.starts_with(&prefix) {
                            out.push(n.clone());
                        }
                    }
                }
            }
            out.sort();
            Ok(out)
        })
    })
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
///
/// The pair is created with one message: host end enslaved to the bridge and up, peer created
/// directly inside the namespace under its final name with its MAC. Then, from inside the
/// namespace: the address, up, and the default route. On error the pair is deleted again.
pub fn attach(ep: &Endpoint) -> Result<()> {
    check_ifname(&ep.host_ifname)?;
    check_ifname(&ep.ifname)?;
    let ep = ep.clone();
    on_thread("berth-attach", move || {
        let t0 = Instant::now();
        let ns = File::open(&ep.netns)?;
        block_on(async {
            let host = connect()?;
            let br = link_index(&host, &ep.bridge)
                .await?
                .ok_or_else(|| NetError::Netlink(format!("bridge {} not found", ep.bridge)))?;
            let mut peer = LinkMessageBuilder::<LinkUnspec>::new()
                .name(ep.ifname.clone())
                .address(ep.mac.to_vec())
                .setns_by_fd(ns.as_raw_fd());
            let mut pair = LinkVeth::new(&ep.host_ifname, &ep.ifname);
            if let Some(m) = ep.mtu {
                peer = peer.mtu(m);
                pair = pair.mtu(m);
            }
            let pair = pair
                .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())))
                .controller(br)
                .up();
            host.link()
                .add(pair.build())
                .execute()
                .await
                .map_err(|e| nl(&format!("creating veth {}", ep.host_ifname), e))?;
            let t_created = t0.elapsed();
            let inside = async {
                setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|e| sys("setns", e))?;
                let h = connect()?;
                let idx = link_index(&h, &ep.ifname).await?.ok_or_else(|| {
                    NetError::Netlink(format!("{} missing in the namespace", ep.ifname))
                })?;
                // Not up in the creation message: veth_open() fails with ENOTCONN until both
                // ends are registered. Up first: the kernel's link activation then runs while
                // the address and the route are added.
                h.link()
                    .set(LinkUnspec::new_with_index(idx).up().build())
                    .execute()
                    .await
                    .map_err(|e| nl(&format!("setting {} up", ep.ifname), e))?;
                h.address()
                    .add(idx, IpAddr::V4(ep.address.addr), ep.address.prefix)
                    .execute()
                    .await
                    .map_err(|e| nl(&format!("adding {}", ep.address), e))?;
                if let Some(gw) = ep.gateway {
                    let route = RouteMessageBuilder::<Ipv4Addr>::new()
                        .gateway(gw)
                        .output_interface(idx)
                        .build();
                    h.route()
                        .add(route)
                        .execute()
                        .await
                        .map_err(|e| nl(&format!("default route via {gw}"), e))?;
                }
                let t_configured = t0.elapsed();
                wait_ready(&host, &h, idx, &ep.host_ifname).await;
                tracing::debug!(
                    "attach {}: created {t_created:?}, configured {t_configured:?}, ready {:?}",
                    ep.host_ifname,
                    t0.elapsed()
                );
                Ok::<(), NetError>(())
            };
            if let Err(e) = inside.await {
                // The host socket still talks to the host namespace.
                let _ = del_by_name(&host, &ep.host_ifname).await;
                return Err(e);
            }
            Ok(())
        })
    })
}

/// Remove interface `ifname` from the namespace (its host end goes with it); absent is fine.
pub fn detach(netns: &Path, ifname: &str) -> Result<()> {
    check_ifname(ifname)?;
    let netns = netns.to_path_buf();
    let ifname = ifname.to_string();
    on_thread("berth-detach", move || {
        let ns = match File::open(&netns) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|e| sys("setns", e))?;
        block_on(async {
            let h = connect()?;
            del_by_name(&h, &ifname).await
        })
    })
}

/// Timings of one namespace + endpoint set-up, for benchmarks.
#[derive(Debug, Clone, Copy)]
pub struct SetupTimings {
    pub create_netns: Duration,
    pub attach: Duration,
    pub remove_netns: Duration,
}

/// Benchmark helper: create a namespace at `netns`, attach `ep` (its `netns` field is
/// overwritten with `netns`), then remove the namespace, timing each step. The bridge must
/// exist ([`ensure_bridge`]).
pub fn time_setup(netns: &Path, ep: &Endpoint) -> Result<SetupTimings> {
    let t0 = Instant::now();
    create_netns(netns)?;
    let t1 = Instant::now();
    let mut ep = ep.clone();
    ep.netns = netns.to_path_buf();
    let attached = attach(&ep);
    let t2 = Instant::now();
    let removed = remove_netns(netns);
    let t3 = Instant::now();
    attached?;
    removed?;
    Ok(SetupTimings {
        create_netns: t1 - t0,
        attach: t2 - t1,
        remove_netns: t3 - t2,
    })
}

/// The kernel activates a new link (qdisc, bridge port forwarding) asynchronously in its
/// linkwatch work after carrier-on; until then packets are dropped, and a container's first
/// SYN or DNS query is lost (a 1 s or 5 s retry). Wait, briefly, until the container end is
/// operationally up and the host end forwards on the bridge. Gives up silently after 1 s.
async fn wait_ready(host: &Handle, inside: &Handle, idx: u32, host_ifname: &str) {
    let deadline = Instant::now() + Duration::from_secs(1);
    let sys = format!("/sys/class/net/{host_ifname}");
    // sysfs shows the devices of the namespace it was mounted from: if that is not ours, fall
    // back to the host end's operstate over netlink.
    let use_sysfs = Path::new(&sys).exists();
    let (state, oper) = (format!("{sys}/brport/state"), format!("{sys}/operstate"));
    loop {
        let host_ready = if use_sysfs {
            std::fs::read_to_string(&state).is_ok_and(|s| s.trim() == "3")
                && std::fs::read_to_string(&oper).is_ok_and(|s| s.trim() == "up")
        } else {
            let mut links = host
                .link()
                .get()
                .match_name(host_ifname.to_string())
                .execute();
            is_oper_up(links.try_next().await)
        };
        let mut links = inside.link().get().match_index(idx).execute();
        let inside_ready = is_oper_up(links.try_next().await);
        if host_ready && inside_ready {
            return;
        }
        if Instant::now() > deadline {
            tracing::debug!("link {host_ifname} not ready after 1 s; going on");
            return;
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

fn is_oper_up(m: std::result::Result<Option<LinkMessage>, rtnetlink::Error>) -> bool {
    matches!(m, Ok(Some(m)) if m.attributes.iter().any(|a| matches!(a, LinkAttribute::OperState(State::Up))))
}

// ---- helpers ----

fn on_thread<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(f)?
        .join()
        .map_err(|_| NetError::Netlink(format!("{name} thread panicked")))?
}

fn block_on<T>(fut: impl Future<Output = Result<T>>) -> Result<T> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    rt.block_on(fut)
}

/// A new rtnetlink connection in the current thread's namespace, driven by the current runtime.
fn connect() -> Result<Handle> {
    let (conn, handle, _) = new_connection()?;
    tokio::spawn(conn);
    Ok(handle)
}

async fn link_index(h: &Handle, name: &str) -> Result<Option<u32>> {
    Ok(link_msg(h, name).await?.map(|m| m.header.index))
}

async fn link_msg(h: &Handle, name: &str) -> Result<Option<LinkMessage>> {
    let mut s = h.link().get().match_name(name.to_string()).execute();
    match s.try_next().await {
        Ok(m) => Ok(m),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(nl(&format!("looking up {name}"), e)),
    }
}

fn is_bridge(m: &LinkMessage) -> bool {
    m.attributes.iter().any(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos
            .iter()
            .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Bridge))),
        _ => false,
    })
}

async fn del_by_name(h: &Handle, name: &str) -> Result<()> {
    let Some(idx) = link_index(h, name).await? else {
        return Ok(());
    };
    match h.link().del(idx).execute().await {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(()),
        Err(e) => Err(nl(&format!("deleting {name}"), e)),
    }
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(m.raw_code().abs()),
        _ => None,
    }
}

fn nl(ctx: &str, e: rtnetlink::Error) -> NetError {
    match e {
        rtnetlink::Error::NetlinkError(m) => NetError::Netlink(format!("{ctx}: {}", m.to_io())),
        e => NetError::Netlink(format!("{ctx}: {e}")),
    }
}

fn sys(ctx: &str, e: nix::errno::Errno) -> NetError {
    NetError::Netlink(format!("{ctx}: {e}"))
}

fn check_ifname(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 15
        || name.contains(['/', ' ', '\0'])
        || name == "."
        || name == ".."
    {
        return Err(NetError::InvalidAddress(format!("interface name {name:?}")));
    }
    Ok(())
}

fn sysctl(path: &str, value: &str) -> Result<()> {
    if let Ok(cur) = std::fs::read_to_string(path) {
        if cur.trim() == value {
            return Ok(());
        }
    }
    std::fs::write(path, value).map_err(|e| NetError::Netlink(format!("writing {path}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifnames() {
        assert!(check_ifname("eth0").is_ok());
        assert!(check_ifname("br-0123456789ab").is_ok());
        assert!(check_ifname("br-0123456789abc").is_err());
        assert!(check_ifname("").is_err());
        assert!(check_ifname("a/b").is_err());
    }
}
