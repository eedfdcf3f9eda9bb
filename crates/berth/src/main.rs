//! The one berth binary: `berth daemon` (the engine), `berth shim` (internal: a container's monitor),
//! and every other verb is the CLI.

use std::ffi::OsString;
use std::path::Path;

mod daemon;

fn main() {
    let args: Vec<OsString> = std::env::args_os().collect();
    match args.get(1).and_then(|s| s.to_str()) {
        // The shim must start before any thread exists (libcontainer forks with clone3).
        Some("shim") => match args.get(2) {
            Some(x) if x == "exec" && args.len() == 4 => berth_shim::exec::run(Path::new(&args[3])),
            Some(dir) => berth_shim::monitor::run(Path::new(dir)),
            None => {
                eprintln!("usage: berth shim STATE_DIR");
                std::process::exit(2)
            }
        },
        Some("registry") if args.get(2).is_some_and(|s| s == "serve") => {
            std::process::exit(berth_registry::server::run(&args[2..]))
        }
        Some("daemon") => std::process::exit(daemon::run(&args[1..])),
        _ => std::process::exit(berth_cli::run(args)),
    }
}
