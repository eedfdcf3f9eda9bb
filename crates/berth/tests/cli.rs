//! berth's own CLI against the docker CLI: the same commands through `docker` and `berth` against
//! one engine must print the same (after normalising relative times and column padding) and exit
//! with the same codes.

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{berth_exe, docker_exe, run_with_timeout, TestDaemon};
use serde_json::Value;

const T: Duration = Duration::from_secs(60);

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Replace relative times ("2 seconds ago", "Up Less than a second", "About a minute") by `T`
/// and collapse runs of spaces (tabwriter padding depends on those widths).
fn normalise(s: &str) -> String {
    let mut s = s.to_string();
    for p in ["Less than a second", "About a minute", "About an hour"] {
        s = s.replace(p, "T");
    }
    let b: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        let starts_number = b[i].is_ascii_digit() && (i == 0 || !b[i - 1].is_ascii_alphanumeric());
        if starts_number {
            let mut j = i;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            let rest: String = b[j..b.len().min(j + 8)].iter().collect();
            if [" second", " minute", " hour"]
                .iter()
                .any(|u| rest.starts_with(u))
            {
                j += 1;
                while j < b.len() && b[j].is_ascii_alphabetic() {
                    j += 1;
                }
                out.push('T');
                i = j;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out.lines()
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Run the same arguments through docker and berth; return both outputs.
fn both(d: &TestDaemon, args: &[&str]) -> (Output, Output) {
    (d.docker(args), d.berth(args))
}

fn both_stdin(d: &TestDaemon, args: &[&str], input: &[u8]) -> (Output, Output) {
    (d.docker_stdin(args, input), d.berth_stdin(args, input))
}

/// Same exit code, same normalised stdout and stderr (`docker:`/`berth:` prefixes aside).
fn assert_same(d: &TestDaemon, args: &[&str]) -> String {
    let (dk, bt) = both(d, args);
    assert_same_outputs(d, args, &dk, &bt);
    text(&bt.stdout)
}

/// Like [`assert_same`], but the stdout lines may come in any order.
fn assert_same_lines_any_order(d: &TestDaemon, args: &[&str]) {
    let (dk, bt) = both(d, args);
    let sorted = |o: &Output| {
        let mut l: Vec<String> = normalise(&text(&o.stdout))
            .lines()
            .map(String::from)
            .collect();
        l.sort();
        l
    };
    assert_eq!(
        dk.status.code(),
        bt.status.code(),
        "exit codes for {args:?}"
    );
    assert_eq!(
        sorted(&dk),
        sorted(&bt),
        "stdout of {args:?}\n{}\n====\n{}",
        d.describe(&dk),
        d.describe(&bt)
    );
    assert!(!sorted(&bt).is_empty(), "nothing to compare for {args:?}");
}

fn assert_same_outputs(d: &TestDaemon, args: &[&str], dk: &Output, bt: &Output) {
    let ctx = || {
        format!(
            "docker {args:?}:\n{}\n==== berth {args:?}:\n{}",
            d.describe(dk),
            d.describe(bt)
        )
    };
    assert_eq!(dk.status.code(), bt.status.code(), "exit codes\n{}", ctx());
    assert_eq!(
        normalise(&text(&dk.stdout)),
        normalise(&text(&bt.stdout)),
        "stdout\n{}",
        ctx()
    );
    let err = |o: &Output| {
        normalise(&text(&o.stderr))
            .replace("docker: ", "PROG: ")
            .replace("berth: ", "PROG: ")
            .replace("'docker ", "'PROG ")
            .replace("'berth ", "'PROG ")
            .replace("Usage: | docker ", "Usage: | PROG ")
            .replace("Usage: | berth ", "Usage: | PROG ")
    };
    assert_eq!(err(dk), err(bt), "stderr\n{}", ctx());
}

/// Poll `f` until it is true or `limit` passes.
fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

#[test]
fn listings_match_docker() {
    let d = TestDaemon::start();
    d.import_busybox("busybox");
    d.docker_ok(&["tag", "busybox", "bb:v1"]);
    d.docker_ok(&[
        "run",
        "--name",
        "cli-done",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2",
    ]);
    d.docker_ok(&["run", "-d", "--name", "cli-up", "busybox", "sleep", "1000"]);
    for args in [
        &["images"][..],
        &["images", "-a", "--no-trunc"],
        &["images", "--format", "json"],
        &[
            "images",
            "--format",
            "{{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}",
        ],
        &["ps"],
        &["ps", "-a"],
        &["ps", "-a", "--no-trunc"],
        &["ps", "-aq"],
        &["ps", "-a", "--format", "{{.ID}} {{.Names}}"],
        &["ps", "-a", "--format", "json"],
        &["history", "busybox"],
        &["history", "--no-trunc", "bb:v1"],
        &["logs", "cli-done"],
    ] {
        if args[0] == "images" {
            // The docker CLI groups an image's tags through a Go map: their order is random.
            assert_same_lines_any_order(&d, args);
        } else {
            assert_same(&d, args);
        }
    }
    // The comparisons must have had something to compare.
    let ps = d.berth_ok(&["ps", "-a", "--format", "{{.ID}} {{.Names}}"]);
    assert!(ps.contains(" cli-done") && ps.contains(" cli-up"), "{ps}");
    let (_, logs) = both(&d, &["logs", "cli-done"]);
    assert_eq!(text(&logs.stdout), "out\n");
    assert_eq!(text(&logs.stderr), "err\n");
    let images = d.berth_ok(&["images", "--format", "json"]);
    // busybox:latest, bb:v1 and the built-in hello-world.
    assert_eq!(images.lines().count(), 3, "{images}");
}

/// Keys of a JSON value, recursively, as dotted paths.
fn key_paths(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let p = format!("{prefix}.{k}");
                out.insert(p.clone());
                key_paths(v, &p, out);
            }
        }
        Value::Array(a) => {
            for v in a {
                key_paths(v, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn inspect_version_info_match_docker() {
    let d = TestDaemon::start();
    d.import_busybox("busybox");
    d.docker_ok(&[
        "run",
        "--name",
        "cli-insp",
        "busybox",
        "sh",
        "-c",
        "echo a >&2",
    ]);
    for args in [
        &["inspect", "cli-insp"][..],
        &["inspect", "busybox", "cli-insp"],
        &["container", "inspect", "cli-insp"],
        &["image", "inspect", "busybox"],
        &[
            "inspect",
            "-f",
            "{{.State.ExitCode}} {{.Config.Cmd}}",
            "cli-insp",
        ],
    ] {
        let (dk, bt) = both(&d, args);
        assert_same_outputs(&d, args, &dk, &bt);
        let (a, b): (Value, Value) = if args.contains(&"-f") {
            assert_eq!(text(&bt.stdout), "0 [sh -c echo a >&2]\n");
            continue;
        } else {
            (
                serde_json::from_slice(&dk.stdout).expect("docker json"),
                serde_json::from_slice(&bt.stdout).expect("berth json"),
            )
        };
        let (mut ka, mut kb) = (BTreeSet::new(), BTreeSet::new());
        key_paths(&a, "", &mut ka);
        key_paths(&b, "", &mut kb);
        assert!(ka.len() > 10, "too few keys: {ka:?}");
        assert_eq!(ka, kb, "{args:?}");
    }

    // version: the server section is the same (the build time printed as Go's ANSIC).
    let server = |o: &Output| {
        let t = text(&o.stdout);
        let at = t
            .find("Server:")
            .unwrap_or_else(|| panic!("no Server: in {t}"));
        t[at..]
            .lines()
            .map(|l| {
                if l.trim_start().starts_with("Built:") {
                    l.chars()
                        .map(|c| if c.is_ascii_digit() { '0' } else { c })
                        .collect()
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<String>>()
    };
    let (dk, bt) = both(&d, &["version"]);
    assert!(
        dk.status.success() && bt.status.success(),
        "{}",
        d.describe(&bt)
    );
    assert_eq!(server(&dk), server(&bt));
    let built = server(&bt).into_iter().find(|l| l.contains("Built:"));
    assert!(
        !built.unwrap_or_default().contains('T'),
        "{}",
        text(&bt.stdout)
    );
    let client = text(&bt.stdout);
    for k in [
        "Version:",
        "API version:",
        "Go version:",
        "OS/Arch:",
        "Context:",
    ] {
        assert!(client.contains(k), "berth version lacks {k}:\n{client}");
    }

    // info: every line from "Server:" on is the same.
    let (dk, bt) = both(&d, &["info"]);
    assert!(
        dk.status.success() && bt.status.success(),
        "{}",
        d.describe(&bt)
    );
    assert_eq!(server(&dk), server(&bt));
    assert_eq!(text(&dk.stderr), text(&bt.stderr));
    let info = text(&bt.stdout);
    for k in [
        " Containers: 1",
        "  Stopped: 1",
        " Images: 2",
        " Storage Driver:",
        " Security Options:",
    ] {
        assert!(info.contains(k), "no {k:?} in:\n{info}");
    }
}

#[test]
fn run_streams_exit_code_and_stdin() {
    let d = TestDaemon::start();
    d.import_busybox("busybox");
    let args = [
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo a; echo b >&2; exit 3",
    ];
    let (dk, bt) = both(&d, &args);
    assert_same_outputs(&d, &args, &dk, &bt);
    assert_eq!(bt.status.code(), Some(3), "{}", d.describe(&bt));
    assert_eq!(text(&bt.stdout), "a\n");
    assert_eq!(text(&bt.stderr), "b\n");

    let args = ["run", "-i", "--rm", "busybox", "cat"];
    let (dk, bt) = both_stdin(&d, &args, b"x\n");
    assert_same_outputs(&d, &args, &dk, &bt);
    assert_eq!(text(&bt.stdout), "x\n", "{}", d.describe(&bt));
    assert!(bt.status.success());
    // --rm: nothing is left.
    assert_eq!(d.docker_ok(&["ps", "-aq"]), "");
}

#[test]
fn detached_stop_rm() {
    let d = TestDaemon::start();
    d.import_busybox("busybox");
    let id = d.berth_ok(&["run", "-d", "--name", "cli-det", "busybox", "sleep", "1000"]);
    let id = id.trim().to_string();
    assert!(
        id.len() == 64 && id.chars().all(|c| c.is_ascii_hexdigit()),
        "{id:?}"
    );
    let status = d.docker_ok(&["inspect", "-f", "{{.State.Status}}", &id]);
    assert_eq!(status.trim(), "running");
    let pid: i32 = d
        .docker_ok(&["inspect", "-f", "{{.State.Pid}}", &id])
        .trim()
        .parse()
        .expect("pid");
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert_eq!(d.berth_ok(&["stop", "-t", "1", "cli-det"]), "cli-det\n");
    let status = d.docker_ok(&["inspect", "-f", "{{.State.Status}}", &id]);
    assert_eq!(status.trim(), "exited");
    assert!(
        wait_until(Duration::from_secs(10), || !std::path::Path::new(&format!(
            "/proc/{pid}"
        ))
        .exists()),
        "pid {pid} still alive after stop"
    );
    assert_eq!(d.berth_ok(&["rm", &id]), format!("{id}\n"));
    assert_eq!(d.docker_ok(&["ps", "-aq"]), "");
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[test]
fn events_since_until_match_docker() {
    let d = TestDaemon::start();
    d.import_busybox("busybox");
    let since = now_secs().saturating_sub(1).to_string();
    d.docker_ok(&["run", "--rm", "--name", "cli-ev", "busybox", "true"]);
    let until = (now_secs() + 1).to_string();
    // --until in the future: wait until it has passed so both calls see the same window.
    assert!(wait_until(Duration::from_secs(5), || now_secs()
        > until.parse::<u64>().unwrap_or(0)));
    let out = assert_same(&d, &["events", "--since", &since, "--until", &until]);
    for action in ["create", "start", "die", "destroy"] {
        assert!(
            out.contains(&format!("container {action} ")),
            "no {action} in:\n{out}"
        );
    }
    assert!(out.contains("name=cli-ev"), "{out}");
    // --since 0 is the epoch: everything the engine remembers.
    let all = d.docker_ok(&["events", "--since", "0", "--until", &until]);
    assert!(all.contains("container destroy "), "{all}");
    assert_same(
        &d,
        &[
            "events",
            "--since",
            &since,
            "--until",
            &until,
            "--filter",
            "event=die",
        ],
    );
    assert_same(
        &d,
        &[
            "events",
            "--since",
            "10m",
            "--until",
            "1s",
            "--format",
            "{{.Type}} {{.Action}}",
        ],
    );
}

#[test]
fn errors_match_docker() {
    let d = TestDaemon::start();
    d.import_busybox("busybox");
    d.docker_ok(&["run", "--name", "cli-err", "busybox", "true"]);
    for args in [
        &["inspect", "nosuch-x"][..],
        &["inspect", "nosuch-x", "cli-err"],
        &["inspect", "--type", "container", "nosuch-x"],
        &["container", "inspect", "nosuch-x"],
        &["image", "inspect", "nosuch-x"],
        &["logs", "nosuch-x"],
        &["stop", "nosuch-x", "nosuch-y"],
        &["kill", "nosuch-x"],
        &["start", "nosuch-x", "nosuch-y"],
        &["rm", "nosuch-x"],
        &["rm", "-f", "nosuch-x"],
        &["wait", "nosuch-x"],
        &["rename", "nosuch-x", "other"],
        &["rename", "cli-err", "cli-err"],
        &["pause", "nosuch-x"],
        &["rmi", "nosuch-x"],
        &["history", "nosuch-x"],
        &["run", "--rm", "nosuch-image"],
        &["run", "--rm", "me/nosuch-image:1"],
        &["ps", "--bogus"],
    ] {
        assert_same(&d, args);
    }
    let out = d.berth(&["logs", "nosuch-x"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "Error response from daemon: No such container: nosuch-x\n"
    );
    let out = d.berth(&["run", "--rm", "nosuch-image"]);
    assert_eq!(out.status.code(), Some(125));
}

fn cli_with_env(prog: &std::path::Path, env: &[(&str, Option<&str>)], args: &[&str]) -> Output {
    let mut cmd = Command::new(prog);
    for k in [
        "DOCKER_CONTEXT",
        "DOCKER_TLS_VERIFY",
        "DOCKER_CERT_PATH",
        "BERTH_HOST",
        "DOCKER_HOST",
    ] {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.args(args);
    run_with_timeout(cmd, None, T)
}

#[test]
fn host_selection() {
    let d = TestDaemon::start();
    let good = d.host();
    let bad = format!("unix://{}/nobody.sock", d.scratch_dir().display());
    let cfg = d.scratch_dir().join("docker-config");
    let cfg = cfg.to_str().unwrap_or("/nonexistent");
    let ver = ["version", "--format", "{{.Server.Version}}"];
    let run = |prog: &std::path::Path, env: &[(&str, Option<&str>)], h: Option<&str>| {
        let mut args: Vec<&str> = Vec::new();
        if let Some(h) = h {
            args.extend(["-H", h]);
        }
        args.extend(ver);
        let mut env = env.to_vec();
        env.push(("DOCKER_CONFIG", Some(cfg)));
        cli_with_env(prog, &env, &args)
    };
    let (berth, docker) = (berth_exe(), docker_exe());
    // -H beats both variables.
    let o = run(
        &berth,
        &[("BERTH_HOST", Some(&bad)), ("DOCKER_HOST", Some(&bad))],
        Some(&good),
    );
    assert!(o.status.success(), "{}", d.describe(&o));
    assert!(!text(&o.stdout).trim().is_empty());
    let o = run(&docker, &[("DOCKER_HOST", Some(&bad))], Some(&good));
    assert!(o.status.success(), "{}", d.describe(&o));
    // DOCKER_HOST alone, as docker.
    let o = run(&berth, &[("DOCKER_HOST", Some(&good))], None);
    assert!(o.status.success(), "{}", d.describe(&o));
    // BERTH_HOST beats DOCKER_HOST.
    let o = run(
        &berth,
        &[("BERTH_HOST", Some(&good)), ("DOCKER_HOST", Some(&bad))],
        None,
    );
    assert!(o.status.success(), "{}", d.describe(&o));
    let o = run(
        &berth,
        &[("BERTH_HOST", Some(&bad)), ("DOCKER_HOST", Some(&good))],
        None,
    );
    assert!(
        !o.status.success(),
        "BERTH_HOST must win: {}",
        d.describe(&o)
    );
    // -H with a dead socket fails even when the variables are good.
    let o = run(
        &berth,
        &[("BERTH_HOST", Some(&good)), ("DOCKER_HOST", Some(&good))],
        Some(&bad),
    );
    assert_eq!(o.status.code(), Some(1), "{}", d.describe(&o));
    assert!(
        text(&o.stderr).contains("Cannot connect"),
        "{}",
        d.describe(&o)
    );
}

#[test]
fn version_fails_without_engine() {
    let dir = tempfile::Builder::new()
        .prefix("bt-cli-")
        .tempdir_in("/tmp")
        .expect("tempdir");
    let host = format!("unix://{}/none.sock", dir.path().display());
    let cfg = dir.path().join("cfg");
    let cfg = cfg.to_str().unwrap_or("/nonexistent");
    let env = [
        ("BERTH_HOST", Some(host.as_str())),
        ("DOCKER_HOST", Some(host.as_str())),
        ("DOCKER_CONFIG", Some(cfg)),
    ];
    let b = cli_with_env(&berth_exe(), &env, &["version"]);
    let dk = cli_with_env(&docker_exe(), &env, &["version"]);
    assert_eq!(
        b.status.code(),
        Some(1),
        "berth version: {}",
        text(&b.stderr)
    );
    assert_eq!(dk.status.code(), b.status.code());
    assert!(
        text(&b.stdout).starts_with("Client:"),
        "{}",
        text(&b.stdout)
    );
    assert!(!text(&b.stdout).contains("Server:"));
    assert!(
        text(&b.stderr).contains(&format!("Cannot connect to the berth daemon at {host}")),
        "{}",
        text(&b.stderr)
    );
    // And with a socket file nobody listens on (a dead engine's leftover).
    let sock = dir.path().join("none.sock");
    let l = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
    drop(l);
    let b = cli_with_env(&berth_exe(), &env, &["version"]);
    assert_eq!(b.status.code(), Some(1), "{}", text(&b.stderr));
}
