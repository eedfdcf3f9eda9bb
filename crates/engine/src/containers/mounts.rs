//! A container's mounts: HostConfig `Binds` (`-v`), `Mounts` (`--mount`), `Tmpfs`, `VolumesFrom`,
//! Config `Volumes` (`-v /path`) and the image's VOLUME are turned into a plan at create
//! (validated, volumes created), saved as `containers/<id>/mounts.json`; at start the plan becomes
//! OCI spec mounts (volumes mounted and copied-up, targets created inside the root). `--device`
//! entries are added to the spec at start too.

use std::collections::HashSet;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use bollard_stubs::models::{ContainerConfig, HostConfig, MountType};
use oci_spec::runtime::{
    LinuxDeviceBuilder, LinuxDeviceCgroupBuilder, LinuxDeviceType, Mount, MountBuilder, Spec,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{ContainerService, Record};
use crate::volumes::{invalid_name_msg, valid_name, CreateVolume, VolumeService};
use crate::{EngineError, Result};

/// One planned mount (Docker's MountPoint).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MountPoint {
    /// `volume`, `bind` or `tmpfs`.
    pub typ: String,
    /// Volume name (64 hex for anonymous ones).
    pub name: String,
    /// Host path of a bind.
    pub source: String,
    pub destination: String,
    pub rw: bool,
    /// The mode as given (`ro`, `z`, ...), shown by inspect.
    pub mode: String,
    pub propagation: String,
    pub anonymous: bool,
    pub nocopy: bool,
    pub subpath: String,
    /// tmpfs mount options (size=, mode=, ...).
    pub options: Vec<String>,
    /// Bind: not recursive (`bind-recursive=disabled`).
    pub non_recursive: bool,
}

const PLAN_FILE: &str = "mounts.json";

