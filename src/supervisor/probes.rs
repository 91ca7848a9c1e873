//! Health checks as the actor runs them: http and tcp probes as short tasks, exec probes as
//! children of the one spawner and reaper (or through Docker's exec API, inside a container),
//! `log` checks armed on the output capture. Probes run every `start_interval` during the
//! startup gate and every `interval` after it; their schedule is the current run's, and every
//! result comes back to the actor as a message naming the run it is for.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::actor::{Owner, Supervisor};
use super::fsm::{Event, State, after};
use super::handle::Msg;
use crate::config::Check;
use crate::health;
use crate::logs::capture::Watch;
use crate::runtime::exit::Exit;
use crate::runtime::spawn;

impl Supervisor {
    /// Moves the current run's probes to the new state: every `interval` once healthy, none
    /// once it is on its way down.
    pub(super) fn schedule_probes(&mut self, i: usize, from: &State, now: Instant) {
        let svc = &mut self.services[i];
        let health = &svc.def.config.health;
        let polled = health.check.is_polled();
        let (interval, state) = (health.interval.0, &svc.life.state);
        if let State::Healthy { since } = state
            && matches!(from, State::Starting { .. })
        {
            svc.ready_after = Some(now.saturating_duration_since(*since));
        }
        let Some(run) = svc.run.as_mut() else { return };
        match state {
            State::Starting { .. } => {}
            State::Healthy { .. } if matches!(from, State::Starting { .. }) => {
                run.probe.next = polled.then(|| after(now, interval));
                run.log_armed.store(false, Ordering::Release);
            }
            State::Healthy { .. } | State::Unhealthy { .. } => {}
            _ => {
                run.probe.next = None;
                run.log_armed.store(false, Ordering::Release);
            }
        }
    }

    /// Launches a due probe and kills an exec probe past its timeout.
    pub(super) fn probe_timers(&mut self, i: usize, now: Instant) {
        let svc = &mut self.services[i];
        let start_interval = svc.def.config.health.start_interval.0;
        let Some(run) = svc.run.as_mut() else { return };
        if let Some((pid, at)) = run.probe.exec
            && at <= now
        {
            let _ = kill(Pid::from_raw(-pid.as_raw()), Signal::SIGKILL);
        }
        if run.probe.next.is_some_and(|at| at <= now) && run.probe.in_flight.is_none() {
            if run.awaiting_container() {
                // nothing to probe before the container runs (and its port is docker-proxy's)
                run.probe.next = Some(after(now, start_interval));
                return;
            }
            self.launch_probe(i, now);
        }
    }

    fn launch_probe(&mut self, i: usize, now: Instant) {
        let svc = &mut self.services[i];
        let Some(run) = svc.run.as_mut() else { return };
        run.probe.next = None;
        run.probe.in_flight = Some(now);
        let (generation, timeout, tx) = (run.generation, svc.def.config.health.timeout.0, self.tx.clone());
        let svc = &self.services[i];
        let report = move |ok| drop(tx.send(Msg::Probe { slot: i, run: generation, ok }));
        match &svc.def.config.health.check {
            // a container's published port is probed at the container first (it listens), then
            // at the address the config names (the port is reachable from outside: it is not
            // while docker-proxy is down with dockerd)
            Check::Http(uri) => {
                let direct = direct_uri(svc, uri);
                let published = match &direct {
                    Some((_, false)) => None,
                    _ => Some(uri.clone()),
                };
                tokio::spawn(async move {
                    let direct_ok = match &direct {
                        Some((d, _)) => health::http::probe(d, timeout).await.is_ok(),
                        None => true,
                    };
                    let named_ok = match &published {
                        Some(p) => direct_ok && health::http::probe(p, timeout).await.is_ok(),
                        None => direct_ok,
                    };
                    report(named_ok)
                });
            }
            Check::Tcp(addr) => {
                let direct = addr.rsplit_once(':').and_then(|(h, p)| svc.probe_target(h, p.parse().ok()?));
                let published = direct.as_ref().is_none_or(|d| d.published).then(|| addr.clone());
                tokio::spawn(async move {
                    let direct_ok = match &direct {
                        Some(d) => health::tcp::probe(&d.addr.to_string(), timeout).await.is_ok(),
                        None => true,
                    };
                    let named_ok = match &published {
                        Some(p) => direct_ok && health::tcp::probe(p, timeout).await.is_ok(),
                        None => direct_ok,
                    };
                    report(named_ok)
                });
            }
            Check::Exec(argv) if svc.container().is_some() => {
                let id = svc.run.as_ref().and_then(|r| r.container_id()).map(str::to_owned);
                let docker = self.engine.as_ref().map(|e| e.docker().clone());
                let (Some(id), Some(docker)) = (id, docker) else { return report(false) };
                let argv = argv.clone();
                tokio::spawn(async move {
                    report(
                        crate::runtime::docker::exec::probe(&docker, &id, &argv, timeout)
                            .await
                            .is_ok_and(|ok| ok),
                    )
                });
            }
            Check::Exec(argv) => {
                let argv = argv.clone();
                self.launch_exec_probe(i, generation, &argv);
            }
            Check::None | Check::Log(_) | Check::Notify => {
                if let Some(run) = self.services[i].run.as_mut() {
                    run.probe.in_flight = None;
                }
            }
        }
    }

