//! /containers/{id}/exec and /exec/{id}/... routes, and the hijacked exec stream (multiplexed
//! frames without a TTY, raw with one; detach keys end the session, the process keeps running).

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query as AxQuery, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use berth_engine::containers::exec::{ExecConfig, ExecStreams};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::{ApiError, ApiResult};
use crate::query::{int, Query};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/containers/{id}/exec", post(create))
        .route("/exec/{id}/start", post(start))
        .route("/exec/{id}/json", get(inspect))
        .route("/exec/{id}/resize", post(resize))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    cmd: Option<Vec<String>>,
    env: Option<Vec<String>>,
    user: Option<String>,
    working_dir: Option<String>,
    privileged: Option<bool>,
    tty: Option<bool>,
    attach_stdin: Option<bool>,
    attach_stdout: Option<bool>,
    attach_stderr: Option<bool>,
    detach_keys: Option<String>,
    console_size: Option<Vec<u16>>,
}

async fn create(
    State(e): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let b: CreateBody = serde_json::from_slice(&body)
        .map_err(|err| ApiError::bad_request(format!("invalid JSON: {err}")))?;
    let keys = b.detach_keys.unwrap_or_default();
    if !keys.is_empty() {
        parse_detach_keys(&keys).map_err(ApiError::bad_request)?;
    }
    let cfg = ExecConfig {
        cmd: b.cmd.unwrap_or_default(),
        env: b.env.unwrap_or_default(),
        user: b.user.unwrap_or_default(),
        working_dir: b.working_dir.unwrap_or_default(),
        privileged: b.privileged.unwrap_or(false),
        tty: b.tty.unwrap_or(false),
        attach_stdin: b.attach_stdin.unwrap_or(false),
        attach_stdout: b.attach_stdout.unwrap_or(false),
        attach_stderr: b.attach_stderr.unwrap_or(false),
        detach_keys: keys,
        console_size: size_pair(b.console_size.as_deref()),
    };
    let exec_id = e.containers.exec_create(&id, cfg).await?;
    Ok((StatusCode::CREATED, Json(json!({ "Id": exec_id }))).into_response())
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct StartBody {
    detach: bool,
    tty: Option<bool>,
    console_size: Option<Vec<u16>>,
}

async fn start(
    State(e): State<AppState>,
    Path(id): Path<String>,
    mut req: Request,
) -> ApiResult<Response> {
    let body = axum::body::to_bytes(std::mem::replace(req.body_mut(), Body::empty()), 1 << 20)
        .await
        .map_err(|err| ApiError::bad_request(err.to_string()))?;
    let b: StartBody = if body.is_empty() {
        StartBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|err| ApiError::bad_request(format!("invalid JSON: {err}")))?
    };
    let wants_upgrade = req.headers().get(header::UPGRADE).is_some();
    let on_upgrade = hyper::upgrade::on(&mut req);
    let size = size_pair(b.console_size.as_deref());
    let started = e.containers.exec_start(&id, b.detach, b.tty, size).await?;
    let Some(streams) = started else {
        return Ok(StatusCode::OK.into_response());
    };
    if let Some([h, w]) = b
        .console_size
        .as_deref()
        .and_then(|v| <[u16; 2]>::try_from(v).ok())
    {
        if streams.tty && h > 0 && w > 0 {
            let _ = e.containers.exec_resize(&id, h, w);
        }
    }
    let tty = streams.tty;
    tokio::spawn(async move {
        if wants_upgrade {
            match on_upgrade.await {
                Ok(u) => pump(TokioIo::new(u), streams).await,
                Err(err) => tracing::debug!("exec upgrade failed: {err}"),
            }
        }
    });
    crate::hijack::response(tty, wants_upgrade)
}

fn size_pair(v: Option<&[u16]>) -> Option<(u16, u16)> {
    match v {
        Some([h, w]) if *h > 0 && *w > 0 => Some((*h, *w)),
        _ => None,
    }
}

async fn inspect(
    State(e): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let i = e.containers.exec_inspect(&id)?;
    let c = &i.config;
    Ok(Json(json!({
        "CanRemove": false,
        "ContainerID": i.container_id,
        "DetachKeys": c.detach_keys,
        "ExitCode": i.exit_code,
        "ID": i.id,
        "OpenStderr": c.attach_stderr,
        "OpenStdin": c.attach_stdin,
        "OpenStdout": c.attach_stdout,
        "ProcessConfig": {
            "arguments": c.cmd.iter().skip(1).collect::<Vec<_>>(),
            "entrypoint": c.cmd.first().cloned().unwrap_or_default(),
            "privileged": c.privileged,
            "tty": c.tty,
            "user": c.user,
        },
        "Running": i.running,
        "Pid": i.pid,
    })))
}

async fn resize(
    State(e): State<AppState>,
    Path(id): Path<String>,
    AxQuery(q): AxQuery<Query>,
) -> ApiResult<StatusCode> {
    let h = int(&q, "h")?.unwrap_or(0);
    let w = int(&q, "w")?.unwrap_or(0);
    let (Ok(h), Ok(w)) = (u16::try_from(h), u16::try_from(w)) else {
        return Err(ApiError::bad_request("invalid terminal size"));
    };
    e.containers.exec_resize(&id, h, w)?;
    Ok(StatusCode::OK)
}

