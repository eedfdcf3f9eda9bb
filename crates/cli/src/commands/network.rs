//! `network create/ls/inspect/rm/prune/connect/disconnect`, with docker's flags and output.

use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

use super::{confirm, out, s};
use crate::client::{encode, filters_json, Client, Query};
use crate::error::{CliError, Result};
use crate::format::{indent_json, render_list, render_one};

#[derive(Subcommand, Debug)]
pub enum NetworkCmd {
    /// Create a network
    Create(CreateArgs),
    /// List networks
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more networks
    Inspect(InspectArgs),
    /// Remove one or more networks
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Remove all unused networks
    Prune(PruneArgs),
    /// Connect a container to a network
    Connect(ConnectArgs),
    /// Disconnect a container from a network
    Disconnect(DisconnectArgs),
}

#[derive(Args, Debug, Default)]
pub struct CreateArgs {
    /// Driver to manage the Network
    #[arg(short = 'd', long, default_value = "bridge")]
    pub driver: String,
    /// IPv4 Gateway for the master subnet
    #[arg(long)]
    pub gateway: Vec<String>,
    /// Restrict external access to the network
    #[arg(long)]
    pub internal: bool,
    /// Allocate container ip from a sub-range
    #[arg(long = "ip-range")]
    pub ip_range: Vec<String>,
    /// IP Address Management Driver
    #[arg(long = "ipam-driver", default_value = "default")]
    pub ipam_driver: String,
    /// Enable manual container attachment
    #[arg(long)]
    pub attachable: bool,
    /// Set metadata on a network
    #[arg(long = "label")]
    pub label: Vec<String>,
    /// Set driver specific options
    #[arg(short = 'o', long = "opt")]
    pub opt: Vec<String>,
    /// Subnet in CIDR format that represents a network segment
    #[arg(long)]
    pub subnet: Vec<String>,
    pub name: String,
}

