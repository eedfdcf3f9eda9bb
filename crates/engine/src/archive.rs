//! Image archives: `docker import` (a rootfs tarball → one-layer image), `docker load`
//! (docker-archive as written by `docker save`, and OCI image layouts), and `docker save`
//! (docker-archive with manifest.json, repositories, `<config>.json`, `<diff-id>/layer.tar`, plus
//! `oci-layout`/`index.json` so OCI tools can read it too). Untrusted input: every path inside an
//! archive is checked, digests are verified, nothing is recorded unless all of it is stored.

use std::io::{Read, Write};

use crate::images::ImageService;
use crate::Result;

/// Options of `POST /images/create?fromSrc=-`.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// `repo[:tag]` to tag the result with (from `repo` and `tag` query parameters).
    pub reference: Option<String>,
    /// Dockerfile-like `--change` instructions (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, VOLUME,
    /// WORKDIR, STOPSIGNAL).
    pub changes: Vec<String>,
    pub message: Option<String>,
    pub platform: Option<String>,
}

/// Import a rootfs tarball (plain, gzip or zstd). Returns the new image id. Emits `import`.
pub fn import(images: &ImageService, r: &mut dyn Read, opts: &ImportOptions) -> Result<berth_store::Digest> {
    todo!("{:p} {:p} {opts:?}", images, r)
}

/// Load a docker-archive or OCI-layout tarball. Returns the lines Docker prints
/// ("Loaded image: busybox:latest" or "Loaded image ID: sha256:..."). Emits `load` (and `tag`).
pub fn load(images: &ImageService, r: &mut dyn Read) -> Result<Vec<String>> {
    todo!("{:p} {:p}", images, r)
}

/// Write the named images (references or ids) as one archive. 404 if any is unknown.
pub fn save(images: &ImageService, names: &[String], w: &mut dyn Write) -> Result<()> {
    todo!("{:p} {names:?} {:p}", images, w)
}
