//! Builds end to end: `DOCKER_BUILDKIT=0 docker build` (the classic /build endpoint) against a
//! private engine with an imported busybox: steps, cache, layers, image config, errors.

mod common;
#[path = "build/features.rs"]
mod features;
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
    // Layers of build steps are stored as plain tars: save writes them as they are.
    let saved = d.scratch_dir().join("b1.tar");
    d.docker_ok(&["save", "-o", saved.to_str().unwrap(), "b1:v1"]);
    assert!(std::fs::metadata(&saved)
        .map(|m| m.len() > 0)
        .unwrap_or(false));

    // No change: every step from the cache, same image. (Plain `docker build`: CLI 28
    // without buildx falls back to the classic endpoint.)
    let out2 = d.docker_ok(&["build", "-t", "b1:v1", ctx.to_str().unwrap()]);
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

#[test]
fn cache_survives_engine_restart_and_prune_clears_it() {
    let d = TestDaemon::start();
    d.import_busybox("busybox:latest");
    let ctx = context(
        &d,
        "c",
        &[
            (
                "Dockerfile",
                "FROM busybox\nENV A=1\nRUN echo x > /x\nCOPY f /f\n",
            ),
            ("f", "data\n"),
        ],
    );
    let id = built_id(&build_ok(&d, &["-t", "r:1", ctx.to_str().unwrap()]));
    d.kill9();
    d.start_again();
    let out = build_ok(&d, &["-t", "r:1", ctx.to_str().unwrap()]);
    assert_eq!(cache_hits(&out), 3, "{out}");
    assert_eq!(built_id(&out), id);

    // system df counts the records; builder prune forgets them: the next build runs every
    // step again.
    let df = d.docker_ok(&["system", "df", "--format", "{{.Type}}={{.TotalCount}}"]);
    assert!(df.contains("Build Cache=3"), "{df}");
    let pr = d.docker_ok(&["builder", "prune", "-f"]);
    assert!(pr.contains("Total"), "{pr}");
    let df = d.docker_ok(&["system", "df", "--format", "{{.Type}}={{.TotalCount}}"]);
    assert!(df.contains("Build Cache=0"), "{df}");
    let out = build_ok(&d, &[ctx.to_str().unwrap()]);
    assert_eq!(cache_hits(&out), 0, "{out}");
    assert!(out.contains("Running in"), "{out}");
    // --no-cache never looks.
    let out = build_ok(&d, &["--no-cache", ctx.to_str().unwrap()]);
    assert_eq!(cache_hits(&out), 0, "{out}");
}