/// The saved plan of a container (empty if none).
pub fn load_plan(container_dir: &Path) -> Vec<MountPoint> {
    std::fs::read(container_dir.join(PLAN_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn bad(msg: String) -> EngineError {
    EngineError::InvalidArgument(msg)
}

fn invalid_cfg(typ: &str, msg: &str) -> EngineError {
    bad(format!("invalid mount config for type \"{typ}\": {msg}"))
}

fn clean(p: &str) -> String {
    let mut out = PathBuf::from("/");
    for c in Path::new(p).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out.to_string_lossy().into_owned()
}

fn check_destination(typ: &str, dst: &str) -> Result<String> {
    if dst.is_empty() {
        return Err(invalid_cfg(typ, "field Target must not be empty"));
    }
    if !dst.starts_with('/') {
        return Err(invalid_cfg(
            typ,
            &format!("invalid mount path: '{dst}' mount path must be absolute"),
        ));
    }
    let d = clean(dst);
    if d == "/" {
        return Err(bad("invalid specification: destination can't be '/'".into()));
    }
    Ok(d)
}

const PROPAGATIONS: &[&str] = &[
    "private", "rprivate", "shared", "rshared", "slave", "rslave",
];

/// `-v` / Binds: `[src:]dst[:mode]`.
fn parse_bind(spec: &str) -> Result<MountPoint> {
    let invalid = || bad(format!("invalid volume specification: '{spec}'"));
    let arr: Vec<&str> = spec.splitn(4, ':').collect();
    if arr.first().map(|s| s.is_empty()).unwrap_or(true) {
        return Err(invalid());
    }
    let (src, dst, mode) = match arr.as_slice() {
        [d] => ("", *d, ""),
        [a, b] if valid_mode(b) && !b.starts_with('/') => ("", *a, *b),
        [a, b] => (*a, *b, ""),
        [a, b, c] => (*a, *b, *c),
        _ => return Err(invalid()),
    };
    if !valid_mode(mode) {
        return Err(bad(format!("invalid mode: {mode}")));
    }
    let typ = if src.starts_with('/') {
        "bind"
    } else {
        "volume"
    };
    let destination = check_destination(typ, dst)?;
    let mut m = MountPoint {
        typ: typ.into(),
        destination,
        rw: true,
        mode: mode.into(),
        ..MountPoint::default()
    };
    for o in mode.split(',') {
        match o {
            "ro" => m.rw = false,
            "nocopy" => m.nocopy = true,
            p if PROPAGATIONS.contains(&p) => m.propagation = p.into(),
            _ => {}
        }
    }
    if typ == "bind" {
        if m.nocopy {
            return Err(bad(format!("invalid mode: {mode}")));
        }
        m.source = clean(src);
        if m.propagation.is_empty() {
            m.propagation = "rprivate".into();
        }
    } else {
        if !m.propagation.is_empty() {
            return Err(bad(format!("invalid mode: {mode}")));
        }
        if src.is_empty() {
            m.anonymous = true;
        } else if !valid_name(src) {
            return Err(bad(format!("create {src}: {}", invalid_name_msg(src))));
        }
        m.name = src.into();
        if m.mode.is_empty() {
            m.mode = "z".into();
        }
    }
    Ok(m)
}

fn valid_mode(mode: &str) -> bool {
    if mode.is_empty() {
        return true;
    }
    let (mut rw, mut label, mut prop, mut copy, mut cons) = (0, 0, 0, 0, 0);
    for o in mode.split(',') {
        match o {
            "ro" | "rw" => rw += 1,
            "z" | "Z" => label += 1,
            "nocopy" => copy += 1,
            "consistent" | "cached" | "delegated" => cons += 1,
            p if PROPAGATIONS.contains(&p) => prop += 1,
            _ => return false,
        }
    }
    rw <= 1 && label <= 1 && prop <= 1 && copy <= 1 && cons <= 1
}

/// `--mount` / Mounts.
fn parse_mount(m: &bollard_stubs::models::Mount) -> Result<MountPoint> {
    let typ = match m.typ {
        Some(MountType::BIND) => "bind",
        Some(MountType::VOLUME) | None => "volume",
        Some(MountType::TMPFS) => "tmpfs",
        Some(other) => return Err(bad(format!("mount type unknown or not supported: {other}"))),
    };
    let destination = check_destination(typ, m.target.as_deref().unwrap_or(""))?;
    let source = m.source.clone().unwrap_or_default();
    let ro = m.read_only.unwrap_or(false);
    let mut mp = MountPoint {
        typ: typ.into(),
        destination,
        rw: !ro,
        ..MountPoint::default()
    };
    if typ != "bind" && m.bind_options.is_some() {
        return Err(invalid_cfg(typ, "field BindOptions must not be specified"));
    }
    if typ != "volume" && m.volume_options.is_some() {
        return Err(invalid_cfg(
            typ,
            "field VolumeOptions must not be specified",
        ));
    }
    if typ != "tmpfs" && m.tmpfs_options.is_some() {
        return Err(invalid_cfg(typ, "field TmpfsOptions must not be specified"));
    }
    match typ {
        "bind" => {
            if source.is_empty() {
                return Err(invalid_cfg(typ, "field Source must not be empty"));
            }
            if !source.starts_with('/') {
                return Err(invalid_cfg(
                    typ,
                    &format!("invalid mount path: '{source}' mount path must be absolute"),
                ));
            }
            let bo = m.bind_options.clone().unwrap_or_default();
            let create = bo.create_mountpoint.unwrap_or(false);
            if !create && std::fs::metadata(&source).is_err() {
                return Err(invalid_cfg(
                    typ,
                    &format!("bind source path does not exist: {source}"),
                ));
            }
            mp.source = clean(&source);
            mp.propagation = bo
                .propagation
                .map(|p| p.to_string())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "rprivate".into());
            mp.non_recursive = bo.non_recursive.unwrap_or(false);
        }
        "volume" => {
            let vo = m.volume_options.clone().unwrap_or_default();
            if let Some(d) = vo.driver_config.as_ref().and_then(|d| d.name.as_deref()) {
                if !d.is_empty() && d != "local" {
                    return Err(EngineError::NotFound(format!(
                        "error looking up volume plugin {d}: plugin \"{d}\" not found"
                    )));
                }
            }
            if source.is_empty() {
                mp.anonymous = true;
            } else if !valid_name(&source) {
                return Err(bad(format!(
                    "create {source}: {}",
                    invalid_name_msg(&source)
                )));
            }
            mp.name = source;
            mp.nocopy = vo.no_copy.unwrap_or(false);
            let sub = vo.subpath.unwrap_or_default();
            if !sub.is_empty() {
                let p = Path::new(&sub);
                if p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir)) {
                    return Err(invalid_cfg(
                        typ,
                        "subpath must be a relative path within the volume",
                    ));
                }
                mp.subpath = sub;
            }
        }
        _ => {
            if !source.is_empty() {
                return Err(invalid_cfg(typ, "field Source must not be specified"));
            }
            let to = m.tmpfs_options.clone().unwrap_or_default();
            if let Some(s) = to.size_bytes.filter(|s| *s > 0) {
                mp.options.push(format!("size={s}"));
            }
            if let Some(md) = to.mode.filter(|m| *m != 0) {
                mp.options.push(format!("mode={md:o}"));
            }
            for o in to.options.unwrap_or_default() {
                mp.options.push(o.join("="));
            }
        }
    }
    Ok(mp)
}

