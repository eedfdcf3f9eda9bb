//! The image config a build step writes, shaped as Docker's classic builder writes it (the
//! `config` object is Go's `container.Config` with its field order and nulls), and the commit of
//! one step: config blob → content store, image record with its parent.

use std::collections::BTreeMap;

use berth_store::Digest;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::images::{ImageRecord, ImageService, LayerRef};
use crate::{EngineError, Result};

/// Docker's default PATH, added when a stage's base has none (as the classic builder does).
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn is_false(b: &bool) -> bool {
    !*b
}

/// Go's `container.Config` as it appears in image configs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    #[serde(rename = "Hostname", default)]
    pub hostname: String,
    #[serde(rename = "Domainname", default)]
    pub domainname: String,
    #[serde(rename = "User", default)]
    pub user: String,
    #[serde(rename = "AttachStdin", default)]
    pub attach_stdin: bool,
    #[serde(rename = "AttachStdout", default)]
    pub attach_stdout: bool,
    #[serde(rename = "AttachStderr", default)]
    pub attach_stderr: bool,
    #[serde(
        rename = "ExposedPorts",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub exposed_ports: Option<BTreeMap<String, Value>>,
    #[serde(rename = "Tty", default)]
    pub tty: bool,
    #[serde(rename = "OpenStdin", default)]
    pub open_stdin: bool,
    #[serde(rename = "StdinOnce", default)]
    pub stdin_once: bool,
    #[serde(rename = "Env", default)]
    pub env: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    pub cmd: Option<Vec<String>>,
    #[serde(
        rename = "Healthcheck",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub healthcheck: Option<Value>,
    #[serde(rename = "ArgsEscaped", default, skip_serializing_if = "is_false")]
    pub args_escaped: bool,
    #[serde(rename = "Image", default)]
    pub image: String,
    #[serde(rename = "Volumes", default)]
    pub volumes: Option<BTreeMap<String, Value>>,
    #[serde(rename = "WorkingDir", default)]
    pub working_dir: String,
    #[serde(rename = "Entrypoint", default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "OnBuild", default)]
    pub on_build: Option<Vec<String>>,
    #[serde(rename = "Labels", default)]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(
        rename = "StopSignal",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub stop_signal: Option<String>,
    #[serde(rename = "Shell", default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
}

impl RunConfig {
    pub fn env_list(&self) -> &[String] {
        self.env.as_deref().unwrap_or(&[])
    }

    /// The value of `key` in Env.
    pub fn env_get(&self, key: &str) -> Option<String> {
        self.env_list()
            .iter()
            .rev()
            .find_map(|kv| match kv.split_once('=') {
                Some((k, v)) if k == key => Some(v.to_string()),
                None if kv == key => Some(String::new()),
                _ => None,
            })
    }

    /// Set `key=value` in Env (replacing an earlier value in place, as Docker does).
    pub fn env_set(&mut self, key: &str, value: &str) {
        let env = self.env.get_or_insert_with(Vec::new);
        let kv = format!("{key}={value}");
        match env
            .iter_mut()
            .find(|e| e.split_once('=').map(|(k, _)| k).unwrap_or(e.as_str()) == key)
        {
            Some(slot) => *slot = kv,
            None => env.push(kv),
        }
    }

    /// The SHELL in effect (`/bin/sh -c` by default).
    pub fn shell_or_default(&self) -> Vec<String> {
        match &self.shell {
            Some(s) if !s.is_empty() => s.clone(),
            _ => vec!["/bin/sh".to_string(), "-c".to_string()],
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub empty_layer: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type", default)]
    pub typ: String,
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// The whole image config blob (Docker's `image.Image`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImageBlob {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default)]
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default)]
    pub config: RunConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_config: Option<RunConfig>,
    #[serde(default)]
    pub created: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_version: Option<String>,
    #[serde(default)]
    pub history: Vec<History>,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub rootfs: RootFs,
}

fn bad_config(id: &Digest, e: impl std::fmt::Display) -> EngineError {
    EngineError::Internal(format!("image config {id}: {e}"))
}

impl ImageBlob {
    /// The config of an image, leniently (a null `config` is an empty one).
    pub fn of_image(images: &ImageService, rec: &ImageRecord) -> Result<ImageBlob> {
        let data = images.content.read(&rec.id)?;
        let mut v: Value = serde_json::from_slice(&data).map_err(|e| bad_config(&rec.id, e))?;
        if let Some(obj) = v.as_object_mut() {
            if obj.get("config").is_some_and(Value::is_null) {
                obj.remove("config");
            }
            // Configs written by other tools may have null lists.
            for k in ["history"] {
                if obj.get(k).is_some_and(Value::is_null) {
                    obj.remove(k);
                }
            }
        }
        serde_json::from_value(v).map_err(|e| bad_config(&rec.id, e))
    }

