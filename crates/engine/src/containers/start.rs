//! start, the exit monitor, restart policies and `wait`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_runtime::spec::{BindMount, Resources, SeccompMode, SpecInput};
use berth_shim::client::{self, ShimClient};
use berth_shim::proto::{ExitStatus, ShimOptions};
use bollard_stubs::models::RestartPolicyNameEnum;

use super::{now_rfc3339, Container, ContainerService, Record, Status};
use crate::{EngineError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitCondition {
    NotRunning,
    NextExit,
    Removed,
}

impl WaitCondition {
    pub fn parse(s: &str) -> Result<WaitCondition> {
        match s {
            "" | "not-running" => Ok(WaitCondition::NotRunning),
            "next-exit" => Ok(WaitCondition::NextExit),
            "removed" => Ok(WaitCondition::Removed),
            _ => Err(EngineError::InvalidArgument(format!(
                "invalid condition: \"{s}\""
            ))),
        }
    }
}

/// Where `--init` finds its init (Docker's docker-init is tini; a static build works in any image).
const INIT_CANDIDATES: &[&str] = &[
    "/usr/bin/tini-static",
    "/usr/libexec/docker/docker-init",
    "/usr/bin/docker-init",
    "/usr/local/bin/docker-init",
];

fn parse_security_opts(opts: &[String]) -> Result<(SeccompMode, bool)> {
    let mut seccomp = SeccompMode::Default;
    let mut nnp = false;
    for o in opts {
        let (k, v) = match o.split_once(['=', ':']) {
            Some((k, v)) => (k, Some(v)),
            None => (o.as_str(), None),
        };
        match (k, v) {
            ("no-new-privileges", None) => nnp = true,
            ("no-new-privileges", Some(v)) => {
                nnp = v.parse::<bool>().map_err(|_| {
                    EngineError::InvalidArgument(format!("invalid --security-opt 2: {o:?}"))
                })?
            }
            ("seccomp", Some("unconfined")) => seccomp = SeccompMode::Unconfined,
            ("seccomp", Some(json)) => seccomp = SeccompMode::Profile(json.to_string()),
            ("apparmor", _) | ("label", _) | ("systempaths", _) => {}
            _ => {
                return Err(EngineError::InvalidArgument(format!(
                    "invalid --security-opt 2: {o:?}"
                )))
            }
        }
    }
    Ok((seccomp, nnp))
}

/// Sizes as `--log-opt max-size` takes them (decimal units, as Docker's FromHumanSize).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let idx = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(idx);
    let n: f64 = num.parse().ok()?;
    let mult = match unit.trim_end_matches('b').trim_end_matches('i') {
        "" => 1.0,
        "k" => 1e3,
        "m" => 1e6,
        "g" => 1e9,
        _ => return None,
    };
    Some((n * mult) as u64)
}

impl ContainerService {
    pub async fn start(self: &Arc<Self>, name: &str) -> Result<()> {
        let c = self.get(name)?;
        let _g = c.op_lock.lock().await;
        self.start_locked(&c).await
    }

