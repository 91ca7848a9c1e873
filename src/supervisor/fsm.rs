//! A service's lifecycle as a pure state machine: `next(lifecycle, spec, event, now)` returns
//! the next lifecycle and the actions to perform, with no side effects. The actor performs the
//! actions and feeds back what happened. The transition table is tested exhaustively and drawn
//! into docs/lifecycle.md by a test, so the two cannot drift.

use std::fmt;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::restart::{self, Decision, History};
use crate::config::{self, Kind, Restart};
use crate::runtime::exit::Exit;

/// What the state machine needs to know about a service.
#[derive(Clone, Debug)]
pub(crate) struct Spec {
    pub(crate) oneshot: bool,
    /// Has a health check (or readiness notification): it must pass its gate before
    /// `healthy`. Without one it is healthy once it runs: once its exec succeeded, or once
    /// Docker started its container (`Spawned`).
    pub(crate) gated: bool,
    pub(crate) startup_timeout: Duration,
    pub(crate) stop_timeout: Duration,
    pub(crate) unhealthy_after: u32,
    pub(crate) restart: Restart,
}

impl Spec {
    pub(crate) fn of(svc: &config::Service) -> Self {
        Spec {
            oneshot: svc.kind == Kind::Oneshot,
            gated: !matches!(svc.health.check, config::Check::None),
            startup_timeout: svc.startup_timeout.0,
            stop_timeout: svc.stop_timeout.0,
            unhealthy_after: svc.unhealthy_after,
            restart: svc.restart.clone(),
        }
    }
}

/// Why a service restarted, stopped trying or failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Reason {
    Exit(Exit),
    Oom,
    Unhealthy,
    Memory,
    GateTimeout(Duration),
    Spawn(String),
    CrashLoop {
        restarts: u32,
        window: Duration,
        last: Box<Reason>,
    },
    Manual,
    /// Its container stopped because dockerd did (a restart or crash of the daemon).
    Dockerd,
}

impl Reason {
    /// A short stable label (`crash`, `oom`, `unhealthy`, `memory`, ...) for metrics and events.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Reason::Exit(_) => "crash",
            Reason::Oom => "oom",
            Reason::Unhealthy => "unhealthy",
            Reason::Memory => "memory",
            Reason::GateTimeout(_) => "startup_timeout",
            Reason::Spawn(_) => "spawn",
            Reason::CrashLoop { .. } => "crash_loop",
            Reason::Manual => "manual",
            Reason::Dockerd => "dockerd",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Exit(e) => e.fmt(f),
            Reason::Oom => f.write_str("oom: killed at its memory cap"),
            Reason::Unhealthy => f.write_str("unhealthy: health check failing"),
            Reason::Memory => f.write_str("memory: above memory_restart"),
            Reason::GateTimeout(d) => {
                write!(f, "not healthy within startup_timeout {}", humantime::format_duration(*d))
            }
            Reason::Spawn(e) => write!(f, "cannot start: {e}"),
            Reason::CrashLoop { restarts, window, last } => write!(
                f,
                "crash loop: {restarts} restarts within {} (last: {last})",
                humantime::format_duration(*window)
            ),
            Reason::Manual => f.write_str("restarted by request"),
            Reason::Dockerd => f.write_str("its container stopped with dockerd"),
        }
    }
}

/// What to do once a stopping process has exited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Then {
    /// Stay stopped until started again.
    Hold,
    Restart(Reason),
    Fail(Reason),
}

/// SPEC's states, with the data each one needs in the variant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum State {
    Pending,
    Starting { since: Instant, gate_until: Instant },
    Healthy { since: Instant },
    Unhealthy { since: Instant, failures: u32 },
    Backoff { until: Instant, reason: Reason },
    Stopping { since: Instant, kill_at: Option<Instant>, then: Then },
    Stopped,
    Exited { code: i32 },
    Failed { reason: Reason },
}

/// Which of SPEC's states, without its data: how states travel (events, status, metrics,
/// the control API) and are compared, never as text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateKind {
    Pending,
    Starting,
    Healthy,
    Unhealthy,
    Backoff,
    Stopping,
    Stopped,
    Exited,
    Failed,
}

