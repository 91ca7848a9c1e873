//! `titan-supervisor run [--config FILE]`: the daemon in the foreground (systemd, a terminal,
//! or PID 1 of a container). Exit 0 after a clean stop, 2 when the config or boot is refused.

use std::io::IsTerminal;

use super::{Exit, default_config};
use crate::cli::{LogStyle, RunArgs};
use crate::config;
use crate::logs::pipeline::Pipeline;
use crate::logs::writer::SharedWriter;
use crate::runtime::cgroup::Cgroups;
use crate::runtime::reaper;
use crate::supervisor::Supervisor;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::Layer;

pub fn run(args: &RunArgs) -> Exit {
    let path = default_config(args.config.as_deref());
    let cfg = match config::load(&path) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprint!("{e}");
            return Exit::Refused;
        }
    };
    let logs = match Pipeline::start() {
        Ok(logs) => logs,
        Err(e) => {
            eprintln!("titan-supervisor: cannot start the log threads: {e}");
            return Exit::Failed;
        }
    };
    let own_log = logs.open_writer(&cfg.supervisor.log_dir, OWN_LOG, &own_log_spec());
    let _flush = init_tracing(args.log_format, true, own_log.as_ref().ok().cloned());
    if let Err(e) = own_log {
        tracing::warn!("cannot write the supervisor's log under {}: {e}", cfg.supervisor.log_dir.display());
    }
    tracing::info!(config = %path.display(), services = cfg.services.len(), pid = std::process::id(), "titan-supervisor starting");
    supervise(cfg, logs)
}

/// The name under `log_dir` of the supervisor's own log (`titan-supervisor logs supervisor`).
pub const OWN_LOG: &str = "supervisor";

/// Rotation and retention of the supervisor's own log: the built-in service defaults.
pub fn own_log_spec() -> config::Logs {
    use config::model::builtin;
    config::Logs {
        max_size: builtin::LOG_MAX_SIZE,
        retain: builtin::LOG_RETAIN,
        max_files: builtin::LOG_MAX_FILES,
        compress: true,
        format: config::LogFormat::Text,
    }
}

/// Runs a supervisor for `cfg` on a single-threaded runtime until it has stopped.
pub fn supervise(cfg: config::Config, logs: Pipeline) -> Exit {
    if let Err(e) = reaper::become_subreaper() {
        tracing::warn!("cannot become a child subreaper (orphans of services will not be reaped by us): {e}");
    }
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return Exit::Failed;
        }
    };
    let cgroups = Cgroups::detect().map_err(|e| e.to_string());
    let sup = match Supervisor::with(cfg, cgroups, logs) {
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

/// The supervisor's own log: on stderr (readable on a terminal, JSON for log shippers) and, in
/// text, in `<log_dir>/supervisor/` through a background writer that never blocks the actor
/// (when it falls behind, lines are dropped, not waited for). `TITAN_SUPERVISOR_LOG` sets the
/// filter (default `info`). Keep the returned guard until exit: it flushes the file.
pub fn init_tracing(style: LogStyle, to_stderr: bool, file: Option<SharedWriter>) -> Option<WorkerGuard> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, fmt};
    let filter =
        || EnvFilter::try_from_env("TITAN_SUPERVISOR_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let stderr = match style {
        LogStyle::Json => fmt::layer().json().with_writer(std::io::stderr).boxed(),
        LogStyle::Text => {
            fmt::layer().with_ansi(std::io::stderr().is_terminal()).with_writer(std::io::stderr).boxed()
        }
    };
    let (file_layer, guard) = match file {
        Some(w) => {
            let (writer, guard) = tracing_appender::non_blocking(SharedFile(w));
            (Some(fmt::layer().with_ansi(false).with_writer(writer).with_filter(filter())), Some(guard))
        }
        None => (None, None),
    };
    let stderr = to_stderr.then(|| stderr.with_filter(filter()));
    let _ = tracing_subscriber::registry().with(stderr).with(file_layer).try_init();
    guard
}

/// `io::Write` onto a shared service log (the writer turns whole lines into records).
struct SharedFile(SharedWriter);

impl std::io::Write for SharedFile {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).write(bytes)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