    /// The empty base of `FROM scratch`.
    pub fn scratch() -> ImageBlob {
        ImageBlob {
            architecture: host_arch().to_string(),
            os: "linux".to_string(),
            rootfs: RootFs {
                typ: "layers".to_string(),
                diff_ids: Vec::new(),
            },
            ..ImageBlob::default()
        }
    }
}

/// GOARCH of this host.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// The state a step starts from: an image (None = scratch with nothing committed yet).
#[derive(Debug, Clone)]
pub struct Parent {
    pub id: Option<Digest>,
    pub layers: Vec<LayerRef>,
    pub blob: ImageBlob,
}

impl Parent {
    pub fn of_image(images: &ImageService, rec: &ImageRecord) -> Result<Parent> {
        Ok(Parent {
            id: Some(rec.id.clone()),
            layers: rec.layers.clone(),
            blob: ImageBlob::of_image(images, rec)?,
        })
    }

    pub fn chain_id(&self) -> Option<&Digest> {
        self.layers.last().map(|l| &l.chain_id)
    }

    /// "sha256:..." of the parent, or "" for scratch (the key material of the cache).
    pub fn id_string(&self) -> String {
        self.id.as_ref().map(|d| d.to_string()).unwrap_or_default()
    }
}

/// Commit one step: the parent's config with `config` and a new history entry (and `layer`
/// appended when the step changed files). `step_cmd` is the Cmd of Docker's build container
/// (`[shell.., "#(nop) ", "ENV a=b"]`, or the RUN's command line): the history's `created_by` is
/// it joined with spaces. Records the image with its parent; returns it.
pub fn commit(
    images: &ImageService,
    parent: &Parent,
    config: &RunConfig,
    step_cmd: &[String],
    layer: Option<LayerRef>,
) -> Result<Parent> {
    let created_by = step_cmd.join(" ");
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let mut blob = parent.blob.clone();
    if blob.architecture.is_empty() {
        blob.architecture = host_arch().to_string();
    }
    if blob.os.is_empty() {
        blob.os = "linux".to_string();
    }
    blob.rootfs.typ = "layers".to_string();
    let mut cfg = config.clone();
    cfg.image = parent.id_string();
    let mut nop = cfg.clone();
    nop.cmd = Some(step_cmd.to_vec());
    blob.container_config = Some(nop);
    blob.config = cfg;
    blob.created = now.clone();
    blob.comment = None;
    blob.container = None;
    let mut layers = parent.layers.clone();
    let empty = layer.is_none();
    if let Some(l) = layer {
        blob.rootfs.diff_ids.push(l.diff_id.to_string());
        layers.push(l);
    }
    blob.history.push(History {
        created: Some(now),
        author: None,
        created_by: Some(created_by),
        comment: None,
        empty_layer: empty,
    });
    let data = serde_json::to_vec(&blob).map_err(|e| EngineError::Internal(e.to_string()))?;
    let id = images.content.put(&data)?;
    images.add_image_with_parent(&id, layers.clone(), &[], parent.id.as_ref())?;
    Ok(Parent {
        id: Some(id),
        layers,
        blob,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_config_json_and_env() {
        let mut c = RunConfig::default();
        c.env_set("PATH", "/bin");
        c.env_set("A", "1");
        c.env_set("PATH", "/usr/bin");
        assert_eq!(c.env_list(), &["PATH=/usr/bin", "A=1"]);
        assert_eq!(c.env_get("A").as_deref(), Some("1"));
        assert_eq!(c.env_get("B"), None);
        let v = serde_json::to_value(&c).unwrap();
        // Go's omitempty fields are absent, the others present (null when unset).
        assert!(v.get("ExposedPorts").is_none());
        assert!(v.get("Healthcheck").is_none());
        assert!(v["Cmd"].is_null());
        assert!(v["Labels"].is_null());
        assert_eq!(v["WorkingDir"], "");
        assert_eq!(c.shell_or_default(), vec!["/bin/sh", "-c"]);
        // A config from elsewhere with unknown fields and nulls parses.
        let r: RunConfig = serde_json::from_value(serde_json::json!({
            "Env": null, "Cmd": ["sh"], "Foo": 1, "ExposedPorts": {"80/tcp": {}}
        }))
        .unwrap();
        assert_eq!(r.cmd, Some(vec!["sh".to_string()]));
        assert!(r.exposed_ports.unwrap().contains_key("80/tcp"));
    }
}