    /// Runs an exec check as a child of ours (reaped like any other), with the service's
    /// environment, directory and user, its output discarded.
    fn launch_exec_probe(&mut self, i: usize, generation: u64, argv: &[String]) {
        let svc = &self.services[i];
        let Some(native) = svc.def.native() else { return self.on_probe(i, generation, false) };
        let env = native.environment(svc.notify.as_ref().map(|b| b.addr.as_str()));
        let cmd = spawn::Command {
            argv,
            name: argv.first().map_or("", String::as_str),
            env: &env,
            cwd: native.cwd.as_deref(),
            credentials: native.credentials.as_ref(),
            cgroup_join: &[],
            stdout: None,
            stderr: None,
        };
        match spawn::spawn(cmd) {
            Ok(pid) => {
                self.owners.insert(pid, Owner::Probe { slot: i, run: generation });
                let deadline = after(Instant::now(), self.services[i].def.config.health.timeout.0);
                if let Some(run) = self.services[i].run.as_mut() {
                    run.probe.exec = Some((pid, deadline));
                }
            }
            Err(e) => {
                tracing::warn!(service = %self.services[i].name, "exec health check cannot start: {e}");
                self.on_probe(i, generation, false);
            }
        }
    }

    pub(super) fn on_exec_probe_exit(&mut self, i: usize, generation: u64, exit: Exit) {
        if let Some(run) = self.services[i].run.as_mut().filter(|r| r.generation == generation) {
            run.probe.exec = None;
        }
        self.on_probe(i, generation, exit.success());
    }

    /// A probe result for run `generation`: schedules the next probe and tells the state
    /// machine. A result of an earlier run is dropped (that run and its schedule are gone).
    pub(super) fn on_probe(&mut self, i: usize, generation: u64, ok: bool) {
        let svc = &mut self.services[i];
        let Some(run) = svc.run.as_mut().filter(|r| r.generation == generation) else { return };
        let launched = run.probe.in_flight.take();
        if let Some(at) = launched {
            self.metrics.probed(&svc.name, at.elapsed().as_secs_f64(), ok);
        }
        let health = &svc.def.config.health;
        let every = match svc.life.state {
            State::Starting { .. } => health.start_interval.0,
            State::Healthy { .. } | State::Unhealthy { .. } => health.interval.0,
            _ => return,
        };
        run.probe.next = Some(after(Instant::now(), every));
        self.apply(i, if ok { Event::Ready } else { Event::ProbeFailed });
    }

    /// READY=1 or the awaited log line: only a service in its startup gate cares.
    pub(super) fn on_ready(&mut self, i: usize, generation: Option<u64>) {
        let svc = &self.services[i];
        let stale = generation.is_some_and(|g| !svc.is_current(g));
        if stale || !matches!(svc.life.state, State::Starting { .. }) {
            return;
        }
        self.apply(i, Event::Ready);
    }

    /// The output watch of run `generation` when the check is a `log` pattern, armed by
    /// `armed` (the run's own).
    pub(super) fn log_watch(&self, i: usize, generation: u64, armed: &Arc<AtomicBool>) -> Option<Watch> {
        let pattern = self.services[i].def.log_pattern.clone()?;
        let tx = self.tx.clone();
        Some(Watch {
            pattern,
            armed: Arc::clone(armed),
            on_match: Arc::new(move || {
                let _ = tx.send(Msg::Ready { slot: i, run: Some(generation) });
            }),
        })
    }
}

/// An http check of a container aimed at a published port, aimed at the container itself.
/// The container's own address for an HTTP probe of `uri`, and whether `uri` is published.
fn direct_uri(svc: &super::service::Service, uri: &http::Uri) -> Option<(http::Uri, bool)> {
    let port = uri.port_u16().unwrap_or(80);
    let direct = svc.probe_target(uri.host()?, port)?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let at = format!("{}://{}{path}", uri.scheme_str().unwrap_or("http"), direct.addr).parse().ok()?;
    Some((at, direct.published))
}
