//! Tests of the image service.

use super::*;
use std::io::Write;

/// A service on fresh temp dirs.
pub(crate) fn service(dir: &std::path::Path) -> ImageService {
    let content = ContentStore::open(&dir.join("content")).unwrap();
    let layers = LayerStore::open(&dir.join("layers")).unwrap();
    let db = Arc::new(Db::open(&dir.join("metadata.db")).unwrap());
    ImageService::new(
        content,
        layers,
        db,
        Arc::new(EventBus::new()),
        dir.join("tmp"),
    )
}

/// A tar with one file, as a layer.
pub(crate) fn layer_tar(name: &str, data: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_path(name).unwrap();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    b.append(&h, data).unwrap();
    b.into_inner().unwrap()
}

/// Make an image from layers (each a tar) and a config with `labels` and `created`.
pub(crate) fn make_image(
    svc: &ImageService,
    layers: &[Vec<u8>],
    labels: &[(&str, &str)],
    created: &str,
    tags: &[&str],
    parent: Option<&Digest>,
) -> Digest {
    let mut refs = Vec::new();
    let mut chain: Option<Digest> = None;
    for l in layers {
        let info = svc.layers.apply(chain.as_ref(), &mut &l[..], None).unwrap();
        let blob = svc.content.put(l).unwrap();
        assert_eq!(blob, info.diff_id);
        chain = Some(info.chain_id.clone());
        refs.push(LayerRef {
            blob: Some(blob),
            media_type: "application/vnd.oci.image.layer.v1.tar".into(),
            diff_id: info.diff_id,
            chain_id: info.chain_id,
            size: info.size,
        });
    }
    let labels: HashMap<_, _> = labels.iter().map(|(k, v)| (*k, *v)).collect();
    let cfg = serde_json::json!({
        "architecture": "amd64", "os": "linux", "created": created,
        "config": {"Labels": labels, "Cmd": ["sh"], "Env": ["A=1"], "ExposedPorts": {"80/tcp": {}}},
        "rootfs": {"type": "layers", "diff_ids": refs.iter().map(|r| r.diff_id.to_string()).collect::<Vec<_>>()},
        "history": refs.iter().enumerate().map(|(i, _)| serde_json::json!({"created": created, "created_by": format!("step {i}")}))
            .chain(std::iter::once(serde_json::json!({"created": created, "created_by": "CMD", "empty_layer": true})))
            .collect::<Vec<_>>(),
    });
    let id = svc.content.put(&serde_json::to_vec(&cfg).unwrap()).unwrap();
    let tags: Vec<String> = tags.iter().map(|s| s.to_string()).collect();
    svc.add_image_with_parent(&id, refs, &tags, parent).unwrap()
}

fn none(_: &Digest) -> Option<(String, bool)> {
    None
}

#[test]
fn glob() {
    assert!(glob_match("busy*", "busybox"));
    assert!(!glob_match("busy*", "busybox/x"));
    assert!(glob_match("busybox:1*", "busybox:1.36"));
    assert!(glob_match("b?sybox", "busybox"));
    assert!(glob_match("[a-c]usybox", "busybox"));
    assert!(!glob_match("[!a-c]usybox", "busybox"));
    assert!(glob_match("*/*", "a/b"));
    assert!(!glob_match("busybox", "busybox:latest"));
    assert!(reference_matches("busybox", "busybox:latest"));
    assert!(reference_matches("busy*", "busybox:latest"));
    assert!(!reference_matches("busybox:2*", "busybox:1.36"));
}

