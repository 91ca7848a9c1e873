//! The actor: the one owner of all service state. It waits on SIGCHLD, SIGTERM/SIGINT, its
//! message channel and the earliest timer any service needs — never on a polling tick — feeds
//! what happened to the state machine, and performs the actions it returns. What may start or
//! stop next is `order`'s to say; how a run starts and ends is `launch`'s.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use super::containers::tracker::Dockerd;
use super::events::{self, Event as Notice};
use super::fsm::{self, Action, Event, Operator, State, Verb};
use super::handle::Handle;
use super::handle::STOPPING;
use super::handle::{Act, Msg};
use super::order::{self, Nodes, Shutdown};
use super::reload::{ReloadError, Reloaded};
use super::service::Service;
use super::status::{Board, ServiceStatus, Summary};
use crate::config;
use crate::logs::pipeline::Pipeline;
use crate::runtime::cgroup::Cgroups;
use crate::runtime::reaper;

/// Who a child process belongs to.
#[derive(Clone, Copy, Debug)]
pub(super) enum Owner {
    Service {
        slot: usize,
        run: u64,
    },
    Probe {
        slot: usize,
        run: u64,
    },
    /// The new binary's `--version` before an upgrade.
    UpgradeCheck,
}

pub struct Supervisor {
    /// `[supervisor]` as this process started with it (a reload does not change it).
    pub(super) settings: config::Supervisor,
    pub(super) services: Vec<Service>,
    pub(super) owners: HashMap<Pid, Owner>,
    pub(super) tx: mpsc::UnboundedSender<Msg>,
    rx: Option<mpsc::UnboundedReceiver<Msg>>,
    events: events::Sender,
    pub(super) shutdown: Shutdown,
    pub(super) t0: Instant,
    /// When capped services are measured next.
    pub(super) memory_due: Instant,
    /// When every running service's memory is read next (for status and metrics).
    pub(super) sample_due: Instant,
    /// What systemd has been told, and when it is told more.
    pub(super) announce: super::announce::Announcer,
    /// This process's cgroups, where capped services get theirs.
    pub(super) cgroups: Result<Cgroups, String>,
    /// The log thread.
    pub(super) logs: Pipeline,
    pub(super) metrics: crate::metrics::Metrics,
    /// The file to re-read on reload.
    config_path: Option<std::path::PathBuf>,
    stop_order: Vec<String>,
    /// The status board readers see without asking the actor; rebuilt when `dirty`.
    board: tokio::sync::watch::Sender<Board>,
    /// Something `status` shows has changed since the board was last rebuilt.
    dirty: bool,
    /// The Docker daemon, once connected (only when some service is a container).
    pub(super) engine: Option<crate::runtime::docker::Engine>,
    /// A connection to dockerd is being made (retrying while it is away).
    pub(super) docker_connecting: bool,
    /// Why the project's containers are not ours to touch (another supervisor claims it).
    pub(super) docker_refused: Option<String>,
    /// The oneshots the switch being applied has run already (see `Service::migrated`).
    pub(super) migrated: Vec<String>,
    pub(super) dockerd: Dockerd,
    /// Stopping for an upgrade: containers keep running for the next process to adopt.
    pub(super) upgrading: bool,
    /// The binary an upgrade executes, and its check under way.
    pub(super) binary: Option<std::path::PathBuf>,
    pub(super) upgrade_check: Option<super::upgrade::Check>,
    /// Containers retired by start-first updates that are being stopped: a shutdown waits.
    pub(super) retired_ends: Vec<tokio::sync::oneshot::Receiver<()>>,
}

impl Supervisor {
    pub(super) fn from_parts(
        settings: config::Supervisor,
        cgroups: Result<Cgroups, String>,
        logs: Pipeline,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let (events, _) = tokio::sync::broadcast::channel(events::BACKLOG);
        let (board, _) = tokio::sync::watch::channel(Board::default());
        Supervisor {
            settings,
            services: Vec::new(),
            owners: HashMap::new(),
            tx,
            rx: Some(rx),
            events,
            shutdown: Shutdown::No,
            t0: Instant::now(),
            memory_due: Instant::now(),
            sample_due: Instant::now(),
            announce: super::announce::Announcer::new(),
            cgroups,
            logs,
            config_path: None,
            metrics: crate::metrics::Metrics::new(),
            stop_order: Vec::new(),
            board,
            dirty: true,
            engine: None,
            docker_connecting: false,
            docker_refused: None,
            migrated: Vec::new(),
            dockerd: Dockerd::default(),
            upgrading: false,
            binary: None,
            upgrade_check: None,
            retired_ends: Vec::new(),
        }
    }

