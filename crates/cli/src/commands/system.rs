//! version, info, events and the generic inspect.

use serde_json::{json, Value};

use super::{out, s};
use crate::cli::{EventsArgs, FormatArgs, InspectArgs};
use crate::client::{encode, filters_json, for_each_json_line, Client, Query, API_PREFIX};
use crate::error::{CliError, Result};
use crate::format::{indent_raw_json, render_one};
use crate::units::{api_timestamp, human_size_prec};

fn client_info() -> Value {
    json!({
        "Platform": {"Name": ""},
        "Version": env!("CARGO_PKG_VERSION"),
        "ApiVersion": API_PREFIX.trim_start_matches("/v"),
        "DefaultAPIVersion": API_PREFIX.trim_start_matches("/v"),
        "GoVersion": "n/a (Rust)",
        "GitCommit": "",
        "BuildTime": "",
        "Os": std::env::consts::OS,
        "Arch": go_arch(),
        "Context": "default",
    })
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

pub async fn version(c: &Client, a: FormatArgs) -> Result<i32> {
    let client = client_info();
    let server: Result<Value> = c.get_json("/version").await;
    if let Some(f) = &a.format {
        let data = json!({"Client": client, "Server": server.as_ref().ok()});
        out(&render_one(f, &data)?)?;
        return server.map(|_| 0);
    }
    let mut t = String::new();
    t.push_str("Client:\n");
    t.push_str(&format!(" Version:           {}\n", s(&client, "Version")));
    t.push_str(&format!(
        " API version:       {}\n",
        s(&client, "ApiVersion")
    ));
    t.push_str(&format!(
        " Go version:        {}\n",
        s(&client, "GoVersion")
    ));
    t.push_str(&format!(
        " Git commit:        {}\n",
        s(&client, "GitCommit")
    ));
    t.push_str(&format!(
        " Built:             {}\n",
        s(&client, "BuildTime")
    ));
    t.push_str(&format!(
        " OS/Arch:           {}/{}\n",
        s(&client, "Os"),
        s(&client, "Arch")
    ));
    t.push_str(" Context:           default\n");
    out(&t)?;
    let v = server?;
    let mut t = String::new();
    let platform = v.get("Platform").map(|p| s(p, "Name")).unwrap_or("");
    t.push_str(&format!("\nServer: {platform}\n"));
    t.push_str(" Engine:\n");
    t.push_str(&format!("  Version:          {}\n", s(&v, "Version")));
    t.push_str(&format!(
        "  API version:      {} (minimum version {})\n",
        s(&v, "ApiVersion"),
        s(&v, "MinAPIVersion")
    ));
    t.push_str(&format!("  Go version:       {}\n", s(&v, "GoVersion")));
    t.push_str(&format!("  Git commit:       {}\n", s(&v, "GitCommit")));
    t.push_str(&format!(
        "  Built:            {}\n",
        ansic_date(s(&v, "BuildTime"))
    ));
    t.push_str(&format!(
        "  OS/Arch:          {}/{}\n",
        s(&v, "Os"),
        s(&v, "Arch")
    ));
    t.push_str(&format!(
        "  Experimental:     {}\n",
        v.get("Experimental")
            .and_then(|e| e.as_bool())
            .unwrap_or(false)
    ));
    out(&t)?;
    Ok(0)
}

/// docker's reformatDate: an RFC 3339 time as Go's time.ANSIC ("Mon Jan _2 15:04:05 2006").
fn ansic_date(t: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(t) {
        Ok(d) => d.format("%a %b %e %H:%M:%S %Y").to_string(),
        Err(_) => t.to_string(),
    }
}

/// String items of a JSON array field.
fn strs<'a>(v: &'a Value, key: &str) -> Vec<&'a str> {
    v.get(key)
        .and_then(|a| a.as_array())
        .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
        .unwrap_or_default()
}