#[test]
fn tag_resolve_list_inspect_history() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path());
    let l1 = layer_tar("a", b"hello");
    let l2 = layer_tar("b", b"world!");
    let base = make_image(
        &svc,
        std::slice::from_ref(&l1),
        &[("k", "v")],
        "2024-01-02T03:04:05.5Z",
        &["base:1"],
        None,
    );
    let top = make_image(
        &svc,
        &[l1, l2],
        &[("k", "w"), ("x", "1")],
        "2025-01-02T03:04:05Z",
        &["docker.io/library/top"],
        Some(&base),
    );

    // Resolution by tag, default tag, full id, prefix, sha256: prefix.
    assert_eq!(svc.resolve("top").unwrap().id, top);
    assert_eq!(svc.resolve("top:latest").unwrap().id, top);
    assert_eq!(svc.resolve("base:1").unwrap().id, base);
    assert_eq!(svc.resolve(&top.to_string()).unwrap().id, top);
    assert_eq!(svc.resolve(&top.hex()[..10]).unwrap().id, top);
    assert_eq!(
        svc.resolve(&format!("sha256:{}", &base.hex()[..8]))
            .unwrap()
            .id,
        base
    );
    match svc.resolve("base") {
        Err(EngineError::NotFound(m)) => assert_eq!(m, "No such image: base:latest"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        svc.resolve("nope:1"),
        Err(EngineError::NotFound(_))
    ));

    // tag moves a tag between images.
    svc.tag("base:1", "shared", None).unwrap();
    svc.tag("top", "localhost:5000/top", Some("v2")).unwrap();
    assert_eq!(svc.resolve("shared").unwrap().id, base);
    svc.tag("top", "shared", Some("latest")).unwrap();
    assert_eq!(svc.resolve("shared").unwrap().id, top);
    assert_eq!(svc.get(&base).unwrap().unwrap().repo_tags, vec!["base:1"]);
    assert_eq!(
        svc.get(&top).unwrap().unwrap().repo_tags,
        vec!["localhost:5000/top:v2", "shared:latest", "top:latest"]
    );
    assert!(matches!(
        svc.tag("top", "Bad", None),
        Err(EngineError::InvalidArgument(_))
    ));
    assert!(matches!(
        svc.tag("top", "x", Some("-bad")),
        Err(EngineError::InvalidArgument(_))
    ));

    let counts = HashMap::from([(top.clone(), 2)]);
    let l = svc.list(false, &ImageFilters::default(), &counts).unwrap();
    assert_eq!(l.len(), 2);
    assert_eq!(l[0].id, top.to_string());
    assert_eq!(l[0].containers, 2);
    assert_eq!(l[0].shared_size, -1);
    assert_eq!(l[0].parent_id, base.to_string());
    assert_eq!(l[0].created, 1735787045);
    assert_eq!(l[0].size, 11);
    assert_eq!(l[0].labels.get("x").map(String::as_str), Some("1"));
    let f = |reference: &[&str], label: &[&str], dangling: Option<bool>| ImageFilters {
        dangling,
        reference: reference.iter().map(|s| s.to_string()).collect(),
        label: label.iter().map(|s| s.to_string()).collect(),
    };
    let ids = |flt: ImageFilters| -> Vec<String> {
        svc.list(true, &flt, &counts)
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect()
    };
    assert_eq!(ids(f(&["base"], &[], None)), vec![base.to_string()]);
    assert_eq!(ids(f(&["ba*"], &[], None)), vec![base.to_string()]);
    assert_eq!(ids(f(&["base:2*"], &[], None)), Vec::<String>::new());
    assert_eq!(
        ids(f(&["localhost:5000/*"], &[], None)),
        vec![top.to_string()]
    );
    assert_eq!(ids(f(&[], &["k=v"], None)), vec![base.to_string()]);
    assert_eq!(ids(f(&[], &["k"], None)).len(), 2);
    assert_eq!(ids(f(&[], &["x", "k=w"], None)), vec![top.to_string()]);
    assert_eq!(ids(f(&[], &[], Some(true))), Vec::<String>::new());

    let ins = svc.inspect("top").unwrap();
    assert_eq!(ins.id.as_deref(), Some(top.to_string().as_str()));
    assert_eq!(ins.architecture.as_deref(), Some("amd64"));
    let cfg = ins.config.clone().unwrap();
    assert_eq!(cfg.cmd, Some(vec!["sh".to_string()]));
    assert_eq!(cfg.exposed_ports, Some(vec!["80/tcp".to_string()]));
    assert_eq!(
        ins.root_fs.as_ref().unwrap().layers.as_ref().unwrap().len(),
        2
    );
    let js = serde_json::to_value(&ins).unwrap();
    assert_eq!(js["Created"], "2025-01-02T03:04:05Z");
    assert!(js["Metadata"]["LastTagTime"].is_string(), "{js}");
    let b = serde_json::to_value(svc.inspect("base:1").unwrap()).unwrap();
    assert_eq!(b["Created"], "2024-01-02T03:04:05.500Z");

    let h = svc.history("top").unwrap();
    assert_eq!(h.len(), 3);
    assert_eq!(h[0].id, top.to_string());
    assert_eq!(h[0].created_by, "CMD");
    assert_eq!(h[0].size, 0);
    assert_eq!(h[1].id, base.to_string());
    assert_eq!(h[1].tags, vec!["base:1"]);
    assert_eq!(h[1].size, 6);
    assert_eq!(h[2].id, "<missing>");
    assert_eq!(h[2].size, 5);
}

