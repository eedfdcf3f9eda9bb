//! `docker logs`: read the json-file log, optionally follow it while the container lives.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_shim::logs::{decode_entry, LogEntry, LogFollower, Stream};
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use super::ContainerService;
use crate::{EngineError, Result};

#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub follow: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub timestamps: bool,
    /// None = all.
    pub tail: Option<usize>,
}

/// `since`/`until` as the API takes them: unix seconds with optional fraction, or RFC 3339.
pub fn parse_time(s: &str) -> Result<Option<DateTime<Utc>>> {
    let s = s.trim();
    if s.is_empty() || s == "0" {
        return Ok(None);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    let (secs, frac) = s.split_once('.').unwrap_or((s, "0"));
    let secs: i64 = secs
        .parse()
        .map_err(|_| EngineError::InvalidArgument(format!("invalid time value {s:?}")))?;
    let mut frac = frac.to_string();
    frac.truncate(9);
    while frac.len() < 9 {
        frac.push('0');
    }
    let nanos: u32 = frac
        .parse()
        .map_err(|_| EngineError::InvalidArgument(format!("invalid time value {s:?}")))?;
    Ok(DateTime::from_timestamp(secs, nanos))
}

/// One chunk of log output for the API to frame.
pub type LogChunk = (Stream, Vec<u8>);

impl ContainerService {
    pub fn logs(
        self: &Arc<Self>,
        name: &str,
        opts: LogOptions,
    ) -> Result<(bool, mpsc::Receiver<LogChunk>)> {
        let c = self.get(name)?;
        let rec = c.snapshot();
        let tty = rec.config.tty.unwrap_or(false);
        if let Some(lc) = &rec.host_config.log_config {
            if lc.typ.as_deref() == Some("none") {
                return Err(EngineError::InvalidArgument(
                    "configured logging driver does not support reading".into(),
                ));
            }
        }
        let path = self.log_path(&rec.id);
        let max_file = rec
            .host_config
            .log_config
            .as_ref()
            .and_then(|lc| lc.config.as_ref())
            .and_then(|m| m.get("max-file"))
            .and_then(|s| s.parse::<u32>().ok())
            .unwrap_or(1);
        let (tx, rx) = mpsc::channel(64);
        let this = self.clone();
        tokio::spawn(async move {
            let keep = |e: &LogEntry| {
                (match e.stream {
                    Stream::Stdout => opts.stdout,
                    Stream::Stderr => opts.stderr,
                }) && opts.since.map(|s| e.time >= s).unwrap_or(true)
                    && opts.until.map(|u| e.time <= u).unwrap_or(true)
            };
            let render = |e: LogEntry| -> LogChunk {
                if opts.timestamps {
                    let mut b = e
                        .time
                        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
                        .into_bytes();
                    b.push(b' ');
                    b.extend_from_slice(&e.line);
                    (e.stream, b)
                } else {
                    (e.stream, e.line)
                }
            };
            let mut notice = c.notice.subscribe();
            let Some((mut follower, current)) = open_current(&path) else {
                return;
            };
            // Rotated files first (oldest first), then the current one.
            let mut first = rotated_entries(&path, max_file, current);
            first.extend(follower.poll().unwrap_or_default());
            let first: Vec<LogEntry> = first.into_iter().filter(|e| keep(e)).collect();
            let skip = opts
                .tail
                .map(|t| first.len().saturating_sub(t))
                .unwrap_or(0);
            for e in first.into_iter().skip(skip) {
                if tx.send(render(e)).await.is_err() {
                    return;
                }
            }
            if !opts.follow {
                return;
            }
            loop {
                let live = this.get(&c.id()).is_ok() && c.snapshot().state.status.is_live()
                    || c.snapshot().state.status == super::Status::Restarting;
                // Wake on state changes, else poll the file every 100 ms.
                let _ = tokio::time::timeout(Duration::from_millis(100), notice.changed()).await;
                for e in follower.poll().unwrap_or_default() {
                    if keep(&e) && tx.send(render(e)).await.is_err() {
                        return;
                    }
                }
                if !live {
                    return;
                }
                if let Some(u) = opts.until {
                    if Utc::now() > u {
                        return;
                    }
                }
            }
        });
        Ok((tty, rx))
    }
}

fn file_id(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// A follower at the start of the current log file, and that file's (dev, inode); retried when a
/// rotation renames the file in between.
fn open_current(path: &Path) -> Option<(LogFollower, Option<(u64, u64)>)> {
    for _ in 0..10 {
        let before = file_id(path);
        let f = LogFollower::from_start(path).ok()?;
        if file_id(path) == before {
            return Some((f, before));
        }
    }
    None
}

/// Entries of the rotated files `<path>.N` … `<path>.1`, oldest first, skipping the file the
/// follower already reads (it may have been renamed to `.1` meanwhile).
fn rotated_entries(path: &Path, max_file: u32, current: Option<(u64, u64)>) -> Vec<LogEntry> {
    let mut out = Vec::new();
    for n in (1..max_file.max(1)).rev() {
        let mut p = path.as_os_str().to_os_string();
        p.push(format!(".{n}"));
        let p = PathBuf::from(p);
        if current.is_some() && file_id(&p) == current {
            continue;
        }
        let Ok(data) = std::fs::read(&p) else {
            continue;
        };
        out.extend(
            data.split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .filter_map(decode_entry),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("").unwrap(), None);
        let t = parse_time("1700000000.5").unwrap().unwrap();
        assert_eq!(t.timestamp(), 1_700_000_000);
        assert_eq!(t.timestamp_subsec_nanos(), 500_000_000);
        assert!(parse_time("2024-01-01T00:00:00Z").unwrap().is_some());
        assert!(parse_time("bogus").is_err());
    }
}
