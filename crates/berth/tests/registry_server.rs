//! `berth registry serve`, the OCI distribution server: the protocol (uploads, ranges, manifests,
//! indexes, referrers, errors, pagination), crash safety, and skopeo copying images in and out.
//! Auth, TLS, the pull-through cache and the docker CLI are in registry_server_access.rs.

mod common;
#[path = "registry_server/helpers.rs"]
mod helpers;

use std::fs;
use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::registry::{header, http_tcp, sha256_digest};
use common::TestDaemon;
use helpers::*;

#[test]
fn skopeo_copies_images_in_and_out() {
    let d = TestDaemon::start();
    let archive = busybox_archive(&d);
    let reg = BerthRegistry::start(&[]);
    let a = reg.addr();

    // Docker schema 2 and OCI, in.
    skopeo_ok(&[
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        &format!("docker-archive:{archive}"),
        &format!("docker://{a}/lib/busybox:v1"),
    ]);
    skopeo_ok(&[
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        "--format",
        "oci",
        &format!("docker-archive:{archive}"),
        &format!("docker://{a}/lib/busybox-oci:v1"),
    ]);

    for (repo, mt) in [
        ("lib/busybox", DOCKER_V2),
        ("lib/busybox-oci", OCI_MANIFEST),
    ] {
        let (st, h, body) = reg.http(
            "GET",
            &format!("/v2/{repo}/manifests/v1"),
            &[("Accept", ACCEPT_ALL)],
            None,
        );
        assert_eq!(st, 200);
        assert_eq!(header(&h, "content-type").as_deref(), Some(mt), "{repo}");
        let digest = sha256_digest(&body);
        assert_eq!(header(&h, "docker-content-digest"), Some(digest.clone()));

        // skopeo inspect sees the same digest and the one layer.
        let insp = json(
            skopeo_ok(&[
                "inspect",
                "--tls-verify=false",
                &format!("docker://{a}/{repo}:v1"),
            ])
            .as_bytes(),
        );
        assert_eq!(insp["Digest"], digest.as_str());
        assert_eq!(insp["Layers"].as_array().map(|l| l.len()), Some(1));
        assert_eq!(insp["RepoTags"], serde_json::json!(["v1"]));

        // And out again, byte for byte (same manifest digest, blobs that hash to their names).
        let scratch = Scratch::new("brs-out");
        let out = scratch.sub("img");
        skopeo_ok(&[
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            &format!("docker://{a}/{repo}:v1"),
            &format!("dir:{}", out.display()),
        ]);
        assert_eq!(dir_manifest_digest(&out), digest);
    }

    // The manifest by digest, HEAD with the same headers, the catalog, the tags.
    let (st, h, _) = reg.http(
        "HEAD",
        "/v2/lib/busybox/manifests/v1",
        &[("Accept", ACCEPT_ALL)],
        None,
    );
    assert_eq!(st, 200);
    let dg = header(&h, "docker-content-digest").unwrap();
    let (st, _, body) = reg.http("GET", &format!("/v2/lib/busybox/manifests/{dg}"), &[], None);
    assert_eq!((st, sha256_digest(&body)), (200, dg));
    let (_, _, body) = reg.http("GET", "/v2/_catalog", &[], None);
    assert_eq!(
        json(&body)["repositories"],
        serde_json::json!(["lib/busybox", "lib/busybox-oci"])
    );
    skopeo_ok(&[
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!("docker://{a}/lib/busybox:v1"),
        &format!("docker://{a}/lib/busybox:v2"),
    ]);
    let tags = json(
        skopeo_ok(&[
            "list-tags",
            "--tls-verify=false",
            &format!("docker://{a}/lib/busybox"),
        ])
        .as_bytes(),
    );
    assert_eq!(tags["Tags"], serde_json::json!(["v1", "v2"]));
}

