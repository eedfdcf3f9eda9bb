//! `POST /containers/{id}/update`: new resource limits written straight into a live container's
//! cgroups, and kept in its HostConfig (so the next start uses them); the restart policy.

use std::sync::Arc;

use berth_runtime::cgroups::{self, ResourceUpdate};
use bollard_stubs::models::{RestartPolicy, RestartPolicyNameEnum};
use serde_json::Value;

use super::ContainerService;
use crate::{EngineError, Result};

/// The CFS period Docker uses with `--cpus`.
const CPU_PERIOD: u64 = 100_000;

fn field(v: &Value, key: &str) -> Result<Option<i64>> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => x
            .as_i64()
            .map(Some)
            .ok_or_else(|| EngineError::InvalidArgument(format!("invalid value for {key}"))),
    }
}

/// Docker sends 0 for "not given" in most fields of an update.
fn given(v: Option<i64>) -> Option<i64> {
    v.filter(|n| *n != 0)
}

impl ContainerService {
    /// Apply a `ContainerUpdateBody` (as JSON). Returns Docker's warnings.
    pub async fn update(self: &Arc<Self>, name: &str, body: &Value) -> Result<Vec<String>> {
        let c = self.get(name)?;
        let _g = c.op_lock.lock().await;
        let rec = c.snapshot();
        let hc = &rec.host_config;
        let memory = given(field(body, "Memory")?);
        let memory_swap = given(field(body, "MemorySwap")?);
        let nano = given(field(body, "NanoCpus")?);
        let quota = given(field(body, "CpuQuota")?);
        let period = given(field(body, "CpuPeriod")?);
        let shares = given(field(body, "CpuShares")?);
        let pids = given(field(body, "PidsLimit")?);
        if let Some(m) = memory {
            if m > 0 && m < 6 * 1024 * 1024 {
                return Err(EngineError::InvalidArgument(
                    "Minimum memory limit allowed is 6MB".into(),
                ));
            }
        }
        if nano.is_some() && (quota.is_some() || period.is_some()) {
            return Err(EngineError::InvalidArgument(
                "Conflicting options: Nano CPUs and CPU Period cannot both be set".into(),
            ));
        }
        // Docker: a new memory limit above the memory+swap limit in force needs a new swap too.
        let cur_swap = hc.memory_swap.unwrap_or(0);
        if let (Some(m), None) = (memory, memory_swap) {
            if cur_swap > 0 && m > cur_swap {
                return Err(EngineError::InvalidArgument(
                    "Memory limit should be smaller than already set memoryswap limit, update \
                     the memoryswap at the same time"
                        .into(),
                ));
            }
        }
        if let (Some(m), Some(s)) = (memory, memory_swap) {
            if s > 0 && s < m {
                return Err(EngineError::InvalidArgument(
                    "Minimum memoryswap limit should be larger than memory limit, see usage".into(),
                ));
            }
        }
        let restart = match body.get("RestartPolicy") {
            Some(v) if !v.is_null() => Some(
                serde_json::from_value::<RestartPolicy>(v.clone())
                    .map_err(|e| EngineError::InvalidArgument(format!("restart policy: {e}")))?,
            ),
            _ => None,
        };
        if let Some(rp) = &restart {
            if rec.host_config.auto_remove == Some(true)
                && !matches!(
                    rp.name,
                    None | Some(RestartPolicyNameEnum::EMPTY) | Some(RestartPolicyNameEnum::NO)
                )
            {
                return Err(EngineError::InvalidArgument(
                    "Restart policy cannot be updated because AutoRemove is enabled for the \
                     container"
                        .into(),
                ));
            }
        }

        if rec.state.status.is_live() {
            let cpu_quota = match (nano, quota) {
                (Some(n), _) => Some((
                    (n as i128 * CPU_PERIOD as i128 / 1_000_000_000).max(1000) as i64,
                    CPU_PERIOD,
                )),
                (None, Some(q)) => Some((q, period.unwrap_or(CPU_PERIOD as i64).max(1) as u64)),
                (None, None) => None,
            };
            let u = ResourceUpdate {
                memory,
                memory_swap: match (memory_swap, memory) {
                    (Some(s), _) => Some(s),
                    // Docker's default swap is twice the memory when swap was never set.
                    (None, Some(m)) if m > 0 && cur_swap == 0 && hc.memory.unwrap_or(0) > 0 => {
                        Some(m * 2)
                    }
                    _ => None,
                },
                cpu_quota,
                cpu_shares: shares.map(|s| s.max(2) as u64),
                pids_limit: pids,
            };
            let path = self.cgroups_path(&rec.id);
            tokio::task::spawn_blocking(move || cgroups::update_resources(&path, &u))
                .await
                .map_err(|e| EngineError::Internal(e.to_string()))?
                .map_err(|e| {
                    EngineError::InvalidArgument(format!("Cannot update container {}: {e}", rec.id))
                })?;
        }

        c.with(|r| {
            let h = &mut r.host_config;
            if let Some(m) = memory {
                h.memory = Some(m);
            }
            if let Some(s) = memory_swap {
                h.memory_swap = Some(s);
            }
            if let Some(n) = nano {
                h.nano_cpus = Some(n);
                h.cpu_quota = Some(0);
                h.cpu_period = Some(0);
            }
            if let Some(q) = quota {
                h.cpu_quota = Some(q);
            }
            if let Some(p) = period {
                h.cpu_period = Some(p);
            }
            if let Some(s) = shares {
                h.cpu_shares = Some(s);
            }
            if let Some(p) = pids {
                h.pids_limit = Some(p);
            }
            if let Some(rp) = restart {
                h.restart_policy = Some(rp);
            }
        });
        self.save(&c)?;
        self.emit(&c, "update", &[]);
        Ok(Vec::new())
    }
}
