use super::*;
use crate::cli::{Cli, Cmd};
use clap::Parser;

fn run_args(args: &[&str]) -> RunArgs {
    let cli = Cli::try_parse_from(["berth", "run"].iter().chain(args.iter()).copied()).unwrap();
    match cli.cmd {
        Some(Cmd::Run(r)) => r,
        _ => panic!("not run"),
    }
}

fn build(args: &[&str]) -> (ContainerCreateBody, Option<String>) {
    let lookup = |k: &str| (k == "FROM_ENV").then(|| "yes".to_string());
    let read = |p: &str| {
        if p == "envs" {
            Ok("# comment\n\nA=1\nFROM_ENV\nUNSET\n".to_string())
        } else {
            Err(std::io::Error::from(std::io::ErrorKind::NotFound))
        }
    };
    build_create(&run_args(args), &lookup, &read).unwrap()
}

#[test]
fn basic_run_body() {
    let (b, name) = build(&[
        "--name", "web", "-e", "X=1", "-e", "FROM_ENV", "-e", "UNSET", "busybox", "sh", "-c",
        "echo hi",
    ]);
    assert_eq!(name.as_deref(), Some("web"));
    assert_eq!(b.image.as_deref(), Some("busybox"));
    assert_eq!(
        b.cmd,
        Some(vec!["sh".into(), "-c".into(), "echo hi".into()])
    );
    assert_eq!(b.env, Some(vec!["X=1".into(), "FROM_ENV=yes".into()]));
    assert_eq!(b.attach_stdout, Some(true));
    assert_eq!(b.attach_stdin, Some(false));
    let h = b.host_config.unwrap();
    assert_eq!(h.auto_remove, Some(false));
    assert_eq!(
        h.restart_policy.unwrap().name,
        Some(RestartPolicyNameEnum::NO)
    );
    assert_eq!(h.network_mode.as_deref(), Some("default"));
}

#[test]
fn resources_and_security() {
    let (b, _) = build(&[
        "-d",
        "--rm",
        "-m",
        "512m",
        "--memory-swap",
        "-1",
        "--cpus",
        "1.5",
        "-c",
        "512",
        "--pids-limit",
        "100",
        "--privileged",
        "--cap-add",
        "NET_ADMIN",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--read-only",
        "--init",
        "--restart",
        "on-failure:3",
        "--log-opt",
        "max-size=10m",
        "-u",
        "1000:1000",
        "-w",
        "/tmp",
        "--entrypoint",
        "/bin/sh",
        "-h",
        "box",
        "--stop-signal",
        "SIGINT",
        "--stop-timeout",
        "5",
        "-l",
        "a=b",
        "-l",
        "flag",
        "busybox",
    ]);
    assert_eq!(b.attach_stdout, Some(false));
    assert_eq!(b.cmd, None);
    assert_eq!(b.user.as_deref(), Some("1000:1000"));
    assert_eq!(b.working_dir.as_deref(), Some("/tmp"));
    assert_eq!(b.entrypoint, Some(vec!["/bin/sh".into()]));
    assert_eq!(b.hostname.as_deref(), Some("box"));
    assert_eq!(b.stop_signal.as_deref(), Some("SIGINT"));
    assert_eq!(b.stop_timeout, Some(5));
    let labels = b.labels.unwrap();
    assert_eq!(labels["a"], "b");
    assert_eq!(labels["flag"], "");
    let h = b.host_config.unwrap();
    assert_eq!(h.auto_remove, Some(true));
    assert_eq!(h.memory, Some(512 * 1024 * 1024));
    assert_eq!(h.memory_swap, Some(-1));
    assert_eq!(h.nano_cpus, Some(1_500_000_000));
    assert_eq!(h.cpu_shares, Some(512));
    assert_eq!(h.pids_limit, Some(100));
    assert_eq!(h.privileged, Some(true));
    assert_eq!(h.cap_add, Some(vec!["NET_ADMIN".into()]));
    assert_eq!(h.cap_drop, Some(vec!["ALL".into()]));
    assert_eq!(h.security_opt, Some(vec!["no-new-privileges".into()]));
    assert_eq!(h.readonly_rootfs, Some(true));
    assert_eq!(h.init, Some(true));
    let rp = h.restart_policy.unwrap();
    assert_eq!(rp.name, Some(RestartPolicyNameEnum::ON_FAILURE));
    assert_eq!(rp.maximum_retry_count, Some(3));
    assert_eq!(h.log_config.unwrap().config.unwrap()["max-size"], "10m");
}

