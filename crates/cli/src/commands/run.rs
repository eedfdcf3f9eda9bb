//! run, create, start and attach: flags → ContainerCreateBody, and the attach/wait/start dance.

use std::collections::HashMap;

use bollard_stubs::models::{
    ContainerCreateBody, ContainerCreateResponse, HostConfig, HostConfigLogConfig, PortBinding,
    RestartPolicy, RestartPolicyNameEnum,
};
use serde_json::Value;

use super::out;
use crate::cli::{AttachArgs, RunArgs, StartArgs};
use crate::client::{encode, read_json, Client, Query};
use crate::error::{CliError, Result};
use crate::hijack::{hijack, pump_output, pump_stdin, terminal_size, RawTerminal};
use crate::units::parse_size;

/// `KEY=VAL` as is; `KEY` alone takes the value from the environment (omitted when unset).
fn env_entry(e: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    if e.contains('=') {
        Some(e.to_string())
    } else {
        lookup(e).map(|v| format!("{e}={v}"))
    }
}

/// Lines of an --env-file: comments and blank lines skipped.
pub fn parse_env_file(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Vec<String>> {
    let mut envs = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let l = line.trim_start();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let key = l.split('=').next().unwrap_or("");
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(CliError::Usage(format!(
                "variable '{key}' contains whitespaces (line {})",
                n + 1
            )));
        }
        envs.extend(env_entry(l, lookup));
    }
    Ok(envs)
}

/// `no | always | unless-stopped | on-failure[:N]`.
pub fn parse_restart(s: &str) -> Result<RestartPolicy> {
    let (name, count) = match s.split_once(':') {
        Some((n, c)) => (n, Some(c)),
        None => (s, None),
    };
    let bad = || CliError::Usage(format!("invalid restart policy format: {s}"));
    let name = match name {
        "" | "no" => RestartPolicyNameEnum::NO,
        "always" => RestartPolicyNameEnum::ALWAYS,
        "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
        "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
        _ => return Err(bad()),
    };
    let max = match count {
        Some(c) if name == RestartPolicyNameEnum::ON_FAILURE => {
            Some(c.parse::<i64>().map_err(|_| bad())?)
        }
        Some(_) => return Err(CliError::Usage(
            "invalid restart policy format: maximum retry count can only be used with 'on-failure'"
                .into(),
        )),
        None => None,
    };
    Ok(RestartPolicy {
        name: Some(name),
        maximum_retry_count: max,
    })
}

fn expand_range(s: &str) -> Result<Vec<u16>> {
    let bad = || CliError::Usage(format!("invalid port: {s}"));
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b): (u16, u16) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
            if b < a {
                return Err(bad());
            }
            Ok((a..=b).collect())
        }
        None => Ok(vec![s.parse().map_err(|_| bad())?]),
    }
}

