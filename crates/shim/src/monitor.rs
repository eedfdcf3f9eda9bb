//! The shim process. Entered from `berth shim <state-dir>` before any async runtime or thread exists.

use std::path::Path;

/// Run the shim for the state dir (which holds `shim.json`). The engine passes a ready pipe as fd 3
/// (see [`crate::client::spawn`]). Never returns: exits the process.
pub fn run(state_dir: &Path) -> ! {
    let _ = state_dir;
    todo!()
}
