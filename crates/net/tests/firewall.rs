//! berth's nftables table against the real kernel (root): DNAT of published ports, isolation,
//! internal networks.

mod common;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::Command;
use std::time::Duration;

use berth_net::firewall::{Firewall, NetRules, PortRule, Proto};
use common::*;

fn rules(net: &TestNet, internal: bool) -> NetRules {
    NetRules {
        bridge: net.bridge.clone(),
        subnet: net.subnet,
        internal,
        masquerade: true,
        icc: true,
        gateway: net.gateway,
    }
}

fn list(table: &str) -> Option<String> {
    let out = Command::new("nft")
        .args(["list", "table", "ip", table])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn apply_replace_remove() {
    let mut net = TestNet::new();
    let table = net.table();
    let fw = Firewall::new(&table);
    let p = |hp: u16| PortRule {
        proto: Proto::Tcp,
        host_ip: None,
        host_port: hp,
        container_ip: net.ip(2),
        container_port: 80,
    };
    fw.apply(&[rules(&net, false)], &[p(18081), p(18082)])
        .unwrap();
    let s = list(&table).expect("table exists");
    assert!(
        s.contains(&format!("tcp dport 18081 dnat to {}:80", net.ip(2))),
        "{s}"
    );
    assert!(s.contains("tcp dport 18082"), "{s}");
    assert!(
        s.contains(&format!(
            "ip saddr {} oifname != \"{}\" masquerade",
            net.subnet, net.bridge
        )),
        "{s}"
    );
    // A second apply replaces everything.
    fw.apply(&[rules(&net, true)], &[p(18083)]).unwrap();
    let s = list(&table).unwrap();
    assert!(!s.contains("18081") && !s.contains("18082"), "{s}");
    assert!(s.contains("tcp dport 18083"), "{s}");
    assert!(
        !s.contains(&format!("ip saddr {} oifname != ", net.subnet)),
        "internal: no masquerade: {s}"
    );
    assert!(
        s.contains(&format!("iifname \"{}\" drop", net.bridge)),
        "{s}"
    );
    fw.remove().unwrap();
    assert!(list(&table).is_none());
    fw.remove().unwrap();
    // Without br_netfilter, icc false needs a bridge-family table; the script is valid for
    // this kernel (nft -c: checked, not applied).
    let mut no_icc = rules(&net, false);
    no_icc.icc = false;
    let script = fw.render_for(&[no_icc.clone()], &[], false).unwrap();
    let want = format!(
        "table bridge {table} {{\n  chain forward {{\n    type filter hook forward priority filter; policy accept;\n    ip saddr {} ip daddr {} drop",
        net.subnet, net.subnet
    );
    assert!(script.contains(&want), "{script}");
    let with_br_nf = fw.render_for(&[no_icc], &[], true).unwrap();
    assert!(!with_br_nf.contains(&format!("table bridge {table} {{")));
    let mut c = Command::new("nft")
        .args(["-c", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    c.stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(c.wait().unwrap().success(), "{script}");
    assert!(list(&table).is_none());
    // Bad input is refused without touching the kernel.
    let mut bad = rules(&net, false);
    bad.bridge = "x\" accept".into();
    assert!(fw.apply(&[bad], &[]).is_err());
    assert!(list(&table).is_none());
}

#[test]
fn published_port_from_host_and_hairpin() {
    let mut net = TestNet::new();
    let table = net.table();
    let a = net.container(2);
    let b = net.container(3);
    echo_server(&b, net.ip(3), 7001);
    let hp = free_port();
    let fw = Firewall::new(&table);
    fw.apply(
        &[rules(&net, false)],
        &[PortRule {
            proto: Proto::Tcp,
            host_ip: None,
            host_port: hp,
            container_ip: net.ip(3),
            container_port: 7001,
        }],
    )
    .unwrap();
    let lo = SocketAddr::from((Ipv4Addr::LOCALHOST, hp));
    assert_eq!(
        tcp_exchange(None, lo, b"x").expect("127.0.0.1:hp"),
        b"echo:x"
    );
    let gw = SocketAddr::from((net.gateway, hp));
    assert_eq!(tcp_exchange(None, gw, b"y").expect("gateway:hp"), b"echo:y");
    // Hairpin: another container on the same bridge through the gateway's published port.
    assert_eq!(
        tcp_exchange(Some(&a), gw, b"z").expect("hairpin"),
        b"echo:z"
    );
    // Only the published port is forwarded.
    assert!(tcp_exchange(
        None,
        SocketAddr::from((Ipv4Addr::LOCALHOST, free_port())),
        b"q"
    )
    .is_err());
    // host_ip restricts the rule to that address.
    fw.apply(
        &[rules(&net, false)],
        &[PortRule {
            proto: Proto::Tcp,
            host_ip: Some(net.gateway),
            host_port: hp,
            container_ip: net.ip(3),
            container_port: 7001,
        }],
    )
    .unwrap();
    assert_eq!(tcp_exchange(None, gw, b"w").expect("gateway:hp"), b"echo:w");
    assert!(
        tcp_exchange(None, lo, b"v").is_err(),
        "127.0.0.1 must not be forwarded"
    );
}

#[test]
fn internal_network_reaches_only_dns_on_gateway() {
    let mut net = TestNet::new();
    let table = net.table();
    let a = net.container(2);
    // Host listeners on the gateway address: port 53 and another one.
    let dns = TcpListener::bind((net.gateway, 53)).expect("bind gw:53");
    let other = TcpListener::bind((net.gateway, 0)).unwrap();
    let other_addr = other.local_addr().unwrap();
    let connects = |to: SocketAddr| {
        in_ns(&a, move || {
            std::net::TcpStream::connect_timeout(&to, Duration::from_millis(700)).is_ok()
        })
    };
    // Positive checks poll (a SYN lost while the new link settles is retried after 1 s).
    let reaches =
        |to: SocketAddr| poll(Duration::from_secs(5), || connects(to).then_some(())).is_some();
    assert!(reaches(other_addr), "reachable before the rules");
    Firewall::new(&table)
        .apply(&[rules(&net, true)], &[])
        .unwrap();
    assert!(!connects(other_addr), "internal network reached the host");
    assert!(
        reaches(dns.local_addr().unwrap()),
        "DNS port must stay reachable"
    );
    assert!(!ping(&a, net.gateway));
    // The host still reaches the container (replies are allowed back in).
    let srv = echo_server(&a, net.ip(2), 7002);
    assert_eq!(
        tcp_exchange(None, srv, b"h").expect("host -> internal"),
        b"echo:h"
    );
}

#[test]
fn bridges_are_isolated() {
    let mut n1 = TestNet::new();
    let mut n2 = TestNet::new();
    let table = n1.table();
    let a = n1.container(2);
    let b = n2.container(2);
    assert!(
        ping(&a, n2.ip(2)),
        "routed between bridges before the rules"
    );
    let fw = Firewall::new(&table);
    fw.apply(&[rules(&n1, false), rules(&n2, false)], &[])
        .unwrap();
    assert!(!ping(&a, n2.ip(2)), "a reached the other bridge");
    assert!(!ping(&b, n1.ip(2)), "b reached the other bridge");
    // Each still reaches its own gateway.
    assert!(ping(&a, n1.gateway));
    assert!(ping(&b, n2.gateway));
    // A published port of n2's container is reachable from n1 through the host (DNAT).
    echo_server(&b, n2.ip(2), 7003);
    let hp = free_port();
    fw.apply(
        &[rules(&n1, false), rules(&n2, false)],
        &[PortRule {
            proto: Proto::Tcp,
            host_ip: None,
            host_port: hp,
            container_ip: n2.ip(2),
            container_port: 7003,
        }],
    )
    .unwrap();
    let via = SocketAddr::from((n1.gateway, hp));
    assert_eq!(
        tcp_exchange(Some(&a), via, b"p").expect("published across bridges"),
        b"echo:p"
    );
}

#[test]
fn apply_timing() {
    let mut net = TestNet::new();
    let table = net.table();
    let fw = Firewall::new(&table);
    let ports: Vec<PortRule> = (0..50)
        .map(|i| PortRule {
            proto: Proto::Tcp,
            host_ip: None,
            host_port: 20000 + i,
            container_ip: net.ip(2),
            container_port: 80,
        })
        .collect();
    let mut times = Vec::new();
    for _ in 0..7 {
        fw.invalidate();
        let t = std::time::Instant::now();
        fw.apply(&[rules(&net, false)], &ports).unwrap();
        times.push(t.elapsed());
    }
    times.sort();
    eprintln!(
        "Firewall::apply with 50 ports: median {:?}, min {:?}",
        times[3], times[0]
    );
    // An identical apply is skipped...
    let t = std::time::Instant::now();
    fw.apply(&[rules(&net, false)], &ports).unwrap();
    let same = t.elapsed();
    eprintln!("Firewall::apply unchanged: {same:?}");
    assert!(same < times[0], "{same:?}");
    // ...but not after invalidate() (the table was changed behind our back).
    Command::new("nft")
        .args(["flush", "table", "ip", &table])
        .status()
        .unwrap();
    fw.invalidate();
    fw.apply(&[rules(&net, false)], &ports).unwrap();
    assert!(list(&table).unwrap().contains("tcp dport 20049"));
    let t = std::time::Instant::now();
    fw.remove().unwrap();
    eprintln!(
        "Firewall::remove: {:?} (backend {})",
        t.elapsed(),
        berth_net::nft::backend()
    );
}

#[test]
fn library_and_binary_backends_agree() {
    let mut net = TestNet::new();
    let (t1, t2) = (net.table(), net.table());
    let port = PortRule {
        proto: Proto::Udp,
        host_ip: Some(Ipv4Addr::LOCALHOST),
        host_port: 5353,
        container_ip: net.ip(2),
        container_port: 53,
    };
    let s1 = Firewall::new(&t1)
        .render(&[rules(&net, true)], std::slice::from_ref(&port))
        .unwrap();
    let s2 = Firewall::new(&t2)
        .render(&[rules(&net, true)], &[port])
        .unwrap();
    berth_net::nft::run(&s1).unwrap();
    berth_net::nft::run_binary(&s2).unwrap();
    let (l1, l2) = (list(&t1).unwrap(), list(&t2).unwrap());
    assert_eq!(l1.replace(&t1, "T"), l2.replace(&t2, "T"));
    assert!(l1.contains("udp dport 5353 dnat to"), "{l1}");
    // The library's netlink socket is close-on-exec (not inherited by containers).
    if berth_net::nft::backend() == "libnftables" {
        let mut netfilter_sockets = 0;
        for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
            let fd = e.file_name().to_string_lossy().to_string();
            let Ok(info) = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")) else {
                continue;
            };
            let Ok(link) = std::fs::read_link(e.path()) else {
                continue;
            };
            if !link.to_string_lossy().starts_with("socket:") {
                continue;
            }
            let flags = info
                .lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .map(|f| u32::from_str_radix(f.trim(), 8).unwrap())
                .unwrap();
            assert_ne!(flags & 0o2000000, 0, "socket fd {fd} not close-on-exec");
            netfilter_sockets += 1;
        }
        assert!(netfilter_sockets >= 1);
    }
    // Errors carry nft's message on both paths.
    let bad = format!("delete table ip {t1}x");
    let e1 = berth_net::nft::run(&bad).unwrap_err().to_string();
    let e2 = berth_net::nft::run_binary(&bad).unwrap_err().to_string();
    assert!(e1.contains("No such file or directory"), "{e1}");
    assert!(e2.contains("No such file or directory"), "{e2}");
}

#[test]
fn icc_false_blocks_containers_of_one_bridge() {
    let mut net = TestNet::new();
    let table = net.table();
    let a = net.container(2);
    let b = net.container(3);
    assert!(ping(&a, net.ip(3)));
    let mut r = rules(&net, false);
    r.icc = false;
    let fw = Firewall::new(&table);
    fw.apply(&[r], &[]).unwrap();
    assert!(!ping(&a, net.ip(3)), "icc=false: a reached b");
    assert!(ping(&a, net.gateway), "the gateway stays reachable");
    // Published ports still work between them (through the host).
    echo_server(&b, net.ip(3), 7004);
    let hp = free_port();
    let mut r = rules(&net, false);
    r.icc = false;
    fw.apply(
        &[r],
        &[PortRule {
            proto: Proto::Tcp,
            host_ip: None,
            host_port: hp,
            container_ip: net.ip(3),
            container_port: 7004,
        }],
    )
    .unwrap();
    let via = SocketAddr::from((net.gateway, hp));
    assert_eq!(
        tcp_exchange(Some(&a), via, b"i").expect("published"),
        b"echo:i"
    );
}

/// A container on an internal network resolves names through the DNS server on its gateway
/// (UDP port 53 is the one hole in the firewall), and gets NXDOMAIN for outside names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_on_gateway_from_internal_container() {
    let mut net = TestNet::new();
    let table = net.table();
    let a = net.container(2);
    Firewall::new(&table)
        .apply(&[rules(&net, true)], &[])
        .unwrap();
    let dns = berth_net::dns::DnsServer::new(vec!["127.0.0.1:9".parse().unwrap()]);
    let mut names = std::collections::HashMap::new();
    names.insert("peer".to_string(), vec![net.ip(7)]);
    dns.set_records("internal-net", names);
    dns.listen("internal-net", net.gateway, 53, false)
        .await
        .unwrap();
    let gw = net.gateway;
    let ask = move |name: &'static str| {
        let a = a.clone();
        tokio::task::spawn_blocking(move || {
            in_ns(&a, move || {
                let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
                s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                let mut q = vec![0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
                for l in name.split('.') {
                    q.push(l.len() as u8);
                    q.extend_from_slice(l.as_bytes());
                }
                q.extend_from_slice(&[0, 0, 1, 0, 1]);
                s.send_to(&q, (gw, 53)).unwrap();
                let mut buf = [0u8; 512];
                let n = s.recv(&mut buf).expect("dns answer");
                buf[..n].to_vec()
            })
        })
    };
    let r = ask("peer").await.unwrap();
    assert_eq!(&r[..2], &[0xab, 0xcd]);
    assert_eq!(r[3] & 0xF, 0);
    let o = net.ip(7).octets();
    assert_eq!(&r[r.len() - 4..], &o);
    let r = ask("example.org").await.unwrap();
    assert_eq!(r[3] & 0xF, 3, "NXDOMAIN");
    dns.unlisten(net.gateway).await;
}

