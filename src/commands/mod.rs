//! One module per subcommand; `dispatch` routes the parsed command line and maps outcomes to
//! SPEC's exit codes.

pub(crate) mod demo;
pub(crate) mod deploy;
pub(crate) mod generate;
pub(crate) mod graph;
pub(crate) mod import_compose;
pub(crate) mod import_pm2;
pub(crate) mod logs;
pub(crate) mod ops;
pub(crate) mod release;
pub(crate) mod run;
pub(crate) mod table;
pub(crate) mod validate;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::control::proto::Verb;

/// SPEC's exit codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Done.
    Ok = 0,
    /// The operation ran and failed.
    Failed = 1,
    /// Refused: bad input, invalid release, lock held.
    Refused = 2,
    /// The daemon cannot be reached.
    Unreachable = 3,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e as u8)
    }
}

pub fn dispatch(cli: Cli) -> ExitCode {
    if matches!(
        cli.command,
        Command::Validate(_)
            | Command::Graph(_)
            | Command::Status(_)
            | Command::Releases(_)
            | Command::Events
            | Command::Logs(_)
            | Command::ImportCompose(_)
            | Command::ImportPm2(_)
            | Command::Man
            | Command::Completions(_)
    ) {
        die_quietly_on_closed_stdout();
    }
    let exit = match cli.command {
        Command::Run(args) => run::run(&args),
        Command::Validate(args) => validate::run(&args),
        Command::Graph(args) => graph::run(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Logs(args) => logs::run(cli.socket.as_deref(), &args),
        Command::Status(args) => ops::status(cli.socket.as_deref(), &args),
        Command::Events => ops::events(cli.socket.as_deref()),
        Command::Reload => ops::reload(cli.socket.as_deref()),
        Command::Upgrade => ops::upgrade(cli.socket.as_deref()),
        Command::Start(args) => ops::act(cli.socket.as_deref(), &args.service, Verb::Start),
        Command::Stop(args) => ops::act(cli.socket.as_deref(), &args.service, Verb::Stop),
        Command::Restart(args) => ops::act(cli.socket.as_deref(), &args.service, Verb::Restart),
        Command::Switch(args) => deploy::switch(cli.socket.as_deref(), &args),
        Command::Rollback(args) => deploy::rollback(cli.socket.as_deref(), &args),
        Command::Releases(args) => deploy::releases(cli.socket.as_deref(), &args),
        Command::Release(command) => release::run(&command),
        Command::ImportCompose(args) => import_compose::run(&args),
        Command::ImportPm2(args) => import_pm2::run(&args),
        Command::Man => generate::man(),
        Command::Completions(args) => generate::completions(&args),
    };
    exit.into()
}

/// An import's result: the services.toml on stdout and its warnings on stderr, or the
/// refusal (exit 2).
fn print_import(converted: anyhow::Result<crate::import::Output>) -> Exit {
    match converted {
        Ok(out) => {
            for w in &out.warnings {
                eprintln!("warning: {w}");
            }
            print!("{}", out.toml);
            Exit::Ok
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            Exit::Refused
        }
    }
}

/// SPEC's default config: `<current>/services.toml` when a release is active, else
/// `./services.toml`.
pub(crate) fn default_config(file: Option<&Path>) -> PathBuf {
    run_config(file).unwrap_or_else(|| PathBuf::from("services.toml"))
}

/// The config `run` reads: the one given, else `<current>/services.toml`, else
/// `./services.toml`, else none at all (a host waiting for its first deploy).
pub(crate) fn run_config(file: Option<&Path>) -> Option<PathBuf> {
    if let Some(f) = file {
        return Some(f.to_owned());
    }
    let current = Path::new(&crate::config::raw::Supervisor::default().current).join("services.toml");
    let local = PathBuf::from("services.toml");
    [current, local].into_iter().find(|p| p.exists())
}

/// Commands that only print behave like Unix filters: `validate | head` ends them quietly
/// instead of panicking on EPIPE. Never for the daemon, which must survive closed sockets.
fn die_quietly_on_closed_stdout() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: SIG_DFL installs no handler code, and this runs before any thread is spawned.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}
