//! The container lifecycle end to end through the real docker CLI (and berth's own CLI), with
//! Docker's behaviour as the spec: exit codes, messages users grep, files on disk, /proc, cgroups.
//! Restart policies and engine restarts are in `restart_policies.rs`.

mod common;
#[path = "containers/helpers.rs"]
mod helpers;

use helpers::*;

use std::fs;
use std::time::{Duration, Instant};

use serde_json::Value;

#[test]
fn run_foreground_separates_streams_and_propagates_exit_code() {
    let d = engine();
    let script = "echo out; echo err >&2; exit 7";
    let out = d.docker(&argv("run --rm busybox sh -c", &[script]));
    assert_code(&d, &out, 7);
    assert_eq!(text(&out.stdout), "out\n");
    assert_eq!(text(&out.stderr), "err\n");
}

#[test]
fn run_detached_name_and_rm() {
    let d = engine();
    let n = name("det");
    let out = dok(&d, &format!("run -d --name {n} busybox sleep 1000"));
    let id = out.trim();
    assert_eq!(id.len(), 64, "not a full id: {out:?}");
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    let v = inspect(&d, &n);
    assert_eq!(v["Id"], id);
    assert_eq!(v["Name"], format!("/{n}"));
    assert_eq!(v["State"]["Running"], true);
    assert!(d.data_root().join("containers").join(id).is_dir());

    // --rm: the container and its directory are gone when the CLI returns.
    let n2 = name("rm");
    assert_eq!(
        dok(&d, &format!("run --rm --name {n2} busybox echo bye")),
        "bye\n"
    );
    assert_eq!(dok(&d, &format!("ps -aq --filter name={n2}")), "");
    let err = derr(&d, &format!("container inspect {n2}"));
    assert!(err.contains(&format!("No such container: {n2}")), "{err}");
    let dirs = fs::read_dir(d.data_root().join("containers"))
        .unwrap()
        .count();
    assert_eq!(dirs, 1, "the --rm container's directory is left");
    // -d --rm: removed once it exits.
    let id = dok(&d, "run -d --rm busybox true").trim().to_string();
    poll(30, "-d --rm container to go", || {
        let (st, _) = d.api("GET", &format!("/containers/{id}/json"), None);
        (st == 404).then_some(())
    });
}

#[test]
fn run_env_envfile_workdir_hostname() {
    let d = engine();
    let envfile = d.scratch_dir().join("env.list");
    fs::write(&envfile, "# a comment\nX=from file\nY=2\n\n").unwrap();
    let flags = format!("--rm -e A=1 --env-file {} -e Y=cli", envfile.display());
    let out = run_sh(&d, &flags, "echo \"$A|$X|$Y|$PATH\"");
    let path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    assert_eq!(out, format!("1|from file|cli|{path}"));
    assert_eq!(dok(&d, "run --rm -w /tmp busybox pwd"), "/tmp\n");
    // Docker creates a missing working directory.
    assert_eq!(
        dok(&d, "run --rm -w /made/here busybox pwd"),
        "/made/here\n"
    );
    let n = name("host");
    assert_eq!(
        dok(&d, &format!("run --name {n} -h myhost busybox hostname")),
        "myhost\n"
    );
    assert_eq!(inspect(&d, &n)["Config"]["Hostname"], "myhost");
}

#[test]
fn run_user_by_name_and_uid_gid() {
    let d = engine();
    let out = dok(&d, "run --rm -u app busybox id");
    assert!(out.starts_with("uid=1000(app) gid=1000(app)"), "{out}");
    assert_eq!(
        run_sh(&d, "--rm -u 1234:5678", "id -u; id -g"),
        "1234\n5678"
    );
    assert_eq!(dok(&d, "run --rm busybox id -u"), "0\n");
    let err = derr(&d, "run --rm -u nosuchuser busybox true");
    assert!(err.contains("nosuchuser"), "{err}");
}

