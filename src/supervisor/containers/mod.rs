//! Container services in the actor: the same state machine, gates and restarts as native
//! ones, with Docker calls done by one worker task per service (so a start, its signals and a
//! recreate happen in order) and every outcome coming back as a message. Containers are
//! prepared ahead — pulled, created, or adopted when already running with the same spec — so
//! a start is only `docker start`; deaths come from the events stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

mod worker;

use worker::{Op, Worker};

use super::actor::{Msg, Supervisor};
use super::fsm::{Event, Exit, State};
use crate::runtime::docker::engine::Prepared;
use crate::runtime::docker::events::Notice;
use crate::runtime::docker::logs::{self as clogs, Cursor, SharedCursor};
use crate::runtime::docker::{self, ContainerSpec, Engine, Running};

/// How close to dockerd going away (or coming back) a container's end must be to count as
/// caused by it.
const DOCKERD_WINDOW: Duration = Duration::from_secs(30);

/// A container service's side of its slot.
pub struct ContainerSlot {
    pub spec: ContainerSpec,
    pub prep: Prep,
    /// The container of the current run, once started (or adopted).
    pub running: Option<Running>,
    /// Where its log stands, shared with the log stream of the current run.
    pub cursor: SharedCursor,
    worker: Option<mpsc::UnboundedSender<Op>>,
    /// When its last container ended: one that ended as dockerd went away is started again
    /// once dockerd is back, whatever its exit code.
    ended_at: Option<Instant>,
    /// The run whose log stream is open (0: none).
    following: Arc<AtomicU64>,
    /// What Docker has said about the current run's container.
    news: RunNews,
}

/// What Docker has said about the container of one run, from its start request on.
#[derive(Debug, Default)]
struct RunNews {
    /// Wall-clock nanoseconds when the run's start was asked for: Docker events from before
    /// belong to an earlier run.
    since_nanos: i64,
    /// A `die` that came before the start was reported.
    early_death: Option<Death>,
    /// The kernel OOM-killed something in the container (Docker's `oom` event).
    oom_killed: bool,
    /// It died by SIGKILL under a memory cap and Docker is being asked whether that was the
    /// OOM killer (the `oom` event may come after the `die`, or not at all).
    dying: bool,
}

/// A container's death as Docker's events stream reported it.
#[derive(Clone, Debug)]
struct Death {
    id: String,
    at_nanos: i64,
    exit: Exit,
}

impl RunNews {
    /// How the container of a start just reported had already ended: seen so by the inspect
    /// after the start, or reported by a `die` that overtook the report.
    fn ended_early(&mut self, running: &Running) -> Option<Exit> {
        if let Some((code, oom)) = running.ended {
            self.oom_killed |= oom;
            return Some(worker::exit_of(code));
        }
        let death = self.early_death.take()?;
        (death.id == running.id && death.at_nanos >= running.started_nanos).then_some(death.exit)
    }
}

/// How far ahead the container is prepared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prep {
    /// Waiting for dockerd, or being pulled and created.
    Waiting,
    /// Created: a start is `docker start`.
    Ready,
    /// Found running with the same spec: the next start adopts it.
    Adopt(Running),
    Failed(String),
}

impl ContainerSlot {
    pub fn new(spec: ContainerSpec, log_dir: &std::path::Path) -> Self {
        let cursor = Cursor::of_log(&log_dir.join(&spec.service), &spec.service);
        ContainerSlot {
            spec,
            prep: Prep::Waiting,
            running: None,
            cursor: SharedCursor::new(cursor.into()),
            worker: None,
            ended_at: None,
            following: Arc::default(),
            news: RunNews::default(),
        }
    }

    /// Whether Docker enforces a memory limit on it (an OOM kill is possible).
    fn capped(&self) -> bool {
        self.spec.body.host_config.as_ref().and_then(|h| h.memory).is_some_and(|m| m > 0)
    }

    fn send(&self, op: Op) {
        if let Some(w) = &self.worker {
            let _ = w.send(op);
        }
    }
}

/// What reaches the actor from Docker.
pub enum Report {
    Connected(Engine),
    Prepared {
        slot: usize,
        result: Result<Prepared, String>,
    },
    Started {
        slot: usize,
        run: u64,
        result: Result<Running, String>,
    },
    Exited {
        slot: usize,
        run: u64,
        exit: Exit,
        oom: bool,
    },
    /// Checked after dockerd came back: still running.
    Alive {
        slot: usize,
        run: u64,
    },
    Stream(Notice),
}

fn tell(tx: &mpsc::UnboundedSender<Msg>, report: Report) -> bool {
    tx.send(Msg::Docker(report)).is_ok()
}

impl Supervisor {
    fn has_containers(&self) -> bool {
        self.slots.iter().any(|s| s.container.is_some())
    }

