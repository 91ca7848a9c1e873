//! `titan-supervisor demo [--dir DIR] [--print-config]`: the built-in six-tier graph on native
//! processes. Shows tiers coming up live, a status table, a SIGKILLed service coming back, and
//! on Ctrl-C the stop in reverse order with a summary of what happened.

use std::io::IsTerminal;
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
use crate::demo;
use crate::supervisor::Handle;
use crate::supervisor::events::Event;
use crate::supervisor::fsm::StateKind;
use crate::supervisor::status::Summary;

/// The service the demo kills to show a restart.
const VICTIM: &str = "titan-hunter";
/// How long after everything is up the victim is killed.
const KILL_AFTER: Duration = Duration::from_secs(3);

pub(crate) fn run(args: &DemoArgs) -> Exit {
    if args.print_config {
        print!("{}", demo::CONFIG);
        return Exit::Ok;
    }
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("titan-demo-{}", std::process::id())));
    let cfg = match demo::load(&dir) {
        Ok(cfg) => cfg,
        Err(report) => {
            eprint!("{report}");
            return Exit::Failed;
        }
    };
    let log_dir = cfg.supervisor.log_dir.clone();
    say!(
        "titan-supervisor demo: {} services in {} tiers, native processes, no Docker.",
        cfg.services.len(),
        cfg.groups.len()
    );
    say!(
        "Service logs: {}/<service>/current.log. Ctrl-C stops everything in reverse order.\n",
        log_dir.display()
    );
    // the supervisor's own log goes to its file only: the terminal is for the narration
    let booted = match run::boot(cfg, LogStyle::Text, false) {
        Ok(booted) => booted,
        Err(_) => return Exit::Failed,
    };
    let run::Booted { supervisor, runtime, control, _flush } = booted;
    let handle = supervisor.handle();
    let events = handle.subscribe();
    let total = runtime.block_on(async {
        tokio::spawn(narrate(handle, events));
        let summary = supervisor.run().await;
        // let the narration print the last events before the summary
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
        summary
    });
    control.finish();
    match total {
        Ok(summary) => {
            print_summary(&summary);
            Exit::Ok
        }
        Err(e) => {
            eprintln!("demo: {e}");
            Exit::Failed
        }
    }
}

/// Prints events as they happen; once all is up, the table, then kills the victim once.
async fn narrate(handle: Handle, mut events: crate::supervisor::events::Receiver) {
    let color = std::io::stdout().is_terminal();
    let mut killed = false;
    let mut kill_at: Option<tokio::time::Instant> = None;
    loop {
        let wait = kill_at.map_or(Duration::from_secs(3600), |at| {
            at.saturating_duration_since(tokio::time::Instant::now())
        });
        tokio::select! {
            event = events.recv() => match event {
                Ok(e) => {
                    say!("{}", line(&e));
                    if !killed && kill_at.is_none() && e.to == StateKind::Healthy && all_up(&handle) {
                        say!("\nAll services are up:\n\n{}", table::render(&handle.status(), color));
                        kill_at = Some(tokio::time::Instant::now() + KILL_AFTER);
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return,
            },
            () = tokio::time::sleep(wait), if kill_at.is_some() => {
                kill_at = None;
                killed = true;
                kill_victim(&handle).await;
            }
        }
    }
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
