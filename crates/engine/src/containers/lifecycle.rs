//! stop, kill, restart, pause/unpause, rename, top.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use berth_shim::client::ShimClient;
use nix::sys::signal::Signal;

use super::{Container, ContainerService, Status};
use crate::{EngineError, Result};

/// `KILL`, `SIGKILL`, `sigkill`, `9` → 9.
pub fn parse_signal(s: &str) -> Result<i32> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i32>() {
        return if (1..=64).contains(&n) {
            Ok(n)
        } else {
            Err(EngineError::InvalidArgument(format!("Invalid signal: {s}")))
        };
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    Signal::from_str(&name)
        .map(|sig| sig as i32)
        .map_err(|_| EngineError::InvalidArgument(format!("Invalid signal: {s}")))
}

fn reset_restart_policy(r: &mut super::Record) {
    r.manually_stopped = false;
    r.restart_count = 0;
}

impl ContainerService {
    fn not_running(&self, c: &Container) -> EngineError {
        let id = c.id();
        EngineError::Conflict(format!("Container {id} is not running"))
    }

    /// Send a signal (no state checks beyond "has a process").
    async fn signal(&self, c: &Container, sig: i32) -> Result<()> {
        let rec = c.snapshot();
        if !rec.state.status.is_live() {
            return Err(self.not_running(c));
        }
        let shim = ShimClient::new(&self.shim_dir(&rec.id));
        if shim.kill(sig).await.is_err() && rec.state.pid > 0 {
            // The shim is gone but the process may live on: signal it directly.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(rec.state.pid as i32),
                Signal::try_from(sig).ok(),
            );
        }
        Ok(())
    }

    pub async fn kill(self: &Arc<Self>, name: &str, signal: Option<&str>) -> Result<()> {
        let c = self.get(name)?;
        let sig = parse_signal(signal.filter(|s| !s.is_empty()).unwrap_or("SIGKILL"))?;
        let rec = c.snapshot();
        if !rec.state.status.is_live() {
            return Err(EngineError::Conflict(format!(
                "cannot kill container: {name}: container {} is not running",
                rec.id
            )));
        }
        if sig == libc::SIGKILL || sig == libc::SIGTERM || sig == libc::SIGINT {
            c.with(|r| r.manually_stopped = true);
            let _ = self.save(&c);
        }
        if rec.state.status == Status::Paused && sig == libc::SIGKILL {
            let _ = berth_runtime::cgroups::thaw(&self.cgroups_path(&rec.id));
        }
        self.signal(&c, sig).await?;
        self.emit(&c, "kill", &[("signal", sig.to_string())]);
        Ok(())
    }

    /// Wait until the container is no longer live, at most `timeout`. True if it stopped.
    pub(super) async fn wait_stopped(&self, c: &Arc<Container>, timeout: Duration) -> bool {
        let mut rx = c.notice.subscribe();
        let check = |rx: &mut tokio::sync::watch::Receiver<super::Notice>| !matches!(rx.borrow_and_update().status, Some(s) if s.is_live());
        if check(&mut rx) {
            return true;
        }
        tokio::time::timeout(timeout, async {
            loop {
                if rx.changed().await.is_err() || check(&mut rx) {
                    return;
                }
            }
        })
        .await
        .is_ok()
    }

    /// Docker's stop: the stop signal, then SIGKILL after the timeout. 304 when not running.
    pub async fn stop(
        self: &Arc<Self>,
        name: &str,
        timeout: Option<i64>,
        signal: Option<&str>,
    ) -> Result<()> {
        let c = self.get(name)?;
        let _g = c.op_lock.lock().await;
        self.stop_locked(&c, timeout, signal).await
    }

    pub(super) async fn stop_locked(
        self: &Arc<Self>,
        c: &Arc<Container>,
        timeout: Option<i64>,
        signal: Option<&str>,
    ) -> Result<()> {
        let rec = c.snapshot();
        c.with(|r| r.manually_stopped = true);
        let _ = self.save(c);
        if rec.state.status == Status::Restarting {
            self.set_status(c, Status::Exited);
            return Ok(());
        }
        if !rec.state.status.is_live() {
            return Err(EngineError::NotModified("container already stopped".into()));
        }
        let sig_name = signal
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .or_else(|| rec.config.stop_signal.clone().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| "SIGTERM".into());
        let sig = parse_signal(&sig_name)?;
        let timeout = timeout.or(rec.config.stop_timeout).unwrap_or(10);
        if rec.state.status == Status::Paused {
            let _ = berth_runtime::cgroups::thaw(&self.cgroups_path(&rec.id));
            self.set_status(c, Status::Running);
        }
        let _ = self.signal(c, sig).await;
        self.emit(c, "kill", &[("signal", sig.to_string())]);
        let stopped = if timeout < 0 {
            self.wait_stopped(c, Duration::from_secs(u64::MAX / 4))
                .await
        } else {
            self.wait_stopped(c, Duration::from_secs(timeout as u64))
                .await
        };
        if !stopped {
            let _ = self.signal(c, libc::SIGKILL).await;
            self.emit(c, "kill", &[("signal", libc::SIGKILL.to_string())]);
            if !self.wait_stopped(c, Duration::from_secs(30)).await {
                return Err(EngineError::Internal(format!(
                    "container {} did not stop after SIGKILL",
                    rec.id
                )));
            }
        }
        self.emit(c, "stop", &[]);
        Ok(())
    }

    /// `docker start`: as Docker's resetRestartManager, a start by the user resets the restart
    /// count and the "manually stopped" mark, so the restart policy applies again.
    pub async fn start_by_user(self: &Arc<Self>, name: &str) -> Result<()> {
        let c = self.get(name)?;
        let _g = c.op_lock.lock().await;
        if !c.snapshot().state.status.is_live() {
            c.with(reset_restart_policy);
        }
        self.start_locked(&c).await
    }

    pub async fn restart(
        self: &Arc<Self>,
        name: &str,
        timeout: Option<i64>,
        signal: Option<&str>,
    ) -> Result<()> {
        let c = self.get(name)?;
        let _g = c.op_lock.lock().await;
        match self.stop_locked(&c, timeout, signal).await {
            Ok(()) | Err(EngineError::NotModified(_)) => {}
            Err(e) => return Err(e),
        }
        c.with(reset_restart_policy);
        self.start_locked(&c).await?;
        self.emit(&c, "restart", &[]);
        Ok(())
    }

    pub async fn pause(self: &Arc<Self>, name: &str) -> Result<()> {
        let c = self.get(name)?;
        let _g = c.op_lock.lock().await;
        let rec = c.snapshot();
        match rec.state.status {
            Status::Running => {}
            Status::Paused => {
                return Err(EngineError::Conflict(format!(
                    "container {} is already paused",
                    rec.id
                )))
            }
            _ => return Err(self.not_running(&c)),
        }
        let cg = self.cgroups_path(&rec.id);
        tokio::task::spawn_blocking(move || berth_runtime::cgroups::freeze(&cg))
            .await
            .map_err(|e| EngineError::Internal(e.to_string()))??;
        self.set_status(&c, Status::Paused);
        self.save(&c)?;
        self.emit(&c, "pause", &[]);
        Ok(())
    }

    pub async fn unpause(self: &Arc<Self>, name: &str) -> Result<()> {
        let c = self.get(name)?;
        let _g = c.op_lock.lock().await;
        let rec = c.snapshot();
        if rec.state.status != Status::Paused {
            return Err(EngineError::Conflict(format!(
                "container {} is not paused",
                rec.id
            )));
        }
        let cg = self.cgroups_path(&rec.id);
        tokio::task::spawn_blocking(move || berth_runtime::cgroups::thaw(&cg))
            .await
            .map_err(|e| EngineError::Internal(e.to_string()))??;
        self.set_status(&c, Status::Running);
        self.save(&c)?;
        self.emit(&c, "unpause", &[]);
        Ok(())
    }

    pub async fn rename(self: &Arc<Self>, name: &str, new_name: &str) -> Result<()> {
        let c = self.get(name)?;
        if !super::create::valid_name(new_name) {
            return Err(EngineError::InvalidArgument(format!(
                "Invalid container name ({new_name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        let new = format!("/{}", new_name.trim_start_matches('/'));
        let old = c.snapshot().name;
        if old == new {
            return Err(EngineError::Conflict(
                "Renaming a container with the same name as its current name".into(),
            ));
        }
        if let Some(owner) = self.name_owner(&new) {
            return Err(EngineError::Conflict(format!(
                "Conflict. The container name \"{new}\" is already in use by container \"{owner}\". You have to remove (or rename) that container to be able to reuse that name."
            )));
        }
        c.with(|r| r.name = new.clone());
        if let Err(e) = self.save(&c) {
            c.with(|r| r.name = old);
            return Err(e);
        }
        self.refresh_network_names();
        self.emit(&c, "rename", &[("oldName", old)]);
        Ok(())
    }

    /// `docker top`: runs the host's `ps` (never anything from the container) and keeps the rows
    /// of the container's processes.
    pub async fn top(
        self: &Arc<Self>,
        name: &str,
        ps_args: &str,
    ) -> Result<(Vec<String>, Vec<Vec<String>>)> {
        let c = self.get(name)?;
        let rec = c.snapshot();
        if !rec.state.status.is_live() {
            return Err(EngineError::Conflict(format!(
                "Container {} is not running",
                rec.id
            )));
        }
        let pids = berth_runtime::cgroups::pids(&self.cgroups_path(&rec.id))?;
        let args: Vec<String> = if ps_args.trim().is_empty() {
            vec!["-ef".into()]
        } else {
            ps_args.split_whitespace().map(String::from).collect()
        };
        let out = tokio::process::Command::new("ps")
            .args(&args)
            .output()
            .await
            .map_err(|e| EngineError::Internal(format!("ps: {e}")))?;
        if !out.status.success() {
            return Err(EngineError::Internal(format!(
                "Error running ps: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        let header = lines.next().unwrap_or("");
        let titles: Vec<String> = header.split_whitespace().map(String::from).collect();
        let pid_col = titles.iter().position(|t| t == "PID").ok_or_else(|| {
            EngineError::InvalidArgument("Couldn't find PID field in ps output".into())
        })?;
        let mut rows = Vec::new();
        for line in lines {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let Some(pid) = fields.get(pid_col).and_then(|p| p.parse::<i32>().ok()) else {
                continue;
            };
            if !pids.contains(&pid) {
                continue;
            }
            // The last column (the command) may contain spaces.
            let n = titles.len();
            let mut row: Vec<String> = fields
                .iter()
                .take(n.saturating_sub(1))
                .map(|s| s.to_string())
                .collect();
            row.push(
                fields
                    .iter()
                    .skip(n.saturating_sub(1))
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" "),
            );
            rows.push(row);
        }
        Ok((titles, rows))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals() {
        assert_eq!(parse_signal("KILL").unwrap(), 9);
        assert_eq!(parse_signal("SIGTERM").unwrap(), 15);
        assert_eq!(parse_signal("usr1").unwrap(), libc::SIGUSR1);
        assert_eq!(parse_signal("2").unwrap(), 2);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("0").is_err());
    }
}
