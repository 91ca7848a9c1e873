//! Memory of services: the soft cap (`memory_restart`) — every `TICK` while a capped service
//! runs, the RSS of its whole process tree is summed; above the cap for `PERSIST`, it restarts
//! gracefully with reason `memory` (PM2 checks every 30 s; this answers within about a
//! second) — and every `SAMPLE` the same reading of every running service, for status and
//! metrics, in one pass over /proc.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::actor::Supervisor;
use super::fsm::Event;
use crate::runtime::procfs;

/// How often capped services are measured.
pub(crate) const TICK: Duration = Duration::from_millis(250);
/// How long RSS must stay above the cap before the restart.
pub(crate) const PERSIST: Duration = Duration::from_millis(700);
/// How often every running service is measured for status and metrics.
pub(crate) const SAMPLE: Duration = Duration::from_secs(5);
/// How long a run must have run before its periodic reading is shown.
const SETTLED: Duration = Duration::from_secs(1);

impl Supervisor {
    /// The process a service's memory is counted from: its own, or its container's main one
    /// (each leads a session of its own, which `tree_rss` sums).
    fn main_pid(&self, i: usize) -> Option<nix::unistd::Pid> {
        self.services[i].run.as_ref()?.main_pid()
    }

    /// Services with a soft cap and a live process.
    fn capped(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.services.len())
            .filter(|&i| self.services[i].def.config.memory_restart.is_some() && self.main_pid(i).is_some())
    }

    /// When the next measurement is due, if any service needs one.
    pub(super) fn memory_wake(&self) -> Option<Instant> {
        let sample = (0..self.services.len()).any(|i| self.main_pid(i).is_some()).then_some(self.sample_due);
        let capped = self.capped().next().map(|_| self.memory_due);
        sample.into_iter().chain(capped).min()
    }

    pub(super) fn memory_tick(&mut self, now: Instant) {
        let sampled = self.memory_sample(now);
        if now < self.memory_due {
            return;
        }
        self.memory_due = now + TICK;
        let capped: Vec<usize> = self.capped().collect();
        if capped.is_empty() {
            return;
        }
        // one pass over /proc when the periodic sample fell on this tick too
        let rss = sampled.unwrap_or_else(|| self.tree_rss(&capped));
        self.mark_dirty(); // new readings for the status board
        for i in capped {
            let svc = &mut self.services[i];
            let (Some(limit), Some(used), Some(run)) =
                (svc.def.config.memory_restart, rss.get(&i).copied(), svc.run.as_mut())
            else {
                continue;
            };
            run.memory.rss = Some(used);
            if used <= limit.bytes() {
                run.memory.high_since = None;
                continue;
            }
            let since = *run.memory.high_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= PERSIST {
                run.memory.high_since = None;
                let note = format!(
                    "RSS {} above memory_restart {limit}: restarting",
                    crate::config::units::Size(used)
                );
                self.logs.note(&svc.log, note);
                self.apply(i, Event::MemoryOver);
            }
        }
    }

    /// Every `SAMPLE`: the memory of every running service, for status and metrics.
    /// Returns the readings when it took them.
    fn memory_sample(&mut self, now: Instant) -> Option<HashMap<usize, u64>> {
        if now < self.sample_due {
            return None;
        }
        self.sample_due = now + SAMPLE;
        let running: Vec<usize> = (0..self.services.len()).filter(|&i| self.main_pid(i).is_some()).collect();
        let rss = if running.is_empty() { Default::default() } else { self.tree_rss(&running) };
        for (i, svc) in self.services.iter_mut().enumerate() {
            // a process caught in its exec shows a fraction of what it will hold a moment
            // later: a reading counts from its first second on
            let settled =
                svc.life.state.running_since().is_some_and(|t| now.saturating_duration_since(t) >= SETTLED);
            if let Some(run) = svc.run.as_mut().filter(|_| settled) {
                run.memory.rss = rss.get(&i).copied();
            }
        }
        self.mark_dirty();
        Some(rss)
    }

    /// RSS of each service's process tree: every process in the service's session (each
    /// service runs in its own, so double-forked children count too).
    fn tree_rss(&self, services: &[usize]) -> HashMap<usize, u64> {
        let by_session: HashMap<i32, usize> =
            services.iter().filter_map(|&i| self.main_pid(i).map(|p| (p.as_raw(), i))).collect();
        let mut rss = HashMap::new();
        let page = page_size();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return rss;
        };
        for entry in dir.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            let Some((session, pages)) = session_and_rss(pid) else {
                continue;
            };
            if let Some(&i) = by_session.get(&session) {
                *rss.entry(i).or_insert(0) += pages * page;
            }
        }
        rss
    }
}

/// Session id and resident pages from /proc/PID/stat (fields 6 and 24).
fn session_and_rss(pid: i32) -> Option<(i32, u64)> {
    let stat = procfs::stat(pid)?;
    Some((procfs::stat_field(&stat, 6)?.parse().ok()?, procfs::stat_field(&stat, 24)?.parse().ok()?))
}

fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok().flatten().map_or(4096, |p| p as u64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn our_own_stat_parses() {
        let me = std::process::id() as i32;
        let (session, pages) = super::session_and_rss(me).unwrap();
        assert_eq!(session, nix::unistd::getsid(None).unwrap().as_raw());
        assert!(pages > 0);
    }
}
