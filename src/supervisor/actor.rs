//! The actor: the one owner of all service state. It waits on SIGCHLD, SIGTERM/SIGINT, its
//! message channel and the earliest timer any service needs — never on a polling tick — feeds
//! what happened to the state machine, and performs the actions it returns.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot};

use super::events::{self, Event as Notice};
use super::fsm::{self, Action, Event, State};
use super::slot::Slot;
use super::status::{ServiceStatus, Summary};
use crate::config::Config;
use crate::control::proto::Verb;
use crate::logs::capture;
use crate::logs::pipeline::Pipeline;
use crate::runtime::cgroup::Cgroups;
use crate::runtime::{reaper, spawn};

/// Who a child process belongs to.
#[derive(Clone, Copy, Debug)]
pub(super) enum Owner {
    Service { slot: usize, run: u64 },
    Probe { slot: usize, run: u64 },
}

/// What reaches the actor besides signals and timers.
pub enum Msg {
    Probe {
        slot: usize,
        run: u64,
        ok: bool,
    },
    /// READY=1, or the `log` line was seen; `run` is unknown for notifications.
    Ready {
        slot: usize,
        run: Option<u64>,
    },
    /// The Prometheus exposition.
    Metrics(oneshot::Sender<String>),
    /// Re-read the config and apply the difference.
    Reload(oneshot::Sender<Result<super::reload::Reloaded, String>>),
    /// An operator's start, stop or restart of one service.
    Act {
        name: String,
        verb: Verb,
        reply: oneshot::Sender<Act>,
    },
    Shutdown,
    /// Stop the native services, leave containers running, and hand over to a new process
    /// (`titan-supervisor upgrade`, SIGUSR2).
    Upgrade,
    /// What Docker did for a container service.
    Docker(super::containers::Report),
}

/// How the actor took an operator's request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Act {
    Unknown,
    Refused(String),
    /// Nothing to wait for: the service is in this state.
    Done(String),
    /// Under way: its state changes tell the outcome, within `limit`.
    Pending {
        limit: Duration,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shutdown {
    No,
    Graceful,
    Fast,
}

pub struct Supervisor {
    pub(super) cfg: Config,
    pub(super) slots: Vec<Slot>,
    pub(super) owners: HashMap<Pid, Owner>,
    pub(super) tx: mpsc::UnboundedSender<Msg>,
    rx: Option<mpsc::UnboundedReceiver<Msg>>,
    events: events::Sender,
    shutdown: Shutdown,
    pub(super) t0: Instant,
    /// When capped services are measured next.
    pub(super) memory_due: Instant,
    /// When every running service's memory is read next (for status and metrics).
    pub(super) sample_due: Instant,
    /// Whether READY=1 has gone to systemd.
    announced: bool,
    /// This process's cgroups, where capped services get theirs.
    pub(super) cgroups: Result<Cgroups, String>,
    /// The log thread.
    pub(super) logs: Pipeline,
    pub(super) metrics: crate::metrics::Metrics,
    /// The file to re-read on reload.
    config_path: Option<std::path::PathBuf>,
    /// The control socket, served once `run` starts.
    control: Option<(std::os::unix::net::UnixListener, crate::control::server::Access)>,
    stop_order: Vec<String>,
    /// The status board readers see without asking the actor; rebuilt when `dirty`.
    board: tokio::sync::watch::Sender<Board>,
    /// Something `status` shows has changed since the board was last rebuilt.
    dirty: bool,
    /// The Docker daemon, once connected (only when some service is a container).
    pub(super) engine: Option<crate::runtime::docker::Engine>,
    /// Stopping for an upgrade: containers keep running for the next process to adopt.
    upgrading: bool,
    /// When the Docker events stream last broke, and when it was last back.
    pub(super) docker_lost_at: Option<Instant>,
    pub(super) docker_back_since: Option<Instant>,
}

/// Every service's status as of its last change; readers refresh the uptimes.
pub type Board = std::sync::Arc<Vec<ServiceStatus>>;

/// How many of the dependencies a pending service waits for its status names.
const NAMED: usize = 3;

/// What a request gets once the actor has stopped.
const STOPPING: &str = "the supervisor is stopping";

/// A way to talk to a running supervisor from other tasks (the demo, the control API).
#[derive(Clone)]
pub struct Handle {
    tx: mpsc::UnboundedSender<Msg>,
    events: events::Sender,
    board: tokio::sync::watch::Receiver<Board>,
}

impl Handle {
    /// Sends the actor a question and waits for its answer; `None` once it has stopped.
    async fn ask<T>(&self, question: impl FnOnce(oneshot::Sender<T>) -> Msg) -> Option<T> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(question(reply)).ok()?;
        rx.await.ok()
    }

    /// Every service's status, read from the board: a hundred readers never queue at the
    /// actor, and the answer is as fresh as the last state change (uptimes as of reading).
    pub fn status(&self) -> Board {
        self.board.borrow().clone()
    }

    pub async fn reload(&self) -> Result<super::reload::Reloaded, String> {
        self.ask(Msg::Reload).await.unwrap_or_else(|| Err(STOPPING.into()))
    }

    pub async fn metrics(&self) -> String {
        self.ask(Msg::Metrics).await.unwrap_or_default()
    }

    pub async fn act(&self, name: &str, verb: Verb) -> Act {
        let name = name.to_owned();
        self.ask(|reply| Msg::Act { name, verb, reply })
            .await
            .unwrap_or_else(|| Act::Refused(STOPPING.into()))
    }

    pub fn subscribe(&self) -> events::Receiver {
        self.events.subscribe()
    }

    pub fn shutdown(&self) {
        let _ = self.tx.send(Msg::Shutdown);
    }

    /// Starts an upgrade; false once the supervisor is stopping.
    pub fn upgrade(&self) -> bool {
        self.tx.send(Msg::Upgrade).is_ok()
    }
}

