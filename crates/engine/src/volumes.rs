//! The volume service: Docker's `local` driver. A volume is a record in the metadata db (table
//! `volumes`) and a directory `<data-root>/volumes/<name>/_data`. With `-o type=.. -o device=..
//! -o o=..` the directory is a mount point, mounted at first use (tmpfs, bind, nfs, ...).
//! Which containers use a volume is known from their mount plans (`containers::mounts`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use berth_store::meta::Db;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::{EngineError, Result};

pub const TABLE: &str = "volumes";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VolumeRecord {
    pub name: String,
    pub created_at: String,
    #[serde(default)]
    pub labels: HashMap<String, String>,
    /// The local driver's options (`type`, `device`, `o`).
    #[serde(default)]
    pub options: HashMap<String, String>,
    /// Made for `-v /path` or an image's VOLUME (removed by `rm -v`).
    #[serde(default)]
    pub anonymous: bool,
}

/// Options of `POST /volumes/create`.
#[derive(Debug, Clone, Default)]
pub struct CreateVolume {
    pub name: String,
    pub driver: String,
    pub labels: HashMap<String, String>,
    pub options: HashMap<String, String>,
}

pub struct VolumeService {
    db: Arc<Db>,
    root: PathBuf,
    /// Serialises create/remove (create of an existing name returns it).
    lock: Mutex<()>,
}

/// Docker's volume name rule.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    name.len() >= 2 && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

pub fn invalid_name_msg(name: &str) -> String {
    format!(
        "\"{name}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
    )
}

fn lock_err<T>(_: T) -> EngineError {
    EngineError::Internal("volume lock poisoned".into())
}

impl VolumeService {
    pub fn new(root: PathBuf, db: Arc<Db>) -> Arc<Self> {
        Arc::new(VolumeService {
            db,
            root,
            lock: Mutex::new(()),
        })
    }

    pub fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// The host path of the volume's data (its mount point).
    pub fn data_path(&self, name: &str) -> PathBuf {
        self.dir(name).join("_data")
    }

    pub fn get(&self, name: &str) -> Result<VolumeRecord> {
        self.db
            .get::<VolumeRecord>(TABLE, name)?
            .ok_or_else(|| EngineError::NotFound(format!("get {name}: no such volume")))
    }

    pub fn exists(&self, name: &str) -> bool {
        matches!(self.db.get::<VolumeRecord>(TABLE, name), Ok(Some(_)))
    }

