//! Reload (SIGHUP, `/v1/reload`): re-read the config and validate it fully first — an invalid
//! one changes nothing — then stop removed services, add new ones, and take changed ones down
//! to start again in dependency order with their new definition. Untouched services keep
//! running. Slots are never removed (indices stay valid): a removed service is retired.

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;

use super::actor::Supervisor;
use super::fsm::{Event, Spec, State};
use crate::config::{self, Config};
use crate::graph::Graph;
use crate::runtime::docker::ContainerSpec;

/// What a reload did.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Reloaded {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: usize,
}

impl Supervisor {
    /// Reloads from `path`; the error is the validation report (nothing changed then).
    pub(super) fn reload(&mut self, path: &Path) -> Result<Reloaded, String> {
        let cfg = config::load(path).map_err(|e| e.to_string())?;
        let graph = Graph::of(&cfg).map_err(|e| e.to_string())?;
        if cfg.supervisor != self.cfg.supervisor {
            tracing::warn!("reload: [supervisor] changes take effect at the next start");
        }
        let mut done = Reloaded::default();
        for i in 0..self.slots.len() {
            if !self.slots[i].retired {
                self.reconcile(i, &cfg, &mut done);
            }
        }
        for name in graph.names() {
            if !self.slots.iter().any(|s| !s.retired && &s.name == name) {
                self.add(name, &cfg).map_err(|e| e.to_string())?;
                done.added.push(name.clone());
            }
        }
        self.cfg.services = cfg.services;
        self.rewire();
        self.start_ready();
        Ok(done)
    }

    /// One existing service against the new config.
    fn reconcile(&mut self, i: usize, cfg: &Config, done: &mut Reloaded) {
        let name = self.slots[i].name.clone();
        match cfg.services.get(&name) {
            None => {
                done.removed.push(name);
                self.slots[i].retired = true;
                self.slots[i].requeue = false;
                self.apply(i, Event::Stop);
                self.remove_container(i);
            }
            Some(new) if *new != self.slots[i].svc => {
                done.changed.push(name);
                self.slots[i].svc = new.clone();
                self.slots[i].spec = Spec::of(new);
                self.slots[i].log_pattern = match &new.health.check {
                    config::Check::Log(re) => regex::bytes::Regex::new(re.as_str()).ok(),
                    _ => None,
                };
                self.requeue(i);
                self.recontain(i, &cfg.supervisor.project);
            }
            Some(_) => done.unchanged += 1,
        }
    }

    /// Takes a changed service down; it comes back through `after_requeue` once stopped.
    fn requeue(&mut self, i: usize) {
        match self.slots[i].life.state {
            State::Pending | State::Stopped => self.setup_cgroup(i),
            State::Exited { .. } | State::Failed { .. } => {
                self.setup_cgroup(i);
                self.apply(i, Event::Requeue);
            }
            _ => {
                self.slots[i].requeue = true;
                self.apply(i, Event::Stop);
            }
        }
    }

    /// Called when a service reaches `stopped`: a changed one goes back to pending.
    pub(super) fn after_requeue(&mut self, i: usize) {
        if self.slots[i].requeue && matches!(self.slots[i].life.state, State::Stopped) {
            self.slots[i].requeue = false;
            self.setup_cgroup(i);
            self.apply(i, Event::Requeue);
        }
    }

    fn add(&mut self, name: &str, cfg: &Config) -> Result<(), super::BootError> {
        if let Some(i) = self.slots.iter().position(|s| s.retired && s.name == name) {
            // re-added after a removal: the same slot, with the new definition
            let new = &cfg.services[name];
            let slot = &mut self.slots[i];
            slot.retired = false;
            slot.svc = new.clone();
            slot.spec = Spec::of(new);
            self.requeue(i);
            self.recontain(i, &cfg.supervisor.project);
            return Ok(());
        }
        let slot = super::slot_for(cfg, name, &self.logs, &self.metrics)?;
        self.slots.push(slot);
        let i = self.slots.len() - 1;
        self.setup_cgroup(i);
        self.start_worker(i);
        Ok(())
    }

    /// A changed definition for a service's container: prepared again (recreated) once the
    /// old one is stopped; a service that became or stopped being a container switches too.
    fn recontain(&mut self, i: usize, project: &str) {
        let log_dir = self.cfg.supervisor.log_dir.clone();
        match ContainerSpec::of(project, &self.slots[i].svc) {
            Some(spec) if self.slots[i].container.is_some() => self.reprepare(i, spec),
            Some(spec) => {
                self.slots[i].container = Some(super::containers::ContainerSlot::new(spec, &log_dir));
                self.start_worker(i);
            }
            None => {
                self.remove_container(i);
                self.slots[i].container = None;
            }
        }
    }

    /// Dependencies and dependents as indices, from the (new) config.
    fn rewire(&mut self) {
        let index: HashMap<String, usize> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.retired)
            .map(|(i, s)| (s.name.clone(), i))
            .collect();
        for slot in &mut self.slots {
            slot.dependents.clear();
        }
        for i in 0..self.slots.len() {
            let deps: Vec<usize> = if self.slots[i].retired {
                Vec::new()
            } else {
                self.slots[i].svc.depends_on.iter().filter_map(|d| index.get(d).copied()).collect()
            };
            for &d in &deps {
                self.slots[d].dependents.push(i);
            }
            self.slots[i].deps = deps;
        }
    }
}
