//! Health checks as the actor runs them: http and tcp probes as short tasks, exec probes as
//! children of the one spawner and reaper, `log` checks armed on the output capture, and
//! `notify` sockets. Probes run every `start_interval` during the startup gate and every
//! `interval` after it; every result comes back to the actor as a message.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::actor::{Msg, Owner, Supervisor};
use super::fsm::{Event, Exit, State};
use crate::config::Check;
use crate::health;
use crate::logs::capture::Watch;
use crate::runtime::spawn;

impl Supervisor {
    /// Arms or disarms probes when a service's state changes.
    pub(super) fn schedule_probes(&mut self, i: usize, from: &State, now: Instant) {
        let slot = &mut self.slots[i];
        let polled = matches!(slot.svc.health.check, Check::Http(_) | Check::Tcp(_) | Check::Exec(_));
        match &slot.life.state {
            State::Starting { .. } if !matches!(from, State::Starting { .. }) => {
                // (a `log` check is armed before the spawn: see `log_watch`)
                slot.probe.next = polled.then(|| now + slot.svc.health.start_interval.0);
            }
            State::Healthy { since } if matches!(from, State::Starting { .. }) => {
                slot.ready_after = Some(now.saturating_duration_since(*since));
                slot.probe.next = polled.then(|| now + slot.svc.health.interval.0);
                slot.log_armed.store(false, Ordering::Release);
            }
            State::Healthy { .. } | State::Unhealthy { .. } => {}
            _ => {
                slot.probe.next = None;
                slot.log_armed.store(false, Ordering::Release);
            }
        }
    }

    /// Launches a due probe and kills an exec probe past its timeout.
    pub(super) fn probe_timers(&mut self, i: usize, now: Instant) {
        if let Some((pid, at)) = self.slots[i].probe.exec {
            if at <= now {
                let _ = kill(Pid::from_raw(-pid.as_raw()), Signal::SIGKILL);
            }
        }
        let probe = &self.slots[i].probe;
        if probe.next.is_some_and(|at| at <= now) && !probe.in_flight {
            if self.container_starting(i) {
                // nothing to probe before the container runs (and its port is docker-proxy's)
                let slot = &mut self.slots[i];
                slot.probe.next = Some(now + slot.svc.health.start_interval.0);
                return;
            }
            self.launch_probe(i);
        }
    }

    /// An http check of a container aimed at a published port, aimed at the container itself.
    fn direct_uri(&self, i: usize, uri: &http::Uri) -> Option<http::Uri> {
        let port = uri.port_u16().unwrap_or(80);
        let direct = self.direct_probe_addr(i, uri.host()?, port)?;
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        format!("{}://{direct}{path}", uri.scheme_str().unwrap_or("http")).parse().ok()
    }

    fn launch_probe(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        slot.probe.next = None;
        slot.probe.in_flight = true;
        slot.probe.launched = Some(Instant::now());
        let (run, timeout, tx) = (slot.run, slot.svc.health.timeout.0, self.tx.clone());
        let slot = &self.slots[i];
        match &slot.svc.health.check {
            Check::Http(uri) => {
                let uri = self.direct_uri(i, uri).unwrap_or_else(|| uri.clone());
                tokio::spawn(async move {
                    let ok = health::http::probe(&uri, timeout).await.is_ok();
                    let _ = tx.send(Msg::Probe { slot: i, run, ok });
                });
            }
            Check::Tcp(addr) => {
                let direct = addr
                    .rsplit_once(':')
                    .and_then(|(h, p)| self.direct_probe_addr(i, h, p.parse().ok()?))
                    .map(|a| a.to_string());
                let addr = direct.unwrap_or_else(|| addr.clone());
                tokio::spawn(async move {
                    let ok = health::tcp::probe(&addr, timeout).await.is_ok();
                    let _ = tx.send(Msg::Probe { slot: i, run, ok });
                });
            }
            Check::Exec(argv) if slot.container.is_some() => {
                let (argv, id, engine) = (argv.clone(), self.container_id(i), self.engine.clone());
                tokio::spawn(async move {
                    let ok = match (engine, id) {
                        (Some(engine), Some(id)) => {
                            crate::runtime::docker::exec::probe(engine.docker(), &id, &argv, timeout).await
                                == Ok(true)
                        }
                        _ => false,
                    };
                    let _ = tx.send(Msg::Probe { slot: i, run, ok });
                });
            }
            Check::Exec(argv) => {
                let argv = argv.clone();
                self.launch_exec_probe(i, &argv);
            }
            Check::None | Check::Log(_) | Check::Notify => self.slots[i].probe.in_flight = false,
        }
    }