/// `--tmpfs /path[:opts]`.
fn parse_tmpfs(path: &str, opts: &str) -> Result<MountPoint> {
    let destination = check_destination("tmpfs", path)?;
    let mut rw = true;
    let mut options = Vec::new();
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => rw = false,
            "rw" => rw = true,
            _ => options.push(o.to_string()),
        }
    }
    Ok(MountPoint {
        typ: "tmpfs".into(),
        destination,
        rw,
        mode: opts.into(),
        options,
        ..MountPoint::default()
    })
}

impl ContainerService {
    /// Build and validate the mount plan of a new container (no volume is created yet).
    pub(super) fn plan_mounts(
        &self,
        hc: &HostConfig,
        cfg: &ContainerConfig,
        image_volumes: &[String],
    ) -> Result<Vec<MountPoint>> {
        let mut plan: Vec<MountPoint> = Vec::new();
        // --volumes-from first: later mounts of the same destination replace them.
        for vf in hc.volumes_from.clone().unwrap_or_default() {
            let (name, mode) = match vf.rsplit_once(':') {
                Some((n, m)) if matches!(m, "ro" | "rw") => (n.to_string(), m.to_string()),
                Some(_) => return Err(bad(format!("invalid mode for volumes-from: {vf}"))),
                None => (vf.clone(), String::new()),
            };
            let other = self.get(&name)?;
            for mut m in load_plan(&self.dir(&other.id())) {
                if m.typ == "tmpfs" {
                    continue;
                }
                match mode.as_str() {
                    "ro" => m.rw = false,
                    "rw" => m.rw = true,
                    _ => {}
                }
                m.anonymous = false;
                plan.retain(|p| p.destination != m.destination);
                plan.push(m);
            }
        }
        let mut own: Vec<MountPoint> = Vec::new();
        for b in hc.binds.clone().unwrap_or_default() {
            own.push(parse_bind(&b)?);
        }
        for m in hc.mounts.clone().unwrap_or_default() {
            own.push(parse_mount(&m)?);
        }
        for (path, opts) in hc.tmpfs.clone().unwrap_or_default() {
            own.push(parse_tmpfs(&path, &opts)?);
        }
        let mut seen = HashSet::new();
        for m in &own {
            if !seen.insert(m.destination.clone()) {
                return Err(bad(format!("Duplicate mount point: {}", m.destination)));
            }
        }
        for m in own {
            plan.retain(|p| p.destination != m.destination);
            plan.push(m);
        }
        // `-v /path` (Config.Volumes) and the image's VOLUMEs: anonymous volumes where nothing
        // else is mounted.
        let mut anon: Vec<String> = cfg.volumes.clone().unwrap_or_default();
        anon.sort();
        anon.extend(image_volumes.iter().cloned());
        for v in anon {
            // The docker CLI may also list `src:dst` specs here; they come as Binds too.
            if v.contains(':') {
                continue;
            }
            let d = check_destination("volume", &v)?;
            if plan.iter().any(|p| p.destination == d) {
                continue;
            }
            plan.push(MountPoint {
                typ: "volume".into(),
                destination: d,
                rw: true,
                anonymous: true,
                ..MountPoint::default()
            });
        }
        if let Some(devs) = &hc.devices {
            for d in devs {
                let host = d.path_on_host.as_deref().unwrap_or("");
                if std::fs::metadata(host).is_err() {
                    return Err(bad(format!(
                        "error gathering device information while adding custom device \"{host}\": no such file or directory"
                    )));
                }
            }
        }
        Ok(plan)
    }

