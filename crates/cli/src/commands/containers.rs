//! Container verbs other than run/create/start/attach: ps, stop, kill, wait, rm, logs, rename,
//! pause, unpause, top, port, prune.

use bollard_stubs::models::{ContainerSummary, ContainerTopResponse, PortSummary};
use futures_util::StreamExt;
use serde_json::{json, Value};

use super::{confirm, for_each, out};
use crate::cli::{
    ContainersArgs, KillArgs, LogsArgs, PortArgs, PruneArgs, PsArgs, RenameArgs, RmArgs, StopArgs,
    TopArgs,
};
use crate::client::{body_stream, encode, filters_json, Client, Query};
use crate::error::{CliError, Result};
use crate::format::{ellipsis, go_quote, render_list, short_id, tabwrite_min};
use crate::hijack::Demuxer;
use crate::units::{api_timestamp, human_size, human_size_prec, time_ago};

const PS_DEFAULT: &str =
    "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}";

fn ps_headers() -> Value {
    json!({
        "ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
        "RunningFor": "CREATED", "Ports": "PORTS", "State": "STATE", "Status": "STATUS", "Size": "SIZE",
        "Names": "NAMES", "Labels": "LABELS", "Mounts": "MOUNTS", "Networks": "NETWORKS",
        "LocalVolumes": "LOCAL VOLUMES", "Platform": "PLATFORM",
    })
}

