//! What an earlier supervisor left running. Every native run is recorded in
//! `<state_dir>/pids/<service>.pid` (its main pid and start time); a supervisor started after
//! the previous one was killed ends them, for services still in the config and removed ones
//! alike. Native services cannot be adopted (they are not our children, so we could never wait
//! for them); left running, they would hold their ports beside the new instance.
//!
//! A run is its whole session, not only its main process: each service leads a session of its
//! own, and the session's id outlives the leader (the kernel does not give that number to a new
//! process while any member lives), so children and orphans of a main process that died while
//! no supervisor ran are found by it. Members that started before the recorded leader cannot be
//! its own, and the supervisor's own session is never touched.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::runtime::procfs;

fn file(dir: &Path, service: &str) -> PathBuf {
    dir.join(format!("{service}.pid"))
}

/// Notes that `pid` runs `service`.
pub(crate) fn record(dir: &Path, service: &str, pid: Pid) -> io::Result<()> {
    use std::io::Write;
    let started = procfs::start_time(pid.as_raw()).unwrap_or(0);
    // a new file, never through a link planted in its place
    crate::runtime::files::create_new(&file(dir, service), 0o640)?
        .write_all(format!("{} {started}\n", pid.as_raw()).as_bytes())
}

/// Notes that `service` runs nothing.
pub(crate) fn forget(dir: &Path, service: &str) {
    let _ = std::fs::remove_file(file(dir, service));
}

/// A run an earlier supervisor recorded.
struct Recorded {
    service: String,
    /// The leader's start time, clock ticks since boot.
    started: u64,
}

/// How long the processes killed may take to be gone (a process holding gigabytes unmaps
/// them before its sockets close).
const GONE_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// SIGKILLs every process of every run recorded in `dir`, but the sessions in `spare` (runs an
/// upgrade handed over), and removes the records; returns how many processes of which service
/// were found, once they are gone: a signal sent is not a port freed, and the new run of the
/// service would find its port still taken.
pub(crate) fn kill_leftovers(dir: &Path, spare: &[i32]) -> Vec<(String, usize)> {
    let mut runs = recorded(dir);
    runs.retain(|session, _| !spare.contains(session));
    if runs.is_empty() {
        return Vec::new();
    }
    let own_session = nix::unistd::getsid(None).map_or(0, Pid::as_raw);
    let mut killed: HashMap<&str, usize> = HashMap::new();
    let mut dying = Vec::new();
    for (pid, session, started) in processes() {
        let Some(run) = runs.get(&session) else { continue };
        if session == own_session || pid == std::process::id() as i32 || started < run.started {
            continue;
        }
        if kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
            *killed.entry(run.service.as_str()).or_default() += 1;
            dying.push((pid, started));
        }
    }
    wait_gone(dying, GONE_WITHIN);
    let mut found: Vec<(String, usize)> = killed.into_iter().map(|(s, n)| (s.to_owned(), n)).collect();
    found.sort();
    found
}

/// Waits until each process (pid, start time) has exited — gone, or a zombie with no thread
/// left, its files closed — or `within` has passed, saying which are still there then.
fn wait_gone(mut dying: Vec<(i32, u64)>, within: std::time::Duration) {
    let deadline = std::time::Instant::now() + within;
    let mut pause = std::time::Duration::from_millis(1);
    loop {
        dying.retain(|&(pid, started)| running(pid, started));
        if dying.is_empty() {
            return;
        }
        if std::time::Instant::now() >= deadline {
            let pids: Vec<i32> = dying.iter().map(|p| p.0).collect();
            tracing::warn!(?pids, "processes left by an earlier supervisor are still exiting");
            return;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(std::time::Duration::from_millis(50));
    }
}

/// Whether the process `pid` that started at `started` still runs. Its main thread turns
/// zombie as soon as it exits itself, while the other threads (which share its sockets) may
/// still be tearing down: only a zombie whose other threads are gone has let go of them.
fn running(pid: i32, started: u64) -> bool {
    let Some(stat) = procfs::stat(pid) else { return false };
    if procfs::stat_field(&stat, 22).and_then(|s| s.parse().ok()) != Some(started) {
        return false;
    }
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, Iterator::count);
    procfs::stat_field(&stat, 3) != Some("Z") || threads > 1
}

/// The runs recorded in `dir`, by session (the leader's pid); the records are removed.
fn recorded(dir: &Path) -> HashMap<i32, Recorded> {
    let mut runs = HashMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return runs };
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(service) =
            path.file_name().and_then(|n| n.to_str()?.strip_suffix(".pid")).map(str::to_owned)
        else {
            continue;
        };
        let mut text = String::new();
        if let Ok(f) = crate::runtime::files::open_read(&path) {
            let _ = std::io::Read::read_to_string(&mut std::io::Read::take(f, 64), &mut text);
        }
        let mut fields = text.split_whitespace().map(str::parse::<u64>);
        if let (Some(Ok(pid)), Some(Ok(started))) = (fields.next(), fields.next())
            && let Ok(pid) = i32::try_from(pid)
            && pid > 1
        {
            runs.insert(pid, Recorded { service, started });
        }
        let _ = std::fs::remove_file(&path);
    }
    runs
}

/// Every process as (pid, session, start time), from /proc.
fn processes() -> Vec<(i32, i32, u64)> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = procfs::stat(pid)?;
            let session = procfs::stat_field(&stat, 6)?.parse().ok()?;
            let started = procfs::stat_field(&stat, 22)?.parse().ok()?;
            Some((pid, session, started))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;

    use super::*;

    #[test]
    fn a_recorded_session_is_killed_whole_and_a_reused_pid_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        // a service's session: a shell leading it, with a child of its own
        let mut leader = std::process::Command::new("sh");
        leader.args(["-c", "sleep 30 & exec sleep 30"]);
        // SAFETY: setsid is async-signal-safe, the only call between fork and exec
        unsafe { leader.pre_exec(|| nix::unistd::setsid().map(drop).map_err(io::Error::from)) };
        let mut child = leader.spawn().unwrap();
        let pid = Pid::from_raw(child.id() as i32);
        record(dir.path(), "svc", pid).unwrap();
        // a record whose start time does not match: the number belongs to someone else now
        std::fs::write(file(dir.path(), "other"), format!("{} 99999999999\n", std::process::id())).unwrap();
        let members = || processes().into_iter().filter(|p| p.1 == pid.as_raw()).count();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while members() < 2 && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert_eq!(members(), 2, "the shell and its background sleep");
        let killed = kill_leftovers(dir.path(), &[]);
        assert_eq!(killed, vec![("svc".to_owned(), 2)]);
        assert!(child.wait().unwrap().code().is_none(), "killed by a signal");
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "every record removed");
    }
}
