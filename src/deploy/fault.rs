//! Fault injection for the crash tests of deploys: with `TITAN_SUPERVISOR_FAULT=switch:<step>`
//! the daemon is SIGKILLed as that step begins; with `pause:<point>` the switch waits 2 s
//! there (a window for a test to act in). The kill is the actor's, between two of its
//! turns, so a test never lands it between a spawn and the pid file that records it. Compiled
//! into debug builds only (the test builds); a release build has no such hook.

use crate::supervisor::handle::Handle;

/// Dies here if the environment asks for it (debug builds).
pub(crate) fn at(step: &str, handle: &Handle) {
    #[cfg(debug_assertions)]
    if std::env::var("TITAN_SUPERVISOR_FAULT").is_ok_and(|f| f.strip_prefix("switch:") == Some(step)) {
        tracing::warn!(step, "fault injection: killing the daemon");
        handle.die();
    }
    #[cfg(not(debug_assertions))]
    let _ = (step, handle);
}

/// Waits 2 s here if the environment asks for it (debug builds).
pub(crate) async fn pause(point: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("TITAN_SUPERVISOR_FAULT").is_ok_and(|f| f.strip_prefix("pause:") == Some(point)) {
        tracing::warn!(point, "fault injection: pausing the switch");
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
    #[cfg(not(debug_assertions))]
    let _ = point;
}