/// Other processes (other engines, nft) changing the ruleset at the same time must not make an
/// apply fail (nft retries when the ruleset generation moved under it).
#[test]
fn concurrent_applies_from_other_processes() {
    let mut net = TestNet::new();
    let (mine, theirs) = (net.table(), net.table());
    let other = Firewall::new(&theirs);
    let script = other.render(&[rules(&net, false)], &[]).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let busy = std::thread::spawn(move || {
        let mut n = 0;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            berth_net::nft::run_binary(&script).unwrap();
            n += 1;
        }
        n
    });
    let fw = Firewall::new(&mine);
    for i in 0..150u16 {
        fw.apply(
            &[rules(&net, false)],
            &[PortRule {
                proto: Proto::Tcp,
                host_ip: None,
                host_port: 30000 + i,
                container_ip: net.ip(2),
                container_port: 80,
            }],
        )
        .unwrap_or_else(|e| panic!("apply {i}: {e}"));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let n = busy.join().unwrap();
    assert!(n > 0);
    assert!(list(&mine).unwrap().contains("tcp dport 30149"));
}

#[test]
fn published_udp_port() {
    let mut net = TestNet::new();
    let table = net.table();
    let a = net.container(2);
    let ip = net.ip(2);
    let sock = in_ns(&a, move || std::net::UdpSocket::bind((ip, 5300)).unwrap());
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while let Ok((n, peer)) = sock.recv_from(&mut buf) {
            let mut r = b"udp:".to_vec();
            r.extend_from_slice(&buf[..n]);
            let _ = sock.send_to(&r, peer);
        }
    });
    let hp = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    Firewall::new(&table)
        .apply(
            &[rules(&net, false)],
            &[PortRule {
                proto: Proto::Udp,
                host_ip: None,
                host_port: hp,
                container_ip: ip,
                container_port: 5300,
            }],
        )
        .unwrap();
    for target in [Ipv4Addr::LOCALHOST, net.gateway] {
        let c = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        c.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = [0u8; 64];
        // UDP may lose the very first datagram: a few tries.
        let got = (0..5).find_map(|_| {
            c.send_to(b"ping", (target, hp)).unwrap();
            c.recv(&mut buf).ok()
        });
        let n = got.unwrap_or_else(|| panic!("no UDP answer through {target}:{hp}"));
        assert_eq!(&buf[..n], b"udp:ping");
    }
}