/// `-p [ip:][hostPort:]containerPort[/proto]` → ("80/tcp", binding) pairs.
pub fn parse_publish(spec: &str) -> Result<Vec<(String, PortBinding)>> {
    let (rest, proto) = match spec.rsplit_once('/') {
        Some((r, p)) => (r, p.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    let (ip, hostport, cport) = {
        let (front, cport) = match rest.rsplit_once(':') {
            Some((f, c)) => (Some(f), c),
            None => (None, rest),
        };
        match front {
            None => (String::new(), String::new(), cport),
            Some(f) => {
                // f is "hostPort", "ip:hostPort", "[v6]:hostPort" or "ip:" forms
                let (ip, hp) = if let Some(r) = f.strip_prefix('[') {
                    let (ip, after) = r
                        .split_once(']')
                        .ok_or_else(|| CliError::Usage(format!("invalid IP address in {spec}")))?;
                    (ip.to_string(), after.trim_start_matches(':').to_string())
                } else {
                    match f.rsplit_once(':') {
                        Some((ip, hp)) => (ip.to_string(), hp.to_string()),
                        None => (String::new(), f.to_string()),
                    }
                };
                (ip, hp, cport)
            }
        }
    };
    if cport.is_empty() {
        return Err(CliError::Usage(format!("no port specified: {spec}<empty>")));
    }
    let cports = expand_range(cport)?;
    let hports: Vec<Option<u16>> = if hostport.is_empty() {
        vec![None; cports.len()]
    } else {
        let h = expand_range(&hostport)?;
        if h.len() == 1 && cports.len() > 1 {
            return Err(CliError::Usage(format!(
                "invalid ranges specified for container and host Ports: {spec}"
            )));
        }
        if h.len() != cports.len() {
            return Err(CliError::Usage(format!(
                "invalid ranges specified for container and host Ports: {spec}"
            )));
        }
        h.into_iter().map(Some).collect()
    };
    Ok(cports
        .into_iter()
        .zip(hports)
        .map(|(c, h)| {
            (
                format!("{c}/{proto}"),
                PortBinding {
                    host_ip: Some(ip.clone()),
                    host_port: Some(h.map(|p| p.to_string()).unwrap_or_default()),
                },
            )
        })
        .collect())
}

/// Build the create body and container name from `run`/`create` flags.
pub fn build_create(
    a: &RunArgs,
    lookup: &dyn Fn(&str) -> Option<String>,
    read_file: &dyn Fn(&str) -> std::io::Result<String>,
) -> Result<(ContainerCreateBody, Option<String>)> {
    let (image, cmd) = a
        .image_and_cmd
        .split_first()
        .ok_or_else(|| CliError::Usage("\"run\" requires at least 1 argument.".into()))?;
    let mut env = Vec::new();
    for f in &a.env_file {
        let text = read_file(f).map_err(|e| CliError::Usage(format!("open {f}: {e}")))?;
        env.extend(parse_env_file(&text, lookup)?);
    }
    env.extend(a.env.iter().filter_map(|e| env_entry(e, lookup)));

    let labels: HashMap<String, String> = a
        .label
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (l.clone(), String::new()),
        })
        .collect();

    let attach: Vec<String> = a.attach.iter().map(|s| s.to_ascii_lowercase()).collect();
    for s in &attach {
        if !matches!(s.as_str(), "stdin" | "stdout" | "stderr") {
            return Err(CliError::Usage(format!("invalid argument \"{s}\" for \"-a, --attach\" flag: valid streams are STDIN, STDOUT and STDERR")));
        }
    }
    if a.detach && !attach.is_empty() {
        return Err(CliError::Usage(
            "conflicting options: cannot specify both --attach and --detach".into(),
        ));
    }
    let (att_in, att_out, att_err) = if a.detach {
        (false, false, false)
    } else if attach.is_empty() {
        (a.interactive, true, true)
    } else {
        let has = |s: &str| attach.iter().any(|x| x == s);
        (has("stdin"), has("stdout"), has("stderr"))
    };

    let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    let mut exposed: Vec<String> = Vec::new();
    for p in &a.publish {
        for (port, b) in parse_publish(p)? {
            if !exposed.contains(&port) {
                exposed.push(port.clone());
            }
            port_bindings
                .entry(port)
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(b);
        }
    }
    for e in &a.expose {
        let (p, proto) = e.split_once('/').unwrap_or((e.as_str(), "tcp"));
        for port in expand_range(p)? {
            let k = format!("{port}/{proto}");
            if !exposed.contains(&k) {
                exposed.push(k);
            }
        }
    }

    let (binds, volumes): (Vec<String>, Vec<String>) =
        a.volume.iter().cloned().partition(|v| v.contains(':'));

    let nano_cpus = match &a.cpus {
        Some(c) => {
            let f: f64 = c.parse().map_err(|_| {
                CliError::Usage(format!("invalid argument \"{c}\" for \"--cpus\" flag"))
            })?;
            Some((f * 1e9).round() as i64)
        }
        None => None,
    };
    let memory_swap = match a.memory_swap.as_deref() {
        Some("-1") => Some(-1),
        Some(s) => Some(parse_size(s)?),
        None => None,
    };
    let mut log_config: HashMap<String, String> = HashMap::new();
    for o in &a.log_opt {
        let (k, v) = o.split_once('=').ok_or_else(|| {
            CliError::Usage(format!("invalid key/value pair format in option: {o}"))
        })?;
        log_config.insert(k.to_string(), v.to_string());
    }
    let mut tmpfs: HashMap<String, String> = HashMap::new();
    for t in &a.tmpfs {
        let (k, v) = t.split_once(':').unwrap_or((t.as_str(), ""));
        tmpfs.insert(k.to_string(), v.to_string());
    }
    let nonempty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());

    let host = HostConfig {
        binds: nonempty(&binds),
        port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
        restart_policy: Some(parse_restart(a.restart.as_deref().unwrap_or("no"))?),
        auto_remove: Some(a.rm),
        privileged: Some(a.privileged),
        cap_add: nonempty(&a.cap_add),
        cap_drop: nonempty(&a.cap_drop),
        security_opt: nonempty(&a.security_opt),
        readonly_rootfs: Some(a.read_only),
        memory: a.memory.as_deref().map(parse_size).transpose()?,
        memory_swap,
        nano_cpus,
        cpu_shares: a.cpu_shares,
        pids_limit: a.pids_limit,
        init: a.init.then_some(true),
        network_mode: Some(a.network.clone().unwrap_or_else(|| "default".into())),
        log_config: Some(HostConfigLogConfig {
            typ: Some(a.log_driver.clone().unwrap_or_default()),
            config: Some(log_config),
        }),
        tmpfs: (!tmpfs.is_empty()).then_some(tmpfs),
        extra_hosts: nonempty(&a.add_host),
        dns: nonempty(&a.dns),
        dns_search: nonempty(&a.dns_search),
        dns_options: nonempty(&a.dns_option),
        publish_all_ports: a.publish_all.then_some(true),
        shm_size: a.shm_size.as_deref().map(parse_size).transpose()?,
        ..Default::default()
    };
    let body = ContainerCreateBody {
        hostname: a.hostname.clone(),
        domainname: a.domainname.clone(),
        user: a.user.clone(),
        attach_stdin: Some(att_in),
        attach_stdout: Some(att_out),
        attach_stderr: Some(att_err),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        tty: Some(a.tty),
        open_stdin: Some(a.interactive),
        stdin_once: Some(a.interactive && !a.detach),
        env: Some(env),
        cmd: (!cmd.is_empty()).then(|| cmd.to_vec()),
        image: Some(image.clone()),
        volumes: nonempty(&volumes),
        working_dir: a.workdir.clone(),
        entrypoint: a.entrypoint.as_ref().map(|e| vec![e.clone()]),
        labels: Some(labels),
        stop_signal: a.stop_signal.clone(),
        stop_timeout: a.stop_timeout,
        host_config: Some(host),
        networking_config: run_networking_config(a),
        ..Default::default()
    };
    Ok((body, a.name.clone()))
}