    /// Create the plan's volumes (named ones that are missing, anonymous ones) and save it.
    /// Blocking.
    pub(super) fn commit_plan(&self, dir: &Path, mut plan: Vec<MountPoint>) -> Result<()> {
        for m in plan.iter_mut().filter(|m| m.typ == "volume") {
            if m.name.is_empty() || !self.volumes.exists(&m.name) {
                let (rec, created) = self.volumes.create(CreateVolume {
                    name: m.name.clone(),
                    ..CreateVolume::default()
                })?;
                m.name = rec.name.clone();
                if created {
                    self.events
                        .emit("volume", "create", &rec.name, Default::default());
                }
            }
        }
        let json =
            serde_json::to_vec_pretty(&plan).map_err(|e| EngineError::Internal(e.to_string()))?;
        berth_store::atomic::write_file(&dir.join(PLAN_FILE), &json)?;
        Ok(())
    }

    /// Docker's `Mounts` array of inspect.
    pub fn mounts_json(&self, id: &str) -> Value {
        let plan = load_plan(&self.dir(id));
        Value::Array(
            plan.iter()
                .map(|m| match m.typ.as_str() {
                    "volume" => json!({
                        "Type": "volume",
                        "Name": m.name,
                        "Source": self.volumes.data_path(&m.name),
                        "Destination": m.destination,
                        "Driver": "local",
                        "Mode": m.mode,
                        "RW": m.rw,
                        "Propagation": m.propagation,
                    }),
                    "bind" => json!({
                        "Type": "bind",
                        "Source": m.source,
                        "Destination": m.destination,
                        "Mode": m.mode,
                        "RW": m.rw,
                        "Propagation": m.propagation,
                    }),
                    _ => json!({
                        "Type": "tmpfs",
                        "Source": "",
                        "Destination": m.destination,
                        "Mode": m.mode,
                        "RW": m.rw,
                        "Propagation": m.propagation,
                    }),
                })
                .collect(),
        )
    }

    /// Anonymous volumes of a container (for `rm -v`).
    pub(super) fn anonymous_volumes(&self, id: &str) -> Vec<String> {
        load_plan(&self.dir(id))
            .into_iter()
            .filter(|m| m.typ == "volume" && m.anonymous)
            .map(|m| m.name)
            .collect()
    }

    /// Add the plan's mounts and the `--device`s to a built spec. Blocking; runs at start with
    /// the rootfs mounted.
    pub(super) fn add_mounts(&self, rec: &Record, rootfs: &Path, spec: &mut Spec) -> Result<()> {
        let plan = load_plan(&self.dir(&rec.id));
        let mut user = Vec::new();
        for m in &plan {
            user.push(self.oci_mount(m, rootfs)?);
        }
        let is_system = |d: &str| {
            ["/proc", "/dev", "/sys"]
                .iter()
                .any(|p| d == *p || d.starts_with(&format!("{p}/")))
        };
        let dests: HashSet<String> = plan.iter().map(|m| m.destination.clone()).collect();
        let existing = spec.mounts().clone().unwrap_or_default();
        let (system, rest): (Vec<Mount>, Vec<Mount>) = existing
            .into_iter()
            .partition(|m| is_system(&m.destination().to_string_lossy()));
        let mut tail: Vec<Mount> = rest
            .into_iter()
            .filter(|m| !dests.contains(m.destination().to_string_lossy().as_ref()))
            .chain(user)
            .collect();
        // Parents before children (Docker sorts by path depth), stable otherwise.
        tail.sort_by_key(|m| m.destination().components().count());
        let mut all: Vec<Mount> = system
            .into_iter()
            .filter(|m| !dests.contains(m.destination().to_string_lossy().as_ref()))
            .collect();
        all.extend(tail);
        spec.set_mounts(Some(all));
        add_devices(&rec.host_config, spec)
    }

