//! Tests of push: manifest format, progress text, plans, blob sources, layer compression.

use super::*;
use crate::images::LayerRef;
use std::io::Read;

fn rec(types: &[&str]) -> ImageRecord {
    ImageRecord {
        id: Digest::of(b"config"),
        layers: types
            .iter()
            .enumerate()
            .map(|(i, t)| LayerRef {
                blob: Some(Digest::of(format!("b{i}").as_bytes())),
                media_type: t.to_string(),
                diff_id: Digest::of(format!("d{i}").as_bytes()),
                chain_id: Digest::of(format!("c{i}").as_bytes()),
                size: 1,
            })
            .collect(),
        repo_tags: vec![],
        repo_digests: vec![],
        created: String::new(),
        size: 0,
        parent: None,
    }
}

#[test]
fn format_follows_the_layers() {
    assert!(!is_oci(&rec(&["application/vnd.oci.image.layer.v1.tar"])));
    assert!(!is_oci(&rec(&[DOCKER_LAYER_GZIP, OCI_LAYER_GZIP])));
    assert!(is_oci(&rec(&[OCI_LAYER_GZIP, OCI_LAYER_GZIP])));
    assert!(is_oci(&rec(&[DOCKER_LAYER_GZIP, OCI_LAYER_ZSTD])));
}

#[test]
fn docker_manifest_is_docker_formatted() {
    let r = rec(&[DOCKER_LAYER_GZIP]);
    let blobs = vec![PushBlob {
        digest: Digest::of(b"layer"),
        size: 42,
        media_type: DOCKER_LAYER_GZIP.into(),
    }];
    let (m, mt) = build_manifest(&r, 7, &blobs, false).unwrap();
    assert_eq!(mt, DOCKER_MANIFEST);
    let s = String::from_utf8(m).unwrap();
    let want = format!(
        "{{\n   \"schemaVersion\": 2,\n   \"mediaType\": \"{DOCKER_MANIFEST}\",\n   \"config\": {{\n      \"mediaType\": \"{DOCKER_CONFIG}\",\n      \"size\": 7,\n      \"digest\": \"{}\"\n   }},\n   \"layers\": [\n      {{\n         \"mediaType\": \"{DOCKER_LAYER_GZIP}\",\n         \"size\": 42,\n         \"digest\": \"{}\"\n      }}\n   ]\n}}",
        r.id,
        Digest::of(b"layer")
    );
    assert_eq!(s, want);
    let (m, mt) = build_manifest(&r, 7, &blobs, true).unwrap();
    assert_eq!(mt, OCI_MANIFEST);
    let v: Value = serde_json::from_slice(&m).unwrap();
    assert_eq!(v["layers"][0]["mediaType"], OCI_LAYER_GZIP);
    assert_eq!(v["config"]["mediaType"], OCI_CONFIG);
}

#[test]
fn progress_text() {
    assert_eq!(human(999), "999B");
    assert_eq!(human(1_500_000), "1.5MB");
    assert_eq!(human(12_345_678), "12.34MB");
    let p = progress_bar(5, 10);
    assert!(p.starts_with("[=========================>"), "{p}");
    assert!(p.ends_with("5B/10B"), "{p}");
}

#[test]
fn plans_check_names() {
    let o = RegistryOptions::default();
    let p = plan(
        "127.0.0.1:5000/a",
        Some("v1"),
        Credentials::Anonymous,
        o.clone(),
    )
    .unwrap();
    assert_eq!(p.tag.as_deref(), Some("v1"));
    let p = plan(
        "127.0.0.1:5000/a:v2",
        None,
        Credentials::Anonymous,
        o.clone(),
    )
    .unwrap();
    assert_eq!(p.tag.as_deref(), Some("v2"));
    let p = plan("127.0.0.1:5000/a", None, Credentials::Anonymous, o.clone()).unwrap();
    assert_eq!(p.tag, None);
    assert!(plan("A/B", None, Credentials::Anonymous, o.clone()).is_err());
    assert!(plan("a", Some("bad tag"), Credentials::Anonymous, o).is_err());
}

#[test]
fn blob_sources_are_remembered() {
    let dir = tempfile::tempdir().unwrap();
    let images = crate::images::tests::service(dir.path());
    let d = Digest::of(b"blob");
    record_blob_source(&images, &d, "127.0.0.1:5000", "a").unwrap();
    record_blob_source(&images, &d, "127.0.0.1:5000", "b").unwrap();
    record_blob_source(&images, &d, "127.0.0.1:6000", "c").unwrap();
    assert_eq!(
        mount_candidates(&images, &d, "127.0.0.1:5000", "a"),
        vec!["b".to_string()]
    );
    assert_eq!(
        mount_candidates(&images, &d, "127.0.0.1:5000", "z"),
        vec!["b".to_string(), "a".to_string()]
    );
    assert!(mount_candidates(&images, &d, "other", "z").is_empty());
}

