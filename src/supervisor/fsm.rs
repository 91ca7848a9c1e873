//! A service's lifecycle as a pure state machine: `next(lifecycle, spec, event, now)` returns
//! the next lifecycle and the actions to perform, with no side effects. The actor performs the
//! actions and feeds back what happened. The transition table is tested exhaustively and drawn
//! into docs/lifecycle.md by a test, so the two cannot drift.

use std::fmt;
use std::time::{Duration, Instant};

use super::restart::{self, Decision, History};
use crate::config::{self, Kind, Restart};

/// What the state machine needs to know about a service.
#[derive(Clone, Debug)]
pub struct Spec {
    pub oneshot: bool,
    /// Has a health check (or readiness notification), or is a container (running only once
    /// Docker says so): it must pass a gate before `healthy`.
    pub gated: bool,
    pub startup_timeout: Duration,
    pub stop_timeout: Duration,
    pub unhealthy_after: u32,
    pub restart: Restart,
}

impl Spec {
    pub fn of(svc: &config::Service) -> Self {
        Spec {
            oneshot: svc.kind == Kind::Oneshot,
            gated: !matches!(svc.health.check, config::Check::None)
                || matches!(svc.exec, config::Exec::Image { .. }),
            startup_timeout: svc.startup_timeout.0,
            stop_timeout: svc.stop_timeout.0,
            unhealthy_after: svc.unhealthy_after,
            restart: svc.restart.clone(),
        }
    }
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Signal(s) => match nix::sys::signal::Signal::try_from(s) {
                Ok(sig) => write!(f, "killed by {}", sig.as_str()),
                Err(_) => write!(f, "killed by signal {s}"),
            },
        }
    }
}

/// Why a service restarted, stopped trying or failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    Exit(Exit),
    Oom,
    Unhealthy,
    Memory,
    GateTimeout(Duration),
    Spawn(String),
    CrashLoop { restarts: u32, window: Duration, last: Box<Reason> },
    Manual,
}

impl Reason {
    /// A short stable label (`crash`, `oom`, `unhealthy`, `memory`, ...) for metrics and events.
    pub fn label(&self) -> &'static str {
        match self {
            Reason::Exit(_) => "crash",
            Reason::Oom => "oom",
            Reason::Unhealthy => "unhealthy",
            Reason::Memory => "memory",
            Reason::GateTimeout(_) => "startup_timeout",
            Reason::Spawn(_) => "spawn",
            Reason::CrashLoop { .. } => "crash_loop",
            Reason::Manual => "manual",
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
        }
    }
}

/// What to do once a stopping process has exited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Then {
    /// Stay stopped until started again.
    Hold,
    Restart(Reason),
    Fail(Reason),
}

/// SPEC's states, with the data each one needs in the variant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
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

impl State {
    /// SPEC's name of the state.
    pub fn name(&self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Starting { .. } => "starting",
            State::Healthy { .. } => "healthy",
            State::Unhealthy { .. } => "unhealthy",
            State::Backoff { .. } => "backoff",
            State::Stopping { .. } => "stopping",
            State::Stopped => "stopped",
            State::Exited { .. } => "exited",
            State::Failed { .. } => "failed",
        }
    }

    /// When the run began, for states with a live process.
    pub fn running_since(&self) -> Option<Instant> {
        match *self {
            State::Starting { since, .. }
            | State::Healthy { since }
            | State::Unhealthy { since, .. }
            | State::Stopping { since, .. } => Some(since),
            _ => None,
        }
    }

    /// The timer this state waits for, and the event it delivers.
    pub fn deadline(&self) -> Option<(Instant, Event)> {
        match *self {
            State::Starting { gate_until, .. } => Some((gate_until, Event::GateExpired)),
            State::Backoff { until, .. } => Some((until, Event::BackoffElapsed)),
            State::Stopping { kill_at: Some(at), .. } => Some((at, Event::KillDue)),
            _ => None,
        }
    }

    /// Whether dependents may start: healthy, or a oneshot that exited 0.
    pub fn is_ready(&self) -> bool {
        matches!(self, State::Healthy { .. } | State::Unhealthy { .. } | State::Exited { code: 0 })
    }

    /// No process and nothing scheduled: safe to stop what it depends on.
    pub fn is_at_rest(&self) -> bool {
        matches!(self, State::Pending | State::Stopped | State::Exited { .. } | State::Failed { .. })
    }
}

/// What happened to a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Its dependencies are ready, or an operator asked to start it.
    Start,
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
}

/// Side effects for the actor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Spawn,
    /// Send the service's stop signal to its process group.
    Term,
    /// SIGKILL its process group and everything left in its cgroup.
    Kill,
}

/// A service's state plus the memory the restart policy needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lifecycle {
    pub state: State,
    pub history: History,
    /// Restarts so far (all reasons, for status).
    pub restarts: u32,
    pub last_exit: Option<Exit>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle { state: State::Pending, history: History::default(), restarts: 0, last_exit: None }
    }
}

/// The transition: `None` when the event does not apply in the current state (it is ignored).
pub fn next(life: &Lifecycle, spec: &Spec, event: Event, now: Instant) -> Option<(Lifecycle, Vec<Action>)> {
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
        (State::Stopped | State::Exited { .. } | State::Failed { .. }, Event::Requeue) => {
            l.state = State::Pending;
            l.history.reset();
            vec![]
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

fn start(l: &mut Lifecycle, spec: &Spec, now: Instant) -> Vec<Action> {
    l.state = if spec.gated || spec.oneshot {
        State::Starting { since: now, gate_until: now + spec.startup_timeout }
    } else {
        State::Healthy { since: now }
    };
    vec![Action::Spawn]
}

/// Events while a process runs (starting, healthy, unhealthy).
fn running(life: &Lifecycle, spec: &Spec, event: Event, now: Instant) -> Option<(Lifecycle, Vec<Action>)> {
    let mut l = life.clone();
    let since = life.state.running_since()?;
    let stop = |then: Then, l: &mut Lifecycle| {
        l.state = State::Stopping { since, kill_at: Some(now + spec.stop_timeout), then };
        vec![Action::Term]
    };
    let actions = match (&life.state, event) {
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
        (_, Event::SpawnFailed(e)) => {
            l.state = State::Failed { reason: Reason::Spawn(e) };
            vec![]
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
        l.state = State::Stopping { since, kill_at: Some(now + spec.stop_timeout), then };
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
            l.state = State::Backoff { until: now + delay, reason };
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

#[cfg(test)]
#[path = "fsm_tests.rs"]
mod tests;
