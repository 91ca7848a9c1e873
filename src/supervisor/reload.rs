//! Reload (SIGHUP, `/v1/reload`): re-read the config and check all of it first, off the actor's
//! thread — the file, the graph, and every service's definition built (its user resolved on
//! this host) — so that a reload that is refused has changed nothing at all. Then removed services
//! are stopped, new ones added, and changed ones taken down to start again in dependency order
//! with their whole new definition, installed once they are at rest. Untouched services keep
//! running. Services are never removed from the actor (indices stay valid): a removed one is
//! retired, and one added back later takes its place again.

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;

use super::actor::Supervisor;
use super::definition::{Definition, DefinitionError};
use super::fsm::{Event, State, Then};
use super::service::Standing;
use crate::config::{self, Config};
use crate::graph::GraphError;

/// What a reload did.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub(crate) struct Reloaded {
    pub(crate) added: Vec<String>,
    pub(crate) removed: Vec<String>,
    pub(crate) changed: Vec<String>,
    pub(crate) unchanged: usize,
}

/// Why a reload was refused (nothing changed then).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReloadError {
    #[error("this supervisor runs no config file yet: it waits for a first switch")]
    NoFile,
    #[error("the supervisor is stopping")]
    Stopping,
    #[error("{0}")]
    Config(#[from] config::LoadError),
    #[error("{0}")]
    Graph(#[from] GraphError),
    #[error("{0}")]
    Definition(#[from] DefinitionError),
    #[error("reading the config failed: {0}")]
    Crashed(String),
}

/// A config read for a reload, checked in full: every service's definition built.
pub(crate) struct Loaded {
    cfg: Config,
    defs: HashMap<String, Definition>,
}

/// Reads and checks the config at `path` (none: no services) for a supervisor running with
/// `settings` (on the blocking pool: parsing and user lookups may take their time).
pub(crate) fn load(path: Option<&Path>, settings: &config::Supervisor) -> Result<Loaded, ReloadError> {
    let Some(path) = path else {
        return Ok(Loaded { cfg: Config::empty(settings.clone()), defs: HashMap::new() });
    };
    let cfg = config::load(path)?;
    cfg.graph()?;
    if cfg.supervisor != *settings {
        tracing::warn!("reload: [supervisor] changes take effect at the next start");
    }
    let defs = cfg
        .services
        .iter()
        .map(|(name, svc)| Ok((name.clone(), Definition::build(settings, svc)?)))
        .collect::<Result<_, DefinitionError>>()?;
    Ok(Loaded { cfg, defs })
}

/// A reload worked out in full before anything is touched.
#[derive(Default)]
struct Plan {
    removed: Vec<usize>,
    changed: Vec<(usize, Definition)>,
    /// Removed by an earlier reload, in the config again.
    readded: Vec<(usize, Definition)>,
    added: Vec<Definition>,
    unchanged: usize,
}

impl Supervisor {
    /// Applies a reloaded config: what changed is worked out, then done.
    pub(super) fn reload(&mut self, loaded: Loaded) -> Reloaded {
        let Loaded { cfg, mut defs } = loaded;
        let plan = self.plan(&cfg, &mut defs);
        let migrated = std::mem::take(&mut self.migrated);
        self.carry_out(plan, &cfg, &migrated)
    }

    /// Sorts every service into removed, changed, added back, added and unchanged, each that
    /// will be installed with its definition.
    fn plan(&self, cfg: &Config, defs: &mut HashMap<String, Definition>) -> Plan {
        let mut plan = Plan::default();
        for (i, svc) in self.services.iter().enumerate() {
            match (cfg.services.get(&svc.name), svc.retired()) {
                (None, false) => plan.removed.push(i),
                (None, true) => {}
                (Some(_), true) => plan.readded.extend(defs.remove(&svc.name).map(|d| (i, d))),
                (Some(new), false) if *new != *self.current_config(i) => {
                    plan.changed.extend(defs.remove(&svc.name).map(|d| (i, d)))
                }
                (Some(_), false) => plan.unchanged += 1,
            }
        }
        for name in cfg.services.keys() {
            if !self.services.iter().any(|s| &s.name == name) {
                plan.added.extend(defs.remove(name));
            }
        }
        plan
    }

    /// The config a service will run with: the one waiting to replace the running one, if any.
    fn current_config(&self, i: usize) -> &config::Service {
        match &self.services[i].standing {
            Standing::Replacing { def, .. } => &def.config,
            _ => &self.services[i].def.config,
        }
    }

    /// `migrated`: oneshots a switch ran already with the definition they get now.
    fn carry_out(&mut self, plan: Plan, cfg: &Config, migrated: &[String]) -> Reloaded {
        let mut done = Reloaded { unchanged: plan.unchanged, ..Reloaded::default() };
        for i in plan.removed {
            done.removed.push(self.services[i].name.clone());
            self.services[i].standing = Standing::Retired;
            self.apply(i, Event::Stop);
            if let Some(c) = self.services[i].container_mut() {
                c.remove();
            }
        }
        for (i, def) in plan.changed {
            done.changed.push(self.services[i].name.clone());
            self.services[i].migrated = migrated.contains(&self.services[i].name);
            // an operator's stop holds: the new definition waits for their start (a stop an
            // earlier reload made is no operator's)
            let restarting = matches!(self.services[i].standing, Standing::Replacing { start: true, .. });
            let stopped = matches!(
                self.services[i].life.state,
                State::Stopped | State::Stopping { then: Then::Hold, .. }
            );
            self.replace(i, def, restarting || !stopped);
        }
        for (i, def) in plan.readded {
            done.added.push(self.services[i].name.clone());
            self.services[i].migrated = migrated.contains(&self.services[i].name);
            self.replace(i, def, true);
        }
        for def in plan.added {
            done.added.push(def.config.name.clone());
            // the directory and log could be made at boot: a failure here is the disk's
            let name = def.config.name.clone();
            match self.add_service(def, false) {
                Ok(i) if migrated.contains(&name) => self.apply(i, Event::Completed),
                Ok(_) => {}
                Err(e) => tracing::error!("reload: {e}"),
            }
        }
        done.added.sort();
        self.rewire(cfg);
        self.start_ready();
        done
    }

    /// Service `i` gets `def`: at once when it is at rest, else once its run has stopped (or,
    /// starting first, while its container serves on); then it goes back to pending if
    /// `start`.
    fn replace(&mut self, i: usize, def: Definition, start: bool) {
        if start && self.can_start_first(i, &def) {
            return self.start_first(i, def);
        }
        self.services[i].standing = Standing::Replacing { def: Box::new(def), start };
        if self.services[i].life.state.is_at_rest() {
            self.after_requeue(i);
        } else {
            self.apply(i, Event::Stop);
        }
    }

    /// Called after every transition: a service waiting for a new definition gets it once it is
    /// at rest, and goes back to pending to start again in dependency order.
    pub(super) fn after_requeue(&mut self, i: usize) {
        if !self.services[i].life.state.is_at_rest() {
            return;
        }
        let Standing::Replacing { .. } = self.services[i].standing else { return };
        let Standing::Replacing { def, start } =
            std::mem::replace(&mut self.services[i].standing, Standing::Active)
        else {
            return;
        };
        self.install(i, *def);
        // (a shutdown that began meanwhile has the last word)
        if start && !self.is_stopping() {
            let done = std::mem::take(&mut self.services[i].migrated);
            self.apply(i, if done { Event::Completed } else { Event::Requeue });
        }
    }

    /// Dependencies and dependents as indices, from the (new) config.
    pub(super) fn rewire(&mut self, cfg: &Config) {
        let index: HashMap<String, usize> = self
            .services
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.retired())
            .map(|(i, s)| (s.name.clone(), i))
            .collect();
        for svc in &mut self.services {
            svc.dependents.clear();
        }
        for i in 0..self.services.len() {
            let deps: Vec<usize> =
                match (self.services[i].retired(), cfg.services.get(&self.services[i].name)) {
                    (false, Some(svc)) => {
                        svc.depends_on.iter().filter_map(|d| index.get(d).copied()).collect()
                    }
                    _ => Vec::new(),
                };
            for &d in &deps {
                self.services[d].dependents.push(i);
            }
            self.services[i].deps = deps;
        }
    }
}