impl StateKind {
    pub const ALL: [StateKind; 9] = [
        StateKind::Pending,
        StateKind::Starting,
        StateKind::Healthy,
        StateKind::Unhealthy,
        StateKind::Backoff,
        StateKind::Stopping,
        StateKind::Stopped,
        StateKind::Exited,
        StateKind::Failed,
    ];

    /// SPEC's name of the state.
    pub fn as_str(self) -> &'static str {
        match self {
            StateKind::Pending => "pending",
            StateKind::Starting => "starting",
            StateKind::Healthy => "healthy",
            StateKind::Unhealthy => "unhealthy",
            StateKind::Backoff => "backoff",
            StateKind::Stopping => "stopping",
            StateKind::Stopped => "stopped",
            StateKind::Exited => "exited",
            StateKind::Failed => "failed",
        }
    }

    /// Up for `titan_service_up`: healthy (or unhealthy but not yet restarted), or a oneshot
    /// that has exited. (A oneshot's exit code is in its state, not its kind.)
    pub fn is_up(self) -> bool {
        matches!(self, StateKind::Healthy | StateKind::Unhealthy | StateKind::Exited)
    }
}

impl fmt::Display for StateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl State {
    pub(crate) fn kind(&self) -> StateKind {
        match self {
            State::Pending => StateKind::Pending,
            State::Starting { .. } => StateKind::Starting,
            State::Healthy { .. } => StateKind::Healthy,
            State::Unhealthy { .. } => StateKind::Unhealthy,
            State::Backoff { .. } => StateKind::Backoff,
            State::Stopping { .. } => StateKind::Stopping,
            State::Stopped => StateKind::Stopped,
            State::Exited { .. } => StateKind::Exited,
            State::Failed { .. } => StateKind::Failed,
        }
    }

    /// SPEC's name of the state.
    pub(crate) fn name(&self) -> &'static str {
        self.kind().as_str()
    }

    /// When the run began, for states with a live process.
    pub(crate) fn running_since(&self) -> Option<Instant> {
        match *self {
            State::Starting { since, .. }
            | State::Healthy { since }
            | State::Unhealthy { since, .. }
            | State::Stopping { since, .. } => Some(since),
            _ => None,
        }
    }

    /// The timer this state waits for, and the event it delivers.
    pub(crate) fn deadline(&self) -> Option<(Instant, Event)> {
        match *self {
            State::Starting { gate_until, .. } => Some((gate_until, Event::GateExpired)),
            State::Backoff { until, .. } => Some((until, Event::BackoffElapsed)),
            State::Stopping { kill_at: Some(at), .. } => Some((at, Event::KillDue)),
            _ => None,
        }
    }

    /// Whether dependents may start: healthy, or a oneshot that exited 0.
    pub(crate) fn is_ready(&self) -> bool {
        matches!(self, State::Healthy { .. } | State::Unhealthy { .. } | State::Exited { code: 0 })
    }

    /// No process and nothing scheduled: safe to stop what it depends on.
    pub(crate) fn is_at_rest(&self) -> bool {
        matches!(self, State::Pending | State::Stopped | State::Exited { .. } | State::Failed { .. })
    }
}

/// What happened to a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// Its dependencies are ready, or an operator asked to start it.
    Start,
    /// The start succeeded: the exec happened (native), or Docker started the container.
    Spawned,
    SpawnFailed(String),
    /// A probe passed, `READY=1` arrived, or the log line was seen.
    Ready,
    ProbeFailed,
    GateExpired,
    Exited {
        exit: Exit,
        oom: bool,
    },
    BackoffElapsed,
    /// Graceful stop: the stop signal, then SIGKILL after `stop_timeout`.
    Stop,
    /// Stop without the grace period (a second SIGTERM to the supervisor).
    Kill,
    KillDue,
    /// Above `memory_restart`.
    MemoryOver,
    /// An operator asked for a restart.
    Restart,
    /// A reload changed the service: back to pending, to start again in dependency order.
    Requeue,
    /// Its container ended because dockerd went away; dockerd is back. The restart policy
    /// decides as for a crash, and a restart counts toward `max_restarts`.
    Revive,
    /// A oneshot ran to exit 0 outside the graph (a switch's migration, before `current`
    /// moved): done, not run again.
    Completed,
    /// A start-first update took the running container out of the service (it serves beside
    /// it until its successor is ready): back to pending with no stop, to start the new one.
    Superseded,
}

