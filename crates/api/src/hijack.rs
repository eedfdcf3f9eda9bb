//! The hijacked attach stream: `101 UPGRADED` with `Upgrade: tcp`, then raw bytes both ways.
//! Output comes from the shim as multiplexed frames; with a TTY the frames are unwrapped.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::response::Response;
use berth_engine::containers::attach::AttachTarget;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::{ApiError, ApiResult};

/// The hijacked attach with the detach sequence (Docker's default is ctrl-p ctrl-q): seeing it on stdin
/// ends the attach and leaves the container running with its stdin open.
pub async fn upgrade_keys(
    mut req: Request,
    tty: bool,
    target: AttachTarget,
    keys: Vec<u8>,
) -> ApiResult<Response> {
    // Read (and drop) any request body before switching protocols.
    let wants_upgrade = req.headers().get(header::UPGRADE).is_some();
    let on_upgrade = hyper::upgrade::on(&mut req);
    let _ = axum::body::to_bytes(std::mem::replace(req.body_mut(), Body::empty()), 1 << 20).await;
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!("attach upgrade failed: {e}");
                return;
            }
        };
        let client = TokioIo::new(upgraded);
        let shim = match target.stream().await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("attach: {e}");
                return;
            }
        };
        pump(client, shim, tty, keys).await;
    });
    response(tty, wants_upgrade)
}

/// The response that switches a request to a raw stream: `101 UPGRADED` with `Upgrade: tcp`
/// (or a plain 200 for clients that did not ask to upgrade), raw or multiplexed content type.
pub(crate) fn response(tty: bool, wants_upgrade: bool) -> ApiResult<Response> {
    let ct = if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    };
    let mut resp = Response::builder()
        .status(if wants_upgrade {
            StatusCode::SWITCHING_PROTOCOLS
        } else {
            StatusCode::OK
        })
        .header(header::CONTENT_TYPE, ct);
    if wants_upgrade {
        resp = resp
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, "tcp");
    }
    let mut resp = resp.body(Body::empty()).map_err(ApiError::internal)?;
    if wants_upgrade {
        resp.extensions_mut()
            .insert(hyper::ext::ReasonPhrase::from_static(b"UPGRADED"));
    }
    Ok(resp)
}

async fn pump<C>(client: C, shim: tokio::net::UnixStream, tty: bool, keys: Vec<u8>)
where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut sr, mut sw) = shim.into_split();
    // stdin: client → shim; the client's half-close closes the container's stdin side.
    let (detach_tx, detach_rx) = tokio::sync::oneshot::channel::<()>();
    let stdin = tokio::spawn(async move {
        if crate::exec::copy_with_detach(&mut cr, &mut sw, &keys).await {
            let _ = detach_tx.send(());
            // Detached: closing our side would close the container's stdin (StdinOnce); hold it
            // until the shim ends the connection (the task is aborted then).
            std::future::pending::<()>().await;
        }
        let _ = sw.shutdown().await;
    });
    let mut detached = false;
    let output = async {
        // output: shim → client until the shim closes (the container exited).
        let mut header = [0u8; 8];
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            if sr.read_exact(&mut header).await.is_err() {
                break;
            }
            let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
            if !tty && cw.write_all(&header).await.is_err() {
                break;
            }
            let mut left = len;
            let mut ok = true;
            while left > 0 {
                let n = left.min(buf.len());
                if sr.read_exact(&mut buf[..n]).await.is_err()
                    || cw.write_all(&buf[..n]).await.is_err()
                {
                    ok = false;
                    break;
                }
                left -= n;
            }
            if !ok {
                break;
            }
        }
    };
    tokio::select! {
        _ = output => {}
        Ok(()) = detach_rx => detached = true,
    }
    let _ = cw.flush().await;
    let _ = cw.shutdown().await;
    if detached {
        // Drain the container's output (the shim drops clients that stop reading) until it exits.
        let _ = tokio::io::copy(&mut sr, &mut tokio::io::sink()).await;
    }
    stdin.abort();
}
