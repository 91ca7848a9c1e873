//! Container services in the actor: the same state machine, gates and restarts as native
//! ones, with Docker calls done by one worker task per service (so a start, its signals and a
//! recreate happen in order) and every outcome coming back as a message, which the pure
//! `tracker` turns into a verdict. Containers are prepared ahead — pulled, created, or adopted
//! when already running with the same spec — so a start is only `docker start`; deaths come
//! from the events stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use nix::sys::signal::Signal;
use tokio::sync::mpsc;

pub(crate) mod tracker;
mod worker;

use tracker::{ContainerRun, Death, Inspected, Verdict};
use worker::{Op, Worker};

use super::actor::Supervisor;
use super::fsm::{Event, State};
use super::handle::Msg;
use super::run::{Run, RunKind};
use super::status::DockerdState;
use crate::runtime::docker::engine::Prepared;
use crate::runtime::docker::events::Notice;
use crate::runtime::docker::logs::{self as clogs, Cursor, SharedCursor};
use crate::runtime::docker::{self, ContainerSpec, DockerError, Engine, Running, claim};
use crate::runtime::exit::Exit;

/// What a container service keeps across runs.
pub(crate) struct ContainerBackend {
    pub(crate) prep: Prep,
    /// Where its log stands, shared with the log stream of the current run.
    cursor: SharedCursor,
    worker: Option<mpsc::UnboundedSender<Op>>,
    /// When its last container ended: one that went down with dockerd is revived once dockerd
    /// is back.
    ended_at: Option<Instant>,
    /// The generation whose log stream is open (0: none). A stream outlives its run by the
    /// moments it takes to drain.
    following: Arc<AtomicU64>,
    /// Its current run's container was signalled from outside (a `docker stop`): why it ended.
    pub(crate) outside_stop: Option<String>,
    /// A container of an earlier definition still serves beside the current run (a
    /// start-first update), until that one is ready.
    retiring: bool,
}

/// How far ahead the container is prepared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Prep {
    /// Waiting for dockerd, or being pulled and created.
    Waiting,
    /// Created: a start is `docker start`.
    Ready,
    /// Found running with the same spec: the next start adopts it.
    Adopt(Running),
    /// Preparing failed: a start tries again first (and fails with why).
    Failed,
}

impl ContainerBackend {
    pub(crate) fn new(service: &str, log_dir: &std::path::Path) -> Self {
        let cursor = Cursor::of_log(&log_dir.join(service), service);
        ContainerBackend {
            prep: Prep::Waiting,
            cursor: SharedCursor::new(cursor.into()),
            worker: None,
            ended_at: None,
            following: Arc::default(),
            outside_stop: None,
            retiring: false,
        }
    }

    fn send(&self, op: Op) {
        if let Some(w) = &self.worker {
            let _ = w.send(op);
        }
    }

    /// The stop signal or SIGKILL to the container of run `generation`.
    pub(crate) fn signal(&self, generation: u64, sig: Signal) {
        self.send(Op::Signal { run: generation, sig: sig.as_str().to_owned() });
    }

    /// Prepares again for `spec` (a reload changed it): recreated if its container differs.
    pub(crate) fn reprepare(&mut self, spec: &ContainerSpec) {
        if self.worker.is_some() {
            self.prep = Prep::Waiting;
            self.send(Op::Prepare(Box::new(spec.clone())));
        }
    }

    /// Takes its running container (of run `generation`) out of the way of a successor: it is
    /// renamed and serves on, its log stream with it; the successor's run gets a stream of its
    /// own.
    pub(crate) fn retire(&mut self, name: &str, generation: u64) {
        self.send(Op::Retire { to: format!("{name}{}{generation}", docker::spec::RETIRED) });
        self.following = Arc::default();
        self.retiring = true;
    }

    /// Stops and removes the container `retire` set aside, in the background: the receiver
    /// hears when it is gone. `None` when there is none.
    pub(crate) fn end_retired(&mut self) -> Option<tokio::sync::oneshot::Receiver<()>> {
        if !std::mem::take(&mut self.retiring) {
            return None;
        }
        let (done, gone) = tokio::sync::oneshot::channel();
        self.send(Op::EndRetired { done });
        Some(gone)
    }