    /// An upgrade executes `binary` (checked first).
    pub(crate) fn upgrade_to(&mut self, binary: Option<std::path::PathBuf>) {
        self.binary = binary;
    }

    /// `/metrics` shows the NATS link too.
    pub(crate) fn watch_nats(&mut self, stats: std::sync::Arc<crate::nats::Stats>) {
        self.metrics.watch_nats(stats);
    }

    /// Reloads re-read `path`.
    pub(crate) fn reload_from(&mut self, path: std::path::PathBuf) {
        self.config_path = Some(path);
    }

    /// A reload asked for (`why`: SIGHUP, a request with `reply`): the file is read, parsed and
    /// every definition built on the blocking pool, so a large or slow config never holds up
    /// supervision; the result comes back as `Msg::Loaded`.
    fn on_reload(&mut self, why: &'static str, reply: Option<Reply<Result<Reloaded, ReloadError>>>) {
        let Some(path) = self.config_path.clone() else { return answer(reply, Err(ReloadError::NoFile)) };
        if !self.is_stopping() {
            self.announce_reloading();
        }
        self.load(Some(path), why, reply);
    }

    /// Reads `path` (none: no services) in the background and applies it as a reload.
    fn load(
        &mut self,
        path: Option<std::path::PathBuf>,
        why: &'static str,
        reply: Option<Reply<Result<Reloaded, ReloadError>>>,
    ) {
        if self.is_stopping() {
            return answer(reply, Err(ReloadError::Stopping));
        }
        let (settings, tx) = (self.settings.clone(), self.tx.clone());
        tokio::spawn(async move {
            let loading =
                tokio::task::spawn_blocking(move || super::reload::load(path.as_deref(), &settings));
            let loaded = loading.await.unwrap_or_else(|e| Err(ReloadError::Crashed(e.to_string())));
            let _ = tx.send(Msg::Loaded { why, loaded: loaded.map(Box::new), reply });
        });
    }

    /// A reloaded config, checked in full: applied, or refused with nothing changed.
    fn on_loaded(
        &mut self,
        why: &str,
        loaded: Result<Box<super::reload::Loaded>, ReloadError>,
        reply: Option<Reply<Result<Reloaded, ReloadError>>>,
    ) {
        let result = match loaded {
            _ if self.is_stopping() => Err(ReloadError::Stopping),
            Ok(loaded) => Ok(self.reload(*loaded)),
            Err(e) => Err(e),
        };
        self.dirty = true;
        self.announce_loaded();
        match &result {
            Ok(r) => {
                tracing::info!(added = ?r.added, removed = ?r.removed, changed = ?r.changed, unchanged = r.unchanged, "{why}: reloaded")
            }
            Err(report) => tracing::warn!("{why}: reload refused, nothing changed:\n{report}"),
        }
        self.post_board();
        answer(reply, result);
    }

    /// A way in for other tasks (the board shows every service from boot on).
    pub fn handle(&self) -> Handle {
        Handle { tx: self.tx.clone(), events: self.events.clone(), board: self.board.subscribe() }
    }

    /// Runs until every service is at rest after a SIGTERM/SIGINT (or `Handle::shutdown`).
    pub async fn run(mut self) -> std::io::Result<Summary> {
        let mut sigchld = signal(SignalKind::child())?;
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut sigint = signal(SignalKind::interrupt())?;
        // SIGHUP's default would kill the daemon (a `systemctl reload`, a closed terminal)
        let mut sighup = signal(SignalKind::hangup())?;
        let mut sigusr2 = signal(SignalKind::user_defined2())?;
        let Some(mut rx) = self.rx.take() else { return Ok(self.summary()) };
        // children that ended before the handler was there (an upgrade's exec gap) say so now
        self.on_sigchld();
        self.start_ready();
        self.announce_start();
        while !self.finished() {
            self.post_board();
            let wake = tokio::time::Instant::from_std(self.next_wake());
            tokio::select! {
                biased;
                _ = sigchld.recv() => self.on_sigchld(),
                _ = sigterm.recv() => self.on_stop_signal("SIGTERM"),
                _ = sigint.recv() => self.on_stop_signal("SIGINT"),
                _ = sighup.recv() => self.on_reload("SIGHUP", None),
                _ = sigusr2.recv() => self.on_upgrade("SIGUSR2", None),
                Some(msg) = rx.recv() => self.on_msg(msg),
                () = tokio::time::sleep_until(wake) => self.on_timers(),
            }
        }
        drop(rx); // no more questions: whoever waits on `Handle::stopped` may go
        if self.upgrading {
            // native runs kept for the next image keep their cgroups and their pipes
            self.hand_over();
        } else {
            self.remove_cgroups();
            self.await_retired().await;
            self.release_claim().await;
        }
        // the services are gone: let their last lines reach the files (a container's log
        // stream only ends with it, and the next process takes it up where the file ends)
        self.logs.drain(if self.upgrading { Duration::from_millis(100) } else { Duration::from_secs(1) });
        Ok(self.summary())
    }

