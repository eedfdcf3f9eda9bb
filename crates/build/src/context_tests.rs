use super::*;
use std::os::unix::fs::{symlink, PermissionsExt};

fn write(root: &Path, rel: &str, data: &str) {
    let p = root.join(rel);
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    std::fs::write(p, data).expect("write");
}

fn paths(ctx: &Context) -> Vec<&str> {
    ctx.entries().iter().map(|e| e.path.as_str()).collect()
}

fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = dir.path();
    write(r, "Dockerfile", "FROM scratch\n");
    write(r, "src/main.go", "package main\n");
    write(r, "src/util/u.go", "package util\n");
    write(r, "README.md", "readme\n");
    write(r, "docs/a.md", "a\n");
    write(r, "docs/keep.md", "keep\n");
    write(r, "a.txt", "A\n");
    write(r, "b.txt", "B\n");
    write(r, "secret.key", "s\n");
    dir
}

#[test]
fn walk_applies_dockerignore() {
    let dir = fixture();
    write(dir.path(), ".dockerignore", "*.key\ndocs\n!docs/keep.md\n");
    let ctx = Context::open(dir.path()).expect("open");
    assert_eq!(
        paths(&ctx),
        vec![
            "",
            ".dockerignore",
            "Dockerfile",
            "README.md",
            "a.txt",
            "b.txt",
            "docs",
            "docs/keep.md",
            "src",
            "src/main.go",
            "src/util",
            "src/util/u.go"
        ]
    );
    assert_eq!(
        ctx.subtree("src")
            .iter()
            .map(|e| e.path.as_str())
            .collect::<Vec<_>>(),
        vec!["src", "src/main.go", "src/util", "src/util/u.go"]
    );
    assert!(matches!(
        ctx.resolve("secret.key"),
        Err(ContextError::NotFound(_))
    ));
    assert!(ctx.resolve("docs/keep.md").is_ok());
    assert!(matches!(
        ctx.resolve("docs/a.md"),
        Err(ContextError::NotFound(_))
    ));
}

#[test]
fn resolve_sources() {
    let dir = fixture();
    let ctx = Context::open(dir.path()).expect("open");
    let m = ctx.resolve("*.txt").expect("glob");
    assert_eq!(
        m.iter().map(|m| m.path.as_str()).collect::<Vec<_>>(),
        vec!["a.txt", "b.txt"]
    );
    let m = ctx.resolve("src/*/u.go").expect("glob");
    assert_eq!(m[0].name, "u.go");
    let m = ctx.resolve("./src/../README.md").expect("clean");
    assert_eq!(
        m,
        vec![Match {
            path: "README.md".into(),
            name: "README.md".into()
        }]
    );
    // Absolute sources are relative to the context, as Docker does.
    assert_eq!(ctx.resolve("/a.txt").expect("abs")[0].path, "a.txt");
    assert_eq!(ctx.resolve(".").expect("dot")[0].path, "");
    for bad in ["../x", "..", "src/../../etc/passwd", "/../../etc"] {
        let e = ctx.resolve(bad).expect_err(bad);
        assert!(matches!(e, ContextError::Forbidden(_)), "{bad}: {e}");
        assert!(e
            .to_string()
            .starts_with("forbidden path outside the build context: "));
    }
    assert!(matches!(
        ctx.resolve("nope.txt"),
        Err(ContextError::NotFound(_))
    ));
    assert_eq!(
        ctx.resolve("nope.txt").expect_err("missing").to_string(),
        "file not found in build context or excluded by .dockerignore: stat nope.txt: file does not exist"
    );
    assert!(matches!(
        ctx.resolve("*.none"),
        Err(ContextError::NoSourceFiles)
    ));
}

