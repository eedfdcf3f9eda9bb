//! One module per verb group.

pub mod build;
pub mod commit;
pub mod containers;
pub mod exec;
pub mod files;
pub mod images;
pub mod login;
pub mod network;
pub mod pull;
pub mod push;
pub mod run;
pub mod stats;
pub mod system;
pub mod system_df;
pub mod volumes;

use std::io::{BufRead, Write};

use crate::error::{CliError, Result};

/// Write to stdout; a closed pipe is not an error worth a message.
pub fn out(s: &str) -> Result<()> {
    let mut o = std::io::stdout().lock();
    match o.write_all(s.as_bytes()).and_then(|_| o.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(CliError::Exit(0)),
        Err(e) => Err(e.into()),
    }
}

/// docker's "Are you sure you want to continue? [y/N]" prompt.
pub fn confirm(warning: &str) -> Result<bool> {
    let mut e = std::io::stderr().lock();
    write!(e, "{warning}\nAre you sure you want to continue? [y/N] ")?;
    e.flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let a = line.trim().to_ascii_lowercase();
    Ok(a == "y" || a == "yes")
}

/// Run `f` for every name, printing errors as docker does; exit 1 if any failed.
pub async fn for_each<F, Fut>(names: &[String], mut f: F) -> Result<i32>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut failed = false;
    for n in names {
        match f(n.clone()).await {
            Ok(()) => out(&format!("{n}\n"))?,
            Err(CliError::Exit(c)) => return Ok(c),
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

/// String field of a JSON object, or "".
pub fn s<'a>(v: &'a serde_json::Value, key: &str) -> &'a str {
    v.get(key).and_then(|x| x.as_str()).unwrap_or("")
}

/// Integer field of a JSON object, or 0.
pub fn i(v: &serde_json::Value, key: &str) -> i64 {
    v.get(key).and_then(|x| x.as_i64()).unwrap_or(0)
}
