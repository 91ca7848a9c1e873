//! Command-line types (clap derive) and nothing else: the logic lives in `commands`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// titan-supervisor runs every service of the Titan trading system on one host, digest-pinned
/// containers and native processes alike, in dependency order, each through a health gate, and
/// keeps them running with restart limits, memory caps and rotated logs. The run command is the
/// daemon, started by systemd or as PID 1 of a container; the other commands talk to it over its
/// control socket, or work on files alone (validate, graph, release create, the imports).
///
/// A deploy is a switch to a release: an atomic swap of the current symlink that recreates only
/// what changed, verifies, and rolls back to the last known good release by itself when
/// verification fails.
// `about` is the one-line summary (-h, the man page's NAME); the doc comment is `long_about`
// (--help, the man page's DESCRIPTION).
#[derive(Debug, Parser)]
#[command(name = "titan-supervisor", version, about = "Single-host service supervisor for Titan")]
pub struct Cli {
    /// Control socket of the running daemon (default: [supervisor] socket of the config).
    #[arg(long, global = true, env = "TITAN_SUPERVISOR_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the supervisor in the foreground: start every service in dependency order, keep
    /// them running, stop them in reverse order on SIGTERM/SIGINT.
    Run(RunArgs),
    /// Check a services.toml and report every problem at once (exit 0 valid, 2 invalid).
    Validate(ValidateArgs),
    /// Show the dependency graph: tiers, dependencies and start layers (text) or Graphviz (dot).
    Graph(GraphArgs),
    /// Show every service of the running daemon: state, pid, uptime, restarts, memory, health.
    Status(StatusArgs),
    /// Start a service (held stopped, failed or exited) and wait until it is healthy.
    Start(ServiceArgs),
    /// Stop a service and hold it stopped until `start`.
    Stop(ServiceArgs),
    /// Restart a service through its health gate and report the outcome.
    Restart(ServiceArgs),
    /// Re-read the config and apply only the difference (also SIGHUP to the daemon).
    Reload,
    /// Follow lifecycle events as JSON lines (one per state change) until interrupted.
    Events,
    /// Re-execute the daemon's binary (a new version in its place) without stopping
    /// containers: native services are stopped in order, containers are adopted by the new
    /// process. Also SIGUSR2 to the daemon.
    Upgrade,
    /// Print a service's log (`supervisor` for the supervisor's own), from the log files.
    Logs(LogsArgs),
    /// The built-in six-tier demo on native processes.
    Demo(DemoArgs),
    /// Deploy a release: validate, pull, swap `current`, recreate what changed, verify; roll
    /// back to the last known good release by itself when anything fails.
    Switch(SwitchArgs),
    /// Switch back to a release (default: the last known good) through the same pipeline.
    Rollback(RollbackArgs),
    /// List the releases: current, last known good, bad marks, last outcome.
    Releases(ReleasesArgs),
    /// Make releases.
    #[command(subcommand)]
    Release(ReleaseCommand),
    /// Convert a docker compose file to a services.toml on stdout; what has no services.toml
    /// form is a warning on stderr naming the service and key.
    ImportCompose(ImportComposeArgs),
    /// Convert a PM2 ecosystem file (JSON, or plain-data ecosystem.config.js) to a services.toml
    /// on stdout; what has no services.toml form is a warning on stderr naming the app and key.
    ImportPm2(ImportPm2Args),
    /// Print the man page, titan-supervisor(1), on stdout: one page with every command and its
    /// options (`man > /usr/local/share/man/man1/titan-supervisor.1`).
    Man,
    /// Print the completion script for SHELL on stdout (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell the script is for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct SwitchArgs {
    /// A directory name under `releases_dir`, or a path.
    pub release: String,
    /// Pass the progress lines through as JSON.
    #[arg(long)]
    pub json: bool,
    /// Deploy without disarming execution over NATS (recorded in the evidence).
    #[arg(long)]
    pub no_disarm: bool,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The release to return to (default: the last known good).
    pub release: Option<String>,
    /// Pass the progress lines through as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReleasesArgs {
    /// Print the releases as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ImportComposeArgs {
    /// The compose file (docker-compose.yml, compose.yaml, ...).
    pub file: PathBuf,
    /// `{"<service>": "<repo>@sha256:<hex>", ...}`: these images replace the file's.
    #[arg(long, value_name = "FILE")]
    pub digests: Option<PathBuf>,
    /// Variables for interpolation (default: `.env` beside the compose file).
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
    /// `[supervisor] project` (default: the file's `name:`, else its directory's name).
    #[arg(long, value_name = "NAME")]
    pub project: Option<String>,
}

#[derive(Debug, Args)]
pub struct ImportPm2Args {
    /// The ecosystem file (ecosystem.json, ecosystem.config.js, ...).
    pub file: PathBuf,
    /// Merge the apps' `env_NAME` over their `env`, as `pm2 start --env NAME` does.
    #[arg(long, value_name = "NAME")]
    pub env: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ReleaseCommand {
    /// Write a release directory: services.toml pinned from digests.json, digests.json,
    /// release.json, and with --sign a minisign signature of digests.json. Prints its path.
    Create(ReleaseCreateArgs),
}

#[derive(Debug, Args)]
pub struct ReleaseCreateArgs {
    /// The source services.toml (images may be unpinned).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// `{"<service>": "<repo>@sha256:<hex>", ...}` as CI produced it.
    #[arg(long, value_name = "FILE")]
    pub digests: PathBuf,
    /// The commit the release is built from (its first 7 characters name the directory).
    #[arg(long)]
    pub sha: String,
    /// A minisign secret key: digests.json is signed with it.
    #[arg(long, value_name = "KEY")]
    pub sign: Option<PathBuf>,
    /// Where to write the release (default: the config's `releases_dir`).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The config (default: <current>/services.toml, else ./services.toml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Format of the supervisor's own log on stderr.
    #[arg(long, value_enum, default_value_t = LogStyle::Text)]
    pub log_format: LogStyle,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogStyle {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The config (default: <current>/services.toml, else ./services.toml).
    pub file: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Accept images not pinned by digest, whatever `require_digests` says: a source config
    /// whose images `release create` pins.
    #[arg(long)]
    pub allow_unpinned: bool,
}

#[derive(Debug, Args)]
pub struct GraphArgs {
    /// The config (default: <current>/services.toml, else ./services.toml).
    pub file: Option<PathBuf>,
    /// Text for people, or Graphviz dot (`--format dot | dot -Tsvg`).
    #[arg(long, value_enum, default_value_t = GraphFormat::Text)]
    pub format: GraphFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    Text,
    Dot,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the status as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// The service.
    pub service: String,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The service (or `supervisor`).
    pub service: String,
    /// Only the last N lines (with -f and no -n: the last 10).
    #[arg(short = 'n', long = "lines", value_name = "N")]
    pub lines: Option<usize>,
    /// Keep printing new lines as they are written, across rotations.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only lines from the last DUR (e.g. 10m, 2h).
    #[arg(long, value_name = "DUR", value_parser = humantime::parse_duration)]
    pub since: Option<std::time::Duration>,
    /// The config that says where the logs are (default: <current>/services.toml, else
    /// ./services.toml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Directory for the demo's logs, state and socket (default: a new temporary directory).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Print the embedded demo services.toml and exit.
    #[arg(long)]
    pub print_config: bool,
}
