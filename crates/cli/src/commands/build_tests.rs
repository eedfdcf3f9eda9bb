use super::*;
use serde_json::json;

fn write(root: &Path, rel: &str, data: &str) {
    let p = root.join(rel);
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    std::fs::write(p, data).expect("write");
}

fn tar_names(bytes: &[u8]) -> Vec<(String, u64, u64)> {
    let mut a = tar::Archive::new(bytes);
    a.entries()
        .expect("entries")
        .map(|e| {
            let e = e.expect("entry");
            let h = e.header();
            (
                e.path().expect("path").to_string_lossy().into_owned(),
                h.uid().expect("uid"),
                h.gid().expect("gid"),
            )
        })
        .collect()
}

fn tar_file(bytes: &[u8], name: &str) -> Option<String> {
    let mut a = tar::Archive::new(bytes);
    for e in a.entries().expect("entries") {
        let mut e = e.expect("entry");
        if e.path().expect("path").to_string_lossy() == name {
            let mut s = String::new();
            e.read_to_string(&mut s).expect("read");
            return Some(s);
        }
    }
    None
}

#[test]
fn build_args_and_labels() {
    let env = |k: &str| (k == "FROM_ENV").then(|| "env-value".to_string());
    let v = build_args_json(
        &[
            "A=1".into(),
            "B=".into(),
            "FROM_ENV".into(),
            "UNSET".into(),
            "C=x=y".into(),
        ],
        &env,
    );
    assert_eq!(
        v,
        json!({"A": "1", "B": "", "FROM_ENV": "env-value", "UNSET": null, "C": "x=y"})
    );
    assert_eq!(
        labels_json(&["a=b".into(), "flag".into()]),
        json!({"a": "b", "flag": ""})
    );
}

#[test]
fn dockerfile_location() {
    let ctx = tempfile::tempdir().expect("ctx");
    let dir = std::fs::canonicalize(ctx.path()).expect("canon");
    write(&dir, "Dockerfile", "FROM x\n");
    write(&dir, "sub/Other.df", "FROM y\n");
    assert_eq!(
        locate_dockerfile(&dir, None).expect("default"),
        DockerfileLoc::InContext("Dockerfile".into())
    );
    let other = dir.join("sub/Other.df");
    assert_eq!(
        locate_dockerfile(&dir, Some(other.to_str().expect("utf8"))).expect("abs"),
        DockerfileLoc::InContext("sub/Other.df".into())
    );
    let outside = tempfile::tempdir().expect("outside");
    write(outside.path(), "Dockerfile", "FROM z\n");
    let op = outside.path().join("Dockerfile");
    assert!(matches!(
        locate_dockerfile(&dir, Some(op.to_str().expect("utf8"))).expect("outside"),
        DockerfileLoc::Outside(_)
    ));
    assert_eq!(
        locate_dockerfile(&dir, Some("-")).expect("stdin"),
        DockerfileLoc::Stdin
    );
    let e = locate_dockerfile(&dir, Some("/nonexistent/Dockerfile")).expect_err("missing");
    assert_eq!(
        e.to_string(),
        "unable to prepare context: unable to evaluate symlinks in Dockerfile path: lstat /nonexistent/Dockerfile: no such file or directory"
    );
    // Lower-case `dockerfile` is found when `Dockerfile` is missing.
    let ctx2 = tempfile::tempdir().expect("ctx2");
    let dir2 = std::fs::canonicalize(ctx2.path()).expect("canon");
    write(&dir2, "dockerfile", "FROM x\n");
    assert_eq!(
        locate_dockerfile(&dir2, None).expect("lower"),
        DockerfileLoc::InContext("dockerfile".into())
    );
}

#[test]
fn context_tar_keeps_dockerfile_and_dockerignore() {
    let ctx = tempfile::tempdir().expect("ctx");
    let r = ctx.path();
    write(r, "Dockerfile", "FROM x\n");
    write(
        r,
        ".dockerignore",
        "Dockerfile\n.dockerignore\n*.log\nnode_modules\n",
    );
    write(r, "app.js", "js\n");
    write(r, "debug.log", "log\n");
    write(r, "node_modules/m/index.js", "m\n");
    write(r, "lib/a.js", "a\n");
    std::os::unix::fs::symlink("/etc/passwd", r.join("link")).expect("symlink");
    let di = std::fs::read_to_string(r.join(".dockerignore")).expect("read");
    let ignore = context_ignore(Some(&di), Some("Dockerfile"));
    let c = Context::open_with(r, &ignore).expect("open");
    let mut buf = Vec::new();
    let n = write_context_tar(&c, Some(&di), None, &mut buf).expect("tar");
    assert_eq!(n as usize, buf.len());
    let names: Vec<String> = tar_names(&buf).into_iter().map(|(n, _, _)| n).collect();
    assert_eq!(
        names,
        vec![
            ".dockerignore",
            "Dockerfile",
            "app.js",
            "lib/",
            "lib/a.js",
            "link"
        ]
    );
    assert!(tar_names(&buf).iter().all(|(_, u, g)| *u == 0 && *g == 0));
    assert_eq!(tar_file(&buf, "lib/a.js").as_deref(), Some("a\n"));
}

