//! Services' cgroups as the actor uses them: created at boot under the supervisor's own
//! cgroup (leftovers of an earlier run killed first), joined by each child before exec, read
//! for OOM kills, emptied on kill and removed at exit. A service with `memory` or `max_pids`
//! gets its caps or does not start.
//!
//! Services without caps get no cgroup: on cgroup v1 the first move of a process into a cgroup
//! after a quiet spell waits for an RCU grace period (10–30 ms measured here, against 0.5 ms
//! for the whole spawn otherwise), which would cost every tier and every restart that much.
//! Their process tree is tracked by session instead.

use std::ffi::CString;

use super::actor::Supervisor;
use super::service::{Backend, Caps};

impl Supervisor {
    /// The cgroup of a native service with caps, made for its definition's limits (any
    /// earlier one, of this or an earlier supervisor, emptied and removed first). Called when
    /// a definition is installed, with no run in progress.
    pub(super) fn caps_for(&self, name: &str, limits: &crate::runtime::cgroup::Limits) -> Caps {
        if limits.memory_max.is_none() && limits.pids_max.is_none() {
            return Caps::None;
        }
        let root = match &self.cgroups {
            Ok(root) => root,
            Err(e) => return Caps::Failed(format!("cgroups unavailable: {e}")),
        };
        let prefix = &self.settings.project;
        if let Ok(Some(old)) = root.existing(prefix, name) {
            let _ = old.kill_all();
            let _ = old.remove();
        }
        match root.create(prefix, name, limits) {
            Ok(cg) => Caps::Applied(cg),
            Err(e) => Caps::Failed(e.to_string()),
        }
    }

    /// Empties and removes the cgroups of services no longer in the config (`keep`), left by
    /// an earlier supervisor: a removed service's double-forked processes end there too.
    pub(super) fn remove_foreign_cgroups(&self, keep: &[String]) {
        let Ok(root) = &self.cgroups else { return };
        for service in root.services(&self.settings.project) {
            if keep.contains(&service) {
                continue;
            }
            if let Ok(Some(cg)) = root.existing(&self.settings.project, &service) {
                tracing::warn!(service, "removing the cgroup of a service no longer in the config");
                release(&service, cg);
            }
        }
    }

    /// The cgroup of a native service whose run an upgrade handed over: the one there, with
    /// its processes (made anew only when it is missing).
    pub(super) fn caps_kept(&self, name: &str, limits: &crate::runtime::cgroup::Limits) -> Caps {
        if limits.memory_max.is_none() && limits.pids_max.is_none() {
            return Caps::None;
        }
        match &self.cgroups {
            Ok(root) => match root.existing(&self.settings.project, name) {
                Ok(Some(cg)) => Caps::Applied(cg),
                _ => self.caps_for(name, limits),
            },
            Err(e) => Caps::Failed(format!("cgroups unavailable: {e}")),
        }
    }

    /// The files a child writes to join its cgroup; an error when its caps could not be made.
    pub(super) fn cgroup_join(&self, i: usize) -> Result<Vec<CString>, String> {
        match &self.services[i].backend {
            Backend::Native(Caps::Failed(e)) => Err(e.clone()),
            Backend::Native(Caps::Applied(cg)) => Ok(cg.join_files().to_vec()),
            _ => Ok(Vec::new()),
        }
    }

    /// SIGKILLs every process in the service's cgroup, once, without waiting: the actor must
    /// not block, and a new run may join the cgroup right after.
    pub(super) fn kill_cgroup(&self, i: usize) {
        let Some(cg) = self.services[i].cgroup() else { return };
        for pid in cg.pids().unwrap_or_default() {
            if pid > 0 && pid != std::process::id() as i32 {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }

    /// Kills leftovers and removes every service cgroup (at exit).
    pub(super) fn remove_cgroups(&mut self) {
        for svc in &mut self.services {
            if let Backend::Native(caps) = &mut svc.backend
                && let Caps::Applied(cg) = std::mem::replace(caps, Caps::None)
            {
                release(&svc.name, cg);
            }
        }
    }
}

/// Empties and removes a service's cgroup.
pub(super) fn release(service: &str, cg: crate::runtime::cgroup::ServiceCgroup) {
    let _ = cg.kill_all();
    if let Err(e) = cg.remove() {
        tracing::debug!(service, "cgroup not removed: {e}");
    }
}