/// Docker's detach key syntax: comma-separated `ctrl-<x>` or single characters.
pub fn parse_detach_keys(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let p = part.trim();
        if let Some(k) = p.strip_prefix("ctrl-") {
            let c = match k.as_bytes() {
                [c @ b'a'..=b'z'] => c - b'a' + 1,
                [b'@'] => 0,
                [b'['] => 27,
                [b'\\'] => 28,
                [b']'] => 29,
                [b'^'] => 30,
                [b'_'] => 31,
                _ => return Err(format!("Invalid escape keys ({s}) provided")),
            };
            out.push(c);
        } else if p.len() == 1 {
            out.push(p.as_bytes()[0]);
        } else {
            return Err(format!("Invalid escape keys ({s}) provided"));
        }
    }
    Ok(out)
}

/// Client bytes → `to` until EOF or the detach sequence (returns true when detached). Bytes that
/// start a sequence are held back and forwarded if the sequence breaks.
pub async fn copy_with_detach<R, W>(mut from: R, mut to: W, keys: &[u8]) -> bool
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 32 * 1024];
    let mut matched = 0usize;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        let mut out = Vec::with_capacity(n + matched);
        for &b in &buf[..n] {
            if !keys.is_empty() && b == keys[matched] {
                matched += 1;
                if matched == keys.len() {
                    let _ = to.write_all(&out).await;
                    return true;
                }
            } else {
                out.extend_from_slice(&keys[..matched]);
                matched = 0;
                if !keys.is_empty() && b == keys[0] {
                    matched = 1;
                } else {
                    out.push(b);
                }
            }
        }
        if !out.is_empty() && to.write_all(&out).await.is_err() {
            return false;
        }
        let _ = to.flush().await;
    }
}

async fn pump<C>(client: C, s: ExecStreams)
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (cr, mut cw) = tokio::io::split(client);
    let keys = if s.detach_keys.is_empty() {
        vec![16, 17]
    } else {
        parse_detach_keys(&s.detach_keys).unwrap_or_else(|_| vec![16, 17])
    };
    let (detach_tx, mut detach_rx) = tokio::sync::oneshot::channel::<()>();
    let done_for_stdin = s.done.clone();
    let stdin_task = s.stdin.map(|stdin| {
        tokio::spawn(async move {
            let mut stdin = stdin;
            if copy_with_detach(cr, &mut stdin, &keys).await {
                let _ = detach_tx.send(());
                // Detached: the process keeps its stdin until it exits.
                let mut done = done_for_stdin;
                let _ = done.wait_for(|d| *d).await;
            }
            let _ = stdin.shutdown().await;
        })
    });
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(u8, Vec<u8>)>(16);
    if let Some(err) = &s.error {
        let _ = tx.send((1, format!("{err}\r\n").into_bytes())).await;
    }
    for (kind, r) in [
        (
            1u8,
            s.stdout
                .map(|o| Box::new(o) as Box<dyn AsyncRead + Unpin + Send>),
        ),
        (
            2u8,
            s.stderr
                .map(|o| Box::new(o) as Box<dyn AsyncRead + Unpin + Send>),
        ),
    ] {
        let Some(mut r) = r else { continue };
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match r.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send((kind, buf[..n].to_vec())).await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
    }
    drop(tx);
    let tty = s.tty;
    let mut stdin_gone = false;
    loop {
        tokio::select! {
            m = rx.recv() => {
                let Some((kind, data)) = m else { break };
                let mut frame = Vec::with_capacity(data.len() + 8);
                if !tty {
                    frame.extend_from_slice(&[kind, 0, 0, 0]);
                    frame.extend_from_slice(&(data.len() as u32).to_be_bytes());
                }
                frame.extend_from_slice(&data);
                if cw.write_all(&frame).await.is_err() {
                    break;
                }
            }
            r = &mut detach_rx, if !stdin_gone => {
                if r.is_err() {
                    // No stdin, or it ended without the detach keys.
                    stdin_gone = true;
                    continue;
                }
                let _ = cw.flush().await;
                let _ = cw.shutdown().await;
                // Keep reading the output so the process never blocks on a full pipe.
                while rx.recv().await.is_some() {}
                return;
            }
        }
    }
    // Output is complete: wait for the exit code to be recorded so that the client's inspect that
    // follows sees it.
    let mut done = s.done;
    let _ = done.wait_for(|d| *d).await;
    let _ = cw.flush().await;
    let _ = cw.shutdown().await;
    if let Some(t) = stdin_task {
        t.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys() {
        assert_eq!(parse_detach_keys("ctrl-p,ctrl-q").unwrap(), vec![16, 17]);
        assert_eq!(parse_detach_keys("a,ctrl-@").unwrap(), vec![b'a', 0]);
        assert!(parse_detach_keys("ctrl-").is_err());
        assert!(parse_detach_keys("ab").is_err());
    }

    #[tokio::test]
    async fn copy_stops_at_keys_and_keeps_broken_prefixes() {
        let mut out = Vec::new();
        let detached = copy_with_detach(&b"ab\x10c\x10\x11zz"[..], &mut out, &[16, 17]).await;
        assert!(detached);
        assert_eq!(out, b"ab\x10c");
        let mut out = Vec::new();
        assert!(!copy_with_detach(&b"x\x10"[..], &mut out, &[16, 17]).await);
        assert_eq!(out, b"x");
    }
}
