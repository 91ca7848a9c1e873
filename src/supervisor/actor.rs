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
use crate::logs::capture;
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
    Status(oneshot::Sender<Vec<ServiceStatus>>),
    Shutdown,
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
    stop_order: Vec<String>,
}

/// A way to talk to a running supervisor from other tasks (the demo, the control API).
#[derive(Clone)]
pub struct Handle {
    tx: mpsc::UnboundedSender<Msg>,
    events: events::Sender,
}

impl Handle {
    pub async fn status(&self) -> Vec<ServiceStatus> {
        let (reply, rx) = oneshot::channel();
        let _ = self.tx.send(Msg::Status(reply));
        rx.await.unwrap_or_default()
    }

    pub fn subscribe(&self) -> events::Receiver {
        self.events.subscribe()
    }

    pub fn shutdown(&self) {
        let _ = self.tx.send(Msg::Shutdown);
    }
}

impl Supervisor {
    pub(super) fn from_parts(cfg: Config, slots: Vec<Slot>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let (events, _) = tokio::sync::broadcast::channel(events::BACKLOG);
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
            stop_order: Vec::new(),
        }
    }

    pub fn handle(&self) -> Handle {
        Handle {
            tx: self.tx.clone(),
            events: self.events.clone(),
        }
    }

    /// Runs until every service is at rest after a SIGTERM/SIGINT (or `Handle::shutdown`).
    pub async fn run(mut self) -> std::io::Result<Summary> {
        let mut sigchld = signal(SignalKind::child())?;
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut sigint = signal(SignalKind::interrupt())?;
        let Some(mut rx) = self.rx.take() else {
            return Ok(self.summary());
        };
        self.bind_notify_sockets()?;
        self.start_ready();
        while !self.finished() {
            let wake = tokio::time::Instant::from_std(self.next_wake());
            tokio::select! {
                biased;
                _ = sigchld.recv() => self.on_sigchld(),
                _ = sigterm.recv() => self.on_stop_signal("SIGTERM"),
                _ = sigint.recv() => self.on_stop_signal("SIGINT"),
                Some(msg) = rx.recv() => self.on_msg(msg),
                () = tokio::time::sleep_until(wake) => self.on_timers(),
            }
        }
        self.remove_cgroups();
        Ok(self.summary())
    }

    fn finished(&self) -> bool {
        self.shutdown != Shutdown::No && self.slots.iter().all(|s| s.life.state.is_at_rest())
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
            Msg::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Msg::Shutdown => self.on_stop_signal("request"),
        }
    }

    fn on_sigchld(&mut self) {
        for (pid, exit) in reaper::reap() {
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
        let slot = &mut self.slots[i];
        slot.pid = None;
        slot.last_rss = None;
        slot.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .note(&format!("pid {pid} ended: {exit}"));
        self.apply(i, Event::Exited { exit, oom });
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
            let from = std::mem::replace(&mut self.slots[i].life, life);
            for action in actions {
                pending = self.perform(i, action).or(pending);
            }
            self.after_transition(i, &from, now);
        }
    }

    fn perform(&mut self, i: usize, action: Action) -> Option<Event> {
        match action {
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

    fn signal_group(&self, i: usize, sig: Signal) {
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
        capture::capture(pipes.out_read, pipes.err_read, slot.log.clone(), watch)
            .map_err(|e| format!("cannot read pipes: {e}"))?;
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
        let pid = spawn::spawn(cmd).map_err(|e| e.to_string())?;
        let run = slot.run;
        self.owners.insert(pid, Owner::Service { slot: i, run });
        self.slots[i].pid = Some(pid);
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
        let to = &self.slots[i].life.state;
        if to.is_ready() != from.state.is_ready() || to.is_at_rest() {
            self.start_ready();
        }
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
            State::Stopping {
                then: fsm::Then::Restart(r) | fsm::Then::Fail(r),
                ..
            } => Some(r.clone()),
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
        tracing::info!(service = %notice.service, from = notice.from, to = notice.to, reason = notice.reason.as_deref().unwrap_or(""), restarts = notice.restarts, "state");
        let _ = self.events.send(notice);
    }

    /// Starts every pending service whose dependencies are all ready.
    fn start_ready(&mut self) {
        if self.shutdown != Shutdown::No {
            return;
        }
        for i in 0..self.slots.len() {
            let slot = &self.slots[i];
            let deps_ready = slot
                .deps
                .iter()
                .all(|&d| self.slots[d].life.state.is_ready());
            if matches!(slot.life.state, State::Pending) && deps_ready {
                self.apply(i, Event::Start);
            }
        }
    }

    /// Stops what can be stopped now: services with no process at once, running ones when
    /// every dependent is at rest (reverse dependency order); kills everything on `Fast`.
    fn progress_shutdown(&mut self) {
        for i in 0..self.slots.len() {
            let state = &self.slots[i].life.state;
            let dependents_at_rest = self.slots[i]
                .dependents
                .iter()
                .all(|&d| self.slots[d].life.state.is_at_rest());
            let event = match state {
                State::Pending | State::Backoff { .. } => Some(Event::Stop),
                State::Stopping {
                    kill_at: Some(_), ..
                } if self.shutdown == Shutdown::Fast => Some(Event::Kill),
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

    fn status(&self) -> Vec<ServiceStatus> {
        self.slots
            .iter()
            .map(|s| ServiceStatus::of(s, self.t0))
            .collect()
    }

    fn summary(&self) -> Summary {
        Summary {
            services: self.status(),
            stop_order: self.stop_order.clone(),
            ran_for: self.t0.elapsed(),
        }
    }
}
