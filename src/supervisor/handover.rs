//! Native services across an upgrade's re-exec, as systemd's daemon-reexec keeps its units: the
//! process keeps its pid, so its services stay its children. The old image hands over every
//! native run that runs — its pid, its output pipes (kept open across the exec), its restarts,
//! uptime and what is left of its startup gate, its notify socket's address, a digest of its
//! definition — in `<state_dir>/handover.json`; the new image takes
//! them up with no restart (their cgroups and pid files as they are), and ends the ones whose
//! definition it no longer has. What the old log thread had not read stays in the pipes; a line
//! it had half read is written as a piece the new one continues.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::actor::{Owner, Supervisor};
use super::definition::Native;
use super::fsm::State;
use super::run::{Run, RunKind};
use super::service::Service;
use crate::runtime::files;

const FILE: &str = "handover.json";

/// How long the old log thread gets to stop reading the pipes it hands over.
const STOP_READING: Duration = Duration::from_secs(1);

#[derive(Debug, Serialize, Deserialize)]
struct Handover {
    /// The process that wrote it: only its own next image takes it up.
    supervisor: u32,
    services: Vec<Handed>,
}

/// One native run handed over.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Handed {
    service: String,
    pid: i32,
    out: RawFd,
    err: RawFd,
    oom_base: u64,
    restarts: u32,
    /// How long it had run when handed over.
    up_ms: u64,
    /// Still in its startup gate: how long the gate had left.
    #[serde(default)]
    gate_left_ms: Option<u64>,
    /// The address of its notify socket (`NOTIFY_SOCKET`), which it may still send READY=1 to.
    #[serde(default)]
    notify: Option<String>,
    digest: String,
}

impl Handed {
    pub(crate) fn pid(&self) -> i32 {
        self.pid
    }
}

/// Whether a service's run is one an upgrade hands over: a native process that runs, up or in
/// its startup gate (not one being stopped).
pub(crate) fn handed_over(svc: &Service) -> bool {
    let native = svc.run.as_ref().is_some_and(|r| matches!(r.kind, RunKind::Native { .. }));
    let running =
        matches!(svc.life.state, State::Starting { .. } | State::Healthy { .. } | State::Unhealthy { .. });
    native && running
}