#[test]
fn run_entrypoint_override_and_reset() {
    let d = engine();
    let tar = common::busybox_rootfs_tar();
    let change = "ENTRYPOINT [\"echo\", \"ep\"]";
    d.docker_ok(&["import", "--change", change, tar.to_str().unwrap(), "epimg"]);
    assert_eq!(dok(&d, "run --rm epimg x"), "ep x\n");
    let out = d.docker_ok(&argv("run --rm --entrypoint sh epimg -c", &["echo z"]));
    assert_eq!(out, "z\n");
    let out = d.docker_ok(&argv(
        "run --rm --entrypoint",
        &["", "epimg", "echo", "a", "b"],
    ));
    assert_eq!(out, "a b\n");
    assert_eq!(dok(&d, "run --rm --entrypoint echo busybox hi"), "hi\n");
}

#[test]
fn run_labels_in_inspect_and_ps_filter() {
    let d = engine();
    let (a, b) = (name("la"), name("lb"));
    dok(
        &d,
        &format!("run -d --name {a} --label tier=web --label solo busybox sleep 1000"),
    );
    dok(
        &d,
        &format!("run -d --name {b} --label tier=db busybox sleep 1000"),
    );
    let v = inspect(&d, &a);
    assert_eq!(v["Config"]["Labels"]["tier"], "web");
    assert_eq!(v["Config"]["Labels"]["solo"], "");
    let names = |f: &str| dok(&d, &format!("ps --filter {f} --format {{{{.Names}}}}"));
    assert_eq!(names("label=tier=web"), format!("{a}\n"));
    assert_eq!(names("label=solo"), format!("{a}\n"));
    assert_eq!(names("label=tier=nope"), "");
    let mut both: Vec<String> = names("label=tier").lines().map(String::from).collect();
    both.sort();
    let mut want = vec![a.clone(), b.clone()];
    want.sort();
    assert_eq!(both, want);
}

#[test]
fn run_init_makes_tini_pid1() {
    let d = engine();
    let out = dok(&d, "run --rm --init busybox cat /proc/1/cmdline");
    let args: Vec<&str> = out.split('\0').collect();
    assert!(
        args[0].ends_with("docker-init") || args[0].contains("tini"),
        "PID 1 is not docker-init: {args:?}"
    );
    assert!(out.contains("cat\0/proc/1/cmdline"), "{args:?}");
    let out = dok(&d, "run --rm busybox cat /proc/1/cmdline");
    assert_eq!(out, "cat\0/proc/1/cmdline\0");
}

#[test]
fn run_interactive_stdin() {
    let d = engine();
    let out = d.docker_stdin(&argv("run -i --rm busybox cat", &[]), &b"x\n"[..]);
    assert_code(&d, &out, 0);
    assert_eq!(out.stdout, b"x\n");
    let big: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let out = d.docker_stdin(&argv("run -i --rm busybox wc -c", &[]), &big[..]);
    assert_eq!(text(&out.stdout).trim(), "200000", "{}", d.describe(&out));
}

// ---- create, start, stop, kill, restart, wait, rm ----

#[test]
fn create_then_start_attached() {
    let d = engine();
    let n = name("cr");
    let script = "echo hello; echo oops >&2; exit 5";
    let id = d.docker_ok(&argv(
        &format!("create --name {n} busybox sh -c"),
        &[script],
    ));
    assert_eq!(id.trim().len(), 64);
    let v = inspect(&d, &n);
    assert_eq!(v["State"]["Status"], "created");
    assert_eq!(v["State"]["StartedAt"], ZERO_TIME);
    let out = d.docker(&["start", "-a", &n]);
    assert_code(&d, &out, 5);
    assert_eq!(text(&out.stdout), "hello\n");
    assert_eq!(text(&out.stderr), "oops\n");
    let st = dok(
        &d,
        &format!("ps -a --filter name={n} --format {{{{.Status}}}}"),
    );
    assert!(st.starts_with("Exited (5)"), "{st}");
}

