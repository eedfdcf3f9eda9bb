//! `-u` resolution through the docker CLI: names and ids from the image's /etc/passwd, Docker's
//! errors for unknown users and groups, and images whose /etc/passwd is a hostile symlink.

use super::*;

#[test]
fn user_by_name_and_ids() {
    let d = daemon();
    let out = run_bb_ok(
        &d,
        &["-u", "app"],
        "id -u; id -g; echo $HOME; touch /home/app/ok",
    );
    assert_eq!(out, "1000\n1000\n/home/app\n");
    let out = run_bb_ok(
        &d,
        &["-u", "1234:5678"],
        "id -u; id -g; grep CapEff /proc/self/status",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..2], ["1234", "5678"], "{out}");
    // A non-root user has no effective capabilities (as with Docker).
    assert_eq!(status_field(&out, "CapEff"), "0000000000000000");
    let out = run_bb_ok(&d, &["-u", "nobody"], "id -u");
    assert_eq!(out, "65534\n");
    let out = run_bb_ok(&d, &["-u", "0"], "id -u");
    assert_eq!(out, "0\n");
}

#[test]
fn unknown_user_fails_like_docker() {
    let d = daemon();
    let (o, _) = run_bb(&d, &["-u", "nosuchuser"], "true");
    // The docker CLI maps a failed start to 125 unless the message names a missing file (127)
    // or EACCES/EISDIR (126).
    assert_eq!(o.status.code(), Some(125), "{}", d.describe(&o));
    assert!(
        stderr(&o).contains("unable to find user nosuchuser: no matching entries in passwd file"),
        "{}",
        d.describe(&o)
    );
    let (o, _) = run_bb(&d, &["-u", "app:nosuchgroup"], "true");
    assert_eq!(o.status.code(), Some(125), "{}", d.describe(&o));
    assert!(
        stderr(&o).contains("unable to find group nosuchgroup: no matching entries in group file"),
        "{}",
        d.describe(&o)
    );
}

/// The busybox rootfs with /etc/passwd (and /etc/group) replaced by symlinks to `target`, plus
/// the given extra files.
fn crafted_tar(d: &TestDaemon, target: &str, extra: &[(&str, &str)]) -> PathBuf {
    let src = common::busybox_rootfs_tar();
    let out = d
        .scratch_dir()
        .join(format!("crafted-{}.tar", common::random_hex(6)));
    let mut ar = tar::Archive::new(fs::File::open(&src).expect("open busybox tar"));
    let mut b = tar::Builder::new(fs::File::create(&out).expect("create tar"));
    for e in ar.entries().expect("entries") {
        let mut e = e.expect("entry");
        let path = e.path().expect("path").to_string_lossy().into_owned();
        if path == "etc/passwd" || path == "etc/group" {
            continue;
        }
        let mut h = e.header().clone();
        b.append_data(&mut h, &path, &mut e).expect("append");
    }
    for name in ["etc/passwd", "etc/group"] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        b.append_link(&mut h, name, target).expect("symlink");
    }
    for (name, text) in extra {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(text.len() as u64);
        b.append_data(&mut h, name, text.as_bytes()).expect("file");
    }
    b.finish().expect("finish tar");
    out
}

/// A user that exists in the host's /etc/passwd and not in the busybox image.
fn host_only_user() -> String {
    let passwd = fs::read_to_string("/etc/passwd").expect("host passwd");
    passwd
        .lines()
        .filter_map(|l| l.split(':').next())
        .find(|n| !["root", "nobody", "app", ""].contains(n))
        .expect("a host user besides root")
        .to_string()
}

#[test]
fn passwd_symlinks_never_read_host_files() {
    let d = daemon();
    let host_user = host_only_user();

    // /etc/passwd -> /etc/shadow: resolved inside the image (its own /etc/shadow holds a root
    // line in passwd format), never the host's /etc/shadow or /etc/passwd.
    let tar = crafted_tar(
        &d,
        "/etc/shadow",
        &[("etc/shadow", "root:x:0:0:root:/root:/bin/sh\n")],
    );
    d.docker_ok(&["import", &tar.to_string_lossy(), "evil-abs"]);
    // ../../../../etc/passwd: a loop inside the root (it names itself); no host file either.
    let tar = crafted_tar(&d, "../../../../etc/passwd", &[]);
    d.docker_ok(&["import", &tar.to_string_lossy(), "evil-rel"]);

    for image in ["evil-abs", "evil-rel"] {
        for user in ["0", "0:0", "4321"] {
            let (o, _) = run_image(&d, &["-u", user], image, &["id", "-u"]);
            assert!(o.status.success(), "{image} -u {user}\n{}", d.describe(&o));
            assert_eq!(
                stdout(&o),
                format!("{}\n", user.split(':').next().unwrap_or(""))
            );
        }
        let (o, _) = run_image(&d, &[], image, &["id", "-u"]);
        assert_eq!(
            stdout(&o),
            "0\n",
            "{image} default user\n{}",
            d.describe(&o)
        );
        let (o, _) = run_image(&d, &["-u", &host_user], image, &["id", "-u"]);
        assert_eq!(
            o.status.code(),
            Some(125),
            "{image} -u {host_user}\n{}",
            d.describe(&o)
        );
        assert!(
            stderr(&o).contains(&format!("unable to find user {host_user}")),
            "{}",
            d.describe(&o)
        );
    }
    // In the absolute-symlink image, names come from the image's own file.
    let (o, _) = run_image(&d, &["-u", "root"], "evil-abs", &["id", "-u"]);
    assert_eq!(stdout(&o), "0\n", "{}", d.describe(&o));
    // In the looping image there is no passwd at all: a name cannot be resolved (runc's rule).
    let (o, _) = run_image(&d, &["-u", "root"], "evil-rel", &["id", "-u"]);
    assert_eq!(o.status.code(), Some(125), "{}", d.describe(&o));
}
