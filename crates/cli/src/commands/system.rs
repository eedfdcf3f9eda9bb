//! version, info, events and the generic inspect.

use serde_json::{json, Value};

use super::{out, s};
use crate::cli::{EventsArgs, FormatArgs, InspectArgs};
use crate::client::{encode, filters_json, for_each_json_line, Client, Query, API_PREFIX};
use crate::error::{CliError, Result};
use crate::format::{indent_json, render_one};
use crate::units::{api_timestamp, human_size_prec};

fn client_info() -> Value {
    json!({
        "Platform": {"Name": ""},
        "Version": env!("CARGO_PKG_VERSION"),
        "ApiVersion": API_PREFIX.trim_start_matches("/v"),
        "DefaultAPIVersion": API_PREFIX.trim_start_matches("/v"),
        "GoVersion": "n/a (rust)",
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
    t.push_str(&format!("  Built:            {}\n", s(&v, "BuildTime")));
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

pub async fn info(c: &Client, a: FormatArgs) -> Result<i32> {
    let v: Value = c.get_json("/info").await?;
    if let Some(f) = &a.format {
        out(&render_one(f, &v)?)?;
        return Ok(0);
    }
    let i = |k: &str| super::i(&v, k);
    let mut t = String::new();
    t.push_str("Client:\n");
    t.push_str(&format!(" Version:    {}\n", env!("CARGO_PKG_VERSION")));
    t.push_str(" Context:    default\n Debug Mode: false\n\n");
    t.push_str("Server:\n");
    t.push_str(&format!(" Containers: {}\n", i("Containers")));
    t.push_str(&format!("  Running: {}\n", i("ContainersRunning")));
    t.push_str(&format!("  Paused: {}\n", i("ContainersPaused")));
    t.push_str(&format!("  Stopped: {}\n", i("ContainersStopped")));
    t.push_str(&format!(" Images: {}\n", i("Images")));
    t.push_str(&format!(" Server Version: {}\n", s(&v, "ServerVersion")));
    t.push_str(&format!(" Storage Driver: {}\n", s(&v, "Driver")));
    t.push_str(&format!(" Logging Driver: {}\n", s(&v, "LoggingDriver")));
    t.push_str(&format!(" Cgroup Driver: {}\n", s(&v, "CgroupDriver")));
    t.push_str(&format!(" Cgroup Version: {}\n", s(&v, "CgroupVersion")));
    t.push_str(&format!(" Default Runtime: {}\n", s(&v, "DefaultRuntime")));
    t.push_str(&format!(" Kernel Version: {}\n", s(&v, "KernelVersion")));
    t.push_str(&format!(
        " Operating System: {}\n",
        s(&v, "OperatingSystem")
    ));
    t.push_str(&format!(" OSType: {}\n", s(&v, "OSType")));
    t.push_str(&format!(" Architecture: {}\n", s(&v, "Architecture")));
    t.push_str(&format!(" CPUs: {}\n", i("NCPU")));
    t.push_str(&format!(" Total Memory: {}\n", human_mem(i("MemTotal"))));
    t.push_str(&format!(" Name: {}\n", s(&v, "Name")));
    t.push_str(&format!(" ID: {}\n", s(&v, "ID")));
    t.push_str(&format!(" Docker Root Dir: {}\n", s(&v, "DockerRootDir")));
    t.push_str(&format!(
        " Debug Mode: {}\n",
        v.get("Debug").and_then(|d| d.as_bool()).unwrap_or(false)
    ));
    t.push_str(&format!(
        " Live Restore Enabled: {}\n",
        v.get("LiveRestoreEnabled")
            .and_then(|d| d.as_bool())
            .unwrap_or(false)
    ));
    out(&t)?;
    for w in v
        .get("Warnings")
        .and_then(|w| w.as_array())
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        if let Some(w) = w.as_str() {
            eprintln!("{w}");
        }
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
    let mut found: Vec<Value> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    let kind = a.kind.as_deref().unwrap_or("");
    if !matches!(kind, "" | "container" | "image") {
        return Err(CliError::Usage(format!(
            "\"{kind}\" is not a valid value for --type"
        )));
    }
    for name in &a.names {
        let n = encode(name);
        let mut result: Option<Value> = None;
        if kind != "image" {
            let q = Query::new().add_if(a.size, "size", "1").render();
            match c
                .get_json::<Value>(&format!("/containers/{n}/json{q}"))
                .await
            {
                Ok(v) => result = Some(v),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        if result.is_none() && kind != "container" {
            match c.get_json::<Value>(&format!("/images/{n}/json")).await {
                Ok(v) => result = Some(v),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        match result {
            Some(v) => found.push(v),
            None => errors.push(match kind {
                "container" => format!("Error: No such container: {name}"),
                "image" => format!("Error: No such image: {name}"),
                _ => format!("Error: No such object: {name}"),
            }),
        }
    }
    match &a.format {
        Some(f) => {
            for v in &found {
                out(&render_one(f, v)?)?;
            }
        }
        None => out(&format!("{}\n", indent_json(&Value::Array(found))?))?,
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