#[test]
fn stop_sends_sigterm_to_trap() {
    let d = engine();
    let n = name("term");
    run_sh(&d, &format!("-d --name {n}"), &trap_script("TERM", 42));
    wait_log(&d, &n, "ready");
    let t = Instant::now();
    assert_eq!(dok(&d, &format!("stop {n}")), format!("{n}\n"));
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "stop waited for the timeout"
    );
    let v = inspect(&d, &n);
    assert_eq!(v["State"]["Status"], "exited");
    assert_eq!(v["State"]["ExitCode"], 42);
    assert_eq!(v["State"]["Pid"], 0);
    assert_eq!(logs(&d, &n), "ready\ngot TERM\n");
    assert_eq!(dok(&d, &format!("wait {n}")), "42\n");
    // Stopping a stopped container succeeds (304 from the engine).
    assert_eq!(dok(&d, &format!("stop {n}")), format!("{n}\n"));
}

#[test]
fn stop_timeout_escalates_to_sigkill() {
    let d = engine();
    let n = name("kill");
    // PID 1 without a handler for TERM ignores it.
    run_sh(
        &d,
        &format!("-d --name {n}"),
        "echo ready; while true; do sleep 0.1; done",
    );
    wait_log(&d, &n, "ready");
    let t = Instant::now();
    dok(&d, &format!("stop -t 1 {n}"));
    let el = t.elapsed();
    assert!(
        el >= Duration::from_millis(900) && el < Duration::from_secs(10),
        "{el:?}"
    );
    assert_eq!(inspect(&d, &n)["State"]["ExitCode"], 137);
}

#[test]
fn stop_signal_is_honoured() {
    let d = engine();
    let n = name("usr1");
    run_sh(
        &d,
        &format!("-d --name {n} --stop-signal SIGUSR1"),
        &trap_script("USR1", 11),
    );
    assert_eq!(inspect(&d, &n)["Config"]["StopSignal"], "SIGUSR1");
    wait_log(&d, &n, "ready");
    let t = Instant::now();
    dok(&d, &format!("stop -t 20 {n}"));
    assert!(t.elapsed() < Duration::from_secs(15), "USR1 was not sent");
    assert_eq!(inspect(&d, &n)["State"]["ExitCode"], 11);
    assert!(logs(&d, &n).contains("got USR1"));
}

#[test]
fn kill_with_signal_and_errors() {
    let d = engine();
    let n = name("ks");
    let script = "trap 'echo got HUP' HUP; echo ready; while true; do sleep 0.1; done";
    run_sh(&d, &format!("-d --name {n}"), script);
    wait_log(&d, &n, "ready");
    assert_eq!(dok(&d, &format!("kill -s HUP {n}")), format!("{n}\n"));
    // The harness starts the engine with SIGHUP ignored (as `nohup` does): the container's
    // shell must still be able to trap it.
    wait_log(&d, &n, "got HUP");
    assert_eq!(status(&d, &n), "running");
    dok(&d, &format!("kill {n}"));
    let v = wait_status(&d, &n, "exited");
    assert_eq!(v["State"]["ExitCode"], 137);
    let id = v["Id"].as_str().unwrap().to_string();
    // Docker: 409, "cannot kill container: <name>: container <id> is not running".
    let out = d.docker(&["kill", &n]);
    assert_code(&d, &out, 1);
    let want = format!(
        "Error response from daemon: cannot kill container: {n}: container {id} is not running"
    );
    assert!(text(&out.stderr).contains(&want), "{}", d.describe(&out));
    let (st, v) = d.api_json("POST", &format!("/containers/{n}/kill"), None);
    assert_eq!(st, 409, "{v}");
    let err = derr(&d, &format!("kill -s NOPE {n}"));
    assert!(err.to_lowercase().contains("invalid signal"), "{err}");
}

