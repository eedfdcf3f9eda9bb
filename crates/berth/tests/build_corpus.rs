//! The Dockerfile corpus (tests/dockerfiles/*) built end to end, and `berth build` itself:
//! each corpus image is built with the docker CLI's classic builder (context sent as a tar),
//! its config compared with Docker's documented result (expected.json), its containers run;
//! then `berth build` (context read in place) must hit the cache on every step and give the
//! same image.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::TestDaemon;
use serde_json::Value;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/dockerfiles")
}

/// Copy a corpus entry into the test's scratch dir (builds never touch the repository).
fn copy_context(d: &TestDaemon, name: &str) -> PathBuf {
    let dst = d.scratch_dir().join(format!("ctx-{name}"));
    let _ = fs::remove_dir_all(&dst);
    let st = Command::new("cp")
        .arg("-a")
        .arg(corpus_dir().join(name))
        .arg(&dst)
        .status()
        .expect("cp");
    assert!(st.success());
    dst
}

fn docker_classic(d: &TestDaemon, args: &[&str], input: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(common::docker_exe());
    cmd.env("DOCKER_HOST", d.host())
        .env("DOCKER_BUILDKIT", "0")
        .env("DOCKER_CLI_HINTS", "false")
        .env_remove("DOCKER_CONTEXT")
        .env_remove("DOCKER_API_VERSION")
        .args(args);
    common::run_with_timeout(cmd, input, Duration::from_secs(240))
}

fn berth_env(d: &TestDaemon, args: &[&str], env: &[(&str, &str)], input: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(common::berth_exe());
    cmd.env("BERTH_HOST", d.host()).env_remove("DOCKER_HOST");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.args(args);
    common::run_with_timeout(cmd, input, Duration::from_secs(240))
}

