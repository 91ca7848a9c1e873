//! Extra processes: `--fork-children` (children that sleep until killed) and `--orphans`
//! (grandchildren whose parent exits at once, so they are reparented to a subreaper or init).
//! Must run while the process is still single-threaded: forking a threaded process is unsafe.

use std::os::fd::OwnedFd;

use nix::libc;
use nix::sys::signal::{self, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{self, ForkResult, Pid};

use super::output::say;

/// Forks `n` sleeping children, printing `child pid=<pid>` for each.
pub(crate) fn fork_children(n: u32) -> nix::Result<()> {
    for _ in 0..n {
        // SAFETY: the service is still single-threaded (no thread is spawned before this), so the
        // child may run arbitrary code; it only resets signals and sleeps.
        match unsafe { unistd::fork() }? {
            ForkResult::Child => sleep_forever(),
            ForkResult::Parent { child } => say(&format!("child pid={child}")),
        }
    }
    Ok(())
}

/// Creates `n` orphaned grandchildren, printing `orphan pid=<pid>` for each.
pub(crate) fn orphans(n: u32) -> nix::Result<()> {
    for _ in 0..n {
        let pid = orphan()?;
        say(&format!("orphan pid={pid}"));
    }
    Ok(())
}

/// Double fork: the intermediate child forks the grandchild, sends its pid through a pipe and
/// exits; the parent reads the pid and reaps the intermediate child.
fn orphan() -> nix::Result<Pid> {
    let (read_end, write_end) = unistd::pipe()?;
    // SAFETY: single-threaded, as for `fork_children`.
    match unsafe { unistd::fork() }? {
        ForkResult::Child => {
            drop(read_end);
            intermediate(write_end)
        }
        ForkResult::Parent { child } => {
            drop(write_end);
            let pid = read_pid(&read_end);
            waitpid(child, None)?;
            pid
        }
    }
}

/// The intermediate child: fork the grandchild, report its pid, exit at once.
fn intermediate(write_end: OwnedFd) -> ! {
    // SAFETY: this child process has a single thread (forked from a single-threaded parent).
    let code = match unsafe { unistd::fork() } {
        Ok(ForkResult::Child) => {
            drop(write_end);
            sleep_forever()
        }
        Ok(ForkResult::Parent { child }) => {
            let bytes = child.as_raw().to_ne_bytes();
            i32::from(unistd::write(&write_end, &bytes) != Ok(bytes.len()))
        }
        Err(_) => 1,
    };
    // SAFETY: `_exit` skips atexit handlers and stdio flushing, which belong to the parent.
    unsafe { libc::_exit(code) }
}

fn read_pid(read_end: &OwnedFd) -> nix::Result<Pid> {
    let mut bytes = [0u8; 4];
    let mut got = 0;
    while got < bytes.len() {
        match unistd::read(read_end, &mut bytes[got..]) {
            Ok(0) => return Err(nix::Error::EPIPE),
            Ok(n) => got += n,
            Err(nix::Error::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Pid::from_raw(i32::from_ne_bytes(bytes)))
}

/// A forked child's life: default signal handling, nothing blocked, sleep until killed.
fn sleep_forever() -> ! {
    let _ = reset_signals();
    loop {
        unistd::pause();
    }
}

/// Undoes what the service inherited: its blocked signals and Rust's ignored SIGPIPE.
fn reset_signals() -> nix::Result<()> {
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGPIPE] {
        // SAFETY: installing the default disposition has no handler code to be unsafe in.
        unsafe { signal::signal(sig, SigHandler::SigDfl) }?;
    }
    signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
}