#[test]
fn restart_and_wait() {
    let d = engine();
    let n = name("rs");
    dok(&d, &format!("run -d --name {n} busybox sleep 1000"));
    let before = inspect(&d, &n);
    let pid1 = before["State"]["Pid"].as_i64().unwrap() as i32;
    assert_eq!(dok(&d, &format!("restart -t 1 {n}")), format!("{n}\n"));
    let after = inspect(&d, &n);
    let pid2 = after["State"]["Pid"].as_i64().unwrap() as i32;
    assert_eq!(after["State"]["Running"], true);
    assert_ne!(pid1, pid2);
    assert!(!runs(pid1, &["sleep", "1000"]));
    assert!(runs(pid2, &["sleep", "1000"]));
    let started = |v: &Value| ts(v["State"]["StartedAt"].as_str().unwrap());
    assert!(started(&after) > started(&before));

    let w = name("wait");
    run_sh(&d, &format!("-d --name {w}"), "sleep 1; exit 3");
    let out = d.docker(&["wait", &w]);
    assert_code(&d, &out, 0);
    assert_eq!(text(&out.stdout), "3\n");
}

#[test]
fn rm_running_needs_force() {
    let d = engine();
    let n = name("rmf");
    let id = dok(&d, &format!("run -d --name {n} busybox sleep 1000"))
        .trim()
        .to_string();
    let pid = pid_of(&d, &n);
    let out = d.docker(&["rm", &n]);
    assert_code(&d, &out, 1);
    let want = format!("Error response from daemon: cannot remove container \"/{n}\": container is running: stop the container before removing or force remove");
    assert!(text(&out.stderr).contains(&want), "{}", d.describe(&out));
    let (st, v) = d.api_json("DELETE", &format!("/containers/{n}"), None);
    assert_eq!(st, 409, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or("")
            .contains("container is running"),
        "{v}"
    );
    dok(&d, &format!("pause {n}"));
    let err = derr(&d, &format!("rm {n}"));
    let want =
        format!("cannot remove container \"/{n}\": container is paused and must be unpaused first");
    assert!(err.contains(&want), "{err}");
    assert_eq!(dok(&d, &format!("rm -f {n}")), format!("{n}\n"));
    poll(10, "the process to die", || {
        (!runs(pid, &["sleep", "1000"])).then_some(())
    });
    assert!(!d.data_root().join("containers").join(&id).exists());
    let err = derr(&d, &format!("rm {n}"));
    assert!(err.contains(&format!("No such container: {n}")), "{err}");
}

// ---- ps ----

#[test]
fn ps_flags_and_filters() {
    let d = engine();
    let (ok, bad, up, new) = (name("ok"), name("bad"), name("up"), name("new"));
    dok(&d, &format!("run --name {ok} busybox true"));
    let out = d.docker(&argv(
        &format!("run --name {bad} busybox sh -c"),
        &["exit 3"],
    ));
    assert_code(&d, &out, 3);
    let up_id = dok(
        &d,
        &format!("run -d --name {up} --label k=v busybox sleep 1000"),
    );
    let up_id = up_id.trim();
    dok(&d, &format!("create --name {new} busybox true"));
    let ps = |args: &str| -> Vec<String> {
        let out = dok(&d, &format!("ps {args} --format {{{{.Names}}}}"));
        let mut v: Vec<String> = out.lines().map(String::from).collect();
        if !args.starts_with("-n") && !args.starts_with("-l") {
            v.sort();
        }
        v
    };
    let set = |v: &[&String]| -> Vec<String> {
        let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    };
    assert_eq!(ps(""), [up.as_str()]);
    assert_eq!(ps("-a"), set(&[&ok, &bad, &up, &new]));
    // -n and -l: the most recently created, stopped ones included, newest first.
    assert_eq!(ps("-n 2"), [new.as_str(), up.as_str()]);
    assert_eq!(ps("-l"), [new.as_str()]);
    assert_eq!(ps("--filter status=exited"), set(&[&ok, &bad]));
    assert_eq!(ps("-a --filter status=created"), [new.as_str()]);
    assert_eq!(ps("-a --filter status=running"), [up.as_str()]);
    assert_eq!(ps("-a --filter exited=3"), [bad.as_str()]);
    assert_eq!(ps("-a --filter exited=0"), [ok.as_str()]);
    assert_eq!(ps(&format!("-a --filter name={bad}")), [bad.as_str()]);
    assert_eq!(ps("-a --filter label=k=v"), [up.as_str()]);
    assert_eq!(
        ps(&format!("-a --filter id={}", &up_id[..10])),
        [up.as_str()]
    );
    assert_eq!(ps("-a --filter ancestor=busybox").len(), 4);
    assert_eq!(ps("-a --filter ancestor=hello-world"), Vec::<String>::new());
    assert_eq!(dok(&d, "ps -q"), format!("{}\n", &up_id[..12]));
    assert_eq!(dok(&d, "ps -q --no-trunc"), format!("{up_id}\n"));
    let err = derr(&d, "ps --filter status=bogus");
    assert!(err.contains("invalid filter 'status=bogus'"), "{err}");
}

