//! `titan-supervisor run [--config FILE]`: the daemon in the foreground (systemd, a terminal,
//! or PID 1 of a container). Exit 0 after a clean stop, 2 when the config or boot is refused.

use std::io::IsTerminal;

use super::{Exit, default_config};
use crate::cli::{LogStyle, RunArgs};
use crate::config;
use crate::runtime::reaper;
use crate::supervisor::Supervisor;

pub fn run(args: &RunArgs) -> Exit {
    let path = default_config(args.config.as_deref());
    let cfg = match config::load(&path) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprint!("{e}");
            return Exit::Refused;
        }
    };
    init_tracing(args.log_format);
    tracing::info!(config = %path.display(), services = cfg.services.len(), pid = std::process::id(), "titan-supervisor starting");
    supervise(cfg)
}

/// Runs a supervisor for `cfg` on a single-threaded runtime until it has stopped.
pub fn supervise(cfg: config::Config) -> Exit {
    if let Err(e) = reaper::become_subreaper() {
        tracing::warn!(
            "cannot become a child subreaper (orphans of services will not be reaped by us): {e}"
        );
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return Exit::Failed;
        }
    };
    let sup = match Supervisor::new(cfg) {
        Ok(sup) => sup,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("titan-supervisor: {e}");
            return Exit::Refused;
        }
    };
    match rt.block_on(sup.run()) {
        Ok(summary) => {
            tracing::info!(stopped = ?summary.stop_order, "all services stopped");
            Exit::Ok
        }
        Err(e) => {
            tracing::error!("supervisor failed: {e}");
            Exit::Failed
        }
    }
}

/// The supervisor's own log on stderr: readable on a terminal, JSON for log shippers.
/// `TITAN_SUPERVISOR_LOG` sets the filter (default `info`).
pub fn init_tracing(style: LogStyle) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("TITAN_SUPERVISOR_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match style {
        LogStyle::Json => builder.json().try_init(),
        LogStyle::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
}
