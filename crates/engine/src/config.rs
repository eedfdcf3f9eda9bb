//! Engine configuration and the layout of its directories.

use std::path::{Path, PathBuf};

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
}

impl EngineConfig {
    pub fn new(data_root: &Path, exec_root: &Path, berth_exe: &Path) -> EngineConfig {
        EngineConfig {
            data_root: data_root.to_path_buf(),
            exec_root: exec_root.to_path_buf(),
            berth_exe: berth_exe.to_path_buf(),
            cgroup_parent: "berth".to_string(),
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