    /// Connects to dockerd in the background (retrying while it is away) when any service is
    /// a container.
    pub(super) fn connect_docker(&mut self) {
        if !self.has_containers() {
            return;
        }
        let (host, project, tx) =
            (self.cfg.supervisor.docker_host.clone(), self.cfg.supervisor.project.clone(), self.tx.clone());
        tokio::spawn(async move {
            let docker = docker::connect_with_retry(&host).await;
            tracing::info!(host, version = %docker.client_version(), "connected to dockerd");
            tell(&tx, Report::Connected(Engine::new(docker, &project)));
        });
    }

    pub(super) fn on_docker(&mut self, report: Report) {
        match report {
            Report::Connected(engine) => self.on_connected(engine),
            Report::Prepared { slot, result } => self.on_prepared(slot, result),
            Report::Started { slot, run, result } => self.on_started(slot, run, result),
            Report::Exited { slot, run, exit, oom } => self.container_ended(slot, run, exit, oom),
            // died, yet running when inspected: started again behind our back; its death stands
            Report::Alive { slot, run } if self.container_of(slot).is_some_and(|c| c.news.dying) => {
                self.container_ended(slot, run, Exit::Signal(9), false)
            }
            Report::Alive { slot, run } if self.slots[slot].run == run => self.follow_logs(slot, None),
            Report::Alive { .. } => {}
            Report::Stream(notice) => self.on_stream(notice),
        }
        self.mark_dirty();
    }

    /// The container of run `run` of service `i` ended (once: later news of it is ignored).
    fn container_ended(&mut self, i: usize, run: u64, exit: Exit, oom: bool) {
        let slot = &mut self.slots[i];
        let Some(c) = slot.container.as_mut().filter(|c| c.running.is_some() && slot.run == run) else {
            return;
        };
        c.running = None;
        c.ended_at = Some(Instant::now());
        self.logs.note(&slot.log, format!("container ended: {exit}"));
        self.apply(i, Event::Exited { exit, oom });
        if self.docker_back_since.is_some_and(|at| at.elapsed() < DOCKERD_WINDOW) {
            self.resume(i);
        }
    }

    fn container_of(&self, i: usize) -> Option<&ContainerSlot> {
        self.slots[i].container.as_ref()
    }

    /// dockerd answers: follow its events, remove orphans, and prepare every container.
    fn on_connected(&mut self, engine: Engine) {
        let (host, project, tx) =
            (self.cfg.supervisor.docker_host.clone(), self.cfg.supervisor.project.clone(), self.tx.clone());
        let events_docker = engine.docker().clone();
        tokio::spawn(docker::events::follow(host, events_docker, project, move |n| {
            tell(&tx, Report::Stream(n))
        }));
        let keep: Vec<String> = self
            .slots
            .iter()
            .filter(|s| s.container.is_some() && !s.retired)
            .map(|s| s.name.clone())
            .collect();
        let orphans = engine.clone();
        tokio::spawn(async move {
            if let Err(e) = orphans.remove_orphans(&keep).await {
                tracing::warn!("cannot remove containers no longer in the config: {e}");
            }
        });
        self.engine = Some(engine);
        for i in 0..self.slots.len() {
            if self.slots[i].container.is_some() && !self.slots[i].retired {
                self.start_worker(i);
            }
        }
    }

    /// A worker for slot `i`, preparing its container first.
    pub(super) fn start_worker(&mut self, i: usize) {
        let Some(engine) = self.engine.clone() else { return };
        let gate = self.slots[i].svc.startup_timeout.0;
        let Some(c) = self.slots[i].container.as_mut() else { return };
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(Op::Prepare(Box::new(c.spec.clone())));
        c.worker = Some(tx);
        c.prep = Prep::Waiting;
        let worker = Worker { engine, slot: i, spec: c.spec.clone(), patience: gate, prepared: false };
        tokio::spawn(worker.run(rx, self.tx.clone()));
    }

    /// Prepares the container again with a new definition (a reload changed it).
    pub(super) fn reprepare(&mut self, i: usize, spec: ContainerSpec) {
        if let Some(c) = self.slots[i].container.as_mut() {
            c.spec = spec.clone();
            c.prep = Prep::Waiting;
            c.send(Op::Prepare(Box::new(spec)));
        }
    }

    /// Stops and removes the container of a service a reload removed.
    pub(super) fn remove_container(&mut self, i: usize) {
        if let Some(c) = self.slots[i].container.as_ref() {
            c.send(Op::Remove);
        }
    }

