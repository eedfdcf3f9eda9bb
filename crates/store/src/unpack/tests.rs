//! Hostile and normal archives, built header by header (tar's Builder refuses `..` and absolute
//! names, which is exactly what these tests need).

use super::*;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::PathBuf;
use tar::{EntryType, Header};

struct Tar(tar::Builder<Vec<u8>>);

impl Tar {
    fn new() -> Tar {
        Tar(tar::Builder::new(Vec::new()))
    }
    fn raw(
        &mut self,
        path: &str,
        kind: EntryType,
        data: &[u8],
        link: &str,
        mode: u32,
        uid: u64,
    ) -> &mut Tar {
        let mut h = Header::new_gnu();
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(uid);
        h.set_mtime(1_000_000);
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }
    fn file(&mut self, path: &str, data: &[u8]) -> &mut Tar {
        self.raw(path, EntryType::Regular, data, "", 0o644, 0)
    }
    fn dir(&mut self, path: &str) -> &mut Tar {
        self.raw(path, EntryType::Directory, b"", "", 0o755, 0)
    }
    fn symlink(&mut self, path: &str, to: &str) -> &mut Tar {
        self.raw(path, EntryType::Symlink, b"", to, 0o777, 0)
    }
    fn hardlink(&mut self, path: &str, to: &str) -> &mut Tar {
        self.raw(path, EntryType::Link, b"", to, 0o644, 0)
    }
    /// A PAX extended header applying to the next entry.
    fn pax(&mut self, key: &str, value: &str) -> &mut Tar {
        let body = format!(" {key}={value}\n");
        let mut len = body.len() + 1;
        while format!("{len}{body}").len() != len {
            len += 1;
        }
        let rec = format!("{len}{body}");
        self.raw("pax", EntryType::XHeader, rec.as_bytes(), "", 0o644, 0)
    }
    fn bytes(&mut self) -> Vec<u8> {
        std::mem::replace(&mut self.0, tar::Builder::new(Vec::new()))
            .into_inner()
            .unwrap()
    }
}

/// A target dir plus a sentinel dir next to it that must stay empty.
struct Env {
    _tmp: tempfile::TempDir,
    target: PathBuf,
    sentinel: PathBuf,
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("target");
        let sentinel = tmp.path().join("sentinel");
        fs::create_dir(&target).unwrap();
        fs::create_dir(&sentinel).unwrap();
        Env {
            _tmp: tmp,
            target,
            sentinel,
        }
    }
    fn unpack(&self, t: &mut Tar) -> Result<UnpackStats> {
        unpack_layer(&mut &t.bytes()[..], &self.target)
    }
    fn assert_sentinel_empty(&self) {
        let n: Vec<_> = fs::read_dir(&self.sentinel).unwrap().collect();
        assert!(
            n.is_empty(),
            "something was written outside the target: {n:?}"
        );
        let parent: Vec<_> = fs::read_dir(self.target.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        let mut parent = parent;
        parent.sort();
        assert_eq!(parent, vec!["sentinel", "target"]);
    }
    fn s(&self) -> &str {
        self.sentinel.to_str().unwrap()
    }
}

fn assert_unsafe(r: Result<UnpackStats>) {
    match r {
        Err(StoreError::UnsafeEntry { .. }) => {}
        other => panic!("expected UnsafeEntry, got {other:?}"),
    }
}

#[test]
fn absolute_path_is_contained() {
    let e = Env::new();
    let p = format!("{}/abs", e.s());
    e.unpack(Tar::new().file(&p, b"x")).unwrap();
    e.assert_sentinel_empty();
    let inside = e.target.join(p.trim_start_matches('/'));
    assert_eq!(fs::read(inside).unwrap(), b"x");
}

#[test]
fn dotdot_is_rejected() {
    for p in [
        "../sentinel/x",
        "a/../../sentinel/x",
        "./../sentinel/x",
        "a/b/../../../sentinel/x",
    ] {
        let e = Env::new();
        assert_unsafe(e.unpack(Tar::new().dir("a/").file(p, b"x")));
        e.assert_sentinel_empty();
    }
}

#[test]
fn dotdot_inside_is_fine() {
    let e = Env::new();
    e.unpack(Tar::new().file("a/../b", b"x")).unwrap();
    assert_eq!(fs::read(e.target.join("b")).unwrap(), b"x");
}

