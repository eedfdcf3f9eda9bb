//! exec's own way into the container (berth_shim::enter): the exec'd process shares every
//! namespace of the container's init, gets no_new_privs only when the container has it (as
//! Docker), keeps the container's seccomp program either way, and gets exactly the exec user's
//! groups (none of the engine's).

mod common;

use common::TestDaemon;

fn status_field(d: &TestDaemon, ctr: &str, pid: &str, field: &str) -> String {
    let out = d.docker_ok(&[
        "exec",
        ctr,
        "grep",
        &format!("^{field}:"),
        &format!("/proc/{pid}/status"),
    ]);
    out.split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

#[test]
fn exec_no_new_privs_follows_the_container() {
    let d = TestDaemon::start();
    d.import_busybox("busybox");
    d.docker_ok(&["run", "-d", "--name", "plain", "busybox", "sleep", "300"]);
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "nnp",
        "--security-opt",
        "no-new-privileges",
        "busybox",
        "sleep",
        "300",
    ]);
    assert_eq!(status_field(&d, "plain", "1", "NoNewPrivs"), "0");
    assert_eq!(status_field(&d, "plain", "self", "NoNewPrivs"), "0");
    assert_eq!(status_field(&d, "nnp", "1", "NoNewPrivs"), "1");
    assert_eq!(status_field(&d, "nnp", "self", "NoNewPrivs"), "1");
    // The container's seccomp filter in both cases (one program, filter mode).
    for c in ["plain", "nnp"] {
        assert_eq!(status_field(&d, c, "self", "Seccomp"), "2", "{c}");
        assert_eq!(status_field(&d, c, "self", "Seccomp_filters"), "1", "{c}");
    }
    // Capabilities as the init's.
    assert_eq!(
        status_field(&d, "plain", "self", "CapBnd"),
        status_field(&d, "plain", "1", "CapBnd")
    );
    assert_eq!(
        status_field(&d, "plain", "self", "CapEff"),
        status_field(&d, "plain", "1", "CapEff")
    );
}

#[test]
fn exec_shares_every_namespace_of_the_init_and_only_the_users_groups() {
    let d = TestDaemon::start();
    d.import_busybox("busybox");
    let id = d.docker_ok(&["run", "-d", "--name", "ctr", "busybox", "sleep", "300"]);
    let out = d.docker_ok(&[
        "exec",
        "ctr",
        "sh",
        "-c",
        "for n in mnt net uts ipc pid cgroup user; do \
           [ \"$(readlink /proc/self/ns/$n)\" = \"$(readlink /proc/1/ns/$n)\" ] || echo \"$n differs\"; \
         done; hostname; grep PPid /proc/self/status",
    ]);
    // Its parent (the helper) is outside the container's pid namespace: PPid 0, as with runc.
    assert_eq!(out, format!("{}\nPPid:\t0\n", &id.trim()[..12]));
    // The exec'd process is in the init's pid namespace, seen from the host too.
    let init: i32 = d
        .docker_ok(&["inspect", "-f", "{{.State.Pid}}", "ctr"])
        .trim()
        .parse()
        .unwrap();
    assert_ne!(
        std::fs::read_link(format!("/proc/{init}/ns/mnt")).unwrap(),
        std::fs::read_link("/proc/self/ns/mnt").unwrap()
    );
    assert_eq!(
        d.docker_ok(&["exec", "-u", "1234:55", "ctr", "id", "-G"]),
        "55\n"
    );
    assert_eq!(
        d.docker_ok(&[
            "exec",
            "-u",
            "nobody",
            "ctr",
            "sh",
            "-c",
            "id -u; grep CapEff /proc/self/status"
        ]),
        "65534\nCapEff:\t0000000000000000\n"
    );
    // A missing cwd is an error with Docker's wording, not a process in the wrong directory.
    let out = d.docker(&["exec", "-w", "/no/such/dir", "ctr", "pwd"]);
    assert_ne!(out.status.code(), Some(0), "{}", d.describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("/no/such/dir")
            || String::from_utf8_lossy(&out.stderr).contains("/no/such/dir"),
        "{}",
        d.describe(&out)
    );
}
