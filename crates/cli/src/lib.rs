//! berth-cli: docker's verbs and flags, talking to the engine only through the Docker Engine API.

use std::ffi::OsString;

/// Run the CLI with the process arguments (argv[0] included). Returns the exit code.
pub fn run(args: Vec<OsString>) -> i32 {
    let _ = args;
    eprintln!("berth: the CLI is not built yet");
    1
}
