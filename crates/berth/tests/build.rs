//! Builds end to end: `DOCKER_BUILDKIT=0 docker build` (the classic /build endpoint) against a
//! private engine with an imported busybox: steps, cache, layers, image config, errors.

mod common;
#[path = "build/helpers.rs"]
mod helpers;

use common::TestDaemon;
use helpers::*;

#[test]
fn run_copy_and_cache() {
    let d = TestDaemon::start();
    d.import_busybox("busybox:latest");
    let ctx = context(
        &d,
        "c1",
        &[
            (
                "Dockerfile",
                "FROM busybox\nRUN echo hello > /greeting && echo built-output\nCOPY a.txt /app/\nCMD [\"cat\", \"/app/a.txt\"]\n",
            ),
            ("a.txt", "version one\n"),
        ],
    );
    let out = build_ok(&d, &["-t", "b1:v1", ctx.to_str().unwrap()]);
    assert!(out.contains("Step 1/4 : FROM busybox"), "{out}");
    assert!(out.contains(" ---> Running in "), "{out}");
    assert!(out.contains("built-output"), "{out}");
    assert!(out.contains("Removing intermediate container"), "{out}");
    assert!(out.contains("Successfully tagged b1:v1"), "{out}");
    let id = built_id(&out);
    assert_eq!(run_out(&d, "b1:v1", &[]), "version one\n");
    assert_eq!(run_out(&d, "b1:v1", &["cat", "/greeting"]), "hello\n");

    // No change: every step from the cache, same image.
    let out2 = build_ok(&d, &["-t", "b1:v1", ctx.to_str().unwrap()]);
    assert_eq!(cache_hits(&out2), 3, "{out2}");
    assert_eq!(built_id(&out2), id);
    assert!(!out2.contains("Running in"), "{out2}");

    // A change to the copied file: RUN still cached, COPY and later steps rerun.
    write(&ctx, "a.txt", "version two\n");
    let out3 = build_ok(&d, &["-t", "b1:v2", ctx.to_str().unwrap()]);
    assert_eq!(cache_hits(&out3), 1, "{out3}");
    assert_ne!(built_id(&out3), id);
    assert_eq!(run_out(&d, "b1:v2", &[]), "version two\n");
}
