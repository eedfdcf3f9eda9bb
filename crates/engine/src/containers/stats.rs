//! `GET /containers/{id}/stats`: Docker's stats JSON from the container's cgroups, /proc/stat and
//! the network counters of the container's network namespace (/proc/<pid>/net/dev).

use std::sync::Arc;

use berth_runtime::cgroups::{self, DetailedStats};
use serde_json::{json, Map, Value};

use super::{now_rfc3339, ContainerService, ZERO_TIME};
use crate::{EngineError, Result};

/// Nanoseconds per USER_HZ tick (/proc/stat is in ticks).
const NS_PER_TICK: u64 = 10_000_000;

/// One reading; two consecutive ones make a stats document (`precpu_stats` is the older one).
#[derive(Debug, Clone, Default)]
pub struct StatsSample {
    pub read: String,
    pub running: bool,
    pub cg: DetailedStats,
    pub system_ns: u64,
    pub online_cpus: u64,
    pub networks: Map<String, Value>,
    pub host_memory: u64,
}

/// Total CPU time of the host (ns) and the number of online CPUs, from /proc/stat.
fn system_cpu() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let mut total = 0;
    let mut cpus = 0;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("cpu ") {
            total = rest
                .split_whitespace()
                .take(8)
                .filter_map(|v| v.parse::<u64>().ok())
                .sum::<u64>()
                .saturating_mul(NS_PER_TICK);
        } else if line.starts_with("cpu") {
            cpus += 1;
        }
    }
    (total, cpus.max(1))
}

fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let rest = l.strip_prefix("MemTotal:")?;
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Interfaces of /proc/<pid>/net/dev as Docker's `networks` map.
fn networks(pid: i64) -> Map<String, Value> {
    let mut out = Map::new();
    if pid <= 0 {
        return out;
    }
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/dev")) else {
        return out;
    };
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let v: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if v.len() < 12 {
            continue;
        }
        out.insert(
            name.trim().to_string(),
            json!({
                "rx_bytes": v[0], "rx_packets": v[1], "rx_errors": v[2], "rx_dropped": v[3],
                "tx_bytes": v[8], "tx_packets": v[9], "tx_errors": v[10], "tx_dropped": v[11],
            }),
        );
    }
    out
}

fn cpu_json(s: &StatsSample) -> Value {
    if !s.running {
        return json!({"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0,
            "usage_in_usermode": 0}, "throttling_data": {"periods": 0, "throttled_periods": 0,
            "throttled_time": 0}});
    }
    let mut usage = json!({
        "total_usage": s.cg.cpu_total_ns,
        "usage_in_kernelmode": s.cg.cpu_system_ns,
        "usage_in_usermode": s.cg.cpu_user_ns,
    });
    if !s.cg.cpu_percpu_ns.is_empty() {
        usage["percpu_usage"] = json!(s.cg.cpu_percpu_ns);
    }
    json!({
        "cpu_usage": usage,
        "system_cpu_usage": s.system_ns,
        "online_cpus": s.online_cpus,
        "throttling_data": {
            "periods": s.cg.throttle_periods,
            "throttled_periods": s.cg.throttled_periods,
            "throttled_time": s.cg.throttled_time_ns,
        },
    })
}

/// Docker's stats document for `cur`, with `prev` as the pre-reading.
pub fn stats_json(id: &str, name: &str, cur: &StatsSample, prev: Option<&StatsSample>) -> Value {
    let zero = StatsSample::default();
    let prev_s = prev.unwrap_or(&zero);
    let mut v = json!({
        "read": cur.read,
        "preread": prev.map(|p| p.read.clone()).unwrap_or_else(|| ZERO_TIME.to_string()),
        "id": id,
        "name": name,
        "num_procs": 0,
        "cpu_stats": cpu_json(cur),
        "precpu_stats": cpu_json(prev_s),
        "storage_stats": {},
    });
    if !cur.running {
        v["pids_stats"] = json!({});
        v["blkio_stats"] = json!({"io_service_bytes_recursive": null});
        v["memory_stats"] = json!({});
        return v;
    }
    let mut pids = json!({"current": cur.cg.pids_current});
    if cur.cg.pids_limit > 0 {
        pids["limit"] = json!(cur.cg.pids_limit);
    }
    v["pids_stats"] = pids;
    let blk: Vec<Value> = cur
        .cg
        .blkio_bytes
        .iter()
        .map(|(ma, mi, op, val)| json!({"major": ma, "minor": mi, "op": op, "value": val}))
        .collect();
    v["blkio_stats"] = json!({
        "io_service_bytes_recursive": blk,
        "io_serviced_recursive": null, "io_queue_recursive": null,
        "io_service_time_recursive": null, "io_wait_time_recursive": null,
        "io_merged_recursive": null, "io_time_recursive": null, "sectors_recursive": null,
    });
    let limit = match cur.cg.memory_limit {
        0 => cur.host_memory,
        l if cur.host_memory > 0 => l.min(cur.host_memory),
        l => l,
    };
    let stats: Map<String, Value> = cur
        .cg
        .memory_stat
        .iter()
        .map(|(k, n)| (k.clone(), json!(n)))
        .collect();
    v["memory_stats"] = json!({
        "usage": cur.cg.memory_usage,
        "max_usage": cur.cg.memory_max_usage,
        "stats": stats,
        "limit": limit,
    });
    if !cur.networks.is_empty() {
        v["networks"] = Value::Object(cur.networks.clone());
    }
    v
}

impl ContainerService {
    /// Take one reading of a container's counters (zeros when it does not run).
    pub async fn stats_sample(
        self: &Arc<Self>,
        name: &str,
    ) -> Result<(String, String, StatsSample)> {
        let c = self.get(name)?;
        let rec = c.snapshot();
        let cg_path = self.cgroups_path(&rec.id);
        let running = rec.state.status.is_live();
        let pid = rec.state.pid;
        let sample = tokio::task::spawn_blocking(move || {
            let mut s = StatsSample {
                read: now_rfc3339(),
                ..StatsSample::default()
            };
            if running {
                if let Ok(cg) = cgroups::detailed_stats(&cg_path) {
                    s.running = true;
                    s.cg = cg;
                    (s.system_ns, s.online_cpus) = system_cpu();
                    s.networks = networks(pid);
                    s.host_memory = host_memory();
                }
            }
            s
        })
        .await
        .map_err(|e| EngineError::Internal(e.to_string()))?;
        Ok((rec.id, rec.name, sample))
    }
}