/// The server half of `docker info`, in docker's order (prettyPrintServerInfo).
pub fn server_info_text(v: &Value) -> String {
    use std::fmt::Write;
    let i = |k: &str| super::i(v, k);
    let b = |k: &str| v.get(k).and_then(|d| d.as_bool()).unwrap_or(false);
    let mut t = String::new();
    let _ = writeln!(t, "Server:");
    let _ = writeln!(t, " Containers: {}", i("Containers"));
    let _ = writeln!(t, "  Running: {}", i("ContainersRunning"));
    let _ = writeln!(t, "  Paused: {}", i("ContainersPaused"));
    let _ = writeln!(t, "  Stopped: {}", i("ContainersStopped"));
    let _ = writeln!(t, " Images: {}", i("Images"));
    let _ = writeln!(t, " Server Version: {}", s(v, "ServerVersion"));
    let _ = writeln!(t, " Storage Driver: {}", s(v, "Driver"));
    for pair in v
        .get("DriverStatus")
        .and_then(|d| d.as_array())
        .into_iter()
        .flatten()
    {
        if let (Some(k), Some(val)) = (
            pair.get(0).and_then(|x| x.as_str()),
            pair.get(1).and_then(|x| x.as_str()),
        ) {
            let _ = writeln!(t, "  {k}: {val}");
        }
    }
    let _ = writeln!(t, " Logging Driver: {}", s(v, "LoggingDriver"));
    let _ = writeln!(t, " Cgroup Driver: {}", s(v, "CgroupDriver"));
    let _ = writeln!(t, " Cgroup Version: {}", s(v, "CgroupVersion"));
    let plugins = v.get("Plugins").cloned().unwrap_or(Value::Null);
    let _ = writeln!(t, " Plugins:");
    let _ = writeln!(t, "  Volume: {}", strs(&plugins, "Volume").join(" "));
    let _ = writeln!(t, "  Network: {}", strs(&plugins, "Network").join(" "));
    let authz = strs(&plugins, "Authorization");
    if !authz.is_empty() {
        let _ = writeln!(t, "  Authorization: {}", authz.join(" "));
    }
    let _ = writeln!(t, "  Log: {}", strs(&plugins, "Log").join(" "));
    let swarm = v.get("Swarm").map(|w| s(w, "LocalNodeState")).unwrap_or("");
    let _ = writeln!(t, " Swarm: {swarm}");
    let mut runtimes: Vec<&String> = v
        .get("Runtimes")
        .and_then(|r| r.as_object())
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    runtimes.sort();
    t.push_str(" Runtimes:");
    for r in runtimes {
        let _ = write!(t, " {r}");
    }
    t.push('\n');
    let _ = writeln!(t, " Default Runtime: {}", s(v, "DefaultRuntime"));
    let _ = writeln!(t, " Init Binary: {}", s(v, "InitBinary"));
    let commit = |k: &str| v.get(k).map(|c| s(c, "ID")).unwrap_or("").to_string();
    let _ = writeln!(t, " containerd version: {}", commit("ContainerdCommit"));
    let _ = writeln!(t, " runc version: {}", commit("RuncCommit"));
    let _ = writeln!(t, " init version: {}", commit("InitCommit"));
    let secopts = strs(v, "SecurityOptions");
    if !secopts.is_empty() {
        let _ = writeln!(t, " Security Options:");
        for so in secopts {
            for kv in so.split(',') {
                match kv.split_once('=') {
                    Some(("name", n)) => {
                        let _ = writeln!(t, "  {n}");
                    }
                    Some(("profile", p)) => {
                        let _ = writeln!(t, "   Profile: {p}");
                    }
                    _ => {}
                }
            }
        }
    }
    let _ = writeln!(t, " Kernel Version: {}", s(v, "KernelVersion"));
    let _ = writeln!(t, " Operating System: {}", s(v, "OperatingSystem"));
    let _ = writeln!(t, " OSType: {}", s(v, "OSType"));
    let _ = writeln!(t, " Architecture: {}", s(v, "Architecture"));
    let _ = writeln!(t, " CPUs: {}", i("NCPU"));
    let _ = writeln!(t, " Total Memory: {}", human_mem(i("MemTotal")));
    let _ = writeln!(t, " Name: {}", s(v, "Name"));
    let _ = writeln!(t, " ID: {}", s(v, "ID"));
    let _ = writeln!(t, " Docker Root Dir: {}", s(v, "DockerRootDir"));
    let _ = writeln!(t, " Debug Mode: {}", b("Debug"));
    if b("Debug") {
        let _ = writeln!(t, "  File Descriptors: {}", i("NFd"));
        let _ = writeln!(t, "  Goroutines: {}", i("NGoroutines"));
        let _ = writeln!(t, "  System Time: {}", s(v, "SystemTime"));
        let _ = writeln!(t, "  EventsListeners: {}", i("NEventsListener"));
    }
    let labels = strs(v, "Labels");
    if !labels.is_empty() {
        let _ = writeln!(t, " Labels:");
        for l in labels {
            let _ = writeln!(t, "  {l}");
        }
    }
    let _ = writeln!(t, " Experimental: {}", b("ExperimentalBuild"));
    let reg = v.get("RegistryConfig").cloned().unwrap_or(Value::Null);
    let mut insecure: Vec<String> = reg
        .get("IndexConfigs")
        .and_then(|m| m.as_object())
        .map(|m| {
            m.values()
                .filter(|c| c.get("Secure").and_then(|x| x.as_bool()) == Some(false))
                .map(|c| s(c, "Name").to_string())
                .collect()
        })
        .unwrap_or_default();
    insecure.extend(
        strs(&reg, "InsecureRegistryCIDRs")
            .into_iter()
            .map(str::to_string),
    );
    if !insecure.is_empty() {
        let _ = writeln!(t, " Insecure Registries:");
        for r in insecure {
            let _ = writeln!(t, "  {r}");
        }
    }
    let mirrors = strs(&reg, "Mirrors");
    if !mirrors.is_empty() {
        let _ = writeln!(t, " Registry Mirrors:");
        for m in mirrors {
            let _ = writeln!(t, "  {m}");
        }
    }
    let _ = writeln!(t, " Live Restore Enabled: {}", b("LiveRestoreEnabled"));
    t.push('\n');
    t
}

