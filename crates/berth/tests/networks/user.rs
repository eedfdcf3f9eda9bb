//! User-defined networks: the network verbs and their output shapes, Docker's errors, name
//! resolution, `--internal`, connect/disconnect on running containers.

use std::io::Read;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::net::link_exists;
use crate::helpers::*;

#[test]
fn network_verbs_and_shapes() {
    let d = engine();
    // Predefined networks are listed.
    let ls = dok(&d, &["network", "ls"]);
    let header = ls.lines().next().unwrap_or("");
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        vec!["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    );
    for (n, drv) in [("bridge", "bridge"), ("host", "host"), ("none", "null")] {
        assert!(
            ls.lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() == 4 && f[1] == n && f[2] == drv && f[3] == "local" && f[0].len() == 12
            }),
            "{ls}"
        );
    }
    // create with options.
    let n = name("net");
    let subnet = d.net().spare_subnet(1);
    let base = subnet.trim_end_matches(".0/24").to_string();
    let range = format!("{base}.128/25");
    let gw = format!("{base}.254");
    let id = dok(
        &d,
        &[
            "network",
            "create",
            "--subnet",
            &subnet,
            "--gateway",
            &gw,
            "--ip-range",
            &range,
            "--label",
            "tier=web",
            "-o",
            "com.docker.network.bridge.name=bxnet0",
            &n,
        ],
    )
    .trim()
    .to_string();
    assert_eq!(id.len(), 64, "{id}");
    assert!(link_exists("bxnet0"));
    let v = net_inspect(&d, &n);
    assert_eq!(v["Id"], id.as_str());
    assert_eq!(v["Driver"], "bridge");
    assert_eq!(v["Scope"], "local");
    assert_eq!(v["Internal"], false);
    assert_eq!(v["IPAM"]["Driver"], "default");
    assert_eq!(v["IPAM"]["Config"][0]["Subnet"], subnet.as_str());
    assert_eq!(v["IPAM"]["Config"][0]["Gateway"], gw.as_str());
    assert_eq!(v["IPAM"]["Config"][0]["IPRange"], range.as_str());
    assert_eq!(v["Labels"]["tier"], "web");
    assert_eq!(v["Containers"], serde_json::json!({}));
    // The address comes from the range.
    let c = name("c");
    dok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            &c,
            "--network",
            &n,
            "busybox",
            "sleep",
            "300",
        ],
    );
    let ip = inspect(&d, &c)["NetworkSettings"]["Networks"][&n]["IPAddress"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert_eq!(ip, format!("{base}.128"));
    // Legacy top-level fields are only for the default bridge.
    assert_eq!(inspect(&d, &c)["NetworkSettings"]["IPAddress"], "");
    // Filters.
    let f = dok(
        &d,
        &[
            "network",
            "ls",
            "-q",
            "--filter",
            "label=tier=web",
            "--no-trunc",
        ],
    );
    assert_eq!(f.trim(), id);
    let f = dok(
        &d,
        &[
            "network",
            "ls",
            "--format",
            "{{.Name}}",
            "--filter",
            "type=custom",
        ],
    );
    assert_eq!(f.trim(), n);
    // Errors, and nothing changed by them.
    let err = d.docker_err(&["network", "create", &n]);
    assert!(
        err.contains(&format!("network with name {n} already exists")),
        "{err}"
    );
    let err = d.docker_err(&["network", "create", "--subnet", &subnet, &name("dup")]);
    assert!(
        err.contains("Pool overlaps with other one on this address space"),
        "{err}"
    );
    let err = d.docker_err(&["network", "rm", "bridge"]);
    assert!(
        err.contains("bridge is a pre-defined network and cannot be removed"),
        "{err}"
    );
    let err = d.docker_err(&["network", "rm", &n]);
    assert!(err.contains("has active endpoints"), "{err}");
    let err = d.docker_err(&[
        "run",
        "--rm",
        "--network",
        &n,
        "--ip",
        "192.0.2.9",
        "busybox",
        "true",
    ]);
    assert!(err.contains("192.0.2.9"), "{err}");
    let err = d.docker_err(&[
        "run",
        "--rm",
        "--ip",
        &format!("{base}.9"),
        "busybox",
        "true",
    ]);
    assert!(
        err.contains("user specified IP address is supported on user defined networks only"),
        "{err}"
    );
    let err = d.docker_err(&["network", "inspect", "nope-no-such-net"]);
    assert!(err.contains("network nope-no-such-net not found"), "{err}");
    let after = net_inspect(&d, &n);
    assert_eq!(after["Id"], id.as_str());
    // rm after the container is gone; the bridge goes with it.
    dok(&d, &["rm", "-f", &c]);
    assert_eq!(dok(&d, &["network", "rm", &n]).trim(), n);
    assert!(!link_exists("bxnet0"));
    // prune removes unused user networks only.
    let p1 = name("p1");
    dok(&d, &["network", "create", &p1]);
    let out = dok(&d, &["network", "prune", "-f"]);
    assert!(out.contains(&p1), "{out}");
    assert!(dok(
        &d,
        &["network", "ls", "-q", "--filter", &format!("name={p1}")]
    )
    .trim()
    .is_empty());
    assert!(dok(&d, &["network", "ls"]).contains("bridge"));
}

