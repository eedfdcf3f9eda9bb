//! `berth daemon`: dockerd's flags, then the API server.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "berth daemon",
    about = "Run the berth engine (serves the Docker Engine API)"
)]
struct DaemonArgs {
    /// Root directory of persistent state.
    #[arg(long, default_value = "/var/lib/berth")]
    data_root: PathBuf,
    /// Root directory of execution state.
    #[arg(long, default_value = "/run/berth")]
    exec_root: PathBuf,
    /// Daemon socket to listen on (unix:///path).
    #[arg(
        short = 'H',
        long = "host",
        default_value = "unix:///run/berth/berth.sock"
    )]
    host: Vec<String>,
    /// Parent cgroup of every container.
    #[arg(long, default_value = "berth")]
    cgroup_parent: String,
    /// Daemon configuration file (JSON, like dockerd's daemon.json).
    #[arg(long)]
    config_file: Option<PathBuf>,
    /// Enable debug logging.
    #[arg(short = 'D', long)]
    debug: bool,
    /// Log level (debug, info, warn, error).
    #[arg(short = 'l', long, default_value = "info")]
    log_level: String,
}

pub fn run(args: &[OsString]) -> i32 {
    let a = match DaemonArgs::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let level = if a.debug {
        "debug".to_string()
    } else {
        a.log_level.clone()
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();

    let mut sockets = Vec::new();
    for h in &a.host {
        match h.strip_prefix("unix://") {
            Some(p) => sockets.push(PathBuf::from(p)),
            None => {
                eprintln!("berth daemon: unsupported host {h:?}: only unix:// sockets are served");
                return 1;
            }
        }
    }
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("berth daemon: cannot find own executable: {e}");
            return 1;
        }
    };
    let mut cfg = berth_engine::EngineConfig::new(&a.data_root, &a.exec_root, &exe);
    cfg.cgroup_parent = a.cgroup_parent;
    if let Some(path) = &a.config_file {
        match berth_engine::config::DaemonFile::load(path) {
            Ok(d) => {
                for k in d.unknown_keys() {
                    tracing::warn!(
                        "config file {}: unknown option {k:?} ignored",
                        path.display()
                    );
                }
                cfg.daemon = d;
            }
            Err(e) => {
                eprintln!("berth daemon: {e}");
                return 1;
            }
        }
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth daemon: {e}");
            return 1;
        }
    };
    let result = rt.block_on(berth_api::serve(cfg, sockets));
    // Do not wait for in-flight streams (follow logs, events): containers live on without us.
    rt.shutdown_background();
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("berth daemon: {e:#}");
            1
        }
    }
}
