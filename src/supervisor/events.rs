//! Lifecycle events: one per state change, broadcast to whoever listens (the demo's progress,
//! the control API's event stream, NATS). Slow listeners lose old events; supervision never
//! waits for them.

use serde::Serialize;

use super::fsm::StateKind;

/// A service changed state.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Event {
    pub(crate) service: String,
    pub(crate) from: StateKind,
    pub(crate) to: StateKind,
    /// Why, when there is a reason (a crash, a failed gate, a memory restart, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
    /// The reason's stable label (`crash`, `oom`, `unhealthy`, `memory`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason_kind: Option<&'static str>,
    pub(crate) restarts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) pid: Option<i32>,
    /// How the last run ended, when it just did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) exit: Option<String>,
    /// Milliseconds since the supervisor started.
    pub(crate) at_ms: u64,
}

pub(crate) type Sender = tokio::sync::broadcast::Sender<Event>;
pub(crate) type Receiver = tokio::sync::broadcast::Receiver<Event>;

/// How many events a slow listener may fall behind before it loses the oldest.
pub(crate) const BACKLOG: usize = 4096;
