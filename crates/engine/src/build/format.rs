//! Docker's text forms in image history and configs: Go's `%q`, time.Duration strings, the
//! `#(nop)` build-container commands of metadata steps, port specs, and destination paths.

use crate::{EngineError, Result};

fn bad(msg: impl Into<String>) -> EngineError {
    EngineError::InvalidArgument(msg.into())
}

/// Go's `%q` of a string (strconv.Quote).
pub fn go_quote(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            '\r' => o.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                o.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// Go's `%q` of a []string: `["a" "b"]`.
pub fn go_quote_list(v: &[String]) -> String {
    format!(
        "[{}]",
        v.iter().map(|s| go_quote(s)).collect::<Vec<_>>().join(" ")
    )
}

/// Go's time.Duration.String().
pub fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let neg = ns < 0;
    let u = ns.unsigned_abs();
    let s = if u < 1_000 {
        format!("{u}ns")
    } else if u < 1_000_000 {
        trim_frac(u as f64 / 1e3, "µs")
    } else if u < 1_000_000_000 {
        trim_frac(u as f64 / 1e6, "ms")
    } else {
        let total_s = u / 1_000_000_000;
        let frac = u % 1_000_000_000;
        let (h, m, sec) = (total_s / 3600, (total_s / 60) % 60, total_s % 60);
        let secs = if frac == 0 {
            format!("{sec}s")
        } else {
            let f = format!("{frac:09}");
            format!("{sec}.{}s", f.trim_end_matches('0'))
        };
        if h > 0 {
            format!("{h}h{m}m{secs}")
        } else if m > 0 {
            format!("{m}m{secs}")
        } else {
            secs
        }
    };
    if neg {
        format!("-{s}")
    } else {
        s
    }
}

fn trim_frac(v: f64, unit: &str) -> String {
    let s = format!("{v:.9}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}{unit}")
}

pub fn nop(shell: &[String], text: String) -> Vec<String> {
    let mut v = shell.to_vec();
    v.push("#(nop) ".into());
    v.push(text);
    v
}

pub fn nop1(shell: &[String], text: String) -> Vec<String> {
    let mut v = shell.to_vec();
    v.push(format!("#(nop) {text}"));
    v
}

/// Docker's port spec normalisation for EXPOSE: `80` → `80/tcp`, ranges expanded.
pub fn expose_ports(word: &str) -> Result<Vec<String>> {
    let (ports, proto) = match word.split_once('/') {
        Some((p, pr)) => (p, pr.to_ascii_lowercase()),
        None => (word, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(bad(format!("invalid proto: {proto}")));
    }
    let ports = ports.rsplit(':').next().unwrap_or(ports);
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (a, b),
        None => (ports, ports),
    };
    let p = |s: &str| {
        s.parse::<u16>()
            .map_err(|_| bad(format!("invalid containerPort: {ports}")))
    };
    let (lo, hi) = (p(lo)?, p(hi)?);
    if hi < lo {
        return Err(bad(format!(
            "invalid range specified for container port: {ports}"
        )));
    }
    Ok((lo..=hi).map(|n| format!("{n}/{proto}")).collect())
}

/// Join a WORKDIR or COPY destination with the current working directory, cleaned, keeping a
/// trailing `/`.
pub fn abs_path(workdir: &str, p: &str) -> String {
    let slash = p.ends_with('/') || p.ends_with("/.") || p == ".";
    let joined = if p.starts_with('/') {
        p.to_string()
    } else {
        format!("{}/{p}", if workdir.is_empty() { "/" } else { workdir })
    };
    let mut out: Vec<&str> = Vec::new();
    for c in joined.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    let mut s = format!("/{}", out.join("/"));
    if slash && s != "/" && p != "." {
        s.push('/');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_formats() {
        assert_eq!(
            go_quote_list(&["sh".into(), "-c".into(), "echo \"hi\"".into()]),
            r#"["sh" "-c" "echo \"hi\""]"#
        );
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(300_000_000_000), "5m0s");
        assert_eq!(go_duration(3_000_000_000), "3s");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration(500_000_000), "500ms");
    }

    #[test]
    fn paths_and_ports() {
        assert_eq!(abs_path("", "app"), "/app");
        assert_eq!(abs_path("/app", "sub/"), "/app/sub/");
        assert_eq!(abs_path("/app", "."), "/app");
        assert_eq!(abs_path("/app", "./"), "/app/");
        assert_eq!(abs_path("/app", "/x/../y"), "/y");
        assert_eq!(expose_ports("80").unwrap(), vec!["80/tcp"]);
        assert_eq!(expose_ports("53/UDP").unwrap(), vec!["53/udp"]);
        assert_eq!(
            expose_ports("8000-8001").unwrap(),
            vec!["8000/tcp", "8001/tcp"]
        );
        assert!(expose_ports("x").is_err());
    }
}
