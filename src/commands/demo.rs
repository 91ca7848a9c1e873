//! `titan-supervisor demo [--dir DIR] [--print-config]`: the built-in six-tier graph on native
//! processes. Shows tiers coming up live, a status table, a SIGKILLed service coming back, then
//! the deploy tour (`demo::tour`: a good release switched to, a bad one rolled back by itself),
//! and on Ctrl-C the stop in reverse order with a summary of what happened.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::{Exit, run, table};

/// Prints a line; a closed stdout (`demo | head`) must not take the demo down.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}
use crate::cli::{DemoArgs, LogStyle};
use crate::config;
use crate::demo;
use crate::demo::tour::{Shared, Tour};
use crate::supervisor::Handle;
use crate::supervisor::events::Event;
use crate::supervisor::fsm::StateKind;
use crate::supervisor::status::Summary;

/// The service the demo kills to show a restart.
const VICTIM: &str = "titan-hunter";
/// How long after everything is up the victim is killed.
const KILL_AFTER: Duration = Duration::from_secs(3);
/// How long after the victim is back the deploy tour starts: time to read the restart.
const TOUR_AFTER: Duration = Duration::from_secs(2);

pub(crate) fn run(args: &DemoArgs) -> Exit {
    if args.print_config {
        print!("{}", demo::CONFIG);
        return Exit::Ok;
    }
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("titan-demo-{}", std::process::id())));
    let (dir, cfg) = match setup(&dir) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("demo: {}", e.to_string().trim_end());
            return Exit::Failed;
        }
    };
    let path = dir.join(demo::CONFIG_FILE);
    say!(
        "titan-supervisor demo: {} services in {} tiers, native processes, no Docker.",
        cfg.services.len(),
        cfg.groups.len()
    );
    say!(
        "Config: {}. Service logs: {}/<service>/current.log.\nCtrl-C stops everything in reverse order.\n",
        path.display(),
        cfg.supervisor.log_dir.display()
    );
    let (settings, probation) = (cfg.supervisor.clone(), cfg.deploy.probation.0);
    // the supervisor's own log goes to its file only: the terminal is for the narration
    let booted = match run::boot(cfg, LogStyle::Text, false) {
        Ok(booted) => booted,
        Err(_) => return Exit::Failed,
    };
    let run::Booted { mut supervisor, runtime, control, _flush } = booted;
    // reloads and a switch's way back read the file the demo wrote
    supervisor.reload_from(path.clone());
    let handle = supervisor.handle();
    let events = handle.subscribe();
    let shared = Arc::new(Shared::default());
    let tour = Tour { handle: handle.clone(), dir, settings, probation, shared: Arc::clone(&shared) };
    let total = runtime.block_on(async {
        tokio::spawn(hush_on_stop(Arc::clone(&shared)));
        tokio::spawn(narrate(handle, events, tour));
        let summary = supervisor.run().await;
        // let the narration print the last events before the summary
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
        summary
    });
    shared.interrupt();
    control.finish();
    match total {
        Ok(summary) => {
            print_summary(&summary);
            if shared.failed() { Exit::Failed } else { Exit::Ok }
        }
        Err(e) => {
            eprintln!("demo: {e}");
            Exit::Failed
        }
    }
}