#[test]
fn chunked_uploads_ranges_and_digest_checks() {
    let reg = BerthRegistry::start(&[]);
    let (st, h, _) = reg.http("GET", "/v2/", &[], None);
    assert_eq!(st, 200);
    assert_eq!(
        header(&h, "docker-distribution-api-version").as_deref(),
        Some("registry/2.0")
    );

    let data = noise(300_000, 1);
    let digest = sha256_digest(&data);
    let (st, h, _) = reg.http("POST", "/v2/up/blobs/uploads/", &[], Some(b""));
    assert_eq!(st, 202);
    let loc = header(&h, "location").expect("location");
    assert!(header(&h, "docker-upload-uuid").is_some());
    assert_eq!(header(&h, "range").as_deref(), Some("0-0"));

    // Chunk 1, then a chunk with a gap (416, nothing appended), then chunk 2.
    let (st, h, _) = reg.http(
        "PATCH",
        &loc,
        &[
            ("Content-Range", "0-99999"),
            ("Content-Type", "application/octet-stream"),
        ],
        Some(&data[..100_000]),
    );
    assert_eq!(st, 202);
    assert_eq!(header(&h, "range").as_deref(), Some("0-99999"));
    let (st, h, b) = reg.http(
        "PATCH",
        &loc,
        &[("Content-Range", "100001-100010")],
        Some(&data[100_001..100_011]),
    );
    assert_eq!(st, 416, "{}", String::from_utf8_lossy(&b));
    assert_eq!(header(&h, "range").as_deref(), Some("0-99999"));
    // A Content-Range that does not match the body length: 416, nothing appended.
    let (st, _, _) = reg.http(
        "PATCH",
        &loc,
        &[("Content-Range", "100000-100099")],
        Some(&data[100_000..100_050]),
    );
    assert_eq!(st, 416);
    let (st, h, _) = reg.http("GET", &loc, &[], None);
    assert_eq!(st, 204);
    assert_eq!(header(&h, "range").as_deref(), Some("0-99999"));
    let (st, _, _) = reg.http(
        "PATCH",
        &loc,
        &[("Content-Range", "100000-199999")],
        Some(&data[100_000..200_000]),
    );
    assert_eq!(st, 202);

    // The wrong digest: 400 DIGEST_INVALID, nothing published, the session is gone.
    let wrong = sha256_digest(b"something else");
    let (st, _, b) = reg.http(
        "PUT",
        &format!("{loc}?digest={wrong}"),
        &[],
        Some(&data[200_000..]),
    );
    assert_eq!((st, error_code(&b)), (400, "DIGEST_INVALID".to_string()));
    for d in [&wrong, &digest] {
        let (st, _, _) = reg.http("HEAD", &format!("/v2/up/blobs/{d}"), &[], None);
        assert_eq!(st, 404);
    }
    let (st, _, b) = reg.http("GET", &loc, &[], None);
    assert_eq!(
        (st, error_code(&b)),
        (404, "BLOB_UPLOAD_UNKNOWN".to_string())
    );
    assert_eq!(
        fs::read_dir(reg.root().join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );

    // Again, right: chunks then PUT with the last chunk.
    let (_, h, _) = reg.http("POST", "/v2/up/blobs/uploads/", &[], Some(b""));
    let loc = header(&h, "location").unwrap();
    let (st, h, _) = reg.http("PATCH", &loc, &[], Some(&data[..150_000]));
    assert_eq!(st, 202);
    let loc = header(&h, "location").unwrap();
    let (st, h, _) = reg.http(
        "PUT",
        &format!("{loc}?digest={digest}"),
        &[("Content-Range", "150000-299999")],
        Some(&data[150_000..]),
    );
    assert_eq!(st, 201);
    assert_eq!(
        header(&h, "location"),
        Some(format!("/v2/up/blobs/{digest}"))
    );
    assert_eq!(header(&h, "docker-content-digest"), Some(digest.clone()));

    // HEAD and GET, whole and in ranges.
    let blob = format!("/v2/up/blobs/{digest}");
    let (st, h, b) = reg.http("HEAD", &blob, &[], None);
    assert_eq!((st, b.len()), (200, 0));
    assert_eq!(header(&h, "content-length").as_deref(), Some("300000"));
    let (st, _, b) = reg.http("GET", &blob, &[], None);
    assert_eq!((st, b == data), (200, true));
    let (st, h, b) = reg.http("GET", &blob, &[("Range", "bytes=1000-1999")], None);
    assert_eq!(st, 206);
    assert_eq!(b, &data[1000..2000]);
    assert_eq!(
        header(&h, "content-range").as_deref(),
        Some("bytes 1000-1999/300000")
    );
    let (st, _, b) = reg.http("GET", &blob, &[("Range", "bytes=-10")], None);
    assert_eq!((st, b.as_slice()), (206, &data[299_990..]));
    let (st, _, b) = reg.http("GET", &blob, &[("Range", "bytes=299999-")], None);
    assert_eq!((st, b.as_slice()), (206, &data[299_999..]));
    let (st, h, _) = reg.http("GET", &blob, &[("Range", "bytes=300000-")], None);
    assert_eq!(st, 416);
    assert_eq!(
        header(&h, "content-range").as_deref(),
        Some("bytes */300000")
    );

    // Monolithic with a wrong digest publishes nothing.
    let other = noise(1000, 2);
    let (st, _, b) = reg.http(
        "POST",
        &format!("/v2/up/blobs/uploads/?digest={}", sha256_digest(b"x")),
        &[],
        Some(&other),
    );
    assert_eq!((st, error_code(&b)), (400, "DIGEST_INVALID".to_string()));
    assert_eq!(
        fs::read_dir(reg.root().join("blobs/sha256"))
            .unwrap()
            .count(),
        1
    );
    assert_eq!(fs::read_dir(reg.root().join("uploads")).unwrap().count(), 0);

    // Cross-repository mount: 201 from a repo that has it, a new session otherwise.
    let (st, h, _) = reg.http(
        "POST",
        &format!("/v2/other/blobs/uploads/?mount={digest}&from=up"),
        &[],
        Some(b""),
    );
    assert_eq!(st, 201);
    assert_eq!(
        header(&h, "location"),
        Some(format!("/v2/other/blobs/{digest}"))
    );
    let (st, _, _) = reg.http("HEAD", &format!("/v2/other/blobs/{digest}"), &[], None);
    assert_eq!(st, 200);
    let (st, h, _) = reg.http(
        "POST",
        &format!("/v2/third/blobs/uploads/?mount={digest}&from=nowhere"),
        &[],
        Some(b""),
    );
    assert_eq!(st, 202);
    let loc = header(&h, "location").unwrap();
    // A session belongs to its repository; DELETE cancels it.
    let (st, _, _) = reg.http("GET", &loc.replace("/third/", "/up/"), &[], None);
    assert_eq!(st, 404);
    let (st, _, _) = reg.http("DELETE", &loc, &[], None);
    assert_eq!(st, 204);
    let (st, _, _) = reg.http("GET", &loc, &[], None);
    assert_eq!(st, 404);

    // Blob DELETE removes it from that repository only.
    let (st, _, _) = reg.http("DELETE", &format!("/v2/other/blobs/{digest}"), &[], None);
    assert_eq!(st, 202);
    let (st, _, b) = reg.http("GET", &format!("/v2/other/blobs/{digest}"), &[], None);
    assert_eq!((st, error_code(&b)), (404, "BLOB_UNKNOWN".to_string()));
    let (st, _, _) = reg.http("HEAD", &blob, &[], None);
    assert_eq!(st, 200);
}

#[test]
fn manifests_indexes_referrers_and_errors() {
    let reg = BerthRegistry::start(&[]);
    let layer = noise(5000, 3);
    let (md, m) = reg.push_image("app", "v1", std::slice::from_ref(&layer), OCI_MANIFEST);

    // The media type is stored and served back, by tag and digest.
    for r in ["v1", md.as_str()] {
        let (st, h, b) = reg.http(
            "GET",
            &format!("/v2/app/manifests/{r}"),
            &[("Accept", ACCEPT_ALL)],
            None,
        );
        assert_eq!(st, 200);
        assert_eq!(header(&h, "content-type").as_deref(), Some(OCI_MANIFEST));
        assert_eq!(b, m);
    }

    // A manifest naming a blob the repository lacks: MANIFEST_BLOB_UNKNOWN, nothing stored.
    let missing = sha256_digest(b"not uploaded");
    let bad = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": DOCKER_V2,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": missing, "size": 12},
        "layers": [],
    }))
    .unwrap();
    let (st, _, b) = reg.put_manifest("app", "broken", DOCKER_V2, &bad);
    assert_eq!(
        (st, error_code(&b)),
        (400, "MANIFEST_BLOB_UNKNOWN".to_string())
    );
    assert_eq!(json(&b)["errors"][0]["detail"]["digest"], missing.as_str());
    let (st, _, b) = reg.http("GET", "/v2/app/manifests/broken", &[], None);
    assert_eq!((st, error_code(&b)), (404, "MANIFEST_UNKNOWN".to_string()));
    // A blob of another repository is not enough.
    let foreign = reg.put_blob("elsewhere", b"cfg");
    let bad2 = String::from_utf8(bad.clone())
        .unwrap()
        .replace(&missing, &foreign);
    let (st, _, _) = reg.put_manifest("app", "broken", DOCKER_V2, bad2.as_bytes());
    assert_eq!(st, 400);
    // A digest reference that does not match the body; a Content-Type that contradicts it.
    let (st, _, b) = reg.put_manifest("app", &missing, OCI_MANIFEST, &m);
    assert_eq!((st, error_code(&b)), (400, "DIGEST_INVALID".to_string()));
    let (st, _, b) = reg.put_manifest("app", "v9", DOCKER_V2, &m);
    assert_eq!((st, error_code(&b)), (400, "MANIFEST_INVALID".to_string()));

    // Indexes: OCI index and Docker list over existing manifests; children must exist.
    for (tag, mt) in [("multi", OCI_INDEX), ("list", DOCKER_LIST)] {
        let child_mt = if mt == OCI_INDEX {
            OCI_MANIFEST
        } else {
            DOCKER_V2
        };
        let idx = |d: &str| {
            serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2, "mediaType": mt,
                "manifests": [{"mediaType": child_mt, "digest": d, "size": m.len(), "platform": {"architecture": "amd64", "os": "linux"}}],
            }))
            .unwrap()
        };
        let (st, _, b) = reg.put_manifest("app", tag, mt, &idx(&missing));
        assert_eq!(
            (st, error_code(&b)),
            (400, "MANIFEST_BLOB_UNKNOWN".to_string())
        );
        let body = idx(&md);
        let (st, _, _) = reg.put_manifest("app", tag, mt, &body);
        assert_eq!(st, 201);
        let (_, h, b) = reg.http(
            "GET",
            &format!("/v2/app/manifests/{tag}"),
            &[("Accept", ACCEPT_ALL)],
            None,
        );
        assert_eq!(header(&h, "content-type").as_deref(), Some(mt));
        assert_eq!(b, body);
    }

    // Referrers: an artifact whose subject is the image.
    let art_cfg = reg.put_blob("app", b"{}");
    let artifact = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.sbom",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": art_cfg, "size": 2},
        "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": md, "size": m.len()},
        "annotations": {"org.example": "yes"},
    }))
    .unwrap();
    let ad = sha256_digest(&artifact);
    let (st, h, _) = reg.put_manifest("app", &ad, OCI_MANIFEST, &artifact);
    assert_eq!(st, 201);
    assert_eq!(header(&h, "oci-subject"), Some(md.clone()));
    let (st, h, b) = reg.http("GET", &format!("/v2/app/referrers/{md}"), &[], None);
    assert_eq!(st, 200);
    assert_eq!(header(&h, "content-type").as_deref(), Some(OCI_INDEX));
    let v = json(&b);
    assert_eq!(v["manifests"][0]["digest"], ad.as_str());
    assert_eq!(
        v["manifests"][0]["artifactType"],
        "application/vnd.example.sbom"
    );
    assert_eq!(v["manifests"][0]["annotations"]["org.example"], "yes");
    let (_, h, b) = reg.http(
        "GET",
        &format!("/v2/app/referrers/{md}?artifactType=application%2Fvnd.other"),
        &[],
        None,
    );
    assert_eq!(
        header(&h, "oci-filters-applied").as_deref(),
        Some("artifactType")
    );
    assert_eq!(json(&b)["manifests"], serde_json::json!([]));
    let (st, _, b) = reg.http("GET", &format!("/v2/app/referrers/{missing}"), &[], None);
    assert_eq!(
        (st, json(&b)["manifests"].clone()),
        (200, serde_json::json!([]))
    );

    // Names and references per the spec.
    for p in [
        "/v2/UPPER/tags/list",
        "/v2/a/../b/tags/list",
        "/v2/a//b/tags/list",
        "/v2/_x/tags/list",
    ] {
        let (st, _, b) = reg.http("GET", p, &[], None);
        assert_eq!(
            (st, error_code(&b)),
            (400, "NAME_INVALID".to_string()),
            "{p}"
        );
    }
    let (st, _, b) = reg.http("GET", "/v2/app/blobs/sha256:..%2F..%2Fetc", &[], None);
    assert_eq!((st, error_code(&b)), (400, "DIGEST_INVALID".to_string()));
    let (st, _, b) = reg.http("GET", "/v2/nothere/tags/list", &[], None);
    assert_eq!((st, error_code(&b)), (404, "NAME_UNKNOWN".to_string()));

    // DELETE by digest takes its tags along; by tag only the tag.
    let (st, _, _) = reg.http("DELETE", "/v2/app/manifests/list", &[], None);
    assert_eq!(st, 202);
    let (st, _, _) = reg.http("DELETE", &format!("/v2/app/manifests/{ad}"), &[], None);
    assert_eq!(st, 202);
    let (_, _, b) = reg.http("GET", &format!("/v2/app/referrers/{md}"), &[], None);
    assert_eq!(json(&b)["manifests"], serde_json::json!([]));
    let (st, _, _) = reg.http("DELETE", &format!("/v2/app/manifests/{md}"), &[], None);
    assert_eq!(st, 202);
    let (st, _, _) = reg.http("GET", "/v2/app/manifests/v1", &[], None);
    assert_eq!(st, 404);
    let (_, _, b) = reg.http("GET", "/v2/app/tags/list", &[], None);
    assert_eq!(json(&b)["tags"], serde_json::json!(["multi"]));
}

