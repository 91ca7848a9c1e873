//! The test service: a tiny, fast-starting stand-in for a real service, run by tests, benchmarks
//! and the demo as `titan-supervisor test-service [OPTIONS]`. Synchronous std + nix only: it must
//! be running within about a millisecond, so no async runtime and no clap on its path.
//!
//! `--check-http URL` alone makes it a one-shot health check instead (see `check`).
//!
//! Life of the process: parse options (a bad one exits 2), block the handled signals, print
//! `<name> started pid=<pid>`, do the single-threaded work (pid file, start log, forks, env dump),
//! then start worker threads (readiness and health server, timers, memory, numbered lines) while
//! the main thread waits for signals.

mod check;
mod files;
mod http;
mod memory;
mod notify;
mod opts;
mod output;
mod procs;
mod signals;

use std::ffi::OsString;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use opts::{Opts, Parsed};
use output::{say, warn};

/// The hidden subcommand that selects the test service; checked before anything else in `main`.
pub const SUBCOMMAND: &str = "test-service";

/// Runs the test service with the arguments after the subcommand; never returns.
pub fn main(args: &[OsString]) -> ! {
    let start = Instant::now();
    let opts = match opts::parse(args) {
        Ok(Parsed::Run(opts)) => Arc::new(*opts),
        Ok(Parsed::Help) => {
            say(opts::USAGE.trim_end());
            std::process::exit(0)
        }
        Ok(Parsed::CheckHttp(url)) => check::run(&url),
        Err(e) => {
            warn(&e.option, &e.problem);
            std::process::exit(2)
        }
    };
    // Before anything else, so a signal sent as soon as the first line shows is never lost.
    let handled = signals::block().unwrap_or_else(|e| fail("signals", &format!("cannot block: {e}")));
    start_up(&opts);
    start_workers(&opts, start);
    signals::wait_loop(&handled, opts.ignore_sigterm, opts.term_delay)
}

/// Prints `test-service: <what>: <problem>` and exits 1: a runtime failure, not a usage error.
fn fail(what: &str, problem: &str) -> ! {
    warn(what, problem);
    std::process::exit(1)
}

/// The single-threaded part of starting: first line, files, forks, environment dump.
fn start_up(opts: &Opts) {
    say(&format!("{} started pid={}", opts.name, std::process::id()));
    if let Some(path) = &opts.pid_file {
        files::write_pid(path).unwrap_or_else(|e| fail_on_file("--pid-file", path, &e));
    }
    log_event(opts, "start");
    procs::fork_children(opts.fork_children)
        .unwrap_or_else(|e| fail("--fork-children", &format!("cannot fork: {e}")));
    procs::orphans(opts.orphans).unwrap_or_else(|e| fail("--orphans", &format!("cannot fork: {e}")));
    if opts.print_env {
        output::print_env();
    }
}

fn fail_on_file(option: &str, path: &Path, e: &std::io::Error) -> ! {
    fail(option, &format!("cannot write {}: {e}", path.display()))
}

/// Appends a `--start-log` line, if asked to.
fn log_event(opts: &Opts, event: &str) {
    if let Some(path) = &opts.start_log {
        files::log_event(path, &opts.name, event).unwrap_or_else(|e| fail_on_file("--start-log", path, &e));
    }
}

/// Starts every thread the options call for; readiness at time zero happens right here.
fn start_workers(opts: &Arc<Opts>, start: Instant) {
    let health = Arc::new(http::State::new(&opts.policy_hash));
    if let (true, Some(addr)) = (opts.bind_early, opts.listen) {
        serve(addr, &health);
    }
    if opts.ready_after.is_zero() {
        become_ready(opts, &health, start);
    } else {
        let (o, h) = (Arc::clone(opts), Arc::clone(&health));
        spawn("ready", move || become_ready(&o, &h, start));
    }
    start_timers(opts, start);
    if let Some(alloc) = opts.alloc.clone() {
        spawn("alloc", move || {
            memory::run(&alloc).unwrap_or_else(|e| fail("--alloc", &e));
        });
    }
    if let Some(lines) = opts.lines.clone() {
        let name = opts.name.clone();
        spawn("lines", move || {
            let _ = output::run_lines(&name, &lines);
            if lines.exit {
                std::process::exit(0);
            }
        });
    }
}

/// Starts the `--exit-after` and `--abort-after` timers.
fn start_timers(opts: &Opts, start: Instant) {
    if let Some(after) = opts.exit_after {
        let code = opts.exit_code;
        spawn("exit", move || {
            sleep_until(start, after);
            output::say_within(&format!("exiting with code {code}"), output::LAST_WORDS);
            std::process::exit(code);
        });
    }
    if let Some(after) = opts.abort_after {
        spawn("abort", move || {
            sleep_until(start, after);
            output::say_within("aborting", output::LAST_WORDS);
            std::process::abort();
        });
    }
}

/// At `--ready-after`: bind the listener (unless bound early), answer 200 on /health, log the
/// event, print the ready line, and notify.
fn become_ready(opts: &Opts, health: &Arc<http::State>, start: Instant) {
    sleep_until(start, opts.ready_after);
    if let (false, Some(addr)) = (opts.bind_early, opts.listen) {
        serve(addr, health);
    }
    health.set_ready();
    log_event(opts, "ready");
    say(&opts.ready_line);
    if opts.notify {
        notify::send_ready().unwrap_or_else(|e| warn("--notify", &e));
    }
}

fn serve(addr: std::net::SocketAddr, health: &Arc<http::State>) {
    http::start(addr, Arc::clone(health))
        .unwrap_or_else(|e| fail("--listen", &format!("cannot serve {addr}: {e}")));
}

fn sleep_until(start: Instant, after: Duration) {
    let due = start.checked_add(after);
    let left = due.map_or(Duration::MAX, |d| d.saturating_duration_since(Instant::now()));
    std::thread::sleep(left);
}

fn spawn(name: &str, work: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(work)
        .unwrap_or_else(|e| fail("threads", &format!("cannot start {name}: {e}")));
}
