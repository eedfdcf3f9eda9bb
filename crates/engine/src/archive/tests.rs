//! Tests of import, load and save.
use super::*;
use crate::images::tests::{layer_tar, service};
use crate::EngineError;

/// A busybox rootfs: /bin/busybox, /bin/sh -> busybox, /etc/hostname.
fn busybox_rootfs() -> Vec<u8> {
    let bb = std::fs::read("/bin/busybox").unwrap();
    let mut b = tar::Builder::new(Vec::new());
    for d in ["bin/", "etc/"] {
        let mut h = tar::Header::new_gnu();
        h.set_path(d).unwrap();
        h.set_mode(0o755);
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        h.set_cksum();
        b.append(&h, std::io::empty()).unwrap();
    }
    let mut h = tar::Header::new_gnu();
    h.set_path("bin/busybox").unwrap();
    h.set_mode(0o755);
    h.set_size(bb.len() as u64);
    h.set_cksum();
    b.append(&h, &bb[..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    b.append_link(&mut h, "bin/sh", "busybox").unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_path("etc/hostname").unwrap();
    h.set_mode(0o644);
    h.set_size(3);
    h.set_cksum();
    b.append(&h, &b"bb\n"[..]).unwrap();
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A tar archive from (path, data) files.
fn archive(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (p, d) in files {
        let mut h = tar::Header::new_gnu();
        h.set_path(p).unwrap();
        h.set_mode(0o644);
        h.set_size(d.len() as u64);
        h.set_cksum();
        b.append(&h, *d).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn changes() {
    let mut cfg = serde_json::Map::new();
    apply_changes(
        &mut cfg,
        &[
            "CMD [\"/bin/sh\", \"-c\", \"echo hi\"]".into(),
            "ENTRYPOINT tini --".into(),
            "ENV A=1 B=\"two words\"".into(),
            "ENV C three four".into(),
            "ENV A=2".into(),
            "LABEL a=b \"c d\"=e".into(),
            "EXPOSE 80 53/udp".into(),
            "VOLUME [\"/data\"]\nWORKDIR /w\nUSER nobody\nSTOPSIGNAL SIGINT".into(),
        ],
    )
    .unwrap();
    let v = Value::Object(cfg);
    assert_eq!(v["Cmd"], json!(["/bin/sh", "-c", "echo hi"]));
    assert_eq!(v["Entrypoint"], json!(["/bin/sh", "-c", "tini --"]));
    assert_eq!(v["Env"], json!(["B=two words", "C=three four", "A=2"]));
    assert_eq!(v["Labels"], json!({"a": "b", "c d": "e"}));
    assert_eq!(v["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
    assert_eq!(v["Volumes"], json!({"/data": {}}));
    assert_eq!(v["WorkingDir"], "/w");
    assert_eq!(v["User"], "nobody");
    assert_eq!(v["StopSignal"], "SIGINT");
    let mut cfg = serde_json::Map::new();
    assert!(matches!(
        apply_changes(&mut cfg, &["RUN rm -rf /".into()]),
        Err(EngineError::InvalidArgument(_))
    ));
}

#[test]
fn paths() {
    assert_eq!(clean_path("./a//b/./c").unwrap(), "a/b/c");
    assert!(clean_path("../etc/passwd").is_err());
    assert!(clean_path("a/../../b").is_err());
    assert!(clean_path("/etc/passwd").is_err());
    assert!(clean_path(".").is_err());
    assert_eq!(join_link("a/b/link", "../c").unwrap(), "a/c");
    assert!(join_link("a/link", "../../etc").is_err());
    assert!(join_link("a/link", "/etc/passwd").is_err());
}

#[test]
fn import_save_load_round_trip() {
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let s1 = service(d1.path());
    let rootfs = busybox_rootfs();
    let opts = ImportOptions {
        reference: Some("busybox:test".into()),
        changes: vec!["CMD [\"sh\"]".into(), "LABEL x=y".into()],
        message: None,
        platform: None,
    };
    let id = import(&s1, &mut &gzip(&rootfs)[..], &opts).unwrap();
    let rec = s1.resolve("busybox:test").unwrap();
    assert_eq!(rec.id, id);
    assert_eq!(rec.layers.len(), 1);
    assert_eq!(rec.layers[0].diff_id, Digest::of(&rootfs));
    assert_eq!(rec.layers[0].blob.as_ref(), Some(&Digest::of(&rootfs)));
    let dir = s1.layers.dir(&rec.layers[0].chain_id);
    assert_eq!(
        std::fs::read(dir.join("bin/busybox")).unwrap(),
        std::fs::read("/bin/busybox").unwrap()
    );
    assert_eq!(
        std::fs::read_link(dir.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    let run = s1.run_config(&rec).unwrap();
    assert_eq!(run.cmd, vec!["sh"]);
    assert_eq!(run.labels.get("x").map(String::as_str), Some("y"));
    let ins = serde_json::to_value(s1.inspect("busybox:test").unwrap()).unwrap();
    assert_eq!(ins["Comment"], "Imported from -");
    assert_eq!(
        s1.history("busybox:test").unwrap()[0].comment,
        "Imported from -"
    );
    // A second image sharing nothing, tagged twice.
    let other = import(
        &s1,
        &mut &layer_tar("f", b"data")[..],
        &ImportOptions::default(),
    )
    .unwrap();
    s1.tag(other.hex(), "other", Some("1")).unwrap();
    s1.tag(other.hex(), "localhost:5000/other", None).unwrap();
    let untagged = import(
        &s1,
        &mut &layer_tar("g", b"g")[..],
        &ImportOptions::default(),
    )
    .unwrap();

    let mut out = Vec::new();
    save(
        &s1,
        &[
            "busybox:test".into(),
            "other".into(),
            "localhost:5000/other:latest".into(),
            untagged.to_string(),
        ],
        &mut out,
    )
    .unwrap();
    // The archive has the Docker 25+ layout.
    let mut names = Vec::new();
    for e in tar::Archive::new(&out[..]).entries().unwrap() {
        names.push(e.unwrap().path().unwrap().to_string_lossy().to_string());
    }
    for n in ["manifest.json", "index.json", "oci-layout", "repositories"] {
        assert!(names.contains(&n.to_string()), "{names:?}");
    }
    assert!(names.contains(&format!("blobs/sha256/{}", Digest::of(&rootfs).hex())));
    assert!(matches!(
        save(&s1, &["nope".into()], &mut Vec::new()),
        Err(EngineError::NotFound(_))
    ));

    let s2 = service(d2.path());
    let lines = load(&s2, &mut &out[..]).unwrap();
    assert_eq!(
        lines,
        vec![
            "Loaded image: busybox:test".to_string(),
            "Loaded image: other:1".to_string(),
            "Loaded image: localhost:5000/other:latest".to_string(),
            format!("Loaded image ID: {untagged}"),
        ]
    );
    let r2 = s2.resolve("busybox:test").unwrap();
    assert_eq!(r2.id, id);
    assert_eq!(r2.layers[0].chain_id, rec.layers[0].chain_id);
    assert_eq!(s2.resolve("other:1").unwrap().id, other);
    assert_eq!(s2.resolve("localhost:5000/other").unwrap().id, other);
    assert!(s2.get(&untagged).unwrap().is_some());
    let dir2 = s2.layers.dir(&r2.layers[0].chain_id);
    assert_eq!(
        std::fs::read(dir2.join("bin/busybox")).unwrap(),
        std::fs::read("/bin/busybox").unwrap()
    );
    // The spool dir is gone.
    assert_eq!(std::fs::read_dir(&s2.tmp_dir).unwrap().count(), 0);

    // The same archive read as an OCI layout (without manifest.json) gives the same images.
    let d3 = tempfile::tempdir().unwrap();
    let s3 = service(d3.path());
    let mut b = tar::Builder::new(Vec::new());
    let mut ar = tar::Archive::new(&out[..]);
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_str() == Some("manifest.json") {
            continue;
        }
        let h = e.header().clone();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        b.append(&h, &data[..]).unwrap();
    }
    let oci = b.into_inner().unwrap();
    let lines = load(&s3, &mut &oci[..]).unwrap();
    assert!(
        lines.contains(&"Loaded image: busybox:test".to_string()),
        "{lines:?}"
    );
    assert_eq!(s3.resolve("busybox:test").unwrap().id, id);
    assert_eq!(s3.resolve("localhost:5000/other").unwrap().id, other);
}

fn image_count(s: &ImageService) -> usize {
    s.all().unwrap().len()
}

#[test]
fn hostile_archives_record_nothing() {
    let d = tempfile::tempdir().unwrap();
    let s = service(d.path());
    let layer = layer_tar("a", b"a");
    let diff = Digest::of(&layer);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [diff.to_string()]},
    }))
    .unwrap();

    // A manifest pointing outside the archive.
    for bad in ["../../etc/passwd", "/etc/passwd", "a/../../x"] {
        let manifest = serde_json::to_vec(
            &json!([{"Config": "config.json", "RepoTags": ["evil:1"], "Layers": [bad]}]),
        )
        .unwrap();
        let ar = archive(&[("manifest.json", &manifest), ("config.json", &config)]);
        match load(&s, &mut &ar[..]) {
            Err(EngineError::InvalidArgument(_)) => {}
            other => panic!("{bad}: {other:?}"),
        }
        let manifest =
            serde_json::to_vec(&json!([{"Config": bad, "RepoTags": ["evil:1"], "Layers": []}]))
                .unwrap();
        let ar = archive(&[("manifest.json", &manifest)]);
        assert!(matches!(
            load(&s, &mut &ar[..]),
            Err(EngineError::InvalidArgument(_))
        ));
    }

    // A symlink in the archive pointing outside is refused.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "layer.tar", "../../../etc/passwd")
        .unwrap();
    let ar = b.into_inner().unwrap();
    assert!(matches!(
        load(&s, &mut &ar[..]),
        Err(EngineError::InvalidArgument(_))
    ));

    // An archive entry with `..` is refused (written by hand: the tar crate's set_path refuses it).
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.as_gnu_mut().unwrap().name[..16].copy_from_slice(b"../../escape.txt");
    h.set_mode(0o644);
    h.set_size(1);
    h.set_cksum();
    b.append(&h, &b"x"[..]).unwrap();
    let ar = b.into_inner().unwrap();
    assert!(matches!(
        load(&s, &mut &ar[..]),
        Err(EngineError::InvalidArgument(_))
    ));
    assert!(!d.path().join("escape.txt").exists());

    // A layer whose content does not match the config's diff id; a valid first image in the
    // same archive is not recorded either.
    let good_layer = layer_tar("g", b"good");
    let good_config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [Digest::of(&good_layer).to_string()]},
    }))
    .unwrap();
    let wrong = layer_tar("a", b"not a");
    let manifest = serde_json::to_vec(&json!([
        {"Config": "good.json", "RepoTags": ["good:1"], "Layers": ["good/layer.tar"]},
        {"Config": "config.json", "RepoTags": ["evil:1"], "Layers": ["x/layer.tar"]},
    ]))
    .unwrap();
    let ar = archive(&[
        ("manifest.json", &manifest),
        ("good.json", &good_config),
        ("good/layer.tar", &good_layer),
        ("config.json", &config),
        ("x/layer.tar", &wrong),
    ]);
    assert!(matches!(
        load(&s, &mut &ar[..]),
        Err(EngineError::InvalidArgument(_))
    ));
    assert_eq!(image_count(&s), 0);
    assert!(s.resolve("good:1").is_err());
    // Rolled back: no blobs, no layers left behind.
    assert!(
        s.content.list().unwrap().is_empty(),
        "{:?}",
        s.content.list().unwrap()
    );
    assert!(s.layers.list().unwrap().is_empty());
    assert_eq!(std::fs::read_dir(&s.tmp_dir).unwrap().count(), 0);

    // A blob in an OCI layout whose content does not match its name.
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": Digest::of(&config).to_string(), "size": config.len()},
        "layers": [{"mediaType": MEDIA_LAYER_TAR, "digest": diff.to_string(), "size": layer.len()}],
    }))
    .unwrap();
    let md = Digest::of(&manifest);
    let index = serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [
        {"mediaType": MEDIA_MANIFEST, "digest": md.to_string(), "size": manifest.len(),
         "annotations": {ANNOTATION_REF_NAME: "evil:1"}}]}))
    .unwrap();
    let (mp, cp, lp) = (
        blob_path(&md),
        blob_path(&Digest::of(&config)),
        blob_path(&diff),
    );
    let ar = archive(&[
        ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
        ("index.json", &index),
        (&mp, &manifest),
        (&cp, &config),
        (&lp, &wrong),
    ]);
    assert!(matches!(
        load(&s, &mut &ar[..]),
        Err(EngineError::InvalidArgument(_))
    ));
    assert_eq!(image_count(&s), 0);
    // With the right layer it loads.
    let ar = archive(&[
        ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
        ("index.json", &index),
        (&mp, &manifest),
        (&cp, &config),
        (&lp, &layer),
    ]);
    assert_eq!(
        load(&s, &mut &ar[..]).unwrap(),
        vec!["Loaded image: evil:1".to_string()]
    );
    assert_eq!(image_count(&s), 1);

    // Not an image archive at all.
    let ar = archive(&[("hello.txt", b"hi")]);
    assert!(matches!(
        load(&s, &mut &ar[..]),
        Err(EngineError::InvalidArgument(_))
    ));
}

