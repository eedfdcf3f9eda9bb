//! `exec`: run a command in a running container (create, hijacked start, exit code from inspect).

use clap::Args;
use serde_json::{json, Value};

use crate::client::{encode, Client};
use crate::error::{CliError, Result};
use crate::hijack::{hijack, pump_output, pump_stdin, terminal_size, RawTerminal};

#[derive(Args, Debug, Default)]
pub struct ExecArgs {
    /// Detached mode: run command in the background
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Give extended privileges to the command
    #[arg(long)]
    pub privileged: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Username or UID (format: "<name|uid>[:<group|gid>]")
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// CONTAINER COMMAND [ARG...]
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, num_args = 2..)]
    pub container_and_cmd: Vec<String>,
}

/// The exec create body, as the docker CLI sends it.
pub fn create_body(a: &ExecArgs, size: Option<(u16, u16)>) -> Value {
    let cmd: Vec<&String> = a.container_and_cmd.iter().skip(1).collect();
    let mut b = json!({
        "User": a.user.clone().unwrap_or_default(),
        "Privileged": a.privileged,
        "Tty": a.tty,
        "AttachStdin": a.interactive && !a.detach,
        "AttachStdout": !a.detach,
        "AttachStderr": !a.detach,
        "Detach": a.detach,
        "DetachKeys": a.detach_keys.clone().unwrap_or_default(),
        "Env": a.env,
        "WorkingDir": a.workdir.clone().unwrap_or_default(),
        "Cmd": cmd,
    });
    if let (true, Some((h, w))) = (a.tty, size) {
        b["ConsoleSize"] = json!([h, w]);
    }
    b
}

pub async fn exec(c: &Client, a: ExecArgs) -> Result<i32> {
    let container = a
        .container_and_cmd
        .first()
        .ok_or_else(|| CliError::Usage("\"exec\" requires at least 2 arguments.".into()))?;
    let size = terminal_size();
    let body = create_body(&a, size);
    let created: Value = c
        .post_json(
            &format!("/containers/{}/exec", encode(container)),
            Some(&body),
        )
        .await?;
    let id = created
        .get("Id")
        .and_then(|v| v.as_str())
        .ok_or_else(|| CliError::other("exec create: no Id in the response"))?
        .to_string();
    let eid = encode(&id);
    if a.detach {
        let resp = c
            .post(
                &format!("/exec/{eid}/start"),
                Some(&json!({"Detach": true, "Tty": a.tty})),
            )
            .await?;
        drop(resp);
        return Ok(0);
    }
    let h = hijack(c, &format!("/exec/{eid}/start")).await?;
    let stdin_tty = std::io::IsTerminal::is_terminal(&std::io::stdin());
    let _raw = (a.tty && a.interactive && stdin_tty).then(RawTerminal::enable);
    if let (true, Some((rows, cols))) = (a.tty, size) {
        let _ = c
            .post_discard(&format!("/exec/{eid}/resize?h={rows}&w={cols}"))
            .await;
    }
    let _writer_keepalive = if a.interactive {
        tokio::spawn(pump_stdin(h.writer));
        None
    } else {
        Some(h.writer)
    };
    let pumped = pump_output(h.leftover, h.reader, a.tty).await;
    drop(_raw);
    pumped?;
    let info: Value = c.get_json(&format!("/exec/{eid}/json")).await?;
    let code = info.get("ExitCode").and_then(|v| v.as_i64()).unwrap_or(0);
    Ok(code as i32)
}
