//! `titan-supervisor run [--config FILE]`: the daemon in the foreground (systemd, a terminal,
//! or PID 1 of a container). Exit 0 after a clean stop, 2 when the config or boot is refused.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use super::{Exit, run_config};
use crate::cli::{LogStyle, RunArgs};
use crate::config;
use crate::control;
use crate::logs::pipeline::Pipeline;
use crate::logs::writer::SharedWriter;
use crate::runtime::cgroup::Cgroups;
use crate::runtime::reaper;
use crate::supervisor::Supervisor;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::Layer;

pub(crate) fn run(args: &RunArgs) -> Exit {
    // the path, not /proc/self/exe: an upgrade runs whatever binary is there by then
    let exe = std::env::current_exe().ok().map(|p| strip_deleted(&p));
    let (path, cfg) = match recover_and_load(args.config.as_deref()) {
        Ok(loaded) => loaded,
        Err(exit) => return exit,
    };
    let services = cfg.services.len();
    let shown = path
        .as_ref()
        .map_or_else(|| "none: waiting for a first switch".to_owned(), |p| p.display().to_string());
    let Booted { mut supervisor, runtime, control, _flush } = match boot(cfg, args.log_format, true) {
        Ok(booted) => booted,
        Err(exit) => return exit,
    };
    if let Some(path) = path {
        supervisor.reload_from(path);
    }
    supervisor.upgrade_to(exe.clone());
    tracing::info!(config = %shown, services, pid = std::process::id(), "titan-supervisor starting");
    let ran = runtime.block_on(supervisor.run());
    control.finish();
    match ran {
        Ok(summary) if summary.upgrade => reexec(exe, _flush),
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

/// The config to run, read after a switch the last daemon did not finish is undone (the
/// recovery may move `current`, or remove it); with no file at all, no services.
fn recover_and_load(given: Option<&Path>) -> Result<(Option<PathBuf>, config::Config), Exit> {
    let settings = match run_config(given) {
        Some(path) => config::load_supervisor(&path).map(|(settings, _)| settings).ok(),
        None => Some(config::raw::Supervisor::default()),
    };
    if let Some(settings) = settings
        && let Err(e) = crate::deploy::journal::recover(&crate::deploy::state::Layout::of(&settings))
    {
        eprintln!("titan-supervisor: cannot undo the unfinished switch: {e}");
        return Err(Exit::Failed);
    }
    let Some(path) = run_config(given) else {
        return Ok((None, config::Config::empty(config::raw::Supervisor::default())));
    };
    match config::load(&path) {
        Ok(cfg) => Ok((Some(path), cfg)),
        Err(e) => {
            eprint!("{e}");
            Err(Exit::Refused)
        }
    }
}

/// Replaces this process with `exe` and the same arguments: same pid (systemd keeps tracking
/// it), containers left running for the new binary to adopt.
fn reexec(exe: Option<PathBuf>, log: Option<WorkerGuard>) -> Exit {
    use std::os::unix::process::CommandExt;
    let Some(exe) = exe else {
        eprintln!("titan-supervisor: upgrade: cannot tell which binary to run");
        return Exit::Failed;
    };
    tracing::info!(binary = %exe.display(), "upgrade: executing the new binary");
    drop(log); // flushed: the new process appends to the same file
    let error = std::process::Command::new(&exe).args(std::env::args_os().skip(1)).exec();
    eprintln!("titan-supervisor: upgrade: cannot execute {}: {error}", exe.display());
    Exit::Failed
}

/// `/usr/bin/titan-supervisor` from `/usr/bin/titan-supervisor (deleted)`: once the binary was
/// replaced, the path names the new one.
fn strip_deleted(p: &Path) -> PathBuf {
    let text = p.to_string_lossy();
    PathBuf::from(text.strip_suffix(" (deleted)").unwrap_or(&text))
}

/// The name under `log_dir` of the supervisor's own log (`titan-supervisor logs supervisor`).
pub(crate) const OWN_LOG: &str = "supervisor";

/// Rotation and retention of the supervisor's own log: the built-in service defaults.
fn own_log_spec() -> config::Logs {
    use config::model::builtin;
    config::Logs {
        max_size: builtin::LOG_MAX_SIZE,
        retain: builtin::LOG_RETAIN,
        max_files: builtin::LOG_MAX_FILES,
        compress: true,
        format: config::LogFormat::Text,
    }
}

/// A supervisor ready to run, its control API already answering, with what must live as
/// long as it.
pub(crate) struct Booted {
    pub(crate) supervisor: Supervisor,
    pub(crate) runtime: tokio::runtime::Runtime,
    /// The control API's thread: its last answers go out before the process exits or execs.
    pub(crate) control: control::server::Control,
    /// Flushes the supervisor's own log file when dropped.
    pub(crate) _flush: Option<WorkerGuard>,
}

/// What `run` and `demo` share: the control socket bound, the log threads, the supervisor's own
/// log (to stderr too when `to_stderr`), subreaper, the actor's single-threaded runtime,
/// cgroups, the supervisor (built inside its runtime), and the control API served on its
/// handle. Errors are reported here; the caller only exits with the code.
pub(crate) fn boot(cfg: config::Config, style: LogStyle, to_stderr: bool) -> Result<Booted, Exit> {
    one_malloc_arena();
    let nofile = crate::runtime::rlimit::raise_nofile();
    let sup_cfg = &cfg.supervisor;
    let settings = sup_cfg.clone();
    // bound first, before any thread exists (its mode is set through the umask); a refusal
    // after this removes it again (the guard in `socket`)
    let socket = control::socket::bind(&sup_cfg.socket, sup_cfg.socket_mode.0, socket_group(sup_cfg))
        .map_err(|e| {
            eprintln!("titan-supervisor: {e}");
            Exit::Refused
        })?;
    // a port in use refuses the start like a live socket, before any service starts
    let metrics = sup_cfg.metrics_listen.map(crate::metrics_listen::bind).transpose().map_err(|e| {
        eprintln!("titan-supervisor: {e}");
        Exit::Refused
    })?;
    let access = control::access::Access::of(sup_cfg);
    let logs = Pipeline::start().map_err(|e| {
        eprintln!("titan-supervisor: cannot start the log threads: {e}");
        Exit::Failed
    })?;
    let own_log = logs.open_writer(&cfg.supervisor.log_dir, OWN_LOG, &own_log_spec(), Default::default());
    let flush = init_tracing(style, to_stderr, own_log.as_ref().ok().cloned());
    if let Err(e) = own_log {
        tracing::warn!("cannot write the supervisor's log under {}: {e}", cfg.supervisor.log_dir.display());
    }
    match nofile {
        Ok((soft, _)) => tracing::debug!(soft, "descriptor limit"),
        Err(e) => tracing::warn!("cannot raise the descriptor limit to its hard limit: {e}"),
    }
    if let Err(e) = reaper::become_subreaper() {
        tracing::warn!("cannot become a child subreaper (orphans of services will not be reaped by us): {e}");
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| {
        eprintln!("titan-supervisor: cannot start the runtime: {e}");
        Exit::Failed
    })?;
    if let Err(e) = runtime.block_on(crate::supervisor::containers::claim_first(&cfg)) {
        tracing::error!("{e}");
        eprintln!("titan-supervisor: {e}");
        return Err(Exit::Refused);
    }
    let cgroups = Cgroups::detect().map_err(|e| e.to_string());
    let inside = runtime.enter();
    let nats = cfg.nats.clone();
    let mut supervisor = Supervisor::with(cfg, cgroups, logs).map_err(|e| {
        tracing::error!("{e}");
        eprintln!("titan-supervisor: {e}");
        Exit::Refused
    })?;
    drop(inside);
    if let Some(nats) = &nats {
        // subscribed before the supervisor runs: its first events go out too
        let events = supervisor.handle().subscribe();
        let publisher = crate::nats::events::start(nats, &settings, events).map_err(|e| {
            eprintln!("titan-supervisor: {e}");
            Exit::Refused
        })?;
        supervisor.watch_nats(std::sync::Arc::clone(&publisher.link().stats));
    }
    let control = control::server::spawn_thread(socket, metrics, access, supervisor.handle(), settings)
        .map_err(|e| {
            eprintln!("titan-supervisor: cannot start the control thread: {e}");
            Exit::Failed
        })?;
    Ok(Booted { supervisor, runtime, control, _flush: flush })
}

/// The control socket's group: the first gid given any access (its members can then connect;
/// what each may do is checked per request).
fn socket_group(settings: &config::Supervisor) -> Option<u32> {
    [&settings.allow_gids, &settings.operate_gids, &settings.read_gids].into_iter().flatten().next().copied()
}

/// glibc gives every thread that allocates an arena of its own; the log, compression and
/// logger threads would each keep one resident. One arena is plenty for a daemon whose threads
/// allocate little and rarely at the same time.
fn one_malloc_arena() {
    // SAFETY: mallopt only sets an allocator parameter; called before other threads start.
    unsafe {
        nix::libc::mallopt(nix::libc::M_ARENA_MAX, 1);
    }
}

/// The supervisor's own log: on stderr (readable on a terminal, JSON for log shippers; into
/// journald with its fields when stderr is the journal, `crate::journal`) and, in
/// text, in `<log_dir>/supervisor/` through a background writer that never blocks the actor
/// (when it falls behind, lines are dropped, not waited for). `TITAN_SUPERVISOR_LOG` sets the
/// level (default `info`). Keep the returned guard until exit: it flushes the file.
pub(crate) fn init_tracing(
    style: LogStyle,
    to_stderr: bool,
    file: Option<SharedWriter>,
) -> Option<WorkerGuard> {
    use tracing_subscriber::filter::LevelFilter;
    use tracing_subscriber::fmt;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // a plain level (trace, debug, info, warn, error): per-module directives would pull a
    // regex engine into every start and keep it resident
    let level = std::env::var("TITAN_SUPERVISOR_LOG").ok().and_then(|l| l.parse::<LevelFilter>().ok());
    let filter = || level.unwrap_or(LevelFilter::INFO);
    // started by systemd with the journal as stderr: structured fields instead of text
    let journal = if to_stderr { crate::journal::layer() } else { None };
    let stderr = match (journal, style) {
        (Some(journal), _) => journal.boxed(),
        (None, LogStyle::Json) => fmt::layer().json().with_writer(std::io::stderr).boxed(),
        (None, LogStyle::Text) => {
            fmt::layer().with_ansi(std::io::stderr().is_terminal()).with_writer(std::io::stderr).boxed()
        }
    };
    let (file_layer, guard) = match file {
        Some(w) => {
            // a small queue: the lines of a burst, not 128k of them held in memory
            let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
                .buffered_lines_limit(4096)
                .finish(SharedFile(w));
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
