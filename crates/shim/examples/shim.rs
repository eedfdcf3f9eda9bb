//! A stand-in for `berth shim STATE_DIR` (the shim's integration tests use it when the berth binary
//! is not built): it dispatches exactly like crates/berth/src/main.rs.

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    match (args.get(1).and_then(|s| s.to_str()), args.get(2)) {
        (Some("shim"), Some(dir)) => berth_shim::monitor::run(std::path::Path::new(dir)),
        _ => {
            eprintln!("usage: shim shim STATE_DIR");
            std::process::exit(2)
        }
    }
}
