//! Bridges, namespaces and veth pairs against the real kernel (root).

mod common;

use std::time::Duration;

use berth_net::link;
use common::*;

#[test]
fn two_endpoints_ping_and_tcp() {
    let mut net = TestNet::new();
    let a = net.container(2);
    let b = net.container(3);
    assert!(ping(&a, net.ip(3)), "a -> b");
    assert!(ping(&b, net.ip(2)), "b -> a");
    assert!(ping(&a, net.gateway), "a -> gateway");
    assert!(!ping(&a, net.ip(99)), "ping to nobody must fail");

    let srv = echo_server(&b, net.ip(3), 7000);
    let got = tcp_exchange(Some(&a), srv, b"hi").expect("a -> b tcp");
    assert_eq!(got, b"echo:hi");
    // The host reaches the container through the bridge too.
    let got = tcp_exchange(None, srv, b"host").expect("host -> b tcp");
    assert_eq!(got, b"echo:host");
}

#[test]
fn endpoint_details_inside_namespace() {
    let mut net = TestNet::new();
    let a = net.container(5);
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net={}", a.display()))
        .args(["ip", "-o", "addr", "show", "dev", "eth0"])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains(&format!("{}/24", net.ip(5))), "{s}");
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net={}", a.display()))
        .args(["ip", "link", "show", "dev", "eth0"])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    let o = net.ip(5).octets();
    let mac = format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3]);
    assert!(s.contains(&mac), "{s}");
    assert!(s.contains("state UP") || s.contains(",UP"), "{s}");
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net={}", a.display()))
        .args(["ip", "route", "show", "default"])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains(&format!("default via {}", net.gateway)), "{s}");
    // lo is up.
    assert!(ping(&a, "127.0.0.1".parse().unwrap()));
}

#[test]
fn ensure_bridge_is_idempotent_and_fixes_address() {
    let net = TestNet::new();
    link::ensure_bridge(&net.bridge_spec()).unwrap();
    // A stray address is removed.
    let st = std::process::Command::new("ip")
        .args(["addr", "add", "10.233.250.1/24", "dev", &net.bridge])
        .status()
        .unwrap();
    assert!(st.success());
    link::ensure_bridge(&net.bridge_spec()).unwrap();
    let out = std::process::Command::new("ip")
        .args(["-o", "-4", "addr", "show", "dev", &net.bridge])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(!s.contains("10.233.250.1"), "{s}");
    assert_eq!(s.lines().count(), 1, "{s}");
    assert!(s.contains(&format!("{}/24", net.gateway)), "{s}");
    let rl = std::fs::read_to_string(format!(
        "/proc/sys/net/ipv4/conf/{}/route_localnet",
        net.bridge
    ))
    .unwrap();
    assert_eq!(rl.trim(), "1");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
            .unwrap()
            .trim(),
        "1"
    );
    let names = link::links_with_prefix(&net.bridge).unwrap();
    assert_eq!(names, vec![net.bridge.clone()]);
    // A link of that name that is not a bridge is refused, and left alone.
    let dummy = format!("bt{}", hex(6));
    let st = std::process::Command::new("ip")
        .args([
            "link",
            "add",
            &dummy,
            "type",
            "veth",
            "peer",
            "name",
            &format!("{dummy}p"),
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let mut spec = net.bridge_spec();
    spec.name = dummy.clone();
    let e = link::ensure_bridge(&spec);
    let addrs = std::process::Command::new("ip")
        .args(["-o", "-4", "addr", "show", "dev", &dummy])
        .output()
        .unwrap();
    link::delete_link(&dummy).unwrap();
    assert!(!link_exists(&dummy));
    let e = e.unwrap_err().to_string();
    assert!(e.contains("is not a bridge"), "{e}");
    assert!(
        addrs.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&addrs.stdout)
    );
}

