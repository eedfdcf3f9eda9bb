//! `ADD http://...`: a plain HTTP/1.1 GET (redirects followed, http only), the body kept in
//! memory up to a limit. The file is named after the URL's last path segment, mode 0600, mtime
//! from `Last-Modified`, as Docker does.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::{EngineError, Result};

/// Largest body ADD accepts from a URL.
const MAX_BODY: u64 = 1 << 30;

pub struct Fetched {
    pub name: String,
    pub data: Vec<u8>,
    /// Unix seconds.
    pub mtime: i64,
}

fn bad(msg: String) -> EngineError {
    EngineError::InvalidArgument(msg)
}

/// Whether an ADD source is a URL.
pub fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

pub fn get(url: &str) -> Result<Fetched> {
    let mut current = url.to_string();
    for _ in 0..10 {
        let Some(rest) = current.strip_prefix("http://") else {
            return Err(bad(format!(
                "ADD {current}: only http:// URLs are supported by this engine"
            )));
        };
        let (hostport, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path_only = path.split(['?', '#']).next().unwrap_or("/").to_string();
        let addr = if hostport.contains(':') && !hostport.ends_with(']') {
            hostport.to_string()
        } else {
            format!("{hostport}:80")
        };
        let mut s =
            TcpStream::connect(&addr).map_err(|e| bad(format!("failed to GET {current}: {e}")))?;
        let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {hostport}\r\nUser-Agent: berth\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes())
            .map_err(|e| bad(format!("failed to GET {current}: {e}")))?;
        let mut r = BufReader::new(s);
        let mut status = String::new();
        r.read_line(&mut status)
            .map_err(|e| bad(format!("failed to GET {current}: {e}")))?;
        let code: u16 = status
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| bad(format!("failed to GET {current}: bad response")))?;
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            r.read_line(&mut line)
                .map_err(|e| bad(format!("failed to GET {current}: {e}")))?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let header = |k: &str| headers.iter().find(|(h, _)| h == k).map(|(_, v)| v.clone());
        if (300..400).contains(&code) {
            if let Some(loc) = header("location") {
                current = if loc.starts_with('/') {
                    format!("http://{hostport}{loc}")
                } else {
                    loc
                };
                continue;
            }
        }
        if code != 200 {
            let reason = status
                .splitn(3, ' ')
                .nth(2)
                .unwrap_or("")
                .trim()
                .to_string();
            return Err(bad(format!(
                "failed to GET {current} with status {code} {reason}"
            )));
        }
        let mut data = Vec::new();
        if header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
            loop {
                let mut line = String::new();
                r.read_line(&mut line)
                    .map_err(|e| bad(format!("failed to GET {current}: {e}")))?;
                let n = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| bad(format!("failed to GET {current}: bad chunk")))?;
                if n == 0 {
                    break;
                }
                if data.len() as u64 + n as u64 > MAX_BODY {
                    return Err(bad(format!("ADD {current}: body too large")));
                }
                let start = data.len();
                data.resize(start + n, 0);
                r.read_exact(&mut data[start..])
                    .map_err(|e| bad(format!("failed to GET {current}: {e}")))?;
                let mut crlf = [0u8; 2];
                let _ = r.read_exact(&mut crlf);
            }
        } else {
            let limit = header("content-length")
                .and_then(|l| l.parse::<u64>().ok())
                .unwrap_or(MAX_BODY + 1);
            (&mut r)
                .take(limit.min(MAX_BODY + 1))
                .read_to_end(&mut data)
                .map_err(|e| bad(format!("failed to GET {current}: {e}")))?;
            if data.len() as u64 > MAX_BODY {
                return Err(bad(format!("ADD {current}: body too large")));
            }
        }
        let mtime = header("last-modified")
            .and_then(|d| chrono::DateTime::parse_from_rfc2822(&d).ok())
            .map(|d| d.timestamp())
            .unwrap_or(0);
        let name = url
            .trim_start_matches("http://")
            .split(['?', '#'])
            .next()
            .and_then(|p| p.split_once('/').map(|(_, p)| p))
            .and_then(|p| p.rsplit('/').next())
            .filter(|n| !n.is_empty() && *n != "." && *n != "..")
            .unwrap_or("__unnamed__")
            .to_string();
        let _ = path_only;
        return Ok(Fetched { name, data, mtime });
    }
    Err(bad(format!("failed to GET {url}: too many redirects")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn get_from_loopback() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            for body in [None, Some("hello")] {
                let (mut c, _) = l.accept().unwrap();
                let mut buf = [0u8; 1024];
                let _ = c.read(&mut buf).unwrap();
                match body {
                    None => c
                        .write_all(b"HTTP/1.1 302 Found\r\nLocation: /f/data.txt\r\nContent-Length: 0\r\n\r\n")
                        .unwrap(),
                    Some(b) => c
                        .write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\n\r\n{b}", b.len()).as_bytes())
                        .unwrap(),
                }
            }
        });
        let f = get(&format!("http://127.0.0.1:{port}/x/file.bin")).unwrap();
        t.join().unwrap();
        assert_eq!(f.data, b"hello");
        assert_eq!(f.name, "file.bin");
        assert_eq!(f.mtime, 1445412480);
        assert!(get("https://127.0.0.1:1/x").is_err());
        assert!(is_url("http://a/b"));
    }
}
