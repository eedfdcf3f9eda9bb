//! `docker logs`: read the json-file log, optionally follow it while the container lives.

use std::sync::Arc;
use std::time::Duration;

use berth_shim::logs::{LogEntry, LogFollower, Stream};
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
        let (tx, rx) = mpsc::channel(64);
        let this = self.clone();
        tokio::spawn(async move {
            let keep = |e: &LogEntry| {
                (match e.stream {
                    Stream::Stdout => opts.stdout,
                    Stream::Stderr => opts.stderr,
                }) && opts.since.map(|s| e.time > s).unwrap_or(true)
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
            let mut follower = match LogFollower::from_start(&path) {
                Ok(f) => f,
                Err(_) => return,
            };
            let first: Vec<LogEntry> = follower
                .poll()
                .unwrap_or_default()
                .into_iter()
                .filter(|e| keep(e))
                .collect();
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