impl Supervisor {
    pub(super) fn from_parts(
        cfg: Config,
        slots: Vec<Slot>,
        cgroups: Result<Cgroups, String>,
        logs: Pipeline,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let (events, _) = tokio::sync::broadcast::channel(events::BACKLOG);
        let (board, _) = tokio::sync::watch::channel(Board::default());
        Supervisor {
            cfg,
            slots,
            owners: HashMap::new(),
            tx,
            rx: Some(rx),
            events,
            shutdown: Shutdown::No,
            t0: Instant::now(),
            memory_due: Instant::now(),
            sample_due: Instant::now(),
            announced: false,
            cgroups,
            logs,
            control: None,
            config_path: None,
            metrics: crate::metrics::Metrics::new(),
            stop_order: Vec::new(),
            board,
            dirty: true,
            engine: None,
            upgrading: false,
            docker_lost_at: None,
            docker_back_since: None,
        }
    }

    /// Serves the control API on `listener` (bound already) once `run` starts.
    pub fn listen(
        &mut self,
        listener: std::os::unix::net::UnixListener,
        access: crate::control::server::Access,
    ) {
        self.control = Some((listener, access));
    }

    /// Reloads re-read `path`.
    pub fn reload_from(&mut self, path: std::path::PathBuf) {
        self.config_path = Some(path);
    }