    /// Stops and removes its container (the service was removed, or is no container any
    /// more); its worker ends with that, and a later definition gets a new one.
    pub(crate) fn remove(&mut self) {
        self.retiring = false;
        self.send(Op::Remove);
        self.worker = None;
        self.prep = Prep::Waiting;
    }

    pub(crate) fn has_worker(&self) -> bool {
        self.worker.is_some()
    }

    /// Why it may not start now (not prepared yet).
    pub(crate) fn blocker(&self, connected: bool, refused: Option<&str>) -> Option<String> {
        if let Some(why) = refused {
            return Some(why.to_owned());
        }
        match &self.prep {
            Prep::Ready | Prep::Adopt(_) => None,
            Prep::Waiting if !connected => Some("waiting for dockerd".into()),
            Prep::Waiting => Some("preparing its container (pull, create)".into()),
            // it starts, and its start fails with why (the worker tries preparing again first)
            Prep::Failed => None,
        }
    }
}

/// What reaches the actor from Docker.
pub(crate) enum Report {
    Connected(Engine),
    /// Another live supervisor owns the project on that dockerd.
    Refused(String),
    Prepared {
        slot: usize,
        result: Result<Prepared, DockerError>,
    },
    Started {
        slot: usize,
        run: u64,
        result: Result<Running, DockerError>,
    },
    /// What an inspect of the container of run `run` found.
    Inspected {
        slot: usize,
        run: u64,
        found: Inspected,
    },
    Stream(Notice),
}

/// Before anything starts: when dockerd answers at once, the project is claimed on it, or the
/// supervisor refuses to start with the owner named (exit 2). A dockerd that does not answer
/// yet is claimed once it does.
pub(crate) async fn claim_first(cfg: &crate::config::Config) -> Result<(), DockerError> {
    let containers = cfg.services.values().any(|s| matches!(s.exec, crate::config::Exec::Image { .. }));
    let settings = &cfg.supervisor;
    if !containers {
        return Ok(());
    }
    let quick =
        tokio::time::timeout(std::time::Duration::from_secs(2), docker::connect(&settings.docker_host));
    let Ok(Ok(docker)) = quick.await else { return Ok(()) };
    let me = claim::Owner::me(&settings.socket, &settings.state_dir);
    match claim::take(&docker, &settings.project, &me).await {
        Err(e @ DockerError::Claimed { .. }) => Err(e),
        _ => Ok(()),
    }
}

fn tell(tx: &mpsc::UnboundedSender<Msg>, report: Report) -> bool {
    tx.send(Msg::Docker(report)).is_ok()
}

impl Supervisor {
    /// Connects to dockerd in the background (retrying while it is away), once: the first
    /// container service installed asks for it, at boot or when a reload adds one.
    pub(super) fn connect_docker(&mut self) {
        if self.engine.is_some() || std::mem::replace(&mut self.docker_connecting, true) {
            return;
        }
        let (host, project, tx) =
            (self.settings.docker_host.clone(), self.settings.project.clone(), self.tx.clone());
        let me = self.claimant();
        tokio::spawn(async move {
            loop {
                let docker = docker::connect_with_retry(&host).await;
                tracing::info!(host, version = %docker.client_version(), "connected to dockerd");
                let report = match claim::take(&docker, &project, &me).await {
                    Ok(()) => Report::Connected(Engine::new(docker, &project)),
                    Err(e @ DockerError::Claimed { .. }) => Report::Refused(e.to_string()),
                    Err(e) => {
                        tracing::warn!("{e}; trying again");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        continue;
                    }
                };
                tell(&tx, report);
                return;
            }
        });
    }

    /// Who this supervisor is, for the project's claim on dockerd.
    pub(super) fn claimant(&self) -> claim::Owner {
        claim::Owner::me(&self.settings.socket, &self.settings.state_dir)
    }

    /// Another live supervisor owns the project on this dockerd: no container of it is
    /// touched, and every container service says why it waits.
    fn on_refused(&mut self, why: String) {
        tracing::error!("{why}");
        self.docker_connecting = false;
        self.docker_refused = Some(why);
    }

