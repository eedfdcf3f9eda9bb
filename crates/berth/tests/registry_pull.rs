//! Pulling images from a real registry (Debian's docker-registry on 127.0.0.1, see
//! common/registry.rs) with the docker CLI and berth's CLI.

mod common;

use common::registry::{self, Registry};
use common::TestDaemon;

#[test]
fn harness_registry_holds_a_pushed_busybox() {
    let d = TestDaemon::start();
    let reg = Registry::start();
    let digest = reg.push_busybox(&d, "bb/harness:1", false);
    assert!(digest.starts_with("sha256:"), "{digest}");
    let m = reg.get_manifest("bb/harness", "1");
    let v: serde_json::Value = serde_json::from_slice(&m).unwrap();
    assert_eq!(
        v["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    let layer = v["layers"][0]["digest"].as_str().unwrap();
    let blob = reg.get_blob("bb/harness", layer);
    assert_eq!(registry::sha256_digest(&blob), layer);
}