fn ok(d: &TestDaemon, what: &str, out: Output) -> String {
    assert!(out.status.success(), "{what} failed\n{}", d.describe(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn built_id(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("Successfully built "))
        .unwrap_or_else(|| panic!("no 'Successfully built' in:\n{out}"))
        .trim()
        .to_string()
}

fn image_id(d: &TestDaemon, image: &str) -> String {
    d.docker_ok(&["image", "inspect", "-f", "{{.Id}}", image])
        .trim()
        .to_string()
}

fn expected(name: &str) -> Value {
    let text = fs::read_to_string(corpus_dir().join(name).join("expected.json")).expect("read");
    serde_json::from_str(&text).expect("expected.json")
}

/// null and [] / {} are the same "nothing" in an image config.
fn normalize(v: &Value) -> Value {
    match v {
        Value::Array(a) if a.is_empty() => Value::Null,
        Value::Object(o) if o.is_empty() => Value::Null,
        other => other.clone(),
    }
}

fn build_args(exp: &Value) -> Vec<String> {
    let mut v = Vec::new();
    if let Some(m) = exp.get("build_args").and_then(|b| b.as_object()) {
        for (k, val) in m {
            v.push("--build-arg".to_string());
            v.push(format!("{k}={}", val.as_str().unwrap_or_default()));
        }
    }
    v
}

fn check_image(d: &TestDaemon, name: &str, image: &str, exp: &Value, output: &str) {
    let inspect: Value =
        serde_json::from_str(&d.docker_ok(&["image", "inspect", image])).expect("inspect");
    let config = &inspect[0]["Config"];
    for (k, want) in exp["config"].as_object().expect("config") {
        assert_eq!(
            normalize(&config[k.as_str()]),
            normalize(want),
            "{name}: Config.{k}\nwhole config: {config:#}"
        );
    }
    for run in exp["run"].as_array().into_iter().flatten() {
        let mut args: Vec<String> = vec!["run".into(), "--rm".into()];
        if let Some(ep) = run.get("entrypoint").and_then(|e| e.as_str()) {
            args.push("--entrypoint".into());
            args.push(ep.into());
        }
        args.push(image.into());
        for a in run["args"].as_array().into_iter().flatten() {
            args.push(a.as_str().unwrap_or_default().into());
        }
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = d.docker(&argv);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            run["stdout"].as_str().unwrap_or_default(),
            "{name}: docker {argv:?}\n{}",
            d.describe(&out)
        );
    }
    for s in exp["output_contains"].as_array().into_iter().flatten() {
        let s = s.as_str().unwrap_or_default();
        assert!(output.contains(s), "{name}: output lacks {s:?}\n{output}");
    }
    for s in exp["output_lacks"].as_array().into_iter().flatten() {
        let s = s.as_str().unwrap_or_default();
        assert!(!output.contains(s), "{name}: output has {s:?}\n{output}");
    }
    if let Some(min) = exp.get("history_min_layer_bytes").and_then(|m| m.as_i64()) {
        let sizes = d.docker_ok(&["history", "--human=false", "--format", "{{.Size}}", image]);
        assert!(
            sizes
                .lines()
                .any(|l| l.trim().parse::<i64>().unwrap_or(0) >= min),
            "{name}: no layer of at least {min} bytes in history:\n{sizes}"
        );
    }
}

const ORDER: &[&str] = &[
    "go-multistage",
    "python-app",
    "static-site",
    "deletes-files",
    "onbuild-parent",
    "onbuild-child",
    "heredocs-args",
    "ignore-patterns",
];

#[test]
fn corpus_builds_as_docker_documents_and_berth_build_hits_the_cache() {
    // Every entry of the corpus is listed here (a new one must be added to ORDER).
    let mut on_disk: Vec<String> = fs::read_dir(corpus_dir())
        .expect("corpus")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = ORDER.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);

    let d = TestDaemon::start();
    d.import_busybox("busybox:latest");
    for name in ORDER {
        let exp = expected(name);
        let ctx = copy_context(&d, name);
        let tag = exp
            .get("tag")
            .and_then(|t| t.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| format!("berth-corpus/{name}"));
        let mut args: Vec<String> = vec!["build".into(), "-t".into(), tag.clone()];
        args.extend(build_args(&exp));
        args.push(ctx.to_string_lossy().into_owned());
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = ok(
            &d,
            &format!("docker {argv:?}"),
            docker_classic(&d, &argv, None),
        );
        let id = built_id(&out);
        check_image(&d, name, &tag, &exp, &out);

        // berth build, context read in place: every step from the cache, the same image.
        let mut bargs: Vec<String> = vec![
            "build".into(),
            "-q".into(),
            "-t".into(),
            format!("{tag}-berth"),
        ];
        bargs.extend(build_args(&exp));
        bargs.push(ctx.to_string_lossy().into_owned());
        let bargv: Vec<&str> = bargs.iter().map(String::as_str).collect();
        let bout = ok(
            &d,
            &format!("berth {bargv:?}"),
            berth_env(&d, &bargv, &[], None),
        );
        let bid = bout.trim();
        assert!(bid.starts_with("sha256:"), "{name}: -q printed {bout:?}");
        assert!(
            bid.trim_start_matches("sha256:").starts_with(&id),
            "{name}: berth build gave {bid}, docker build gave {id}"
        );
        assert_eq!(image_id(&d, &format!("{tag}-berth")), bid);
    }
}

