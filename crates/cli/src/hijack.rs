//! Hijacked attach streams: the raw HTTP upgrade, the stdout/stderr frame demultiplexer,
//! copying stdin, and raw terminal mode for `-t`.

use std::io::Write;
use std::os::fd::AsFd;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use crate::client::{daemon_error, Client, API_PREFIX};
use crate::error::{CliError, Result};

/// An upgraded connection: bytes already read past the response head, and the two halves.
pub struct Hijacked {
    pub leftover: Vec<u8>,
    pub reader: OwnedReadHalf,
    pub writer: OwnedWriteHalf,
}

/// POST `path_and_query` asking for `Upgrade: tcp`; returns the raw stream on 101 (or 200).
pub async fn hijack(client: &Client, path_and_query: &str) -> Result<Hijacked> {
    let mut stream = client.connect().await?;
    let req = format!(
        "POST {API_PREFIX}{path_and_query} HTTP/1.1\r\nHost: api\r\nUser-Agent: berth-cli\r\n\
         Content-Type: text/plain\r\nContent-Length: 0\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).await?;
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let head_end = loop {
        if let Some(p) = find(&buf, b"\r\n\r\n") {
            break p + 4;
        }
        if buf.len() > 64 * 1024 {
            return Err(CliError::other("response head too large"));
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(CliError::other(
                "connection closed before the attach response",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| CliError::other("malformed response from daemon"))?;
    let mut rest = buf[head_end..].to_vec();
    if status != 101 && status != 200 {
        // Read the error body (Content-Length or until EOF).
        let len = head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())
                .flatten()
        });
        loop {
            if len.is_some_and(|l| rest.len() >= l) {
                break;
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            rest.extend_from_slice(&chunk[..n]);
        }
        return Err(daemon_error(status, &rest));
    }
    let (reader, writer) = stream.into_split();
    Ok(Hijacked {
        leftover: rest,
        reader,
        writer,
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Splits docker's multiplexed stream: 8-byte headers `[type,0,0,0,len(be u32)]` then payload.
#[derive(Default, Debug)]
pub struct Demuxer {
    buf: Vec<u8>,
}

impl Demuxer {
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame: (stream type 0=stdin 1=stdout 2=stderr, payload).
    pub fn next_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        if self.buf.len() < 8 {
            return None;
        }
        let len = u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]) as usize;
        if self.buf.len() < 8 + len {
            return None;
        }
        let kind = self.buf[0];
        let payload = self.buf[8..8 + len].to_vec();
        self.buf.drain(..8 + len);
        Some((kind, payload))
    }

    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

fn write_out(kind: u8, data: &[u8]) -> Result<()> {
    if kind == 2 {
        let mut e = std::io::stderr().lock();
        e.write_all(data)?;
        e.flush()?;
    } else {
        let mut o = std::io::stdout().lock();
        o.write_all(data)?;
        o.flush()?;
    }
    Ok(())
}

/// Copy a container's output to our stdout/stderr until EOF; raw when `tty`, else demultiplexed.
pub async fn pump_output<R: AsyncRead + Unpin>(
    leftover: Vec<u8>,
    mut reader: R,
    tty: bool,
) -> Result<()> {
    let mut demux = Demuxer::default();
    let handle = |data: &[u8], demux: &mut Demuxer| -> Result<()> {
        if tty {
            return write_out(1, data);
        }
        demux.push(data);
        while let Some((kind, payload)) = demux.next_frame() {
            write_out(kind, &payload)?;
        }
        Ok(())
    };
    if !leftover.is_empty() {
        handle(&leftover, &mut demux)?;
    }
    let mut chunk = vec![0u8; 32 * 1024];
    loop {
        let n = match reader.read(&mut chunk).await {
            Ok(n) => n,
            // A reset at the end of a stream is an end, not a failure.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            break;
        }
        handle(&chunk[..n], &mut demux)?;
    }
    Ok(())
}

/// Copy our stdin into the container, then half-close so the container sees EOF.
pub async fn pump_stdin(mut writer: OwnedWriteHalf) {
    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match stdin.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if writer.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = writer.shutdown().await;
}

/// Puts the terminal on stdin into raw mode; restores it when dropped.
pub struct RawTerminal {
    saved: Option<nix::sys::termios::Termios>,
}

impl RawTerminal {
    pub fn enable() -> Self {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        let fd = stdin.as_fd();
        let Ok(saved) = tcgetattr(fd) else {
            return Self { saved: None };
        };
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        // Keep output post-processing so "\n" still returns the carriage.
        raw.output_flags |= nix::sys::termios::OutputFlags::OPOST;
        if tcsetattr(fd, SetArg::TCSANOW, &raw).is_err() {
            return Self { saved: None };
        }
        Self { saved: Some(saved) }
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let stdin = std::io::stdin();
            let _ = nix::sys::termios::tcsetattr(
                stdin.as_fd(),
                nix::sys::termios::SetArg::TCSANOW,
                saved,
            );
        }
    }
}

/// The size of the terminal on stdout, if it is one: (rows, cols).
pub fn terminal_size() -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes a winsize into the struct we pass; fd 1 is ours to query.
    let rc = unsafe { libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_row > 0).then_some((ws.ws_row, ws.ws_col))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, data: &[u8]) -> Vec<u8> {
        let mut v = vec![kind, 0, 0, 0];
        v.extend_from_slice(&(data.len() as u32).to_be_bytes());
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn demux_frames_split_anywhere() {
        let mut all = frame(1, b"hello\n");
        all.extend(frame(2, b"oops\n"));
        all.extend(frame(1, b""));
        for split in 0..all.len() {
            let mut d = Demuxer::default();
            let mut got = Vec::new();
            d.push(&all[..split]);
            while let Some(f) = d.next_frame() {
                got.push(f);
            }
            d.push(&all[split..]);
            while let Some(f) = d.next_frame() {
                got.push(f);
            }
            assert_eq!(
                got,
                vec![
                    (1, b"hello\n".to_vec()),
                    (2, b"oops\n".to_vec()),
                    (1, Vec::new())
                ],
                "split at {split}"
            );
            assert_eq!(d.pending(), 0);
        }
    }

    #[test]
    fn partial_header_waits() {
        let mut d = Demuxer::default();
        d.push(&[1, 0, 0]);
        assert!(d.next_frame().is_none());
        d.push(&[0, 0, 0, 0, 2, b'h']);
        assert!(d.next_frame().is_none());
        d.push(b"i");
        assert_eq!(d.next_frame(), Some((1, b"hi".to_vec())));
    }

    #[tokio::test]
    async fn hijack_against_fake_server() {
        let dir = std::env::temp_dir().join(format!("berth-cli-hijack-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("s.sock");
        let _ = std::fs::remove_file(&sock);
        let listener = tokio::net::UnixListener::bind(&sock).unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                s.read_exact(&mut b).await.unwrap();
                head.push(b[0]);
            }
            let head = String::from_utf8(head).unwrap();
            assert!(head.starts_with("POST /v1.47/containers/c1/attach?stream=1 HTTP/1.1"));
            assert!(head.contains("Upgrade: tcp"));
            let mut resp =
                b"HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n".to_vec();
            resp.extend(frame(1, b"out"));
            s.write_all(&resp).await.unwrap();
            let mut inp = Vec::new();
            s.read_to_end(&mut inp).await.unwrap();
            inp
        });
        let client = Client::new(sock.clone());
        let mut h = hijack(&client, "/containers/c1/attach?stream=1")
            .await
            .unwrap();
        let mut got = h.leftover.clone();
        while got.len() < 11 {
            let mut b = [0u8; 64];
            let n = h.reader.read(&mut b).await.unwrap();
            assert!(n > 0);
            got.extend_from_slice(&b[..n]);
        }
        let mut d = Demuxer::default();
        d.push(&got);
        assert_eq!(d.next_frame(), Some((1, b"out".to_vec())));
        h.writer.write_all(b"in").await.unwrap();
        h.writer.shutdown().await.unwrap();
        assert_eq!(server.await.unwrap(), b"in");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn hijack_error_status() {
        let dir = std::env::temp_dir().join(format!("berth-cli-hijack-err-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("s.sock");
        let _ = std::fs::remove_file(&sock);
        let listener = tokio::net::UnixListener::bind(&sock).unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut b = [0u8; 512];
            let _ = s.read(&mut b).await;
            let body = br#"{"message":"No such container: zz"}"#;
            let resp = format!(
                "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            s.write_all(resp.as_bytes()).await.unwrap();
            s.write_all(body).await.unwrap();
        });
        let client = Client::new(sock.clone());
        let err = hijack(&client, "/containers/zz/attach")
            .await
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "Error response from daemon: No such container: zz"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