#[test]
fn remove_rules() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path());
    let shared = layer_tar("a", b"shared");
    let a = make_image(
        &svc,
        std::slice::from_ref(&shared),
        &[],
        "2024-01-01T00:00:00Z",
        &["a:1", "a:2"],
        None,
    );
    let b = make_image(
        &svc,
        &[shared.clone(), layer_tar("b", b"bb")],
        &[],
        "2024-01-01T00:00:01Z",
        &["b"],
        None,
    );

    // By id with two tags: must force.
    match svc.remove(&a.to_string(), false, &none) {
        Err(EngineError::Conflict(m)) => assert_eq!(
            m,
            format!("conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories", a.short())
        ),
        other => panic!("{other:?}"),
    }
    // By tag with another tag left: untag only.
    let r = svc.remove("a:1", false, &none).unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].untagged.as_deref(), Some("a:1"));
    assert!(svc.get(&a).unwrap().is_some());

    // In use by a container.
    let stopped = |d: &Digest| (d == &a).then(|| ("c0ffee0123456789".to_string(), false));
    let running = |d: &Digest| (d == &a).then(|| ("c0ffee0123456789".to_string(), true));
    match svc.remove("a:2", false, &stopped) {
        Err(EngineError::Conflict(m)) => assert_eq!(
            m,
            format!("conflict: unable to remove repository reference \"a:2\" (must force) - container c0ffee012345 is using its referenced image {}", a.short())
        ),
        other => panic!("{other:?}"),
    }
    match svc.remove(a.hex(), false, &running) {
        Err(EngineError::Conflict(m)) => assert_eq!(
            m,
            format!("conflict: unable to delete {} (cannot be forced) - image is being used by running container c0ffee012345", a.short())
        ),
        other => panic!("{other:?}"),
    }
    match svc.remove(a.hex(), true, &running) {
        Err(EngineError::Conflict(m)) => assert!(m.contains("cannot be forced"), "{m}"),
        other => panic!("{other:?}"),
    }
    match svc.remove(&a.hex()[..12], false, &stopped) {
        Err(EngineError::Conflict(m)) => assert_eq!(
            m,
            format!("conflict: unable to delete {} (must be forced) - image is being used by stopped container c0ffee012345", a.short())
        ),
        other => panic!("{other:?}"),
    }
    // Forced delete by id with a stopped container: the record goes, the files stay.
    let c = make_image(
        &svc,
        &[layer_tar("c", b"c")],
        &[],
        "2024-01-01T00:00:02Z",
        &["c"],
        None,
    );
    let c_chain = svc.get(&c).unwrap().unwrap().layers[0].chain_id.clone();
    let stopped_c = |d: &Digest| (d == &c).then(|| ("c0ffee0123456789".to_string(), false));
    let r = svc.remove(c.hex(), true, &stopped_c).unwrap();
    assert_eq!(r[0].untagged.as_deref(), Some("c:latest"));
    assert_eq!(r[1].deleted.as_deref(), Some(c.to_string().as_str()));
    assert!(svc.get(&c).unwrap().is_none());
    assert!(svc.layers.exists(&c_chain));
    assert!(svc.content.exists(&c));

    // Forced tag removal while running: untagged, image kept.
    let r = svc.remove("a:2", true, &running).unwrap();
    assert_eq!(r.len(), 1);
    assert!(svc.get(&a).unwrap().is_some());
    svc.tag(a.hex(), "a", Some("3")).unwrap();

    // Last tag, unused: untag + delete; the shared layer stays for b.
    let a_chain = svc.get(&a).unwrap().unwrap().layers[0].chain_id.clone();
    let r = svc.remove("a:3", false, &none).unwrap();
    assert_eq!(r[0].untagged.as_deref(), Some("a:3"));
    assert_eq!(r[1].deleted.as_deref(), Some(a.to_string().as_str()));
    assert_eq!(r.len(), 2, "{r:?}");
    assert!(svc.get(&a).unwrap().is_none());
    assert!(!svc.content.exists(&a));
    assert!(svc.layers.exists(&a_chain));
    assert!(svc.resolve("a:3").is_err());

    // b by id: its own layer and the shared one go.
    let brec = svc.get(&b).unwrap().unwrap();
    let r = svc.remove(b.hex(), false, &none).unwrap();
    assert_eq!(r[0].untagged.as_deref(), Some("b:latest"));
    assert_eq!(r.iter().filter(|x| x.deleted.is_some()).count(), 3);
    for l in &brec.layers {
        assert!(!svc.layers.exists(&l.chain_id));
        assert!(!svc.content.exists(l.blob.as_ref().unwrap()));
    }
    assert!(svc.all().unwrap().is_empty());
    assert!(svc.tag_map().unwrap().is_empty());
}