#[test]
fn berth_build_flags_and_errors() {
    let d = TestDaemon::start();
    d.import_busybox("busybox:latest");
    let ctx = d.scratch_dir().join("flags");
    fs::create_dir_all(ctx.join("sub")).expect("mkdir");
    fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nARG MSG=default\nCOPY sub/ /sub/\nRUN echo \"$MSG\" > /msg\nCMD [\"cat\", \"/msg\"]\n",
    )
    .expect("write");
    fs::write(ctx.join("sub/file.txt"), "content\n").expect("write");
    let c = ctx.to_string_lossy().into_owned();

    // Plain build: docker's classic output, tags, build args, labels, iidfile.
    let iid = d.scratch_dir().join("iid");
    let iid_s = iid.to_string_lossy().into_owned();
    let out = ok(
        &d,
        "berth build",
        berth_env(
            &d,
            &[
                "build",
                "-t",
                "flags:one",
                "-t",
                "flags:two",
                "--build-arg",
                "MSG=hello",
                "--label",
                "team=builders",
                "--iidfile",
                &iid_s,
                &c,
            ],
            &[],
            None,
        ),
    );
    // --label adds a LABEL step at the end, as the classic builder does.
    assert!(out.contains("Step 1/6 : FROM busybox"), "{out}");
    assert!(
        out.contains("Step 6/6 : LABEL \"team\"='builders'"),
        "{out}"
    );
    assert!(out.contains("Successfully tagged flags:two"), "{out}");
    let id = fs::read_to_string(&iid).expect("iidfile");
    assert!(id.starts_with("sha256:") && !id.ends_with('\n'), "{id:?}");
    assert_eq!(image_id(&d, "flags:one"), id);
    assert_eq!(image_id(&d, "flags:two"), id);
    assert_eq!(d.docker_ok(&["run", "--rm", "flags:one"]), "hello\n");
    assert_eq!(
        d.docker_ok(&[
            "image",
            "inspect",
            "-f",
            "{{index .Config.Labels \"team\"}}",
            "flags:one"
        ])
        .trim(),
        "builders"
    );

    // An env-provided build arg (`--build-arg MSG` takes the CLI's environment).
    let out = ok(
        &d,
        "berth build env arg",
        berth_env(
            &d,
            &["build", "-q", "--build-arg", "MSG", &c],
            &[("MSG", "from-env")],
            None,
        ),
    );
    let env_id = out.trim().to_string();
    assert_eq!(d.docker_ok(&["run", "--rm", &env_id]), "from-env\n");

    // The tar path (forced) gives the same image as the in-place path: same cache keys.
    let out = ok(
        &d,
        "berth build tar",
        berth_env(
            &d,
            &[
                "build",
                "-q",
                "--build-arg",
                "MSG=hello",
                "--label",
                "team=builders",
                &c,
            ],
            &[("BERTH_BUILD_TAR", "1")],
            None,
        ),
    );
    assert_eq!(out.trim(), id);

    // -f - : the Dockerfile from stdin, the context from the directory.
    let out = ok(
        &d,
        "berth build -f -",
        berth_env(
            &d,
            &["build", "-q", "-f", "-", &c],
            &[],
            Some(b"FROM busybox\nCOPY sub/file.txt /f\nCMD [\"cat\", \"/f\"]\n"),
        ),
    );
    assert_eq!(d.docker_ok(&["run", "--rm", out.trim()]), "content\n");

    // A Dockerfile outside the context.
    let outside = d.scratch_dir().join("outside.Dockerfile");
    fs::write(
        &outside,
        "FROM busybox\nCOPY sub /s\nCMD [\"ls\", \"/s\"]\n",
    )
    .expect("write");
    let out = ok(
        &d,
        "berth build -f outside",
        berth_env(
            &d,
            &["build", "-q", "-f", &outside.to_string_lossy(), &c],
            &[],
            None,
        ),
    );
    assert_eq!(d.docker_ok(&["run", "--rm", out.trim()]), "file.txt\n");

    // The same through the docker CLI (it sends the Dockerfile as .dockerfile.<hex> in the
    // tar and lists that name in .dockerignore, so COPY . does not see it).
    fs::write(ctx.join(".dockerignore"), "ignored.txt\n").expect("write");
    fs::write(ctx.join("ignored.txt"), "no\n").expect("write");
    fs::write(
        &outside,
        "FROM busybox\nCOPY . /c/\nCMD [\"sh\", \"-c\", \"cd /c && find . -type f | sort\"]\n",
    )
    .expect("write");
    let listing = "./.dockerignore\n./Dockerfile\n./sub/file.txt\n";
    let out = ok(
        &d,
        "docker build -f outside",
        docker_classic(
            &d,
            &["build", "-q", "-f", &outside.to_string_lossy(), &c],
            None,
        ),
    );
    assert_eq!(d.docker_ok(&["run", "--rm", out.trim()]), listing);
    let out = ok(
        &d,
        "berth build -f outside (ignore)",
        berth_env(
            &d,
            &["build", "-q", "-f", &outside.to_string_lossy(), &c],
            &[],
            None,
        ),
    );
    assert_eq!(d.docker_ok(&["run", "--rm", out.trim()]), listing);
    let df = fs::read(&outside).expect("read");
    let out = ok(
        &d,
        "docker build -f -",
        docker_classic(&d, &["build", "-q", "-f", "-", &c], Some(&df)),
    );
    assert_eq!(d.docker_ok(&["run", "--rm", out.trim()]), listing);
    fs::remove_file(ctx.join(".dockerignore")).expect("rm");
    fs::remove_file(ctx.join("ignored.txt")).expect("rm");

    // A Dockerfile on stdin as the whole context.
    let out = ok(
        &d,
        "berth build -",
        berth_env(
            &d,
            &["build", "-q", "-"],
            &[],
            Some(b"FROM busybox\nCMD [\"echo\", \"stdin-context\"]\n"),
        ),
    );
    assert_eq!(d.docker_ok(&["run", "--rm", out.trim()]), "stdin-context\n");

    // A failing RUN: its message on stderr, its exit code as berth's.
    fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN exit 3\n").expect("write");
    let out = berth_env(&d, &["build", &c], &[], None);
    assert_eq!(out.status.code(), Some(3), "{}", d.describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("returned a non-zero code: 3"), "{err}");

    // A syntax error: Docker's message with the line number, exit 1.
    fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN true\nFOO bar\n").expect("write");
    let out = berth_env(&d, &["build", &c], &[], None);
    assert_eq!(out.status.code(), Some(1), "{}", d.describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("dockerfile parse error on line 3: unknown instruction: FOO"),
        "{err}"
    );

    // A COPY source climbing out of the context.
    fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nCOPY ../outside.Dockerfile /x\n",
    )
    .expect("write");
    let out = berth_env(&d, &["build", &c], &[], None);
    assert!(!out.status.success(), "{}", d.describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("forbidden path outside the build context"),
        "{err}"
    );

    // A missing context directory.
    let out = berth_env(&d, &["build", "/nonexistent-berth-ctx"], &[], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("unable to prepare context: path \"/nonexistent-berth-ctx\" not found"),
        "{}",
        d.describe(&out)
    );
}

