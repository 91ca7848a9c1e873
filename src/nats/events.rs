//! Events on NATS, schema `titan.supervisor.event.v1` (docs/events.md): every service state
//! change on `titan.evt.supervisor.service.v1`, every step and outcome of a deploy on
//! `titan.evt.supervisor.deploy.v1`. Each carries the same envelope: schema, kind, a sequence
//! number of this supervisor run, how many events it dropped so far, the time, host, project
//! and release.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use serde_json::{Map, Value, json};

use super::Link;

pub(crate) const SCHEMA: &str = "titan.supervisor.event.v1";
pub(crate) const SERVICE_SUBJECT: &str = "titan.evt.supervisor.service.v1";
pub(crate) const DEPLOY_SUBJECT: &str = "titan.evt.supervisor.deploy.v1";
pub(crate) const DISARM_SUBJECT: &str = "titan.cmd.operator.disarm.v1";
pub(crate) const ARM_SUBJECT: &str = "titan.cmd.operator.arm.v1";

/// The daemon's publisher: one NATS link per process, set once at boot (with `[nats]`).
static PUBLISHER: std::sync::OnceLock<Publisher> = std::sync::OnceLock::new();

/// The daemon's publisher, when it runs with `[nats]`.
pub(crate) fn publisher() -> Option<&'static Publisher> {
    PUBLISHER.get()
}

/// Makes the link for `cfg` the daemon's, forwarding the supervisor's service events from
/// `events` on the link's thread.
pub(crate) fn start(
    cfg: &crate::config::Nats,
    settings: &crate::config::Supervisor,
    events: crate::supervisor::events::Receiver,
) -> Result<&'static Publisher, super::LinkError> {
    let link = Link::start(cfg)?;
    let publisher = PUBLISHER.get_or_init(|| Publisher::new(link, settings));
    publisher.link.spawn(publisher.clone().forward(events));
    Ok(publisher)
}

/// Publishes events with their envelope.
#[derive(Clone)]
pub(crate) struct Publisher {
    link: Link,
    seq: Arc<AtomicU64>,
    host: String,
    project: String,
    layout: crate::deploy::state::Layout,
}

impl Publisher {
    pub(crate) fn new(link: Link, settings: &crate::config::Supervisor) -> Publisher {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_owned();
        Publisher {
            link,
            seq: Arc::default(),
            host,
            project: settings.project.clone(),
            layout: crate::deploy::state::Layout::of(settings),
        }
    }

    pub(crate) fn link(&self) -> &Link {
        &self.link
    }

    /// Queues an event of `kind` with `fields` (an object) on `subject`.
    pub(crate) fn publish(&self, subject: &str, kind: &str, fields: Value) {
        let mut event = Map::new();
        event.insert("schema".into(), SCHEMA.into());
        event.insert("kind".into(), kind.into());
        event.insert("seq".into(), (self.seq.fetch_add(1, Ordering::Relaxed) + 1).into());
        event.insert("dropped".into(), self.link.stats.dropped.get().into());
        event.insert("at".into(), crate::deploy::switch::stamp(SystemTime::now()).into());
        event.insert("host".into(), self.host.clone().into());
        event.insert("project".into(), self.project.clone().into());
        event.insert("release".into(), self.layout.current_release().ok().flatten().into());
        if let Value::Object(fields) = fields {
            event.extend(fields);
        }
        let bytes = serde_json::to_vec(&Value::Object(event)).unwrap_or_default();
        self.link.publish(subject.to_owned(), bytes.into());
    }

    /// Forwards every service state change the supervisor announces on `events` (subscribed
    /// before the supervisor runs, so none is missed), until it stops.
    pub(crate) async fn forward(self, mut events: crate::supervisor::events::Receiver) {
        loop {
            match events.recv().await {
                Ok(e) => self.publish(
                    SERVICE_SUBJECT,
                    "service",
                    json!({
                        "service": e.service, "from": e.from, "to": e.to, "reason": e.reason,
                        "reason_kind": e.reason_kind, "restarts": e.restarts, "exit": e.exit,
                    }),
                ),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    self.link.stats.dropped.inc_by(n);
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}
