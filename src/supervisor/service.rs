//! One service as the actor holds it: its definition, its lifecycle, and its current run if it
//! has one — plus what outlives runs: its log, its notify socket, its cgroup or its container's
//! preparation. How it is signalled, which address reaches it and how it shows in `status` are
//! decided here, once for both backends, so the actor never asks "is this a container".

use std::net::SocketAddr;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::containers::ContainerBackend;
use super::definition::Definition;
use super::fsm::{Lifecycle, State};
use super::run::Run;
use super::status::{CheckKind, DockerdState, ServiceKind, ServiceStatus, Uptime};
use crate::config::{Exec, Kind};
use crate::logs::writer::SharedWriter;
use crate::runtime::cgroup::ServiceCgroup;

/// A container's own address for a probe, and whether the address the config names reaches
/// it too (a published port: probed there as well).
pub(crate) struct Direct {
    pub(crate) addr: SocketAddr,
    pub(crate) published: bool,
}

pub(crate) struct Service {
    pub(crate) name: String,
    pub(crate) def: Definition,
    pub(crate) life: Lifecycle,
    pub(crate) run: Option<Run>,
    /// Runs started so far: the next run's generation is one more.
    runs: u64,
    /// Direct dependencies and dependents, as indices (rewired by reloads).
    pub(crate) deps: Vec<usize>,
    pub(crate) dependents: Vec<usize>,
    pub(crate) standing: Standing,
    /// How long its last start took to become ready.
    pub(crate) ready_after: Option<Duration>,
    /// A oneshot a switch ran with its new definition before `current` moved: once that
    /// definition is installed it is done, not run again.
    pub(crate) migrated: bool,
    pub(crate) log: SharedWriter,
    pub(crate) notify: Option<super::notify::Binding>,
    pub(crate) backend: Backend,
}

/// Where a service stands in the config a reload brought.
pub(crate) enum Standing {
    Active,
    /// Changed (or added back after a removal): `def` replaces the definition once the service
    /// is at rest, and it goes back to pending if `start`.
    Replacing {
        def: Box<Definition>,
        start: bool,
    },
    /// Removed: stopped, no longer shown, started or counted.
    Retired,
}

/// What outlives runs, by backend.
pub(crate) enum Backend {
    Native(Caps),
    Container(ContainerBackend),
}

/// A native service's cgroup, by its caps.
pub(crate) enum Caps {
    /// No `memory` or `max_pids`: no cgroup (its tree is tracked by session).
    None,
    Applied(ServiceCgroup),
    /// The caps cannot be applied: it cannot start (never runs uncapped).
    Failed(String),
}

impl Service {
    pub(crate) fn new(def: Definition, log: SharedWriter, backend: Backend) -> Service {
        Service {
            name: def.config.name.clone(),
            def,
            life: Lifecycle::default(),
            run: None,
            runs: 0,
            deps: Vec::new(),
            dependents: Vec::new(),
            standing: Standing::Active,
            ready_after: None,
            migrated: false,
            log,
            notify: None,
            backend,
        }
    }

    /// The generation a new run gets.
    pub(crate) fn next_generation(&mut self) -> u64 {
        self.runs += 1;
        self.runs
    }

    /// Whether `generation` is the current run's (results of older runs are ignored).
    pub(crate) fn is_current(&self, generation: u64) -> bool {
        self.run.as_ref().is_some_and(|r| r.generation == generation)
    }

    pub(crate) fn retired(&self) -> bool {
        matches!(self.standing, Standing::Retired)
    }

    pub(crate) fn container(&self) -> Option<&ContainerBackend> {
        match &self.backend {
            Backend::Container(c) => Some(c),
            Backend::Native(_) => None,
        }
    }

    pub(crate) fn container_mut(&mut self) -> Option<&mut ContainerBackend> {
        match &mut self.backend {
            Backend::Container(c) => Some(c),
            Backend::Native(_) => None,
        }
    }

    pub(crate) fn cgroup(&self) -> Option<&ServiceCgroup> {
        match &self.backend {
            Backend::Native(Caps::Applied(cg)) => Some(cg),
            _ => None,
        }
    }

    /// Sends `sig` to the current run: a native run's whole process group, a container's
    /// main process (through its worker, in order with its other Docker calls).
    pub(crate) fn signal(&self, sig: Signal) {
        let Some(run) = &self.run else { return };
        match &self.backend {
            Backend::Native(_) => {
                if let Some(pid) = run.pid() {
                    let _ = kill(Pid::from_raw(-pid.as_raw()), sig);
                }
            }
            Backend::Container(c) => c.signal(run.generation, sig),
        }
    }

    /// Where a probe aimed at `host:port` reaches the service directly: a port a container
    /// publishes is probed at the container's own address (docker-proxy accepts before the
    /// container listens and holds such a probe for a second), and so is a local port it does
    /// not publish (nothing on the host answers for it: the URL names the container's own
    /// port). `None`: probe `host:port` only.
    pub(crate) fn probe_target(&self, host: &str, port: u16) -> Option<Direct> {
        let ip = self.run.as_ref()?.container()?.running.as_ref()?.ip?;
        let Exec::Image { ports, .. } = &self.def.config.exec else { return None };
        let local = matches!(host, "localhost" | "127.0.0.1" | "::1" | "[::1]" | "0.0.0.0");
        let published = ports.iter().find(|p| {
            p.host == port
                && (local || p.host_ip.is_some_and(|h| h.to_string() == host.trim_matches(['[', ']'])))
        });
        match published {
            Some(p) => Some(Direct { addr: SocketAddr::new(ip, p.container), published: true }),
            None if local && !ports.iter().any(|p| p.host == port) => {
                Some(Direct { addr: SocketAddr::new(ip, port), published: false })
            }
            None => None,
        }
    }

    pub(crate) fn kind(&self) -> ServiceKind {
        match (self.def.config.kind, &self.def.config.exec) {
            (Kind::Oneshot, _) => ServiceKind::Oneshot,
            (_, Exec::Image { .. }) => ServiceKind::Container,
            _ => ServiceKind::Process,
        }
    }

    /// How `status` shows it; `waiting` says why a pending service has not started, `dockerd`
    /// how dockerd answers (for a container service).
    pub(crate) fn status(&self, waiting: Option<String>, dockerd: DockerdState) -> ServiceStatus {
        let dockerd = self.container().map(|_| dockerd);
        let reason = match &self.life.state {
            State::Failed { reason } | State::Backoff { reason, .. } => Some(reason.to_string()),
            State::Pending => waiting,
            State::Exited { .. } => self.container().and_then(|c| c.outside_stop.clone()),
            _ if dockerd == Some(DockerdState::Unreachable) => {
                Some("dockerd is unreachable: the state shown is the last one known".into())
            }
            _ => None,
        };
        let run = self.run.as_ref();
        let since =
            self.life.state.running_since().map(|since| run.and_then(Run::started_at).unwrap_or(since));
        ServiceStatus {
            name: self.name.clone(),
            group: self.def.config.group.clone(),
            kind: self.kind(),
            state: self.life.state.kind(),
            pid: run.and_then(Run::pid).map(Pid::as_raw),
            container_id: run.and_then(Run::container_id).map(str::to_owned),
            restarts: self.life.restarts,
            uptime_s: Uptime(since),
            memory_bytes: run.and_then(|r| r.memory.rss),
            health: CheckKind::of(&self.def.config.health.check),
            reason,
            ready_after_ms: self.ready_after.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            dockerd,
        }
    }
}
