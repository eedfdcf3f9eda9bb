//! The exec helper's fallback, libcontainer's tenant builder (used when the helper's own path does
//! not apply, e.g. a seccomp profile the engine could not precompile), still works: forced here with
//! `BERTH_EXEC_TENANT=1` in the engine's environment (inherited by the helper). One test in this
//! binary, so the variable set for the process affects no other test's engine.

mod common;

use common::TestDaemon;

#[test]
fn exec_through_the_tenant_builder_fallback() {
    std::env::set_var("BERTH_EXEC_TENANT", "1");
    let d = TestDaemon::start();
    d.import_busybox("busybox");
    d.docker_ok(&["run", "-d", "--name", "ctr", "busybox", "sleep", "300"]);
    assert_eq!(d.docker_ok(&["exec", "ctr", "echo", "hi"]), "hi\n");
    let out = d.docker(&["exec", "ctr", "sh", "-c", "exit 5"]);
    assert_eq!(out.status.code(), Some(5), "{}", d.describe(&out));
    assert_eq!(
        d.docker_ok(&[
            "exec",
            "-u",
            "nobody",
            "-w",
            "/etc",
            "ctr",
            "sh",
            "-c",
            "id -un; pwd"
        ]),
        "nobody\n/etc\n"
    );
    let status = d.docker_ok(&["exec", "ctr", "cat", "/proc/self/status"]);
    let field = |f: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(f))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    assert_eq!(field("Seccomp:"), "2", "{status}");
    // This path's known difference: the filter is loaded after capabilities are dropped, which
    // needs no_new_privs (the helper's own path does not set it: tests/exec_enter.rs).
    assert_eq!(field("NoNewPrivs:"), "1", "{status}");
    let out = d.docker(&["exec", "ctr", "no-such-binary"]);
    assert_eq!(out.status.code(), Some(127), "{}", d.describe(&out));
}