#[test]
fn file_through_symlink_is_rejected() {
    // absolute symlink to the sentinel, to `/`, and a relative one to `..`
    let e = Env::new();
    let s = e.s().to_string();
    assert_unsafe(e.unpack(Tar::new().symlink("a", &s).file("a/x", b"x")));
    e.assert_sentinel_empty();

    let e = Env::new();
    let rel = format!("root{}/x", e.s());
    assert_unsafe(e.unpack(Tar::new().symlink("root", "/").file(&rel, b"x")));
    e.assert_sentinel_empty();

    let e = Env::new();
    assert_unsafe(e.unpack(Tar::new().symlink("up", "..").file("up/sentinel/x", b"x")));
    e.assert_sentinel_empty();

    // Directory entries and whiteouts through a symlink too.
    let e = Env::new();
    let s = e.s().to_string();
    assert_unsafe(e.unpack(Tar::new().symlink("a", &s).dir("a/d/")));
    let e2 = Env::new();
    let s2 = e2.s().to_string();
    assert_unsafe(e2.unpack(Tar::new().symlink("a", &s2).file("a/.wh.x", b"")));
    e.assert_sentinel_empty();
    e2.assert_sentinel_empty();
}

#[test]
fn etc_passwd_through_symlink_is_not_written() {
    let before = fs::metadata("/etc/passwd").unwrap();
    let e = Env::new();
    assert_unsafe(e.unpack(Tar::new().symlink("a", "/etc").file("a/passwd", b"hacked")));
    let after = fs::metadata("/etc/passwd").unwrap();
    assert_eq!(before.mtime(), after.mtime());
    assert_eq!(before.len(), after.len());
}

#[test]
fn hostile_hardlinks() {
    let nlink = fs::metadata("/etc/passwd").unwrap().nlink();
    // Absolute: resolved inside the target, where it does not exist.
    let e = Env::new();
    assert!(e.unpack(Tar::new().hardlink("h", "/etc/passwd")).is_err());
    assert_eq!(fs::metadata("/etc/passwd").unwrap().nlink(), nlink);
    assert!(!e.target.join("h").exists());

    // Climbing out.
    let e = Env::new();
    fs::write(e.target.parent().unwrap().join("outside"), b"secret").unwrap();
    assert_unsafe(e.unpack(Tar::new().hardlink("h", "../outside")));
    assert_eq!(
        fs::metadata(e.target.parent().unwrap().join("outside"))
            .unwrap()
            .nlink(),
        1
    );
    fs::remove_file(e.target.parent().unwrap().join("outside")).unwrap();
    e.assert_sentinel_empty();

    // Through a symlink.
    let e = Env::new();
    let out = tempfile::tempdir().unwrap();
    fs::write(out.path().join("secret"), b"secret").unwrap();
    let l = out.path().to_str().unwrap().to_string();
    assert_unsafe(e.unpack(Tar::new().symlink("l", &l).hardlink("h", "l/secret")));
    assert_eq!(fs::metadata(out.path().join("secret")).unwrap().nlink(), 1);
    assert!(!e.target.join("h").exists());
}

#[test]
fn hostile_whiteouts() {
    for p in [
        "../.wh.sentinel",
        "../sentinel/.wh.x",
        ".wh..",
        ".wh...",
        "a/.wh..",
    ] {
        let e = Env::new();
        assert_unsafe(e.unpack(Tar::new().dir("a/").file(p, b"")));
        e.assert_sentinel_empty();
        assert!(e.sentinel.is_dir());
    }
}

#[test]
fn device_nodes_are_skipped() {
    let e = Env::new();
    let st = e
        .unpack(
            Tar::new()
                .raw("dev/null", EntryType::Char, b"", "", 0o666, 0)
                .raw("dev/sda", EntryType::Block, b"", "", 0o660, 0)
                .raw("fifo", EntryType::Fifo, b"", "", 0o644, 0)
                .file("ok", b"1"),
        )
        .unwrap();
    assert_eq!(st.skipped, 3);
    assert_eq!(st.entries, 4);
    assert!(!e.target.join("dev/null").exists());
    assert!(!e.target.join("fifo").exists());
    assert!(e.target.join("ok").exists());
}