    fn on_prepared(&mut self, i: usize, result: Result<Prepared, String>) {
        let slot = &mut self.slots[i];
        let Some(c) = slot.container.as_mut() else { return };
        c.prep = match result {
            Ok(Prepared::Created) => Prep::Ready,
            Ok(Prepared::Adopted(running)) => {
                tracing::info!(service = %slot.name, id = %short(&running.id), "adopting its running container");
                Prep::Adopt(running)
            }
            Err(e) => {
                tracing::error!(service = %slot.name, "cannot prepare its container: {e}");
                Prep::Failed(e)
            }
        };
        self.start_ready();
    }

    /// Whether a container service may start now (prepared), and why not.
    pub(super) fn container_blocker(&self, s: &super::slot::Slot) -> Option<String> {
        match &s.container.as_ref()?.prep {
            Prep::Ready | Prep::Adopt(_) => None,
            Prep::Waiting if self.engine.is_none() => Some("waiting for dockerd".into()),
            Prep::Waiting => Some("preparing its container (pull, create)".into()),
            // it starts, and its start fails with why (the worker tries preparing again first)
            Prep::Failed(_) => None,
        }
    }

    /// The Spawn action for a container: its worker starts (or adopts) it.
    pub(super) fn container_spawn(&mut self, i: usize) -> Result<(), String> {
        let slot = &mut self.slots[i];
        slot.run += 1;
        let run = slot.run;
        let Some(c) = slot.container.as_mut() else { return Err("not a container".into()) };
        c.news = RunNews { since_nanos: docker::now_nanos(), ..RunNews::default() };
        let adopt = match std::mem::replace(&mut c.prep, Prep::Ready) {
            Prep::Adopt(running) => Some(running),
            _ => None,
        };
        c.send(Op::Start { run, adopt });
        Ok(())
    }

    fn on_started(&mut self, i: usize, run: u64, result: Result<Running, String>) {
        if self.slots[i].run != run {
            return;
        }
        let running = match result {
            Ok(running) => running,
            Err(e) => return self.apply(i, Event::SpawnFailed(e)),
        };
        let watch = self.log_watch(i);
        let slot = &mut self.slots[i];
        let Some(c) = slot.container.as_mut() else { return };

        self.logs.note(
            &slot.log,
            format!(
                "container {} running (host pid {})",
                short(&running.id),
                running.pid.map_or("?".into(), |p| p.to_string())
            ),
        );
        let ended = c.news.ended_early(&running);
        c.running = Some(running);
        // a new run gets a stream of its own (the last run's ends with its container)
        c.following.store(0, Ordering::Release);
        self.follow_logs(i, watch);
        if let Some(exit) = ended {
            return self.container_died(i, exit);
        }
        // with no health check, running is ready; with one, probe at once
        let slot = &mut self.slots[i];
        if matches!(slot.svc.health.check, crate::config::Check::None) {
            self.apply(i, Event::Ready);
        } else if slot.probe.next.is_some() {
            slot.probe.next = Some(Instant::now());
        }
        // stopped meanwhile: the stop signal went out before the container ran
        if matches!(self.slots[i].life.state, State::Stopping { .. }) {
            self.container_signal(i, self.slots[i].svc.stop_signal.0);
        }
    }

    /// Streams the running container's output into its log from the cursor on, unless a
    /// stream already does (after dockerd came back, a container that survived it needs one).
    fn follow_logs(&mut self, i: usize, watch: Option<crate::logs::capture::Watch>) {
        let slot = &self.slots[i];
        let (Some(c), Some(engine)) = (slot.container.as_ref(), &self.engine) else { return };
        let Some(running) = &c.running else { return };
        let run = slot.run;
        if c.following.compare_exchange(0, run, Ordering::AcqRel, Ordering::Acquire).is_err() {
            return;
        }
        let following = Arc::clone(&c.following);
        let stream = clogs::follow(
            engine.docker().clone(),
            running.id.clone(),
            slot.log.clone(),
            c.cursor.clone(),
            watch,
        );
        self.logs.spawn_reader(async move {
            stream.await;
            let _ = following.compare_exchange(run, 0, Ordering::AcqRel, Ordering::Acquire);
        });
    }

    /// The stop signal or SIGKILL for a container service.
    pub(super) fn container_signal(&self, i: usize, sig: nix::sys::signal::Signal) {
        if let Some(c) = self.container_of(i) {
            c.send(Op::Signal { run: self.slots[i].run, sig: sig.as_str().to_owned() });
        }
    }

    /// The service whose container is called `name`, when `at_nanos` (an event's time) is in
    /// its current run.
    fn container_named(&self, name: &str, at_nanos: i64) -> Option<usize> {
        self.slots.iter().position(|s| {
            s.container.as_ref().is_some_and(|c| c.spec.name == name && at_nanos >= c.news.since_nanos)
        })
    }