    pub fn list(&self) -> Result<Vec<VolumeRecord>> {
        let mut v: Vec<VolumeRecord> = self
            .db
            .list::<VolumeRecord>(TABLE)?
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    /// Create a volume, or return the existing one of that name (Docker's rule). Blocking.
    pub fn create(&self, req: CreateVolume) -> Result<(VolumeRecord, bool)> {
        let driver = if req.driver.is_empty() {
            "local"
        } else {
            req.driver.as_str()
        };
        if driver != "local" {
            return Err(EngineError::NotFound(format!(
                "error looking up volume plugin {driver}: plugin \"{driver}\" not found"
            )));
        }
        let anonymous = req.name.is_empty();
        let name = if anonymous {
            berth_store::atomic::random_hex(32)
        } else {
            req.name.clone()
        };
        if !valid_name(&name) {
            return Err(EngineError::InvalidArgument(format!(
                "create {name}: {}",
                invalid_name_msg(&name)
            )));
        }
        for k in req.options.keys() {
            if !matches!(k.as_str(), "type" | "device" | "o" | "size") {
                return Err(EngineError::InvalidArgument(format!(
                    "create {name}: invalid option key: \"{k}\""
                )));
            }
        }
        let has_type = req.options.contains_key("type");
        let has_device = req.options.contains_key("device");
        if has_type != has_device {
            return Err(EngineError::InvalidArgument(format!(
                "create {name}: missing required option: \"{}\"",
                if has_type { "device" } else { "type" }
            )));
        }
        let _g = self.lock.lock().map_err(lock_err)?;
        if let Some(existing) = self.db.get::<VolumeRecord>(TABLE, &name)? {
            return Ok((existing, false));
        }
        let data = self.data_path(&name);
        std::fs::create_dir_all(&data)?;
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&self.root, std::fs::Permissions::from_mode(0o701));
        }
        let rec = VolumeRecord {
            name: name.clone(),
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            labels: req.labels,
            options: req.options,
            anonymous,
        };
        self.db.put(TABLE, &name, &rec)?;
        Ok((rec, true))
    }

    /// Mount a volume with driver options (once); returns its data path. Blocking.
    pub fn ensure_mounted(&self, rec: &VolumeRecord) -> Result<PathBuf> {
        let data = self.data_path(&rec.name);
        std::fs::create_dir_all(&data)?;
        let (Some(typ), Some(device)) = (rec.options.get("type"), rec.options.get("device")) else {
            return Ok(data);
        };
        if berth_store::overlay::is_mounted(&data) {
            return Ok(data);
        }
        let mut flags = nix::mount::MsFlags::empty();
        let mut data_opts = Vec::new();
        for o in rec
            .options
            .get("o")
            .map(|s| s.as_str())
            .unwrap_or("")
            .split(',')
        {
            match o {
                "" => {}
                "bind" => flags |= nix::mount::MsFlags::MS_BIND,
                "rbind" => flags |= nix::mount::MsFlags::MS_BIND | nix::mount::MsFlags::MS_REC,
                "ro" => flags |= nix::mount::MsFlags::MS_RDONLY,
                "nosuid" => flags |= nix::mount::MsFlags::MS_NOSUID,
                "nodev" => flags |= nix::mount::MsFlags::MS_NODEV,
                "noexec" => flags |= nix::mount::MsFlags::MS_NOEXEC,
                other => data_opts.push(other),
            }
        }
        let data_str = data_opts.join(",");
        nix::mount::mount(
            Some(device.as_str()),
            &data,
            Some(typ.as_str()),
            flags,
            if data_str.is_empty() {
                None
            } else {
                Some(data_str.as_str())
            },
        )
        .map_err(|e| {
            EngineError::Internal(format!(
                "error while mounting volume '{}': failed to mount local volume: mount {device}:{} , flags: {:#x}, data: {data_str}: {e}",
                rec.name,
                data.display(),
                flags.bits()
            ))
        })?;
        Ok(data)
    }

    /// Remove a volume that no container uses (the caller checked). Blocking.
    pub fn remove_unused(&self, name: &str) -> Result<()> {
        let _g = self.lock.lock().map_err(lock_err)?;
        self.get(name)?;
        let data = self.data_path(name);
        if berth_store::overlay::is_mounted(&data) {
            let _ = nix::mount::umount2(&data, nix::mount::MntFlags::MNT_DETACH);
        }
        self.db.delete(TABLE, name)?;
        if let Err(e) = std::fs::remove_dir_all(self.dir(name)) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("removing volume {name}: {e}");
            }
        }
        Ok(())
    }

    /// Docker's JSON shape of a volume (`docker volume inspect`, `/volumes`).
    pub fn to_json(&self, rec: &VolumeRecord) -> Value {
        let opts: Value = if rec.options.is_empty() {
            Value::Null
        } else {
            json!(rec.options)
        };
        let labels: Value = if rec.labels.is_empty() && rec.anonymous {
            json!({"com.docker.volume.anonymous": ""})
        } else {
            json!(rec.labels)
        };
        json!({
            "CreatedAt": rec.created_at,
            "Driver": "local",
            "Labels": labels,
            "Mountpoint": self.data_path(&rec.name),
            "Name": rec.name,
            "Options": opts,
            "Scope": "local",
        })
    }

    /// Whether `_data` is empty (copy-up only fills empty volumes).
    pub fn is_empty(path: &Path) -> bool {
        std::fs::read_dir(path)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false)
    }
}

/// Filters of `GET /volumes` and `POST /volumes/prune`.
#[derive(Debug, Clone, Default)]
pub struct VolumeFilters {
    pub dangling: Option<bool>,
    pub names: Vec<String>,
    /// `key` or `key=value`.
    pub labels: Vec<String>,
    pub label_not: Vec<String>,
    pub driver: Vec<String>,
    /// prune: every unused volume, not only anonymous ones.
    pub all: bool,
}

pub fn label_matches(labels: &HashMap<String, String>, want: &str) -> bool {
    match want.split_once('=') {
        Some((k, v)) => labels.get(k).map(|x| x == v).unwrap_or(false),
        None => labels.contains_key(want),
    }
}

impl VolumeFilters {
    pub fn matches(&self, rec: &VolumeRecord, in_use: bool) -> bool {
        if let Some(d) = self.dangling {
            if d == in_use {
                return false;
            }
        }
        if !self.names.is_empty() && !self.names.iter().any(|n| rec.name.contains(n.as_str())) {
            return false;
        }
        if !self.driver.is_empty() && !self.driver.iter().any(|d| d == "local") {
            return false;
        }
        let mut labels = rec.labels.clone();
        if rec.anonymous {
            labels.insert("com.docker.volume.anonymous".into(), String::new());
        }
        self.labels.iter().all(|l| label_matches(&labels, l))
            && !self.label_not.iter().any(|l| label_matches(&labels, l))
    }
}

impl crate::containers::ContainerService {
    /// Ids of the containers (any state) whose mounts name volume `name`.
    pub fn volume_users(&self, name: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .all()
            .into_iter()
            .map(|c| c.snapshot().id)
            .filter(|id| {
                crate::containers::mounts::load_plan(&self.dir(id))
                    .iter()
                    .any(|m| m.typ == "volume" && m.name == name)
            })
            .collect();
        ids.sort();
        ids
    }

