//! The one reaper: on SIGCHLD the actor calls `reap`, which collects every child that has
//! ended — services, exec probes, and orphans reparented to us as subreaper or PID 1.

use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::runtime::exit::Exit;

/// Every child that has ended since the last call, with how it ended.
pub(crate) fn reap() -> Vec<(Pid, Exit)> {
    let mut ended = Vec::new();
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => ended.push((pid, Exit::Code(code))),
            Ok(WaitStatus::Signaled(pid, sig, _)) => ended.push((pid, Exit::Signal(sig as i32))),
            Ok(WaitStatus::StillAlive) | Err(nix::Error::ECHILD) => return ended,
            Ok(_) => {} // stopped/continued: not an end
            Err(nix::Error::EINTR) => {}
            Err(_) => return ended,
        }
    }
}

/// Makes this process the reaper of its descendants' orphans (unless it is PID 1 already,
/// which is the reaper of everything).
pub(crate) fn become_subreaper() -> nix::Result<()> {
    if nix::unistd::getpid().as_raw() == 1 {
        return Ok(());
    }
    nix::sys::prctl::set_child_subreaper(true)
}