/// `--network-alias` and `--ip` as the endpoint config of the `--network` given.
fn run_networking_config(a: &RunArgs) -> Option<bollard_stubs::models::NetworkingConfig> {
    if a.network_alias.is_empty() && a.ip.is_none() {
        return None;
    }
    let ep = super::network::endpoint_config(&a.network_alias, a.ip.as_deref());
    let ep: bollard_stubs::models::EndpointSettings = serde_json::from_value(ep).ok()?;
    let net = a.network.clone().unwrap_or_else(|| "default".into());
    Some(bollard_stubs::models::NetworkingConfig {
        endpoints_config: Some(HashMap::from([(net, ep)])),
    })
}

/// `busybox` → ("busybox", "latest"); keeps registries with ports and digests intact.
pub fn split_reference(r: &str) -> (String, String) {
    if let Some((name, digest)) = r.split_once('@') {
        return (name.to_string(), digest.to_string());
    }
    let slash = r.rfind('/').map(|i| i + 1).unwrap_or(0);
    match r[slash..].rfind(':') {
        Some(i) => (r[..slash + i].to_string(), r[slash + i + 1..].to_string()),
        None => (r.to_string(), "latest".to_string()),
    }
}

/// POST /images/create?fromImage=…, progress to stderr.
/// docker's normalised repository name: `busybox` → `docker.io/library/busybox`,
/// `me/app` → `docker.io/me/app`; names with a registry host are kept.
pub fn normalized_name(name: &str) -> String {
    let (first, rest) = match name.split_once('/') {
        Some((f, r)) => (f, Some(r)),
        None => (name, None),
    };
    let is_host = first.contains('.') || first.contains(':') || first == "localhost";
    match rest {
        Some(r) if is_host => {
            if first == "index.docker.io" {
                normalized_name(r)
            } else {
                name.to_string()
            }
        }
        Some(_) => format!("docker.io/{name}"),
        None => format!("docker.io/library/{name}"),
    }
}