    /// Runs an exec check as a child of ours (reaped like any other), with the service's
    /// environment, directory and user, its output discarded.
    fn launch_exec_probe(&mut self, i: usize, argv: &[String]) {
        let slot = &self.slots[i];
        let env = slot.environment();
        let cmd = spawn::Command {
            argv,
            env: &env,
            cwd: slot.cwd(),
            credentials: slot.credentials.as_ref(),
            cgroup_join: &[],
            stdout: None,
            stderr: None,
        };
        let run = slot.run;
        match spawn::spawn(cmd) {
            Ok(pid) => {
                self.owners.insert(pid, Owner::Probe { slot: i, run });
                self.slots[i].probe.exec = Some((pid, Instant::now() + self.slots[i].svc.health.timeout.0));
            }
            Err(e) => {
                tracing::warn!(service = %self.slots[i].name, "exec health check cannot start: {e}");
                self.on_probe(i, run, false);
            }
        }
    }

    pub(super) fn on_exec_probe_exit(&mut self, i: usize, run: u64, exit: Exit) {
        self.slots[i].probe.exec = None;
        self.on_probe(i, run, exit == Exit::Code(0));
    }

    /// A probe result: schedules the next probe and tells the state machine.
    pub(super) fn on_probe(&mut self, i: usize, run: u64, ok: bool) {
        let slot = &mut self.slots[i];
        // At most one probe is in flight, so this result is that one's even when it is from an
        // earlier run: clear the flag before dropping a stale result, or the new run is never
        // probed again.
        slot.probe.in_flight = false;
        let launched = slot.probe.launched.take();
        if run != slot.run {
            return;
        }
        if let Some(at) = launched {
            self.metrics.probed(&slot.name, at.elapsed().as_secs_f64(), ok);
        }
        let slot = &mut self.slots[i];
        let health = &slot.svc.health;
        let every = match slot.life.state {
            State::Starting { .. } => health.start_interval.0,
            State::Healthy { .. } | State::Unhealthy { .. } => health.interval.0,
            _ => return,
        };
        slot.probe.next = Some(Instant::now() + every);
        self.apply(i, if ok { Event::Ready } else { Event::ProbeFailed });
    }

    /// READY=1 or the awaited log line: only a service in its startup gate cares.
    pub(super) fn on_ready(&mut self, i: usize, run: Option<u64>) {
        let slot = &self.slots[i];
        if run.is_some_and(|r| r != slot.run) || !matches!(slot.life.state, State::Starting { .. }) {
            return;
        }
        self.apply(i, Event::Ready);
    }

    /// The output watch of a run whose health check is a `log` pattern, armed already: the
    /// output is read on the log thread and may show the line before the actor moves on.
    pub(super) fn log_watch(&self, i: usize) -> Option<Watch> {
        let slot = &self.slots[i];
        let pattern = slot.log_pattern.clone()?;
        slot.log_armed.store(matches!(slot.life.state, State::Starting { .. }), Ordering::Release);
        let (tx, run) = (self.tx.clone(), slot.run);
        Some(Watch {
            pattern,
            armed: Arc::clone(&slot.log_armed),
            on_match: Arc::new(move || {
                let _ = tx.send(Msg::Ready { slot: i, run: Some(run) });
            }),
        })
    }

    /// Binds the notify socket of every `notify = true` service and forwards READY=1.
    pub(super) fn bind_notify_sockets(&mut self) -> std::io::Result<()> {
        let dir = self.cfg.supervisor.state_dir.join("notify");
        for i in 0..self.slots.len() {
            if !matches!(self.slots[i].svc.health.check, Check::Notify) {
                continue;
            }
            crate::logs::writer::create_dir(&dir)?;
            let path = dir.join(format!("{}.sock", self.slots[i].name));
            let socket = health::notify::NotifySocket::bind(&path)?;
            self.slots[i].notify_socket = Some(path);
            let tx = self.tx.clone();
            tokio::spawn(async move {
                while let Ok(n) = socket.recv().await {
                    if n.ready && tx.send(Msg::Ready { slot: i, run: None }).is_err() {
                        break;
                    }
                }
            });
        }
        Ok(())
    }
}
