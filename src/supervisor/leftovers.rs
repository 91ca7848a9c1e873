//! Pid files of running services in `<state_dir>/pids/`, so that a supervisor started after
//! the previous one was killed can end what it left running. Native services cannot be adopted
//! (they are not our children, so we could never wait for them); left running, they would hold
//! their ports and make every new start fail. A pid file holds the pid and the process's start
//! time, so a reused pid is never mistaken for a leftover.

use std::io;
use std::path::{Path, PathBuf};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn file(dir: &Path, service: &str) -> PathBuf {
    dir.join(format!("{service}.pid"))
}

/// Notes that `pid` runs `service`.
pub(crate) fn record(dir: &Path, service: &str, pid: Pid) -> io::Result<()> {
    let started = start_time(pid.as_raw()).unwrap_or(0);
    std::fs::write(file(dir, service), format!("{} {started}\n", pid.as_raw()))
}

/// Notes that `service` runs nothing.
pub(crate) fn forget(dir: &Path, service: &str) {
    let _ = std::fs::remove_file(file(dir, service));
}

/// Kills the process group of every recorded service process that is still the same process;
/// returns which ones were found.
pub(crate) fn kill_leftovers<'a>(
    dir: &Path,
    services: impl IntoIterator<Item = &'a str>,
) -> Vec<(String, i32)> {
    let mut killed = Vec::new();
    for service in services {
        let path = file(dir, service);
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        let mut fields = text.split_whitespace().map(str::parse::<u64>);
        if let (Some(Ok(pid)), Some(Ok(started))) = (fields.next(), fields.next()) {
            let pid = pid as i32;
            if pid > 1 && start_time(pid) == Some(started) {
                let _ = kill(Pid::from_raw(-pid), Signal::SIGKILL);
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                killed.push((service.to_owned(), pid));
            }
        }
        let _ = std::fs::remove_file(path);
    }
    killed
}

/// Start time of a process in clock ticks since boot (field 22 of /proc/PID/stat).
fn start_time(pid: i32) -> Option<u64> {
    crate::runtime::procfs::stat_field(&crate::runtime::procfs::stat(pid)?, 22)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_live_process_is_killed_and_a_reused_pid_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let pid = Pid::from_raw(child.id() as i32);
        record(dir.path(), "svc", pid).unwrap();
        // a record whose start time does not match (the pid was reused by someone else)
        std::fs::write(file(dir.path(), "other"), format!("{} 1\n", std::process::id())).unwrap();
        let killed = kill_leftovers(dir.path(), ["svc", "other", "missing"]);
        assert_eq!(killed, vec![("svc".to_owned(), pid.as_raw())]);
        assert!(child.wait().unwrap().code().is_none(), "killed by a signal");
        assert!(!file(dir.path(), "svc").exists() && !file(dir.path(), "other").exists());
    }
}