    pub(super) fn on_docker(&mut self, report: Report) {
        match report {
            Report::Connected(engine) => self.on_connected(engine),
            Report::Refused(why) => self.on_refused(why),
            Report::Prepared { slot, result } => self.on_prepared(slot, result),
            Report::Started { slot, run, result } => self.on_started(slot, run, result),
            Report::Inspected { slot, run, found } => self.judge(slot, run, |c| c.inspected(found)),
            Report::Stream(notice) => self.on_stream(notice),
        }
        self.mark_dirty();
    }

    /// dockerd answers: follow its events, remove orphans, and prepare every container.
    fn on_connected(&mut self, engine: Engine) {
        let (host, project, tx) =
            (self.settings.docker_host.clone(), self.settings.project.clone(), self.tx.clone());
        let events_docker = engine.docker().clone();
        tokio::spawn(docker::events::follow(host, events_docker, project, move |n| {
            tell(&tx, Report::Stream(n))
        }));
        let keep: Vec<String> = self
            .services
            .iter()
            .filter(|s| s.container().is_some() && !s.retired())
            .map(|s| s.name.clone())
            .collect();
        let orphans = engine.clone();
        tokio::spawn(async move {
            if let Err(e) = orphans.remove_orphans(&keep).await {
                tracing::warn!("cannot remove containers no longer in the config: {e}");
            }
        });
        self.engine = Some(engine);
        self.docker_connecting = false;
        for i in 0..self.services.len() {
            if !self.services[i].retired() {
                self.start_worker(i);
            }
        }
    }

    /// A worker for container service `i`, preparing its container first (once dockerd is
    /// connected; `on_connected` starts the workers of services known before).
    pub(super) fn start_worker(&mut self, i: usize) {
        let Some(engine) = self.engine.clone() else { return };
        let svc = &mut self.services[i];
        let (Some(spec), patience) = (svc.def.container().cloned(), svc.def.spec.startup_timeout) else {
            return;
        };
        let Some(c) = svc.container_mut() else { return };
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(Op::Prepare(Box::new(spec.clone())));
        c.worker = Some(tx);
        c.prep = Prep::Waiting;
        let worker = Worker { engine, slot: i, spec, patience, prepared: false, retired: None };
        tokio::spawn(worker.run(rx, self.tx.clone()));
    }

    fn on_prepared(&mut self, i: usize, result: Result<Prepared, DockerError>) {
        let svc = &mut self.services[i];
        let name = svc.name.clone();
        let Some(c) = svc.container_mut() else { return };
        let adopting = matches!(result, Ok(Prepared::Adopted(_)));
        c.prep = match result {
            Ok(Prepared::Created) => Prep::Ready,
            Ok(Prepared::Adopted(running)) => {
                tracing::info!(service = %name, id = %short(&running.id), "adopting its running container");
                Prep::Adopt(running)
            }
            Err(e) => {
                tracing::error!(service = %name, "cannot prepare its container: {e}");
                Prep::Failed
            }
        };
        if adopting {
            self.adopt_now(i);
        }
        self.start_ready();
    }

    /// A container found running is taken up at once, not when its dependencies are ready:
    /// it runs already, and one left waiting would run unsupervised, unseen by status and by
    /// the shutdown. During a stop it is stopped instead (unless kept for an upgrade).
    fn adopt_now(&mut self, i: usize) {
        match self.services[i].life.state {
            State::Pending if !self.is_stopping() => self.apply(i, Event::Start),
            _ if self.upgrading => {}
            State::Pending | State::Stopped | State::Exited { .. } | State::Failed { .. } => {
                let spec = self.services[i].def.container().cloned();
                if let (Some(c), Some(spec)) = (self.services[i].container_mut(), spec) {
                    tracing::info!(service = %spec.service, "not to run now: stopping its container");
                    c.prep = Prep::Ready;
                    c.send(Op::Halt);
                }
            }
            _ => {}
        }
    }

