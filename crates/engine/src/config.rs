//! Engine configuration and the layout of its directories.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The daemon configuration file (`--config-file`, JSON shaped like dockerd's daemon.json).
/// Keys berth does not know are reported by [`DaemonFile::unknown_keys`] and otherwise ignored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct DaemonFile {
    /// Registries reached over plain HTTP / unverified TLS ("host:port" or CIDR), as dockerd.
    pub insecure_registries: Vec<String>,
    /// Mirrors tried before Docker Hub (URLs), as dockerd.
    pub registry_mirrors: Vec<String>,
    /// Address/prefix of the default bridge, e.g. "10.88.0.1/16" (dockerd's `bip`).
    pub bip: Option<String>,
    /// Name of berth's default bridge device (default "berth0"); "none" disables the default
    /// bridge network. (dockerd's `bridge` names an existing bridge; berth creates its own.)
    pub bridge: Option<String>,
    /// Pools user-defined networks get their subnets from.
    pub default_address_pools: Vec<AddressPool>,
    /// DNS servers, search domains and options for containers (dockerd's `dns*`).
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_opts: Vec<String>,
    /// Publish ports with a userland proxy for loopback clients (dockerd's `userland-proxy`).
    pub userland_proxy: Option<bool>,
    /// Name of the nftables table berth owns (berth extension; default "berth"). Tests give each
    /// engine its own so that parallel engines do not touch each other's rules.
    pub nft_table: Option<String>,
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct AddressPool {
    /// e.g. "10.89.0.0/16"
    pub base: String,
    /// prefix length of each network carved from `base`, e.g. 24
    pub size: u8,
}

impl DaemonFile {
    /// Parse a daemon.json; a syntax error names the file.
    pub fn load(path: &Path) -> std::result::Result<DaemonFile, String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "unable to configure the daemon with file {}: {e}",
                path.display()
            )
        })?;
        serde_json::from_str(&text).map_err(|e| {
            format!(
                "unable to configure the daemon with file {}: {e}",
                path.display()
            )
        })
    }
    /// Keys present in the file that berth does not use.
    pub fn unknown_keys(&self) -> Vec<String> {
        self.other.keys().cloned().collect()
    }
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Default /var/lib/berth.
    pub data_root: PathBuf,
    /// Default /run/berth.
    pub exec_root: PathBuf,
    /// The berth executable, run as `berth shim` (default: /proc/self/exe resolved at start).
    pub berth_exe: PathBuf,
    /// Parent of every container cgroup (default "berth"); tests use a unique one.
    pub cgroup_parent: String,
    /// What `--config-file` said (all defaults when there is none).
    pub daemon: DaemonFile,
}

impl EngineConfig {
    pub fn new(data_root: &Path, exec_root: &Path, berth_exe: &Path) -> EngineConfig {
        EngineConfig {
            data_root: data_root.to_path_buf(),
            exec_root: exec_root.to_path_buf(),
            berth_exe: berth_exe.to_path_buf(),
            cgroup_parent: "berth".to_string(),
            daemon: DaemonFile::default(),
        }
    }
    pub fn content_dir(&self) -> PathBuf {
        self.data_root.join("content")
    }
    pub fn layers_dir(&self) -> PathBuf {
        self.data_root.join("layers")
    }
    pub fn containers_dir(&self) -> PathBuf {
        self.data_root.join("containers")
    }
    pub fn tmp_dir(&self) -> PathBuf {
        self.data_root.join("tmp")
    }
    pub fn db_path(&self) -> PathBuf {
        self.data_root.join("metadata.db")
    }
    pub fn shims_dir(&self) -> PathBuf {
        self.exec_root.join("shims")
    }
    pub fn runtime_root(&self) -> PathBuf {
        self.exec_root.join("runtime")
    }
}
