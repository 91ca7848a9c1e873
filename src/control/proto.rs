//! The control API's types, shared by the server and the CLI client: paths, request outcomes
//! and the JSON bodies (SPEC's `/v1/status` fields come from `supervisor::status`).

use serde::{Deserialize, Serialize};

pub use crate::supervisor::status::ServiceStatus;

/// `GET /v1/status`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    /// The release running (`current`'s target), when there is one.
    pub release: Option<String>,
    pub services: Vec<ServiceStatusOwned>,
}

/// A service's status as it travels (owned strings, so it deserializes on the client).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ServiceStatusOwned {
    pub name: String,
    pub group: Option<String>,
    pub kind: String,
    pub state: String,
    pub pid: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    pub restarts: u32,
    pub uptime_s: Option<f64>,
    pub memory_bytes: Option<u64>,
    pub health: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl From<&ServiceStatus> for ServiceStatusOwned {
    fn from(s: &ServiceStatus) -> Self {
        ServiceStatusOwned {
            name: s.name.clone(),
            group: s.group.clone(),
            kind: s.kind.to_owned(),
            state: s.state.to_owned(),
            pid: s.pid,
            container_id: s.container_id.clone(),
            restarts: s.restarts,
            uptime_s: s.uptime_s.secs(),
            memory_bytes: s.memory_bytes,
            health: s.health.to_owned(),
            reason: s.reason.clone(),
        }
    }
}

/// What an operator asks of one service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Start,
    Stop,
    Restart,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Start => "start",
            Verb::Stop => "stop",
            Verb::Restart => "restart",
        }
    }

    pub fn parse(s: &str) -> Option<Verb> {
        match s {
            "start" => Some(Verb::Start),
            "stop" => Some(Verb::Stop),
            "restart" => Some(Verb::Restart),
            _ => None,
        }
    }
}

/// The answer to start/stop/restart, once the outcome is known.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Outcome {
    pub service: String,
    pub action: String,
    /// The state the service reached (`healthy`, `stopped`, `failed`, ...).
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Every error body: `{"error": "..."}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// Paths reserved for the release issue; the server answers 501 until then.
pub const RESERVED: &[&str] = &["/v1/switch", "/v1/rollback", "/v1/releases"];
