//! Supervision: the lifecycle state machine (`fsm`), the restart policy (`restart`), the
//! dependency-driven choices (`order`), each service's definition (`definition`, the one
//! constructor), its runs (`run`, `launch`) and how a definition is put in place (`install`),
//! and the actor that owns all service state and performs what the state machine decides
//! (`actor`, with its probes, memory caps, cgroups, containers, reloads and what it tells
//! systemd (`announce`) in their own files).

pub(crate) mod actor;
mod announce;
mod cgroups;
pub(crate) mod containers;
pub(crate) mod definition;
pub(crate) mod events;
pub mod fsm;
pub mod handle;
mod handover;
mod install;
mod launch;
mod leftovers;
mod memory;
mod notify;
mod order;
mod probes;
mod reload;
pub(crate) mod restart;
mod run;
mod service;
mod start_first;
pub mod status;
mod upgrade;

use std::path::PathBuf;

pub use actor::Supervisor;
pub use definition::DefinitionError;
pub use handle::Handle;
pub use upgrade::UpgradeRefused;

use crate::config::Config;
use crate::graph::GraphError;
use crate::logs::pipeline::Pipeline;
use crate::logs::writer::create_dir;
use crate::runtime::cgroup::Cgroups;
use definition::Definition;

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
    #[error(transparent)]
    Definition(#[from] DefinitionError),
    #[error("cannot start the log threads: {0}")]
    Logs(#[source] std::io::Error),
}

impl Supervisor {
    /// A supervisor for a validated config with the cgroup root given (tests use fixtures or a
    /// missing hierarchy) and a log pipeline of its own. Must be called inside the runtime
    /// that will run it (notify sockets are bound here).
    pub fn with_cgroups(cfg: Config, cgroups: Result<Cgroups, String>) -> Result<Self, BootError> {
        let logs = Pipeline::start().map_err(BootError::Logs)?;
        Self::with(cfg, cgroups, logs)
    }

    /// `with_cgroups` with the log pipeline given (the daemon's own log uses the same pipeline): log and state directories, every service's definition built (users
    /// resolved) before anything else, leftovers of an earlier run killed, then each service
    /// added — log, notify socket, cgroup — in start order. Nothing runs yet; the status board
    /// already lists every service.
    pub(crate) fn with(
        cfg: Config,
        cgroups: Result<Cgroups, String>,
        logs: Pipeline,
    ) -> Result<Self, BootError> {
        let graph = cfg.graph()?;
        for dir in [&cfg.supervisor.log_dir, &cfg.supervisor.state_dir] {
            create_dir(dir).map_err(|source| BootError::Dir { path: dir.clone(), source })?;
        }
        let defs = graph
            .names()
            .iter()
            .map(|name| Definition::build(&cfg.supervisor, &cfg.services[name]))
            .collect::<Result<Vec<_>, _>>()?;
        let mut sup = Supervisor::from_parts(cfg.supervisor.clone(), cgroups, logs);
        let pids = sup.pid_dir();
        create_dir(&pids).map_err(|source| BootError::Dir { path: pids.clone(), source })?;
        // runs the previous image of this process handed over (an upgrade) are ours already
        let mut handed = handover::take(&cfg.supervisor.state_dir);
        let spare: Vec<i32> = handed.values().map(handover::Handed::pid).collect();
        for (service, processes) in leftovers::kill_leftovers(&pids, &spare) {
            tracing::warn!(service, processes, "killed a process left running by an earlier supervisor");
        }
        sup.remove_foreign_cgroups(graph.names());
        for def in defs {
            let taking_up = handed.contains_key(&def.config.name);
            let i = sup.add_service(def, taking_up)?;
            if let Some(h) = handed.remove(&sup.services[i].name) {
                sup.take_up(i, h);
            }
        }
        for h in handed.into_values() {
            tracing::info!(pid = h.pid(), "a service handed over is no longer in the config: stopping it");
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(-h.pid()),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        sup.rewire(&cfg);
        sup.post_board();
        Ok(sup)
    }
}