// ---- logs ----

#[test]
fn logs_tail_timestamps_since_until() {
    let d = engine();
    let n = name("lg");
    let script =
        "for i in 1 2 3 4 5; do echo out$i; done; sleep 0.3; echo err1 >&2; sleep 1.2; echo late";
    // (The pauses order the lines across the two pipes, as they would be in Docker.)
    run_sh(&d, &format!("--name {n}"), script);
    let out = d.docker(&["logs", &n]);
    assert_eq!(text(&out.stdout), "out1\nout2\nout3\nout4\nout5\nlate\n");
    assert_eq!(text(&out.stderr), "err1\n");
    let out = d.docker(&["logs", "--tail", "2", &n]);
    assert_eq!(
        (text(&out.stdout), text(&out.stderr)),
        ("late\n".into(), "err1\n".into())
    );
    let out = d.docker(&["logs", "--tail", "0", &n]);
    assert_eq!(
        (text(&out.stdout), text(&out.stderr)),
        (String::new(), String::new())
    );
    let t = dok(&d, &format!("logs -t {n}"));
    let stamps: Vec<(&str, &str)> = t.lines().map(|l| l.split_once(' ').unwrap()).collect();
    assert_eq!(stamps.len(), 6, "{t}");
    for (s, _) in &stamps {
        assert!(
            s.len() > 20 && s.ends_with('Z') && s.contains('T'),
            "bad timestamp {s}"
        );
    }
    let late_ts = stamps.iter().find(|(_, l)| *l == "late").unwrap().0;
    // --since and --until are inclusive, as in Docker.
    assert_eq!(dok(&d, &format!("logs --since {late_ts} {n}")), "late\n");
    assert_eq!(
        dok(&d, &format!("logs --until {} {n}", stamps[0].0)),
        "out1\n"
    );
}

#[test]
fn logs_follow_ends_when_container_exits() {
    let d = engine();
    let n = name("fol");
    run_sh(&d, &format!("-d --name {n}"), "echo one; sleep 2; echo two");
    let t = Instant::now();
    let out = d.docker(&["logs", "-f", &n]);
    assert_code(&d, &out, 0);
    assert_eq!(text(&out.stdout), "one\ntwo\n");
    assert!(t.elapsed() < Duration::from_secs(30));
    assert_eq!(status(&d, &n), "exited");
}

#[test]
fn logs_rotate_with_max_size_and_max_file() {
    let d = engine();
    let n = name("rot");
    let script = "i=0; while [ $i -lt 300 ]; do i=$((i+1)); echo line-$i-padding-padding; done";
    let flags = format!("-d --name {n} --log-opt max-size=1k --log-opt max-file=2");
    let id = run_sh(&d, &flags, script);
    assert_eq!(dok(&d, &format!("wait {n}")), "0\n");
    let dir = d.data_root().join("containers").join(&id);
    let log = dir.join(format!("{id}-json.log"));
    let log1 = dir.join(format!("{id}-json.log.1"));
    assert!(
        log.is_file() && log1.is_file(),
        "no rotated log in {}",
        dir.display()
    );
    assert!(
        !dir.join(format!("{id}-json.log.2")).exists(),
        "max-file=2 keeps 2 files"
    );
    let mut on_disk = 0;
    for f in [&log1, &log] {
        let len = fs::metadata(f).unwrap().len();
        assert!(len <= 1024 + 200, "{} is {len} bytes", f.display());
        let body = fs::read_to_string(f).unwrap();
        for l in body.lines() {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            assert_eq!(v["stream"], "stdout");
            on_disk += 1;
        }
    }
    // docker logs reads both files: every line on disk, the newest, contiguous.
    let out = logs(&d, &n);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), on_disk, "{out}");
    assert_eq!(*lines.last().unwrap(), "line-300-padding-padding");
    let first: usize = lines[0].split('-').nth(1).unwrap().parse().unwrap();
    assert_eq!(first + lines.len() - 1, 300, "{out}");
    let tail = dok(&d, &format!("logs --tail {} {n}", lines.len() - 1));
    assert_eq!(tail.lines().count(), lines.len() - 1);
}