#[test]
fn catalog_and_tags_paginate() {
    let reg = BerthRegistry::start(&[]);
    let repos = ["p/a", "p/b", "p/c", "p/d", "p/e"];
    let mut md = String::new();
    for (i, r) in repos.iter().enumerate() {
        md = reg
            .push_image(r, "t0", &[noise(100, i as u64)], OCI_MANIFEST)
            .0;
    }
    for t in ["t1", "t2", "t3"] {
        let (_, _, m) = reg.http("GET", &format!("/v2/p/e/manifests/{md}"), &[], None);
        let (st, _, _) = reg.put_manifest("p/e", t, OCI_MANIFEST, &m);
        assert_eq!(st, 201);
    }

    // Follow the Link headers two at a time.
    let mut path = "/v2/_catalog?n=2".to_string();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let (st, h, b) = reg.http("GET", &path, &[], None);
        assert_eq!(st, 200);
        let page: Vec<String> = serde_json::from_value(json(&b)["repositories"].clone()).unwrap();
        assert!(page.len() <= 2);
        seen.extend(page);
        pages += 1;
        match header(&h, "link") {
            Some(l) => {
                assert!(l.ends_with("rel=\"next\""), "{l}");
                path = l[l.find('<').unwrap() + 1..l.find('>').unwrap()].to_string();
            }
            None => break,
        }
    }
    assert_eq!(seen, repos);
    assert_eq!(pages, 3);

    let (_, h, b) = reg.http("GET", "/v2/p/e/tags/list?n=3", &[], None);
    assert_eq!(json(&b)["tags"], serde_json::json!(["t0", "t1", "t2"]));
    assert_eq!(
        header(&h, "link").as_deref(),
        Some("</v2/p/e/tags/list?last=t2&n=3>; rel=\"next\"")
    );
    let (_, h, b) = reg.http("GET", "/v2/p/e/tags/list?n=3&last=t2", &[], None);
    assert_eq!(json(&b)["tags"], serde_json::json!(["t3"]));
    assert!(header(&h, "link").is_none());
    // Page sizes are bounded: a huge n is served as at most 1000; a bad one is refused.
    let (st, _, b) = reg.http("GET", "/v2/_catalog?n=100000000", &[], None);
    assert_eq!(
        (st, json(&b)["repositories"].as_array().unwrap().len()),
        (200, 5)
    );
    let (st, _, b) = reg.http("GET", "/v2/_catalog?n=-1", &[], None);
    assert_eq!(
        (st, error_code(&b)),
        (400, "PAGINATION_NUMBER_INVALID".to_string())
    );
}

