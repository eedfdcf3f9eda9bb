//! `push`: upload an image to its registry (`POST /images/{name}/push`), with the credentials of
//! `config.json` in `X-Registry-Auth`, drawing docker's progress lines.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};

use clap::Args;
use serde_json::Value;

use super::login::registry_auth_for;
use crate::client::{empty_body, encode, for_each_json_line, stream_error, Client, Query};
use crate::error::{CliError, Result};

#[derive(Args, Debug, Default)]
pub struct PushArgs {
    /// Push all tags of an image to the repository
    #[arg(short = 'a', long = "all-tags")]
    pub all_tags: bool,
    /// Suppress verbose output
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Push a platform-specific manifest as a single-platform image to the registry
    #[arg(long)]
    pub platform: Option<String>,
    /// Skip image signing (accepted for compatibility)
    #[arg(long = "disable-content-trust", default_value_t = true)]
    pub disable_content_trust: bool,
    /// NAME[:TAG]
    pub name: String,
}

/// Split `name[:tag]` (a `:` after the last `/` is a tag; digests are refused).
fn split_tag(s: &str) -> Result<(String, Option<String>)> {
    if s.contains('@') {
        return Err(CliError::other(format!(
            "invalid reference format: {s}: cannot push a digest reference"
        )));
    }
    let slash = s.rfind('/').map(|i| i + 1).unwrap_or(0);
    Ok(match s[slash..].rfind(':') {
        Some(i) => (
            s[..slash + i].to_string(),
            Some(s[slash + i + 1..].to_string()),
        ),
        None => (s.to_string(), None),
    })
}

/// docker's jsonmessage display: one line per layer id, redrawn in place on a terminal; plain
/// lines (status changes only) otherwise.
pub struct ProgressPrinter {
    tty: bool,
    ids: HashMap<String, usize>,
    lines: usize,
    last: HashMap<String, String>,
}

impl ProgressPrinter {
    pub fn new() -> Self {
        ProgressPrinter {
            tty: std::io::stdout().is_terminal(),
            ids: HashMap::new(),
            lines: 0,
            last: HashMap::new(),
        }
    }

    fn render(m: &Value) -> String {
        let id = super::s(m, "id");
        let status = super::s(m, "status");
        let progress = super::s(m, "progress");
        let mut line = String::new();
        if !id.is_empty() {
            line.push_str(id);
            line.push_str(": ");
        }
        line.push_str(status);
        if !progress.is_empty() {
            line.push(' ');
            line.push_str(progress);
        }
        line
    }

    pub fn show(&mut self, m: &Value) -> Result<()> {
        if m.get("aux").is_some() {
            return Ok(());
        }
        let id = super::s(m, "id").to_string();
        let line = Self::render(m);
        let mut o = std::io::stdout().lock();
        if id.is_empty() {
            writeln!(o, "{line}")?;
            if self.tty {
                self.lines += 1;
            }
            return Ok(o.flush()?);
        }
        if !self.tty {
            // Progress updates are noise in a log; status changes are not.
            let status = super::s(m, "status").to_string();
            if m.get("progressDetail")
                .and_then(|p| p.get("current"))
                .is_some()
                || self.last.get(&id) == Some(&status)
            {
                return Ok(());
            }
            self.last.insert(id.clone(), status);
            writeln!(o, "{}", Self::render(&strip_progress(m)))?;
            return Ok(o.flush()?);
        }
        match self.ids.get(&id) {
            Some(&idx) => {
                let up = self.lines - idx;
                write!(o, "\x1b[{up}A\r\x1b[2K{line}\r\x1b[{up}B")?;
            }
            None => {
                self.ids.insert(id, self.lines);
                self.lines += 1;
                writeln!(o, "{line}")?;
            }
        }
        Ok(o.flush()?)
    }
}

impl Default for ProgressPrinter {
    fn default() -> Self {
        Self::new()
    }
}

fn strip_progress(m: &Value) -> Value {
    let mut m = m.clone();
    if let Some(o) = m.as_object_mut() {
        o.remove("progress");
    }
    m
}

/// `berth push [-a] [-q] NAME[:TAG]`.
pub async fn push(c: &Client, a: PushArgs) -> Result<i32> {
    let (name, tag) = split_tag(&a.name)?;
    if a.all_tags && tag.is_some() {
        return Err(CliError::Usage(
            "tag can't be used with --all-tags/-a".into(),
        ));
    }
    let tag = match (a.all_tags, tag) {
        (true, _) => None,
        (false, Some(t)) => Some(t),
        (false, None) => Some("latest".to_string()),
    };
    let q = Query::new().add_opt("tag", tag.clone()).render();
    let mut headers = Vec::new();
    if let Some(auth) = registry_auth_for(&name) {
        headers.push(("X-Registry-Auth".to_string(), auth));
    }
    let resp = c
        .request_with_headers(
            hyper::Method::POST,
            &format!("/images/{}/push{q}", encode_name(&name)),
            None,
            &headers,
            empty_body(),
        )
        .await?;
    let mut failure = None;
    let mut printer = ProgressPrinter::new();
    for_each_json_line(resp, |m| {
        if let Some(e) = stream_error(&m) {
            failure = Some(e);
            return Ok(());
        }
        if !a.quiet {
            printer.show(&m)?;
        }
        Ok(())
    })
    .await?;
    if let Some(message) = failure {
        return Err(CliError::Other(message));
    }
    if a.quiet {
        // docker push -q prints the reference pushed.
        let shown = match &tag {
            Some(t) => format!("{name}:{t}"),
            None => name.clone(),
        };
        super::out(&format!("{shown}\n"))?;
    }
    Ok(0)
}

/// Path-encode an image name, keeping its `/` separators.
fn encode_name(name: &str) -> String {
    name.split('/').map(encode).collect::<Vec<_>>().join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_split_after_the_last_slash() {
        assert_eq!(
            split_tag("127.0.0.1:5000/a/b:v1").unwrap(),
            ("127.0.0.1:5000/a/b".into(), Some("v1".into()))
        );
        assert_eq!(
            split_tag("127.0.0.1:5000/a").unwrap(),
            ("127.0.0.1:5000/a".into(), None)
        );
        assert_eq!(split_tag("busybox").unwrap(), ("busybox".into(), None));
        assert!(split_tag("x@sha256:00").is_err());
        assert_eq!(encode_name("127.0.0.1:5000/a/b"), "127.0.0.1%3A5000/a/b");
    }

    #[test]
    fn lines_render_like_docker() {
        let m = serde_json::json!({"status": "Pushed", "progressDetail": {}, "id": "abc"});
        assert_eq!(ProgressPrinter::render(&m), "abc: Pushed");
        let m = serde_json::json!({"status": "The push refers to repository [x]"});
        assert_eq!(
            ProgressPrinter::render(&m),
            "The push refers to repository [x]"
        );
    }
}