// ---- inspect, rename, pause, top, port, prune ----

#[test]
fn inspect_state_matches_proc() {
    let d = engine();
    let n = name("insp");
    dok(&d, &format!("run -d --name {n} busybox sleep 1000"));
    let v = inspect(&d, &n);
    let pid = v["State"]["Pid"].as_i64().unwrap() as i32;
    assert!(pid > 1 && runs(pid, &["sleep", "1000"]), "State.Pid {pid}");
    let ns = |p: &str| fs::read_link(format!("/proc/{p}/ns/pid")).unwrap();
    assert_ne!(
        ns(&pid.to_string()),
        ns("self"),
        "not in its own pid namespace"
    );
    let st = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let nspid = st.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert!(
        nspid.trim_end().ends_with("\t1"),
        "not PID 1 inside: {nspid}"
    );
    assert_eq!(v["State"]["FinishedAt"], ZERO_TIME);
    dok(&d, &format!("kill {n}"));
    let v = wait_status(&d, &n, "exited");
    assert_eq!(v["State"]["Pid"], 0);
    assert_eq!(v["State"]["ExitCode"], 137);
    assert_eq!(v["State"]["Running"], false);
    let s = v["State"]["StartedAt"].as_str().unwrap();
    let f = v["State"]["FinishedAt"].as_str().unwrap();
    assert!(ts(s) < ts(f), "StartedAt {s} not before FinishedAt {f}");
    assert!(ts(v["Created"].as_str().unwrap()) <= ts(s));
    assert!(
        !runs(pid, &["sleep", "1000"]),
        "the process outlived its container"
    );
}

#[test]
fn rename_container() {
    let d = engine();
    let (a, b, c) = (name("a"), name("b"), name("c"));
    dok(&d, &format!("create --name {a} busybox true"));
    let cid = dok(&d, &format!("create --name {c} busybox true"))
        .trim()
        .to_string();
    dok(&d, &format!("rename {a} {b}"));
    assert_eq!(inspect(&d, &b)["Name"], format!("/{b}"));
    let err = derr(&d, &format!("container inspect {a}"));
    assert!(err.contains(&format!("No such container: {a}")), "{err}");
    let err = derr(&d, &format!("rename {b} {c}"));
    let want =
        format!("Conflict. The container name \"/{c}\" is already in use by container \"{cid}\"");
    assert!(err.contains(&want), "{err}");
}

/// The v1 freezer state of a process's cgroup.
fn freezer_state(pid: i32) -> String {
    let cg = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    for l in cg.lines() {
        let f: Vec<&str> = l.splitn(3, ':').collect();
        if f.len() == 3 && f[1].split(',').any(|c| c == "freezer") {
            let p = format!("/sys/fs/cgroup/freezer{}/freezer.state", f[2]);
            return fs::read_to_string(p).unwrap_or_default().trim().into();
        }
    }
    String::new()
}

