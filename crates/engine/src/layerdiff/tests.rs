//! Tests of the layer diff: tar entries, whiteouts, opaque dirs, links, long names, xattrs,
//! the layer written in the same pass against an unpack of the blob, `docker diff` kinds.

use super::*;
use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::time::Instant;

use crate::images::tests::service;

fn mknod_whiteout(p: &Path) {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: valid C string.
    let r = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR, 0) };
    assert_eq!(r, 0, "mknod {p:?}: {}", std::io::Error::last_os_error());
}

fn set_xattr(p: &Path, k: &str, v: &[u8]) {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    let k = CString::new(k).unwrap();
    // SAFETY: valid C strings and buffer.
    let r = unsafe { libc::lsetxattr(c.as_ptr(), k.as_ptr(), v.as_ptr().cast(), v.len(), 0) };
    assert_eq!(r, 0, "setxattr {p:?}: {}", std::io::Error::last_os_error());
}

fn get_xattr(p: &Path, k: &str) -> Option<Vec<u8>> {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    let k = CString::new(k).unwrap();
    let mut buf = [0u8; 64];
    // SAFETY: valid C strings and buffer.
    let n = unsafe { libc::lgetxattr(c.as_ptr(), k.as_ptr(), buf.as_mut_ptr().cast(), 64) };
    (n >= 0).then(|| buf[..n as usize].to_vec())
}

/// Set an entry's mtime (not following links), so that a copy that forgets it differs.
fn set_mtime(p: &Path, secs: i64) {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    let t = libc::timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    // SAFETY: valid C string and times array.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            [t, t].as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(r, 0);
}

const LONG: &str = "a-very-long-directory-name-that-goes-on-and-on-and-on-and-on-and-on";

