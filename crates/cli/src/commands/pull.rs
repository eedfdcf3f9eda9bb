//! `pull`: download an image from its registry (`POST /images/create?fromImage=&tag=&platform=`)
//! with the credentials of `config.json` in `X-Registry-Auth`. On a terminal each layer gets a
//! line redrawn in place with a progress bar (as docker draws them); otherwise only status
//! changes are printed, one line each.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};

use clap::Args;
use serde_json::Value;

use super::login::registry_auth_for;
use super::run::{normalized_name, split_reference};
use crate::client::{empty_body, for_each_json_line, stream_error, Client, Query};
use crate::error::{CliError, Result};

#[derive(Args, Debug, Default)]
pub struct PullArgs {
    /// Download all tagged images in the repository
    #[arg(short = 'a', long = "all-tags")]
    pub all_tags: bool,
    /// Suppress verbose output
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    pub platform: Option<String>,
    /// Skip image verification (accepted for compatibility)
    #[arg(long = "disable-content-trust", default_value_t = true)]
    pub disable_content_trust: bool,
    /// NAME[:TAG|@DIGEST]
    pub name: String,
}

/// Where progress lines go.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    Stdout,
    Stderr,
    Nowhere,
}

/// docker's progress display: one line per layer id, redrawn in place with a bar on a terminal.
pub struct Progress {
    sink: Sink,
    tty: bool,
    rows: HashMap<String, usize>,
    lines: usize,
    last_status: HashMap<String, String>,
}

/// `[=====>      ]  1.2MB/3.4MB` from a progressDetail.
pub fn bar(current: u64, total: u64) -> String {
    let size = |n: u64| -> String {
        const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
        let mut v = n as f64;
        let mut u = 0;
        while v >= 1000.0 && u < UNITS.len() - 1 {
            v /= 1000.0;
            u += 1;
        }
        if u == 0 {
            format!("{n}B")
        } else {
            let s = format!("{v:.2}");
            format!(
                "{}{}",
                s.trim_end_matches('0').trim_end_matches('.'),
                UNITS[u]
            )
        }
    };
    if total == 0 {
        return size(current);
    }
    const WIDTH: u64 = 50;
    let filled = (current.min(total) * WIDTH / total) as usize;
    let mut b = "=".repeat(filled);
    if filled < WIDTH as usize {
        b.push('>');
        b.push_str(&" ".repeat(WIDTH as usize - filled - 1));
    }
    format!("[{b}] {:>8}/{}", size(current), size(total))
}

impl Progress {
    pub fn new(sink: Sink) -> Progress {
        let tty = match sink {
            Sink::Stdout => std::io::stdout().is_terminal(),
            Sink::Stderr => std::io::stderr().is_terminal(),
            Sink::Nowhere => false,
        };
        Progress {
            sink,
            tty,
            rows: HashMap::new(),
            lines: 0,
            last_status: HashMap::new(),
        }
    }

    /// The text of one message (`id: status [bar]`).
    pub fn render(m: &Value, with_bar: bool) -> String {
        let id = super::s(m, "id");
        let status = super::s(m, "status");
        let mut line = String::new();
        if !id.is_empty() {
            line.push_str(id);
            line.push_str(": ");
        }
        line.push_str(status);
        if with_bar {
            if let Some(d) = m.get("progressDetail") {
                let cur = d.get("current").and_then(Value::as_u64);
                let tot = d.get("total").and_then(Value::as_u64).unwrap_or(0);
                if let Some(cur) = cur {
                    line.push_str("  ");
                    line.push_str(&bar(cur, tot));
                }
            }
        }
        line
    }

    fn write(&self, s: &str) -> Result<()> {
        let res = match self.sink {
            Sink::Stdout => {
                let mut o = std::io::stdout().lock();
                o.write_all(s.as_bytes()).and_then(|_| o.flush())
            }
            Sink::Stderr => {
                let mut o = std::io::stderr().lock();
                o.write_all(s.as_bytes()).and_then(|_| o.flush())
            }
            Sink::Nowhere => Ok(()),
        };
        match res {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(CliError::Exit(0)),
            r => Ok(r?),
        }
    }