    /// Start with the op lock held.
    pub(super) async fn start_locked(self: &Arc<Self>, c: &Arc<Container>) -> Result<()> {
        let rec = c.snapshot();
        match rec.state.status {
            Status::Running | Status::Paused => {
                return Err(EngineError::NotModified("container already started".into()))
            }
            Status::Removing | Status::Dead => {
                return Err(EngineError::Conflict(format!(
                    "cannot start container {}: container is marked for removal",
                    rec.id
                )))
            }
            _ => {}
        }
        let this = self.clone();
        let rec2 = rec.clone();
        let prepared = tokio::task::spawn_blocking(move || this.prepare(&rec2))
            .await
            .map_err(|e| EngineError::Internal(e.to_string()))?;
        let opts = match prepared {
            Ok(o) => o,
            Err(e) => {
                self.record_start_failure(c, &e.to_string(), 128).await;
                return Err(e);
            }
        };
        let shim_dir = self.shim_dir(&rec.id);
        let exe = self.cfg.berth_exe.clone();
        let sd = shim_dir.clone();
        let spawned = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&sd)?;
            client::spawn(&exe, &sd, &opts).map_err(EngineError::from)
        })
        .await
        .map_err(|e| EngineError::Internal(e.to_string()))?;
        let spawned = match spawned {
            Ok(s) => s,
            Err(e) => {
                let msg = format!("failed to create task for container: {e}");
                let lower = msg.to_lowercase();
                let (code, err) = if lower.contains("not found") || lower.contains("no such file") {
                    (127, EngineError::InvalidArgument(msg.clone()))
                } else if lower.contains("permission denied") {
                    (126, EngineError::InvalidArgument(msg.clone()))
                } else {
                    (128, EngineError::Internal(msg.clone()))
                };
                self.record_start_failure(c, &msg, code).await;
                let _ = std::fs::remove_dir_all(&shim_dir);
                return Err(err);
            }
        };
        let shim = ShimClient::new(&shim_dir);
        let pending: Vec<_> = match c.pending_attach.lock() {
            Ok(mut p) => p.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        for p in pending {
            let s = shim
                .attach(p.stdin, p.stdout, p.stderr)
                .await
                .map_err(EngineError::from);
            let _ = p.tx.send(s);
        }
        if let Err(e) = shim.start().await {
            let _ = shim.kill(9).await;
            self.record_start_failure(c, &e.to_string(), 128).await;
            return Err(e.into());
        }
        c.with(|r| {
            r.state.status = Status::Running;
            r.state.pid = spawned.pid as i64;
            r.state.started_at = now_rfc3339();
            r.state.error.clear();
            r.state.exit_code = 0;
            r.state.oom_killed = false;
            r.shim_pid = spawned.shim_pid as i64;
        });
        c.notice.send_modify(|n| n.status = Some(Status::Running));
        self.save(c)?;
        self.emit(c, "start", &[]);
        self.spawn_monitor(c.clone());
        Ok(())
    }

    async fn record_start_failure(self: &Arc<Self>, c: &Arc<Container>, msg: &str, code: i64) {
        let id = c.id();
        // Attach streams waiting for this start end now (their clients see EOF).
        if let Ok(mut p) = c.pending_attach.lock() {
            p.clear();
        }
        let rootfs = self.rootfs(&id);
        let _ = tokio::task::spawn_blocking(move || berth_store::overlay::unmount(&rootfs)).await;
        self.release_network(&id).await;
        c.with(|r| {
            r.state.status = if r.state.started_at == super::ZERO_TIME {
                Status::Created
            } else {
                Status::Exited
            };
            r.state.error = msg.to_string();
            r.state.exit_code = code;
        });
        let _ = self.save(c);
        let status = c.snapshot().state.status;
        // Waiters (`docker run` waits with condition=next-exit) see the failed start as an exit.
        c.notice.send_modify(|n| {
            n.status = Some(status);
            n.exits += 1;
            n.last_exit_code = code;
        });
        // As Docker: a failed start of an auto-remove container removes it (once our caller has
        // released the op lock).
        if c.snapshot().host_config.auto_remove == Some(true) {
            let this = self.clone();
            let c = c.clone();
            tokio::spawn(async move {
                let _ = this.remove_container(&c, true, false).await;
            });
        }
    }

    /// Blocking: mount the rootfs, resolve the user, write the OCI bundle. Returns the shim options.
    fn prepare(&self, rec: &Record) -> Result<ShimOptions> {
        let id = &rec.id;
        let dir = self.dir(id);
        let rootfs = self.rootfs(id);
        // The record's own chain ids (the image may have been force-removed since create).
        let chain: Vec<berth_store::Digest> = if rec.layers.is_empty() {
            let image = self
                .images
                .get(&rec.image_id)?
                .ok_or_else(|| EngineError::NotFound(format!("No such image: {}", rec.image_id)))?;
            image.layers.iter().map(|l| l.chain_id.clone()).collect()
        } else {
            rec.layers.clone()
        };
        let mut lowers: Vec<PathBuf> = chain
            .iter()
            .rev()
            .map(|c| self.images.layers.dir(c))
            .collect();
        if let Some(missing) = chain.iter().find(|c| !self.images.layers.exists(c)) {
            return Err(EngineError::NotFound(format!(
                "layer {missing} of container {} is missing",
                rec.id
            )));
        }
        if lowers.is_empty() {
            let empty = dir.join("empty");
            std::fs::create_dir_all(&empty)?;
            lowers.push(empty);
        }
        // The network set-up (netns, veth, addresses) runs beside the overlay mount.
        let (mounted, net) = std::thread::scope(|s| {
            let net = s.spawn(|| self.net_setup(rec));
            let mounted = if berth_store::overlay::is_mounted(&rootfs) {
                Ok(())
            } else {
                berth_store::overlay::mount(&lowers, &dir.join("upper"), &dir.join("work"), &rootfs)
            };
            let net = net
                .join()
                .unwrap_or_else(|_| Err(EngineError::Internal("network set-up panicked".into())));
            (mounted, net)
        });
        if let Err(e) = mounted {
            if net.is_ok() {
                self.networks.release(&rec.id, &self.dns_names());
            }
            return Err(e.into());
        }
        let netns = match net {
            Ok(n) => n,
            Err(e) => {
                let _ = berth_store::overlay::unmount(&rootfs);
                return Err(e);
            }
        };
        match self.build_bundle(rec, &rootfs, netns) {
            Ok(o) => Ok(o),
            Err(e) => {
                let _ = berth_store::overlay::unmount(&rootfs);
                self.networks.release(&rec.id, &self.dns_names());
                Err(e)
            }
        }
    }

    fn build_bundle(
        &self,
        rec: &Record,
        rootfs: &Path,
        netns: Option<PathBuf>,
    ) -> Result<ShimOptions> {
        let id = &rec.id;
        let dir = self.dir(id);
        let cfg = &rec.config;
        let hc = &rec.host_config;
        let user = berth_runtime::user::resolve(rootfs, cfg.user.as_deref().unwrap_or(""))?;
        let cwd = cfg
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into());
        berth_store::safepath::mkdir_all_in_root(rootfs, Path::new(&cwd), 0o755)?;
        berth_store::safepath::mkdir_all_in_root(rootfs, Path::new("/etc"), 0o755)?;

        let tty = cfg.tty.unwrap_or(false);
        let hostname = cfg.hostname.clone().unwrap_or_else(|| id[..12].to_string());
        let mut env = cfg.env.clone().unwrap_or_default();
        let has = |env: &[String], k: &str| env.iter().any(|e| e.split('=').next() == Some(k));
        if !has(&env, "HOSTNAME") {
            env.push(format!("HOSTNAME={hostname}"));
        }
        if !has(&env, "HOME") {
            env.push(format!("HOME={}", user.home));
        }
        if tty && !has(&env, "TERM") {
            env.push("TERM=xterm".into());
        }
        let mut args = vec![rec.path.clone()];
        args.extend(rec.args.iter().cloned());
        let mut mounts = vec![
            BindMount {
                source: dir.join("hostname"),
                destination: "/etc/hostname".into(),
                readonly: false,
            },
            BindMount {
                source: dir.join("hosts"),
                destination: "/etc/hosts".into(),
                readonly: false,
            },
            BindMount {
                source: dir.join("resolv.conf"),
                destination: "/etc/resolv.conf".into(),
                readonly: false,
            },
        ];
        if hc.init == Some(true) {
            let init = INIT_CANDIDATES
                .iter()
                .map(PathBuf::from)
                .find(|p| p.is_file())
                .ok_or_else(|| {
                    EngineError::InvalidArgument(
                        "--init: no init binary found (install tini: /usr/bin/tini-static)".into(),
                    )
                })?;
            mounts.push(BindMount {
                source: init,
                destination: "/sbin/docker-init".into(),
                readonly: true,
            });
            let mut a = vec!["/sbin/docker-init".to_string(), "--".to_string()];
            a.extend(args);
            args = a;
        }
        let (seccomp, nnp) = parse_security_opts(hc.security_opt.as_deref().unwrap_or(&[]))?;
        let input = SpecInput {
            rootfs: rootfs.to_path_buf(),
            readonly_rootfs: hc.readonly_rootfs.unwrap_or(false),
            args,
            env,
            cwd,
            uid: user.uid,
            gid: user.gid,
            additional_gids: user.additional_gids.clone(),
            hostname,
            terminal: false,
            privileged: hc.privileged.unwrap_or(false),
            cap_add: hc.cap_add.clone().unwrap_or_default(),
            cap_drop: hc.cap_drop.clone().unwrap_or_default(),
            seccomp,
            no_new_privileges: nnp,
            resources: Resources {
                memory: hc.memory.unwrap_or(0),
                memory_swap: hc.memory_swap.unwrap_or(0),
                nano_cpus: hc.nano_cpus.unwrap_or(0),
                cpu_shares: hc.cpu_shares.unwrap_or(0).max(0) as u64,
                pids_limit: hc.pids_limit.unwrap_or(0),
            },
            cgroups_path: self.cgroups_path(id),
            mounts,
            netns_path: netns,
            host_network: hc.network_mode.as_deref() == Some("host"),
            host_pid: hc.pid_mode.as_deref() == Some("host"),
        };
        let mut spec = berth_runtime::spec::build(&input)?;
        super::exec::set_terminal(&mut spec, tty, hc.console_size.as_deref());
        self.add_mounts(rec, rootfs, &mut spec)?;
        let json =
            serde_json::to_vec_pretty(&spec).map_err(|e| EngineError::Internal(e.to_string()))?;
        berth_store::atomic::write_file(&dir.join("config.json"), &json)?;

        let log_opts = hc
            .log_config
            .as_ref()
            .and_then(|l| l.config.clone())
            .unwrap_or_default();
        let log_max_size = match log_opts.get("max-size") {
            Some(s) => Some(parse_size(s).ok_or_else(|| {
                EngineError::InvalidArgument(format!("invalid value for max-size: {s}"))
            })?),
            None => None,
        };
        let log_max_file = match log_opts.get("max-file") {
            Some(s) => s.parse::<u32>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                EngineError::InvalidArgument(format!("invalid value for max-file: {s}"))
            })?,
            None => 1,
        };
        Ok(ShimOptions {
            id: id.clone(),
            bundle: dir.clone(),
            runtime_root: self.cfg.runtime_root(),
            log_path: self.log_path(id),
            log_max_size,
            log_max_file,
            open_stdin: cfg.open_stdin.unwrap_or(false),
            stdin_once: cfg.stdin_once.unwrap_or(false),
            tty,
        })
    }

    /// Watch a running container's shim and handle its exit.
    pub(super) fn spawn_monitor(self: &Arc<Self>, c: Arc<Container>) {
        let this = self.clone();
        tokio::spawn(async move {
            let id = c.id();
            let shim_dir = this.shim_dir(&id);
            let started = Instant::now();
            let status = match ShimClient::new(&shim_dir).wait().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(container = %id, "lost the shim: {e}");
                    berth_shim::client::read_exit(&shim_dir).unwrap_or(ExitStatus {
                        exit_code: 255,
                        finished_at: now_rfc3339(),
                        oom_killed: false,
                    })
                }
            };
            this.handle_exit(&c, status, started.elapsed()).await;
        });
    }

    /// Record an exit, clean up the run's resources, then auto-remove or apply the restart policy.
    pub(super) async fn handle_exit(
        self: &Arc<Self>,
        c: &Arc<Container>,
        st: ExitStatus,
        ran: Duration,
    ) {
        let id = c.id();
        c.with(|r| {
            r.state.status = Status::Exited;
            r.state.exit_code = st.exit_code as i64;
            r.state.finished_at = st.finished_at.clone();
            r.state.oom_killed = st.oom_killed;
            r.state.pid = 0;
            r.shim_pid = 0;
        });
        let _ = self.save(c);
        let rootfs = self.rootfs(&id);
        let shim_dir = self.shim_dir(&id);
        let cg = self.cgroups_path(&id);
        let _ = tokio::task::spawn_blocking(move || {
            let _ = berth_store::overlay::unmount(&rootfs);
            let _ = berth_runtime::cgroups::remove(&cg);
            let _ = std::fs::remove_dir_all(&shim_dir);
        })
        .await;
        self.release_volumes(&id);
        self.release_network(&id).await;
        if st.oom_killed {
            self.emit(c, "oom", &[]);
        }
        self.emit(c, "die", &[("exitCode", st.exit_code.to_string())]);
        c.notice.send_modify(|n| {
            n.exits += 1;
            n.last_exit_code = st.exit_code as i64;
            n.status = Some(Status::Exited);
        });
        let rec = c.snapshot();
        if rec.host_config.auto_remove == Some(true) {
            let this = self.clone();
            let _ = this.remove_container(&c.clone(), true, true).await;
            return;
        }
        if self.should_restart(&rec, false) {
            let this = self.clone();
            let c = c.clone();
            tokio::spawn(async move { this.restart_after_backoff(c, ran).await });
        }
    }

    /// Docker's restart policy decision. `engine_start`: deciding at engine start (then `always`
    /// restarts even a manually stopped container).
    pub(super) fn should_restart(&self, rec: &Record, engine_start: bool) -> bool {
        let Some(rp) = &rec.host_config.restart_policy else {
            return false;
        };
        match rp.name.unwrap_or(RestartPolicyNameEnum::EMPTY) {
            RestartPolicyNameEnum::ALWAYS => engine_start || !rec.manually_stopped,
            RestartPolicyNameEnum::UNLESS_STOPPED => !rec.manually_stopped,
            RestartPolicyNameEnum::ON_FAILURE => {
                let max = rp.maximum_retry_count.unwrap_or(0);
                !rec.manually_stopped
                    && rec.state.exit_code != 0
                    && (max == 0 || rec.restart_count < max)
            }
            _ => false,
        }
    }

    async fn restart_after_backoff(self: Arc<Self>, c: Arc<Container>, ran: Duration) {
        let count = c.snapshot().restart_count;
        // 100 ms doubling, capped at one minute; a container that ran 10 s resets the backoff.
        let delay = if ran > Duration::from_secs(10) {
            Duration::from_millis(100)
        } else {
            Duration::from_millis(100u64.saturating_mul(1 << count.clamp(0, 10) as u32))
                .min(Duration::from_secs(60))
        };
        self.set_status(&c, Status::Restarting);
        tokio::time::sleep(delay).await;
        let _g = c.op_lock.lock().await;
        let rec = c.snapshot();
        if rec.state.status != Status::Restarting || rec.manually_stopped {
            return;
        }
        // The status stays `restarting` until start_locked records the new run (or the failure).
        c.with(|r| r.restart_count += 1);
        if let Err(e) = self.start_locked(&c).await {
            tracing::warn!(container = %rec.id, "restart failed: {e}");
        } else {
            self.emit(&c, "restart", &[]);
        }
    }

    /// Wait for a condition; returns the exit code. Call after sending the response headers.
    pub async fn wait(&self, c: Arc<Container>, cond: WaitCondition) -> Result<i64> {
        let mut rx = c.notice.subscribe();
        let start = rx.borrow_and_update().clone();
        let live = |n: &super::Notice| matches!(n.status, Some(s) if s.is_live() || s == Status::Restarting);
        if cond == WaitCondition::NotRunning && !live(&start) {
            return Ok(c.snapshot().state.exit_code);
        }
        loop {
            if rx.changed().await.is_err() {
                return Ok(rx.borrow().last_exit_code);
            }
            let n = rx.borrow_and_update().clone();
            let done = match cond {
                WaitCondition::NotRunning => !live(&n),
                WaitCondition::NextExit => n.exits > start.exits,
                WaitCondition::Removed => n.removed,
            };
            if done {
                return Ok(if n.exits > 0 || n.removed {
                    n.last_exit_code
                } else {
                    c.snapshot().state.exit_code
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10m"), Some(10_000_000));
        assert_eq!(parse_size("1k"), Some(1000));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("2g"), Some(2_000_000_000));
        assert_eq!(parse_size("x"), None);
    }

    #[test]
    fn security_opts() {
        let (s, n) = parse_security_opts(&["no-new-privileges".into()]).unwrap();
        assert_eq!(s, SeccompMode::Default);
        assert!(n);
        let (s, _) = parse_security_opts(&["seccomp=unconfined".into()]).unwrap();
        assert_eq!(s, SeccompMode::Unconfined);
        assert!(parse_security_opts(&["bogus".into()]).is_err());
    }
}
