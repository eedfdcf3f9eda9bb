//! `POST /containers/create`.

use std::sync::Arc;

use bollard_stubs::models::{
    ContainerConfig, ContainerCreateBody, HostConfig, RestartPolicyNameEnum,
};

use super::{now_rfc3339, Container, ContainerService, Record, State};
use crate::{EngineError, Result};

#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    pub name: Option<String>,
    pub body: ContainerCreateBody,
}

const HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n";

/// Docker's container name rule.
pub fn valid_name(name: &str) -> bool {
    let n = name.strip_prefix('/').unwrap_or(name);
    let mut chars = n.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    n.len() >= 2 && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

const ADJECTIVES: &[&str] = &[
    "admiring", "brave", "calm", "clever", "eager", "elegant", "festive", "gentle", "happy",
    "jolly", "keen", "lucid", "modest", "nifty", "quirky", "serene", "sharp", "tender", "upbeat",
    "zealous",
];
const NOUNS: &[&str] = &[
    "albattani",
    "babbage",
    "curie",
    "darwin",
    "euclid",
    "fermi",
    "galileo",
    "hopper",
    "kepler",
    "lovelace",
    "meitner",
    "newton",
    "noether",
    "pascal",
    "ritchie",
    "shannon",
    "tesla",
    "turing",
    "wozniak",
    "yalow",
];

fn random_name() -> String {
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    format!(
        "{}_{}",
        ADJECTIVES[b[0] as usize % ADJECTIVES.len()],
        NOUNS[b[1] as usize % NOUNS.len()]
    )
}

fn conflict_msg(name: &str, id: &str) -> String {
    format!(
        "Conflict. The container name \"{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name."
    )
}

/// Host resolv.conf without loopback nameservers (they cannot work from the container's netns);
/// Docker's fallback to public resolvers when none is left.
fn resolv_conf() -> String {
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut out = String::new();
    let mut ns = 0;
    for line in host.lines() {
        let t = line.trim();
        if let Some(addr) = t.strip_prefix("nameserver") {
            let addr = addr.trim();
            if addr.starts_with("127.") || addr == "::1" {
                continue;
            }
            ns += 1;
        }
        out.push_str(line);
        out.push('\n');
    }
    if ns == 0 {
        out.push_str("nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }
    out
}

impl ContainerService {
    pub fn name_owner(&self, name: &str) -> Option<String> {
        let want = format!("/{}", name.trim_start_matches('/'));
        self.all()
            .into_iter()
            .map(|c| c.snapshot())
            .find(|r| r.name == want)
            .map(|r| r.id)
    }

    pub async fn create(self: &Arc<Self>, req: CreateRequest) -> Result<(String, Vec<String>)> {
        let body = req.body;
        let image_name = body.image.clone().unwrap_or_default();
        if image_name.is_empty() {
            return Err(EngineError::InvalidArgument(
                "config cannot be empty in order to create a container".into(),
            ));
        }
        let name = match req.name.filter(|n| !n.is_empty()) {
            Some(n) => {
                if !valid_name(&n) {
                    return Err(EngineError::InvalidArgument(format!(
                        "Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                    )));
                }
                format!("/{}", n.trim_start_matches('/'))
            }
            None => loop {
                let n = format!("/{}", random_name());
                if self.name_owner(&n).is_none() {
                    break n;
                }
            },
        };
        if let Some(owner) = self.name_owner(&name) {
            return Err(EngineError::Conflict(conflict_msg(&name, &owner)));
        }
        let images = self.images.clone();
        let iname = image_name.clone();
        let (image, run) = tokio::task::spawn_blocking(move || {
            let rec = images.resolve(&iname)?;
            let run = images.run_config(&rec)?;
            Ok::<_, EngineError>((rec, run))
        })
        .await
        .map_err(|e| EngineError::Internal(e.to_string()))??;

        let mut host_config: HostConfig = body.host_config.clone().unwrap_or_default();
        validate_host_config(&host_config)?;
        let mount_plan = self.plan_mounts(&host_config, &body_config(&body), &run.volumes)?;
        let mut config: ContainerConfig = serde_json::from_value(
            serde_json::to_value(&body).map_err(|e| EngineError::Internal(e.to_string()))?,
        )
        .map_err(|e| EngineError::InvalidArgument(e.to_string()))?;

        // Merge the image's defaults into the container config, as Docker records them.
        let mut env: Vec<String> = run.env.clone();
        for kv in config.env.clone().unwrap_or_default() {
            let key = kv.split('=').next().unwrap_or("").to_string();
            env.retain(|e| e.split('=').next() != Some(key.as_str()));
            env.push(kv);
        }
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.insert(
                0,
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            );
        }
        config.env = Some(env);
        let entrypoint_set = config.entrypoint.is_some();
        let entrypoint: Vec<String> = match &config.entrypoint {
            Some(e) => e.iter().filter(|s| !s.is_empty()).cloned().collect(),
            None => run.entrypoint.clone(),
        };
        let cmd: Vec<String> = match &config.cmd {
            Some(c) if !c.is_empty() => c.clone(),
            _ if entrypoint_set => Vec::new(),
            _ => run.cmd.clone(),
        };
        let mut argv = entrypoint.clone();
        argv.extend(cmd.iter().cloned());
        if argv.is_empty() {
            return Err(EngineError::InvalidArgument("no command specified".into()));
        }
        config.entrypoint = if entrypoint.is_empty() {
            None
        } else {
            Some(entrypoint)
        };
        config.cmd = if cmd.is_empty() { None } else { Some(cmd) };
        if config.working_dir.as_deref().unwrap_or("").is_empty() && !run.working_dir.is_empty() {
            config.working_dir = Some(run.working_dir.clone());
        }
        if let Some(w) = config.working_dir.as_deref() {
            if !w.is_empty() && !w.starts_with('/') {
                return Err(EngineError::InvalidArgument(format!(
                    "the working directory '{w}' is invalid, it needs to be an absolute path"
                )));
            }
        }
        if config.user.as_deref().unwrap_or("").is_empty() && !run.user.is_empty() {
            config.user = Some(run.user.clone());
        }
        let mut labels = run.labels.clone();
        labels.extend(config.labels.clone().unwrap_or_default());
        config.labels = Some(labels);
        if config.stop_signal.is_none() {
            config.stop_signal = run.stop_signal.clone();
        }
        config.image = Some(image_name.clone());
        // Docker merges the image's EXPOSE into ExposedPorts; networks validate their part.
        let mut exposed = config.exposed_ports.clone().unwrap_or_default();
        for p in &run.exposed_ports {
            if !exposed.contains(p) {
                exposed.push(p.clone());
            }
        }
        if !exposed.is_empty() {
            config.exposed_ports = Some(exposed.clone());
        }
        let net_plan =
            self.net_plan(&mut host_config, body.networking_config.as_ref(), &exposed)?;

        let id = berth_store::atomic::random_hex(32);
        if config.hostname.as_deref().unwrap_or("").is_empty() {
            config.hostname = Some(id[..12].to_string());
        }
        let rec = Record {
            id: id.clone(),
            name,
            created: now_rfc3339(),
            image_name,
            image_id: image.id.clone(),
            layers: image.layers.iter().map(|l| l.chain_id.clone()).collect(),
            path: argv[0].clone(),
            args: argv[1..].to_vec(),
            config,
            host_config,
            state: State::default(),
            restart_count: 0,
            manually_stopped: false,
            shim_pid: 0,
        };

        // Directory first, record last: a crash in between leaves a dir without a record, which
        // reconciliation removes.
        let dir = self.dir(&id);
        let hostname = rec.config.hostname.clone().unwrap_or_default();
        let d2 = dir.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            for sub in ["upper", "work", "rootfs"] {
                std::fs::create_dir_all(d2.join(sub))?;
            }
            berth_store::atomic::write_file(
                &d2.join("hostname"),
                format!("{hostname}\n").as_bytes(),
            )?;
            berth_store::atomic::write_file(&d2.join("hosts"), HOSTS.as_bytes())?;
            berth_store::atomic::write_file(&d2.join("resolv.conf"), resolv_conf().as_bytes())?;
            Ok(())
        })
        .await
        .map_err(|e| EngineError::Internal(e.to_string()))??;

        let this = self.clone();
        let d3 = dir.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || this.commit_plan(&d3, mount_plan))
            .await
            .map_err(|e| EngineError::Internal(e.to_string()))?
        {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        if let Err(e) = self.net_save_plan(&id, net_plan) {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        let c = Container::new(rec);
        // Re-check the name under the map lock to close the race between two creates.
        {
            let name = c.snapshot().name;
            if let Some(owner) = self.name_owner(&name) {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(EngineError::Conflict(conflict_msg(&name, &owner)));
            }
            self.insert(c.clone());
        }
        if let Err(e) = self.save(&c) {
            self.forget(&id);
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        self.emit(&c, "create", &[]);
        Ok((id, Vec::new()))
    }
}

/// The container config part of a create body (its `Volumes` from `-v /path`).
fn body_config(body: &ContainerCreateBody) -> ContainerConfig {
    ContainerConfig {
        volumes: body.volumes.clone(),
        ..ContainerConfig::default()
    }
}

fn validate_host_config(hc: &HostConfig) -> Result<()> {
    // Unknown capability names are refused at create, as Docker does.
    berth_runtime::caps::effective(
        hc.privileged.unwrap_or(false),
        hc.cap_add.as_deref().unwrap_or(&[]),
        hc.cap_drop.as_deref().unwrap_or(&[]),
    )?;
    if let Some(rp) = &hc.restart_policy {
        let name = rp.name.unwrap_or(RestartPolicyNameEnum::EMPTY);
        let max = rp.maximum_retry_count.unwrap_or(0);
        if max < 0 {
            return Err(EngineError::InvalidArgument(
                "invalid restart policy: maximum retry count cannot be negative".into(),
            ));
        }
        if max > 0 && name != RestartPolicyNameEnum::ON_FAILURE {
            return Err(EngineError::InvalidArgument(
                "invalid restart policy: maximum retry count can only be used with 'on-failure'"
                    .into(),
            ));
        }
        if hc.auto_remove == Some(true)
            && !matches!(
                name,
                RestartPolicyNameEnum::EMPTY | RestartPolicyNameEnum::NO
            )
        {
            return Err(EngineError::InvalidArgument(
                "conflicting options: cannot specify both --restart and --rm".into(),
            ));
        }
    }
    if let Some(m) = hc.memory {
        if m != 0 && m < 6 * 1024 * 1024 {
            return Err(EngineError::InvalidArgument(
                "Minimum memory limit allowed is 6MB".into(),
            ));
        }
    }
    if let Some(n) = hc.nano_cpus {
        if n < 0 {
            return Err(EngineError::InvalidArgument(
                "range of CPUs is from 0.01 to the number of CPUs available".into(),
            ));
        }
    }
    if let Some(lc) = &hc.log_config {
        if let Some(t) = lc.typ.as_deref() {
            if !t.is_empty() && t != "json-file" && t != "none" {
                return Err(EngineError::InvalidArgument(format!(
                    "logger: no log driver named '{t}' is registered"
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("web"));
        assert!(valid_name("/web-1.a_b"));
        assert!(!valid_name("a"));
        assert!(!valid_name("-web"));
        assert!(!valid_name("we b"));
        assert!(!valid_name("../x"));
    }
}