    /// The Spawn action for a container: a run is born and its worker starts (or adopts) the
    /// container; the outcome comes back as `Started`.
    pub(super) fn launch_container(&mut self, i: usize) {
        let svc = &mut self.services[i];
        let generation = svc.next_generation();
        let capped = svc.def.config.memory.is_some();
        let Some(c) = svc.container_mut() else { return };
        let adopt = match std::mem::replace(&mut c.prep, Prep::Ready) {
            Prep::Adopt(running) => Some(running),
            _ => None,
        };
        c.send(Op::Start { run: generation, adopt });
        c.outside_stop = None;
        c.following.store(0, Ordering::Release);
        let run = ContainerRun::new(docker::now_nanos(), capped);
        let mut run = Run::new(generation, RunKind::Container(run));
        run.log_armed = self.new_log_arming(i);
        self.begin_run(i, run);
    }

    fn on_started(&mut self, i: usize, generation: u64, result: Result<Running, DockerError>) {
        if !self.services[i].is_current(generation) {
            return;
        }
        let running = match result {
            Ok(running) => running,
            Err(e) => {
                self.services[i].run = None;
                return self.apply(i, Event::SpawnFailed(e.to_string()));
            }
        };
        let pid = running.pid.map_or("?".into(), |p| p.to_string());
        self.logs.note(
            &self.services[i].log,
            format!("container {} running (host pid {pid})", short(&running.id)),
        );
        let Some(c) = self.services[i].run.as_mut().and_then(Run::container_mut) else { return };
        let verdict = c.started(running);
        // its output is followed even when it died already: its last lines are in the log
        self.follow_logs(i);
        if verdict != Verdict::Nothing {
            return self.perform_verdict(i, generation, verdict);
        }
        // with a health check, probe at once
        if let Some(probe) = self.services[i].run.as_mut().map(|r| &mut r.probe)
            && probe.next.is_some()
        {
            probe.next = Some(Instant::now());
        }
        self.apply(i, Event::Spawned);
    }

    /// Feeds a report to the tracker of service `i`'s run `generation` and performs its verdict.
    fn judge(&mut self, i: usize, generation: u64, report: impl FnOnce(&mut ContainerRun) -> Verdict) {
        if !self.services[i].is_current(generation) {
            return;
        }
        let Some(c) = self.services[i].run.as_mut().and_then(Run::container_mut) else { return };
        let verdict = report(c);
        self.perform_verdict(i, generation, verdict);
    }

    fn perform_verdict(&mut self, i: usize, generation: u64, verdict: Verdict) {
        match verdict {
            Verdict::Nothing => {}
            Verdict::Ended { exit, oom } => self.container_ended(i, exit, oom),
            Verdict::Inspect { id } => {
                if let Some(c) = self.services[i].container() {
                    c.send(Op::Check { run: generation, id });
                }
            }
            Verdict::FollowLogs => self.follow_logs(i),
        }
    }

    /// The current run's container ended: the run is over, the state machine decides.
    fn container_ended(&mut self, i: usize, exit: Exit, oom: bool) {
        let now = Instant::now();
        self.end_run(i);
        if let Some(c) = self.services[i].container_mut() {
            c.ended_at = Some(now);
        }
        self.logs.note(&self.services[i].log, format!("container ended: {exit}"));
        self.apply(i, Event::Exited { exit, oom });
        if self.dockerd.just_back(now) {
            self.revive(i);
        }
    }

    /// Streams the running container's output into its log from the cursor on, unless a
    /// stream of this run already does (after dockerd came back, a container that survived it
    /// needs one again).
    fn follow_logs(&mut self, i: usize) {
        let svc = &self.services[i];
        let (Some(c), Some(engine), Some(run)) = (svc.container(), &self.engine, svc.run.as_ref()) else {
            return;
        };
        let watch = self.log_watch(i, run.generation, &run.log_armed);
        let Some(id) = run.container_id() else { return };
        let generation = run.generation;
        if c.following.compare_exchange(0, generation, Ordering::AcqRel, Ordering::Acquire).is_err() {
            return;
        }
        let following = Arc::clone(&c.following);
        let stream =
            clogs::follow(engine.docker().clone(), id.to_owned(), svc.log.clone(), c.cursor.clone(), watch);
        self.logs.spawn_reader(async move {
            stream.await;
            let _ = following.compare_exchange(generation, 0, Ordering::AcqRel, Ordering::Acquire);
        });
    }