    pub(super) fn is_stopping(&self) -> bool {
        self.shutdown != Shutdown::No
    }

    fn finished(&self) -> bool {
        self.is_stopping() && (0..self.services.len()).all(|i| order::done_with(self, i))
    }

    /// The earliest moment any service needs the actor's attention.
    fn next_wake(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        let mut wake = far;
        for s in &self.services {
            let deadline = s.life.state.deadline().map(|(at, _)| at);
            let (probe, exec) = match &s.run {
                Some(r) => {
                    (r.probe.next.filter(|_| r.probe.in_flight.is_none()), r.probe.exec.map(|(_, at)| at))
                }
                None => (None, None),
            };
            for at in [deadline, probe, exec].into_iter().flatten() {
                wake = wake.min(at);
            }
        }
        let check = self.upgrade_check.as_ref().map(super::upgrade::Check::deadline);
        [self.memory_wake(), check, self.announce_wake()].into_iter().flatten().fold(wake, Instant::min)
    }

    fn on_timers(&mut self) {
        let now = Instant::now();
        for i in 0..self.services.len() {
            if let Some((at, event)) = self.services[i].life.state.deadline()
                && at <= now
            {
                self.apply(i, event);
            }
            self.probe_timers(i, now);
        }
        self.memory_tick(now);
        self.upgrade_timer(now);
        self.announce_tick(now);
    }

    fn on_msg(&mut self, msg: Msg) {
        match msg {
            Msg::Probe { slot, run, ok } => self.on_probe(slot, run, ok),
            Msg::Ready { slot, run } => self.on_ready(slot, run),
            Msg::Metrics(reply) => {
                let _ = reply.send(self.metrics.render(&self.status()));
            }
            Msg::Reload(reply) => self.on_reload("request", Some(reply)),
            Msg::Apply { path, migrated, reply } => {
                self.config_path.clone_from(&path);
                self.migrated = migrated;
                self.load(path, "switch", Some(reply));
            }
            Msg::ConfigPath(reply) => answer(Some(reply), self.config_path.clone()),
            Msg::Die => {
                let _ = nix::sys::signal::raise(Signal::SIGKILL);
            }
            Msg::Loaded { why, loaded, reply } => self.on_loaded(why, loaded, reply),
            Msg::Act { name, verb, reply } => {
                let act = self.on_act(&name, verb);
                self.post_board();
                let _ = reply.send(act);
            }
            Msg::Shutdown => self.on_stop_signal("request"),
            Msg::Upgrade(reply) => self.on_upgrade("request", Some(reply)),
            Msg::Docker(report) => self.on_docker(report),
        }
    }

    fn on_sigchld(&mut self) {
        for (pid, exit) in reaper::reap() {
            tracing::trace!(pid = pid.as_raw(), %exit, "reaped");
            match self.owners.remove(&pid) {
                Some(Owner::Service { slot, run }) if self.services[slot].is_current(run) => {
                    self.on_service_exit(slot, pid, exit)
                }
                Some(Owner::Probe { slot, run }) => self.on_exec_probe_exit(slot, run, exit),
                Some(Owner::UpgradeCheck) => self.on_upgrade_check(exit),
                Some(Owner::Service { .. }) => {}
                None => tracing::debug!(pid = pid.as_raw(), %exit, "reaped an orphan"),
            }
        }
    }

