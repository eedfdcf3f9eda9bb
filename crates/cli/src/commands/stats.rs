//! `stats` and `update`, with docker's flags, formulas and output.

use clap::Args;
use serde_json::{json, Map, Value};

use super::{out, s};
use crate::client::{encode, Client, Query};
use crate::error::{CliError, Result};
use crate::format::{render_list, short_id};
use crate::units::{fmt_g, human_size, parse_size};

#[derive(Args, Debug, Default)]
pub struct StatsArgs {
    /// Show all containers (default shows just running)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Disable streaming stats and only pull the first result
    #[arg(long = "no-stream")]
    pub no_stream: bool,
    /// Do not truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
    pub containers: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct UpdateArgs {
    /// Memory limit
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Swap limit equal to memory plus swap: -1 to enable unlimited swap
    #[arg(long = "memory-swap")]
    pub memory_swap: Option<String>,
    /// Memory soft limit
    #[arg(long = "memory-reservation")]
    pub memory_reservation: Option<String>,
    /// Number of CPUs
    #[arg(long)]
    pub cpus: Option<String>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares")]
    pub cpu_shares: Option<i64>,
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<i64>,
    #[arg(long = "cpu-quota")]
    pub cpu_quota: Option<i64>,
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long = "pids-limit")]
    pub pids_limit: Option<i64>,
    /// Restart policy to apply when a container exits
    #[arg(long)]
    pub restart: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// docker's `units.BytesSize`: binary units, 4 significant digits ("1.5MiB").
pub fn bytes_size(v: f64) -> String {
    const UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
    let mut size = v;
    let mut i = 0;
    while size >= 1024.0 && i < UNITS.len() - 1 {
        size /= 1024.0;
        i += 1;
    }
    format!("{}{}", fmt_g(size, 4), UNITS[i])
}

fn u(v: &Value, path: &[&str]) -> f64 {
    let mut cur = v;
    for k in path {
        match cur.get(*k) {
            Some(x) => cur = x,
            None => return 0.0,
        }
    }
    cur.as_f64().unwrap_or(0.0)
}

/// One row of `docker stats` from a stats document (docker's Unix formulas).
pub fn stats_row(arg: &str, v: &Value, no_trunc: bool) -> Value {
    let cpu_delta = u(v, &["cpu_stats", "cpu_usage", "total_usage"])
        - u(v, &["precpu_stats", "cpu_usage", "total_usage"]);
    let sys_delta =
        u(v, &["cpu_stats", "system_cpu_usage"]) - u(v, &["precpu_stats", "system_cpu_usage"]);
    let mut online = u(v, &["cpu_stats", "online_cpus"]);
    if online == 0.0 {
        online = v["cpu_stats"]["cpu_usage"]["percpu_usage"]
            .as_array()
            .map_or(0.0, |a| a.len() as f64);
    }
    let cpu = if sys_delta > 0.0 && cpu_delta > 0.0 {
        cpu_delta / sys_delta * online * 100.0
    } else {
        0.0
    };
    let usage = u(v, &["memory_stats", "usage"]);
    let stats = &v["memory_stats"]["stats"];
    let mem = match (
        stats.get("total_inactive_file").and_then(Value::as_f64),
        stats.get("inactive_file").and_then(Value::as_f64),
    ) {
        (Some(x), _) if x < usage => usage - x,
        (None, Some(x)) if x < usage => usage - x,
        _ => usage,
    };
    let limit = u(v, &["memory_stats", "limit"]);
    let mem_pct = if limit != 0.0 {
        mem / limit * 100.0
    } else {
        0.0
    };
    let (mut rx, mut tx) = (0.0, 0.0);
    if let Some(nets) = v.get("networks").and_then(Value::as_object) {
        for n in nets.values() {
            rx += u(n, &["rx_bytes"]);
            tx += u(n, &["tx_bytes"]);
        }
    }
    let (mut rd, mut wr) = (0.0, 0.0);
    for e in v["blkio_stats"]["io_service_bytes_recursive"]
        .as_array()
        .into_iter()
        .flatten()
    {
        match s(e, "op").to_ascii_lowercase().as_str() {
            "read" => rd += u(e, &["value"]),
            "write" => wr += u(e, &["value"]),
            _ => {}
        }
    }
    let id = s(v, "id");
    json!({
        "Container": arg,
        "ID": if no_trunc { id.to_string() } else { short_id(id) },
        "Name": s(v, "name").trim_start_matches('/'),
        "CPUPerc": format!("{cpu:.2}%"),
        "MemUsage": format!("{} / {}", bytes_size(mem), bytes_size(limit)),
        "MemPerc": format!("{mem_pct:.2}%"),
        "NetIO": format!("{} / {}", human_size(rx), human_size(tx)),
        "BlockIO": format!("{} / {}", human_size(rd), human_size(wr)),
        "PIDs": format!("{}", u(v, &["pids_stats", "current"]) as u64),
    })
}

const STATS_TABLE: &str = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}";

fn stats_headers() -> Value {
    json!({
        "Container": "CONTAINER", "ID": "CONTAINER ID", "Name": "NAME", "CPUPerc": "CPU %",
        "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O",
        "BlockIO": "BLOCK I/O", "PIDs": "PIDS",
    })
}

