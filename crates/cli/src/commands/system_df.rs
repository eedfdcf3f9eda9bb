//! `berth system df [-v] [--format]` (docker's disk usage tables), and the `system` verb group.

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::{i, out, s};
use crate::client::Client;
use crate::error::Result;
use crate::format::{ellipsis, render_list, short_id, tabwrite};
use crate::units::{human_size, human_size_prec, time_ago};

#[derive(Subcommand, Debug)]
pub enum SystemCmd {
    /// Show docker disk usage
    Df(DfArgs),
    /// Display system-wide information
    Info(crate::cli::FormatArgs),
    /// Get real time events from the server
    Events(crate::cli::EventsArgs),
}

#[derive(Args, Debug, Default)]
pub struct DfArgs {
    /// Show detailed information on space usage
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
}

pub async fn run(c: &Client, cmd: SystemCmd) -> Result<i32> {
    match cmd {
        SystemCmd::Df(a) => df(c, a).await,
        SystemCmd::Info(a) => crate::commands::system::info(c, a).await,
        SystemCmd::Events(a) => crate::commands::system::events(c, a).await,
    }
}

/// go-units' HumanSize (4 significant digits).
fn hs(n: i64) -> String {
    human_size_prec(n as f64, 4)
}

/// `SIZE (PCT%)` when there is a total, as docker's disk usage formatter.
fn reclaim(reclaimable: i64, total: i64) -> String {
    if total > 0 {
        format!("{} ({}%)", hs(reclaimable), reclaimable * 100 / total)
    } else {
        hs(reclaimable)
    }
}

fn arr<'a>(v: &'a Value, k: &str) -> &'a [Value] {
    v.get(k)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn active_state(st: &str) -> bool {
    st.contains("running") || st.contains("paused") || st.contains("restarting")
}

/// The four summary rows (Type, TotalCount, Active, Size, Reclaimable).
pub fn summary_rows(du: &Value) -> Vec<Value> {
    let images = arr(du, "Images");
    let layers = i(du, "LayersSize");
    let used: i64 = images
        .iter()
        .filter(|im| i(im, "Containers") != 0)
        .filter(|im| i(im, "Size") != -1 && i(im, "SharedSize") != -1)
        .map(|im| i(im, "Size") - i(im, "SharedSize"))
        .sum();
    let img_active = images.iter().filter(|im| i(im, "Containers") > 0).count();

    let cts = arr(du, "Containers");
    let ct_size: i64 = cts.iter().map(|c| i(c, "SizeRw")).sum();
    let ct_reclaim: i64 = cts
        .iter()
        .filter(|c| !active_state(s(c, "State")))
        .map(|c| i(c, "SizeRw"))
        .sum();
    let ct_active = cts.iter().filter(|c| active_state(s(c, "State"))).count();

    let vols = arr(du, "Volumes");
    let usage = |v: &Value, k: &str| v.get("UsageData").map(|u| i(u, k)).unwrap_or(-1);
    let vol_size: i64 = vols
        .iter()
        .map(|v| usage(v, "Size"))
        .filter(|n| *n != -1)
        .sum();
    let vol_reclaim: i64 = vols
        .iter()
        .filter(|v| usage(v, "RefCount") == 0)
        .map(|v| usage(v, "Size"))
        .filter(|n| *n != -1)
        .sum();
    let vol_active = vols.iter().filter(|v| usage(v, "RefCount") > 0).count();

    let bc = arr(du, "BuildCache");
    let shared = |b: &Value| b.get("Shared").and_then(Value::as_bool).unwrap_or(false);
    let in_use = |b: &Value| b.get("InUse").and_then(Value::as_bool).unwrap_or(false);
    let bc_size: i64 = bc.iter().filter(|b| !shared(b)).map(|b| i(b, "Size")).sum();
    let bc_reclaim: i64 = bc
        .iter()
        .filter(|b| !shared(b) && !in_use(b))
        .map(|b| i(b, "Size"))
        .sum();
    let bc_active = bc.iter().filter(|b| in_use(b)).count();

    let row = |t: &str, total: usize, active: usize, size: String, rec: String| {
        json!({"Type": t, "TotalCount": total.to_string(), "Active": active.to_string(),
               "Size": size, "Reclaimable": rec})
    };
    vec![
        row(
            "Images",
            images.len(),
            img_active,
            hs(layers),
            reclaim(layers - used, layers),
        ),
        row(
            "Containers",
            cts.len(),
            ct_active,
            hs(ct_size),
            reclaim(ct_reclaim, ct_size),
        ),
        row(
            "Local Volumes",
            vols.len(),
            vol_active,
            hs(vol_size),
            reclaim(vol_reclaim, vol_size),
        ),
        row(
            "Build Cache",
            bc.len(),
            bc_active,
            hs(bc_size),
            hs(bc_reclaim),
        ),
    ]
}