    /// A `die` from Docker: the current container's death, or kept until the start that ran it
    /// is reported.
    fn on_died(&mut self, name: &str, death: Death) {
        let Some(i) = self.container_named(name, death.at_nanos) else { return };
        let Some(c) = self.slots[i].container.as_mut() else { return };
        match &c.running {
            Some(r) if r.id == death.id && death.at_nanos >= r.started_nanos => {
                self.container_died(i, death.exit)
            }
            Some(_) => {}
            None => c.news.early_death = Some(death),
        }
    }

    fn on_stream(&mut self, notice: Notice) {
        match notice {
            Notice::Died { id, name, at_nanos, exit_code } => {
                let death = Death { id, at_nanos, exit: worker::exit_of(exit_code.unwrap_or(-1)) };
                self.on_died(&name, death);
            }
            Notice::Oom { name, at_nanos } => {
                let Some(i) = self.container_named(&name, at_nanos) else { return };
                let run = self.slots[i].run;
                let Some(c) = self.slots[i].container.as_mut() else { return };
                c.news.oom_killed = true;
                if c.news.dying {
                    self.container_ended(i, run, Exit::Signal(9), true);
                }
            }
            Notice::Lost(e) => {
                tracing::warn!("lost dockerd ({e}); reconnecting");
                self.docker_lost_at = Some(Instant::now());
            }
            Notice::Back => {
                tracing::info!("dockerd is back: checking every container");
                self.docker_back_since = Some(Instant::now());
                // what dockerd stopped on its way down is started again
                let lost = self.docker_lost_at.unwrap_or_else(Instant::now);
                for i in 0..self.slots.len() {
                    let ended = self.container_of(i).and_then(|c| c.ended_at);
                    if ended.is_some_and(|t| t + DOCKERD_WINDOW > lost) {
                        self.resume(i);
                    }
                }
                for i in 0..self.slots.len() {
                    let run = self.slots[i].run;
                    if let Some(c) = self.container_of(i)
                        && let Some(r) = &c.running
                    {
                        c.send(Op::Check { run, id: r.id.clone() });
                    }
                }
            }
        }
    }

    /// Docker reported the death of service `i`'s container. Usually the `oom` event came
    /// first and the death applies at once; a SIGKILL under a memory cap with no `oom` seen
    /// waits for whichever answers first, the `oom` event or an inspect of State.OOMKilled.
    fn container_died(&mut self, i: usize, exit: Exit) {
        let run = self.slots[i].run;
        let Some(c) = self.slots[i].container.as_mut() else { return };
        if c.news.dying {
            return;
        }
        if c.news.oom_killed || exit != Exit::Signal(9) || !c.capped() {
            let oom = c.news.oom_killed;
            return self.container_ended(i, run, exit, oom);
        }
        let Some(id) = c.running.as_ref().map(|r| r.id.clone()) else { return };
        c.news.dying = true;
        c.send(Op::Check { run, id });
    }

    /// Starts again a container service that ended with dockerd (not by its own decision),
    /// unless it is held stopped or already on its way back.
    fn resume(&mut self, i: usize) {
        let ended = matches!(self.slots[i].life.state, State::Exited { .. } | State::Failed { .. });
        if self.is_stopping() || !ended {
            return;
        }
        tracing::info!(service = %self.slots[i].name, "its container stopped with dockerd: starting it again");
        self.apply(i, Event::Start);
    }

    /// The host pid of a container service's main process (memory readings).
    pub(super) fn container_pid(&self, i: usize) -> Option<nix::unistd::Pid> {
        self.container_of(i)?.running.as_ref()?.pid.map(nix::unistd::Pid::from_raw)
    }

    /// Where a probe aimed at `host:port` reaches a container service directly: a port the
    /// service publishes is probed at the container's own address and port (docker-proxy
    /// accepts before the container listens and holds such a probe for a second).
    pub(super) fn direct_probe_addr(&self, i: usize, host: &str, port: u16) -> Option<std::net::SocketAddr> {
        let ip = self.container_of(i)?.running.as_ref()?.ip?;
        let crate::config::Exec::Image { ports, .. } = &self.slots[i].svc.exec else { return None };
        let local = matches!(host, "localhost" | "127.0.0.1" | "::1" | "[::1]" | "0.0.0.0");
        let published = ports.iter().find(|p| {
            p.host == port
                && (local || p.host_ip.is_some_and(|h| h.to_string() == host.trim_matches(['[', ']'])))
        })?;
        Some(std::net::SocketAddr::new(ip, published.container))
    }

    /// A container service whose container has not been reported running yet.
    pub(super) fn container_starting(&self, i: usize) -> bool {
        self.container_of(i).is_some_and(|c| c.running.is_none())
    }

    /// The id of a container service's running container.
    pub(super) fn container_id(&self, i: usize) -> Option<String> {
        self.container_of(i)?.running.as_ref().map(|r| r.id.clone())
    }
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}