#[test]
fn ports_volumes_env_file() {
    let (b, _) = build(&[
        "-it",
        "-p",
        "8080:80",
        "-p",
        "127.0.0.1:53:53/udp",
        "-p",
        "[::1]:9000:9000",
        "-p",
        "3000",
        "-v",
        "/host:/data:ro",
        "-v",
        "/anon",
        "--network",
        "none",
        "--env-file",
        "envs",
        "busybox",
    ]);
    assert_eq!(b.tty, Some(true));
    assert_eq!(b.open_stdin, Some(true));
    assert_eq!(b.stdin_once, Some(true));
    assert_eq!(b.attach_stdin, Some(true));
    assert_eq!(b.env, Some(vec!["A=1".into(), "FROM_ENV=yes".into()]));
    assert_eq!(b.volumes, Some(vec!["/anon".into()]));
    let exposed = b.exposed_ports.unwrap();
    assert!(exposed.contains(&"80/tcp".to_string()) && exposed.contains(&"53/udp".to_string()));
    let h = b.host_config.unwrap();
    assert_eq!(h.binds, Some(vec!["/host:/data:ro".into()]));
    assert_eq!(h.network_mode.as_deref(), Some("none"));
    let pb = h.port_bindings.unwrap();
    let b80 = &pb["80/tcp"].as_ref().unwrap()[0];
    assert_eq!(
        (b80.host_ip.as_deref(), b80.host_port.as_deref()),
        (Some(""), Some("8080"))
    );
    let b53 = &pb["53/udp"].as_ref().unwrap()[0];
    assert_eq!(
        (b53.host_ip.as_deref(), b53.host_port.as_deref()),
        (Some("127.0.0.1"), Some("53"))
    );
    let b9 = &pb["9000/tcp"].as_ref().unwrap()[0];
    assert_eq!(b9.host_ip.as_deref(), Some("::1"));
    assert_eq!(
        pb["3000/tcp"].as_ref().unwrap()[0].host_port.as_deref(),
        Some("")
    );
}

#[test]
fn bad_inputs_are_errors() {
    assert!(parse_restart("sometimes").is_err());
    assert!(parse_restart("always:3").is_err());
    assert!(parse_restart("on-failure:x").is_err());
    assert_eq!(
        parse_restart("unless-stopped").unwrap().name,
        Some(RestartPolicyNameEnum::UNLESS_STOPPED)
    );
    assert!(parse_publish("abc").is_err());
    assert!(parse_publish("8080-8081:80").is_err());
    assert_eq!(parse_publish("8080-8081:80-81").unwrap().len(), 2);
    let lookup = |_: &str| None;
    let read = |_: &str| Err(std::io::Error::from(std::io::ErrorKind::NotFound));
    assert!(build_create(
        &run_args(&["--env-file", "missing", "busybox"]),
        &lookup,
        &read
    )
    .is_err());
    assert!(build_create(&run_args(&["--cpus", "lots", "busybox"]), &lookup, &read).is_err());
    assert!(build_create(
        &run_args(&["-d", "-a", "stdout", "busybox"]),
        &lookup,
        &read
    )
    .is_err());
    assert!(parse_env_file("BAD KEY=1\n", &lookup).is_err());
}

#[test]
fn references() {
    assert_eq!(
        split_reference("busybox"),
        ("busybox".into(), "latest".into())
    );
    assert_eq!(
        split_reference("localhost:5000/a/b:1.2"),
        ("localhost:5000/a/b".into(), "1.2".into())
    );
    assert_eq!(
        split_reference("localhost:5000/a"),
        ("localhost:5000/a".into(), "latest".into())
    );
    assert_eq!(
        split_reference("a@sha256:00"),
        ("a".into(), "sha256:00".into())
    );
}

#[test]
fn create_body_serializes_like_docker() {
    let (b, _) = build(&["-p", "80:80", "busybox"]);
    let v = serde_json::to_value(&b).unwrap();
    assert_eq!(v["ExposedPorts"]["80/tcp"], serde_json::json!({}));
    assert_eq!(
        v["HostConfig"]["PortBindings"]["80/tcp"][0]["HostPort"],
        "80"
    );
    assert_eq!(v["Image"], "busybox");
}