    pub fn show(&mut self, m: &Value) -> Result<()> {
        if self.sink == Sink::Nowhere || m.get("aux").is_some() {
            return Ok(());
        }
        let id = super::s(m, "id").to_string();
        let is_progress = m
            .get("progressDetail")
            .and_then(|p| p.get("current"))
            .is_some();
        // "Pulling from" lines carry the tag as id but are headers, not layer rows.
        let header = super::s(m, "status").starts_with("Pulling from");
        if id.is_empty() || header {
            if self.tty {
                self.lines += 1;
            }
            return self.write(&format!("{}\n", Self::render(m, false)));
        }
        if !self.tty {
            let status = super::s(m, "status").to_string();
            if is_progress || self.last_status.get(&id) == Some(&status) {
                return Ok(());
            }
            self.last_status.insert(id, status);
            return self.write(&format!("{}\n", Self::render(m, false)));
        }
        let line = Self::render(m, true);
        match self.rows.get(&id) {
            Some(&row) => {
                let up = self.lines - row;
                self.write(&format!("\x1b[{up}A\r\x1b[2K{line}\r\x1b[{up}B"))
            }
            None => {
                self.rows.insert(id, self.lines);
                self.lines += 1;
                self.write(&format!("{line}\n"))
            }
        }
    }
}

/// The full reference docker prints after a pull: `docker.io/library/busybox:latest`.
pub fn canonical(name: &str, tag: &str) -> String {
    let n = normalized_name(name);
    if tag.starts_with("sha256:") {
        format!("{n}@{tag}")
    } else {
        format!("{n}:{tag}")
    }
}

/// Pull `reference` (a tag/digest, or every tag when `all_tags`), showing progress on `sink`.
pub async fn pull_reference(
    c: &Client,
    reference: &str,
    all_tags: bool,
    platform: Option<&str>,
    sink: Sink,
) -> Result<()> {
    let (name, tag) = split_reference(reference);
    // As docker's CLI: the normalized name (docker.io/library/busybox).
    let full = normalized_name(&name);
    let q = Query::new()
        .add("fromImage", full.as_str())
        .add_if(!all_tags, "tag", tag.as_str())
        .add_opt("platform", platform.filter(|p| !p.is_empty()))
        .render();
    let mut headers = Vec::new();
    if let Some(auth) = registry_auth_for(&name) {
        headers.push(("X-Registry-Auth".to_string(), auth));
    }
    let resp = c
        .request_with_headers(
            hyper::Method::POST,
            &format!("/images/create{q}"),
            None,
            &headers,
            empty_body(),
        )
        .await?;
    let mut failure = None;
    let mut progress = Progress::new(sink);
    for_each_json_line(resp, |m| {
        if let Some(e) = stream_error(&m) {
            failure = Some(e);
            return Ok(());
        }
        progress.show(&m)
    })
    .await?;
    match failure {
        Some(message) => Err(CliError::Other(message)),
        None => Ok(()),
    }
}

/// `berth pull [-a] [-q] [--platform P] NAME[:TAG|@DIGEST]`.
pub async fn pull(c: &Client, a: PullArgs) -> Result<i32> {
    let (name, tag) = split_reference(&a.name);
    let explicit_tag = a.name.contains('@') || {
        let slash = a.name.rfind('/').map(|i| i + 1).unwrap_or(0);
        a.name[slash..].contains(':')
    };
    if a.all_tags && explicit_tag {
        return Err(CliError::Usage(
            "tag can't be used with --all-tags/-a".into(),
        ));
    }
    if !a.all_tags && !explicit_tag && !a.quiet {
        super::out("Using default tag: latest\n")?;
    }
    let sink = if a.quiet { Sink::Nowhere } else { Sink::Stdout };
    pull_reference(c, &a.name, a.all_tags, a.platform.as_deref(), sink).await?;
    let shown = if a.all_tags {
        normalized_name(&name)
    } else {
        canonical(&name, &tag)
    };
    super::out(&format!("{shown}\n"))?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_docker() {
        let m = serde_json::json!({"status": "Downloading", "id": "abc",
            "progressDetail": {"current": 500_000, "total": 1_000_000}});
        let l = Progress::render(&m, true);
        assert!(
            l.starts_with("abc: Downloading  [=========================>"),
            "{l}"
        );
        assert!(l.ends_with("500kB/1MB"), "{l}");
        assert_eq!(Progress::render(&m, false), "abc: Downloading");
        assert_eq!(
            canonical("busybox", "latest"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            canonical("127.0.0.1:5000/a", "sha256:00"),
            "127.0.0.1:5000/a@sha256:00"
        );
    }
}