/// "0.0.0.0:8080->80/tcp, 443/tcp" (docker's DisplayablePorts, without range folding).
pub fn display_ports(ports: &[PortSummary]) -> String {
    let mut items: Vec<(String, u16, u16, String)> = ports
        .iter()
        .map(|p| {
            let proto = p.typ.map(|t| t.to_string()).unwrap_or_else(|| "tcp".into());
            (
                p.ip.clone().unwrap_or_default(),
                p.public_port.unwrap_or(0),
                p.private_port,
                proto,
            )
        })
        .collect();
    items.sort_by(|a, b| (a.2, &a.3, &a.0, a.1).cmp(&(b.2, &b.3, &b.0, b.1)));
    items.dedup();
    items
        .iter()
        .map(|(ip, public, private, proto)| {
            if *public == 0 {
                format!("{private}/{proto}")
            } else {
                let ip = if ip.contains(':') {
                    format!("[{ip}]")
                } else {
                    ip.clone()
                };
                format!("{ip}:{public}->{private}/{proto}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn local_time(unix: i64) -> String {
    use chrono::TimeZone;
    match chrono::Local.timestamp_opt(unix, 0).single() {
        // Go's time.Time.String(): "2006-01-02 15:04:05 -0700 MST" with the zone's abbreviation.
        Some(t) => format!(
            "{} {}",
            t.format("%Y-%m-%d %H:%M:%S %z"),
            zone_abbrev(unix).unwrap_or_else(|| t.format("%:z").to_string())
        ),
        None => unix.to_string(),
    }
}

/// The local zone's abbreviation at `unix` ("UTC", "CET"), from localtime_r's tm_zone.
fn zone_abbrev(unix: i64) -> Option<String> {
    let t: libc::time_t = unix;
    // SAFETY: an all-zero tm is a valid value; localtime_r only writes into `tm`.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call; tm_zone then points to static tz data.
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    if !ok || tm.tm_zone.is_null() {
        return None;
    }
    // SAFETY: tm_zone is a NUL-terminated string owned by libc's tz state.
    let z = unsafe { std::ffi::CStr::from_ptr(tm.tm_zone) };
    let z = z.to_string_lossy().into_owned();
    (!z.is_empty()).then_some(z)
}

/// One `ps` row with docker's field names.
pub fn ps_row(c: &ContainerSummary, trunc: bool) -> Value {
    let id = c.id.clone().unwrap_or_default();
    let image = c.image.clone().unwrap_or_default();
    let image = if image.is_empty() {
        "<no image>".to_string()
    } else if trunc {
        let iid = c.image_id.clone().unwrap_or_default();
        if !iid.is_empty() && short_id(&iid) == short_id(&image) {
            short_id(&image)
        } else {
            image.split('@').next().unwrap_or("").to_string()
        }
    } else {
        image
    };
    let command = c.command.clone().unwrap_or_default();
    let command = go_quote(&if trunc {
        ellipsis(&command, 20)
    } else {
        command
    });
    let mut names: Vec<String> = c
        .names
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|n| n.trim_start_matches('/').to_string())
        .collect();
    if trunc {
        if let Some(n) = names.iter().find(|n| !n.contains('/')) {
            names = vec![n.clone()];
        }
    }
    let mut labels: Vec<String> = c
        .labels
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    labels.sort();
    let mounts = c.mounts.clone().unwrap_or_default();
    let mount_names: Vec<String> = mounts
        .iter()
        .map(|m| {
            let n = m.name.clone().unwrap_or_default();
            if n.is_empty() {
                m.source.clone().unwrap_or_default()
            } else if trunc {
                ellipsis(&n, 15)
            } else {
                n
            }
        })
        .collect();
    let local_volumes = mounts
        .iter()
        .filter(|m| m.driver.as_deref() == Some("local"))
        .count();
    let mut networks: Vec<String> = c
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .map(|n| n.keys().cloned().collect())
        .unwrap_or_default();
    networks.sort();
    let srw = human_size(c.size_rw.unwrap_or(0) as f64);
    let size = match c.size_root_fs {
        Some(v) if v > 0 => format!("{srw} (virtual {})", human_size(v as f64)),
        _ => srw,
    };
    let created = c.created.unwrap_or(0);
    json!({
        "ID": if trunc { short_id(&id) } else { id },
        "Image": image,
        "Command": command,
        "CreatedAt": local_time(created),
        "RunningFor": time_ago(created),
        "Ports": display_ports(&c.ports.clone().unwrap_or_default()),
        "State": c.state.map(|s| s.to_string()).unwrap_or_default(),
        "Status": c.status.clone().unwrap_or_default(),
        "Size": size,
        "Names": names.join(","),
        "Labels": labels.join(","),
        "Mounts": mount_names.join(","),
        "Networks": networks.join(","),
        "LocalVolumes": local_volumes.to_string(),
        "Platform": Value::Null,
    })
}

pub async fn ps(c: &Client, a: PsArgs) -> Result<i32> {
    let mut q = Query::new()
        .add_if(a.all || a.last.is_some() || a.latest, "all", "1")
        .add_if(a.size, "size", "1")
        .add_opt("filters", filters_json(&a.filter)?);
    if a.latest {
        q = q.add("limit", "1");
    } else if let Some(n) = a.last.filter(|n| *n > 0) {
        q = q.add("limit", n.to_string());
    }
    let list: Vec<ContainerSummary> = c
        .get_json(&format!("/containers/json{}", q.render()))
        .await?;
    let rows: Vec<Value> = list.iter().map(|x| ps_row(x, !a.no_trunc)).collect();
    let format = if a.quiet {
        Some("{{.ID}}".to_string())
    } else {
        a.format.clone()
    };
    let default = if a.size {
        format!("{PS_DEFAULT}\t{{{{.Size}}}}")
    } else {
        PS_DEFAULT.to_string()
    };
    out(&render_list(
        format.as_deref(),
        &default,
        &ps_headers(),
        &rows,
    )?)?;
    Ok(0)
}

pub async fn stop(c: &Client, a: StopArgs, restart: bool) -> Result<i32> {
    let verb = if restart { "restart" } else { "stop" };
    let q = Query::new()
        .add_opt("t", a.time.map(|t| t.to_string()))
        .add_opt("signal", a.signal.clone())
        .render();
    for_each(&a.containers, |n| {
        let q = q.clone();
        async move {
            c.post_discard(&format!("/containers/{}/{verb}{q}", encode(&n)))
                .await
        }
    })
    .await
}

pub async fn kill(c: &Client, a: KillArgs) -> Result<i32> {
    let q = Query::new().add_opt("signal", a.signal.clone()).render();
    for_each(&a.containers, |n| {
        let q = q.clone();
        async move {
            c.post_discard(&format!("/containers/{}/kill{q}", encode(&n)))
                .await
        }
    })
    .await
}

pub async fn simple(c: &Client, a: ContainersArgs, verb: &str) -> Result<i32> {
    for_each(&a.containers, |n| async move {
        c.post_discard(&format!("/containers/{}/{verb}", encode(&n)))
            .await
    })
    .await
}

pub async fn wait(c: &Client, a: ContainersArgs) -> Result<i32> {
    let mut failed = false;
    for n in &a.containers {
        let r: Result<Value> = c
            .post_json(&format!("/containers/{}/wait", encode(n)), None)
            .await;
        match r {
            Ok(v) => out(&format!(
                "{}\n",
                v.get("StatusCode").and_then(|s| s.as_i64()).unwrap_or(0)
            ))?,
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    Ok(i32::from(failed))
}

pub async fn rm(c: &Client, a: RmArgs) -> Result<i32> {
    let q = Query::new()
        .add_if(a.force, "force", "1")
        .add_if(a.volumes, "v", "1")
        .add_if(a.link, "link", "1")
        .render();
    // docker rm -f prints "No such container" errors but does not fail on them.
    let mut failed = false;
    for n in &a.containers {
        let r = async {
            let resp = c.delete(&format!("/containers/{}{q}", encode(n))).await?;
            http_body_util::BodyExt::collect(resp.into_body()).await?;
            Ok::<(), CliError>(())
        }
        .await;
        match r {
            Ok(()) => super::out(&format!("{n}\n"))?,
            Err(e @ CliError::Connect { .. }) => return Err(e),
            Err(e) => {
                eprintln!("{e}");
                failed |= !(a.force && e.is_not_found());
            }
        }
    }
    Ok(i32::from(failed))
}

pub async fn rename(c: &Client, a: RenameArgs) -> Result<i32> {
    let name = a.new_name.trim();
    if name.is_empty() {
        return Err(CliError::Usage(
            "Error: neither old nor new names may be empty".into(),
        ));
    }
    let q = Query::new().add("name", name).render();
    if let Err(e) = c
        .post_discard(&format!("/containers/{}/rename{q}", encode(&a.container)))
        .await
    {
        if matches!(e, CliError::Connect { .. }) {
            return Err(e);
        }
        eprintln!("{e}");
        return Err(CliError::other(format!(
            "Error: failed to rename container named {}",
            a.container
        )));
    }
    Ok(0)
}

pub async fn logs(c: &Client, a: LogsArgs) -> Result<i32> {
    let info: Value = c
        .get_json(&format!("/containers/{}/json", encode(&a.container)))
        .await?;
    let tty = info
        .get("Config")
        .and_then(|c| c.get("Tty"))
        .and_then(|t| t.as_bool())
        .unwrap_or(false);
    let q = Query::new()
        .add("stdout", "1")
        .add("stderr", "1")
        .add_if(a.follow, "follow", "1")
        .add_if(a.timestamps, "timestamps", "1")
        .add_if(a.details, "details", "1")
        .add("tail", a.tail.as_str())
        .add_opt("since", a.since.as_deref().map(api_timestamp).transpose()?)
        .add_opt("until", a.until.as_deref().map(api_timestamp).transpose()?);
    let resp = c
        .request(
            hyper::Method::GET,
            &format!("/containers/{}/logs{}", encode(&a.container), q.render()),
            None,
            crate::client::empty_body(),
        )
        .await?;
    let mut stream = body_stream(resp);
    let mut demux = Demuxer::default();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if tty {
            write_stream(1, &chunk)?;
            continue;
        }
        demux.push(&chunk);
        while let Some((kind, payload)) = demux.next_frame() {
            write_stream(kind, &payload)?;
        }
    }
    Ok(0)
}

fn write_stream(kind: u8, data: &[u8]) -> Result<()> {
    use std::io::Write;
    if kind == 2 {
        let mut e = std::io::stderr().lock();
        e.write_all(data)?;
        e.flush()?;
        Ok(())
    } else {
        out(&String::from_utf8_lossy(data))
    }
}

pub async fn top(c: &Client, a: TopArgs) -> Result<i32> {
    let q = Query::new()
        .add_if(!a.ps_args.is_empty(), "ps_args", a.ps_args.join(" "))
        .render();
    let top: ContainerTopResponse = c
        .get_json(&format!("/containers/{}/top{q}", encode(&a.container)))
        .await?;
    let mut text = top.titles.unwrap_or_default().join("\t");
    text.push('\n');
    for p in top.processes.unwrap_or_default() {
        text.push_str(&p.join("\t"));
        text.push('\n');
    }
    out(&tabwrite_min(&text, 20))?;
    Ok(0)
}

fn host_port(b: &Value) -> String {
    let ip = super::s(b, "HostIp");
    let ip = if ip.is_empty() { "0.0.0.0" } else { ip };
    let ip = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    };
    format!("{ip}:{}", super::s(b, "HostPort"))
}

pub async fn port(c: &Client, a: PortArgs) -> Result<i32> {
    let info: Value = c
        .get_json(&format!("/containers/{}/json", encode(&a.container)))
        .await?;
    let ports = info
        .get("NetworkSettings")
        .and_then(|n| n.get("Ports"))
        .and_then(|p| p.as_object())
        .cloned()
        .unwrap_or_default();
    if let Some(p) = &a.port {
        let key = if p.contains('/') {
            p.clone()
        } else {
            format!("{p}/tcp")
        };
        if let Some(Value::Array(bs)) = ports.get(&key) {
            if !bs.is_empty() {
                for b in bs {
                    out(&format!("{}\n", host_port(b)))?;
                }
                return Ok(0);
            }
        }
        return Err(CliError::other(format!(
            "Error: No public port '{key}' published for {}",
            a.container
        )));
    }
    let mut keys: Vec<&String> = ports.keys().collect();
    keys.sort_by_key(|k| {
        let (n, proto) = k.split_once('/').unwrap_or((k.as_str(), ""));
        (n.parse::<u32>().unwrap_or(0), proto.to_string())
    });
    for k in keys {
        if let Some(Value::Array(bs)) = ports.get(k) {
            for b in bs {
                out(&format!("{k} -> {}\n", host_port(b)))?;
            }
        }
    }
    Ok(0)
}

pub async fn prune(c: &Client, a: PruneArgs) -> Result<i32> {
    if !a.force && !confirm("WARNING! This will remove all stopped containers.")? {
        return Ok(0);
    }
    let q = Query::new()
        .add_opt("filters", filters_json(&a.filter)?)
        .render();
    let r: Value = c.post_json(&format!("/containers/prune{q}"), None).await?;
    let deleted: Vec<String> = r
        .get("ContainersDeleted")
        .and_then(|d| d.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let mut text = String::new();
    if !deleted.is_empty() {
        text.push_str("Deleted Containers:\n");
        for d in &deleted {
            text.push_str(d);
            text.push('\n');
        }
        text.push('\n');
    }
    let space = super::i(&r, "SpaceReclaimed");
    text.push_str(&format!(
        "Total reclaimed space: {}\n",
        human_size_prec(space as f64, 4)
    ));
    out(&text)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_row_like_docker() {
        let c: ContainerSummary = serde_json::from_value(json!({
            "Id": "0123456789abcdef0123", "Names": ["/web", "/other/link"], "Image": "busybox@sha256:abc",
            "ImageID": "sha256:fff", "Command": "sh -c 'while true; do sleep 1; done'", "Created": 0,
            "Ports": [{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
                      {"PrivatePort": 443, "Type": "tcp"}, {"IP": "::", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"}],
            "Labels": {"b": "2", "a": "1"}, "State": "running", "Status": "Up 2 minutes",
        }))
        .unwrap();
        let r = ps_row(&c, true);
        assert_eq!(r["ID"], "0123456789ab");
        assert_eq!(r["Image"], "busybox");
        assert_eq!(r["Command"], "\"sh -c 'while true; …\"");
        assert_eq!(r["Names"], "web");
        assert_eq!(r["Labels"], "a=1,b=2");
        assert_eq!(
            r["Ports"],
            "0.0.0.0:8080->80/tcp, [::]:8080->80/tcp, 443/tcp"
        );
        assert_eq!(r["State"], "running");
        assert!(r["RunningFor"].as_str().unwrap().ends_with(" ago"));
        let full = ps_row(&c, false);
        assert_eq!(full["Names"], "web,other/link");
        assert_eq!(full["Image"], "busybox@sha256:abc");
        let table = render_list(None, PS_DEFAULT, &ps_headers(), &[r]).unwrap();
        let mut lines = table.lines();
        assert!(lines
            .next()
            .unwrap()
            .starts_with("CONTAINER ID   IMAGE     COMMAND                  CREATED"));
        assert!(lines
            .next()
            .unwrap()
            .starts_with("0123456789ab   busybox   \"sh -c 'while true; …\"   "));
    }
}