    /// The service whose current run's container is called `name`, when `at_nanos` (an
    /// event's time) is within that run.
    fn container_named(&self, name: &str, at_nanos: i64) -> Option<(usize, u64)> {
        self.services.iter().enumerate().find_map(|(i, s)| {
            let run = s.run.as_ref()?;
            let covered = s.def.container()?.name == name && run.container()?.covers(at_nanos);
            covered.then_some((i, run.generation))
        })
    }

    fn on_stream(&mut self, notice: Notice) {
        match notice {
            Notice::Died { id, name, at_nanos, exit_code } => {
                let Some((i, generation)) = self.container_named(&name, at_nanos) else { return };
                let death = Death { id, at_nanos, exit: Exit::of_docker(exit_code.unwrap_or(-1)) };
                self.judge(i, generation, |c| c.death(death));
            }
            Notice::Oom { name, at_nanos } => {
                let Some((i, generation)) = self.container_named(&name, at_nanos) else { return };
                self.judge(i, generation, ContainerRun::oom);
            }
            Notice::Killed { name, at_nanos, signal } => {
                let Some((i, _)) = self.container_named(&name, at_nanos) else { return };
                // the supervisor signals only what it is stopping
                if !matches!(self.services[i].life.state, State::Stopping { .. }) {
                    let what =
                        format!("stopped from outside the supervisor (docker stop or kill: signal {signal})");
                    tracing::warn!(service = %self.services[i].name, "{what}");
                    self.logs.note(&self.services[i].log, what.clone());
                    if let Some(c) = self.services[i].container_mut() {
                        c.outside_stop = Some(what);
                    }
                }
            }
            Notice::Lost(e) => {
                tracing::warn!("lost dockerd ({e}); reconnecting");
                self.dockerd.lost(Instant::now());
            }
            Notice::Back => self.on_dockerd_back(),
        }
    }

    /// dockerd is back: what went down with it is revived, every running container checked.
    fn on_dockerd_back(&mut self) {
        tracing::info!("dockerd is back: checking every container");
        self.dockerd.back(Instant::now());
        if let Some(engine) = &self.engine {
            // a claim pruned meanwhile (`docker volume prune`) is made again
            let (docker, project, me) =
                (engine.docker().clone(), self.settings.project.clone(), self.claimant());
            tokio::spawn(async move {
                if let Err(e) = claim::take(&docker, &project, &me).await {
                    tracing::error!("{e}");
                }
            });
        }
        for i in 0..self.services.len() {
            let ended = self.services[i].container().and_then(|c| c.ended_at);
            if ended.is_some_and(|t| self.dockerd.went_down_with(t)) {
                self.revive(i);
            }
        }
        for svc in &self.services {
            if let (Some(c), Some(run)) = (svc.container(), svc.run.as_ref())
                && let Some(id) = run.container_id()
            {
                c.send(Op::Check { run: run.generation, id: id.to_owned() });
            }
        }
    }

    /// How dockerd answers, as the container services show it.
    pub(in crate::supervisor) fn dockerd_state(&self) -> DockerdState {
        if self.docker_refused.is_some() {
            DockerdState::Refused
        } else if self.engine.is_none() || self.dockerd.is_away() {
            DockerdState::Unreachable
        } else {
            DockerdState::Connected
        }
    }

    /// A clean stop gives the project's claim on dockerd up (an upgrade keeps it: the next
    /// image is this same process).
    pub(in crate::supervisor) async fn release_claim(&self) {
        if let Some(engine) = &self.engine {
            let me = self.claimant();
            let release = claim::release(engine.docker(), &self.settings.project, &me);
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), release).await;
        }
    }

    /// A container service whose container went down with dockerd: the restart policy
    /// decides, as for a crash, and a restart counts toward `max_restarts`.
    fn revive(&mut self, i: usize) {
        let at_rest = matches!(self.services[i].life.state, State::Exited { .. } | State::Failed { .. });
        if self.is_stopping() || self.services[i].retired() || !at_rest {
            return;
        }
        tracing::info!(service = %self.services[i].name, "its container stopped with dockerd");
        self.apply(i, Event::Revive);
    }
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}