#[test]
fn detach_and_remove_clean_up() {
    let mut net = TestNet::new();
    let a = net.container(2);
    let ns2 = net.dir.path().join("second");
    link::create_netns(&ns2).unwrap();
    net.netns.push(ns2.clone());
    let ep = net.endpoint_spec(&ns2, 3, false);
    link::attach(&ep).unwrap();
    assert!(link_exists(&ep.host_ifname));
    // Attaching the same host name twice fails and leaves the first one alone.
    assert!(link::attach(&ep).is_err());
    assert!(link_exists(&ep.host_ifname));
    link::detach(&ns2, "eth0").unwrap();
    assert!(
        poll(Duration::from_secs(2), || (!link_exists(&ep.host_ifname))
            .then_some(()))
        .is_some()
    );
    link::detach(&ns2, "eth0").unwrap(); // absent: fine
    link::detach(&net.dir.path().join("nope"), "eth0").unwrap();

    // Removing the namespace takes the veth with it.
    let ns3 = net.dir.path().join("third");
    net.netns.push(ns3.clone());
    link::create_netns(&ns3).unwrap();
    let ep3 = net.endpoint_spec(&ns3, 4, true);
    link::attach(&ep3).unwrap();
    assert!(link_exists(&ep3.host_ifname));
    link::remove_netns(&ns3).unwrap();
    assert!(!ns3.exists());
    link::remove_netns(&ns3).unwrap(); // absent: fine
    let gone = poll(Duration::from_secs(10), || {
        (!link_exists(&ep3.host_ifname)).then_some(())
    });
    assert!(gone.is_some(), "veth of removed namespace still there");
    assert!(ping(&a, net.gateway));
    link::delete_link("btnonexist0").unwrap();
}

#[test]
fn attach_to_missing_bridge_fails_without_leftovers() {
    let mut net = TestNet::new();
    let ns = net.dir.path().join("x");
    link::create_netns(&ns).unwrap();
    net.netns.push(ns.clone());
    let mut ep = net.endpoint_spec(&ns, 4, true);
    ep.bridge = format!("bt{}", hex(6));
    assert!(link::attach(&ep).is_err());
    assert!(!link_exists(&ep.host_ifname));
    // Bad gateway (not on the subnet): the route fails, the pair is removed again.
    let mut ep = net.endpoint_spec(&ns, 4, true);
    ep.gateway = Some("10.233.251.1".parse().unwrap());
    assert!(link::attach(&ep).is_err());
    assert!(!link_exists(&ep.host_ifname));
    // create_netns replaces a stale file.
    link::create_netns(&ns).unwrap();
    assert!(ping(&ns, "127.0.0.1".parse().unwrap()));
}

#[test]
fn setup_timing() {
    let mut net = TestNet::new();
    let mut times = Vec::new();
    for i in 0..5u8 {
        let ns = net.dir.path().join(format!("bench{i}"));
        net.netns.push(ns.clone());
        let ep = net.endpoint_spec(&ns, 10 + i, true);
        let t = link::time_setup(&ns, &ep).unwrap();
        assert!(!ns.exists());
        times.push(t);
    }
    eprintln!("create_netns / attach / remove_netns: {times:?}");
}

/// The first packet right after attach must not be lost (a lost SYN costs 1 s, a lost DNS
/// query 5 s): attach returns once the kernel has activated both ends.
#[test]
fn first_packet_after_attach_is_not_lost() {
    let mut net = TestNet::new();
    let l = std::net::TcpListener::bind((net.gateway, 0)).unwrap();
    let to = l.local_addr().unwrap();
    for i in 0..12u8 {
        let a = net.container(2 + i);
        let t = std::time::Instant::now();
        let ok = in_ns(&a, move || {
            std::net::TcpStream::connect_timeout(&to, Duration::from_millis(3000)).is_ok()
        });
        let took = t.elapsed();
        assert!(ok, "connect {i} failed");
        assert!(
            took < Duration::from_millis(900),
            "first SYN of {i} lost: {took:?}"
        );
    }
}

#[test]
fn parallel_attaches_on_one_bridge() {
    let mut net = TestNet::new();
    let mut handles = Vec::new();
    for i in 0..8u8 {
        let ns = net.dir.path().join(format!("p{i}"));
        net.netns.push(ns.clone()); // removed in Drop even if this test fails
        let ep = net.endpoint_spec(&ns, 20 + i, true);
        handles.push(std::thread::spawn(move || {
            link::create_netns(&ns).unwrap();
            link::attach(&ep).map(|_| ns)
        }));
    }
    let spaces: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().unwrap().expect("attach"))
        .collect();
    for (i, ns) in spaces.iter().enumerate() {
        let peer = net.ip(20 + ((i as u8 + 1) % 8));
        assert!(ping(ns, peer), "{i} -> {peer}");
    }
    for ns in &spaces {
        link::remove_netns(ns).unwrap();
    }
}
