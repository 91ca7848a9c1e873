//! Start-first updates (`update_order = "start-first"`): when a reload or a switch changes a
//! running container service, its container is renamed out of the way and serves on while
//! the new definition's container starts and passes its gate; only then is the old one
//! stopped and removed, so the service is never without a ready container. A new run given
//! up on (stopped, failed, removed) ends the old one too. A supervisor killed meanwhile
//! leaves `<container>.retired-N` behind, which its next start removes.

use std::time::Duration;

use tokio::sync::oneshot;

use super::actor::Supervisor;
use super::containers::ContainerBackend;
use super::definition::Definition;
use super::fsm::{Event, State, Then};
use super::service::Standing;
use crate::config::UpdateOrder;

/// How long a shutdown waits for retired containers to be gone.
const RETIRED_WAIT: Duration = Duration::from_secs(20);

impl Supervisor {
    /// Whether running service `i` can get `def` starting first: `def` asks for it, both are
    /// containers, and a ready container runs.
    pub(super) fn can_start_first(&self, i: usize, def: &Definition) -> bool {
        let svc = &self.services[i];
        def.config.update_order == UpdateOrder::StartFirst
            && def.container().is_some()
            && svc.def.container().is_some()
            && matches!(svc.life.state, State::Healthy { .. } | State::Unhealthy { .. })
            && svc.run.as_ref().is_some_and(|r| r.container_id().is_some())
            && !self.is_stopping()
            && self.engine.is_some()
    }

    /// Gives service `i` its new definition `def` starting first (`can_start_first`): its
    /// container is retired and serves on, the new definition starts from pending.
    pub(super) fn start_first(&mut self, i: usize, def: Definition) {
        let svc = &self.services[i];
        let (Some(old), Some(run)) = (svc.def.container(), svc.run.as_ref()) else { return };
        let (name, generation) = (old.name.clone(), run.generation);
        tracing::info!(service = %svc.name, "start-first: its new container starts beside the one running");
        self.end_run(i);
        if let Some(c) = self.services[i].container_mut() {
            c.retire(&name, generation);
        }
        self.services[i].standing = Standing::Active;
        self.install(i, def);
        self.apply(i, Event::Superseded);
    }

    /// After a transition of service `i`: the container it retired is stopped and removed
    /// once the new run is ready, or once the service is no longer being started.
    pub(super) fn end_retired_when_settled(&mut self, i: usize) {
        let svc = &self.services[i];
        let replacing = matches!(svc.standing, Standing::Replacing { .. });
        let settled = match &svc.life.state {
            State::Healthy { .. } => true,
            State::Stopping { then: Then::Hold | Then::Fail(_), .. }
            | State::Stopped
            | State::Failed { .. }
            | State::Exited { .. } => !replacing || self.is_stopping(),
            _ => false,
        };
        if !settled {
            return;
        }
        if let Some(gone) = self.services[i].container_mut().and_then(ContainerBackend::end_retired) {
            self.retired_ends
                .retain_mut(|r| matches!(r.try_recv(), Err(oneshot::error::TryRecvError::Empty)));
            self.retired_ends.push(gone);
        }
    }

    /// At the end of a shutdown: every retired container gone (or a while passed).
    pub(super) async fn await_retired(&mut self) {
        let all = futures_util::future::join_all(std::mem::take(&mut self.retired_ends));
        if tokio::time::timeout(RETIRED_WAIT, all).await.is_err() {
            tracing::warn!("containers retired by start-first updates are still stopping");
        }
    }
}