/// An upper dir with every kind of change.
fn upper_fixture(d: &Path) -> PathBuf {
    let u = d.join("upper");
    fs::create_dir_all(u.join("etc")).unwrap();
    // Runtime mount points only: /etc must not appear.
    fs::write(u.join("etc/hosts"), b"").unwrap();
    fs::write(u.join("etc/resolv.conf"), b"").unwrap();
    fs::create_dir_all(u.join("dev/pts")).unwrap();
    fs::create_dir_all(u.join("proc")).unwrap();
    fs::write(u.join(".dockerenv"), b"").unwrap();
    fs::create_dir_all(u.join("bin")).unwrap();
    fs::write(u.join("bin/tool"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(u.join("bin/tool"), fs::Permissions::from_mode(0o4755)).unwrap();
    set_xattr(&u.join("bin/tool"), "user.note", b"kept");
    fs::hard_link(u.join("bin/tool"), u.join("bin/tool2")).unwrap();
    mknod_whiteout(&u.join("gone"));
    set_mtime(&u.join("gone"), 1_600_000_000);
    fs::create_dir_all(u.join("opq/sub")).unwrap();
    set_xattr(&u.join("opq"), "trusted.overlay.opaque", b"y");
    fs::write(u.join("opq/sub/new"), b"new").unwrap();
    fs::create_dir_all(u.join("empty")).unwrap();
    symlink("/", u.join("root-link")).unwrap();
    symlink("/etc/shadow", u.join("shadow-link")).unwrap();
    fs::create_dir_all(u.join(LONG).join(LONG)).unwrap();
    fs::write(u.join(LONG).join(LONG).join("file"), b"long").unwrap();
    std::os::unix::fs::chown(u.join("empty"), Some(1000), Some(1001)).unwrap();
    u
}

#[derive(Debug, PartialEq, Eq)]
struct TarEntry {
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    data: Vec<u8>,
    link: Option<String>,
}

fn tar_entries(data: &[u8]) -> BTreeMap<String, TarEntry> {
    let mut a = tar::Archive::new(data);
    let mut out = BTreeMap::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let h = e.header().clone();
        let link = e
            .link_name()
            .unwrap()
            .map(|l| l.to_string_lossy().into_owned());
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.insert(
            name,
            TarEntry {
                kind: h.entry_type(),
                mode: h.mode().unwrap(),
                uid: h.uid().unwrap(),
                gid: h.gid().unwrap(),
                data,
                link,
            },
        );
    }
    out
}

#[test]
fn tar_of_upper_has_docker_entries() {
    let d = tempfile::tempdir().unwrap();
    let u = upper_fixture(d.path());
    let mut out = Vec::new();
    let (diff, n) = write_diff(&u, &mut out).unwrap();
    assert_eq!(n as usize, out.len());
    assert_eq!(diff, Digest::of(&out));
    let e = tar_entries(&out);
    let names: Vec<&str> = e.keys().map(String::as_str).collect();
    let long_dir = format!("{LONG}/");
    let long_file = format!("{LONG}/{LONG}/file");
    for want in [
        ".wh.gone",
        "bin/",
        "bin/tool",
        "bin/tool2",
        "empty/",
        "opq/",
        "opq/.wh..wh..opq",
        "opq/sub/",
        "opq/sub/new",
        "root-link",
        "shadow-link",
        &long_dir,
        &long_file,
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    for absent in ["etc/", "etc/hosts", "dev/", "proc/", ".dockerenv"] {
        assert!(!names.contains(&absent), "{absent} in {names:?}");
    }
    assert_eq!(e["bin/tool"].mode, 0o4755);
    assert_eq!(e["bin/tool"].data, b"#!/bin/sh\necho hi\n");
    assert_eq!(e["bin/tool2"].kind, tar::EntryType::Link);
    assert_eq!(e["bin/tool2"].link.as_deref(), Some("bin/tool"));
    assert_eq!(e["root-link"].kind, tar::EntryType::Symlink);
    assert_eq!(e["root-link"].link.as_deref(), Some("/"));
    assert_eq!(e["shadow-link"].data, b"");
    assert_eq!((e["empty/"].uid, e["empty/"].gid), (1000, 1001));
    assert_eq!(e[".wh.gone"].kind, tar::EntryType::Regular);
    assert_eq!(e[&long_file].data, b"long");
    // The xattr travels as a PAX record; overlay's own does not.
    let mut a = tar::Archive::new(&out[..]);
    let mut found = false;
    for ent in a.entries().unwrap() {
        let mut ent = ent.unwrap();
        if let Some(exts) = ent.pax_extensions().unwrap() {
            for x in exts {
                let x = x.unwrap();
                assert!(!x.key().unwrap().contains("overlay"));
                if x.key().unwrap() == "SCHILY.xattr.user.note" {
                    found = x.value_bytes() == b"kept";
                }
            }
        }
    }
    assert!(found, "user.note xattr not archived");
    // Deterministic: the same tree gives the same bytes.
    let mut again = Vec::new();
    assert_eq!(write_diff(&u, &mut again).unwrap().0, diff);
    assert_eq!(again, out);
}

/// Every entry of a tree: (kind, mode, uid, gid, content or link target, opaque xattr).
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    fn rec(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for p in names {
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let what = if m.file_type().is_symlink() {
                format!("link {:?}", fs::read_link(&p).unwrap())
            } else if m.is_dir() {
                format!("dir opq={:?}", get_xattr(&p, "trusted.overlay.opaque"))
            } else if m.is_file() {
                format!(
                    "file {:?} x={:?}",
                    fs::read(&p).unwrap(),
                    get_xattr(&p, "user.note")
                )
            } else {
                format!("other rdev={}", m.rdev())
            };
            let mtime = if m.file_type().is_symlink() {
                0
            } else {
                m.mtime()
            };
            out.insert(
                rel,
                format!(
                    "{what} mode={:o} {}:{} mtime={mtime}",
                    m.mode(),
                    m.uid(),
                    m.gid()
                ),
            );
            if m.is_dir() {
                rec(root, &p, out);
            }
        }
    }
    rec(root, root, &mut out);
    out
}

#[test]
fn commit_writes_blob_and_layer_that_agree() {
    let d = tempfile::tempdir().unwrap();
    let u = upper_fixture(d.path());
    let svc = service(&d.path().join("a"));
    let l = commit_upper(&svc, None, &u).unwrap().unwrap();
    assert_eq!(l.media_type, MEDIA_LAYER_GZIP);
    let blob = l.blob.clone().unwrap();
    let gz = svc.content.read(&blob).unwrap();
    assert_eq!(Digest::of(&gz), blob);
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut plain)
        .unwrap();
    assert_eq!(Digest::of(&plain), l.diff_id);
    assert!(svc.layers.exists(&l.chain_id));
    let info = svc.layers.get(&l.chain_id).unwrap().unwrap();
    assert_eq!(info.size, l.size);
    // bin/tool once (tool2 is a link), opq/sub/new, the long file.
    assert_eq!(l.size, 18 + 3 + 4);
    // The same blob unpacked by the layer store gives the same tree as the direct copy.
    let other = service(&d.path().join("b"));
    let applied = other.layers.apply(None, &mut &gz[..], None).unwrap();
    assert_eq!(applied.diff_id, l.diff_id);
    let direct = tree(&svc.layers.dir(&l.chain_id));
    let unpacked = tree(&other.layers.dir(&applied.chain_id));
    assert_eq!(direct, unpacked);
    assert!(direct["gone"].starts_with("other rdev=0"), "{direct:?}");
    assert!(direct["opq"].contains("Some([121])"), "{direct:?}");
    assert!(!direct.contains_key("etc"));
    // No temp files left in either store.
    for dir in [d.path().join("a/layers"), d.path().join("a/content/sha256")] {
        for e in fs::read_dir(dir).unwrap() {
            let n = e.unwrap().file_name();
            assert!(!n.to_string_lossy().starts_with(".tmp-"), "{n:?}");
        }
    }
    // Again on top of it: chain id of the parent.
    let u2 = d.path().join("upper2");
    fs::create_dir_all(&u2).unwrap();
    fs::write(u2.join("x"), b"x").unwrap();
    let l2 = commit_upper(&svc, Some(&l.chain_id), &u2).unwrap().unwrap();
    assert_eq!(l2.chain_id, chain_id(Some(&l.chain_id), &l2.diff_id));
    let missing = Digest::of(b"nope");
    assert!(matches!(
        commit_upper(&svc, Some(&missing), &u2),
        Err(EngineError::NotFound(_))
    ));
}

