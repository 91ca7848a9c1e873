//! The supervisor's descriptor limit: its soft RLIMIT_NOFILE is raised to the hard limit at
//! start, as systemd does for itself, so that the pipes, log files and probes of hundreds of
//! services and the control socket's clients fit; the services themselves get back the soft
//! limit the supervisor was started with (many programs still assume 1024 for select()).

use std::sync::OnceLock;

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// The soft limit the supervisor started with, for its services.
static STARTED_WITH: OnceLock<u64> = OnceLock::new();

/// Raises the soft limit to the hard one; returns both as they are now.
pub fn raise_nofile() -> nix::Result<(u64, u64)> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let _ = STARTED_WITH.set(soft);
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok((hard, hard))
}

/// The soft limit a service gets: the one the supervisor was started with, when it raised its
/// own (`None`: it did not, the service inherits the supervisor's).
pub fn services_soft() -> Option<u64> {
    STARTED_WITH.get().copied()
}