/// Interoperability with a real OCI tool: skopeo reads what `save` writes (as docker-archive
/// and as OCI archive), and OCI layouts it writes load back. Skipped without skopeo.
#[test]
fn skopeo_interop() {
    let skopeo = Path::new("/usr/bin/skopeo");
    if !skopeo.exists() {
        eprintln!("skopeo not installed: skipped");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let s = service(&d.path().join("s1"));
    let id = import(
        &s,
        &mut &busybox_rootfs()[..],
        &ImportOptions {
            reference: Some("bb:1".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let file = d.path().join("save.tar");
    let mut f = File::create(&file).unwrap();
    save(&s, &["bb:1".into()], &mut f).unwrap();
    drop(f);
    let run = |args: &[&str]| {
        let out = std::process::Command::new(skopeo)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let tar_dir = |dir: &Path| {
        let mut b = tar::Builder::new(Vec::new());
        b.append_dir_all(".", dir).unwrap();
        b.into_inner().unwrap()
    };
    let fpath = file.to_str().unwrap();
    let cfg = run(&[
        "inspect",
        "--config",
        "--raw",
        &format!("docker-archive:{fpath}"),
    ]);
    assert_eq!(Digest::of(cfg.as_bytes()), id);
    let cfg = run(&[
        "inspect",
        "--config",
        "--raw",
        &format!("oci-archive:{fpath}:1"),
    ]);
    assert_eq!(Digest::of(cfg.as_bytes()), id);

    // OCI → OCI keeps the config: same id.
    let oci = d.path().join("oci");
    run(&[
        "copy",
        "-q",
        &format!("oci-archive:{fpath}:1"),
        &format!("oci:{}:docker.io/library/bb:2", oci.display()),
    ]);
    let s2 = service(&d.path().join("s2"));
    assert_eq!(
        load(&s2, &mut &tar_dir(&oci)[..]).unwrap(),
        vec!["Loaded image: bb:2".to_string()]
    );
    assert_eq!(s2.resolve("bb:2").unwrap().id, id);

    // From the docker-archive view skopeo rewrites the config (another id); with gzip layers.
    let oci = d.path().join("oci2");
    run(&[
        "copy",
        "-q",
        "--dest-compress",
        &format!("docker-archive:{fpath}"),
        &format!("oci:{}:bb:3", oci.display()),
    ]);
    assert_eq!(
        load(&s2, &mut &tar_dir(&oci)[..]).unwrap(),
        vec!["Loaded image: bb:3".to_string()]
    );
    let r3 = s2.resolve("bb:3").unwrap();
    assert_eq!(
        r3.layers[0].chain_id,
        s.resolve("bb:1").unwrap().layers[0].chain_id
    );
    assert_eq!(r3.layers[0].media_type, MEDIA_LAYER_GZIP);
    // A gzip layer is saved uncompressed, and loads back.
    let mut out = Vec::new();
    save(&s2, &["bb:3".into()], &mut out).unwrap();
    let s3 = service(&d.path().join("s3"));
    load(&s3, &mut &out[..]).unwrap();
    let r = s3.resolve("bb:3").unwrap();
    assert_eq!(r.id, r3.id);
    assert_eq!(r.layers[0].media_type, MEDIA_LAYER_TAR);
}