/// The address of container `c` on network `n`.
fn ip_on(d: &crate::common::TestDaemon, c: &str, n: &str) -> String {
    inspect(d, c)["NetworkSettings"]["Networks"][n]["IPAddress"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[test]
fn containers_on_a_user_network_resolve_each_other() {
    let d = engine();
    let n = name("dns");
    dok(&d, &["network", "create", &n]);
    let gw = net_inspect(&d, &n)["IPAM"]["Config"][0]["Gateway"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let a = name("a");
    dok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            &a,
            "--network",
            &n,
            "--network-alias",
            "web",
            "busybox",
            "sleep",
            "300",
        ],
    );
    let ip = ip_on(&d, &a, &n);
    let b = name("b");
    dok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            &b,
            "--network",
            &n,
            "busybox",
            "sleep",
            "300",
        ],
    );
    // resolv.conf points at the network's DNS server.
    let rc = dok(&d, &["exec", &b, "cat", "/etc/resolv.conf"]);
    assert!(rc.contains(&format!("nameserver {gw}")), "{rc}");
    for who in [a.as_str(), "web"] {
        let out = poll(10, "a DNS answer", || {
            let o = d.docker(&["exec", &b, "nslookup", who, &gw]);
            let t = text(&o.stdout);
            (o.status.success() && t.contains(&ip)).then_some(t)
        });
        assert!(out.contains(&ip), "{out}");
        dok(&d, &["exec", &b, "ping", "-c1", "-W2", &ip]);
    }
    // Unknown names in the network's scope fail; the default bridge has no names.
    let o = d.docker(&["exec", &b, "nslookup", "no-such-name-x", &gw]);
    assert!(!text(&o.stdout).contains(&ip));
    // Inspect shows the aliases; the network shows both containers.
    let al = inspect(&d, &a)["NetworkSettings"]["Networks"][&n]["Aliases"].clone();
    assert!(
        al.as_array()
            .map(|v| v.iter().any(|x| x == "web"))
            .unwrap_or(false),
        "{al}"
    );
    let cs = net_inspect(&d, &n)["Containers"].clone();
    assert_eq!(cs.as_object().map(|o| o.len()), Some(2), "{cs}");
    // A rename moves the name.
    let a2 = name("a2");
    dok(&d, &["rename", &a, &a2]);
    poll(10, "the new name to resolve", || {
        let o = d.docker(&["exec", &b, "nslookup", &a2, &gw]);
        (o.status.success() && text(&o.stdout).contains(&ip)).then_some(())
    });
    let o = d.docker(&["exec", &b, "nslookup", &a, &gw]);
    assert!(!text(&o.stdout).contains(&ip), "{}", text(&o.stdout));
    // After the container is removed its names are gone.
    dok(&d, &["rm", "-f", &a2]);
    let o = d.docker(&["exec", &b, "nslookup", &a2, &gw]);
    assert!(!text(&o.stdout).contains(&ip), "{}", text(&o.stdout));
    let o = d.docker(&["exec", &b, "nslookup", "web", &gw]);
    assert!(!text(&o.stdout).contains(&ip), "{}", text(&o.stdout));
}

