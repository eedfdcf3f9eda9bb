//! /_ping, /version, /info, /events.

use std::collections::HashMap;
use std::convert::Infallible;

use axum::body::Body;
use axum::extract::{Query as AxQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use berth_engine::events::Event;
use serde_json::json;

use crate::error::{ApiError, ApiResult};
use crate::query::{filters, Query};
use crate::version::{API_VERSION, MIN_API_VERSION};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_ping", get(ping).head(ping))
        .route("/version", get(version))
        .route("/info", get(info))
        .route("/events", get(events))
}

pub const BERTH_VERSION: &str = env!("CARGO_PKG_VERSION");

async fn ping() -> Response {
    let mut r = "OK".into_response();
    let h = r.headers_mut();
    h.insert("API-Version", HeaderValue::from_static(API_VERSION));
    h.insert("OSType", HeaderValue::from_static("linux"));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    h.insert("Builder-Version", HeaderValue::from_static("1"));
    h.insert(
        "Server",
        HeaderValue::from_static(concat!("berth/", env!("CARGO_PKG_VERSION"), " (linux)")),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

fn kernel() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().to_string())
        .unwrap_or_default()
}

async fn version(State(e): State<AppState>) -> Json<serde_json::Value> {
    // No build timestamp is compiled in (reproducible builds); report when this engine started.
    let now = e.started.to_rfc3339();
    Json(json!({
        "Platform": {"Name": "berth"},
        "Components": [{
            "Name": "Engine",
            "Version": BERTH_VERSION,
            "Details": {
                "ApiVersion": API_VERSION,
                "MinAPIVersion": MIN_API_VERSION,
                "Arch": "amd64",
                "Os": "linux",
                "KernelVersion": kernel(),
                "GitCommit": "",
                "GoVersion": "n/a (Rust)",
                "BuildTime": now,
                "Experimental": "false",
            }
        }],
        "Version": BERTH_VERSION,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "n/a (Rust)",
        "Os": "linux",
        "Arch": "amd64",
        "KernelVersion": kernel(),
        "BuildTime": now,
    }))
}

fn mem_total() -> i64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<i64>().ok())
        })
        .map(|k| k * 1024)
        .unwrap_or(0)
}

fn os_name() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_else(|| "Linux".into())
}

async fn info(State(e): State<AppState>) -> ApiResult<Json<serde_json::Value>> {
    let recs: Vec<_> = e.containers.all().iter().map(|c| c.snapshot()).collect();
    use berth_engine::containers::Status;
    let running = recs
        .iter()
        .filter(|r| r.state.status == Status::Running)
        .count();
    let paused = recs
        .iter()
        .filter(|r| r.state.status == Status::Paused)
        .count();
    let images = e.images.clone();
    let n_images = crate::error::blocking(move || images.all()).await?.len();
    let cgv = match berth_runtime::cgroups::mode() {
        berth_runtime::cgroups::CgroupMode::Unified => "2",
        _ => "1",
    };
    let hostname = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().to_string())
        .unwrap_or_default();
    Ok(Json(json!({
        "ID": "berth",
        "Containers": recs.len(),
        "ContainersRunning": running,
        "ContainersPaused": paused,
        "ContainersStopped": recs.len() - running - paused,
        "Images": n_images,
        "Driver": "overlay2",
        "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"]],
        "Plugins": {"Volume": [], "Network": ["bridge", "host", "null"], "Authorization": null, "Log": ["json-file"]},
        "MemoryLimit": true,
        "SwapLimit": true,
        "CpuCfsPeriod": true,
        "CpuCfsQuota": true,
        "CPUShares": true,
        "CPUSet": true,
        "PidsLimit": true,
        "IPv4Forwarding": true,
        "Debug": false,
        "NFd": 0,
        "OomKillDisable": false,
        "NGoroutines": 0,
        "SystemTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": cgv,
        "NEventsListener": 0,
        "KernelVersion": kernel(),
        "OperatingSystem": os_name(),
        "OSVersion": "",
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"IndexConfigs": {}, "InsecureRegistryCIDRs": ["127.0.0.0/8"], "Mirrors": []},
        "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "MemTotal": mem_total(),
        "DockerRootDir": e.cfg.data_root,
        "Name": hostname,
        "Labels": [],
        "ExperimentalBuild": false,
        "ServerVersion": BERTH_VERSION,
        "Runtimes": {"berth": {"path": e.cfg.berth_exe}},
        "DefaultRuntime": "berth",
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": false, "Error": "", "RemoteManagers": null},
        "LiveRestoreEnabled": true,
        "Isolation": "",
        "InitBinary": "docker-init",
        "ContainerdCommit": {"ID": ""},
        "RuncCommit": {"ID": ""},
        "InitCommit": {"ID": ""},
        "SecurityOptions": ["name=seccomp,profile=builtin"],
        "Warnings": [],
    })))
}

