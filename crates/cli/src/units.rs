//! Human sizes and durations, size/duration parsing and `--since`-style timestamps, as docker does.

use std::time::Duration;

use crate::error::{CliError, Result};

/// Go's `%.Ng`: N significant digits, trailing zeros dropped.
pub(crate) fn fmt_g(v: f64, prec: i32) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let p = (prec - 1).max(0) as usize;
    let sci = format!("{v:.p$e}");
    let (mant, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if !(-4..prec).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mant), exp.abs())
    } else {
        let decimals = (prec - 1 - exp).max(0) as usize;
        trim(&format!("{v:.decimals$}"))
    }
}

/// Decimal human size with 3 significant digits: 4261000 → "4.26MB" (docker's HumanSizeWithPrecision).
pub fn human_size(bytes: f64) -> String {
    human_size_prec(bytes, 3)
}

/// Decimal human size with `prec` significant digits (docker's HumanSize uses 4).
pub fn human_size_prec(bytes: f64, prec: i32) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut size = bytes;
    let mut i = 0;
    while size >= 1000.0 && i < UNITS.len() - 1 {
        size /= 1000.0;
        i += 1;
    }
    format!("{}{}", fmt_g(size, prec), UNITS[i])
}

/// "2 minutes", "About an hour", … (docker's HumanDuration).
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    let seconds = secs as i64;
    if seconds < 1 {
        return "Less than a second".into();
    }
    if seconds == 1 {
        return "1 second".into();
    }
    if seconds < 60 {
        return format!("{seconds} seconds");
    }
    let minutes = (secs / 60.0) as i64;
    if minutes == 1 {
        return "About a minute".into();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    let hours = (secs / 3600.0 + 0.5) as i64;
    if hours == 1 {
        return "About an hour".into();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", (secs / 3600.0) as i64 / 24 / 365)
}

/// "2 minutes ago" for a unix timestamp in seconds.
pub fn time_ago(unix_secs: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    let d = Duration::from_secs(now.saturating_sub(unix_secs).max(0) as u64);
    format!("{} ago", human_duration(d))
}

/// "512m", "1g", "100k", "1024" → bytes (binary multiples, like docker's RAMInBytes).
pub fn parse_size(s: &str) -> Result<i64> {
    let bad = || CliError::Usage(format!("invalid size: '{s}'"));
    let t = s.trim().to_ascii_lowercase();
    let t = t
        .strip_suffix("ib")
        .or_else(|| t.strip_suffix('b'))
        .unwrap_or(&t);
    let idx = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = t.split_at(idx);
    let n: f64 = num.parse().map_err(|_| bad())?;
    if n < 0.0 {
        return Err(bad());
    }
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return Err(bad()),
    };
    Ok((n * mult) as i64)
}

/// Go's time.ParseDuration: "10s", "1m30s", "1.5h", "300ms".
pub fn parse_duration(s: &str) -> Result<Duration> {
    let bad = || CliError::Usage(format!("time: invalid duration \"{s}\""));
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    if t.is_empty() {
        return Err(bad());
    }
    let mut rest = t;
    let mut total = 0f64;
    while !rest.is_empty() {
        let n_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let n: f64 = rest[..n_end].parse().map_err(|_| bad())?;
        rest = &rest[n_end..];
        let u_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..u_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += n * mult;
        rest = &rest[u_end..];
    }
    Ok(Duration::from_secs_f64(total))
}

/// A `--since`/`--until` value → the API's "seconds[.nanoseconds]" string.
/// Accepts Go durations (relative to now), unix timestamps and RFC 3339 dates.
pub fn api_timestamp(value: &str) -> Result<String> {
    let now = chrono::Utc::now();
    if let Ok(d) = parse_duration(value) {
        let t = now - chrono::Duration::from_std(d).map_err(|e| CliError::Usage(e.to_string()))?;
        return Ok(format!(
            "{}.{:09}",
            t.timestamp(),
            t.timestamp_subsec_nanos()
        ));
    }
    if value.parse::<f64>().is_ok() {
        return Ok(value.to_string());
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(value) {
        return Ok(format!(
            "{}.{:09}",
            t.timestamp(),
            t.timestamp_subsec_nanos()
        ));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(value, fmt) {
            let t = t.and_utc();
            return Ok(format!(
                "{}.{:09}",
                t.timestamp(),
                t.timestamp_subsec_nanos()
            ));
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc().timestamp().to_string());
        }
    }
    Err(CliError::Usage(format!(
        "failed to parse value as time or duration: \"{value}\""
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_docker() {
        assert_eq!(human_size(0.0), "0B");
        assert_eq!(human_size(12.0), "12B");
        assert_eq!(human_size(1000.0), "1kB");
        assert_eq!(human_size(4_261_000.0), "4.26MB");
        assert_eq!(human_size(123_456.0), "123kB");
        assert_eq!(human_size(1_500_000_000.0), "1.5GB");
        assert_eq!(human_size(999_999.0), "1e+03kB");
        assert_eq!(human_size_prec(4_261_234.0, 4), "4.261MB");
    }

    #[test]
    fn durations_like_docker() {
        assert_eq!(
            human_duration(Duration::from_millis(300)),
            "Less than a second"
        );
        assert_eq!(human_duration(Duration::from_secs(1)), "1 second");
        assert_eq!(human_duration(Duration::from_secs(59)), "59 seconds");
        assert_eq!(human_duration(Duration::from_secs(90)), "About a minute");
        assert_eq!(human_duration(Duration::from_secs(150)), "2 minutes");
        assert_eq!(human_duration(Duration::from_secs(3600)), "About an hour");
        assert_eq!(human_duration(Duration::from_secs(5 * 3600)), "5 hours");
        assert_eq!(human_duration(Duration::from_secs(3 * 86400)), "3 days");
        assert_eq!(human_duration(Duration::from_secs(20 * 86400)), "2 weeks");
        assert_eq!(human_duration(Duration::from_secs(100 * 86400)), "3 months");
        assert_eq!(human_duration(Duration::from_secs(800 * 86400)), "2 years");
    }

    #[test]
    fn parse_sizes() {
        assert_eq!(parse_size("512m").unwrap(), 512 * 1024 * 1024);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("1GB").unwrap(), 1 << 30);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert_eq!(parse_size("1.5k").unwrap(), 1536);
        assert!(parse_size("abc").is_err());
        assert!(parse_size("12x").is_err());
    }

    #[test]
    fn parse_durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn timestamps() {
        assert_eq!(api_timestamp("1700000000").unwrap(), "1700000000");
        assert_eq!(
            api_timestamp("2024-01-01T00:00:00Z").unwrap(),
            "1704067200.000000000"
        );
        let rel: f64 = api_timestamp("10m").unwrap().parse().unwrap();
        let now = chrono::Utc::now().timestamp() as f64;
        assert!((now - 600.0 - rel).abs() < 5.0);
        assert!(api_timestamp("yesterday").is_err());
    }
}