    fn oci_mount(&self, m: &MountPoint, rootfs: &Path) -> Result<Mount> {
        let dst = Path::new(&m.destination);
        let mut opts: Vec<String> = Vec::new();
        let (typ, source) = match m.typ.as_str() {
            "tmpfs" => {
                berth_store::safepath::mkdir_all_in_root(rootfs, dst, 0o755)?;
                let mut base: Vec<String> = vec!["nosuid".into(), "nodev".into(), "noexec".into()];
                for o in &m.options {
                    match o.as_str() {
                        "exec" => base.retain(|b| b != "noexec"),
                        "suid" => base.retain(|b| b != "nosuid"),
                        "dev" => base.retain(|b| b != "nodev"),
                        _ => base.push(o.clone()),
                    }
                }
                opts = base;
                ("tmpfs", PathBuf::from("tmpfs"))
            }
            "bind" => {
                let src = PathBuf::from(&m.source);
                if !src.exists() {
                    // `-v /host:/path` creates a missing host directory, as Docker does.
                    std::fs::create_dir_all(&src)?;
                }
                if src.is_dir() {
                    berth_store::safepath::mkdir_all_in_root(rootfs, dst, 0o755)?;
                } else if let Some(parent) = dst.parent() {
                    berth_store::safepath::mkdir_all_in_root(rootfs, parent, 0o755)?;
                }
                opts.push(if m.non_recursive { "bind" } else { "rbind" }.into());
                ("bind", src)
            }
            _ => {
                let vol = self.volumes.get(&m.name)?;
                let data = self.volumes.ensure_mounted(&vol)?;
                berth_store::safepath::mkdir_all_in_root(rootfs, dst, 0o755)?;
                if !m.nocopy && m.subpath.is_empty() && VolumeService::is_empty(&data) {
                    super::copyup::copy_up(rootfs, dst, &data)?;
                }
                let src = if m.subpath.is_empty() {
                    data
                } else {
                    subpath_in(&data, &m.subpath)?
                };
                opts.push("rbind".into());
                ("bind", src)
            }
        };
        if !m.rw {
            opts.push("ro".into());
        }
        if typ == "bind" {
            let p = if m.propagation.is_empty() {
                "rprivate"
            } else {
                m.propagation.as_str()
            };
            opts.push(p.into());
        }
        MountBuilder::default()
            .destination(dst)
            .typ(typ)
            .source(source)
            .options(opts)
            .build()
            .map_err(|e| EngineError::Internal(format!("mount {}: {e}", m.destination)))
    }
}

/// A volume's subpath: must exist, and no component may be a symlink (it could lead out).
fn subpath_in(data: &Path, sub: &str) -> Result<PathBuf> {
    let mut p = data.to_path_buf();
    for c in Path::new(sub).components() {
        let Component::Normal(n) = c else { continue };
        p.push(n);
        let meta = std::fs::symlink_metadata(&p).map_err(|_| {
            bad(format!(
                "cannot access path {}: no such file or directory",
                p.display()
            ))
        })?;
        if meta.file_type().is_symlink() {
            return Err(bad(format!("subpath {sub} must not contain symlinks")));
        }
    }
    Ok(p)
}