/// Side effects for the actor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    Spawn,
    /// Send the service's stop signal to its process group.
    Term,
    /// SIGKILL its process group and everything left in its cgroup.
    Kill,
}

/// A service's state plus the memory the restart policy needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Lifecycle {
    pub(crate) state: State,
    pub(crate) history: History,
    /// Restarts so far (all reasons, for status).
    pub(crate) restarts: u32,
    pub(crate) last_exit: Option<Exit>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle { state: State::Pending, history: History::default(), restarts: 0, last_exit: None }
    }
}

/// `now + d` that cannot overflow: durations from the config are at most a century
/// (`units::Duration::MAX`), and a deadline further ahead than that is as good as never.
pub(crate) fn after(now: Instant, d: Duration) -> Instant {
    let d = d.min(config::units::Duration::MAX.0);
    now.checked_add(d).unwrap_or(now)
}

/// The transition: `None` when the event does not apply in the current state (it is ignored).
pub(crate) fn next(
    life: &Lifecycle,
    spec: &Spec,
    event: Event,
    now: Instant,
) -> Option<(Lifecycle, Vec<Action>)> {
    let mut l = life.clone();
    let actions = match (&life.state, event) {
        (
            State::Pending | State::Backoff { .. } | State::Stopped | State::Exited { .. },
            Event::Start | Event::Restart,
        ) => start(&mut l, spec, now),
        (State::Failed { .. }, Event::Start | Event::Restart) => {
            l.history.reset();
            start(&mut l, spec, now)
        }
        (State::Backoff { .. }, Event::BackoffElapsed) => start(&mut l, spec, now),
        (State::Healthy { .. } | State::Unhealthy { .. }, Event::Superseded) => {
            l.state = State::Pending;
            l.history.reset();
            vec![]
        }
        (State::Stopped | State::Exited { .. } | State::Failed { .. }, Event::Requeue) => {
            l.state = State::Pending;
            l.history.reset();
            vec![]
        }
        (State::Pending | State::Stopped | State::Exited { .. } | State::Failed { .. }, Event::Completed)
            if spec.oneshot =>
        {
            l.state = State::Exited { code: 0 };
            l.last_exit = Some(Exit::Code(0));
            vec![]
        }
        // a oneshot that completed is done: dockerd going away afterwards does not undo it
        (State::Exited { code: 0 }, Event::Revive) if spec.oneshot => return None,
        (State::Exited { .. } | State::Failed { .. }, Event::Revive) => {
            let d = restart::decide(&spec.restart, &mut l.history, true, Duration::MAX, now);
            if d == Decision::Leave {
                return None;
            }
            after_decision(&mut l, spec, d, Reason::Dockerd, true, now)
        }
        (
            State::Pending | State::Backoff { .. } | State::Exited { .. } | State::Failed { .. },
            Event::Stop | Event::Kill,
        ) => {
            l.state = State::Stopped;
            vec![]
        }
        (State::Starting { .. } | State::Healthy { .. } | State::Unhealthy { .. }, event) => {
            return running(life, spec, event, now);
        }
        (State::Stopping { .. }, event) => return stopping(life, spec, event, now),
        _ => return None,
    };
    Some((l, actions))
}

/// Every start goes through `starting`: even a service without a health check is healthy
/// only once its start has succeeded (`Spawned`), so no dependent starts beside a program
/// that could not be executed.
fn start(l: &mut Lifecycle, spec: &Spec, now: Instant) -> Vec<Action> {
    l.state = State::Starting { since: now, gate_until: after(now, spec.startup_timeout) };
    vec![Action::Spawn]
}