/// Timings (not a pass/fail test): `cargo test -p berth --test build_corpus -- --ignored
/// --nocapture build_timings`. The bench's Dockerfile shape on a 2000-file, 50 MB context:
/// first build, no-change rebuild and late-change rebuild through `berth build` (in place),
/// `berth build` with the tar forced, and `docker build`.
#[test]
#[ignore]
fn build_timings() {
    let d = TestDaemon::start();
    d.import_busybox("busybox:latest");
    let ctx = d.scratch_dir().join("timing");
    fs::create_dir_all(&ctx).expect("mkdir");
    let chunk = vec![b'x'; 25 * 1024];
    for i in 0..2000 {
        let p = ctx.join(format!("data/d{}/f{i}", i % 20));
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        let mut data = chunk.clone();
        data.extend_from_slice(i.to_string().as_bytes());
        fs::write(p, data).expect("write");
    }
    fs::write(ctx.join("late.txt"), "0").expect("write");
    fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN echo one > /one\nRUN echo two > /two\nCOPY data /data\nRUN ls -R /data | wc -l > /count\nCOPY late.txt /late.txt\nCMD [\"cat\", \"/late.txt\"]\n",
    )
    .expect("write");
    let c = ctx.to_string_lossy().into_owned();
    let clients: [(&str, &[(&str, &str)]); 3] = [
        ("berth (in place)", &[]),
        ("berth (tar)", &[("BERTH_BUILD_TAR", "1")]),
        ("docker", &[]),
    ];
    for (i, (label, env)) in clients.iter().enumerate() {
        let run = |extra: &[&str]| {
            let mut args = vec!["build", "-q", "-t", "timing:latest"];
            args.extend_from_slice(extra);
            args.push(&c);
            let t = std::time::Instant::now();
            let out = if *label == "docker" {
                docker_classic(&d, &args, None)
            } else {
                berth_env(&d, &args, env, None)
            };
            let el = t.elapsed();
            ok(&d, label, out);
            el
        };
        let first = run(&["--no-cache"]);
        let mut nochange = Vec::new();
        let mut late = Vec::new();
        for r in 0..5 {
            nochange.push(run(&[]));
            fs::write(ctx.join("late.txt"), format!("{i}-{r}")).expect("write");
            late.push(run(&[]));
        }
        nochange.sort();
        late.sort();
        eprintln!(
            "{label}: first {first:?}, no-change median {:?}, late-change median {:?}",
            nochange[2], late[2]
        );
    }
}
