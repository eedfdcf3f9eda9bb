//! Networks end to end through the real docker CLI: the default bridge, published ports,
//! `--network none/host/container:`, and cleanliness (no netns, veth, port or rule left behind).
//! User-defined networks, DNS and the network verbs are in `networks/user.rs`; engine restarts
//! in `networks/restart.rs`.

#[path = "networks/cli.rs"]
mod cli;
mod common;
#[path = "networks/helpers.rs"]
mod helpers;
#[path = "networks/restart.rs"]
mod restart;
#[path = "networks/user.rs"]
mod user;

use helpers::*;

use std::net::TcpListener;

#[test]
fn default_bridge_gives_eth0_address_hosts_and_resolv() {
    let d = engine();
    let gw = d.net().gateway().to_string();
    let c = name("br");
    dok(&d, &["run", "-d", "--name", &c, "busybox", "sleep", "300"]);
    let i = inspect(&d, &c);
    assert_eq!(i["HostConfig"]["NetworkMode"], "bridge");
    let n = &i["NetworkSettings"]["Networks"]["bridge"];
    let ip = n["IPAddress"].as_str().unwrap_or("").to_string();
    assert!(
        ip.starts_with(&format!("10.{}.{}.", d.net().a, d.net().b)),
        "{i}"
    );
    assert_eq!(n["Gateway"], gw.as_str());
    assert_eq!(n["IPPrefixLen"], 24);
    assert_eq!(i["NetworkSettings"]["IPAddress"], ip.as_str());
    assert_eq!(
        n["MacAddress"].as_str().map(|m| m.starts_with("02:42:")),
        Some(true)
    );
    assert_eq!(n["EndpointID"].as_str().map(|s| s.len()), Some(64));
    // Inside: eth0 has the address, the default route goes via the gateway, /etc/hosts names it.
    let addr = dok(&d, &["exec", &c, "ip", "-4", "addr", "show", "eth0"]);
    assert!(addr.contains(&format!("inet {ip}/24")), "{addr}");
    let route = dok(&d, &["exec", &c, "ip", "route"]);
    assert!(route.contains(&format!("default via {gw}")), "{route}");
    let hosts = dok(&d, &["exec", &c, "cat", "/etc/hosts"]);
    let hostname = i["Config"]["Hostname"].as_str().unwrap_or("?").to_string();
    assert!(hosts.contains(&format!("{ip}\t{hostname}")), "{hosts}");
    // The container reaches the host through the gateway.
    dok(&d, &["exec", &c, "ping", "-c1", "-W2", &gw]);
    // The bridge network lists the running container.
    let net = net_inspect(&d, "bridge");
    let cid = i["Id"].as_str().unwrap_or("");
    assert_eq!(
        net["Containers"][cid]["IPv4Address"],
        format!("{ip}/24").as_str()
    );
    assert_eq!(
        net["Options"]["com.docker.network.bridge.name"],
        d.net().bridge.as_str()
    );
    // rm takes the netns file and the veth along.
    assert_eq!(netns_files(&d).len(), 1);
    assert_eq!(veths_on(&d.net().bridge).len(), 1);
    dok(&d, &["rm", "-f", &c]);
    assert!(netns_files(&d).is_empty(), "{:?}", netns_files(&d));
    poll(10, "the veth to go", || {
        veths_on(&d.net().bridge).is_empty().then_some(())
    });
}

#[test]
fn extra_hosts_dns_flags_and_host_gateway() {
    let d = engine();
    let gw = d.net().gateway().to_string();
    let out = dok(
        &d,
        &[
            "run",
            "--rm",
            "--add-host",
            "db.test:192.0.2.77",
            "--add-host",
            "gw.test:host-gateway",
            "--dns",
            "192.0.2.53",
            "--dns-search",
            "corp.test",
            "--dns-option",
            "ndots:3",
            "busybox",
            "sh",
            "-c",
            "cat /etc/hosts /etc/resolv.conf",
        ],
    );
    assert!(out.contains("192.0.2.77\tdb.test"), "{out}");
    assert!(out.contains(&format!("{gw}\tgw.test")), "{out}");
    assert!(out.contains("nameserver 192.0.2.53"), "{out}");
    assert!(out.contains("search corp.test"), "{out}");
    assert!(out.contains("options ndots:3"), "{out}");
}

#[test]
fn network_none_has_only_loopback_and_host_shares_the_host() {
    let d = engine();
    assert_eq!(ifaces(&d, &["--network", "none"]), vec!["lo".to_string()]);
    let mut bridge = ifaces(&d, &[]);
    bridge.retain(|i| i == "lo" || i == "eth0");
    assert_eq!(bridge, vec!["eth0".to_string(), "lo".to_string()]);
    let c = name("none");
    dok(
        &d,
        &[
            "create",
            "--name",
            &c,
            "--network",
            "none",
            "busybox",
            "true",
        ],
    );
    let i = inspect(&d, &c);
    assert_eq!(i["HostConfig"]["NetworkMode"], "none");
    assert!(i["NetworkSettings"]["Networks"]["none"].is_object(), "{i}");
    // host: the host's own interfaces (the engine's bridge among them).
    let host = ifaces(&d, &["--network", "host"]);
    assert!(host.contains(&d.net().bridge), "{host:?}");
}