/// Events while a process runs (starting, healthy, unhealthy).
fn running(life: &Lifecycle, spec: &Spec, event: Event, now: Instant) -> Option<(Lifecycle, Vec<Action>)> {
    let mut l = life.clone();
    let since = life.state.running_since()?;
    let stop = |then: Then, l: &mut Lifecycle| {
        l.state = State::Stopping { since, kill_at: Some(after(now, spec.stop_timeout)), then };
        vec![Action::Term]
    };
    let actions = match (&life.state, event) {
        (State::Starting { .. }, Event::Spawned) if !spec.gated && !spec.oneshot => {
            l.state = State::Healthy { since };
            vec![]
        }
        (State::Starting { .. }, Event::Ready) if !spec.oneshot => {
            l.state = State::Healthy { since };
            vec![]
        }
        (State::Unhealthy { .. }, Event::Ready) => {
            l.state = State::Healthy { since };
            vec![]
        }
        (State::Healthy { .. }, Event::ProbeFailed) => probe_failed(&mut l, spec, since, 1, now),
        (State::Unhealthy { failures, .. }, Event::ProbeFailed) => {
            probe_failed(&mut l, spec, since, failures + 1, now)
        }
        (State::Starting { .. }, Event::GateExpired) => {
            stop(Then::Fail(Reason::GateTimeout(spec.startup_timeout)), &mut l)
        }
        // a start that failed is a crash of a run that lasted nothing: the restart policy
        // retries it with backoff (out of descriptors, dockerd busy: it may work next time)
        (_, Event::SpawnFailed(e)) => {
            let d = restart::decide(&spec.restart, &mut l.history, true, Duration::ZERO, now);
            after_decision(&mut l, spec, d, Reason::Spawn(e), true, now)
        }
        (_, Event::Exited { exit, oom }) => return Some(exited(life, spec, since, exit, oom, now)),
        (_, Event::Stop) => stop(Then::Hold, &mut l),
        (_, Event::Kill) => {
            l.state = State::Stopping { since, kill_at: None, then: Then::Hold };
            vec![Action::Kill]
        }
        (_, Event::MemoryOver) => stop(Then::Restart(Reason::Memory), &mut l),
        (_, Event::Restart) => stop(Then::Restart(Reason::Manual), &mut l),
        _ => return None,
    };
    Some((l, actions))
}

fn probe_failed(l: &mut Lifecycle, spec: &Spec, since: Instant, failures: u32, now: Instant) -> Vec<Action> {
    if failures >= spec.unhealthy_after {
        let then = Then::Restart(Reason::Unhealthy);
        l.state = State::Stopping { since, kill_at: Some(after(now, spec.stop_timeout)), then };
        vec![Action::Term]
    } else {
        l.state = State::Unhealthy { since, failures };
        vec![]
    }
}

/// A process ended on its own: a oneshot is done, otherwise the restart policy decides.
fn exited(
    life: &Lifecycle,
    spec: &Spec,
    since: Instant,
    exit: Exit,
    oom: bool,
    now: Instant,
) -> (Lifecycle, Vec<Action>) {
    let mut l = life.clone();
    l.last_exit = Some(exit);
    let failed = oom || exit != Exit::Code(0);
    let reason = if oom { Reason::Oom } else { Reason::Exit(exit) };
    if spec.oneshot && !failed {
        l.state = State::Exited { code: 0 };
        return (l, vec![]);
    }
    let decision =
        restart::decide(&spec.restart, &mut l.history, failed, now.saturating_duration_since(since), now);
    let actions = after_decision(&mut l, spec, decision, reason, failed, now);
    (l, actions)
}

/// Applies the restart policy's decision about a run that ended for `reason`.
fn after_decision(
    l: &mut Lifecycle,
    spec: &Spec,
    d: Decision,
    reason: Reason,
    failed: bool,
    now: Instant,
) -> Vec<Action> {
    match d {
        Decision::Restart(delay) if delay.is_zero() => {
            l.restarts += 1;
            start(l, spec, now)
        }
        Decision::Restart(delay) => {
            l.restarts += 1;
            l.state = State::Backoff { until: after(now, delay), reason };
            vec![]
        }
        Decision::Leave if failed => {
            l.state = State::Failed { reason };
            vec![]
        }
        Decision::Leave => {
            l.state = State::Exited { code: 0 };
            vec![]
        }
        Decision::GiveUp { restarts, window } => {
            l.state =
                State::Failed { reason: Reason::CrashLoop { restarts, window, last: Box::new(reason) } };
            vec![]
        }
    }
}