/// Accept connections on `l` for `secs` seconds; true if any arrived.
fn accepted_within(l: &TcpListener, secs: u64) -> bool {
    l.set_nonblocking(true).expect("nonblocking");
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if let Ok((mut s, _)) = l.accept() {
            let mut b = [0u8; 16];
            let _ = s.read(&mut b);
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn internal_network_cannot_reach_the_host() {
    let d = engine();
    for (internal, expect) in [(false, true), (true, false)] {
        let n = name("int");
        let mut args = vec!["network", "create"];
        if internal {
            args.push("--internal");
        }
        args.push(&n);
        dok(&d, &args);
        let v = net_inspect(&d, &n);
        assert_eq!(v["Internal"], internal);
        let gw = v["IPAM"]["Config"][0]["Gateway"]
            .as_str()
            .unwrap_or("")
            .to_string();
        // A server the test runs on the host, on the network's gateway address.
        let l = TcpListener::bind(format!("{gw}:0")).expect("listen on the gateway");
        let port = l.local_addr().expect("addr").port();
        let script = format!("echo hi | timeout 5 nc {gw} {port}; true");
        let c = name("cli");
        dok(
            &d,
            &[
                "run",
                "-d",
                "--name",
                &c,
                "--network",
                &n,
                "busybox",
                "sh",
                "-c",
                &script,
            ],
        );
        assert_eq!(accepted_within(&l, 8), expect, "internal={internal}");
        if internal {
            // No default route out either.
            let r = dok(
                &d,
                &["run", "--rm", "--network", &n, "busybox", "ip", "route"],
            );
            assert!(!r.contains("default"), "{r}");
        }
        dok(&d, &["rm", "-f", &c]);
        dok(&d, &["network", "rm", &n]);
    }
}

#[test]
fn connect_and_disconnect_a_running_container() {
    let d = engine();
    let n = name("cn");
    let subnet = d.net().spare_subnet(2);
    let base = subnet.trim_end_matches(".0/24").to_string();
    dok(&d, &["network", "create", "--subnet", &subnet, &n]);
    let c = name("c");
    dok(&d, &["run", "-d", "--name", &c, "busybox", "sleep", "300"]);
    let want = format!("{base}.50");
    dok(
        &d,
        &[
            "network", "connect", "--alias", "extra", "--ip", &want, &n, &c,
        ],
    );
    let i = inspect(&d, &c);
    let ep = &i["NetworkSettings"]["Networks"][&n];
    assert_eq!(ep["IPAddress"], want.as_str(), "{i}");
    assert!(i["NetworkSettings"]["Networks"]["bridge"].is_object());
    let out = dok(&d, &["exec", &c, "ip", "-4", "addr", "show", "eth1"]);
    assert!(out.contains(&want), "{out}");
    // A second container on the network reaches it there, by address and alias.
    let b = name("b");
    dok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            &b,
            "--network",
            &n,
            "busybox",
            "sleep",
            "300",
        ],
    );
    dok(&d, &["exec", &b, "ping", "-c1", "-W2", &want]);
    let err = d.docker_err(&["network", "connect", &n, &c]);
    assert!(err.contains("already exists in network"), "{err}");
    dok(&d, &["network", "disconnect", &n, &c]);
    let o = d.docker(&["exec", &c, "ip", "addr", "show", "eth1"]);
    assert!(!o.status.success(), "eth1 still there");
    assert!(inspect(&d, &c)["NetworkSettings"]["Networks"][&n].is_null());
    let err = d.docker_err(&["network", "disconnect", &n, &c]);
    assert!(err.contains("is not connected to network"), "{err}");
    // Connect a stopped container: it gets the address at its next start.
    dok(&d, &["stop", "-t", "0", &c]);
    dok(&d, &["network", "connect", &n, &c]);
    dok(&d, &["start", &c]);
    let ip: Value = inspect(&d, &c)["NetworkSettings"]["Networks"][&n]["IPAddress"].clone();
    assert!(
        ip.as_str().map(|s| s.starts_with(&base)).unwrap_or(false),
        "{ip}"
    );
}