/// What a definition's launch is, as a digest: a run handed over is taken up only by the same.
fn digest(native: &Native) -> String {
    Sha256::digest(format!("{native:?}").as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The runs handed over to this very process (by its previous image), taken from `state_dir`
/// (the file is removed).
pub(crate) fn take(state_dir: &Path) -> HashMap<String, Handed> {
    let path = state_dir.join(FILE);
    let mut text = String::new();
    let read = files::open_read(&path).and_then(|f| f.take(16 << 20).read_to_string(&mut text));
    let _ = std::fs::remove_file(&path);
    if read.is_err() {
        return HashMap::new();
    }
    match serde_json::from_str::<Handover>(&text) {
        Ok(h) if h.supervisor == std::process::id() => {
            h.services.into_iter().map(|s| (s.service.clone(), s)).collect()
        }
        Ok(_) => HashMap::new(),
        Err(e) => {
            tracing::warn!("{}: not a handover: {e}", path.display());
            HashMap::new()
        }
    }
}

impl Supervisor {
    /// The old image, about to execute the new one: the log thread stops reading the kept
    /// runs' pipes, which are left open across the exec, and the runs are written down.
    pub(super) fn hand_over(&mut self) {
        self.logs.hand_over(STOP_READING);
        let mut services = Vec::new();
        for svc in &mut self.services {
            if !handed_over(svc) {
                continue;
            }
            let (Some(run), Some(native)) = (svc.run.take(), svc.def.native()) else { continue };
            let RunKind::Native { pid, oom_base, output: [out, err] } = run.kind else { continue };
            let up_ms = svc.life.state.running_since().map_or(0, |t| t.elapsed().as_millis() as u64);
            services.push(Handed {
                service: svc.name.clone(),
                pid: pid.as_raw(),
                out: inherited(out),
                err: inherited(err),
                oom_base,
                restarts: svc.life.restarts,
                up_ms,
                gate_left_ms: match svc.life.state {
                    State::Starting { gate_until, .. } => {
                        Some(gate_until.saturating_duration_since(Instant::now()).as_millis() as u64)
                    }
                    _ => None,
                },
                notify: svc.notify.as_ref().map(|b| b.addr.clone()),
                digest: digest(native),
            });
        }
        let handover = Handover { supervisor: std::process::id(), services };
        let path = self.settings.state_dir.join(FILE);
        let written = files::create_new(&path, 0o600)
            .and_then(|mut f| f.write_all(serde_json::to_string(&handover).unwrap_or_default().as_bytes()));
        match written {
            Ok(()) => tracing::info!(services = handover.services.len(), "native services handed over"),
            Err(e) => tracing::error!(
                "cannot write {}: {e}: the new image will not know its services",
                path.display()
            ),
        }
    }

    /// The new image: takes up the run handed over for service `i`, or ends it when the
    /// service's definition is not the one it was started with.
    pub(super) fn take_up(&mut self, i: usize, handed: Handed) {
        let fds = [handed.out, handed.err].map(owned);
        let svc = &self.services[i];
        let same = svc.def.native().is_some_and(|n| digest(n) == handed.digest);
        if !same {
            tracing::info!(service = %svc.name, pid = handed.pid, "its definition changed across the upgrade: restarting it");
            let _ = kill(Pid::from_raw(-handed.pid), Signal::SIGKILL);
            return;
        }
        let [Some(out), Some(err)] = fds else { return };
        let (Ok(out_dup), Ok(err_dup)) = (out.try_clone(), err.try_clone()) else { return };
        let (pid, now) = (Pid::from_raw(handed.pid), Instant::now());
        let gate = handed.gate_left_ms.map(|ms| super::fsm::after(now, Duration::from_millis(ms)));
        let generation = self.services[i].next_generation();
        let mut run =
            Run::new(generation, RunKind::Native { pid, oom_base: handed.oom_base, output: [out, err] });
        // a run still in its gate goes on waiting for its check: probes, its log line, READY=1
        // at the address it was given
        run.log_armed = self.new_log_arming(i);
        run.log_armed.store(gate.is_some(), std::sync::atomic::Ordering::Release);
        let health = &self.services[i].def.config.health;
        let every = if gate.is_some() { health.start_interval.0 } else { health.interval.0 };
        if health.check.is_polled() {
            run.probe.next = Some(super::fsm::after(now, every));
        }
        let watch = self.log_watch(i, generation, &run.log_armed);
        self.logs.capture(out_dup, err_dup, self.services[i].log.clone(), watch);
        self.bind_notify_at(i, handed.notify.as_deref());
        self.owners.insert(pid, Owner::Service { slot: i, run: generation });
        if let Err(e) = super::leftovers::record(&self.pid_dir(), &self.services[i].name, pid) {
            tracing::warn!(service = %self.services[i].name, "cannot write its pid file: {e}");
        }
        let svc = &mut self.services[i];
        let since = now.checked_sub(Duration::from_millis(handed.up_ms)).unwrap_or(now);
        svc.life.state = match gate {
            Some(gate_until) => State::Starting { since, gate_until },
            None => State::Healthy { since },
        };
        svc.life.restarts = handed.restarts;
        svc.run = Some(run);
        tracing::info!(service = %svc.name, pid = handed.pid, "taken up across the upgrade, still running");
    }
}

impl Supervisor {
    /// A run taken up keeps its notify socket's address: bound again there (the old image's
    /// socket closed at the exec), in place of the one its service was just given.
    fn bind_notify_at(&mut self, i: usize, addr: Option<&str>) {
        let svc = &self.services[i];
        let (Some(addr), true) = (addr, svc.def.notify) else { return };
        let name = addr.trim_start_matches('@').to_owned();
        match super::notify::bind_at(name, i, svc.def.uid(), self.tx.clone()) {
            Ok(binding) => self.services[i].notify = Some(binding),
            Err(e) => tracing::warn!(service = %self.services[i].name, "cannot bind {addr} again: {e}"),
        }
    }
}

/// A pipe's read end left open across the exec (no close-on-exec), by number.
fn inherited(fd: OwnedFd) -> RawFd {
    let raw = fd.into_raw_fd();
    // SAFETY: `raw` was just released from its OwnedFd: it stays open, owned by the next image.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(raw) };
    let _ = fcntl(borrowed, FcntlArg::F_SETFD(FdFlag::empty()));
    raw
}

/// A descriptor the previous image left open, owned (close-on-exec again), if it is one.
fn owned(raw: RawFd) -> Option<OwnedFd> {
    if raw < 3 {
        return None;
    }
    // SAFETY: the previous image left `raw` open for us and nothing else here owns it; it is
    // checked to be open before it is taken.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(raw) };
    fcntl(borrowed, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).ok()?;
    // SAFETY: as above; from here on the OwnedFd closes it.
    Some(unsafe { OwnedFd::from_raw_fd(raw) })
}
