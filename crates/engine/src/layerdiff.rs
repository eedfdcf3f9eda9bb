//! The one layer-diff code path behind `docker commit`, `docker diff`, `docker export` and every
//! build step: read an overlay upper directory (whiteouts as 0/0 character devices, opaque
//! directories by xattr), write it as a layer tar with Docker's whiteouts (`.wh.<name>`,
//! `.wh..wh..opq`), and store it as a new layer.

use std::io::Write;
use std::path::Path;

use berth_store::Digest;

use crate::images::{ImageService, LayerRef};
use crate::{EngineError, Result};

/// Write the tar diff of `upper` to `w` (entries sorted, whiteouts converted, no mtimes of the
/// build host leaking beyond what the files carry). Returns (diff_id = sha256 of the tar, size
/// of the tar in bytes).
pub fn write_diff(upper: &Path, w: &mut dyn Write) -> Result<(Digest, u64)> {
    let _ = (upper, w);
    Err(EngineError::Internal(
        "layerdiff::write_diff: not implemented yet".into(),
    ))
}

/// Turn the changes in `upper` into a new layer on top of `parent` (a chain id, None for a base
/// layer): the blob goes to the content store (gzip, as Docker's commit), the unpacked layer to
/// the layer store. Returns None when `upper` holds no change (Docker then records an empty
/// layer in the history only).
pub fn commit_upper(
    images: &ImageService,
    parent: Option<&Digest>,
    upper: &Path,
) -> Result<Option<LayerRef>> {
    let _ = (images, parent, upper);
    Err(EngineError::Internal(
        "layerdiff::commit_upper: not implemented yet".into(),
    ))
}
