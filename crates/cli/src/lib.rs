//! berth-cli: docker's verbs and flags, talking to the engine only through the Docker Engine API.

use std::ffi::OsString;

use clap::Parser;

pub mod cli;
pub mod client;
mod commands;
pub mod error;
pub mod format;
pub mod hijack;
pub mod units;

use cli::{Cli, Cmd, ContainerCmd, ImageCmd};
use client::Client;
use error::CliError;

/// Run the CLI with the process arguments (argv[0] included). Returns the exit code.
pub fn run(args: Vec<OsString>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            if let Some(msg) = docker_flag_error(&e) {
                eprintln!("{msg}");
                return 125;
            }
            let code = if e.use_stderr() { 125 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    if cli.version {
        println!("berth version {}", env!("CARGO_PKG_VERSION"));
        return 0;
    }
    let Some(cmd) = cli.cmd else {
        use clap::CommandFactory;
        let _ = Cli::command().print_help();
        return 0;
    };
    let socket = match client::resolve_host(cli.host.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let client = Client::new(socket);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("berth: cannot start the runtime: {e}");
            return 1;
        }
    };
    let is_run = matches!(
        cmd,
        Cmd::Run(_)
            | Cmd::Create(_)
            | Cmd::Container {
                cmd: ContainerCmd::Run(_) | ContainerCmd::Create(_)
            }
    );
    let verb = match &cmd {
        Cmd::Create(_)
        | Cmd::Container {
            cmd: ContainerCmd::Create(_),
        } => "create",
        _ => "run",
    };
    let result = runtime.block_on(dispatch(&client, cmd));
    // A pending read of stdin must not keep the process alive.
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(CliError::Exit(code)) => code,
        Err(e) if is_run => {
            eprintln!("berth: {e}\n\nRun 'berth {verb} --help' for more information");
            125
        }
        Err(e) => {
            eprintln!("{e}");
            if matches!(e, CliError::Usage(_)) {
                125
            } else {
                1
            }
        }
    }
}

/// docker's wording for an unknown flag ("unknown flag: --x", then the usage and a hint).
fn docker_flag_error(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::UnknownArgument {
        return None;
    }
    let arg = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(a)) => a.clone(),
        _ => return None,
    };
    let first = match arg.strip_prefix("--") {
        Some(long) => format!("unknown flag: --{}", long.split('=').next().unwrap_or(long)),
        None => match arg.strip_prefix('-').and_then(|s| s.chars().next()) {
            Some(c) => format!("unknown shorthand flag: '{c}' in {arg}"),
            None => return None,
        },
    };
    let usage = match e.get(ContextKind::Usage) {
        Some(ContextValue::StyledStr(u)) => u.to_string(),
        _ => return None,
    };
    let usage = usage.trim().trim_start_matches("Usage:").trim().to_string();
    let path: Vec<&str> = usage
        .split(' ')
        .take_while(|w| !w.starts_with(['[', '<']) && !w.is_empty())
        .collect();
    Some(format!(
        "{first}\n\nUsage:  {usage}\n\nRun '{} --help' for more information",
        path.join(" ")
    ))
}

