//! berth's own CLI for networks, against docker's output on the same engine.

use crate::helpers::*;

#[test]
fn berth_network_cli_matches_docker() {
    let d = engine();
    let n = name("bn");
    let subnet = d.net().spare_subnet(3);
    let base = subnet.trim_end_matches(".0/24").to_string();
    let id = d
        .berth_ok(&[
            "network", "create", "--subnet", &subnet, "--label", "k=v", &n,
        ])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64);
    for args in [
        vec!["network", "ls"],
        vec!["network", "ls", "-q"],
        vec!["network", "ls", "--no-trunc", "--filter", "label=k=v"],
        vec![
            "network",
            "ls",
            "--format",
            "{{.Name}} {{.Driver}} {{.Scope}}",
        ],
        vec![
            "network",
            "inspect",
            "--format",
            "{{.Name}} {{.Internal}}",
            &n,
        ],
    ] {
        assert_eq!(d.berth_ok(&args), d.docker_ok(&args), "{args:?}");
    }
    let bi: serde_json::Value =
        serde_json::from_str(&d.berth_ok(&["network", "inspect", &n])).expect("json");
    let di: serde_json::Value =
        serde_json::from_str(&d.docker_ok(&["network", "inspect", &n])).expect("json");
    assert_eq!(bi, di);
    // run flags: --network, --network-alias, --ip, -P, --dns-search, --dns-option.
    let c = name("c");
    let ip = format!("{base}.77");
    d.berth_ok(&[
        "run",
        "-d",
        "--name",
        &c,
        "--network",
        &n,
        "--network-alias",
        "svc",
        "--ip",
        &ip,
        "--expose",
        "80",
        "-P",
        "--dns-search",
        "x.test",
        "--dns-option",
        "ndots:2",
        "busybox",
        "sleep",
        "300",
    ]);
    let i = inspect(&d, &c);
    let ep = &i["NetworkSettings"]["Networks"][&n];
    assert_eq!(ep["IPAddress"], ip.as_str(), "{i}");
    assert!(ep["Aliases"].to_string().contains("svc"), "{ep}");
    assert_eq!(d.berth_ok(&["port", &c]), d.docker_ok(&["port", &c]));
    assert!(d.docker_ok(&["port", &c]).contains("80/tcp -> 0.0.0.0:"));
    let rc = d.docker_ok(&["exec", &c, "cat", "/etc/resolv.conf"]);
    assert!(
        rc.contains("search x.test") && rc.contains("options ndots:2"),
        "{rc}"
    );
    // connect / disconnect.
    let n2 = name("bn2");
    d.berth_ok(&["network", "create", &n2]);
    d.berth_ok(&["network", "connect", "--alias", "other", &n2, &c]);
    assert!(
        inspect(&d, &c)["NetworkSettings"]["Networks"][&n2]["IPAddress"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    d.berth_ok(&["network", "disconnect", &n2, &c]);
    assert!(inspect(&d, &c)["NetworkSettings"]["Networks"][&n2].is_null());
    // Errors as docker prints them.
    let b = d.berth(&["network", "rm", &n]);
    let k = d.docker(&["network", "rm", &n]);
    assert!(!b.status.success() && !k.status.success());
    assert_eq!(text(&b.stderr), text(&k.stderr));
    d.docker_ok(&["rm", "-f", &c]);
    assert_eq!(d.berth_ok(&["network", "rm", &n]).trim(), n);
    let out = d.berth_ok(&["network", "prune", "-f"]);
    assert_eq!(out, format!("Deleted Networks:\n{n2}\n"));
}