#[test]
fn run_on_two_networks_and_filter_ps_by_network() {
    let d = engine();
    let (n1, n2) = (name("one"), name("two"));
    dok(&d, &["network", "create", &n1]);
    dok(&d, &["network", "create", &n2]);
    let c = name("two-nets");
    dok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            &c,
            "--network",
            &n1,
            "--network",
            &n2,
            "busybox",
            "sleep",
            "300",
        ],
    );
    let i = inspect(&d, &c);
    let nets = i["NetworkSettings"]["Networks"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert_eq!(nets.len(), 2, "{i}");
    let ifs = dok(&d, &["exec", &c, "ls", "/sys/class/net"]);
    assert!(ifs.contains("eth0") && ifs.contains("eth1"), "{ifs}");
    // Only the first network gives the default route.
    let r = dok(&d, &["exec", &c, "ip", "route"]);
    assert_eq!(r.matches("default").count(), 1, "{r}");
    let other = name("other");
    dok(
        &d,
        &["run", "-d", "--name", &other, "busybox", "sleep", "300"],
    );
    let f = dok(
        &d,
        &[
            "ps",
            "--format",
            "{{.Names}}",
            "--filter",
            &format!("network={n2}"),
        ],
    );
    assert_eq!(f.trim(), c);
    let f = dok(
        &d,
        &["ps", "--format", "{{.Names}}", "--filter", "network=bridge"],
    );
    assert_eq!(f.trim(), other);
}

#[test]
fn parallel_creates_get_one_name_and_distinct_subnets() {
    let d = engine();
    let same = name("same");
    let ok = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| s.spawn(|| d.docker(&["network", "create", &same]).status.success()))
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap_or(false))
            .filter(|ok| *ok)
            .count()
    });
    assert_eq!(ok, 1);
    let names: Vec<String> = (0..4).map(|i| name(&format!("par{i}"))).collect();
    std::thread::scope(|s| {
        for n in &names {
            let d = &d;
            s.spawn(move || dok(d, &["network", "create", n]));
        }
    });
    let mut subnets: Vec<String> = names
        .iter()
        .map(|n| {
            net_inspect(&d, n)["IPAM"]["Config"][0]["Subnet"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    subnets.sort();
    subnets.dedup();
    assert_eq!(subnets.len(), 4, "{subnets:?}");
}

#[test]
fn parallel_starts_get_distinct_addresses() {
    let d = engine();
    let n = name("pst");
    dok(&d, &["network", "create", &n]);
    let names: Vec<String> = (0..5).map(|i| name(&format!("p{i}"))).collect();
    std::thread::scope(|s| {
        for c in &names {
            let (d, n) = (&d, &n);
            s.spawn(move || {
                dok(
                    d,
                    &[
                        "run",
                        "-d",
                        "--name",
                        c,
                        "--network",
                        n,
                        "busybox",
                        "sleep",
                        "300",
                    ],
                )
            });
        }
    });
    let mut ips: Vec<String> = names.iter().map(|c| ip_on(&d, c, &n)).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 5, "{ips:?}");
    assert!(ips.iter().all(|i| !i.is_empty()));
    assert_eq!(
        net_inspect(&d, &n)["Containers"]
            .as_object()
            .map(|o| o.len()),
        Some(5)
    );
}