#[test]
fn empty_upper_is_no_layer() {
    let d = tempfile::tempdir().unwrap();
    let u = d.path().join("upper");
    fs::create_dir_all(u.join("etc")).unwrap();
    fs::write(u.join("etc/hostname"), b"").unwrap();
    fs::create_dir_all(u.join("sys")).unwrap();
    let svc = service(&d.path().join("s"));
    assert!(commit_upper(&svc, None, &u).unwrap().is_none());
    assert!(!has_changes(&u).unwrap());
    assert!(svc.layers.list().unwrap().is_empty());
}

#[test]
fn changes_follow_overlay_rules() {
    let d = tempfile::tempdir().unwrap();
    let lower = d.path().join("lower");
    fs::create_dir_all(lower.join("etc")).unwrap();
    fs::write(lower.join("etc/passwd"), b"a").unwrap();
    fs::create_dir_all(lower.join("opq/old")).unwrap();
    fs::create_dir_all(lower.join("d")).unwrap();
    fs::write(lower.join("gone"), b"").unwrap();
    symlink("/etc", lower.join("ln")).unwrap();
    let u = d.path().join("upper");
    fs::create_dir_all(u.join("etc")).unwrap();
    fs::write(u.join("etc/passwd"), b"b").unwrap();
    fs::write(u.join("etc/hosts"), b"").unwrap();
    fs::create_dir_all(u.join("opq/sub")).unwrap();
    set_xattr(&u.join("opq"), "trusted.overlay.opaque", b"y");
    // A lower dir replaced by a file.
    fs::write(u.join("d"), b"file now").unwrap();
    mknod_whiteout(&u.join("gone"));
    // Below a lower symlink: added (overlay does not merge through links).
    fs::create_dir_all(u.join("ln")).unwrap();
    fs::write(u.join("ln/x"), b"").unwrap();
    let c = changes(&u, &[lower]).unwrap();
    let want = vec![
        ("/d", ChangeKind::Modified),
        ("/etc", ChangeKind::Modified),
        ("/etc/passwd", ChangeKind::Modified),
        ("/gone", ChangeKind::Deleted),
        ("/ln", ChangeKind::Modified),
        ("/ln/x", ChangeKind::Added),
        ("/opq", ChangeKind::Modified),
        ("/opq/sub", ChangeKind::Added),
    ];
    let got: Vec<(&str, ChangeKind)> = c.iter().map(|(p, k)| (p.as_str(), *k)).collect();
    assert_eq!(got, want);
}

#[test]
fn export_tree_does_not_follow_links() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    let host = d.path().join("host");
    fs::create_dir_all(&root).unwrap();
    fs::create_dir_all(&host).unwrap();
    fs::write(host.join("secret"), b"host secret").unwrap();
    symlink(&host, root.join("esc")).unwrap();
    symlink(host.join("secret"), root.join("f")).unwrap();
    fs::write(root.join("a"), b"a").unwrap();
    let mut out = Vec::new();
    write_tree(&root, &mut out).unwrap();
    let e = tar_entries(&out);
    assert_eq!(e.keys().collect::<Vec<_>>(), ["a", "esc", "f"]);
    assert!(!out.windows(11).any(|w| w == b"host secret"));
}