async fn dispatch(c: &Client, cmd: Cmd) -> error::Result<i32> {
    use commands::{containers as ct, images as im, run as rn, system as sy};
    match cmd {
        Cmd::Version(a) => sy::version(c, a).await,
        Cmd::Info(a) => sy::info(c, a).await,
        Cmd::Events(a) => sy::events(c, a).await,
        Cmd::Inspect(a) => sy::inspect(c, a).await,
        Cmd::Images(a) => im::images(c, a).await,
        Cmd::Tag(a) => im::tag(c, a).await,
        Cmd::Rmi(a) => im::rmi(c, a).await,
        Cmd::History(a) => im::history(c, a).await,
        Cmd::Build(a) => commands::build::build(c, a).await,
        Cmd::Import(a) => im::import(c, a).await,
        Cmd::Load(a) => im::load(c, a).await,
        Cmd::Save(a) => im::save(c, a).await,
        Cmd::Image { cmd } => match cmd {
            ImageCmd::Ls(a) => im::images(c, a).await,
            ImageCmd::Inspect(mut a) => {
                a.kind = Some("image".into());
                sy::inspect(c, a).await
            }
            ImageCmd::Tag(a) => im::tag(c, a).await,
            ImageCmd::Rm(a) => im::rmi(c, a).await,
            ImageCmd::Prune(a) => im::prune(c, a).await,
            ImageCmd::History(a) => im::history(c, a).await,
            ImageCmd::Import(a) => im::import(c, a).await,
            ImageCmd::Load(a) => im::load(c, a).await,
            ImageCmd::Save(a) => im::save(c, a).await,
            ImageCmd::Build(a) => commands::build::build(c, a).await,
            ImageCmd::Push(a) => commands::push::push(c, a).await,
            ImageCmd::Pull(a) => commands::pull::pull(c, a).await,
        },
        Cmd::Volume { cmd } => crate::commands::volumes::run(c, cmd).await,
        Cmd::Network { cmd } => crate::commands::network::run(c, cmd).await,
        Cmd::Run(a) => rn::run(c, a).await,
        Cmd::Create(a) => rn::create(c, a).await,
        Cmd::Start(a) => rn::start(c, a).await,
        Cmd::Attach(a) => rn::attach(c, a).await,
        Cmd::Exec(a) => crate::commands::exec::exec(c, a).await,
        Cmd::Stop(a) => ct::stop(c, a, false).await,
        Cmd::Restart(a) => ct::stop(c, a, true).await,
        Cmd::Kill(a) => ct::kill(c, a).await,
        Cmd::Wait(a) => ct::wait(c, a).await,
        Cmd::Rm(a) => ct::rm(c, a).await,
        Cmd::Ps(a) => ct::ps(c, a).await,
        Cmd::Logs(a) => ct::logs(c, a).await,
        Cmd::Rename(a) => ct::rename(c, a).await,
        Cmd::Pause(a) => ct::simple(c, a, "pause").await,
        Cmd::Unpause(a) => ct::simple(c, a, "unpause").await,
        Cmd::Top(a) => ct::top(c, a).await,
        Cmd::Port(a) => ct::port(c, a).await,
        Cmd::Cp(a) => commands::files::cp(c, a).await,
        Cmd::Diff(a) => commands::files::diff(c, a).await,
        Cmd::Export(a) => commands::files::export(c, a).await,
        Cmd::Commit(a) => commands::commit::commit(c, a).await,
        Cmd::System { cmd } => commands::system_df::run(c, cmd).await,
        Cmd::Stats(a) => commands::stats::stats(c, a).await,
        Cmd::Update(a) => commands::stats::update(c, a).await,
        Cmd::Push(a) => commands::push::push(c, a).await,
        Cmd::Pull(a) => commands::pull::pull(c, a).await,
        Cmd::Login(a) => commands::login::login(c, a).await,
        Cmd::Logout(a) => commands::login::logout(c, a).await,
        Cmd::Container { cmd } => match cmd {
            ContainerCmd::Ls(a) => ct::ps(c, a).await,
            ContainerCmd::Run(a) => rn::run(c, a).await,
            ContainerCmd::Create(a) => rn::create(c, a).await,
            ContainerCmd::Start(a) => rn::start(c, a).await,
            ContainerCmd::Attach(a) => rn::attach(c, a).await,
            ContainerCmd::Exec(a) => crate::commands::exec::exec(c, a).await,
            ContainerCmd::Stop(a) => ct::stop(c, a, false).await,
            ContainerCmd::Restart(a) => ct::stop(c, a, true).await,
            ContainerCmd::Kill(a) => ct::kill(c, a).await,
            ContainerCmd::Wait(a) => ct::wait(c, a).await,
            ContainerCmd::Rm(a) => ct::rm(c, a).await,
            ContainerCmd::Logs(a) => ct::logs(c, a).await,
            ContainerCmd::Inspect(mut a) => {
                a.kind = Some("container".into());
                sy::inspect(c, a).await
            }
            ContainerCmd::Rename(a) => ct::rename(c, a).await,
            ContainerCmd::Pause(a) => ct::simple(c, a, "pause").await,
            ContainerCmd::Unpause(a) => ct::simple(c, a, "unpause").await,
            ContainerCmd::Top(a) => ct::top(c, a).await,
            ContainerCmd::Port(a) => ct::port(c, a).await,
            ContainerCmd::Prune(a) => ct::prune(c, a).await,
            ContainerCmd::Cp(a) => commands::files::cp(c, a).await,
            ContainerCmd::Diff(a) => commands::files::diff(c, a).await,
            ContainerCmd::Export(a) => commands::files::export(c, a).await,
            ContainerCmd::Commit(a) => commands::commit::commit(c, a).await,
            ContainerCmd::Stats(a) => commands::stats::stats(c, a).await,
            ContainerCmd::Update(a) => commands::stats::update(c, a).await,
        },
    }
}