#[test]
fn pause_freezes_processes() {
    let d = engine();
    let n = name("pz");
    let script = "i=0; while true; do i=$((i+1)); echo $i; sleep 0.05; done";
    run_sh(&d, &format!("-d --name {n}"), script);
    wait_log(&d, &n, "3\n");
    let pid = pid_of(&d, &n);
    assert_eq!(freezer_state(pid), "THAWED");
    dok(&d, &format!("pause {n}"));
    let v = inspect(&d, &n);
    assert_eq!(v["State"]["Status"], "paused");
    assert_eq!(v["State"]["Paused"], true);
    assert_eq!(freezer_state(pid), "FROZEN");
    let count = logs(&d, &n).lines().count();
    std::thread::sleep(Duration::from_millis(600)); // checking that nothing happens
    assert_eq!(
        logs(&d, &n).lines().count(),
        count,
        "a paused container kept writing"
    );
    let err = derr(&d, &format!("pause {n}"));
    assert!(err.contains("is already paused"), "{err}");
    dok(&d, &format!("unpause {n}"));
    assert_eq!(inspect(&d, &n)["State"]["Paused"], false);
    assert_eq!(freezer_state(pid), "THAWED");
    poll(10, "output after unpause", || {
        (logs(&d, &n).lines().count() > count + 2).then_some(())
    });
    let err = derr(&d, &format!("unpause {n}"));
    assert!(err.contains("is not paused"), "{err}");
}

#[test]
fn top_port_and_prune() {
    let d = engine();
    let (up, x1, x2) = (name("top"), name("x1"), name("x2"));
    dok(&d, &format!("run -d --name {up} busybox sleep 1000"));
    let pid = pid_of(&d, &up);
    let top = dok(&d, &format!("top {up}"));
    let mut lines = top.lines();
    assert!(lines.next().unwrap().contains("PID"), "{top}");
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 1, "{top}");
    assert!(
        rows[0].contains("sleep 1000") && rows[0].contains(&pid.to_string()),
        "{top}"
    );
    assert_eq!(dok(&d, &format!("port {up}")), "");

    let id1 = dok(&d, &format!("create --name {x1} busybox true"))
        .trim()
        .to_string();
    dok(&d, &format!("start -a {x1}"));
    let id2 = dok(&d, &format!("run -d --name {x2} busybox true"))
        .trim()
        .to_string();
    dok(&d, &format!("wait {x2}"));
    let out = dok(&d, "container prune -f");
    assert!(out.starts_with("Deleted Containers:\n"), "{out}");
    assert!(out.contains(&id1) && out.contains(&id2), "{out}");
    assert!(out.contains("Total reclaimed space:"), "{out}");
    assert_eq!(dok(&d, "ps -a --format {{.Names}}"), format!("{up}\n"));
    assert!(!d.data_root().join("containers").join(&id1).exists());
}

// ---- events ----

#[test]
fn events_since_until_with_filters() {
    let d = engine();
    let n = name("ev");
    let t0 = format!("{:.3}", unix_now() - 1.0);
    dok(&d, &format!("run --rm --name {n} busybox true"));
    let other = name("other");
    dok(&d, &format!("create --name {other} busybox true"));
    let t1 = format!("{:.3}", unix_now() + 0.5);
    let ev = |filters: &str| -> Vec<String> {
        let cmd = format!("events --since {t0} --until {t1} {filters} --format");
        let out = d.docker_ok(&argv(
            &cmd,
            &["{{.Type}} {{.Action}} {{.Actor.Attributes.name}}"],
        ));
        out.lines().map(String::from).collect()
    };
    let mine = ev(&format!("--filter type=container --filter container={n}"));
    let mut actions = mine.iter().map(|l| l.split(' ').nth(1).unwrap());
    for w in ["create", "start", "die", "destroy"] {
        assert!(
            actions.any(|a| a == w),
            "{w} missing or out of order in {mine:?}"
        );
    }
    assert!(
        mine.iter()
            .all(|l| l.starts_with("container ") && l.ends_with(&n)),
        "{mine:?}"
    );
    let die = ev("--filter type=container --filter event=die");
    assert_eq!(die, [format!("container die {n}")]);
    let created = ev("--filter event=create");
    assert_eq!(
        created,
        [
            format!("container create {n}"),
            format!("container create {other}")
        ]
    );
}