fn event_matches(ev: &Event, f: &HashMap<String, Vec<String>>) -> bool {
    for (k, vals) in f {
        if vals.is_empty() {
            continue;
        }
        let ok = match k.as_str() {
            "type" => vals.iter().any(|v| v == &ev.typ),
            "event" | "action" => vals
                .iter()
                .any(|v| v == &ev.action || ev.action.starts_with(&format!("{v}:"))),
            "container" => {
                ev.typ == "container"
                    && vals.iter().any(|v| {
                        ev.actor.id.starts_with(v.as_str())
                            || ev.actor.attributes.get("name") == Some(v)
                    })
            }
            "image" => vals.iter().any(|v| {
                ev.actor.attributes.get("image") == Some(v)
                    || ev.actor.attributes.get("name") == Some(v)
                    || ev.actor.id == *v
            }),
            "label" => vals.iter().any(|v| match v.split_once('=') {
                Some((lk, lv)) => ev
                    .actor
                    .attributes
                    .get(lk)
                    .map(|x| x == lv)
                    .unwrap_or(false),
                None => ev.actor.attributes.contains_key(v.as_str()),
            }),
            "scope" => vals.iter().any(|v| v == "local"),
            _ => true,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// A time bound as `/events` takes it: unix seconds (with optional fraction) or RFC 3339.
fn bound(q: &Query, key: &str) -> ApiResult<Option<i64>> {
    match q.get(key) {
        None => Ok(None),
        // For events `since=0` is the epoch (replay everything), not "no bound" as for logs.
        Some(s) if s.trim().parse::<f64>().is_ok_and(|v| v == 0.0) => Ok(Some(0)),
        Some(s) => berth_engine::containers::parse_time(s)
            .map(|t| t.map(|t| t.timestamp_nanos_opt().unwrap_or(i64::MAX)))
            .map_err(ApiError::from),
    }
}

async fn events(State(e): State<AppState>, AxQuery(q): AxQuery<Query>) -> ApiResult<Response> {
    let f = filters(&q)?;
    let since = bound(&q, "since")?;
    let until = bound(&q, "until")?;
    let (history, mut rx) = e.events.subscribe();
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
    let replay: Vec<Event> = match since {
        Some(s) => history
            .into_iter()
            .filter(|ev| ev.time_nano >= s && until.map(|u| ev.time_nano <= u).unwrap_or(true))
            .filter(|ev| event_matches(ev, &f))
            .collect(),
        None => Vec::new(),
    };
    let last_replayed = replay.last().map(|ev| ev.time_nano).unwrap_or(i64::MIN);
    let stream = async_stream(replay, move |tx| async move {
        if until.map(|u| u <= now).unwrap_or(false) {
            return;
        }
        let deadline = until.map(|u| std::time::Duration::from_nanos((u - now).max(0) as u64));
        let fut = async {
            loop {
                match rx.recv().await {
                    Ok(ev) => {
                        if ev.time_nano <= last_replayed || !event_matches(&ev, &f) {
                            continue;
                        }
                        if tx.send(line(&ev)).await.is_err() {
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return,
                }
            }
        };
        match deadline {
            Some(d) => {
                let _ = tokio::time::timeout(d, fut).await;
            }
            None => fut.await,
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(stream)
        .map_err(ApiError::internal)
}

fn line(ev: &Event) -> bytes::Bytes {
    let mut v = serde_json::to_vec(ev).unwrap_or_default();
    v.push(b'\n');
    v.into()
}

/// A streaming body: first the replayed events, then whatever `producer` sends.
fn async_stream<F, Fut>(replay: Vec<Event>, producer: F) -> Body
where
    F: FnOnce(tokio::sync::mpsc::Sender<bytes::Bytes>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(64);
    tokio::spawn(async move {
        for ev in &replay {
            if tx.send(line(ev)).await.is_err() {
                return;
            }
        }
        producer(tx).await;
    });
    let s = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Body::from_stream(s)
}