pub async fn info(c: &Client, a: FormatArgs) -> Result<i32> {
    let v: Value = c.get_json("/info").await?;
    if let Some(f) = &a.format {
        out(&render_one(f, &v)?)?;
        return Ok(0);
    }
    let mut t = String::new();
    t.push_str("Client:\n");
    t.push_str(&format!(" Version:    {}\n", env!("CARGO_PKG_VERSION")));
    t.push_str(" Context:    default\n Debug Mode: false\n\n");
    t.push_str(&server_info_text(&v));
    out(&t)?;
    for w in strs(&v, "Warnings") {
        eprintln!("{w}");
    }
    Ok(0)
}

/// Binary size with 4 significant digits ("23.43GiB"), as docker info prints memory.
fn human_mem(bytes: i64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    let s = human_size_prec(v, 4);
    format!("{}{}", s.trim_end_matches('B'), UNITS[u])
}

/// `2024-01-01T00:00:00.000000000Z container start <id> (image=busybox, name=x)`.
pub fn event_line(e: &Value) -> String {
    use chrono::TimeZone;
    let mut line = String::new();
    let nanos = e
        .get("timeNano")
        .and_then(|t| t.as_i64())
        .filter(|n| *n != 0)
        .or_else(|| {
            e.get("time")
                .and_then(|t| t.as_i64())
                .map(|t| t * 1_000_000_000)
        });
    if let Some(n) = nanos {
        let t = chrono::Local.timestamp_nanos(n);
        let ts = if t.offset().local_minus_utc() == 0 {
            t.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
        } else {
            t.format("%Y-%m-%dT%H:%M:%S%.9f%:z").to_string()
        };
        line.push_str(&ts);
        line.push(' ');
    }
    let actor = e.get("Actor").cloned().unwrap_or(Value::Null);
    line.push_str(&format!(
        "{} {} {}",
        s(e, "Type"),
        s(e, "Action"),
        s(&actor, "ID")
    ));
    if let Some(attrs) = actor.get("Attributes").and_then(|a| a.as_object()) {
        if !attrs.is_empty() {
            let mut kv: Vec<String> = attrs
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect();
            kv.sort();
            line.push_str(&format!(" ({})", kv.join(", ")));
        }
    }
    line.push('\n');
    line
}