#[derive(Args, Debug, Default)]
pub struct LsArgs {
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    #[arg(long)]
    pub format: Option<String>,
    /// Do not truncate the output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Only display network IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

#[derive(Args, Debug, Default)]
pub struct InspectArgs {
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    /// Verbose output for diagnostics (accepted)
    #[arg(short = 'v', long)]
    pub verbose: bool,
    #[arg(required = true)]
    pub networks: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct RmArgs {
    /// Do not error if the network does not exist
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(required = true)]
    pub networks: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct PruneArgs {
    #[arg(long = "filter")]
    pub filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
}

#[derive(Args, Debug, Default)]
pub struct ConnectArgs {
    /// Add network-scoped alias for the container
    #[arg(long)]
    pub alias: Vec<String>,
    /// IPv4 address
    #[arg(long)]
    pub ip: Option<String>,
    pub network: String,
    pub container: String,
}

#[derive(Args, Debug, Default)]
pub struct DisconnectArgs {
    /// Force the container to disconnect from a network
    #[arg(short = 'f', long)]
    pub force: bool,
    pub network: String,
    pub container: String,
}

fn kv_map(items: &[String], what: &str) -> Result<Map<String, Value>> {
    let mut m = Map::new();
    for it in items {
        let (k, v) = match it.split_once('=') {
            Some((k, v)) => (k, v),
            None if what == "label" => (it.as_str(), ""),
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

/// The IPAM config list from the flags (docker pairs --gateway/--ip-range with --subnet).
pub fn ipam_config(subnets: &[String], gateways: &[String], ranges: &[String]) -> Result<Value> {
    if subnets.len() < gateways.len() || subnets.len() < ranges.len() {
        return Err(CliError::other(
            "every ip-range or gateway must have a corresponding subnet",
        ));
    }
    let cfg: Vec<Value> = subnets
        .iter()
        .enumerate()
        .map(|(i, sn)| {
            let mut c = json!({"Subnet": sn});
            if let Some(g) = gateways.get(i) {
                c["Gateway"] = json!(g);
            }
            if let Some(r) = ranges.get(i) {
                c["IPRange"] = json!(r);
            }
            c
        })
        .collect();
    Ok(Value::Array(cfg))
}

pub async fn run(c: &Client, cmd: NetworkCmd) -> Result<i32> {
    match cmd {
        NetworkCmd::Create(a) => create(c, a).await,
        NetworkCmd::Ls(a) => ls(c, a).await,
        NetworkCmd::Inspect(a) => inspect(c, a).await,
        NetworkCmd::Rm(a) => rm(c, a).await,
        NetworkCmd::Prune(a) => prune(c, a).await,
        NetworkCmd::Connect(a) => connect(c, a).await,
        NetworkCmd::Disconnect(a) => disconnect(c, a).await,
    }
}

async fn create(c: &Client, a: CreateArgs) -> Result<i32> {
    let body = json!({
        "Name": a.name,
        "Driver": a.driver,
        "Internal": a.internal,
        "Attachable": a.attachable,
        "IPAM": {
            "Driver": a.ipam_driver,
            "Config": ipam_config(&a.subnet, &a.gateway, &a.ip_range)?,
            "Options": {},
        },
        "Options": kv_map(&a.opt, "opt")?,
        "Labels": kv_map(&a.label, "label")?,
    });
    let v: Value = c.post_json("/networks/create", Some(&body)).await?;
    out(&format!("{}\n", s(&v, "Id")))?;
    Ok(0)
}

async fn ls(c: &Client, a: LsArgs) -> Result<i32> {
    let q = Query::new()
        .add_opt("filters", filters_json(&a.filter)?)
        .render();
    let v: Value = c.get_json(&format!("/networks{q}")).await?;
    let mut rows: Vec<Value> = v
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|n| {
            let id = s(n, "Id");
            let id = if a.no_trunc { id } else { &id[..12.min(id.len())] };
            let labels = n
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
                "ID": id, "Name": s(n, "Name"), "Driver": s(n, "Driver"), "Scope": s(n, "Scope"),
                "IPv4": "true", "IPv6": n.get("EnableIPv6").and_then(Value::as_bool).unwrap_or(false).to_string(),
                "Internal": n.get("Internal").and_then(Value::as_bool).unwrap_or(false).to_string(),
                "Labels": labels, "CreatedAt": s(n, "Created"),
            })
        })
        .collect();
    rows.sort_by(|x, y| s(x, "Name").cmp(s(y, "Name")));
    let format = if a.quiet {
        Some("{{.ID}}")
    } else {
        a.format.as_deref()
    };
    let headers = json!({
        "ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE",
        "IPv4": "IPV4", "IPv6": "IPV6", "Internal": "INTERNAL", "Labels": "LABELS",
        "CreatedAt": "CREATED AT",
    });
    out(&render_list(
        format,
        "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}",
        &headers,
        &rows,
    )?)?;
    Ok(0)
}

async fn inspect(c: &Client, a: InspectArgs) -> Result<i32> {
    let mut found = Vec::new();
    let mut failed = false;
    for n in &a.networks {
        match c
            .get_json::<Value>(&format!("/networks/{}", encode(n)))
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
    let force = a.force;
    let code = super::for_each(&a.networks, |n| async move {
        match c.delete(&format!("/networks/{}", encode(&n))).await {
            Ok(_) => Ok(()),
            Err(e) if force && e.to_string().contains("not found") => Ok(()),
            Err(e) => Err(e),
        }
    })
    .await?;
    // docker's `network rm` ends its error list with the exit status.
    if code != 0 {
        eprintln!("exit status {code}");
    }
    Ok(code)
}

async fn prune(c: &Client, a: PruneArgs) -> Result<i32> {
    if !a.force
        && !confirm(
            "WARNING! This will remove all custom networks not used by at least one container.",
        )?
    {
        return Ok(0);
    }
    let q = Query::new()
        .add_opt("filters", filters_json(&a.filter)?)
        .render();
    let r: Value = c.post_json(&format!("/networks/prune{q}"), None).await?;
    let deleted: Vec<String> = r
        .get("NetworksDeleted")
        .and_then(|x| x.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if !deleted.is_empty() {
        let mut text = String::from("Deleted Networks:\n");
        for d in &deleted {
            text.push_str(d);
            text.push('\n');
        }
        out(&text)?;
    }
    Ok(0)
}

/// The EndpointConfig of `connect` (and of `run --network-alias/--ip`).
pub fn endpoint_config(aliases: &[String], ip: Option<&str>) -> Value {
    let mut ep = json!({});
    if !aliases.is_empty() {
        ep["Aliases"] = json!(aliases);
    }
    if let Some(ip) = ip.filter(|s| !s.is_empty()) {
        ep["IPAMConfig"] = json!({"IPv4Address": ip});
    }
    ep
}

async fn connect(c: &Client, a: ConnectArgs) -> Result<i32> {
    let body = json!({
        "Container": a.container,
        "EndpointConfig": endpoint_config(&a.alias, a.ip.as_deref()),
    });
    let resp = c
        .post(
            &format!("/networks/{}/connect", encode(&a.network)),
            Some(&body),
        )
        .await?;
    drop(resp);
    Ok(0)
}

async fn disconnect(c: &Client, a: DisconnectArgs) -> Result<i32> {
    let body = json!({"Container": a.container, "Force": a.force});
    let resp = c
        .post(
            &format!("/networks/{}/disconnect", encode(&a.network)),
            Some(&body),
        )
        .await?;
    drop(resp);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipam_flags() {
        let v = ipam_config(
            &["10.1.0.0/24".into()],
            &["10.1.0.254".into()],
            &["10.1.0.128/25".into()],
        )
        .unwrap();
        assert_eq!(v[0]["Subnet"], "10.1.0.0/24");
        assert_eq!(v[0]["Gateway"], "10.1.0.254");
        assert_eq!(v[0]["IPRange"], "10.1.0.128/25");
        assert!(ipam_config(&[], &["10.1.0.1".into()], &[]).is_err());
        assert_eq!(ipam_config(&[], &[], &[]).unwrap(), json!([]));
    }

    #[test]
    fn endpoint() {
        assert_eq!(endpoint_config(&[], None), json!({}));
        let e = endpoint_config(&["a".into()], Some("10.0.0.5"));
        assert_eq!(e["Aliases"][0], "a");
        assert_eq!(e["IPAMConfig"]["IPv4Address"], "10.0.0.5");
    }

    #[test]
    fn opts() {
        let m = kv_map(&["a=b".into(), "c".into()], "label").unwrap();
        assert_eq!(m["c"], "");
        assert!(kv_map(&["c".into()], "opt").is_err());
    }
}
