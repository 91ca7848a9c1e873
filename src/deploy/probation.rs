//! Probation: after a verified switch, the release is watched for `[deploy] probation`; a
//! service that fails (a crash loop) or stays unhealthy for longer than its startup gate
//! rolls it back the way a failed switch does. Passed, the release becomes the last known
//! good one and old releases are pruned. A new deploy ends the probation under way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::journal;
use super::state::{self, Layout};
use super::switch::{self, Deployer, Kind, Peer, Request};
use crate::supervisor::status::{Board, StateKind};

/// The probation under way, if any.
#[derive(Clone, Default)]
pub(crate) struct Probation(Arc<Mutex<Option<tokio::task::AbortHandle>>>);

impl Probation {
    /// Ends the probation under way (a new deploy takes over).
    pub(crate) fn cancel(&self) {
        if let Some(watch) = self.0.lock().unwrap_or_else(|p| p.into_inner()).take() {
            watch.abort();
        }
    }

    /// Forgets the probation under way without ending it (it is ending on its own).
    fn clear(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// Watches `release` for `length`; `gates` are the services' startup timeouts. Written to
    /// the journal first, so that a daemon restarted meanwhile goes on with it.
    pub(crate) fn start(
        &self,
        d: Deployer,
        release: String,
        length: Duration,
        gates: HashMap<String, Duration>,
    ) {
        self.cancel();
        if let Err(e) = journal::start_probation(&d.settings.state_dir, &release, length) {
            tracing::error!("{e}: the probation would not survive a restart of the daemon");
        }
        let task = tokio::spawn(async move {
            match watch(&d, length, &gates).await {
                Ok(()) => passed(&d, &release),
                Err(why) => failed(&d, &release, why).await,
            }
        });
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(task.abort_handle());
    }
}

/// Until `length` has passed: `Err` names the service that failed or stayed unhealthy.
async fn watch(d: &Deployer, length: Duration, gates: &HashMap<String, Duration>) -> Result<(), String> {
    let mut board = d.handle.board();
    let end = Instant::now() + length;
    let mut unhealthy_since: HashMap<String, Instant> = HashMap::new();
    loop {
        let services: Board = board.borrow_and_update().clone();
        let now = Instant::now();
        if let Some(why) = judge(&services, gates, &mut unhealthy_since, now) {
            return Err(why);
        }
        // wake for the end, or for the first unhealthy service's gate to run out
        let wake = unhealthy_since
            .iter()
            .map(|(name, since)| *since + gates.get(name).copied().unwrap_or_default())
            .fold(end, Instant::min);
        match tokio::time::timeout_at(wake, board.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Ok(()), // the supervisor stopped
            Err(_) if Instant::now() >= end => return Ok(()),
            Err(_) => {}
        }
    }
}

/// What the board says about the release on probation.
fn judge(
    services: &Board,
    gates: &HashMap<String, Duration>,
    unhealthy_since: &mut HashMap<String, Instant>,
    now: Instant,
) -> Option<String> {
    if let Some(f) = services.iter().find(|s| s.state == StateKind::Failed) {
        return Some(format!("on probation, {} failed: {}", f.name, f.reason.as_deref().unwrap_or("")));
    }
    unhealthy_since
        .retain(|name, _| services.iter().any(|s| &s.name == name && s.state == StateKind::Unhealthy));
    for s in services.iter().filter(|s| s.state == StateKind::Unhealthy) {
        let since = *unhealthy_since.entry(s.name.clone()).or_insert(now);
        let gate = gates.get(&s.name).copied().unwrap_or_default();
        if now.saturating_duration_since(since) >= gate {
            return Some(format!(
                "on probation, {} stayed unhealthy for longer than its startup gate ({gate:?})",
                s.name
            ));
        }
    }
    None
}

/// At start: the probation the last daemon left, for the time it had left, if its release is
/// still the current one.
pub(crate) fn resume(d: &Deployer) {
    let Some((release, left)) = journal::probation(&d.settings.state_dir) else { return };
    let layout = Layout::of(&d.settings);
    if layout.current_release().ok().flatten().as_deref() != Some(release.as_str()) {
        return journal::end_probation(&d.settings.state_dir);
    }
    let path = d.settings.current.join("services.toml");
    let gates = crate::config::load(&path)
        .map(|c| c.services.iter().map(|(n, s)| (n.clone(), s.startup_timeout.0)).collect())
        .unwrap_or_default();
    tracing::info!(release, left = ?left, "probation goes on");
    d.probation.start(d.clone(), release, left, gates);
}

fn passed(d: &Deployer, release: &str) {
    d.probation.clear();
    journal::end_probation(&d.settings.state_dir);
    tracing::info!(release, "probation passed: the last known good release");
    if let Err(e) = state::set_last_known_good(&d.settings.state_dir, release) {
        return tracing::error!("{e}");
    }
    let keep = keep_releases(d);
    match state::prune(&Layout::of(&d.settings), keep, &[release]) {
        Ok(gone) if !gone.is_empty() => tracing::info!(?gone, "old releases pruned"),
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot prune old releases: {e}"),
    }
}

/// `[deploy] keep_releases` of the current release's config (the default when unreadable).
fn keep_releases(d: &Deployer) -> u32 {
    let path = d.settings.current.join("services.toml");
    crate::config::load(&path)
        .map_or(crate::config::Deploy::default().keep_releases, |c| c.deploy.keep_releases)
}

async fn failed(d: &Deployer, release: &str, why: String) {
    d.probation.clear();
    journal::end_probation(&d.settings.state_dir);
    tracing::error!(release, "{why}: rolling back");
    let dir = d.settings.releases_dir.join(release);
    if let Err(e) = state::mark_bad(&dir, &why) {
        tracing::error!("{e}");
    }
    let (tx, _) = tokio::sync::mpsc::channel(1);
    let req =
        Request { release: None, kind: Kind::Probation, no_disarm: false, peer: Peer { uid: 0, pid: None } };
    switch::run(d.clone(), req, tx).await;
}
