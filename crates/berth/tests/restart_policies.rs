//! Restart policies (`--restart`, also honoured when the engine starts again) and containers that
//! outlive a `kill -9` of the engine, end to end through the docker CLI.

mod common;
#[path = "containers/helpers.rs"]
mod helpers;

use common::TestDaemon;
use helpers::*;

use std::time::Duration;

fn restart_count(d: &TestDaemon, c: &str) -> i64 {
    inspect(d, c)["RestartCount"].as_i64().unwrap_or(-1)
}

#[test]
fn restart_on_failure_gives_up_after_max() {
    let d = engine();
    let n = name("onf");
    run_sh(
        &d,
        &format!("-d --name {n} --restart on-failure:2"),
        "echo run; exit 1",
    );
    poll(30, "RestartCount 2 and exited", || {
        let v = inspect(&d, &n);
        (v["RestartCount"] == 2 && v["State"]["Status"] == "exited").then_some(())
    });
    std::thread::sleep(Duration::from_millis(1500)); // checking that nothing happens
    let v = inspect(&d, &n);
    assert_eq!(v["RestartCount"], 2);
    assert_eq!(v["State"]["Status"], "exited");
    assert_eq!(v["State"]["ExitCode"], 1);
    assert_eq!(v["HostConfig"]["RestartPolicy"]["Name"], "on-failure");
    assert_eq!(v["HostConfig"]["RestartPolicy"]["MaximumRetryCount"], 2);
    assert_eq!(logs(&d, &n), "run\nrun\nrun\n");
    // Success is not a failure: no restart.
    let ok = name("onf-ok");
    run_sh(
        &d,
        &format!("-d --name {ok} --restart on-failure"),
        "exit 0",
    );
    wait_status(&d, &ok, "exited");
    std::thread::sleep(Duration::from_millis(800)); // checking that nothing happens
    assert_eq!(restart_count(&d, &ok), 0);
}

#[test]
fn restart_always_and_unless_stopped_until_stopped() {
    let d = engine();
    for policy in ["always", "unless-stopped"] {
        let n = name(policy);
        run_sh(
            &d,
            &format!("-d --name {n} --restart {policy}"),
            "echo run; sleep 0.2",
        );
        poll(30, "2 restarts", || {
            (restart_count(&d, &n) >= 2).then_some(())
        });
        poll(30, "3 runs in the log", || {
            (logs(&d, &n).matches("run\n").count() >= 3).then_some(())
        });
        dok(&d, &format!("stop -t 1 {n}"));
        let v = wait_status(&d, &n, "exited");
        let count = v["RestartCount"].as_i64().unwrap();
        std::thread::sleep(Duration::from_millis(1500)); // checking that nothing happens
        assert_eq!(
            status(&d, &n),
            "exited",
            "{policy} restarted after docker stop"
        );
        assert_eq!(restart_count(&d, &n), count);
    }
}

const LOOP_SH: &str =
    "echo before; trap 'echo bye; exit 0' TERM; trap 'exit 9' USR1; while true; do sleep 0.1; done";

#[test]
fn engine_restart_keeps_running_and_records_exits() {
    let d = engine();
    let (live, gone, crashed, uns) = (name("live"), name("gone"), name("crash"), name("uns"));
    dok(
        &d,
        &format!("run -d --name {uns} --restart unless-stopped busybox sleep 1000"),
    );
    dok(&d, &format!("stop -t 0 {uns}"));
    run_sh(&d, &format!("-d --name {live}"), LOOP_SH);
    run_sh(&d, &format!("-d --name {gone}"), LOOP_SH);
    run_sh(
        &d,
        &format!("-d --name {crashed} --restart always"),
        LOOP_SH,
    );
    for n in [&live, &gone, &crashed] {
        wait_log(&d, n, "before");
    }
    let live_pid = pid_of(&d, &live);
    let (gone_pid, crashed_pid) = (pid_of(&d, &gone), pid_of(&d, &crashed));
    let loop_cmd = ["sh", "-c", LOOP_SH];

    d.kill9();
    // While the engine is down: one exits with 9, the `always` one is killed.
    // SAFETY: kill(2) on pids of our own containers.
    unsafe {
        libc::kill(gone_pid, libc::SIGUSR1);
        libc::kill(crashed_pid, libc::SIGKILL);
    }
    poll(10, "both to exit", || {
        (!runs(gone_pid, &loop_cmd) && !runs(crashed_pid, &loop_cmd)).then_some(())
    });
    d.start_again();

    let v = inspect(&d, &live);
    assert_eq!(v["State"]["Status"], "running", "{v}");
    assert_eq!(v["State"]["Pid"], live_pid);
    assert!(runs(live_pid, &loop_cmd));
    let v = inspect(&d, &gone);
    assert_eq!(v["State"]["Status"], "exited");
    assert_eq!(v["State"]["ExitCode"], 9);
    assert_ne!(v["State"]["FinishedAt"], ZERO_TIME);
    let v = wait_status(&d, &crashed, "running");
    assert_ne!(v["State"]["Pid"], crashed_pid);
    assert_eq!(
        status(&d, &uns),
        "exited",
        "unless-stopped came back after docker stop"
    );

    // The re-attached container is stoppable and its log is intact.
    assert_eq!(logs(&d, &live), "before\n");
    dok(&d, &format!("stop {live}"));
    assert_eq!(inspect(&d, &live)["State"]["ExitCode"], 0);
    assert_eq!(logs(&d, &live), "before\nbye\n");
    assert!(!runs(live_pid, &loop_cmd));
}

/// Docker restarts an `always` container at daemon start even after `docker stop` (only
/// `unless-stopped` stays down).
#[test]
fn engine_restart_starts_stopped_always_container() {
    let d = engine();
    let n = name("alw");
    dok(
        &d,
        &format!("run -d --name {n} --restart always busybox sleep 1000"),
    );
    dok(&d, &format!("stop -t 0 {n}"));
    d.restart();
    wait_status(&d, &n, "running");
}

/// `docker start` and `docker restart` reset RestartCount and the "manually stopped" mark, as
/// Docker's resetRestartManager does: the policy applies again.
#[test]
fn start_and_restart_reset_the_restart_policy() {
    let d = engine();
    let n = name("reset");
    run_sh(
        &d,
        &format!("-d --name {n} --restart on-failure:1"),
        "echo run; exit 1",
    );
    // Each verb: one run, and (the count being reset) one more retry.
    for (verb, runs) in [("", 2), ("start", 4), ("restart", 6)] {
        if !verb.is_empty() {
            dok(&d, &format!("{verb} {n}"));
        }
        poll(30, &format!("{runs} runs after {verb}"), || {
            let v = inspect(&d, &n);
            let seen = logs(&d, &n).matches("run\n").count();
            (seen == runs && v["RestartCount"] == 1 && v["State"]["Status"] == "exited")
                .then_some(())
        });
    }
    let a = name("always");
    run_sh(
        &d,
        &format!("-d --name {a} --restart always"),
        "echo run; sleep 0.3",
    );
    wait_log(&d, &a, "run");
    dok(&d, &format!("stop -t 0 {a}"));
    dok(&d, &format!("start {a}"));
    poll(30, "restarts after docker start", || {
        (logs(&d, &a).matches("run\n").count() >= 3).then_some(())
    });
}
