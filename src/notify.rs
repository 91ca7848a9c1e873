//! systemd's notification protocol (sd_notify(3)) as the supervisor speaks it to whoever
//! started it with `$NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace):
//! `READY=1`, `RELOADING=1` with `MONOTONIC_USEC=`, `STOPPING=1`, `STATUS=`,
//! `EXTEND_TIMEOUT_USEC=` and `WATCHDOG=1` (at the interval `$WATCHDOG_USEC`/`$WATCHDOG_PID`
//! ask for). Every message is one datagram; without `$NOTIFY_SOCKET` nothing is sent. The
//! actor decides when; this module owns what goes on the wire.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Mutex;
use std::time::Duration;

/// Sends `state` (e.g. `READY=1\nSTATUS=...`) to `$NOTIFY_SOCKET`; does nothing without one.
pub(crate) fn send(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let Some(path) = path.to_str() else { return };
    let addr = match path.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
        None => SocketAddr::from_pathname(path),
    };
    let sent = addr.and_then(|addr| UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &addr));
    if let Err(e) = sent {
        tracing::debug!("sd_notify to {path}: {e}");
    }
}

/// The service is up (the initial bring-up settled, or a reload was applied or refused).
pub(crate) fn ready() {
    send(&format!("READY=1\nSTATUS={}", STATUS.lock().unwrap_or_else(|p| p.into_inner()).line()));
}

/// A reload begins: systemd holds the unit in `reloading` until the next `ready()`.
pub(crate) fn reloading() {
    send(&reloading_message(monotonic_usec()));
}

/// A stop begins.
pub(crate) fn stopping() {
    send("STOPPING=1");
}

/// The start (or reload) is still making progress: systemd's timeout moves to `by` from now,
/// if that is later than the unit's own `TimeoutStartSec`.
pub(crate) fn extend_timeout(by: Duration) {
    send(&format!("EXTEND_TIMEOUT_USEC={}", by.as_micros()));
}

/// The keep-alive ping of systemd's watchdog.
pub(crate) fn watchdog() {
    send("WATCHDOG=1");
}

/// How often to ping the watchdog: half of `$WATCHDOG_USEC` (sd_watchdog_enabled(3)), when it is
/// set and `$WATCHDOG_PID` is unset or names this process.
pub(crate) fn watchdog_interval() -> Option<Duration> {
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let pid = std::env::var("WATCHDOG_PID").ok();
    watchdog_interval_of(usec.as_deref(), pid.as_deref(), std::process::id())
}

fn watchdog_interval_of(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    if pid.is_some_and(|p| p.trim().parse::<u32>().ok() != Some(me)) {
        return None;
    }
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    Some(Duration::from_micros(usec / 2))
}

/// What `STATUS=` says: the services' summary, and the deploy step under way if any.
#[derive(Debug, Default)]
struct Status {
    services: String,
    deploy: Option<String>,
    /// The line last sent, so an unchanged status is not sent again.
    sent: String,
}

impl Status {
    fn line(&self) -> String {
        match &self.deploy {
            Some(deploy) if self.services.is_empty() => deploy.clone(),
            Some(deploy) => format!("{deploy} ({})", self.services),
            None => self.services.clone(),
        }
    }

    /// The line to send if it differs from the last one sent.
    fn changed(&mut self) -> Option<String> {
        let line = self.line();
        (line != self.sent).then(|| {
            self.sent.clone_from(&line);
            line
        })
    }
}

/// One status for the process, as `$NOTIFY_SOCKET` is one: the actor and the deploy pipeline
/// (another thread) each own their part of it.
static STATUS: Mutex<Status> =
    Mutex::new(Status { services: String::new(), deploy: None, sent: String::new() });

/// The services' part of `STATUS=` (e.g. `16/16 healthy, release X`), sent if it changed.
pub(crate) fn services_status(services: String) {
    update(|s| s.services = services);
}

/// The deploy's part of `STATUS=` (e.g. `switching to X: verify`); `None` once it ended.
pub(crate) fn deploy_status(deploy: Option<String>) {
    update(|s| s.deploy = deploy);
}

fn update(change: impl FnOnce(&mut Status)) {
    let line = {
        let mut status = STATUS.lock().unwrap_or_else(|p| p.into_inner());
        change(&mut status);
        status.changed()
    };
    if let Some(line) = line {
        send(&format!("STATUS={line}"));
    }
}

fn reloading_message(monotonic_usec: u64) -> String {
    format!("RELOADING=1\nMONOTONIC_USEC={monotonic_usec}")
}

/// CLOCK_MONOTONIC in µs, the clock systemd compares `MONOTONIC_USEC=` with.
fn monotonic_usec() -> u64 {
    use nix::time::{ClockId, clock_gettime};
    clock_gettime(ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        let micros = i128::from(t.tv_sec()) * 1_000_000 + i128::from(t.tv_nsec()) / 1000;
        u64::try_from(micros).unwrap_or(0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_is_pinged_at_half_its_timeout() {
        assert_eq!(watchdog_interval_of(Some("30000000"), None, 7), Some(Duration::from_secs(15)));
        assert_eq!(watchdog_interval_of(Some("400000"), Some("7"), 7), Some(Duration::from_millis(200)));
    }

    #[test]
    fn a_watchdog_meant_for_another_process_or_unset_is_not_ours() {
        assert_eq!(watchdog_interval_of(Some("400000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval_of(None, None, 7), None);
        assert_eq!(watchdog_interval_of(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval_of(Some("soon"), None, 7), None);
    }

    #[test]
    fn a_reload_carries_the_monotonic_clock() {
        let before = monotonic_usec();
        assert!(before > 0);
        assert_eq!(reloading_message(42), "RELOADING=1\nMONOTONIC_USEC=42");
        assert!(monotonic_usec() >= before);
    }

    #[test]
    fn the_status_names_the_deploy_step_beside_the_services_and_is_sent_only_when_it_changes() {
        let mut s = Status { services: "2/2 healthy, release r1".into(), ..Status::default() };
        assert_eq!(s.changed().as_deref(), Some("2/2 healthy, release r1"));
        assert_eq!(s.changed(), None);
        s.deploy = Some("switching to r2: verify".into());
        assert_eq!(s.changed().as_deref(), Some("switching to r2: verify (2/2 healthy, release r1)"));
        s.deploy = None;
        assert_eq!(s.changed().as_deref(), Some("2/2 healthy, release r1"));
    }
}