pub async fn events(c: &Client, a: EventsArgs) -> Result<i32> {
    let q = Query::new()
        .add_opt("since", a.since.as_deref().map(api_timestamp).transpose()?)
        .add_opt("until", a.until.as_deref().map(api_timestamp).transpose()?)
        .add_opt("filters", filters_json(&a.filter)?);
    let resp = c
        .request(
            hyper::Method::GET,
            &format!("/events{}", q.render()),
            None,
            crate::client::empty_body(),
        )
        .await?;
    let format = a.format.clone();
    for_each_json_line(resp, |e| {
        let line = match &format {
            Some(f) => render_one(f, &e)?,
            None => event_line(&e),
        };
        out(&line)
    })
    .await?;
    Ok(0)
}

pub async fn inspect(c: &Client, a: InspectArgs) -> Result<i32> {
    let mut found: Vec<bytes::Bytes> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    let kind = a.kind.as_deref().unwrap_or("");
    if !matches!(kind, "" | "container" | "image") {
        return Err(CliError::Usage(format!(
            "\"{kind}\" is not a valid value for --type"
        )));
    }
    for name in &a.names {
        let n = encode(name);
        let q = Query::new().add_if(a.size, "size", "1").render();
        let mut paths = Vec::new();
        if kind != "image" {
            paths.push(format!("/containers/{n}/json{q}"));
        }
        if kind != "container" {
            paths.push(format!("/images/{n}/json"));
        }
        let mut result = None;
        for p in &paths {
            match c.get_bytes(p).await {
                Ok(v) => {
                    result = Some(v);
                    break;
                }
                // Without --type a missing object of one kind is looked up as the next kind;
                // with --type docker prints the engine's own error.
                Err(e) if e.is_not_found() && kind.is_empty() => {}
                Err(e @ CliError::Daemon { .. }) => {
                    errors.push(e.to_string());
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        match result {
            Some(v) => found.push(v),
            None if kind.is_empty() => errors.push(format!("Error: No such object: {name}")),
            None => {}
        }
    }
    match &a.format {
        Some(f) => {
            for raw in &found {
                let v: Value = serde_json::from_slice(raw)?;
                out(&render_one(f, &v)?)?;
            }
        }
        None => {
            // As docker: the raw elements joined into one array, re-indented (key order and
            // escapes as the engine sent them).
            let mut all = b"[".to_vec();
            for (i, raw) in found.iter().enumerate() {
                if i > 0 {
                    all.push(b',');
                }
                all.extend_from_slice(raw);
            }
            all.push(b']');
            out(&format!("{}\n", indent_raw_json(&all)))?;
        }
    }
    for e in &errors {
        eprintln!("{e}");
    }
    Ok(i32::from(!errors.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_line_like_docker() {
        let e = json!({"Type": "container", "Action": "start", "Actor": {"ID": "abc",
            "Attributes": {"name": "web", "image": "busybox"}}, "time": 1704067200, "timeNano": 1704067200000000001i64});
        let l = event_line(&e);
        assert!(
            l.ends_with(" container start abc (image=busybox, name=web)\n"),
            "{l}"
        );
        assert!(l.contains(":00.000000001"), "{l}");
        let bare = event_line(&json!({"Type": "image", "Action": "tag", "Actor": {"ID": "x"}}));
        assert_eq!(bare, "image tag x\n");
    }

    #[test]
    fn memory_units() {
        assert_eq!(human_mem(24 * 1024 * 1024 * 1024), "24GiB");
        assert_eq!(human_mem(1536 * 1024 * 1024), "1.5GiB");
    }
}