#[test]
fn normal_layer_with_whiteouts_and_metadata() {
    let e = Env::new();
    let mut t = Tar::new();
    t.dir("./")
        .dir("bin/")
        .raw("bin/su", EntryType::Regular, b"suid", "", 0o4755, 0)
        .raw("home/user/f", EntryType::Regular, b"mine", "", 0o600, 1234)
        .symlink("bin/sh", "/bin/busybox")
        .hardlink("bin/su2", "bin/su")
        .file(".wh.gone", b"")
        .dir("opaque/")
        .file("opaque/.wh..wh..opq", b"")
        .file("opaque/kept", b"k")
        .file(".wh..wh.plnk", b"")
        // replacements: file → file, file → dir, dir → file, dir → dir
        .file("r1", b"old")
        .file("r1", b"new")
        .file("r2", b"old")
        .dir("r2/")
        .dir("r3/")
        .file("r3/inner", b"x")
        .file("r3", b"now a file")
        .dir("r4/")
        .file("r4/keep", b"x")
        .raw("r4/", EntryType::Directory, b"", "", 0o700, 0)
        .pax("SCHILY.xattr.user.berth", "yes")
        .file("withxattr", b"x")
        .pax("SCHILY.xattr.trusted.overlay.redirect", "/elsewhere")
        .dir("redir/");
    let st = e.unpack(&mut t).unwrap();
    let tg = &e.target;

    let su = fs::metadata(tg.join("bin/su")).unwrap();
    assert_eq!(su.permissions().mode() & 0o7777, 0o4755);
    assert_eq!(su.nlink(), 2);
    assert_eq!(su.mtime(), 1_000_000);
    let f = fs::metadata(tg.join("home/user/f")).unwrap();
    assert_eq!(
        (f.uid(), f.gid(), f.permissions().mode() & 0o777),
        (1234, 1234, 0o600)
    );
    // A parent created implicitly gets 0755.
    assert_eq!(
        fs::metadata(tg.join("home")).unwrap().permissions().mode() & 0o7777,
        0o755
    );
    let sh = fs::symlink_metadata(tg.join("bin/sh")).unwrap();
    assert!(sh.file_type().is_symlink());
    assert_eq!(sh.mtime(), 1_000_000);
    assert_eq!(
        fs::read_link(tg.join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    assert_eq!(fs::metadata(tg.join("bin")).unwrap().mtime(), 1_000_000);

    let wh = fs::symlink_metadata(tg.join("gone")).unwrap();
    assert!(wh.file_type().is_char_device());
    assert_eq!(wh.rdev(), 0);
    assert!(!tg.join(".wh.gone").exists());
    assert!(!tg.join(".wh..wh.plnk").exists());
    let opq = xattr(&tg.join("opaque"), "trusted.overlay.opaque");
    assert_eq!(opq.as_deref(), Some(&b"y"[..]));
    assert!(!tg.join("opaque/.wh..wh..opq").exists());
    assert!(tg.join("opaque/kept").exists());

    assert_eq!(fs::read(tg.join("r1")).unwrap(), b"new");
    assert!(tg.join("r2").is_dir());
    assert_eq!(fs::read(tg.join("r3")).unwrap(), b"now a file");
    assert!(tg.join("r4/keep").exists());
    assert_eq!(
        fs::metadata(tg.join("r4")).unwrap().permissions().mode() & 0o7777,
        0o700
    );

    assert_eq!(
        xattr(&tg.join("withxattr"), "user.berth").as_deref(),
        Some(&b"yes"[..])
    );
    assert_eq!(xattr(&tg.join("redir"), "trusted.overlay.redirect"), None);

    assert_eq!(st.skipped, 0);
    assert_eq!(st.size, 4 + 4 + 1 + 3 + 3 + 3 + 1 + 10 + 1 + 1);
    e.assert_sentinel_empty();
}

#[test]
fn long_names_and_garbage() {
    let e = Env::new();
    let long = format!("{}/file", "d".repeat(150));
    let mut b = tar::Builder::new(Vec::new());
    let mut h = Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    h.set_entry_type(EntryType::Regular);
    b.append_data(&mut h, &long, &b"z"[..]).unwrap();
    let data = b.into_inner().unwrap();
    unpack_layer(&mut &data[..], &e.target).unwrap();
    assert_eq!(fs::read(e.target.join(&long)).unwrap(), b"z");

    let garbage = vec![0x55u8; 1024];
    assert!(unpack_layer(&mut &garbage[..], &e.target).is_err());
}

fn xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let cp = CString::new(p.as_os_str().as_bytes()).unwrap();
    let cn = CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid C strings and buffer.
    let n =
        unsafe { libc::lgetxattr(cp.as_ptr(), cn.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return None;
    }
    buf.truncate(n as usize);
    Some(buf)
}

/// The cached parent directory is dropped when an entry replaces it or an ancestor: a directory
/// replaced by a symlink to the outside is never written through.
#[test]
fn replaced_parent_is_not_reused() {
    for link_at in ["a", "a/b"] {
        let e = Env::new();
        let s = e.s().to_string();
        let mut t = Tar::new();
        t.dir("a/")
            .dir("a/b/")
            .file("a/b/x", b"x")
            .file("a/b/y", b"y");
        t.symlink(link_at, &s).file("a/b/z", b"z");
        assert_unsafe(e.unpack(&mut t));
        e.assert_sentinel_empty();
        // The symlink replaced the directory (and what was in it), nothing else.
        assert!(fs::symlink_metadata(e.target.join(link_at))
            .unwrap()
            .file_type()
            .is_symlink());
    }
    // Many files in one directory, then the same directory again after another one.
    let e = Env::new();
    let mut t = Tar::new();
    for d in ["d0", "d1", "d0"] {
        for i in 0..3 {
            t.file(&format!("{d}/f{i}"), d.as_bytes());
        }
    }
    e.unpack(&mut t).unwrap();
    assert_eq!(fs::read(e.target.join("d0/f2")).unwrap(), b"d0");
    assert_eq!(fs::read(e.target.join("d1/f0")).unwrap(), b"d1");
}

use std::os::fd::AsFd;

fn unpack_cp(e: &Env, t: &mut Tar, opts: UnpackOptions) -> Result<UnpackStats> {
    let dir = fs::File::open(&e.target).unwrap();
    unpack_into(&mut &t.bytes()[..], dir.as_fd(), opts)
}

/// `docker cp`'s options: owners reset, whiteouts refused, dir/non-dir replacement refused.
#[test]
fn copy_options() {
    let cp = UnpackOptions {
        reset_owner: true,
        refuse_whiteouts: true,
        no_overwrite_dir_non_dir: false,
        xattrs: false,
    };
    let e = Env::new();
    let mut t = Tar::new();
    t.raw("owned", EntryType::Regular, b"o", "", 0o640, 1234);
    unpack_cp(&e, &mut t, cp).unwrap();
    let m = fs::metadata(e.target.join("owned")).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o777), (0, 0, 0o640));
    let e2 = Env::new();
    unpack_cp(
        &e2,
        Tar::new().raw("owned", EntryType::Regular, b"o", "", 0o640, 1234),
        UnpackOptions {
            reset_owner: false,
            ..cp
        },
    )
    .unwrap();
    assert_eq!(fs::metadata(e2.target.join("owned")).unwrap().uid(), 1234);

    fs::write(e.target.join("keep"), b"k").unwrap();
    assert_unsafe(unpack_cp(&e, Tar::new().file(".wh.keep", b""), cp));
    assert_eq!(fs::read(e.target.join("keep")).unwrap(), b"k");

    fs::create_dir(e.target.join("dir")).unwrap();
    let strict = UnpackOptions {
        no_overwrite_dir_non_dir: true,
        ..cp
    };
    for (t, what) in [
        (Tar::new().file("dir", b"f").bytes(), "dir"),
        (Tar::new().dir("keep/").bytes(), "keep"),
    ] {
        let dir = fs::File::open(&e.target).unwrap();
        match unpack_into(&mut &t[..], dir.as_fd(), strict) {
            Err(StoreError::InvalidArchive(m)) => assert!(m.contains("cannot overwrite"), "{m}"),
            other => panic!("{what}: expected InvalidArchive, got {other:?}"),
        }
    }
    assert!(e.target.join("dir").is_dir());
    assert_eq!(fs::read(e.target.join("keep")).unwrap(), b"k");
    // Without the option the same replacement is done.
    unpack_cp(&e, Tar::new().file("dir", b"f"), cp).unwrap();
    assert_eq!(fs::read(e.target.join("dir")).unwrap(), b"f");
}