/// Timing of `commit_upper` (run with `--ignored --nocapture`): a build step's small diff, and
/// a COPY-sized one (2000 files, 50 MB of incompressible data).
#[test]
#[ignore]
fn bench_commit_upper() {
    let d = tempfile::tempdir_in("/var/tmp").unwrap();
    let svc = service(&d.path().join("s"));
    let small = d.path().join("small");
    fs::create_dir_all(small.join("etc")).unwrap();
    fs::write(small.join("etc/hosts"), b"").unwrap();
    fs::create_dir_all(small.join("app")).unwrap();
    for i in 0..3 {
        fs::write(small.join(format!("app/f{i}")), format!("data {i}\n")).unwrap();
    }
    let mut times = Vec::new();
    for i in 0..5 {
        fs::write(small.join("app/iter"), format!("{i}")).unwrap();
        let t = Instant::now();
        commit_upper(&svc, None, &small).unwrap().unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    eprintln!("small diff (5 files): {times:.2?} ms");
    let big = d.path().join("big");
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for i in 0..2000 {
        let dir = big.join(format!("d{}", i % 40));
        fs::create_dir_all(&dir).unwrap();
        let mut data = vec![0u8; 25_000];
        for b in data.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        fs::write(dir.join(format!("f{i}")), &data).unwrap();
    }
    let mut plain = Vec::new();
    let t = Instant::now();
    write_diff(&big, &mut plain).unwrap();
    let tar_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let l = commit_upper(&svc, None, &big).unwrap().unwrap();
    let commit_ms = t.elapsed().as_secs_f64() * 1e3;
    eprintln!(
        "2000 files / 50 MB: tar only {tar_ms:.0} ms, commit_upper {commit_ms:.0} ms (size {})",
        l.size
    );
    for blob in [BlobFormat::Tar, BlobFormat::None] {
        let svc = service(&d.path().join(format!("{blob:?}")));
        let t = Instant::now();
        let l2 = commit_upper_with(&svc, None, &big, &LayerOptions { blob })
            .unwrap()
            .unwrap();
        assert_eq!(l2.diff_id, l.diff_id);
        eprintln!(
            "2000 files / 50 MB, blob {blob:?}: {:.0} ms",
            t.elapsed().as_secs_f64() * 1e3
        );
    }
    let svc = service(&d.path().join("consume"));
    let t = Instant::now();
    let l3 = commit_upper_consume(
        &svc,
        None,
        &big,
        &LayerOptions {
            blob: BlobFormat::Tar,
        },
    )
    .unwrap()
    .unwrap();
    assert_eq!(l3.diff_id, l.diff_id);
    eprintln!(
        "2000 files / 50 MB, consumed upper, blob Tar: {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
}

#[test]
#[ignore]
fn bench_parts() {
    let d = tempfile::tempdir_in("/var/tmp").unwrap();
    let mut data = vec![0u8; 50_000_000];
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    for lvl in [0u32, 1] {
        let t = Instant::now();
        let mut gz = flate2::write::GzEncoder::new(std::io::sink(), flate2::Compression::new(lvl));
        gz.write_all(&data).unwrap();
        gz.finish().unwrap();
        eprintln!(
            "gzip level {lvl}: {:.0} ms",
            t.elapsed().as_secs_f64() * 1e3
        );
    }
    let t = Instant::now();
    let _ = Digest::of(&data);
    eprintln!("sha256: {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
    let t = Instant::now();
    fs::write(d.path().join("f"), &data).unwrap();
    eprintln!("write 50MB: {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
    let t = Instant::now();
    File::open(d.path().join("f")).unwrap().sync_all().unwrap();
    eprintln!("fsync 50MB: {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
    for _ in 0..3 {
        let t = Instant::now();
        fs::write(d.path().join("g"), b"x").unwrap();
        File::open(d.path().join("g")).unwrap().sync_all().unwrap();
        eprintln!("small fsync: {:.2} ms", t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let f = File::open(d.path()).unwrap();
        // SAFETY: valid fd.
        unsafe { libc::syncfs(f.as_raw_fd()) };
        eprintln!("syncfs: {:.2} ms", t.elapsed().as_secs_f64() * 1e3);
    }
}

#[test]
fn blob_formats_and_layer_dir_rediff() {
    let d = tempfile::tempdir().unwrap();
    let u = upper_fixture(d.path());
    let svc = service(&d.path().join("s"));
    let gz = commit_upper(&svc, None, &u).unwrap().unwrap();
    // The layer dir written in the same pass gives the same tar again (what a push of a layer
    // without a blob relies on).
    let mut again = Vec::new();
    let (rediff, _) = write_diff(&svc.layers.dir(&gz.chain_id), &mut again).unwrap();
    assert_eq!(rediff, gz.diff_id);

    let svc2 = service(&d.path().join("t"));
    let tar = commit_upper_with(
        &svc2,
        None,
        &u,
        &LayerOptions {
            blob: BlobFormat::Tar,
        },
    )
    .unwrap()
    .unwrap();
    assert_eq!(tar.diff_id, gz.diff_id);
    assert_eq!(tar.blob.as_ref(), Some(&tar.diff_id));
    assert_eq!(tar.media_type, crate::archive::MEDIA_LAYER_TAR);
    assert_eq!(
        Digest::of(&svc2.content.read(&tar.diff_id).unwrap()),
        tar.diff_id
    );

    let svc3 = service(&d.path().join("n"));
    let none = commit_upper_with(
        &svc3,
        None,
        &u,
        &LayerOptions {
            blob: BlobFormat::None,
        },
    )
    .unwrap()
    .unwrap();
    assert_eq!(none.diff_id, gz.diff_id);
    assert!(none.blob.is_none());
    assert!(svc3.content.list().unwrap().is_empty());
    assert!(svc3.layers.exists(&none.chain_id));
}

#[test]
fn too_deep_trees_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let u = d.path().join("upper");
    let mut p = u.clone();
    for _ in 0..walk::MAX_DEPTH + 2 {
        p.push("d");
    }
    fs::create_dir_all(&p).unwrap();
    let e = write_diff(&u, &mut std::io::sink()).unwrap_err();
    assert!(matches!(e, EngineError::InvalidArgument(_)), "{e}");
    let svc = service(&d.path().join("s"));
    assert!(commit_upper(&svc, None, &u).is_err());
    assert!(svc.layers.list().unwrap().is_empty());
    // Just below the limit works.
    let ok = d.path().join("ok");
    let mut p = ok.clone();
    for _ in 0..walk::MAX_DEPTH {
        p.push("d");
    }
    fs::create_dir_all(&p).unwrap();
    assert!(commit_upper(&svc, None, &ok).unwrap().is_some());
}

#[test]
fn consumed_upper_becomes_the_same_layer() {
    let d = tempfile::tempdir().unwrap();
    let u = upper_fixture(d.path());
    set_xattr(&u.join("bin/tool"), "trusted.overlay.origin", b"x");
    set_xattr(&u.join("bin"), "trusted.overlay.impure", b"y");
    let copy_svc = service(&d.path().join("c"));
    let copied = commit_upper(&copy_svc, None, &u).unwrap().unwrap();
    let svc = service(&d.path().join("m"));
    let moved = commit_upper_consume(&svc, None, &u, &LayerOptions::default())
        .unwrap()
        .unwrap();
    assert!(!u.exists(), "the upper dir was moved");
    assert_eq!(moved.diff_id, copied.diff_id);
    assert_eq!(moved.blob, copied.blob);
    let dir = svc.layers.dir(&moved.chain_id);
    assert_eq!(tree(&dir), tree(&copy_svc.layers.dir(&copied.chain_id)));
    assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o7777, 0o755);
    assert!(!dir.join("etc").exists() && !dir.join("dev").exists());
    assert_eq!(
        get_xattr(&dir.join("bin/tool"), "trusted.overlay.origin"),
        None
    );
    assert_eq!(get_xattr(&dir.join("bin"), "trusted.overlay.impure"), None);
    let (rediff, _) = write_diff(&dir, &mut std::io::sink()).unwrap();
    assert_eq!(rediff, moved.diff_id);
    // No change: nothing consumed.
    let empty = d.path().join("empty");
    fs::create_dir_all(empty.join("proc")).unwrap();
    assert!(
        commit_upper_consume(&svc, None, &empty, &LayerOptions::default())
            .unwrap()
            .is_none()
    );
    assert!(empty.join("proc").is_dir());
}

#[test]
fn mounted_upper_is_copied_not_moved() {
    let d = tempfile::tempdir().unwrap();
    let (lower, upper, work, target) = (
        d.path().join("lower"),
        d.path().join("upper"),
        d.path().join("work"),
        d.path().join("target"),
    );
    for p in [&lower, &upper, &work, &target] {
        fs::create_dir_all(p).unwrap();
    }
    berth_store::overlay::mount(&[lower], &upper, &work, &target).unwrap();
    fs::write(target.join("f"), b"live").unwrap();
    let svc = service(&d.path().join("s"));
    let res = commit_upper_consume(&svc, None, &upper, &LayerOptions::default());
    let still = upper.join("f").is_file();
    berth_store::overlay::unmount(&target).unwrap();
    let l = res.unwrap().unwrap();
    assert!(still, "a mounted upper dir must not be moved");
    assert_eq!(
        fs::read(svc.layers.dir(&l.chain_id).join("f")).unwrap(),
        b"live"
    );
}