pub async fn pull(c: &Client, reference: &str) -> Result<()> {
    // Credentials from config.json and docker's progress display, on stderr as docker run does.
    super::pull::pull_reference(c, reference, false, None, super::pull::Sink::Stderr)
        .await
        .map_err(|e| match e {
            CliError::Other(message) => CliError::Daemon {
                status: 500,
                message,
            },
            e => e,
        })
}

async fn create_container(c: &Client, a: &RunArgs) -> Result<String> {
    let lookup = |k: &str| std::env::var(k).ok();
    let read = |p: &str| std::fs::read_to_string(p);
    let (body, name) = build_create(a, &lookup, &read)?;
    let body = serde_json::to_value(&body)?;
    let image = a.image_and_cmd.first().cloned().unwrap_or_default();
    let path = format!(
        "/containers/create{}",
        Query::new().add_opt("name", name).render()
    );
    if a.pull == "always" {
        pull(c, &image).await?;
    }
    let resp = match c.post(&path, Some(&body)).await {
        Err(e)
            if e.is_not_found()
                && a.pull != "never"
                && e.to_string().to_lowercase().contains("image") =>
        {
            let (n, t) = split_reference(&image);
            let sep = if t.starts_with("sha256:") { '@' } else { ':' };
            eprintln!("Unable to find image '{n}{sep}{t}' locally");
            pull(c, &image).await?;
            c.post(&path, Some(&body)).await?
        }
        r => r?,
    };
    let created: ContainerCreateResponse = read_json(resp).await?;
    for w in &created.warnings {
        eprintln!("WARNING: {w}");
    }
    Ok(created.id)
}

pub async fn create(c: &Client, a: RunArgs) -> Result<i32> {
    let id = create_container(c, &a).await?;
    out(&format!("{id}\n"))?;
    Ok(0)
}

