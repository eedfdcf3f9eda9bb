//! Helpers shared by the image test files (`images.rs`, `image_safety.rs`).
#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::TestDaemon;

pub fn sha256_hex(data: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum");
    let mut stdin = child.stdin.take().expect("stdin");
    let data = data.to_vec();
    let w = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().expect("sha256sum output");
    w.join().expect("writer").expect("write to sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("digest")
        .to_string()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let out = crate::common::run_with_timeout(
        {
            let mut c = Command::new("gzip");
            c.arg("-c");
            c
        },
        Some(data),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "gzip failed");
    out.stdout
}

pub fn inspect(d: &TestDaemon, name: &str) -> Value {
    let out = d.docker_ok(&["image", "inspect", name]);
    let v: Value = serde_json::from_str(&out).expect("inspect JSON");
    v[0].clone()
}

/// `docker images -aq --no-trunc`, sorted.
pub fn image_ids(d: &TestDaemon) -> Vec<String> {
    let mut v: Vec<String> = d
        .docker_ok(&["images", "-aq", "--no-trunc"])
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v.dedup();
    v
}

/// A tar entry with raw (unchecked) names, as a hostile archive would have.
pub enum Ent {
    File(String, Vec<u8>),
    Dir(String),
    Symlink(String, String),
    Hardlink(String, String),
    CharDev(String, u32, u32),
    /// A regular file whose real name is in a PAX extended header.
    PaxFile(String, Vec<u8>),
}

pub fn file(n: &str, d: &[u8]) -> Ent {
    Ent::File(n.to_string(), d.to_vec())
}
pub fn symlink(n: &str, t: &str) -> Ent {
    Ent::Symlink(n.to_string(), t.to_string())
}
pub fn hardlink(n: &str, t: &str) -> Ent {
    Ent::Hardlink(n.to_string(), t.to_string())
}

pub fn raw_tar(entries: &[Ent]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        if let Ent::PaxFile(name, data) = e {
            // "<len> path=<name>\n", where <len> counts itself.
            let body = format!(" path={name}\n");
            let mut n = body.len() + 1;
            while (n.to_string().len() + body.len()) != n {
                n += 1;
            }
            let rec = format!("{n}{body}");
            let mut x = tar::Header::new_ustar();
            x.set_path("PaxHeaders/x").expect("path");
            x.set_entry_type(tar::EntryType::XHeader);
            x.set_size(rec.len() as u64);
            x.set_mode(0o644);
            x.set_cksum();
            b.append(&x, rec.as_bytes()).expect("pax");
            let mut h = tar::Header::new_ustar();
            h.set_path("innocent").expect("path");
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append(&h, &data[..]).expect("append");
            continue;
        }
        let mut h = tar::Header::new_old();
        let (name, link, ty, data): (&str, Option<&str>, tar::EntryType, &[u8]) = match e {
            Ent::File(n, d) => (n, None, tar::EntryType::Regular, d),
            Ent::Dir(n) => (n, None, tar::EntryType::Directory, &[]),
            Ent::Symlink(n, t) => (n, Some(t), tar::EntryType::Symlink, &[]),
            Ent::Hardlink(n, t) => (n, Some(t), tar::EntryType::Link, &[]),
            Ent::CharDev(n, _, _) => (n, None, tar::EntryType::Char, &[]),
            Ent::PaxFile(..) => unreachable!("handled above"),
        };
        {
            let old = h.as_old_mut();
            assert!(name.len() < 100, "name too long for a v7 header");
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(l) = link {
                old.linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
        }
        h.set_entry_type(ty);
        // Links carry an owner and mode: an unpacker that chowns/chmods through them would
        // change their (host) target.
        let link_entry = matches!(e, Ent::Symlink(..) | Ent::Hardlink(..));
        h.set_mode(match e {
            Ent::Dir(_) => 0o755,
            _ if link_entry => 0o777,
            _ => 0o644,
        });
        if link_entry {
            h.set_uid(4242);
            h.set_gid(4242);
        }
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        if let Ent::CharDev(_, maj, min) = e {
            let _ = h.set_device_major(*maj);
            let _ = h.set_device_minor(*min);
        }
        h.set_cksum();
        b.append(&h, data).expect("append");
    }
    b.into_inner().expect("tar")
}

/// A docker-archive (what `docker save` writes) with one image of the given layer tars.
pub fn docker_archive(layers: &[Vec<u8>], tag: &str) -> Vec<u8> {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| format!("sha256:{}", sha256_hex(l)))
        .collect();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    .to_string();
    let chex = sha256_hex(config.as_bytes());
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, path, data).expect("append");
    };
    add(&format!("{chex}.json"), config.as_bytes());
    let mut names = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let p = format!("layer{i}/layer.tar");
        add(&p, l);
        names.push(p);
    }
    let manifest = serde_json::json!([{
        "Config": format!("{chex}.json"), "RepoTags": [tag], "Layers": names,
    }])
    .to_string();
    add("manifest.json", manifest.as_bytes());
    b.into_inner().expect("tar")
}

/// Every path at or below `root` whose name starts with `.tmp-`.
pub fn temp_leftovers(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(".tmp-") {
                out.push(e.path());
            }
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(e.path());
            }
        }
    }
    out
}

pub fn all_temp_leftovers(d: &TestDaemon) -> Vec<PathBuf> {
    ["content", "layers", "tmp"]
        .iter()
        .flat_map(|s| temp_leftovers(&d.data_root().join(s)))
        .collect()
}

pub fn poll(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn stderr_of(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
