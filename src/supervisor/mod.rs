//! Supervision: the lifecycle state machine (`fsm`), the restart policy (`restart`), and the
//! actor that owns all service state and performs what the state machine decides (`actor`,
//! with its probes, memory caps and cgroups in their own files).

pub mod actor;
mod cgroups;
pub mod containers;
pub mod events;
pub mod fsm;
mod leftovers;
mod memory;
mod probes;
mod reload;
pub mod restart;
pub mod slot;
pub mod status;

use std::path::PathBuf;

pub use actor::{Handle, Supervisor};

use crate::config::{Check, Config};
use crate::graph::{Graph, GraphError};
use crate::logs::pipeline::Pipeline;
use crate::logs::writer::create_dir;
use crate::runtime::cgroup::Cgroups;
use crate::runtime::docker::ContainerSpec;
use crate::runtime::spawn::{self, SpawnError};
use slot::Slot;

/// Why the supervisor cannot start at all.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error("cannot create {}: {source}", path.display())]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("service {service:?}: {source}")]
    User {
        service: String,
        #[source]
        source: SpawnError,
    },
    #[error("cannot start the log threads: {0}")]
    Logs(#[source] std::io::Error),
}

impl Supervisor {
    /// Builds the supervisor for a validated config: log and state directories, one slot per
    /// service in start order, users resolved, leftovers of an earlier run killed, cgroups
    /// created under this process's own. Nothing runs yet.
    pub fn new(cfg: Config) -> Result<Self, BootError> {
        let logs = Pipeline::start().map_err(BootError::Logs)?;
        Self::with(cfg, Cgroups::detect().map_err(|e| e.to_string()), logs)
    }

    /// `new` with the cgroup root given (tests use fixtures or a missing hierarchy).
    pub fn with_cgroups(cfg: Config, cgroups: Result<Cgroups, String>) -> Result<Self, BootError> {
        let logs = Pipeline::start().map_err(BootError::Logs)?;
        Self::with(cfg, cgroups, logs)
    }

    /// `new` with the cgroup root and the log pipeline given (the daemon's own log uses the
    /// same pipeline).
    pub fn with(cfg: Config, cgroups: Result<Cgroups, String>, logs: Pipeline) -> Result<Self, BootError> {
        let graph = Graph::of(&cfg)?;
        for dir in [&cfg.supervisor.log_dir, &cfg.supervisor.state_dir] {
            create_dir(dir).map_err(|source| BootError::Dir { path: dir.clone(), source })?;
        }
        let metrics = crate::metrics::Metrics::new();
        let mut slots = Vec::with_capacity(graph.len());
        for (i, name) in graph.names().iter().enumerate() {
            let mut slot = slot_for(&cfg, name, &logs, &metrics)?;
            slot.deps = graph.deps(i).to_vec();
            slot.dependents = graph.direct_dependents(i).to_vec();
            slots.push(slot);
        }
        let pids = cfg.supervisor.state_dir.join("pids");
        create_dir(&pids).map_err(|source| BootError::Dir { path: pids.clone(), source })?;
        for (service, pid) in leftovers::kill_leftovers(&pids, slots.iter().map(|s| s.name.as_str())) {
            tracing::warn!(service, pid, "killed a process left running by an earlier supervisor");
        }
        let mut sup = Supervisor::from_parts(cfg, slots, cgroups, logs);
        sup.metrics = metrics;
        sup.setup_cgroups();
        Ok(sup)
    }
}

/// A slot for service `name` of `cfg`: its log opened, its user resolved, its log pattern
/// compiled. Dependencies are filled in by the caller, who knows the indices.
pub(super) fn slot_for(
    cfg: &Config,
    name: &str,
    logs: &Pipeline,
    metrics: &crate::metrics::Metrics,
) -> Result<Slot, BootError> {
    let svc = cfg.services[name].clone();
    let log = logs
        .open_writer(&cfg.supervisor.log_dir, name, &svc.logs, metrics.log_counters(name))
        .map_err(|source| BootError::Dir { path: cfg.supervisor.log_dir.join(name), source })?;
    let mut slot = Slot::new(svc, log);
    if let Some(spec) = ContainerSpec::of(&cfg.supervisor.project, &slot.svc) {
        slot.container = Some(containers::ContainerSlot::new(spec, &cfg.supervisor.log_dir));
    }
    if let Some(user) = &slot.svc.user {
        let creds = spawn::credentials(user)
            .map_err(|source| BootError::User { service: name.to_owned(), source })?;
        slot.credentials = Some(creds);
    }
    if let Check::Log(re) = &slot.svc.health.check {
        slot.log_pattern = regex::bytes::Regex::new(re.as_str()).ok();
    }
    Ok(slot)
}
