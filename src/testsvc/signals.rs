//! Signal handling: SIGTERM, SIGINT and SIGHUP are blocked in every thread (the mask is set before
//! any thread exists) and the main thread takes them synchronously with `sigwait`.

use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};

use super::output::{LAST_WORDS, say, say_within};

/// The signals the main thread waits for.
pub(crate) fn handled() -> SigSet {
    let mut set = SigSet::empty();
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        set.add(sig);
    }
    set
}

/// Blocks the handled signals in the calling thread (and so in every thread it spawns later).
pub(crate) fn block() -> nix::Result<SigSet> {
    let set = handled();
    set.thread_block()?;
    Ok(set)
}

/// Waits for signals forever: SIGTERM/SIGINT stop the service (exit 0 after `term_delay`) unless
/// ignored; SIGHUP is only logged.
pub(crate) fn wait_loop(set: &SigSet, ignore_term: bool, term_delay: Duration) -> ! {
    loop {
        let Ok(sig) = set.wait() else {
            continue;
        };
        let name = sig.as_str();
        match sig {
            Signal::SIGHUP => say("ignoring SIGHUP"),
            _ if ignore_term => say(&format!("ignoring {name}")),
            _ => {
                let started = Instant::now();
                say_within(&format!("stopping on {name}"), LAST_WORDS);
                std::thread::sleep(term_delay.saturating_sub(started.elapsed()));
                std::process::exit(0);
            }
        }
    }
}
