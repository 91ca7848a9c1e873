//! Putting a definition in place. A service gets everything its definition asks for here and
//! nowhere else — its log writer opened or given the new settings, its notify socket bound
//! (rebound for another user, closed when it no longer notifies), its cgroup made for its caps,
//! its container prepared (or removed when it is no container any more) — at boot, when a
//! reload adds or changes it, and when a switch does. The service is at rest meanwhile: no run
//! uses the resources being replaced.

use super::BootError;
use super::actor::Supervisor;
use super::containers::ContainerBackend;
use super::definition::{Definition, Launch};
use super::service::{Backend, Caps, Service};

impl Supervisor {
    /// Adds the service `def` defines (at boot, or added by a reload); returns its index.
    /// `taking_up`: its run is handed over by an upgrade, its cgroup kept as it is.
    pub(super) fn add_service(&mut self, def: Definition, taking_up: bool) -> Result<usize, BootError> {
        let name = def.config.name.clone();
        let counters = self.metrics.log_counters(&name);
        let log = self
            .logs
            .open_writer(&self.settings.log_dir, &name, &def.logs, counters)
            .map_err(|source| BootError::Dir { path: self.settings.log_dir.join(&name), source })?;
        let backend = match def.launch {
            Launch::Native(_) => Backend::Native(Caps::None),
            Launch::Container(_) => Backend::Container(ContainerBackend::new(&name, &self.settings.log_dir)),
        };
        self.services.push(Service::new(def, log, backend));
        let i = self.services.len() - 1;
        self.equip(i, false, taking_up);
        Ok(i)
    }

    /// Replaces the definition of service `i`, which is at rest, and equips it for the new one.
    pub(super) fn install(&mut self, i: usize, def: Definition) {
        self.services[i].def = def;
        self.equip(i, true, false);
    }

    /// Gives service `i` what its definition asks for; `replacing`: it had another before;
    /// `taking_up`: a run handed over keeps its cgroup.
    fn equip(&mut self, i: usize, replacing: bool, taking_up: bool) {
        if replacing {
            let svc = &self.services[i];
            self.logs.configure(&svc.log, &svc.name, &svc.def.logs);
        }
        self.bind_notify(i);
        self.equip_backend(i, taking_up);
        self.mark_dirty();
    }

    /// The notify socket a `notify = true` service's definition asks for: kept while the uid
    /// it believes stays the same, bound anew for another, closed when it no longer notifies.
    fn bind_notify(&mut self, i: usize) {
        let svc = &mut self.services[i];
        if !svc.def.notify {
            svc.notify = None;
            return;
        }
        let uid = svc.def.uid();
        if svc.notify.as_ref().is_some_and(|b| b.uid == uid) {
            return;
        }
        svc.notify = None;
        match super::notify::bind(&self.settings.project, &svc.name, i, uid, self.tx.clone()) {
            Ok(binding) => svc.notify = Some(binding),
            Err(e) => tracing::error!(service = %svc.name, "cannot bind its notify socket: {e}"),
        }
    }

    /// The backend the definition's launch asks for: a native service's cgroup made for its
    /// caps, a container service's container prepared for its spec; a service that changed
    /// from one to the other leaves the old one behind (its container removed).
    fn equip_backend(&mut self, i: usize, taking_up: bool) {
        let name = self.services[i].name.clone();
        match &self.services[i].def.launch {
            Launch::Native(native) => {
                let limits = native.limits;
                match std::mem::replace(&mut self.services[i].backend, Backend::Native(Caps::None)) {
                    Backend::Native(Caps::Applied(cg)) => super::cgroups::release(&name, cg),
                    Backend::Container(mut c) => c.remove(),
                    Backend::Native(_) => {}
                }
                let caps =
                    if taking_up { self.caps_kept(&name, &limits) } else { self.caps_for(&name, &limits) };
                self.services[i].backend = Backend::Native(caps);
            }
            Launch::Container(spec) => {
                let spec = spec.clone();
                self.connect_docker();
                let svc = &mut self.services[i];
                if let Backend::Native(Caps::Applied(_)) = &svc.backend
                    && let Backend::Native(Caps::Applied(cg)) =
                        std::mem::replace(&mut svc.backend, Backend::Native(Caps::None))
                {
                    super::cgroups::release(&name, cg);
                }
                match &mut svc.backend {
                    Backend::Container(c) if c.has_worker() => c.reprepare(&spec),
                    Backend::Container(_) => self.start_worker(i),
                    Backend::Native(_) => {
                        svc.backend =
                            Backend::Container(ContainerBackend::new(&name, &self.settings.log_dir));
                        self.start_worker(i);
                    }
                }
            }
        }
    }
}
