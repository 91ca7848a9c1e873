//! The control API's types, shared by the server and the CLI client: paths, request outcomes
//! and the JSON bodies. The status bodies are `supervisor::status`'s types, defined once.

use serde::{Deserialize, Serialize};

pub(crate) use crate::supervisor::fsm::{StateKind, Verb};
pub(crate) use crate::supervisor::status::{Board, ServiceStatus, Status};

/// The answer to start/stop/restart, once the outcome is known.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Outcome {
    pub(crate) service: String,
    pub(crate) action: String,
    /// The state the service reached (`healthy`, `stopped`, `failed`, ...).
    pub(crate) state: StateKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
}

/// Every error body: `{"error": "..."}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ErrorBody {
    pub(crate) error: String,
}
