//! Engine restarts and cleanliness: kill -9 keeps a published port working, rm afterwards leaves
//! nothing; a graceful shutdown and the harness's drop leave no bridge or nftables table.

use std::net::TcpListener;

use crate::common::net::{link_exists, nft_table_exists};
use crate::common::TestDaemon;
use crate::helpers::*;

#[test]
fn kill9_and_restart_keep_a_published_port() {
    let d = engine();
    let port = free_port();
    let c = name("live");
    let spec = format!("127.0.0.1:{port}:80");
    dok(
        &d,
        &[
            "run", "-d", "--name", &c, "-p", &spec, "busybox", "sh", "-c", HTTPD,
        ],
    );
    let addr = format!("127.0.0.1:{port}");
    poll(15, "the page", || {
        http_get(&addr).filter(|p| p.contains("hello-berth"))
    });
    let n = name("keep");
    dok(&d, &["network", "create", &n]);
    let br = format!(
        "br-{}",
        &net_inspect(&d, &n)["Id"].as_str().unwrap_or("????????????")[..12]
    );
    d.kill9();
    // The container and its forwarding live on without the engine.
    assert!(http_get(&addr).is_some_and(|p| p.contains("hello-berth")));
    d.start_again();
    poll(15, "the page after the restart", || {
        http_get(&addr).filter(|p| p.contains("hello-berth"))
    });
    assert_eq!(
        dok(&d, &["port", &c]).trim(),
        format!("80/tcp -> 127.0.0.1:{port}")
    );
    // The reservation is held again by the new engine.
    let err = d.docker_err(&["run", "-d", "-p", &spec, "busybox", "sleep", "300"]);
    assert!(err.contains("port is already allocated"), "{err}");
    assert!(link_exists(&br));
    // rm leaves nothing: no netns file, no veth, the port is free.
    dok(&d, &["rm", "-f", &c]);
    assert!(netns_files(&d).is_empty(), "{:?}", netns_files(&d));
    poll(10, "the veths to go", || {
        veths_on(&d.net().bridge).is_empty().then_some(())
    });
    poll(5, "the port to be free", || {
        TcpListener::bind(&addr).ok().map(|_| ())
    });
    assert!(http_get(&addr).is_none());
}

#[test]
fn restart_removes_what_a_dead_container_left() {
    let d = engine();
    let c = name("dead");
    dok(&d, &["run", "-d", "--name", &c, "busybox", "sleep", "300"]);
    let pid = inspect(&d, &c)["State"]["Pid"].as_i64().unwrap_or(0);
    assert!(pid > 0);
    d.kill9();
    // The container dies while the engine is down.
    crate::common::kill_shims(&d.exec_root().join("shims"));
    d.start_again();
    poll(10, "the container to be exited", || {
        (inspect(&d, &c)["State"]["Status"] == "exited").then_some(())
    });
    assert!(netns_files(&d).is_empty(), "{:?}", netns_files(&d));
    poll(10, "the veth to go", || {
        veths_on(&d.net().bridge).is_empty().then_some(())
    });
    assert!(inspect(&d, &c)["NetworkSettings"]["Networks"]["bridge"]["IPAddress"] == "");
}

#[test]
fn shutdown_and_drop_leave_no_bridge_or_table() {
    let (bridge, user_bridge, table);
    {
        let d = engine();
        let n = name("gone");
        dok(&d, &["network", "create", &n]);
        user_bridge = format!(
            "br-{}",
            &net_inspect(&d, &n)["Id"].as_str().unwrap_or("????????????")[..12]
        );
        dok(
            &d,
            &["run", "-d", "--network", &n, "busybox", "sleep", "300"],
        );
        dok(&d, &["run", "-d", "-p", "80", "busybox", "sleep", "300"]);
        bridge = d.net().bridge.clone();
        table = d.net().table.clone();
        assert!(link_exists(&bridge) && link_exists(&user_bridge));
        assert!(nft_table_exists(&table));
    }
    assert!(!link_exists(&bridge), "{bridge} left");
    assert!(!link_exists(&user_bridge), "{user_bridge} left");
    assert!(!nft_table_exists(&table), "table {table} left");

    // A graceful shutdown with nothing running removes them itself.
    let d = TestDaemon::start();
    let n = name("sd");
    dok(&d, &["network", "create", &n]);
    let ub = format!(
        "br-{}",
        &net_inspect(&d, &n)["Id"].as_str().unwrap_or("????????????")[..12]
    );
    assert!(link_exists(&ub));
    let pid = d.pid().expect("engine pid") as i32;
    // SAFETY: signalling the engine this test started.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    poll(10, "the engine to exit", || {
        // SAFETY: existence check only.
        (unsafe { libc::kill(pid, 0) } != 0 || zombie(pid)).then_some(())
    });
    assert!(!link_exists(&ub), "{ub} left after shutdown");
    assert!(!link_exists(&d.net().bridge));
    assert!(!nft_table_exists(&d.net().table));
}

fn zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(true)
}

#[test]
fn restart_policy_at_engine_start_gets_its_network_back() {
    let d = engine();
    let port = free_port();
    let c = name("always");
    let spec = format!("127.0.0.1:{port}:80");
    dok(
        &d,
        &[
            "run",
            "-d",
            "--restart",
            "always",
            "--name",
            &c,
            "-p",
            &spec,
            "busybox",
            "sh",
            "-c",
            HTTPD,
        ],
    );
    let addr = format!("127.0.0.1:{port}");
    poll(15, "the page", || {
        http_get(&addr).filter(|p| p.contains("hello-berth"))
    });
    let old_pid = inspect(&d, &c)["State"]["Pid"].as_i64().unwrap_or(0);
    d.kill9();
    // The container dies while the engine is down (its shim records the exit).
    // SAFETY: a pid this test's container runs as.
    unsafe {
        libc::kill(old_pid as i32, libc::SIGKILL);
    }
    d.start_again();
    // The policy starts it again with a fresh network, and restore leaves that alone.
    poll(20, "the page after the policy restart", || {
        http_get(&addr).filter(|p| p.contains("hello-berth"))
    });
    let i = inspect(&d, &c);
    assert_ne!(i["State"]["Pid"].as_i64().unwrap_or(0), old_pid);
    assert_eq!(netns_files(&d).len(), 1, "{:?}", netns_files(&d));
    assert_eq!(veths_on(&d.net().bridge).len(), 1);
    dok(&d, &["rm", "-f", &c]);
    assert!(netns_files(&d).is_empty());
}

#[test]
fn stopped_container_after_engine_restart_starts_with_its_port() {
    let d = engine();
    let port = free_port();
    let c = name("stopped");
    let spec = format!("127.0.0.1:{port}:80");
    dok(
        &d,
        &[
            "run", "-d", "--name", &c, "-p", &spec, "busybox", "sh", "-c", HTTPD,
        ],
    );
    dok(&d, &["stop", "-t", "0", &c]);
    d.kill9();
    d.start_again();
    let i = inspect(&d, &c);
    assert_eq!(
        i["NetworkSettings"]["Networks"]["bridge"]["IPAddress"], "",
        "{i}"
    );
    assert_eq!(i["NetworkSettings"]["Ports"], serde_json::json!({}), "{i}");
    assert!(netns_files(&d).is_empty());
    dok(&d, &["start", &c]);
    let addr = format!("127.0.0.1:{port}");
    poll(15, "the page", || {
        http_get(&addr).filter(|p| p.contains("hello-berth"))
    });
}