/// Events while a process is being stopped.
fn stopping(life: &Lifecycle, spec: &Spec, event: Event, now: Instant) -> Option<(Lifecycle, Vec<Action>)> {
    let State::Stopping { since, kill_at, then } = &life.state else {
        return None;
    };
    let mut l = life.clone();
    let actions = match event {
        Event::Kill => {
            l.state = State::Stopping { since: *since, kill_at: None, then: then.clone() };
            vec![Action::Kill]
        }
        // a start still under way when the stop was asked for (a container's) has now
        // succeeded: the signal sent before it ran reached nothing, so it goes again
        Event::Spawned => vec![if kill_at.is_some() { Action::Term } else { Action::Kill }],
        Event::KillDue if kill_at.is_some() => {
            l.state = State::Stopping { since: *since, kill_at: None, then: then.clone() };
            vec![Action::Kill]
        }
        // an operator's stop wins over a restart or failure that was going to follow
        Event::Stop if *then != Then::Hold => {
            l.state = State::Stopping { since: *since, kill_at: *kill_at, then: Then::Hold };
            vec![]
        }
        // a start that was still under way (a container's) failed: nothing is left to stop
        Event::SpawnFailed(e) => {
            l.state = match then.clone() {
                Then::Hold => State::Stopped,
                Then::Fail(reason) => State::Failed { reason },
                Then::Restart(_) => State::Failed { reason: Reason::Spawn(e) },
            };
            vec![]
        }
        Event::Exited { exit, .. } => {
            l.last_exit = Some(exit);
            match then.clone() {
                Then::Hold => {
                    l.state = State::Stopped;
                    vec![]
                }
                Then::Fail(reason) => {
                    l.state = State::Failed { reason };
                    vec![]
                }
                Then::Restart(Reason::Manual) => {
                    l.restarts += 1;
                    start(&mut l, spec, now)
                }
                Then::Restart(reason) => {
                    let ran_for = now.saturating_duration_since(*since);
                    let d = restart::restart_after(&spec.restart, &mut l.history, ran_for, now);
                    after_decision(&mut l, spec, d, reason, true, now)
                }
            }
        }
        _ => return None,
    };
    Some((l, actions))
}

/// What an operator asks of one service (`start`, `stop`, `restart`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verb {
    Start,
    Stop,
    Restart,
}

impl Verb {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Verb::Start => "start",
            Verb::Stop => "stop",
            Verb::Restart => "restart",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Verb> {
        match s {
            "start" => Some(Verb::Start),
            "stop" => Some(Verb::Stop),
            "restart" => Some(Verb::Restart),
            _ => None,
        }
    }

    /// The states that answer this verb: where the service has got to once it is done.
    pub(crate) fn outcomes(self) -> &'static [StateKind] {
        match self {
            Verb::Stop => &[StateKind::Stopped, StateKind::Failed, StateKind::Exited],
            Verb::Start | Verb::Restart => {
                &[StateKind::Healthy, StateKind::Failed, StateKind::Exited, StateKind::Stopped]
            }
        }
    }

    /// Whether reaching `state` is what the verb asked for (else it ran and failed).
    pub(crate) fn wanted(self, state: StateKind) -> bool {
        match self {
            Verb::Stop => state == StateKind::Stopped,
            Verb::Start | Verb::Restart => matches!(state, StateKind::Healthy | StateKind::Exited),
        }
    }
}

/// How the state machine takes an operator's verb in a state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Operator {
    /// Feed this event.
    Apply(Event),
    /// Feed this start, once every dependency is ready (else refused, naming what it waits for).
    StartWhenReady(Event),
    /// Nothing to do: the service is where the verb would take it, or on its way there.
    Already,
    /// Refused in this state.
    Refused(&'static str),
}

/// The operator's table: what `verb` means in `state`. A stop holds the service stopped until a
/// start; a start of a running service is nothing; nothing starts while it is stopping.
pub(crate) fn operator(state: &State, verb: Verb) -> Operator {
    let running = state.running_since().is_some();
    match (state, verb) {
        (State::Stopped | State::Stopping { then: Then::Hold, .. }, Verb::Stop) => Operator::Already,
        (_, Verb::Stop) => Operator::Apply(Event::Stop),
        (State::Stopping { .. }, _) => Operator::Refused("is stopping; start it once it has stopped"),
        (_, Verb::Start) if running => Operator::Already,
        (_, Verb::Restart) if running => Operator::Apply(Event::Restart),
        (_, Verb::Start | Verb::Restart) => Operator::StartWhenReady(Event::Start),
    }
}

#[cfg(test)]
#[path = "fsm_tests.rs"]
mod tests;