async fn stats_once(c: &Client, a: &StatsArgs, names: &[String]) -> Result<String> {
    let mut rows = Vec::new();
    for n in names {
        let v: Value = c
            .get_json(&format!("/containers/{}/stats?stream=false", encode(n)))
            .await?;
        rows.push(stats_row(n, &v, a.no_trunc));
    }
    let fmt = a.format.as_deref().filter(|f| !f.trim().is_empty());
    render_list(
        fmt.or(Some(STATS_TABLE)),
        STATS_TABLE,
        &stats_headers(),
        &rows,
    )
}

pub async fn stats(c: &Client, a: StatsArgs) -> Result<i32> {
    loop {
        let names = if a.containers.is_empty() {
            let q = Query::new().add_if(a.all, "all", "1").render();
            let list: Vec<Value> = c.get_json(&format!("/containers/json{q}")).await?;
            list.iter().map(|v| short_id(s(v, "Id"))).collect()
        } else {
            a.containers.clone()
        };
        let text = stats_once(c, &a, &names).await?;
        if a.no_stream {
            out(&text)?;
            return Ok(0);
        }
        // Streaming: redraw the table in place, like docker.
        out(&format!("\x1b[2J\x1b[H{text}"))?;
    }
}

pub async fn update(c: &Client, a: UpdateArgs) -> Result<i32> {
    let mut body = Map::new();
    let mut set = |k: &str, v: Value| {
        body.insert(k.to_string(), v);
    };
    if let Some(m) = &a.memory {
        set("Memory", json!(parse_size(m)?));
    }
    if let Some(m) = &a.memory_reservation {
        set("MemoryReservation", json!(parse_size(m)?));
    }
    match a.memory_swap.as_deref() {
        Some("-1") => set("MemorySwap", json!(-1)),
        Some(m) => set("MemorySwap", json!(parse_size(m)?)),
        None => {}
    }
    if let Some(cpus) = &a.cpus {
        let f: f64 = cpus.parse().map_err(|_| {
            CliError::Usage(format!("invalid argument \"{cpus}\" for \"--cpus\" flag"))
        })?;
        set("NanoCpus", json!((f * 1e9).round() as i64));
    }
    if let Some(x) = a.cpu_shares {
        set("CpuShares", json!(x));
    }
    if let Some(x) = a.cpu_period {
        set("CpuPeriod", json!(x));
    }
    if let Some(x) = a.cpu_quota {
        set("CpuQuota", json!(x));
    }
    if let Some(x) = &a.cpuset_cpus {
        set("CpusetCpus", json!(x));
    }
    if let Some(x) = &a.cpuset_mems {
        set("CpusetMems", json!(x));
    }
    if let Some(x) = a.pids_limit {
        set("PidsLimit", json!(x));
    }
    if let Some(r) = &a.restart {
        let p = super::run::parse_restart(r)?;
        set("RestartPolicy", serde_json::to_value(p)?);
    }
    if body.is_empty() {
        return Err(CliError::other(
            "you must provide one or more flags when using this command",
        ));
    }
    let body = Value::Object(body);
    let mut warns: Vec<String> = Vec::new();
    let mut errs: Vec<String> = Vec::new();
    for n in &a.containers {
        match c
            .post_json::<Value>(&format!("/containers/{}/update", encode(n)), Some(&body))
            .await
        {
            Ok(r) => {
                for w in r["Warnings"].as_array().into_iter().flatten() {
                    warns.push(w.as_str().unwrap_or("").to_string());
                }
                out(&format!("{n}\n"))?;
            }
            Err(CliError::Exit(code)) => return Ok(code),
            Err(e) => errs.push(e.to_string()),
        }
    }
    if !warns.is_empty() {
        out(&format!("{}\n", warns.join("\n")))?;
    }
    if !errs.is_empty() {
        return Err(CliError::other(errs.join("\n")));
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_sizes_like_go_units() {
        assert_eq!(bytes_size(0.0), "0B");
        assert_eq!(bytes_size(1536.0 * 1024.0), "1.5MiB");
        assert_eq!(bytes_size(64.0 * 1024.0 * 1024.0), "64MiB");
        assert_eq!(bytes_size(2.0 * 1024.0 * 1024.0 * 1024.0), "2GiB");
    }

    #[test]
    fn row_uses_docker_formulas() {
        let v = json!({
            "id": "0123456789abcdef", "name": "/web",
            "cpu_stats": {"cpu_usage": {"total_usage": 300}, "system_cpu_usage": 2000, "online_cpus": 2},
            "precpu_stats": {"cpu_usage": {"total_usage": 100}, "system_cpu_usage": 1000},
            "memory_stats": {"usage": 3145728, "limit": 67108864, "stats": {"total_inactive_file": 1048576}},
            "networks": {"eth0": {"rx_bytes": 1500, "tx_bytes": 0}},
            "blkio_stats": {"io_service_bytes_recursive": [{"op": "Read", "value": 4096}, {"op": "Write", "value": 2000000}]},
            "pids_stats": {"current": 3}
        });
        let r = stats_row("web", &v, false);
        assert_eq!(r["ID"], "0123456789ab");
        assert_eq!(r["Name"], "web");
        assert_eq!(r["CPUPerc"], "40.00%");
        assert_eq!(r["MemUsage"], "2MiB / 64MiB");
        assert_eq!(r["MemPerc"], "3.12%");
        assert_eq!(r["NetIO"], "1.5kB / 0B");
        assert_eq!(r["BlockIO"], "4.1kB / 2MB");
        assert_eq!(r["PIDs"], "3");
    }
}