    fn on_stop_signal(&mut self, what: &str) {
        self.shutdown = match self.shutdown {
            Shutdown::No => {
                tracing::info!("{what}: stopping every service in reverse dependency order");
                Shutdown::Graceful
            }
            _ => {
                tracing::warn!("{what} again: killing every service without waiting");
                Shutdown::Fast
            }
        };
        if self.shutdown == Shutdown::Graceful {
            self.announce_stopping();
        }
        self.progress_shutdown();
    }

    /// Feeds `event` to service `i`'s state machine and performs the resulting actions; an
    /// action that fails (or succeeds at once) feeds its own event back in.
    pub(super) fn apply(&mut self, i: usize, event: Event) {
        let mut pending = Some(event);
        while let Some(event) = pending.take() {
            let now = Instant::now();
            let svc = &self.services[i];
            let Some((life, actions)) = fsm::next(&svc.life, &svc.def.spec, event, now) else { return };
            // the board changes only with a transition (a passing probe of a healthy service,
            // the common case, is none)
            self.dirty |= life != svc.life || !actions.is_empty();
            let from = std::mem::replace(&mut self.services[i].life, life);
            for action in actions {
                pending = self.perform(i, action).or(pending);
            }
            self.after_transition(i, &from, now);
        }
    }

    fn perform(&mut self, i: usize, action: Action) -> Option<Event> {
        match action {
            Action::Spawn => self.launch(i),
            Action::Term => {
                self.services[i].signal(self.services[i].def.config.stop_signal.0);
                None
            }
            Action::Kill => {
                self.services[i].signal(Signal::SIGKILL);
                self.kill_cgroup(i);
                None
            }
        }
    }

    /// Bookkeeping after a state change: the event, probes, dependents, reloads, shutdown.
    fn after_transition(&mut self, i: usize, from: &fsm::Lifecycle, now: Instant) {
        let to = &self.services[i].life.state;
        if from.state.kind() == to.kind() && from.restarts == self.services[i].life.restarts {
            return;
        }
        self.publish(i, from);
        self.schedule_probes(i, &from.state, now);
        self.end_retired_when_settled(i);
        if matches!(self.services[i].life.state, State::Failed { .. }) && !self.is_stopping() {
            let held: Vec<&str> =
                self.services[i].dependents.iter().map(|&d| self.services[d].name.as_str()).collect();
            if !held.is_empty() {
                tracing::warn!(service = %self.services[i].name, held = ?held, "failed: its dependents will not start until it is started again");
            }
        }
        let to = &self.services[i].life.state;
        if to.is_ready() != from.state.is_ready() || to.is_at_rest() {
            self.start_ready();
        }
        self.after_requeue(i);
        self.announce();
        if self.is_stopping() {
            if matches!(self.services[i].life.state, State::Stopped) {
                self.stop_order.push(self.services[i].name.clone());
            }
            self.progress_shutdown();
        }
    }

    fn publish(&mut self, i: usize, from: &fsm::Lifecycle) {
        let svc = &self.services[i];
        let life = &svc.life;
        let reason = match &life.state {
            State::Failed { reason } | State::Backoff { reason, .. } => Some(reason.clone()),
            State::Stopping { then: fsm::Then::Restart(r) | fsm::Then::Fail(r), .. } => Some(r.clone()),
            _ => None,
        };
        let exit = (life.last_exit != from.last_exit).then_some(life.last_exit).flatten();
        let notice = Notice {
            service: svc.name.clone(),
            from: from.state.kind(),
            to: life.state.kind(),
            reason: reason.as_ref().map(ToString::to_string),
            reason_kind: reason.as_ref().map(fsm::Reason::label),
            restarts: life.restarts,
            pid: svc.run.as_ref().and_then(|r| r.pid()).map(Pid::as_raw),
            exit: exit.map(|e| e.to_string()),
            at_ms: u64::try_from(self.t0.elapsed().as_millis()).unwrap_or(u64::MAX),
        };
        if life.restarts > from.restarts {
            self.metrics.restarted(&svc.name, restart_reason(&from.state));
        }
        if let Some(exit) = exit {
            self.metrics.exited(&svc.name, exit.as_code());
        }
        tracing::info!(service = %notice.service, from = %notice.from, to = %notice.to, reason = notice.reason.as_deref().unwrap_or(""), restarts = notice.restarts, "state");
        if self.events.receiver_count() > 0 {
            // whoever hears of the change and then asks for status sees it on the board
            self.post_board();
            let _ = self.events.send(notice);
        }
    }

