//! What the actor tells the service manager that started it (systemd, through `crate::notify`):
//! READY=1 once the initial bring-up has settled, a STATUS kept current ("16/16 healthy,
//! release X"), EXTEND_TIMEOUT_USEC while a long bring-up still makes progress, RELOADING=1
//! then READY=1 around a reload, STOPPING=1, and WATCHDOG=1 from the actor's own timers, so a
//! wedged actor stops pinging. Debug builds have a hook that wedges the actor to prove it.

use std::time::{Duration, Instant};

use super::actor::Supervisor;
use super::fsm::State;
use super::order;
use crate::notify;

/// How often a bring-up still under way extends systemd's start timeout ...
const EXTEND_EVERY: Duration = Duration::from_secs(5);
/// ... and by how much: a little more than the interval, so one late turn does not time out.
const EXTEND_BY: Duration = Duration::from_secs(8);

/// The actor's side of the conversation with systemd.
pub(super) struct Announcer {
    /// READY=1 has gone for the initial bring-up.
    ready: bool,
    /// The release `current` points to, as STATUS names it: read at start and after each
    /// reload or switch applied (a switch moves `current` before it applies).
    release: Option<String>,
    /// Half of `$WATCHDOG_USEC`, and when the next ping is due.
    watchdog: Option<(Duration, Instant)>,
    /// When the start timeout is extended next, while the bring-up goes on.
    extend_due: Instant,
    /// Whether the bring-up made progress since the last extension: more services healthy
    /// than ever before.
    progressed: bool,
    most_healthy: usize,
    /// Reloads announced with RELOADING=1 and not yet answered with READY=1.
    reloading: u32,
    /// Debug builds: when the actor wedges itself (`TITAN_SUPERVISOR_FAULT=wedge-actor-after:<d>`).
    wedge: Option<Instant>,
}

impl Announcer {
    pub(super) fn new() -> Self {
        let now = Instant::now();
        Announcer {
            ready: false,
            release: None,
            watchdog: notify::watchdog_interval().map(|every| (every, now)),
            extend_due: now + EXTEND_EVERY,
            progressed: false,
            most_healthy: 0,
            reloading: 0,
            wedge: wedge_after().map(|after| now + after),
        }
    }
}

impl Supervisor {
    /// The actor's loop begins: the release is read and the first watchdog ping goes now.
    pub(super) fn announce_start(&mut self) {
        self.refresh_release();
        if let Some((_, due)) = self.announce.watchdog.as_mut() {
            *due = Instant::now();
        }
        self.announce();
    }

    /// After a state change: STATUS, progress of the bring-up, and READY=1 once no service is
    /// on its way up any more.
    pub(super) fn announce(&mut self) {
        let (healthy, total) = self.healthy_count();
        let release = self.announce.release.as_deref().map(|r| format!(", release {r}")).unwrap_or_default();
        let services = match self.is_stopping() {
            true => format!("stopping: {} of {total} still running", self.running_count()),
            false => format!("{healthy}/{total} healthy{release}"),
        };
        notify::services_status(services);
        if self.announce.ready || self.is_stopping() {
            return;
        }
        if healthy > self.announce.most_healthy {
            self.announce.most_healthy = healthy;
            self.announce.progressed = true;
        }
        if !order::settled(self) {
            return;
        }
        self.announce.ready = true;
        tracing::info!(ready = healthy, services = total, "all services settled");
        notify::ready();
    }

    /// A reload begins (SIGHUP or a request).
    pub(super) fn announce_reloading(&mut self) {
        self.announce.reloading += 1;
        notify::reloading();
    }

    /// A config was applied or refused: the release may have moved; a reload is over.
    pub(super) fn announce_loaded(&mut self) {
        self.refresh_release();
        self.announce();
        if self.announce.reloading > 0 && !self.is_stopping() {
            self.announce.reloading -= 1;
            notify::ready();
        }
    }

    /// A stop begins.
    pub(super) fn announce_stopping(&mut self) {
        notify::stopping();
        self.announce();
    }

    /// When the actor must wake for systemd: the next watchdog ping, the next extension of a
    /// bring-up under way, the wedge of the test hook.
    pub(super) fn announce_wake(&self) -> Option<Instant> {
        let a = &self.announce;
        let extend = (!a.ready && !self.is_stopping()).then_some(a.extend_due);
        [a.watchdog.map(|(_, due)| due), extend, a.wedge].into_iter().flatten().min()
    }

    /// Runs with the actor's other timers: pings, extensions, the wedge.
    pub(super) fn announce_tick(&mut self, now: Instant) {
        if let Some((every, due)) = self.announce.watchdog.as_mut()
            && *due <= now
        {
            *due = now + *every;
            notify::watchdog();
        }
        if !self.announce.ready && !self.is_stopping() && self.announce.extend_due <= now {
            self.announce.extend_due = now + EXTEND_EVERY;
            // a service's first start counts as progress, a crash loop's retries do not:
            // systemd's own start timeout then bounds a bring-up that goes round in circles
            let first_start = self.services.iter().any(|s| {
                !s.retired() && s.life.restarts == 0 && matches!(s.life.state, State::Starting { .. })
            });
            if std::mem::take(&mut self.announce.progressed) || first_start {
                notify::extend_timeout(EXTEND_BY);
            }
        }
        if self.announce.wedge.is_some_and(|at| at <= now) {
            wedge();
        }
    }

    fn refresh_release(&mut self) {
        let layout = crate::deploy::state::Layout::of(&self.settings);
        self.announce.release = layout.current_release().ok().flatten();
    }

    /// (services healthy — a oneshot that exited 0 counts —, services).
    fn healthy_count(&self) -> (usize, usize) {
        let live = self.services.iter().filter(|s| !s.retired());
        let healthy = live
            .clone()
            .filter(|s| matches!(s.life.state, State::Healthy { .. } | State::Exited { code: 0 }))
            .count();
        (healthy, live.count())
    }

    fn running_count(&self) -> usize {
        self.services.iter().filter(|s| !s.retired() && !s.life.state.is_at_rest()).count()
    }
}

/// `TITAN_SUPERVISOR_FAULT=wedge-actor-after:<duration>` (debug builds only).
fn wedge_after() -> Option<Duration> {
    #[cfg(debug_assertions)]
    {
        let fault = std::env::var("TITAN_SUPERVISOR_FAULT").ok()?;
        humantime::parse_duration(fault.strip_prefix("wedge-actor-after:")?).ok()
    }
    #[cfg(not(debug_assertions))]
    None
}

/// Blocks the actor's thread for good: no signal, message or timer is handled any more, so
/// the watchdog pings stop (the test of that).
fn wedge() -> ! {
    tracing::warn!("fault injection: wedging the actor");
    loop {
        std::thread::park();
    }
}