// ---- errors ----

#[test]
fn errors_match_docker() {
    let d = engine();
    for verb in ["start", "stop", "logs", "rm", "container inspect"] {
        let out = d.docker(&argv(&format!("{verb} nope-x"), &[]));
        assert_code(&d, &out, 1);
        let err = text(&out.stderr);
        assert!(
            err.contains("Error response from daemon: No such container: nope-x"),
            "{verb}: {err}"
        );
    }
    let (st, v) = d.api_json("GET", "/containers/nope-x/json", None);
    assert_eq!(st, 404);
    assert_eq!(v["message"], "No such container: nope-x");

    let n = name("dup");
    let id = dok(&d, &format!("create --name {n} busybox true"))
        .trim()
        .to_string();
    let msg = format!("Conflict. The container name \"/{n}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name.");
    let out = d.docker(&argv(&format!("create --name {n} busybox true"), &[]));
    assert_code(&d, &out, 1);
    assert!(text(&out.stderr).contains(&msg), "{}", d.describe(&out));
    // `docker run` reports daemon errors with status 125.
    let out = d.docker(&argv(&format!("run --name {n} busybox true"), &[]));
    assert_code(&d, &out, 125);
    assert!(text(&out.stderr).contains(&msg), "{}", d.describe(&out));
    let body = Some("{\"Image\":\"busybox\"}");
    let (st, v) = d.api_json("POST", &format!("/containers/create?name={n}"), body);
    assert_eq!(st, 409);
    assert_eq!(v["message"], msg);

    let (st, v) = d.api_json("POST", "/containers/create", Some("{\"Image\": busybox"));
    assert_eq!(st, 400);
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    let (st, v) = d.api_json(
        "POST",
        "/containers/create",
        Some("{\"Image\":\"no-such\"}"),
    );
    assert_eq!(st, 404, "{v}");

    let (st, v) = d.api_json("POST", &format!("/containers/{n}/kill"), None);
    assert_eq!(st, 409);
    let want = format!("cannot kill container: {n}: container {id} is not running");
    assert_eq!(v["message"], want);
    // A command that cannot be run: 127, as Docker.
    let out = d.docker(&argv("run --rm busybox /no/such/binary", &[]));
    assert_code(&d, &out, 127);
}

// ---- berth's own CLI ----

#[test]
fn berth_cli_main_flows() {
    let d = engine();
    assert_eq!(d.berth_ok(&argv("run --rm busybox echo hi", &[])), "hi\n");
    let out = d.berth(&argv("run --rm busybox sh -c", &["exit 4"]));
    assert_code(&d, &out, 4);
    let n = name("bc");
    let script = trap_script("TERM", 0);
    let id = d.berth_ok(&argv(
        &format!("run -d --name {n} busybox sh -c"),
        &[&script],
    ));
    let id = id.trim();
    assert_eq!(id.len(), 64, "{id}");
    let ps = d.berth_ok(&["ps"]);
    assert!(ps.contains(&n) && ps.contains(&id[..12]), "{ps}");
    poll(30, "ready in berth logs", || {
        d.berth_ok(&["logs", &n]).contains("ready").then_some(())
    });
    assert_eq!(d.berth_ok(&["stop", &n]), format!("{n}\n"));
    assert_eq!(d.berth_ok(&["logs", &n]), "ready\ngot TERM\n");
    assert_eq!(inspect(&d, &n)["State"]["ExitCode"], 0);
    assert!(!d.berth_ok(&["ps"]).contains(&n));
    assert!(d.berth_ok(&["ps", "-a"]).contains(&n));
    assert_eq!(d.berth_ok(&["rm", &n]), format!("{n}\n"));
    assert!(!d.berth_ok(&["ps", "-a"]).contains(&n));
    let out = d.berth(&["rm", &n]);
    assert_code(&d, &out, 1);
    assert!(
        text(&out.stderr).contains(&format!("No such container: {n}")),
        "{}",
        d.describe(&out)
    );
}