#[test]
fn symlinks_never_lead_out() {
    let dir = fixture();
    let outside = tempfile::tempdir().expect("outside");
    write(outside.path(), "host-secret", "do not read\n");
    let r = dir.path();
    symlink(outside.path(), r.join("out-dir")).expect("symlink");
    symlink(outside.path().join("host-secret"), r.join("out-file")).expect("symlink");
    symlink("../../etc/passwd", r.join("rel-out")).expect("symlink");
    symlink("src", r.join("in-dir")).expect("symlink");
    symlink("a.txt", r.join("in-file")).expect("symlink");
    let ctx = Context::open(r).expect("open");
    // The walk lists links, never what they point to.
    assert!(ctx.entry("out-dir").is_some());
    assert!(ctx.entry("out-dir/host-secret").is_none());
    // A link in a parent that leads out is refused.
    assert!(matches!(
        ctx.resolve("out-dir/host-secret"),
        Err(ContextError::Forbidden(_))
    ));
    // A final link that leads out is copied as the link itself.
    assert_eq!(ctx.resolve("out-file").expect("link")[0].path, "out-file");
    assert_eq!(ctx.resolve("rel-out").expect("link")[0].path, "rel-out");
    // Links inside the context are followed.
    assert_eq!(
        ctx.resolve("in-dir/main.go").expect("in")[0].path,
        "src/main.go"
    );
    let m = ctx.resolve("in-file").expect("in");
    assert_eq!(m[0].path, "a.txt");
    assert_eq!(m[0].name, "in-file");
    // Content reads never follow links.
    assert!(matches!(
        ctx.open_file("out-file"),
        Err(ContextError::Forbidden(_))
    ));
    assert!(matches!(
        ctx.open_file("out-dir/host-secret"),
        Err(ContextError::Forbidden(_))
    ));
    assert!(matches!(
        ctx.open_file("../x"),
        Err(ContextError::Forbidden(_))
    ));
    // Digesting a tree with outward links hashes the link targets, not the host files.
    let cache = StatCache::in_memory();
    let all = ctx.resolve(".").expect("all");
    ctx.digest(&all, &Ignore::default(), &cache)
        .expect("digest");
    assert_eq!(
        ctx.read_file("Dockerfile").expect("read"),
        b"FROM scratch\n"
    );
}