/// Send headers announcing `total` bytes, then only `sent` of them, and leave the connection open.
fn start_partial_request(
    addr: &str,
    method: &str,
    path: &str,
    data: &[u8],
    sent: usize,
) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    let head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n", data.len());
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&data[..sent]).unwrap();
    s.flush().unwrap();
    s
}

/// Poll until the upload data file has at least `n` bytes (the server has written them).
fn wait_upload_bytes(root: &Path, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut best = 0;
        if let Ok(rd) = fs::read_dir(root.join("uploads")) {
            for e in rd.flatten() {
                best = best.max(
                    fs::metadata(e.path().join("data"))
                        .map(|m| m.len())
                        .unwrap_or(0),
                );
            }
        }
        if best >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "upload never reached {n} bytes (at {best})"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn kill9_mid_upload_never_serves_a_partial_blob() {
    let mut reg = BerthRegistry::start(&[]);
    // 8 MiB, more than the server's 1 MiB write buffer, so bytes reach the disk mid-request.
    let data = noise(8 << 20, 5);
    let digest = sha256_digest(&data);

    // A monolithic upload killed half way.
    let s1 = start_partial_request(
        &reg.addr(),
        "POST",
        &format!("/v2/crash/blobs/uploads/?digest={digest}"),
        &data,
        4 << 20,
    );
    wait_upload_bytes(&reg.root(), 2 << 20);
    reg.kill9();
    drop(s1);
    reg.spawn();
    let (st, _, _) = reg.http("HEAD", &format!("/v2/crash/blobs/{digest}"), &[], None);
    assert_eq!(st, 404);
    let names: Vec<_> = fs::read_dir(reg.root().join("blobs/sha256"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(names.is_empty(), "{names:?}");

    // A chunked session killed during its PUT: restarted, the session resumes where the disk is.
    let (_, h, _) = reg.http("POST", "/v2/crash/blobs/uploads/", &[], Some(b""));
    let loc = header(&h, "location").unwrap();
    let (st, _, _) = reg.http(
        "PATCH",
        &loc,
        &[("Content-Range", "0-1048575")],
        Some(&data[..1 << 20]),
    );
    assert_eq!(st, 202);
    let s2 = start_partial_request(
        &reg.addr(),
        "PUT",
        &format!("{loc}?digest={digest}"),
        &data[1 << 20..],
        5 << 20,
    );
    wait_upload_bytes(&reg.root(), 3 << 20);
    reg.kill9();
    drop(s2);
    reg.spawn();
    let (st, _, _) = reg.http("GET", &format!("/v2/crash/blobs/{digest}"), &[], None);
    assert_eq!(st, 404);
    // The status tells how much the disk holds; the finish is refused by digest, not published.
    let (st, h, _) = reg.http("GET", &loc, &[], None);
    assert_eq!(st, 204);
    let have: usize = header(&h, "range")
        .unwrap()
        .split('-')
        .nth(1)
        .unwrap()
        .parse::<usize>()
        .unwrap()
        + 1;
    assert!(have >= 1 << 20 && have < data.len(), "{have}");
    let (st, _, _) = reg.http(
        "PUT",
        &format!("{loc}?digest={digest}"),
        &[("Content-Range", &format!("{have}-{}", data.len() - 1))],
        Some(&data[have..]),
    );
    assert_eq!(st, 201, "resumed upload");
    let (st, _, b) = reg.http("GET", &format!("/v2/crash/blobs/{digest}"), &[], None);
    assert_eq!((st, b == data), (200, true));

    // And a fresh monolithic upload of another blob works.
    let d2 = reg.put_blob("crash", &data[..1000]);
    let (st, _, _) = reg.http("HEAD", &format!("/v2/crash/blobs/{d2}"), &[], None);
    assert_eq!(st, 200);
}

#[test]
fn concurrent_uploads_of_one_blob_and_racing_chunks() {
    let reg = std::sync::Arc::new(BerthRegistry::start(&[]));
    // 3 MiB in racing chunks below, then a tail that the final PUT always carries.
    let data = std::sync::Arc::new(noise((3 << 20) + 1000, 11));
    let digest = sha256_digest(&data);
    // Eight clients upload the same blob at once, into two repositories.
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let (reg, data) = (reg.clone(), data.clone());
            std::thread::spawn(move || reg.put_blob(&format!("same/r{}", i % 2), &data))
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), digest);
    }
    for r in ["same/r0", "same/r1"] {
        let (st, _, b) = reg.http("GET", &format!("/v2/{r}/blobs/{digest}"), &[], None);
        assert_eq!((st, b == *data), (200, true));
    }
    // One blob file, no temp files, no sessions left.
    assert_eq!(
        fs::read_dir(reg.root().join("blobs/sha256"))
            .unwrap()
            .count(),
        1
    );
    assert_eq!(fs::read_dir(reg.root().join("uploads")).unwrap().count(), 0);

    // Concurrent PATCHes on one session are serialised: each lands whole or gets 416.
    let (_, h, _) = reg.http("POST", "/v2/same/r0/blobs/uploads/", &[], Some(b""));
    let loc = header(&h, "location").unwrap();
    let chunk = 1 << 20;
    let handles: Vec<_> = (0..3)
        .map(|i| {
            let (reg, data, loc) = (reg.clone(), data.clone(), loc.clone());
            std::thread::spawn(move || {
                let range = format!("{}-{}", i * chunk, (i + 1) * chunk - 1);
                // A refused chunk may be answered before its body is read and the connection
                // reset under our write: that is a refusal too.
                match http_tcp(
                    &reg.addr(),
                    "PATCH",
                    &loc,
                    &[("Content-Range", &range)],
                    Some(&data[i * chunk..(i + 1) * chunk]),
                ) {
                    Ok(r) => r.0,
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 416,
                    Err(e) => panic!("PATCH {loc}: {e}"),
                }
            })
        })
        .collect();
    let codes: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(codes.contains(&202), "{codes:?}");
    assert!(codes.iter().all(|c| *c == 202 || *c == 416), "{codes:?}");
    // Whatever got in is a prefix of the data: finish from there and the digest matches.
    let (_, h, _) = reg.http("GET", &loc, &[], None);
    let have: usize = header(&h, "range")
        .unwrap()
        .split('-')
        .nth(1)
        .unwrap()
        .parse::<usize>()
        .unwrap()
        + 1;
    assert_eq!(have % chunk, 0);
    let (st, _, b) = reg.http(
        "PUT",
        &format!("{loc}?digest={digest}"),
        &[("Content-Range", &format!("{have}-{}", data.len() - 1))],
        Some(&data[have..]),
    );
    assert_eq!(st, 201, "{}", String::from_utf8_lossy(&b));
}