#[test]
fn uncompressed_layers_are_gzipped_once() {
    use crate::images::tests::{layer_tar, make_image, service};
    let dir = tempfile::tempdir().unwrap();
    let images = service(dir.path());
    let tar = layer_tar("a.txt", &[7u8; 100_000]);
    let id = make_image(
        &images,
        std::slice::from_ref(&tar),
        &[],
        "2024-01-01T00:00:00Z",
        &["x:1"],
        None,
    );
    let other = make_image(
        &images,
        std::slice::from_ref(&tar),
        &[("l", "v")],
        "2024-01-01T00:00:00Z",
        &["y:1"],
        None,
    );
    let rec = images.get(&id).unwrap().unwrap();
    let old = rec.layers[0].blob.clone().unwrap();
    let b = compressed_blob(&images, &rec, 0).unwrap();
    assert_ne!(b.digest, old);
    assert_eq!(b.media_type, DOCKER_LAYER_GZIP);
    assert!(
        !images.content.exists(&old),
        "the tar is replaced by its gzip"
    );
    let gz = images.content.read(&b.digest).unwrap();
    assert_eq!(b.size, gz.len() as u64);
    let mut back = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut back)
        .unwrap();
    assert_eq!(back, tar);
    // Both images now point at the gzip; a second push finds it as is.
    for i in [&id, &other] {
        let r = images.get(i).unwrap().unwrap();
        assert_eq!(r.layers[0].blob.as_ref(), Some(&b.digest));
    }
    let again = compressed_blob(&images, &images.get(&id).unwrap().unwrap(), 0).unwrap();
    assert_eq!(again.digest, b.digest);
    // A stale record (taken before the swap) still finds the gzip.
    let again = compressed_blob(&images, &rec, 0).unwrap();
    assert_eq!(again.digest, b.digest);
}

#[test]
fn layers_without_a_blob_borrow_one_or_are_refused() {
    use crate::images::tests::{layer_tar, make_image, service};
    let dir = tempfile::tempdir().unwrap();
    let images = service(dir.path());
    let tar = layer_tar("b.txt", b"hello");
    let with_blob = make_image(
        &images,
        std::slice::from_ref(&tar),
        &[],
        "2024-01-01T00:00:00Z",
        &["a:1"],
        None,
    );
    // A second image whose layer record has no blob (as a pull that skipped the layer).
    let rec = images.get(&with_blob).unwrap().unwrap();
    let mut bare = rec.clone();
    bare.layers[0].blob = None;
    let cfg = serde_json::json!({"architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [rec.layers[0].diff_id.to_string()]}});
    let cfg_id = images
        .content
        .put(&serde_json::to_vec(&cfg).unwrap())
        .unwrap();
    let bare_id = images
        .add_image(&cfg_id, bare.layers.clone(), &["b:1".to_string()])
        .unwrap();
    let bare_rec = images.get(&bare_id).unwrap().unwrap();
    assert!(bare_rec.layers[0].blob.is_none());
    let b = compressed_blob(&images, &bare_rec, 0).unwrap();
    // Both records now name the gzip; the tar is gone.
    for id in [&with_blob, &bare_id] {
        let r = images.get(id).unwrap().unwrap();
        assert_eq!(r.layers[0].blob.as_ref(), Some(&b.digest));
    }
    assert!(!images.content.exists(&rec.layers[0].diff_id));

    // No blob anywhere: the layer directory is written again, and used only if it reproduces
    // the diff id (this hand-made tar does not: its header differs from layerdiff's).
    images.content.delete(&b.digest).unwrap();
    match compressed_blob(&images, &bare_rec, 0) {
        Ok(p) => {
            let gz = images.content.read(&p.digest).unwrap();
            let mut raw = Vec::new();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_end(&mut raw)
                .unwrap();
            assert_eq!(Digest::of(&raw), rec.layers[0].diff_id);
        }
        Err(e) => assert!(e.to_string().contains("cannot be pushed"), "{e}"),
    }
}

#[test]
fn streamed_gzip_hands_out_every_byte_and_aborts_cleanly() {
    use crate::images::tests::{layer_tar, make_image, service};
    let dir = tempfile::tempdir().unwrap();
    let images = service(dir.path());
    // Incompressible, larger than two chunks.
    let mut data = vec![0u8; 2 * STREAM_CHUNK + 12345];
    let mut x: u32 = 12345;
    for b in data.iter_mut() {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        *b = (x >> 16) as u8;
    }
    let tar = layer_tar("big", &data);
    let id = make_image(
        &images,
        std::slice::from_ref(&tar),
        &[],
        "2024-01-01T00:00:00Z",
        &["s:1"],
        None,
    );
    let rec = images.get(&id).unwrap().unwrap();
    let src = rec.layers[0].blob.clone().unwrap();
    let diff_id = rec.layers[0].diff_id.clone();

    // A sink that fails on the second chunk: nothing is stored, the tar stays.
    let before = images.content.list().unwrap().len();
    let mut n = 0;
    let err = gzip_into_store(&images, &src, &diff_id, |_| {
        n += 1;
        if n == 2 {
            Err(EngineError::Internal("uploader gone".into()))
        } else {
            Ok(())
        }
    })
    .unwrap_err();
    assert!(err.to_string().contains("uploader gone"), "{err}");
    assert_eq!(images.content.list().unwrap().len(), before);
    assert!(images.content.exists(&src));

    // A sink that keeps everything: the chunks are the stored gzip, in order.
    let mut got = Vec::new();
    let mut sizes = Vec::new();
    let mut last_done = 0;
    let b = gzip_into_store(&images, &src, &diff_id, |p| {
        if let Piece::Chunk(d, done, total) = p {
            assert!(done >= last_done && done <= total);
            assert_eq!(total, tar.len() as u64);
            last_done = done;
            sizes.push(d.len());
            got.extend_from_slice(&d);
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(Digest::of(&got), b.digest);
    assert_eq!(got.len() as u64, b.size);
    assert!(sizes.len() >= 3, "{sizes:?}");
    assert!(sizes[..sizes.len() - 1].iter().all(|s| *s >= STREAM_CHUNK));
    assert_eq!(images.content.read(&b.digest).unwrap(), got);
    assert!(
        !images.content.exists(&src),
        "the tar is replaced by its gzip"
    );
}
