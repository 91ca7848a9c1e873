//! The wire schema of the supervisor's state: one set of types for the board the actor posts,
//! the control API's `/v1/status` and `/v1/services/{name}` bodies, the CLI's table and
//! `/metrics` — defined once, so the two ends cannot drift. Also the run's final summary.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use super::fsm::StateKind;
use crate::config::Check;

/// What runs a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceKind {
    Process,
    Container,
    Oneshot,
}

/// Which health check a service has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    None,
    Http,
    Tcp,
    Exec,
    Log,
    Notify,
}

impl CheckKind {
    pub fn of(check: &Check) -> CheckKind {
        match check {
            Check::None => CheckKind::None,
            Check::Http(_) => CheckKind::Http,
            Check::Tcp(_) => CheckKind::Tcp,
            Check::Exec(_) => CheckKind::Exec,
            Check::Log(_) => CheckKind::Log,
            Check::Notify => CheckKind::Notify,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CheckKind::None => "none",
            CheckKind::Http => "http",
            CheckKind::Tcp => "tcp",
            CheckKind::Exec => "exec",
            CheckKind::Log => "log",
            CheckKind::Notify => "notify",
        }
    }
}

/// One service as `status` shows it (SPEC's `/v1/status` fields, and why it is where it is).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub name: String,
    pub group: Option<String>,
    pub kind: ServiceKind,
    pub state: StateKind,
    pub pid: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    pub restarts: u32,
    pub uptime_s: Uptime,
    pub memory_bytes: Option<u64>,
    pub health: CheckKind,
    /// Why it is failed, backing off, or still pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// How long its last start took to become ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_after_ms: Option<u64>,
    /// A container service's view of dockerd: while it is `unreachable`, the state shown is
    /// the last one known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerd: Option<DockerdState>,
}

/// Whether dockerd answers the supervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DockerdState {
    Connected,
    /// Not (yet, or no longer) answering.
    Unreachable,
    /// It answers, but another supervisor owns the project there.
    Refused,
}

/// Every service's status as of its last change, shared by every reader without copies.
pub type Board = Arc<Vec<ServiceStatus>>;

/// `GET /v1/status`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    /// The release running (`current`'s target), when there is one.
    pub release: Option<String>,
    /// dockerd as the supervisor sees it; absent without container services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerd: Option<DockerdState>,
    /// The NATS link; absent without `[nats]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats: Option<NatsStatus>,
    pub services: Board,
}

/// The NATS link as `status` shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NatsStatus {
    /// `connecting`, `connected` or `disconnected`.
    pub state: String,
    /// Events published, dropped while NATS was away (the queue full), waiting now.
    pub published: u64,
    pub dropped: u64,
    pub queued: u64,
}

impl Status {
    pub fn new(release: Option<String>, services: Board) -> Status {
        let dockerd = services.iter().find_map(|s| s.dockerd);
        Status { release, dockerd, nats: None, services }
    }
}

/// Since when a service runs. It travels as the seconds up to the moment it is written, and
/// reads back as the moment that many seconds before it was read: a status taken once stays
/// right however late it is shown, on either side of the socket.
#[derive(Clone, Copy, Debug, Default)]
pub struct Uptime(pub Option<Instant>);

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

impl<'de> Deserialize<'de> for Uptime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let secs = Option::<f64>::deserialize(d)?;
        let since = secs
            .filter(|s| s.is_finite() && *s >= 0.0)
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .and_then(|ago| Instant::now().checked_sub(ago));
        Ok(Uptime(since))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ServiceStatus {
        ServiceStatus {
            name: "titan-brain".into(),
            group: Some("brain".into()),
            kind: ServiceKind::Container,
            state: StateKind::Healthy,
            pid: None,
            container_id: Some("0123456789abcdef".into()),
            restarts: 2,
            uptime_s: Uptime(Instant::now().checked_sub(Duration::from_secs(90))),
            memory_bytes: Some(123 << 20),
            health: CheckKind::Http,
            reason: None,
            ready_after_ms: Some(212),
            dockerd: Some(DockerdState::Connected),
        }
    }

    /// What the daemon writes is what the client reads, field for field; uptime moves only
    /// by the time the round trip took.
    #[test]
    fn the_status_body_round_trips() {
        let status = Status::new(Some("20261201T000000Z-abcdef0".into()), Arc::new(vec![sample()]));
        let sent = serde_json::to_value(&status).unwrap();
        let read: Status = serde_json::from_value(sent.clone()).unwrap();
        let again = serde_json::to_value(&read).unwrap();
        let uptime = |v: &serde_json::Value| v["services"][0]["uptime_s"].as_f64().unwrap();
        assert!((uptime(&again) - uptime(&sent)).abs() < 1.0, "{sent} vs {again}");
        let without_uptime = |mut v: serde_json::Value| {
            v["services"][0]["uptime_s"] = serde_json::Value::Null;
            v
        };
        assert_eq!(without_uptime(again), without_uptime(sent.clone()));
        // SPEC's names, as other tools read them
        let s = &sent["services"][0];
        assert_eq!(
            (s["kind"].as_str(), s["state"].as_str(), s["health"].as_str()),
            (Some("container"), Some("healthy"), Some("http"))
        );
        assert_eq!(s["ready_after_ms"], 212);
    }

    #[test]
    fn a_service_not_running_has_no_uptime_and_bad_uptimes_read_as_none() {
        let mut s = sample();
        s.uptime_s = Uptime(None);
        let v = serde_json::to_value(&s).unwrap();
        assert!(v["uptime_s"].is_null());
        let read: ServiceStatus = serde_json::from_value(v).unwrap();
        assert!(read.uptime_s.0.is_none());
        let mut v = serde_json::to_value(sample()).unwrap();
        v["uptime_s"] = serde_json::json!(-5.0);
        let read: ServiceStatus = serde_json::from_value(v).unwrap();
        assert!(read.uptime_s.0.is_none());
        assert!(serde_json::from_str::<ServiceStatus>("{\"name\": 1}").is_err());
    }
}