/// `--device host[:container[:perms]]`: the node and a cgroup rule allowing it.
fn add_devices(hc: &HostConfig, spec: &mut Spec) -> Result<()> {
    let devs = hc.devices.clone().unwrap_or_default();
    if devs.is_empty() {
        return Ok(());
    }
    let Some(mut linux) = spec.linux().clone() else {
        return Ok(());
    };
    let mut nodes = linux.devices().clone().unwrap_or_default();
    let mut res = linux.resources().clone().unwrap_or_default();
    let mut rules = res.devices().clone().unwrap_or_default();
    for d in devs {
        let host = d.path_on_host.clone().unwrap_or_default();
        let inner = d
            .path_in_container
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| host.clone());
        let perms = d
            .cgroup_permissions
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "rwm".into());
        let meta = std::fs::metadata(&host).map_err(|e| {
            bad(format!(
                "error gathering device information while adding custom device \"{host}\": {e}"
            ))
        })?;
        let ft = meta.file_type();
        let typ = if ft.is_char_device() {
            LinuxDeviceType::C
        } else if ft.is_block_device() {
            LinuxDeviceType::B
        } else {
            return Err(bad(format!(
                "error gathering device information while adding custom device \"{host}\": not a device node"
            )));
        };
        let (major, minor) = (
            libc::major(meta.rdev()) as i64,
            libc::minor(meta.rdev()) as i64,
        );
        let oe = |e: oci_spec::OciSpecError| EngineError::Internal(e.to_string());
        nodes.retain(|n| n.path() != Path::new(&inner));
        nodes.push(
            LinuxDeviceBuilder::default()
                .path(inner)
                .typ(typ)
                .major(major)
                .minor(minor)
                .file_mode(meta.mode() & 0o7777)
                .uid(0u32)
                .gid(0u32)
                .build()
                .map_err(oe)?,
        );
        rules.push(
            LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .typ(typ)
                .major(major)
                .minor(minor)
                .access(perms)
                .build()
                .map_err(oe)?,
        );
    }
    res.set_devices(Some(rules));
    linux.set_devices(Some(nodes));
    linux.set_resources(Some(res));
    spec.set_linux(Some(linux));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds() {
        let m = parse_bind("data:/srv:ro").unwrap();
        assert_eq!(
            (m.typ.as_str(), m.name.as_str(), m.rw),
            ("volume", "data", false)
        );
        let m = parse_bind("/host:/x").unwrap();
        assert_eq!(
            (m.typ.as_str(), m.source.as_str(), m.propagation.as_str()),
            ("bind", "/host", "rprivate")
        );
        let m = parse_bind("/anon").unwrap();
        assert!(m.anonymous);
        let m = parse_bind("data:/d:nocopy").unwrap();
        assert!(m.nocopy);
        assert!(parse_bind("data:/d:bogus").is_err());
        assert!(parse_bind("/h:/d:nocopy").is_err());
        assert!(parse_bind("data:rel").is_err());
        assert!(parse_bind("data:/").is_err());
        assert!(parse_bind("a:b:c:d").is_err());
        assert!(parse_bind("in valid:/d").is_err());
    }

    #[test]
    fn mount_errors() {
        let m = bollard_stubs::models::Mount {
            typ: Some(MountType::BIND),
            source: Some("/nope-berth-test".into()),
            target: Some("/x".into()),
            ..Default::default()
        };
        assert_eq!(
            parse_mount(&m).unwrap_err().to_string(),
            "invalid mount config for type \"bind\": bind source path does not exist: /nope-berth-test"
        );
        let t = bollard_stubs::models::Mount {
            typ: Some(MountType::TMPFS),
            target: Some("/t".into()),
            tmpfs_options: Some(bollard_stubs::models::MountTmpfsOptions {
                size_bytes: Some(1 << 20),
                mode: Some(0o700),
                options: None,
            }),
            ..Default::default()
        };
        let mp = parse_mount(&t).unwrap();
        assert_eq!(mp.options, vec!["size=1048576", "mode=700"]);
    }
}