#[test]
fn multi_stage_copy_from_target_and_skipped_stages() {
    let d = TestDaemon::start();
    d.import_busybox("busybox:latest");
    let df = "\
FROM busybox AS build
WORKDIR /src
COPY main.txt .
RUN mkdir -p /out && tr a-z A-Z < main.txt > /out/app && chmod 755 /out/app

FROM busybox AS unused
RUN exit 3

FROM busybox AS test
RUN echo test-stage > /t

FROM busybox
COPY --from=build /out/app /usr/local/bin/app
COPY --from=0 /src/main.txt /orig.txt
CMD [\"cat\", \"/usr/local/bin/app\"]
";
    let ctx = context(
        &d,
        "ms",
        &[("Dockerfile", df), ("main.txt", "hello multi\n")],
    );
    let out = build_ok(&d, &["-t", "ms:latest", ctx.to_str().unwrap()]);
    // Only the stages the last one needs: build (4 steps) + final (4 steps).
    assert!(out.contains("Step 1/8 : FROM busybox AS build"), "{out}");
    assert!(!out.contains("exit 3"), "{out}");
    assert!(!out.contains("test-stage"), "{out}");
    assert_eq!(run_out(&d, "ms:latest", &[]), "HELLO MULTI\n");
    assert_eq!(
        run_out(&d, "ms:latest", &["cat", "/orig.txt"]),
        "hello multi\n"
    );
    let mode = run_out(
        &d,
        "ms:latest",
        &["stat", "-c", "%a %u", "/usr/local/bin/app"],
    );
    assert_eq!(mode.trim(), "755 0");

    // --target stops at the named stage.
    let out = build_ok(
        &d,
        &["--target", "test", "-t", "ms:test", ctx.to_str().unwrap()],
    );
    assert!(out.contains("Step 1/2 : FROM busybox AS test"), "{out}");
    assert_eq!(run_out(&d, "ms:test", &["cat", "/t"]), "test-stage\n");
    let err = build_err(&d, &["--target", "nope", ctx.to_str().unwrap()]);
    assert!(err.contains("failed to reach build target nope"), "{err}");
}

#[test]
fn deleted_file_stays_in_earlier_layer_and_history_shows_every_layer() {
    let d = TestDaemon::start();
    d.import_busybox("busybox:latest");
    let df = "FROM busybox\nRUN head -c 100000 /dev/zero > /big && echo keep > /keep\nRUN rm /big\nLABEL stage=done\n";
    let ctx = context(&d, "del", &[("Dockerfile", df)]);
    build_ok(&d, &["-t", "del:1", ctx.to_str().unwrap()]);
    let ls = run_out(&d, "del:1", &["sh", "-c", "ls /big 2>&1; cat /keep"]);
    assert!(ls.contains("No such file"), "{ls}");
    assert!(ls.contains("keep"), "{ls}");
    let info = inspect(&d, "del:1");
    let layers = info["RootFS"]["Layers"].as_array().expect("layers").len();
    assert_eq!(layers, 3, "{info}");

    let hist = d.docker_ok(&[
        "history",
        "--no-trunc",
        "--format",
        "{{.ID}}|{{.CreatedBy}}|{{.Size}}",
        "del:1",
    ]);
    let rows: Vec<Vec<&str>> = hist.lines().map(|l| l.split('|').collect()).collect();
    assert!(rows.len() >= 4, "{hist}");
    assert!(rows[0][1].contains("LABEL stage=done"), "{hist}");
    assert_eq!(rows[0][2], "0B", "{hist}");
    assert!(rows[1][1].contains("rm /big"), "{hist}");
    assert!(rows[2][1].contains("head -c 100000"), "{hist}");
    assert!(
        rows[2][2].starts_with("100"),
        "size of the first RUN layer: {hist}"
    );
    // The intermediate image of the first RUN still holds the file.
    let first = rows[2][0];
    assert!(first.starts_with("sha256:"), "{hist}");
    let size = run_out(&d, first, &["stat", "-c", "%s", "/big"]);
    assert_eq!(size.trim(), "100000");
}

#[test]
fn env_and_arg_expansion() {
    let d = TestDaemon::start();
    d.import_busybox("busybox:1.36");
    let df = r#"ARG TAG=1.36
FROM busybox:${TAG}
ARG TAG
ARG WHO=world
ARG UNSET
ENV GREETING="hello ${WHO}" DIR=/opt/${WHO:-none} EMPTY=${UNSET:-dflt}
WORKDIR $DIR
LABEL tag=$TAG who="${WHO}"
RUN echo "$GREETING from $TAG $WHO" > msg && pwd > where
"#;
    let ctx = context(&d, "env", &[("Dockerfile", df)]);
    let out = build_ok(
        &d,
        &[
            "--build-arg",
            "WHO=berth",
            "--build-arg",
            "NOPE=1",
            "--label",
            "from.cli=yes",
            "-t",
            "env:1",
            ctx.to_str().unwrap(),
        ],
    );
    assert!(
        out.contains("[Warning] One or more build-args [NOPE] were not consumed"),
        "{out}"
    );
    assert_eq!(
        run_out(&d, "env:1", &["cat", "msg"]),
        "hello berth from 1.36 berth\n"
    );
    assert_eq!(run_out(&d, "env:1", &["cat", "where"]), "/opt/berth\n");
    let info = inspect(&d, "env:1");
    let env: Vec<String> = serde_json::from_value(info["Config"]["Env"].clone()).unwrap();
    assert!(env.contains(&"GREETING=hello berth".to_string()), "{env:?}");
    assert!(env.contains(&"EMPTY=dflt".to_string()), "{env:?}");
    assert!(env.iter().any(|e| e.starts_with("PATH=")), "{env:?}");
    // Build args are not persisted in the config.
    assert!(!env.iter().any(|e| e.starts_with("WHO=")), "{env:?}");
    assert_eq!(info["Config"]["WorkingDir"], "/opt/berth");
    assert_eq!(info["Config"]["Labels"]["who"], "berth");
    assert_eq!(info["Config"]["Labels"]["tag"], "1.36");
    assert_eq!(info["Config"]["Labels"]["from.cli"], "yes");
    let hist = d.docker_ok(&[
        "history",
        "--no-trunc",
        "--format",
        "{{.CreatedBy}}",
        "env:1",
    ]);
    // The --label step comes last, then the RUN with the build args it saw.
    let lines: Vec<&str> = hist.lines().collect();
    assert_eq!(lines[0], "/bin/sh -c #(nop)  LABEL from.cli=yes", "{hist}");
    assert!(
        lines[1].starts_with("|2 TAG=1.36 WHO=berth /bin/sh -c echo"),
        "{hist}"
    );
}

#[test]
fn failing_run_reports_docker_message_and_exit_code() {
    let d = TestDaemon::start();
    d.import_busybox("busybox:latest");
    let ctx = context(
        &d,
        "f",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN echo before\nRUN false\nRUN echo never\n",
        )],
    );
    let out = docker_classic(&d, &["build", ctx.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", d.describe(&out));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        all.contains("The command '/bin/sh -c false' returned a non-zero code: 1"),
        "{all}"
    );
    assert!(!all.contains("never"), "{all}");
    let ctx = context(&d, "f2", &[("Dockerfile", "FROM busybox\nRUN exit 7\n")]);
    let err = build_err(&d, &[ctx.to_str().unwrap()]);
    assert!(err.contains("returned a non-zero code: 7"), "{err}");
    // A syntax error is refused before anything runs, with its line.
    let ctx = context(&d, "f3", &[("Dockerfile", "FROM busybox\nBOGUS x\n")]);
    let err = build_err(&d, &[ctx.to_str().unwrap()]);
    assert!(
        err.contains("line 2") && err.to_lowercase().contains("unknown instruction"),
        "{err}"
    );
}