#[test]
fn digest_tracks_content_mode_names_not_mtimes() {
    let dir = fixture();
    let r = dir.path();
    let d = |srcs: &[&str]| {
        let ctx = Context::open(r).expect("open");
        let srcs: Vec<String> = srcs.iter().map(|s| s.to_string()).collect();
        let m = ctx.resolve_all(&srcs).expect("resolve");
        ctx.digest(&m, &Ignore::default(), &StatCache::in_memory())
            .expect("digest")
    };
    let base = d(&["src", "a.txt"]);
    assert!(base.starts_with("sha256:"));
    assert_eq!(base, d(&["src", "a.txt"]));
    // mtime only: same digest.
    let f = File::options()
        .write(true)
        .open(r.join("a.txt"))
        .expect("open");
    f.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1000))
        .expect("set mtime");
    drop(f);
    assert_eq!(base, d(&["src", "a.txt"]));
    // Content change.
    write(r, "src/util/u.go", "package util // changed\n");
    let changed = d(&["src", "a.txt"]);
    assert_ne!(base, changed);
    // Mode change.
    std::fs::set_permissions(r.join("a.txt"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    let moded = d(&["src", "a.txt"]);
    assert_ne!(changed, moded);
    // Same content under another name.
    std::fs::rename(r.join("src/main.go"), r.join("src/main2.go")).expect("rename");
    assert_ne!(moded, d(&["src", "a.txt"]));
    // Unrelated files do not matter.
    let before = d(&["src"]);
    write(r, "b.txt", "B changed\n");
    assert_eq!(before, d(&["src"]));
}

#[test]
fn digest_excludes() {
    let dir = fixture();
    let ctx = Context::open(dir.path()).expect("open");
    let m = ctx.resolve("src").expect("src");
    let c = StatCache::in_memory();
    let all = ctx.digest(&m, &Ignore::default(), &c).expect("d");
    let no_util = ctx.digest(&m, &Ignore::parse("util\n"), &c).expect("d");
    assert_ne!(all, no_util);
    write(dir.path(), "src/util/u.go", "changed\n");
    let ctx = Context::open(dir.path()).expect("open");
    let m = ctx.resolve("src").expect("src");
    assert_eq!(
        no_util,
        ctx.digest(&m, &Ignore::parse("util\n"), &c).expect("d")
    );
}

#[test]
fn stat_cache_persists_and_skips_unchanged_files() {
    let dir = tempfile::tempdir().expect("ctx");
    let cache_dir = tempfile::tempdir().expect("cache");
    for i in 0..200 {
        write(
            dir.path(),
            &format!("d{}/f{i}", i % 10),
            &"x".repeat(1000 + i),
        );
    }
    // Files changed within 100 ms of hashing are "racily clean" and not persisted (their
    // ctime cannot be set back): let that window pass.
    std::thread::sleep(std::time::Duration::from_millis(150));
    let ctx = Context::open(dir.path()).expect("open");
    let all = ctx.resolve(".").expect("all");
    let c1 = StatCache::for_context(cache_dir.path(), ctx.root());
    let d1 = ctx.digest(&all, &Ignore::default(), &c1).expect("d1");
    assert_eq!(c1.misses(), 200);
    c1.save().expect("save");
    // A new process (new cache object) hashes nothing.
    let ctx = Context::open(dir.path()).expect("open");
    let c2 = StatCache::for_context(cache_dir.path(), ctx.root());
    let t = std::time::Instant::now();
    let d2 = ctx.digest(&all, &Ignore::default(), &c2).expect("d2");
    eprintln!("warm digest of 200 files: {:?}", t.elapsed());
    assert_eq!(d1, d2);
    assert_eq!(c2.misses(), 0);
    // One changed file: exactly one re-hash, new digest.
    write(dir.path(), "d3/f3", "changed");
    let ctx = Context::open(dir.path()).expect("open");
    let d3 = ctx.digest(&all, &Ignore::default(), &c2).expect("d3");
    assert_ne!(d2, d3);
    assert_eq!(c2.misses(), 1);
}

#[test]
fn digest_ignores_owners() {
    let dir = fixture();
    let r = dir.path();
    let d = || {
        let ctx = Context::open(r).expect("open");
        let m = ctx.resolve("a.txt").expect("a");
        ctx.digest(&m, &Ignore::default(), &StatCache::in_memory())
            .expect("digest")
    };
    let before = d();
    std::os::unix::fs::lchown(r.join("a.txt"), Some(12345), Some(54321)).expect("chown");
    assert_eq!(before, d());
}

/// `cargo test -p berth-build --release -- --ignored --nocapture context_timing`: walk and
/// digest of a 2000-file, 50 MB context, cold and with a warm stat cache.
#[test]
#[ignore]
fn context_timing() {
    let dir = tempfile::tempdir().expect("ctx");
    let cache_dir = tempfile::tempdir().expect("cache");
    let chunk = vec![b'x'; 25 * 1024];
    for i in 0..2000 {
        let p = dir.path().join(format!("d{}/f{i}", i % 40));
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        let mut data = chunk.clone();
        data.extend_from_slice(i.to_string().as_bytes());
        std::fs::write(p, data).expect("write");
    }
    std::thread::sleep(std::time::Duration::from_millis(150));
    for round in 0..3 {
        let t = std::time::Instant::now();
        let ctx = Context::open(dir.path()).expect("open");
        let walked = t.elapsed();
        let cache = StatCache::for_context(cache_dir.path(), ctx.root());
        let loaded = t.elapsed();
        let all = ctx.resolve(".").expect("all");
        ctx.digest(&all, &Ignore::default(), &cache)
            .expect("digest");
        let digested = t.elapsed();
        cache.save().expect("save");
        eprintln!(
            "round {round}: walk {walked:?}, cache load {:?}, digest {:?} ({} hashed), save {:?}",
            loaded - walked,
            digested - loaded,
            cache.misses(),
            t.elapsed() - digested
        );
    }
}