#[test]
fn container_mode_joins_the_other_netns() {
    let d = engine();
    let a = name("a");
    dok(&d, &["run", "-d", "--name", &a, "busybox", "sleep", "300"]);
    let ip = inspect(&d, &a)["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let mode = format!("container:{a}");
    let out = dok(
        &d,
        &[
            "run",
            "--rm",
            "--network",
            &mode,
            "busybox",
            "ip",
            "-4",
            "addr",
            "show",
            "eth0",
        ],
    );
    assert!(out.contains(&ip), "{out}");
    // Docker's conflicts of the container mode.
    for (flag, val, msg) in [
        ("-p", "80", "port publishing"),
        ("--dns", "192.0.2.53", "dns and the network mode"),
        ("--add-host", "x:192.0.2.1", "custom host-to-IP mapping"),
    ] {
        let err = d.docker_err(&[
            "run",
            "--rm",
            "--network",
            &mode,
            flag,
            val,
            "busybox",
            "true",
        ]);
        assert!(
            err.contains(&format!("conflicting options: {msg}")),
            "{err}"
        );
    }
    // Joining a stopped container fails.
    let b = name("b");
    dok(&d, &["create", "--name", &b, "busybox", "true"]);
    let mode = format!("container:{b}");
    let err = d.docker_err(&["run", "--rm", "--network", &mode, "busybox", "true"]);
    assert!(err.contains("non running container"), "{err}");
}

#[test]
fn published_port_on_loopback_serves_the_host() {
    let d = engine();
    let port = free_port();
    let c = name("web");
    let spec = format!("127.0.0.1:{port}:80");
    dok(
        &d,
        &[
            "run", "-d", "--name", &c, "-p", &spec, "busybox", "sh", "-c", HTTPD,
        ],
    );
    let addr = format!("127.0.0.1:{port}");
    let page = poll(15, "the page through the published port", || {
        http_get(&addr).filter(|p| p.contains("hello-berth"))
    });
    assert!(page.starts_with("HTTP/1."), "{page}");
    let p = dok(&d, &["port", &c]);
    assert_eq!(p.trim(), format!("80/tcp -> 127.0.0.1:{port}"));
    let ps = dok(
        &d,
        &[
            "ps",
            "--format",
            "{{.Ports}}",
            "--filter",
            &format!("name={c}"),
        ],
    );
    assert_eq!(ps.trim(), format!("127.0.0.1:{port}->80/tcp"));
    // The port is held while the container runs: a host program cannot bind it.
    assert!(TcpListener::bind(&addr).is_err());
    dok(&d, &["stop", "-t", "1", &c]);
    assert!(http_get(&addr).is_none());
    poll(5, "the port to be free again", || {
        TcpListener::bind(&addr).ok().map(|_| ())
    });
    assert_eq!(dok(&d, &["port", &c]).trim(), "");
    // And back after a start.
    dok(&d, &["start", &c]);
    poll(15, "the page after a restart", || {
        http_get(&addr).filter(|p| p.contains("hello-berth"))
    });
}

#[test]
fn random_port_publish_all_and_port_taken() {
    let d = engine();
    let c = name("rnd");
    dok(
        &d,
        &[
            "run", "-d", "--name", &c, "-p", "80", "--expose", "81", "-P", "busybox", "sh", "-c",
            HTTPD,
        ],
    );
    let p80 = dok(&d, &["port", &c, "80"]);
    let hp: u16 = p80
        .trim()
        .rsplit(':')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no port in {p80:?}"));
    assert!(p80.trim().starts_with("0.0.0.0:"), "{p80}");
    let all = dok(&d, &["port", &c]);
    assert!(all.contains("81/tcp -> 0.0.0.0:"), "{all}");
    // 0.0.0.0 includes loopback.
    let addr = format!("127.0.0.1:{hp}");
    poll(15, "the page through the random port", || {
        http_get(&addr).filter(|p| p.contains("hello-berth"))
    });
    // Another container reaches it through the published port on the gateway (the host's
    // address on the bridge): DNAT in prerouting, back over the same bridge.
    let gw_url = format!("http://{}:{hp}/", d.net().gateway());
    let page = dok(
        &d,
        &[
            "run", "--rm", "busybox", "timeout", "5", "wget", "-qO-", &gw_url,
        ],
    );
    assert!(page.contains("hello-berth"), "{page}");
    // A port someone holds: Docker's error, and the container does not run.
    let holder = TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = holder.local_addr().expect("addr").port();
    let c2 = name("taken");
    let spec = format!("127.0.0.1:{taken}:80");
    let err = d.docker_err(&[
        "run", "-d", "--name", &c2, "-p", &spec, "busybox", "sleep", "300",
    ]);
    assert!(
        err.contains(&format!(
            "Bind for 127.0.0.1:{taken} failed: port is already allocated"
        )),
        "{err}"
    );
    let st = inspect(&d, &c2);
    assert_ne!(st["State"]["Status"], "running");
    // Nothing of the failed start stays behind.
    assert_eq!(netns_files(&d).len(), 1, "{:?}", netns_files(&d));
    // UDP and a range.
    let c3 = name("udp");
    let lo = free_port();
    let range = format!("127.0.0.1:{lo}-{}:53/udp", lo + 5);
    dok(
        &d,
        &[
            "run", "-d", "--name", &c3, "-p", &range, "busybox", "sleep", "300",
        ],
    );
    let p = dok(&d, &["port", &c3]);
    assert!(p.starts_with("53/udp -> 127.0.0.1:"), "{p}");
}
