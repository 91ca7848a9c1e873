//! Snapshots of the supervisor for status displays and the final summary.

use std::time::Duration;

use serde::Serialize;

use super::fsm::State;
use super::slot::Slot;
use crate::config::{Check, Exec, Kind};

/// One service as `status` shows it (SPEC's `/v1/status` fields).
#[derive(Clone, Debug, Serialize)]
pub struct ServiceStatus {
    pub name: String,
    pub group: Option<String>,
    pub kind: &'static str,
    pub state: &'static str,
    pub pid: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    pub restarts: u32,
    pub uptime_s: Uptime,
    pub memory_bytes: Option<u64>,
    pub health: &'static str,
    /// Why it is failed, backing off, or still pending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// How long its last start took to become ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_after_ms: Option<u64>,
}

impl ServiceStatus {
    /// The status of `s`; `waiting` says why a pending service has not started.
    pub fn of(s: &Slot, waiting: Option<String>) -> Self {
        let reason = match &s.life.state {
            State::Failed { reason } | State::Backoff { reason, .. } => Some(reason.to_string()),
            State::Pending => waiting,
            _ => None,
        };
        ServiceStatus {
            name: s.name.clone(),
            group: s.svc.group.clone(),
            kind: match (s.svc.kind, &s.svc.exec) {
                (Kind::Oneshot, _) => "oneshot",
                (_, Exec::Image { .. }) => "container",
                _ => "process",
            },
            state: s.life.state.name(),
            pid: s.pid.map(|p| p.as_raw()),
            container_id: s.container.as_ref().and_then(|c| Some(c.running.as_ref()?.id.clone())),
            restarts: s.life.restarts,
            uptime_s: Uptime(s.life.state.running_since().map(|since| container_since(s).unwrap_or(since))),
            memory_bytes: s.last_rss,
            health: check_name(&s.svc.health.check),
            reason,
            ready_after_ms: s.ready_after.map(|d| d.as_millis() as u64),
        }
    }
}

/// When an adopted (or any) container really started, as an `Instant`: its run began before
/// this supervisor did.
fn container_since(s: &Slot) -> Option<std::time::Instant> {
    let nanos = s.container.as_ref()?.running.as_ref()?.started_nanos;
    let started = std::time::UNIX_EPOCH + Duration::from_nanos(u64::try_from(nanos).ok().filter(|&n| n > 0)?);
    let ago = std::time::SystemTime::now().duration_since(started).ok()?;
    std::time::Instant::now().checked_sub(ago)
}

/// Since when a service runs; it reads (and serializes) as the seconds up to that moment, so
/// a status taken once stays right however late it is shown.
#[derive(Clone, Copy, Debug, Default)]
pub struct Uptime(pub Option<std::time::Instant>);

impl Uptime {
    pub fn secs(&self) -> Option<f64> {
        self.0.map(|t| t.elapsed().as_secs_f64())
    }
}

impl Serialize for Uptime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.secs().serialize(s)
    }
}

pub fn check_name(c: &Check) -> &'static str {
    match c {
        Check::None => "none",
        Check::Http(_) => "http",
        Check::Tcp(_) => "tcp",
        Check::Exec(_) => "exec",
        Check::Log(_) => "log",
        Check::Notify => "notify",
    }
}

/// What a run of the supervisor did, for the demo's closing words.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub services: Vec<ServiceStatus>,
    /// Services in the order they stopped during shutdown.
    pub stop_order: Vec<String>,
    pub ran_for: Duration,
    /// Stopped for an upgrade: the caller execs the (new) binary, which adopts the containers.
    pub upgrade: bool,
}