#[test]
fn dockerignore_and_forbidden_sources() {
    let d = TestDaemon::start();
    d.import_busybox("busybox:latest");
    let ctx = context(
        &d,
        "ign",
        &[
            ("Dockerfile", "FROM busybox\nCOPY . /ctx/\n"),
            (".dockerignore", "secret.txt\n*.log\n!keep.log\nbuild/\n"),
            ("secret.txt", "s"),
            ("a.log", "a"),
            ("keep.log", "k"),
            ("build/out", "o"),
            ("src/main.c", "m"),
        ],
    );
    build_ok(&d, &["-t", "ign:1", ctx.to_str().unwrap()]);
    let ls = run_out(&d, "ign:1", &["find", "/ctx", "-type", "f"]);
    let mut files: Vec<&str> = ls.lines().collect();
    files.sort();
    assert_eq!(
        files,
        vec![
            "/ctx/.dockerignore",
            "/ctx/Dockerfile",
            "/ctx/keep.log",
            "/ctx/src/main.c"
        ],
        "{ls}"
    );
    // COPY of an excluded file, of a missing one, and from outside the context.
    let ctx2 = context(
        &d,
        "ign2",
        &[
            ("Dockerfile", "FROM busybox\nCOPY secret.txt /\n"),
            (".dockerignore", "secret.txt\n"),
            ("secret.txt", "s"),
        ],
    );
    let err = build_err(&d, &[ctx2.to_str().unwrap()]);
    assert!(
        err.contains("file not found in build context or excluded by .dockerignore"),
        "{err}"
    );
    // A symlink in the context that points out of it is copied as a link, never followed.
    let ctx5 = context(
        &d,
        "ign5",
        &[("Dockerfile", "FROM busybox\nCOPY out /out\nCOPY dir/ /d/\n")],
    );
    std::os::unix::fs::symlink("/etc/shadow", ctx5.join("out")).unwrap();
    std::fs::create_dir_all(ctx5.join("dir")).unwrap();
    std::os::unix::fs::symlink("../../../../etc/shadow", ctx5.join("dir/up")).unwrap();
    build_ok(&d, &["-t", "ign:5", ctx5.to_str().unwrap()]);
    let links = run_out(
        &d,
        "ign:5",
        &[
            "sh",
            "-c",
            "readlink /out; readlink /d/up; [ -e /out ] || echo dangling",
        ],
    );
    assert_eq!(
        links, "/etc/shadow\n../../../../etc/shadow\ndangling\n",
        "{links}"
    );
    let ctx3 = context(
        &d,
        "ign3",
        &[("Dockerfile", "FROM busybox\nCOPY ../x /x\n")],
    );
    let err = build_err(
        &d,
        &[
            "-f",
            ctx3.join("Dockerfile").to_str().unwrap(),
            ctx3.to_str().unwrap(),
        ],
    );
    assert!(
        err.contains("forbidden path outside the build context"),
        "{err}"
    );
    let ctx4 = context(
        &d,
        "ign4",
        &[("Dockerfile", "FROM busybox\nCOPY *.nothing /x/\n")],
    );
    let err = build_err(&d, &[ctx4.to_str().unwrap()]);
    assert!(err.contains("no source files were specified"), "{err}");
}