/// `dir` made absolute (every release of the demo names the same paths, wherever its file
/// is), the demo's config written into it, and read back as the daemon reads a config file.
fn setup(dir: &Path) -> anyhow::Result<(PathBuf, config::Config)> {
    let dir = std::path::absolute(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    let path = demo::write_config(&dir)?;
    let cfg = config::load(&path)?;
    Ok((dir, cfg))
}

/// Where the narration is, with the tour it starts once the victim is back.
enum Phase {
    /// Services coming up.
    Starting(Box<Tour>),
    /// All up: the victim is killed at this instant.
    KillAt(tokio::time::Instant, Box<Tour>),
    /// The victim was killed: the tour starts a little after it is back.
    Killed(Box<Tour>),
    /// The victim is back: the tour starts at this instant.
    TourAt(tokio::time::Instant, Box<Tour>),
    /// The tour runs, or ran.
    Toured,
}

/// Prints events as they happen; once all is up, the table, then kills the victim once, and
/// shortly after it is back starts the tour.
async fn narrate(handle: Handle, mut events: crate::supervisor::events::Receiver, tour: Tour) {
    let color = std::io::stdout().is_terminal();
    let mut phase = Phase::Starting(Box::new(tour));
    loop {
        let wake = match phase {
            Phase::KillAt(at, _) | Phase::TourAt(at, _) => Some(at),
            _ => None,
        };
        tokio::select! {
            event = events.recv() => match event {
                Ok(e) => {
                    say!("{}", line(&e));
                    phase = match phase {
                        Phase::Starting(tour) if e.to == StateKind::Healthy && all_up(&handle) => {
                            say!("\nAll services are up:\n\n{}", table::render(&handle.status(), color));
                            Phase::KillAt(tokio::time::Instant::now() + KILL_AFTER, tour)
                        }
                        Phase::Killed(tour) if e.service == VICTIM && e.to == StateKind::Healthy => {
                            Phase::TourAt(tokio::time::Instant::now() + TOUR_AFTER, tour)
                        }
                        other => other,
                    };
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return,
            },
            () = tokio::time::sleep_until(wake.unwrap_or_else(tokio::time::Instant::now)), if wake.is_some() => {
                phase = match phase {
                    Phase::KillAt(_, tour) => {
                        kill_victim(&handle).await;
                        Phase::Killed(tour)
                    }
                    Phase::TourAt(_, tour) => {
                        tour.spawn();
                        Phase::Toured
                    }
                    other => other,
                };
            }
        }
    }
}

/// Ctrl-C (or SIGTERM) stops the supervisor, which listens for it too; the tour says no more
/// from then on.
async fn hush_on_stop(shared: Arc<Shared>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    else {
        return;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    shared.interrupt();
}

fn all_up(handle: &Handle) -> bool {
    handle.status().iter().all(|s| matches!(s.state, StateKind::Healthy | StateKind::Exited))
}

async fn kill_victim(handle: &Handle) {
    let status = handle.status();
    let Some(pid) = status.iter().find(|s| s.name == VICTIM).and_then(|s| s.pid) else {
        return;
    };
    say!("\nKilling {VICTIM} (pid {pid}) with SIGKILL to show a restart:");
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
}

fn line(e: &Event) -> String {
    let t = format!("+{:>6.3}s", e.at_ms as f64 / 1000.0);
    let mut out = format!("{t}  {:<16} {:>9} -> {}", e.service, e.from, e.to);
    if let Some(exit) = &e.exit {
        out.push_str(&format!("  ({exit})"));
    }
    if let Some(reason) = &e.reason {
        out.push_str(&format!("  [{reason}]"));
    }
    if e.restarts > 0 && e.to == StateKind::Starting {
        out.push_str(&format!("  restart #{}", e.restarts));
    }
    out
}

fn print_summary(summary: &Summary) {
    say!("\nStopped in reverse dependency order: {}", summary.stop_order.join(", "));
    let restarted: Vec<String> = summary
        .services
        .iter()
        .filter(|s| s.restarts > 0)
        .map(|s| format!("{} ×{}", s.name, s.restarts))
        .collect();
    if !restarted.is_empty() {
        say!("Restarts: {}", restarted.join(", "));
    }
    let ready: Vec<String> = summary
        .services
        .iter()
        .filter_map(|s| s.ready_after_ms.map(|ms| format!("{} {ms} ms", s.name)))
        .collect();
    say!("Time to healthy (last start): {}", ready.join(", "));
    say!("Ran for {:.1} s.", summary.ran_for.as_secs_f64());
}
