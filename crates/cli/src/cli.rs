//! Argument definitions: docker's verbs and flags (clap derive).

use clap::{ArgAction, Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "berth",
    about = "A self-sufficient runtime for containers",
    disable_version_flag = true,
    subcommand_required = false
)]
pub struct Cli {
    /// Daemon socket to connect to
    #[arg(short = 'H', long = "host")]
    pub host: Option<String>,
    /// Enable debug mode
    #[arg(short = 'D', long = "debug")]
    pub debug: bool,
    /// Set the logging level (accepted for compatibility)
    #[arg(short = 'l', long = "log-level")]
    pub log_level: Option<String>,
    /// Print version information and quit
    #[arg(short = 'v', long = "version")]
    pub version: bool,
    #[command(subcommand)]
    pub cmd: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Show the berth version information
    Version(FormatArgs),
    /// Display system-wide information
    Info(FormatArgs),
    /// Get real time events from the server
    Events(EventsArgs),
    /// List images
    Images(ImagesArgs),
    /// Manage images
    Image {
        #[command(subcommand)]
        cmd: ImageCmd,
    },
    /// Manage networks
    Network {
        #[command(subcommand)]
        cmd: crate::commands::network::NetworkCmd,
    },
    /// Manage volumes
    Volume {
        #[command(subcommand)]
        cmd: crate::commands::volumes::VolumeCmd,
    },
    /// Manage containers
    Container {
        #[command(subcommand)]
        cmd: ContainerCmd,
    },
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(TagArgs),
    /// Remove one or more images
    Rmi(RmiArgs),
    /// Show the history of an image
    History(HistoryArgs),
    /// Build an image from a Dockerfile
    Build(crate::commands::build::BuildArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(ImportArgs),
    /// Load an image from a tar archive or STDIN
    Load(LoadArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(SaveArgs),
    /// Return low-level information on berth objects
    Inspect(InspectArgs),
    /// Create and run a new container from an image
    Run(RunArgs),
    /// Create a new container
    Create(RunArgs),
    /// Start one or more stopped containers
    Start(StartArgs),
    /// Stop one or more running containers
    Stop(StopArgs),
    /// Kill one or more running containers
    Kill(KillArgs),
    /// Restart one or more containers
    Restart(StopArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(ContainersArgs),
    /// Remove one or more containers
    Rm(RmArgs),
    /// List containers
    Ps(PsArgs),
    /// Fetch the logs of a container
    Logs(LogsArgs),
    /// Rename a container
    Rename(RenameArgs),
    /// Pause all processes within one or more containers
    Pause(ContainersArgs),
    /// Unpause all processes within one or more containers
    Unpause(ContainersArgs),
    /// Display the running processes of a container
    Top(TopArgs),
    /// List port mappings or a specific mapping for the container
    Port(PortArgs),
    /// Attach local standard input, output, and error streams to a running container
    Attach(AttachArgs),
    /// Execute a command in a running container
    Exec(crate::commands::exec::ExecArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(crate::commands::files::CpArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(crate::commands::files::DiffArgs),
    /// Export a container's filesystem as a tar archive
    Export(crate::commands::files::ExportArgs),
    /// Create a new image from a container's changes
    Commit(crate::commands::commit::CommitArgs),
    /// Manage berth (disk usage, info, events)
    System {
        #[command(subcommand)]
        cmd: crate::commands::system_df::SystemCmd,
    },
    /// Display a live stream of container(s) resource usage statistics
    Stats(crate::commands::stats::StatsArgs),
    /// Update configuration of one or more containers
    Update(crate::commands::stats::UpdateArgs),
    /// Upload an image to a registry
    Push(crate::commands::push::PushArgs),
    /// Download an image from a registry
    Pull(crate::commands::pull::PullArgs),
    /// Authenticate to a registry
    Login(crate::commands::login::LoginArgs),
    /// Log out from a registry
    Logout(crate::commands::login::LogoutArgs),
}

#[derive(Subcommand, Debug)]
pub enum ImageCmd {
    #[command(visible_alias = "list")]
    Ls(ImagesArgs),
    Inspect(InspectArgs),
    Tag(TagArgs),
    #[command(visible_alias = "remove")]
    Rm(RmiArgs),
    Prune(ImagePruneArgs),
    History(HistoryArgs),
    Import(ImportArgs),
    Load(LoadArgs),
    Save(SaveArgs),
    Build(crate::commands::build::BuildArgs),
    Push(crate::commands::push::PushArgs),
    Pull(crate::commands::pull::PullArgs),
}

#[derive(Subcommand, Debug)]
pub enum ContainerCmd {
    #[command(visible_alias = "list", visible_alias = "ps")]
    Ls(PsArgs),
    Run(RunArgs),
    Create(RunArgs),
    Start(StartArgs),
    Stop(StopArgs),
    Kill(KillArgs),
    Restart(StopArgs),
    Wait(ContainersArgs),
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    Logs(LogsArgs),
    Inspect(InspectArgs),
    Rename(RenameArgs),
    Pause(ContainersArgs),
    Unpause(ContainersArgs),
    Top(TopArgs),
    Port(PortArgs),
    Attach(AttachArgs),
    Exec(crate::commands::exec::ExecArgs),
    Prune(PruneArgs),
    Cp(crate::commands::files::CpArgs),
    Diff(crate::commands::files::DiffArgs),
    Export(crate::commands::files::ExportArgs),
    Commit(crate::commands::commit::CommitArgs),
    Stats(crate::commands::stats::StatsArgs),
    Update(crate::commands::stats::UpdateArgs),
}

#[derive(Args, Debug, Default)]
pub struct FormatArgs {
    /// Format output using a custom template
    #[arg(short = 'f', long)]
    pub format: Option<String>,
}

#[derive(Args, Debug, Default)]
pub struct EventsArgs {
    #[arg(long)]
    pub since: Option<String>,
    #[arg(long)]
    pub until: Option<String>,
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Args, Debug, Default)]
pub struct ImagesArgs {
    /// Show all images (default hides intermediate images)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Only show image IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    #[arg(long)]
    pub digests: bool,
    #[arg(long)]
    pub format: Option<String>,
    /// REPOSITORY[:TAG]
    pub reference: Option<String>,
}

#[derive(Args, Debug, Default)]
pub struct InspectArgs {
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    /// Only inspect objects of this type (container, image)
    #[arg(long = "type")]
    pub kind: Option<String>,
    #[arg(short = 's', long)]
    pub size: bool,
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct TagArgs {
    pub source: String,
    pub target: String,
}

#[derive(Args, Debug, Default)]
pub struct RmiArgs {
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(long = "no-prune")]
    pub no_prune: bool,
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct ImagePruneArgs {
    #[arg(short = 'a', long)]
    pub all: bool,
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(long = "filter")]
    pub filter: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct PruneArgs {
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(long = "filter")]
    pub filter: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct HistoryArgs {
    /// Print sizes and dates in human readable format
    #[arg(short = 'H', long, num_args = 0..=1, default_value = "true", default_missing_value = "true", action = ArgAction::Set)]
    pub human: bool,
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    #[arg(short = 'q', long)]
    pub quiet: bool,
    #[arg(long)]
    pub format: Option<String>,
    pub image: String,
}

#[derive(Args, Debug, Default)]
pub struct ImportArgs {
    #[arg(short = 'c', long = "change")]
    pub change: Vec<String>,
    #[arg(short = 'm', long)]
    pub message: Option<String>,
    #[arg(long)]
    pub platform: Option<String>,
    /// file|URL|-
    pub source: String,
    /// REPOSITORY[:TAG]
    pub reference: Option<String>,
}

#[derive(Args, Debug, Default)]
pub struct LoadArgs {
    #[arg(short = 'i', long)]
    pub input: Option<String>,
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

#[derive(Args, Debug, Default)]
pub struct SaveArgs {
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Args, Debug, Default, Clone)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Print usage
    #[arg(long, action = ArgAction::Help)]
    pub help: Option<bool>,
    /// Run container in background and print container ID
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Automatically remove the container when it exits
    #[arg(long, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", action = ArgAction::Set)]
    pub rm: bool,
    #[arg(long)]
    pub name: Option<String>,
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    #[arg(long = "env-file")]
    pub env_file: Vec<String>,
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    #[arg(long)]
    pub entrypoint: Option<String>,
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    #[arg(long)]
    pub domainname: Option<String>,
    #[arg(short = 'l', long = "label")]
    pub label: Vec<String>,
    #[arg(long, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", action = ArgAction::Set)]
    pub init: bool,
    #[arg(short = 'i', long)]
    pub interactive: bool,
    #[arg(short = 't', long)]
    pub tty: bool,
    #[arg(long)]
    pub restart: Option<String>,
    #[arg(long, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", action = ArgAction::Set)]
    pub privileged: bool,
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    #[arg(long = "read-only", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", action = ArgAction::Set)]
    pub read_only: bool,
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    #[arg(long = "memory-swap")]
    pub memory_swap: Option<String>,
    #[arg(long)]
    pub cpus: Option<String>,
    #[arg(short = 'c', long = "cpu-shares")]
    pub cpu_shares: Option<i64>,
    #[arg(long = "pids-limit")]
    pub pids_limit: Option<i64>,
    #[arg(long = "log-driver")]
    pub log_driver: Option<String>,
    #[arg(long = "log-opt")]
    pub log_opt: Vec<String>,
    #[arg(long = "stop-signal")]
    pub stop_signal: Option<String>,
    #[arg(long = "stop-timeout")]
    pub stop_timeout: Option<i64>,
    /// Attach to STDIN, STDOUT or STDERR
    #[arg(short = 'a', long = "attach")]
    pub attach: Vec<String>,
    #[arg(long = "network", alias = "net")]
    pub network: Option<String>,
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Add network-scoped alias for the container
    #[arg(long = "network-alias", alias = "net-alias")]
    pub network_alias: Vec<String>,
    /// IPv4 address (e.g., 172.30.100.104)
    #[arg(long)]
    pub ip: Option<String>,
    #[arg(long = "dns-search")]
    pub dns_search: Vec<String>,
    #[arg(long = "dns-option", alias = "dns-opt")]
    pub dns_option: Vec<String>,
    #[arg(long = "expose")]
    pub expose: Vec<String>,
    #[arg(short = 'v', long = "volume")]
    pub volume: Vec<String>,
    #[arg(long)]
    pub tmpfs: Vec<String>,
    #[arg(long = "add-host")]
    pub add_host: Vec<String>,
    #[arg(long)]
    pub dns: Vec<String>,
    #[arg(long = "shm-size")]
    pub shm_size: Option<String>,
    #[arg(long)]
    pub platform: Option<String>,
    /// Pull image before running ("always", "missing", "never")
    #[arg(long, default_value = "missing")]
    pub pull: String,
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    /// IMAGE [COMMAND] [ARG...]
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, num_args = 1..)]
    pub image_and_cmd: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct StartArgs {
    #[arg(short = 'a', long)]
    pub attach: bool,
    #[arg(short = 'i', long)]
    pub interactive: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct StopArgs {
    /// Seconds to wait before killing the container
    #[arg(short = 't', long = "timeout", alias = "time")]
    pub time: Option<i64>,
    #[arg(short = 's', long)]
    pub signal: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct KillArgs {
    #[arg(short = 's', long)]
    pub signal: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct ContainersArgs {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct RmArgs {
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(short = 'v', long)]
    pub volumes: bool,
    #[arg(short = 'l', long)]
    pub link: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct PsArgs {
    #[arg(short = 'a', long)]
    pub all: bool,
    #[arg(short = 'q', long)]
    pub quiet: bool,
    #[arg(short = 'n', long = "last")]
    pub last: Option<i64>,
    #[arg(short = 'l', long)]
    pub latest: bool,
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    #[arg(short = 's', long)]
    pub size: bool,
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Args, Debug, Default)]
pub struct LogsArgs {
    #[arg(short = 'f', long)]
    pub follow: bool,
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    #[arg(short = 't', long)]
    pub timestamps: bool,
    #[arg(long)]
    pub since: Option<String>,
    #[arg(long)]
    pub until: Option<String>,
    #[arg(long)]
    pub details: bool,
    pub container: String,
}

#[derive(Args, Debug, Default)]
pub struct RenameArgs {
    pub container: String,
    pub new_name: String,
}

#[derive(Args, Debug, Default)]
pub struct TopArgs {
    pub container: String,
    /// ps options
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct PortArgs {
    pub container: String,
    /// PRIVATE_PORT[/PROTO]
    pub port: Option<String>,
}

#[derive(Args, Debug, Default)]
pub struct AttachArgs {
    #[arg(long = "no-stdin")]
    pub no_stdin: bool,
    #[arg(long = "sig-proxy", num_args = 0..=1, require_equals = true, default_value = "true", default_missing_value = "true", action = ArgAction::Set)]
    pub sig_proxy: bool,
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    pub container: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("berth").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn run_stops_at_image() {
        let cli = parse(&[
            "run", "-it", "--rm", "-e", "A=1", "busybox", "ls", "-l", "-d",
        ]);
        let Some(Cmd::Run(r)) = cli.cmd else {
            panic!("not run")
        };
        assert!(r.interactive && r.tty && r.rm && !r.detach);
        assert_eq!(r.env, vec!["A=1"]);
        assert_eq!(r.image_and_cmd, vec!["busybox", "ls", "-l", "-d"]);
    }

    #[test]
    fn run_flag_after_image_is_command() {
        let cli = parse(&["run", "-d", "--rm=false", "-h", "box", "busybox", "-l"]);
        let Some(Cmd::Run(r)) = cli.cmd else {
            panic!("not run")
        };
        assert!(r.detach && !r.rm);
        assert_eq!(r.hostname.as_deref(), Some("box"));
        assert_eq!(r.image_and_cmd, vec!["busybox", "-l"]);
    }

    #[test]
    fn global_host_and_container_forms() {
        let cli = parse(&["-H", "unix:///x.sock", "container", "ls", "-aq"]);
        assert_eq!(cli.host.as_deref(), Some("unix:///x.sock"));
        let Some(Cmd::Container {
            cmd: ContainerCmd::Ls(p),
        }) = cli.cmd
        else {
            panic!("not container ls")
        };
        assert!(p.all && p.quiet);
        let cli = parse(&["stop", "--time", "3", "a", "b"]);
        let Some(Cmd::Stop(s)) = cli.cmd else {
            panic!("not stop")
        };
        assert_eq!(s.time, Some(3));
        assert_eq!(s.containers, vec!["a", "b"]);
    }

    #[test]
    fn history_human_flag() {
        let cli = parse(&["history", "-H=false", "img"]);
        let Some(Cmd::History(h)) = cli.cmd else {
            panic!("not history")
        };
        assert!(!h.human);
    }
}
