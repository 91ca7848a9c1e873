//! What must survive the daemon dying in the middle of a deploy: `state/switch.json`, written
//! before `current` moves and removed once the outcome is recorded, and `state/probation.json`
//! while a verified release is on probation. At the next start, before the config is read, an
//! unfinished switch is undone (its release marked BAD, `current` back where it was, a
//! history line saying why); a probation under way goes on for the time it had left.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::state::{self, Attempt, Layout, StateError};

const SWITCH: &str = "switch.json";
const PROBATION: &str = "probation.json";

/// A switch under way.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Switch {
    pub(crate) attempt: String,
    pub(crate) release: String,
    /// What `current` pointed to before (`None`: no `current`, a plain config ran).
    pub(crate) from: Option<String>,
    pub(crate) kind: String,
    pub(crate) started: String,
}

/// A release on probation until `until` (seconds since the epoch).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct OnProbation {
    pub(crate) release: String,
    pub(crate) until: u64,
}

pub(crate) fn begin(state_dir: &Path, s: &Switch) -> Result<(), StateError> {
    state::write_json(&state_dir.join(SWITCH), s)
}

pub(crate) fn end(state_dir: &Path) {
    remove(&state_dir.join(SWITCH));
}

pub(crate) fn start_probation(state_dir: &Path, release: &str, length: Duration) -> Result<(), StateError> {
    let until = now_secs().saturating_add(length.as_secs());
    state::write_json(&state_dir.join(PROBATION), &OnProbation { release: release.to_owned(), until })
}

pub(crate) fn end_probation(state_dir: &Path) {
    remove(&state_dir.join(PROBATION));
}

/// The probation left by the last daemon and how long it still has; a corrupt file is reported
/// and dropped (the release then waits for its next probation to become the last known good).
pub(crate) fn probation(state_dir: &Path) -> Option<(String, Duration)> {
    let path = state_dir.join(PROBATION);
    match state::read_json::<OnProbation>(&path) {
        Ok(Some(p)) => Some((p.release, Duration::from_secs(p.until.saturating_sub(now_secs())))),
        Ok(None) => None,
        Err(e) => {
            tracing::error!("{e}; dropping it");
            remove(&path);
            None
        }
    }
}

/// At start, before the config is read: a switch the last daemon did not finish is undone.
/// `Err` only when the journal cannot be read or `current` cannot be put back (then the daemon
/// must not start on a half-switched host).
pub(crate) fn recover(layout: &Layout) -> Result<(), StateError> {
    let path = layout.state_dir.join(SWITCH);
    let Some(s) = state::read_json::<Switch>(&path)? else { return Ok(()) };
    let why = format!("the daemon stopped during its {} (attempt {})", s.kind, s.attempt);
    tracing::error!(release = %s.release, "{why}: returning to {}", s.from.as_deref().unwrap_or("the config before"));
    let release_dir = layout.releases_dir.join(&s.release);
    if s.kind == "switch" {
        state::mark_bad(&release_dir, &why)?;
    }
    match &s.from {
        Some(from) if layout.current_release()?.as_deref() != Some(from.as_str()) => {
            layout.swap_current(&layout.releases_dir.join(from))?
        }
        Some(_) => {}
        None => layout.remove_current()?,
    }
    let line = Attempt {
        attempt: s.attempt.clone(),
        release: s.release.clone(),
        from: s.from.clone(),
        kind: s.kind.clone(),
        outcome: "rolled_back".into(),
        reason: Some(why),
        started: s.started.clone(),
        ended: super::switch::stamp(SystemTime::now()),
        uid: None,
        pid: None,
    };
    state::append_history(&layout.state_dir, &line)?;
    end(&layout.state_dir);
    end_probation(&layout.state_dir);
    Ok(())
}

fn remove(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!("cannot remove {}: {e}", path.display());
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> (tempfile::TempDir, Layout) {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout {
            releases_dir: dir.path().join("releases"),
            current: dir.path().join("current"),
            state_dir: dir.path().join("state"),
        };
        for r in ["r1", "r2"] {
            std::fs::create_dir_all(layout.releases_dir.join(r)).unwrap();
            std::fs::write(layout.releases_dir.join(r).join("services.toml"), "").unwrap();
        }
        std::fs::create_dir_all(&layout.state_dir).unwrap();
        (dir, layout)
    }

    fn switch(from: Option<&str>) -> Switch {
        Switch {
            attempt: "20261202T000000Z-r2".into(),
            release: "r2".into(),
            from: from.map(str::to_owned),
            kind: "switch".into(),
            started: "2026-12-02T00:00:00Z".into(),
        }
    }

    #[test]
    fn a_switch_interrupted_after_the_swap_is_undone_and_its_release_marked_bad() {
        let (_dir, layout) = host();
        layout.swap_current(&layout.releases_dir.join("r2")).unwrap();
        begin(&layout.state_dir, &switch(Some("r1"))).unwrap();
        recover(&layout).unwrap();
        assert_eq!(layout.current_release().unwrap().as_deref(), Some("r1"));
        assert!(state::is_bad(&layout.releases_dir.join("r2")));
        let history = state::read_history(&layout.state_dir).unwrap();
        assert_eq!(history[0].outcome, "rolled_back");
        assert!(history[0].reason.as_deref().unwrap().contains("the daemon stopped during its switch"));
        assert!(!layout.state_dir.join(SWITCH).exists(), "done with");
        recover(&layout).unwrap();
        assert_eq!(state::read_history(&layout.state_dir).unwrap().len(), 1, "once");
    }

    #[test]
    fn a_switch_interrupted_before_the_swap_leaves_current_and_removes_a_first_deploys_current() {
        let (_dir, layout) = host();
        layout.swap_current(&layout.releases_dir.join("r1")).unwrap();
        begin(&layout.state_dir, &switch(Some("r1"))).unwrap();
        recover(&layout).unwrap();
        assert_eq!(layout.current_release().unwrap().as_deref(), Some("r1"));
        layout.swap_current(&layout.releases_dir.join("r2")).unwrap();
        begin(&layout.state_dir, &switch(None)).unwrap();
        recover(&layout).unwrap();
        assert_eq!(layout.current_release().unwrap(), None, "a first deploy leaves no current");
    }

    #[test]
    fn a_corrupt_journal_is_an_error_naming_it_and_a_corrupt_probation_is_dropped() {
        let (_dir, layout) = host();
        std::fs::write(layout.state_dir.join(SWITCH), "{\"attempt\": 3").unwrap();
        let e = recover(&layout).unwrap_err().to_string();
        assert!(e.contains("switch.json") && e.contains("corrupt"), "{e}");
        std::fs::write(layout.state_dir.join(PROBATION), "[]").unwrap();
        assert_eq!(probation(&layout.state_dir), None);
        assert!(!layout.state_dir.join(PROBATION).exists());
        start_probation(&layout.state_dir, "r1", Duration::from_secs(300)).unwrap();
        let (release, left) = probation(&layout.state_dir).unwrap();
        assert_eq!(release, "r1");
        assert!(left > Duration::from_secs(290) && left <= Duration::from_secs(300), "{left:?}");
    }
}