    fn on_reload(&mut self, why: &str) -> Result<super::reload::Reloaded, String> {
        let Some(path) = self.config_path.clone() else {
            return Err("this supervisor was not started from a config file".into());
        };
        if self.shutdown != Shutdown::No {
            return Err(STOPPING.into());
        }
        let result = self.reload(&path);
        self.dirty = true;
        match &result {
            Ok(r) => {
                tracing::info!(added = ?r.added, removed = ?r.removed, changed = ?r.changed, unchanged = r.unchanged, "{why}: reloaded {}", path.display())
            }
            Err(report) => tracing::warn!("{why}: reload refused, nothing changed:\n{report}"),
        }
        result
    }

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
        let Some(mut rx) = self.rx.take() else {
            return Ok(self.summary());
        };
        self.bind_notify_sockets()?;
        self.connect_docker();
        if let Some((listener, access)) = self.control.take() {
            crate::control::server::spawn_thread(listener, access, self.handle())?;
        }
        self.start_ready();
        while !self.finished() {
            self.post_board();
            let wake = tokio::time::Instant::from_std(self.next_wake());
            tokio::select! {
                biased;
                _ = sigchld.recv() => self.on_sigchld(),
                _ = sigterm.recv() => self.on_stop_signal("SIGTERM"),
                _ = sigint.recv() => self.on_stop_signal("SIGINT"),
                _ = sighup.recv() => drop(self.on_reload("SIGHUP")),
                _ = sigusr2.recv() => self.on_upgrade("SIGUSR2"),
                Some(msg) = rx.recv() => self.on_msg(msg),
                () = tokio::time::sleep_until(wake) => self.on_timers(),
            }
        }
        self.remove_cgroups();
        let _ = std::fs::remove_file(&self.cfg.supervisor.socket);
        // the services are gone: let their last lines reach the files (a container's log
        // stream only ends with it, and the next process takes it up where the file ends)
        self.logs.drain(if self.upgrading { Duration::from_millis(100) } else { Duration::from_secs(1) });
        Ok(self.summary())
    }

    pub(super) fn is_stopping(&self) -> bool {
        self.shutdown != Shutdown::No
    }

    fn finished(&self) -> bool {
        self.shutdown != Shutdown::No && (0..self.slots.len()).all(|i| self.done_with(i))
    }

    /// Whether service `i` needs nothing more before the supervisor exits: at rest, or a
    /// container left running for the process an upgrade hands over to.
    fn done_with(&self, i: usize) -> bool {
        self.slots[i].life.state.is_at_rest() || (self.upgrading && self.slots[i].container.is_some())
    }

    fn on_upgrade(&mut self, what: &str) {
        if self.shutdown != Shutdown::No {
            return tracing::warn!("{what}: upgrade ignored, the supervisor is stopping");
        }
        tracing::info!(
            "{what}: upgrading: stopping native services, leaving containers running for the new process"
        );
        crate::notify::send("RELOADING=1");
        self.upgrading = true;
        self.shutdown = Shutdown::Graceful;
        self.progress_shutdown();
    }

    /// The earliest moment any service needs the actor's attention.
    fn next_wake(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        let mut wake = far;
        for s in &self.slots {
            let deadline = s.life.state.deadline().map(|(at, _)| at);
            let probe = s.probe.next.filter(|_| !s.probe.in_flight);
            let exec_timeout = s.probe.exec.map(|(_, at)| at);
            for at in [deadline, probe, exec_timeout].into_iter().flatten() {
                wake = wake.min(at);
            }
        }
        self.memory_wake().map_or(wake, |m| wake.min(m))
    }

    fn on_timers(&mut self) {
        let now = Instant::now();
        for i in 0..self.slots.len() {
            if let Some((at, event)) = self.slots[i].life.state.deadline() {
                if at <= now {
                    self.apply(i, event);
                }
            }
            self.probe_timers(i, now);
        }
        self.memory_tick(now);
    }

    fn on_msg(&mut self, msg: Msg) {
        match msg {
            Msg::Probe { slot, run, ok } => self.on_probe(slot, run, ok),
            Msg::Ready { slot, run } => self.on_ready(slot, run),
            Msg::Metrics(reply) => {
                let _ = reply.send(self.metrics.render(&self.status()));
            }
            Msg::Reload(reply) => {
                let reloaded = self.on_reload("request");
                self.post_board();
                let _ = reply.send(reloaded);
            }
            Msg::Act { name, verb, reply } => {
                let act = self.on_act(&name, verb);
                self.post_board();
                let _ = reply.send(act);
            }
            Msg::Shutdown => self.on_stop_signal("request"),
            Msg::Upgrade => self.on_upgrade("request"),
            Msg::Docker(report) => self.on_docker(report),
        }
    }

    fn on_sigchld(&mut self) {
        for (pid, exit) in reaper::reap() {
            tracing::trace!(pid = pid.as_raw(), %exit, "reaped");
            match self.owners.remove(&pid) {
                Some(Owner::Service { slot, run }) if self.slots[slot].run == run => {
                    self.on_service_exit(slot, pid, exit)
                }
                Some(Owner::Probe { slot, run }) => self.on_exec_probe_exit(slot, run, exit),
                Some(Owner::Service { .. }) => {}
                None => tracing::debug!(pid = pid.as_raw(), %exit, "reaped an orphan"),
            }
        }
    }

    fn on_service_exit(&mut self, i: usize, pid: Pid, exit: fsm::Exit) {
        // Whatever the main process left behind (its process group, its cgroup) goes with it.
        let _ = kill(Pid::from_raw(-pid.as_raw()), Signal::SIGKILL);
        self.kill_cgroup(i);
        let oom = self.oom_since_spawn(i);
        super::leftovers::forget(&self.pid_dir(), &self.slots[i].name);
        let slot = &mut self.slots[i];
        slot.pid = None;
        slot.last_rss = None;
        self.logs.note(&slot.log, format!("pid {pid} ended: {exit}"));
        self.apply(i, Event::Exited { exit, oom });
    }

    fn on_stop_signal(&mut self, what: &str) {
        self.shutdown = match self.shutdown {
            Shutdown::No => {
                crate::notify::send("STOPPING=1");
                tracing::info!("{what}: stopping every service in reverse dependency order");
                Shutdown::Graceful
            }
            _ => {
                tracing::warn!("{what} again: killing every service without waiting");
                Shutdown::Fast
            }
        };
        self.progress_shutdown();
    }

    /// Feeds `event` to service `i`'s state machine and performs the resulting actions; an
    /// action that fails feeds its own event back in.
    pub(super) fn apply(&mut self, i: usize, event: Event) {
        let mut pending = Some(event);
        while let Some(event) = pending.take() {
            let now = Instant::now();
            let slot = &self.slots[i];
            let Some((life, actions)) = fsm::next(&slot.life, &slot.spec, event, now) else {
                return;
            };
            // the board changes only with a transition (a passing probe of a healthy service,
            // the common case, is none)
            self.dirty |= life != slot.life || !actions.is_empty();
            let from = std::mem::replace(&mut self.slots[i].life, life);
            for action in actions {
                pending = self.perform(i, action).or(pending);
            }
            self.after_transition(i, &from, now);
        }
    }

    fn perform(&mut self, i: usize, action: Action) -> Option<Event> {
        match action {
            Action::Spawn if self.slots[i].container.is_some() => {
                self.container_spawn(i).err().map(Event::SpawnFailed)
            }
            Action::Spawn => self.spawn(i).err().map(Event::SpawnFailed),
            Action::Term => {
                self.signal_group(i, self.slots[i].svc.stop_signal.0);
                None
            }
            Action::Kill => {
                self.signal_group(i, Signal::SIGKILL);
                self.kill_cgroup(i);
                None
            }
        }
    }

    fn pid_dir(&self) -> std::path::PathBuf {
        self.cfg.supervisor.state_dir.join("pids")
    }

    fn signal_group(&self, i: usize, sig: Signal) {
        if self.slots[i].container.is_some() {
            return self.container_signal(i, sig);
        }
        if let Some(pid) = self.slots[i].pid {
            let _ = kill(Pid::from_raw(-pid.as_raw()), sig);
        }
    }

    /// Starts a run of service `i`: pipes to its log, then fork/exec.
    fn spawn(&mut self, i: usize) -> Result<(), String> {
        let join = self.cgroup_join(i)?;
        let pipes = capture::pipes().map_err(|e| format!("cannot create pipes: {e}"))?;
        let slot = &mut self.slots[i];
        slot.run += 1;
        let watch = self.log_watch(i);
        let slot = &self.slots[i];
        self.logs.capture(pipes.out_read, pipes.err_read, slot.log.clone(), watch);
        let (argv, env) = (slot.argv(), slot.environment());
        let cmd = spawn::Command {
            argv: &argv,
            env: &env,
            cwd: slot.cwd(),
            credentials: slot.credentials.as_ref(),
            cgroup_join: &join,
            stdout: Some(pipes.out_write),
            stderr: Some(pipes.err_write),
        };
        let started = Instant::now();
        let pid = spawn::spawn(cmd).map_err(|e| e.to_string())?;
        tracing::debug!(service = %slot.name, pid = pid.as_raw(), took_us = started.elapsed().as_micros() as u64, "spawned");
        let run = slot.run;
        self.owners.insert(pid, Owner::Service { slot: i, run });
        self.slots[i].pid = Some(pid);
        if let Err(e) = super::leftovers::record(&self.pid_dir(), &self.slots[i].name, pid) {
            tracing::warn!(service = %self.slots[i].name, "cannot write its pid file: {e}");
        }
        self.note_spawned(i);
        Ok(())
    }

    /// Bookkeeping after a state change: the event, probes, dependents, shutdown.
    fn after_transition(&mut self, i: usize, from: &fsm::Lifecycle, now: Instant) {
        let to = &self.slots[i].life.state;
        if from.state.name() == to.name() && from.restarts == self.slots[i].life.restarts {
            return;
        }
        self.publish(i, from);
        self.schedule_probes(i, &from.state, now);
        if matches!(self.slots[i].life.state, State::Failed { .. }) && self.shutdown == Shutdown::No {
            let held: Vec<&str> =
                self.slots[i].dependents.iter().map(|&d| self.slots[d].name.as_str()).collect();
            if !held.is_empty() {
                tracing::warn!(service = %self.slots[i].name, held = ?held, "failed: its dependents will not start until it is started again");
            }
        }
        let to = &self.slots[i].life.state;
        if to.is_ready() != from.state.is_ready() || to.is_at_rest() {
            self.start_ready();
        }
        self.after_requeue(i);
        self.announce_when_settled();
        if self.shutdown != Shutdown::No {
            if matches!(self.slots[i].life.state, State::Stopped) {
                self.stop_order.push(self.slots[i].name.clone());
            }
            self.progress_shutdown();
        }
    }

    fn publish(&mut self, i: usize, from: &fsm::Lifecycle) {
        let slot = &self.slots[i];
        let reason = match &slot.life.state {
            State::Failed { reason } | State::Backoff { reason, .. } => Some(reason.clone()),
            State::Stopping { then: fsm::Then::Restart(r) | fsm::Then::Fail(r), .. } => Some(r.clone()),
            _ => None,
        };
        let exit = (slot.life.last_exit != from.last_exit)
            .then(|| slot.life.last_exit.map(|e| e.to_string()))
            .flatten();
        let notice = Notice {
            service: slot.name.clone(),
            from: from.state.name(),
            to: slot.life.state.name(),
            reason: reason.as_ref().map(ToString::to_string),
            reason_kind: reason.as_ref().map(fsm::Reason::label),
            restarts: slot.life.restarts,
            pid: slot.pid.map(Pid::as_raw),
            exit,
            at_ms: self.t0.elapsed().as_millis() as u64,
        };
        if slot.life.restarts > from.restarts {
            self.metrics.restarted(&slot.name, restart_reason(&from.state));
        }
        if let (Some(exit), true) = (slot.life.last_exit, slot.life.last_exit != from.last_exit) {
            self.metrics.exited(
                &slot.name,
                match exit {
                    fsm::Exit::Code(c) => i64::from(c),
                    fsm::Exit::Signal(s) => 128 + i64::from(s),
                },
            );
        }
        tracing::info!(service = %notice.service, from = notice.from, to = notice.to, reason = notice.reason.as_deref().unwrap_or(""), restarts = notice.restarts, "state");
        if self.events.receiver_count() > 0 {
            // whoever hears of the change and then asks for status sees it on the board
            self.post_board();
            let _ = self.events.send(notice);
        }
    }

    /// An operator's start, stop or restart. A stop holds the service stopped until a start.
    fn on_act(&mut self, name: &str, verb: Verb) -> Act {
        let Some(i) = self.slots.iter().position(|s| s.name == name) else { return Act::Unknown };
        if self.shutdown != Shutdown::No {
            return Act::Refused(STOPPING.into());
        }
        let spec = &self.slots[i].spec;
        let pending =
            Act::Pending { limit: spec.startup_timeout + spec.stop_timeout + Duration::from_secs(5) };
        let state = &self.slots[i].life.state;
        let running = state.running_since().is_some();
        let event = match verb {
            Verb::Stop => match state {
                State::Stopped => None,
                State::Stopping { .. } => return pending,
                _ => Some(Event::Stop),
            },
            _ if matches!(state, State::Stopping { .. }) => {
                return Act::Refused(format!("{name} is stopping; start it once it has stopped"));
            }
            Verb::Start if running => None,
            Verb::Restart if running => Some(Event::Restart),
            Verb::Start | Verb::Restart => {
                let deps_ready = self.slots[i].deps.iter().all(|&d| self.slots[d].life.state.is_ready());
                if !deps_ready {
                    let why = self.waiting_on(i, &self.holds()).unwrap_or_default();
                    return Act::Refused(format!("{name} cannot start: {why}"));
                }
                Some(Event::Start)
            }
        };
        if let Some(event) = event {
            self.apply(i, event);
        }
        match &self.slots[i].life.state {
            State::Starting { .. } | State::Stopping { .. } | State::Backoff { .. } => pending,
            other => Act::Done(other.name().to_owned()),
        }
    }

    /// READY=1 to systemd once no service is on its way up any more (each is ready, or has
    /// failed, or is held behind one that has).
    fn announce_when_settled(&mut self) {
        if self.announced || self.shutdown != Shutdown::No {
            return;
        }
        let moving =
            |s: &super::slot::Slot| matches!(s.life.state, State::Starting { .. } | State::Backoff { .. });
        if self.slots.iter().any(moving) {
            return; // the common case while services come up: no need to work out holds
        }
        let holds = self.holds();
        let waiting = |i: usize| matches!(self.slots[i].life.state, State::Pending) && holds[i].is_none();
        if (0..self.slots.len()).any(waiting) {
            return;
        }
        self.announced = true;
        let up = self.slots.iter().filter(|s| s.life.state.is_ready()).count();
        tracing::info!(ready = up, services = self.slots.len(), "all services settled");
        crate::notify::send(&format!("READY=1\nSTATUS={up} of {} services ready", self.slots.len()));
    }

    /// Starts every pending service whose dependencies are all ready.
    pub(super) fn start_ready(&mut self) {
        if self.shutdown != Shutdown::No {
            return;
        }
        for i in 0..self.slots.len() {
            let slot = &self.slots[i];
            let deps_ready = slot.deps.iter().all(|&d| self.slots[d].life.state.is_ready());
            if matches!(slot.life.state, State::Pending)
                && deps_ready
                && self.container_blocker(slot).is_none()
            {
                self.apply(i, Event::Start);
            }
        }
    }

    /// Stops what can be stopped now: services with no process at once, running ones when
    /// every dependent is at rest (reverse dependency order); kills everything on `Fast`.
    fn progress_shutdown(&mut self) {
        for i in 0..self.slots.len() {
            let state = &self.slots[i].life.state;
            if self.upgrading && self.slots[i].container.is_some() {
                continue;
            }
            let dependents_at_rest = self.slots[i].dependents.iter().all(|&d| self.done_with(d));
            let event = match state {
                State::Pending | State::Backoff { .. } => Some(Event::Stop),
                State::Stopping { kill_at: Some(_), .. } if self.shutdown == Shutdown::Fast => {
                    Some(Event::Kill)
                }
                State::Starting { .. } | State::Healthy { .. } | State::Unhealthy { .. }
                    if self.shutdown == Shutdown::Fast =>
                {
                    Some(Event::Kill)
                }
                State::Starting { .. } | State::Healthy { .. } | State::Unhealthy { .. }
                    if dependents_at_rest =>
                {
                    Some(Event::Stop)
                }
                _ => None,
            };
            if let Some(event) = event {
                self.apply(i, event);
            }
        }
    }

    /// Rebuilds the status board if anything on it changed.
    fn post_board(&mut self) {
        if std::mem::take(&mut self.dirty) {
            self.board.send_replace(Board::new(self.status()));
        }
    }

    pub(super) fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    fn status(&self) -> Vec<ServiceStatus> {
        let holds = self.holds();
        (0..self.slots.len())
            .filter(|&i| !self.slots[i].retired)
            .map(|i| ServiceStatus::of(&self.slots[i], self.waiting_on(i, &holds)))
            .collect()
    }

    /// Why pending service `i` has not started: a failed or stopped dependency holding it
    /// (`holds`), else the dependencies it still waits for (the first few named).
    fn waiting_on(&self, i: usize, holds: &[Option<usize>]) -> Option<String> {
        let s = &self.slots[i];
        if let Some(dep) = holds[i].map(|d| &self.slots[d]) {
            return Some(format!("held: dependency {} is {}", dep.name, dep.life.state.name()));
        }
        let mut waiting = s.deps.iter().map(|&d| &self.slots[d]).filter(|d| !d.life.state.is_ready());
        let named: Vec<&str> = waiting.by_ref().take(NAMED).map(|d| d.name.as_str()).collect();
        if named.is_empty() {
            return self.container_blocker(s);
        }
        let more = waiting.count();
        let tail = if more > 0 { format!(" and {more} more") } else { String::new() };
        Some(format!("waiting for {}{tail}", named.join(", ")))
    }

    /// For every service, the failed or stopped dependency — direct, or further down through
    /// pending ones — that keeps it from starting. One pass with memory: dense tiers would
    /// make a plain recursion exponential.
    fn holds(&self) -> Vec<Option<usize>> {
        let mut memo = vec![None; self.slots.len()];
        for i in 0..self.slots.len() {
            self.hold_of(i, &mut memo);
        }
        memo.into_iter().map(Option::flatten).collect()
    }

    fn hold_of(&self, i: usize, memo: &mut [Option<Option<usize>>]) -> Option<usize> {
        if let Some(known) = memo[i] {
            return known;
        }
        let mut hold = None;
        for &d in &self.slots[i].deps {
            hold = match self.slots[d].life.state {
                State::Failed { .. } | State::Stopped => Some(d),
                State::Pending => self.hold_of(d, memo),
                _ => None,
            };
            if hold.is_some() {
                break;
            }
        }
        memo[i] = Some(hold);
        hold
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

/// Why a restart happened, from the state it left: a backoff or a stop that was for a
/// restart say so; a run that ended and started again at once was a crash.
fn restart_reason(from: &State) -> &'static str {
    match from {
        State::Backoff { reason, .. } | State::Stopping { then: fsm::Then::Restart(reason), .. } => {
            reason.label()
        }
        _ => "crash",
    }
}