    /// After container `id` stopped: unmount the volumes it used that have a mount of their own
    /// (`-o type/device`) and that no other running or paused container uses, as Docker's local
    /// driver does when its mount count drops to zero (a tmpfs volume's data is gone). Blocking.
    pub fn release_volumes(&self, id: &str) {
        let names: Vec<String> = crate::containers::mounts::load_plan(&self.dir(id))
            .into_iter()
            .filter(|m| m.typ == "volume")
            .map(|m| m.name)
            .collect();
        if names.is_empty() {
            return;
        }
        let running: Vec<String> = self
            .all()
            .into_iter()
            .map(|c| c.snapshot())
            .filter(|r| {
                r.id != id
                    && matches!(
                        r.state.status,
                        crate::containers::Status::Running | crate::containers::Status::Paused
                    )
            })
            .map(|r| r.id)
            .collect();
        for name in names {
            let Ok(vol) = self.volumes.get(&name) else {
                continue;
            };
            if !(vol.options.contains_key("type") && vol.options.contains_key("device")) {
                continue;
            }
            let used = running.iter().any(|other| {
                crate::containers::mounts::load_plan(&self.dir(other))
                    .iter()
                    .any(|m| m.typ == "volume" && m.name == name)
            });
            let data = self.volumes.data_path(&name);
            if !used && berth_store::overlay::is_mounted(&data) {
                if let Err(e) = nix::mount::umount2(&data, nix::mount::MntFlags::MNT_DETACH) {
                    tracing::warn!("unmounting volume {name}: {e}");
                }
            }
        }
    }

    /// `volume rm [-f]`: refused while a container uses it (Docker refuses even with -f).
    pub async fn remove_volume(&self, name: &str, force: bool) -> Result<()> {
        let vols = self.volumes.clone();
        if !vols.exists(name) {
            if force {
                return Ok(());
            }
            return Err(EngineError::NotFound(format!("get {name}: no such volume")));
        }
        let users = self.volume_users(name);
        if !users.is_empty() {
            return Err(EngineError::Conflict(format!(
                "remove {name}: volume is in use - [{}]",
                users.join(", ")
            )));
        }
        let n = name.to_string();
        tokio::task::spawn_blocking(move || vols.remove_unused(&n))
            .await
            .map_err(|e| EngineError::Internal(e.to_string()))??;
        self.events.emit("volume", "destroy", name, HashMap::new());
        Ok(())
    }

    /// `volume ls`: records with their usage.
    pub fn list_volumes(&self, f: &VolumeFilters) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        for rec in self.volumes.list()? {
            let in_use = !self.volume_users(&rec.name).is_empty();
            if f.matches(&rec, in_use) {
                out.push(self.volumes.to_json(&rec));
            }
        }
        Ok(out)
    }

    /// `volume prune`: unused anonymous volumes (every unused one with `all`). Returns the
    /// removed names and the bytes reclaimed.
    pub async fn prune_volumes(&self, f: &VolumeFilters) -> Result<(Vec<String>, u64)> {
        let mut removed = Vec::new();
        let mut space = 0u64;
        for rec in self.volumes.list()? {
            if !f.all && !rec.anonymous {
                continue;
            }
            if !self.volume_users(&rec.name).is_empty() || !f.matches(&rec, false) {
                continue;
            }
            let size = dir_size(&self.volumes.data_path(&rec.name));
            if self.remove_volume(&rec.name, false).await.is_ok() {
                space += size;
                removed.push(rec.name);
            }
        }
        Ok((removed, space))
    }
}

/// Bytes of the regular files under `p` (symlinks not followed).
pub fn dir_size(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    let mut n = 0;
    for e in rd.flatten() {
        let Ok(m) = e.path().symlink_metadata() else {
            continue;
        };
        if m.is_dir() {
            n += dir_size(&e.path());
        } else if m.is_file() {
            n += m.len();
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("data"));
        assert!(valid_name("a.b-c_d"));
        assert!(!valid_name("a"));
        assert!(!valid_name("-x"));
        assert!(!valid_name("a/b"));
    }

    #[test]
    fn create_get_remove() {
        let d = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(&d.path().join("m.db")).unwrap());
        let vs = VolumeService::new(d.path().join("volumes"), db);
        let (r, created) = vs
            .create(CreateVolume {
                name: "v1".into(),
                ..Default::default()
            })
            .unwrap();
        assert!(created);
        assert!(vs.data_path("v1").is_dir());
        let (_, again) = vs
            .create(CreateVolume {
                name: "v1".into(),
                ..Default::default()
            })
            .unwrap();
        assert!(!again);
        assert_eq!(vs.to_json(&r)["Driver"], "local");
        assert!(vs
            .create(CreateVolume {
                name: "x".into(),
                ..Default::default()
            })
            .is_err());
        let (anon, _) = vs.create(CreateVolume::default()).unwrap();
        assert_eq!(anon.name.len(), 64);
        assert!(anon.anonymous);
        vs.remove_unused("v1").unwrap();
        assert!(!vs.dir("v1").exists());
        assert!(vs.get("v1").is_err());
    }
}