struct AttachOpts {
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

/// Attach, register a wait, start (when `start`), stream until EOF, return the exit code.
async fn attach_and_wait(
    c: &Client,
    id: &str,
    o: AttachOpts,
    condition: &str,
    start: bool,
) -> Result<i32> {
    let q = Query::new()
        .add("stream", "1")
        .add_if(o.stdin, "stdin", "1")
        .add_if(o.stdout, "stdout", "1")
        .add_if(o.stderr, "stderr", "1");
    let eid = encode(id);
    let h = hijack(c, &format!("/containers/{eid}/attach{}", q.render())).await?;
    let wait = c
        .post(
            &format!(
                "/containers/{eid}/wait{}",
                Query::new().add("condition", condition).render()
            ),
            None,
        )
        .await?;
    let stdin_tty = std::io::IsTerminal::is_terminal(&std::io::stdin());
    let _raw = (o.tty && o.stdin && stdin_tty).then(RawTerminal::enable);
    if start {
        c.post_discard(&format!("/containers/{eid}/start")).await?;
    }
    if o.tty {
        if let Some((h_, w)) = terminal_size() {
            let q = Query::new()
                .add("h", h_.to_string())
                .add("w", w.to_string());
            let _ = c
                .post_discard(&format!("/containers/{eid}/resize{}", q.render()))
                .await;
        }
    }
    // Without stdin the write half stays open (dropping it would half-close the stream).
    let _writer_keepalive = if o.stdin {
        tokio::spawn(pump_stdin(h.writer));
        None
    } else {
        Some(h.writer)
    };
    let pumped = pump_output(h.leftover, h.reader, o.tty).await;
    drop(_raw);
    let status: Value = read_json(wait).await?;
    pumped?;
    if let Some(msg) = status
        .get("Error")
        .and_then(|e| e.get("Message"))
        .and_then(|m| m.as_str())
    {
        if !msg.is_empty() {
            eprintln!("{msg}");
        }
    }
    Ok(status
        .get("StatusCode")
        .and_then(|s| s.as_i64())
        .unwrap_or(0) as i32)
}

pub async fn run(c: &Client, a: RunArgs) -> Result<i32> {
    if a.rm && a.restart.as_deref().is_some_and(|r| r != "no") {
        return Err(CliError::Usage(
            "Conflicting options: --restart and --rm".into(),
        ));
    }
    let id = create_container(c, &a).await?;
    let eid = encode(&id);
    if a.detach {
        c.post_discard(&format!("/containers/{eid}/start")).await?;
        out(&format!("{id}\n"))?;
        return Ok(0);
    }
    let attach: Vec<String> = a.attach.iter().map(|s| s.to_ascii_lowercase()).collect();
    let has = |s: &str| attach.is_empty() || attach.iter().any(|x| x == s);
    let opts = AttachOpts {
        stdin: a.interactive && (attach.is_empty() || attach.iter().any(|x| x == "stdin")),
        stdout: has("stdout"),
        stderr: has("stderr"),
        tty: a.tty,
    };
    let condition = if a.rm { "removed" } else { "next-exit" };
    match attach_and_wait(c, &id, opts, condition, true).await {
        Ok(code) => Err(CliError::Exit(code)),
        Err(e) => Err(e),
    }
}

async fn inspect_container(c: &Client, name: &str) -> Result<Value> {
    c.get_json(&format!("/containers/{}/json", encode(name)))
        .await
}

pub async fn start(c: &Client, a: StartArgs) -> Result<i32> {
    if a.attach || a.interactive {
        if a.containers.len() > 1 {
            return Err(CliError::Usage(
                "you cannot start and attach multiple containers at once".into(),
            ));
        }
        let name = &a.containers[0];
        let info = inspect_container(c, name).await?;
        let cfg = info.get("Config").cloned().unwrap_or(Value::Null);
        let tty = cfg.get("Tty").and_then(|v| v.as_bool()).unwrap_or(false);
        let open_stdin = cfg
            .get("OpenStdin")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        let id = super::s(&info, "Id").to_string();
        let opts = AttachOpts {
            stdin: a.interactive && open_stdin,
            stdout: true,
            stderr: true,
            tty,
        };
        let code = attach_and_wait(c, &id, opts, "next-exit", true).await?;
        return Err(CliError::Exit(code));
    }
    let mut failed = Vec::new();
    for n in &a.containers {
        match c
            .post_discard(&format!("/containers/{}/start", encode(n)))
            .await
        {
            Ok(()) => super::out(&format!("{n}\n"))?,
            Err(e @ CliError::Connect { .. }) => return Err(e),
            Err(e) => {
                eprintln!("{e}");
                failed.push(n.as_str());
            }
        }
    }
    if failed.is_empty() {
        return Ok(0);
    }
    Err(CliError::other(format!(
        "Error: failed to start containers: {}",
        failed.join(", ")
    )))
}

pub async fn attach(c: &Client, a: AttachArgs) -> Result<i32> {
    let info = inspect_container(c, &a.container).await?;
    let running = info
        .get("State")
        .and_then(|s| s.get("Running"))
        .and_then(|r| r.as_bool())
        .unwrap_or(false);
    if !running {
        return Err(CliError::other(
            "You cannot attach to a stopped container, start it first",
        ));
    }
    let cfg = info.get("Config").cloned().unwrap_or(Value::Null);
    let tty = cfg.get("Tty").and_then(|v| v.as_bool()).unwrap_or(false);
    let open_stdin = cfg
        .get("OpenStdin")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let id = super::s(&info, "Id").to_string();
    let opts = AttachOpts {
        stdin: !a.no_stdin && open_stdin,
        stdout: true,
        stderr: true,
        tty,
    };
    let code = attach_and_wait(c, &id, opts, "not-running", false).await?;
    Err(CliError::Exit(code))
}

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;
