//! `volume create/ls/inspect/rm/prune`, with docker's flags and output.

use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

use super::{confirm, out, s};
use crate::client::{encode, filters_json, Client, Query};
use crate::error::{CliError, Result};
use crate::format::{indent_json, render_list, render_one};
use crate::units::human_size_prec;

#[derive(Subcommand, Debug)]
pub enum VolumeCmd {
    /// Create a volume
    Create(CreateArgs),
    /// List volumes
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more volumes
    Inspect(InspectArgs),
    /// Remove one or more volumes
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Remove unused local volumes
    Prune(PruneArgs),
}

#[derive(Args, Debug, Default)]
pub struct CreateArgs {
    /// Specify volume driver name
    #[arg(short = 'd', long, default_value = "local")]
    pub driver: String,
    /// Set metadata for a volume
    #[arg(long = "label")]
    pub label: Vec<String>,
    /// Specify volume name
    #[arg(long)]
    pub name: Option<String>,
    /// Set driver specific options
    #[arg(short = 'o', long = "opt")]
    pub opt: Vec<String>,
    pub volume: Option<String>,
}

#[derive(Args, Debug, Default)]
pub struct LsArgs {
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    #[arg(long)]
    pub format: Option<String>,
    /// Only display volume names
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

#[derive(Args, Debug, Default)]
pub struct InspectArgs {
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    #[arg(required = true)]
    pub volumes: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct RmArgs {
    /// Force the removal of one or more volumes
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(required = true)]
    pub volumes: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct PruneArgs {
    /// Remove all unused volumes, not just anonymous ones
    #[arg(short = 'a', long)]
    pub all: bool,
    #[arg(long = "filter")]
    pub filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
}

fn kv_map(items: &[String], flag: &str) -> Result<Map<String, Value>> {
    let mut m = Map::new();
    for it in items {
        let (k, v) = match it.split_once('=') {
            Some((k, v)) => (k, v),
            None if flag == "label" => (it.as_str(), ""),
            None => {
                return Err(CliError::other(format!(
                    "invalid argument \"{it}\" for \"-o, --opt\" flag: invalid key value pair format in driver options"
                )))
            }
        };
        m.insert(k.to_string(), Value::String(v.to_string()));
    }
    Ok(m)
}

pub async fn run(c: &Client, cmd: VolumeCmd) -> Result<i32> {
    match cmd {
        VolumeCmd::Create(a) => create(c, a).await,
        VolumeCmd::Ls(a) => ls(c, a).await,
        VolumeCmd::Inspect(a) => inspect(c, a).await,
        VolumeCmd::Rm(a) => rm(c, a).await,
        VolumeCmd::Prune(a) => prune(c, a).await,
    }
}

async fn create(c: &Client, a: CreateArgs) -> Result<i32> {
    let name = match (&a.name, &a.volume) {
        (Some(n), Some(v)) if n != v => {
            return Err(CliError::other(
                "conflicting options: cannot specify a volume-name through both --name and as a positional arg",
            ))
        }
        (Some(n), _) => n.clone(),
        (None, Some(v)) => v.clone(),
        (None, None) => String::new(),
    };
    let body = json!({
        "Name": name,
        "Driver": a.driver,
        "DriverOpts": kv_map(&a.opt, "opt")?,
        "Labels": kv_map(&a.label, "label")?,
    });
    let v: Value = c.post_json("/volumes/create", Some(&body)).await?;
    out(&format!("{}\n", s(&v, "Name")))?;
    Ok(0)
}

async fn ls(c: &Client, a: LsArgs) -> Result<i32> {
    let q = Query::new()
        .add_opt("filters", filters_json(&a.filter)?)
        .render();
    let v: Value = c.get_json(&format!("/volumes{q}")).await?;
    let vols = v
        .get("Volumes")
        .and_then(|x| x.as_array())
        .cloned()
        .unwrap_or_default();
    let mut rows: Vec<Value> = vols
        .iter()
        .map(|v| {
            let labels = v
                .get("Labels")
                .and_then(|l| l.as_object())
                .map(|m| {
                    let mut kv: Vec<String> = m
                        .iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                        .collect();
                    kv.sort();
                    kv.join(",")
                })
                .unwrap_or_default();
            json!({
                "Name": s(v, "Name"), "Driver": s(v, "Driver"), "Scope": s(v, "Scope"),
                "Mountpoint": s(v, "Mountpoint"), "Labels": labels, "Size": "N/A", "Links": "N/A",
            })
        })
        .collect();
    rows.sort_by(|x, y| s(x, "Name").cmp(s(y, "Name")));
    let format = if a.quiet {
        Some("{{.Name}}")
    } else {
        a.format.as_deref()
    };
    let headers = json!({
        "Name": "VOLUME NAME", "Driver": "DRIVER", "Scope": "SCOPE", "Mountpoint": "MOUNTPOINT",
        "Labels": "LABELS", "Size": "SIZE", "Links": "LINKS",
    });
    out(&render_list(
        format,
        "table {{.Driver}}\t{{.Name}}",
        &headers,
        &rows,
    )?)?;
    Ok(0)
}

async fn inspect(c: &Client, a: InspectArgs) -> Result<i32> {
    let mut found = Vec::new();
    let mut failed = false;
    for n in &a.volumes {
        match c
            .get_json::<Value>(&format!("/volumes/{}", encode(n)))
            .await
        {
            Ok(v) => found.push(v),
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    match a.format.as_deref() {
        Some(f) if !f.is_empty() => {
            for v in &found {
                out(&render_one(f, v)?)?;
            }
        }
        _ => out(&format!("{}\n", indent_json(&Value::Array(found))?))?,
    }
    Ok(i32::from(failed))
}

async fn rm(c: &Client, a: RmArgs) -> Result<i32> {
    let q = Query::new().add_if(a.force, "force", "1").render();
    let q = &q;
    super::for_each(&a.volumes, |n| async move {
        c.delete(&format!("/volumes/{}{q}", encode(&n))).await?;
        Ok(())
    })
    .await
}

async fn prune(c: &Client, a: PruneArgs) -> Result<i32> {
    let warning = if a.all {
        "WARNING! This will remove all local volumes not used by at least one container."
    } else {
        "WARNING! This will remove anonymous local volumes not used by at least one container."
    };
    if !a.force && !confirm(warning)? {
        return Ok(0);
    }
    let mut filters = a.filter.clone();
    if a.all {
        filters.push("all=true".into());
    }
    let q = Query::new()
        .add_opt("filters", filters_json(&filters)?)
        .render();
    let r: Value = c.post_json(&format!("/volumes/prune{q}"), None).await?;
    let mut text = String::new();
    let deleted: Vec<String> = r
        .get("VolumesDeleted")
        .and_then(|x| x.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if !deleted.is_empty() {
        text.push_str("Deleted Volumes:\n");
        for d in &deleted {
            text.push_str(d);
            text.push('\n');
        }
        text.push('\n');
    }
    text.push_str(&format!(
        "Total reclaimed space: {}\n",
        human_size_prec(super::i(&r, "SpaceReclaimed") as f64, 4)
    ));
    out(&text)?;
    Ok(0)
}