/// Reads `data`; once `at` bytes were read, runs `f` once (a concurrent change mid-unpack).
struct Midway<'a, F: FnMut()> {
    data: &'a [u8],
    pos: usize,
    at: usize,
    f: Option<F>,
}

impl<F: FnMut()> Read for Midway<'_, F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.at {
            if let Some(mut f) = self.f.take() {
                f();
            }
        }
        let end = if self.pos < self.at {
            self.at
        } else {
            self.data.len()
        };
        let n = buf.len().min(end - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The directory being filled is swapped for a symlink to the outside between two entries (as a
/// container's process may do during `docker cp`): nothing lands outside the target.
#[test]
fn parent_swapped_for_symlink_mid_unpack() {
    let e = Env::new();
    let data = Tar::new()
        .dir("a/")
        .file("a/x", &[b'x'; 600])
        .file("a/y", b"y")
        .bytes();
    // After the headers of `a/` and `a/x` and x's data: between `a/x` and `a/y`.
    let at = 512 * 2 + 1024;
    let (t, s) = (e.target.clone(), e.sentinel.clone());
    let mut r = Midway {
        data: &data,
        pos: 0,
        at,
        f: Some(move || {
            fs::rename(t.join("a"), t.join("moved")).unwrap();
            std::os::unix::fs::symlink(&s, t.join("a")).unwrap();
        }),
    };
    let res = unpack_layer(&mut r, &e.target);
    assert!(r.f.is_none(), "the swap did not run");
    e.assert_sentinel_empty();
    // Either refused, or written into the (moved) directory it had open, inside the target.
    if res.is_ok() {
        assert_eq!(fs::read(e.target.join("moved/y")).unwrap(), b"y");
    }
    assert_eq!(fs::read(e.target.join("moved/x")).unwrap().len(), 600);
}