#[test]
fn prune_and_reconcile() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path());
    let a = make_image(
        &svc,
        &[layer_tar("a", b"a")],
        &[],
        "2024-01-01T00:00:00Z",
        &["keep"],
        None,
    );
    let d1 = make_image(
        &svc,
        &[layer_tar("d", b"d1")],
        &[],
        "2024-01-01T00:00:00Z",
        &[],
        None,
    );
    let used = make_image(
        &svc,
        &[layer_tar("u", b"u")],
        &[],
        "2024-01-01T00:00:00Z",
        &[],
        None,
    );
    let in_use = |d: &Digest| d == &used;
    let l = svc
        .list(
            false,
            &ImageFilters {
                dangling: Some(true),
                ..Default::default()
            },
            &HashMap::new(),
        )
        .unwrap();
    assert_eq!(l.len(), 2);
    let (items, bytes) = svc.prune(false, &in_use).unwrap();
    assert_eq!(items[0].deleted.as_deref(), Some(d1.to_string().as_str()));
    assert_eq!(bytes, 2);
    assert!(svc.get(&a).unwrap().is_some());
    assert!(svc.get(&used).unwrap().is_some());
    let (items, _) = svc.prune(true, &in_use).unwrap();
    assert_eq!(items[0].untagged.as_deref(), Some("keep:latest"));
    assert!(svc.get(&a).unwrap().is_none());
    assert_eq!(svc.all().unwrap().len(), 1);

    // reconcile: a stale tag and an orphan layer disappear.
    svc.db.put(TAGS_TABLE, "ghost:latest", &a).unwrap();
    let orphan = svc
        .layers
        .apply(None, &mut &layer_tar("o", b"o")[..], None)
        .unwrap();
    let mut f = std::fs::File::create(dir.path().join("x")).unwrap();
    f.write_all(b"x").unwrap();
    let orphan_blob = svc.content.put(b"left by an interrupted import").unwrap();
    let kept: Vec<Digest> = svc
        .all()
        .unwrap()
        .iter()
        .flat_map(|r| {
            r.layers
                .iter()
                .filter_map(|l| l.blob.clone())
                .chain([r.id.clone()])
        })
        .collect();
    svc.reconcile().unwrap();
    assert!(!svc.content.exists(&orphan_blob));
    assert!(kept.iter().all(|d| svc.content.exists(d)));
    assert!(svc
        .db
        .get::<Digest>(TAGS_TABLE, "ghost:latest")
        .unwrap()
        .is_none());
    assert!(!svc.layers.exists(&orphan.chain_id));
    assert_eq!(svc.all().unwrap().len(), 1);
}