fn verbose(du: &Value) -> String {
    let mut o = String::from("Images space usage:\n\n");
    let mut t = String::from(
        "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE\tSHARED SIZE\tUNIQUE SIZE\tCONTAINERS\n",
    );
    for im in arr(du, "Images") {
        let tags: Vec<&str> = arr(im, "RepoTags")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let pairs: Vec<(String, String)> = if tags.is_empty() {
            vec![("<none>".into(), "<none>".into())]
        } else {
            tags.iter()
                .map(|t| match t.rsplit_once(':') {
                    Some((r, tg)) => (r.to_string(), tg.to_string()),
                    None => (t.to_string(), "<none>".into()),
                })
                .collect()
        };
        let size = i(im, "Size");
        let shared = i(im, "SharedSize");
        for (repo, tag) in pairs {
            t.push_str(&format!(
                "{repo}\t{tag}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                short_id(s(im, "Id")),
                time_ago(i(im, "Created")),
                human_size(size as f64),
                if shared == -1 {
                    "N/A".into()
                } else {
                    hs(shared)
                },
                if shared == -1 {
                    "N/A".into()
                } else {
                    hs(size - shared)
                },
                i(im, "Containers"),
            ));
        }
    }
    o.push_str(&tabwrite(&t));
    o.push_str("\nContainers space usage:\n\n");
    let mut t =
        String::from("CONTAINER ID\tIMAGE\tCOMMAND\tLOCAL VOLUMES\tSIZE\tCREATED\tSTATUS\tNAMES\n");
    for c in arr(du, "Containers") {
        let vols = arr(c, "Mounts")
            .iter()
            .filter(|m| s(m, "Type") == "volume")
            .count();
        let names: Vec<&str> = arr(c, "Names")
            .iter()
            .filter_map(Value::as_str)
            .map(|n| n.trim_start_matches('/'))
            .collect();
        t.push_str(&format!(
            "{}\t{}\t\"{}\"\t{}\t{}\t{}\t{}\t{}\n",
            short_id(s(c, "Id")),
            s(c, "Image"),
            ellipsis(s(c, "Command"), 20),
            vols,
            hs(i(c, "SizeRw")),
            time_ago(i(c, "Created")),
            s(c, "Status"),
            names.join(","),
        ));
    }
    o.push_str(&tabwrite(&t));
    o.push_str("\nLocal Volumes space usage:\n\n");
    let mut t = String::from("VOLUME NAME\tLINKS\tSIZE\n");
    for v in arr(du, "Volumes") {
        let u = v.get("UsageData").cloned().unwrap_or(Value::Null);
        t.push_str(&format!(
            "{}\t{}\t{}\n",
            s(v, "Name"),
            i(&u, "RefCount"),
            hs(i(&u, "Size"))
        ));
    }
    o.push_str(&tabwrite(&t));
    let bc = arr(du, "BuildCache");
    let total: i64 = bc.iter().map(|b| i(b, "Size")).sum();
    o.push_str(&format!("\nBuild cache usage: {}\n\n", hs(total)));
    let mut t = String::from("CACHE ID\tCACHE TYPE\tSIZE\tCREATED\tLAST USED\tUSAGE\tSHARED\n");
    for b in bc {
        let ago = |k: &str| {
            chrono::DateTime::parse_from_rfc3339(s(b, k))
                .map(|d| time_ago(d.timestamp()))
                .unwrap_or_default()
        };
        t.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            ellipsis(s(b, "ID"), 12),
            s(b, "Type"),
            hs(i(b, "Size")),
            ago("CreatedAt"),
            ago("LastUsedAt"),
            i(b, "UsageCount"),
            b.get("Shared").and_then(Value::as_bool).unwrap_or(false),
        ));
    }
    o.push_str(&tabwrite(&t));
    o
}

pub async fn df(c: &Client, a: DfArgs) -> Result<i32> {
    let du: Value = c.get_json("/system/df").await?;
    if a.verbose && a.format.is_none() {
        out(&verbose(&du))?;
        return Ok(0);
    }
    let headers = json!({"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE",
                         "Size": "SIZE", "Reclaimable": "RECLAIMABLE"});
    let default = "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}";
    out(&render_list(
        a.format.as_deref(),
        default,
        &headers,
        &summary_rows(&du),
    )?)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_matches_docker_formulas() {
        let du = json!({
            "LayersSize": 4_000_000,
            "Images": [
                {"Containers": 1, "Size": 3_000_000, "SharedSize": 1_000_000},
                {"Containers": 0, "Size": 2_000_000, "SharedSize": 1_000_000},
            ],
            "Containers": [
                {"State": "running", "SizeRw": 100},
                {"State": "exited", "SizeRw": 300},
            ],
            "Volumes": [
                {"UsageData": {"Size": 10, "RefCount": 1}},
                {"UsageData": {"Size": 30, "RefCount": 0}},
            ],
            "BuildCache": [],
        });
        let r = summary_rows(&du);
        assert_eq!(r[0]["Size"], "4MB");
        assert_eq!(r[0]["Reclaimable"], "2MB (50%)");
        assert_eq!(r[0]["Active"], "1");
        assert_eq!(r[1]["Reclaimable"], "300B (75%)");
        assert_eq!(r[2]["Size"], "40B");
        assert_eq!(r[2]["Reclaimable"], "30B (75%)");
        assert_eq!(r[3]["Size"], "0B");
        assert_eq!(r[3]["Reclaimable"], "0B");
    }
}