#[test]
fn context_tar_with_outside_dockerfile() {
    let ctx = tempfile::tempdir().expect("ctx");
    let r = ctx.path();
    write(r, "Dockerfile", "FROM in-context\n");
    write(r, "a.txt", "a\n");
    let c = Context::open_with(r, &context_ignore(None, None)).expect("open");
    let mut buf = Vec::new();
    let name = ".dockerfile.0123456789abcdef0123";
    write_context_tar(&c, None, Some((name, b"FROM stdin\n")), &mut buf).expect("tar");
    assert_eq!(tar_file(&buf, name).as_deref(), Some("FROM stdin\n"));
    assert_eq!(
        tar_file(&buf, ".dockerignore").as_deref(),
        Some(format!(".dockerignore\n{name}\n").as_str())
    );
    // An existing .dockerignore gets the name appended.
    write(r, ".dockerignore", "*.tmp");
    let c = Context::open_with(r, &context_ignore(Some("*.tmp"), None)).expect("open");
    let mut buf = Vec::new();
    write_context_tar(&c, Some("*.tmp"), Some((name, b"FROM stdin\n")), &mut buf).expect("tar");
    assert_eq!(
        tar_file(&buf, ".dockerignore").as_deref(),
        Some(format!("*.tmp\n{name}\n").as_str())
    );
    let dockerignores = tar_names(&buf)
        .iter()
        .filter(|(n, _, _)| n == ".dockerignore")
        .count();
    assert_eq!(dockerignores, 1);
}

#[test]
fn archive_detection() {
    let mut tar = Vec::new();
    {
        let mut tb = tar::Builder::new(&mut tar);
        let mut h = tar::Header::new_ustar();
        h.set_size(1);
        tb.append_data(&mut h, "x", &b"x"[..]).expect("append");
        tb.finish().expect("finish");
    }
    assert!(is_archive(&tar));
    assert!(is_archive(&[0x1f, 0x8b, 8, 0]));
    assert!(!is_archive(b"FROM busybox\nRUN true\n"));
}

#[test]
fn renderer() {
    let mut r = Renderer::new(true);
    r.message(&json!({"stream": "Step 1/2 : FROM busybox\n"}))
        .expect("m");
    r.message(&json!({"status": "Pulling", "id": "busybox"}))
        .expect("m");
    r.message(&json!({"status": "Downloading", "progressDetail": {"current": 1}}))
        .expect("m");
    r.message(&json!({"aux": {"ID": "sha256:abc"}})).expect("m");
    assert_eq!(r.buffered, "Step 1/2 : FROM busybox\nbusybox: Pulling\n");
    assert_eq!(r.image_id.as_deref(), Some("sha256:abc"));
    r.message(&json!({"errorDetail": {"code": 3, "message": "The command '/bin/sh -c exit 3' returned a non-zero code: 3"}, "error": "x"}))
        .expect("m");
    assert_eq!(
        r.failure,
        Some((
            "The command '/bin/sh -c exit 3' returned a non-zero code: 3".to_string(),
            3
        ))
    );
    let mut r = Renderer::new(true);
    r.message(&json!({"error": "boom"})).expect("m");
    assert_eq!(r.failure, Some(("boom".to_string(), 1)));
}

#[test]
fn flags_parse_like_docker() {
    use clap::Parser;
    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: BuildArgs,
    }
    let t = T::try_parse_from(["b", "--rm", "-t", "a:1", "-t", "b", "."]).expect("parse");
    assert!(t.a.rm);
    assert_eq!(t.a.tags, vec!["a:1", "b"]);
    assert_eq!(t.a.context, ".");
    let t = T::try_parse_from(["b", "--rm=false", "--no-cache", "-q", "ctx"]).expect("parse");
    assert!(!t.a.rm && t.a.no_cache && t.a.quiet);
    let t = T::try_parse_from(["b", "-f", "-", "--build-context", "x=/y", "ctx"]).expect("parse");
    assert_eq!(t.a.file.as_deref(), Some("-"));
    assert_eq!(t.a.build_contexts, vec!["x=/y"]);
}