    /// An operator's start, stop or restart, as the state machine's operator table takes it.
    fn on_act(&mut self, name: &str, verb: Verb) -> Act {
        let Some(i) = self.services.iter().position(|s| s.name == name && !s.retired()) else {
            return Act::Unknown;
        };
        if self.is_stopping() {
            return Act::Refused(STOPPING.into());
        }
        let spec = &self.services[i].def.spec;
        let pending =
            Act::Pending { limit: spec.startup_timeout + spec.stop_timeout + Duration::from_secs(5) };
        match fsm::operator(&self.services[i].life.state, verb) {
            Operator::Apply(event) => self.apply(i, event),
            Operator::StartWhenReady(event) => match order::may_start(self, i) {
                Ok(()) => self.apply(i, event),
                Err(why) => return Act::Refused(format!("{name} cannot start: {why}")),
            },
            Operator::Already => {}
            Operator::Refused(why) => return Act::Refused(format!("{name} {why}")),
        }
        match &self.services[i].life.state {
            State::Starting { .. } | State::Stopping { .. } | State::Backoff { .. } => pending,
            other => Act::Done(other.kind()),
        }
    }

    /// Starts every pending service whose dependencies are all ready.
    pub(super) fn start_ready(&mut self) {
        if self.is_stopping() {
            return;
        }
        for i in order::startable(self) {
            // an earlier start in this pass may have changed the picture
            if matches!(self.services[i].life.state, State::Pending) {
                self.apply(i, Event::Start);
            }
        }
    }

    /// Stops what can be stopped now, in reverse dependency order.
    pub(super) fn progress_shutdown(&mut self) {
        for (i, event) in order::shutdown_steps(self, self.shutdown) {
            self.apply(i, event);
        }
    }

    /// Rebuilds the status board if anything on it changed.
    pub(super) fn post_board(&mut self) {
        if std::mem::take(&mut self.dirty) {
            self.board.send_replace(Board::new(self.status()));
        }
    }

    pub(super) fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    fn status(&self) -> Vec<ServiceStatus> {
        let holds = order::holds(self);
        let dockerd = self.dockerd_state();
        (0..self.services.len())
            .filter(|&i| !self.services[i].retired())
            .map(|i| self.services[i].status(order::waiting_on(self, i, &holds), dockerd))
            .collect()
    }

    fn summary(&self) -> Summary {
        Summary {
            services: self.status(),
            stop_order: self.stop_order.clone(),
            ran_for: self.t0.elapsed(),
            upgrade: self.upgrading,
        }
    }
}

impl Nodes for Supervisor {
    fn count(&self) -> usize {
        self.services.len()
    }

    fn name(&self, i: usize) -> &str {
        &self.services[i].name
    }

    fn state(&self, i: usize) -> &State {
        &self.services[i].life.state
    }

    fn deps(&self, i: usize) -> &[usize] {
        &self.services[i].deps
    }

    fn dependents(&self, i: usize) -> &[usize] {
        &self.services[i].dependents
    }

    fn retired(&self, i: usize) -> bool {
        self.services[i].retired()
    }

    fn blocker(&self, i: usize) -> Option<String> {
        self.services[i].container()?.blocker(self.engine.is_some(), self.docker_refused.as_deref())
    }

    fn kept(&self, i: usize) -> bool {
        self.upgrading
            && (self.services[i].container().is_some() || super::handover::handed_over(&self.services[i]))
    }
}

type Reply<T> = tokio::sync::oneshot::Sender<T>;

/// Answers a question, if someone asked it.
fn answer<T>(reply: Option<Reply<T>>, value: T) {
    if let Some(reply) = reply {
        let _ = reply.send(value);
    }
}

/// Why a restart happened, from the state it left: a backoff or a stop that was for a
/// restart say so; a run that ended and started again at once was a crash.
fn restart_reason(from: &State) -> &'static str {
    match from {
        State::Backoff { reason, .. } | State::Stopping { then: fsm::Then::Restart(reason), .. } => {
            reason.label()
        }
        // a service at rest restarts by itself only when dockerd took its container down
        State::Exited { .. } | State::Failed { .. } => fsm::Reason::Dockerd.label(),
        _ => "crash",
    }
}
