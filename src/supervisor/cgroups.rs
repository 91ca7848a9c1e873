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
use crate::runtime::cgroup::Limits;

impl Supervisor {
    /// Creates every native service's cgroup; failures are kept and reported at spawn.
    pub(super) fn setup_cgroups(&mut self) {
        for i in 0..self.slots.len() {
            self.setup_cgroup(i);
        }
    }

    /// Creates (or re-creates, after a reload changed its caps) one service's cgroup.
    pub(super) fn setup_cgroup(&mut self, i: usize) {
        let prefix = self.cfg.supervisor.project.clone();
        let slot = &mut self.slots[i];
        let limits = Limits { memory_max: slot.svc.memory.map(|m| m.bytes()), pids_max: slot.svc.max_pids };
        slot.cgroup_error = None;
        if let Some(old) = slot.cgroup.take() {
            let _ = old.kill_all();
            let _ = old.remove();
        }
        if limits.memory_max.is_none() && limits.pids_max.is_none() {
            return;
        }
        let made = match &self.cgroups {
            Ok(root) => {
                if let Ok(Some(old)) = root.existing(&prefix, &slot.name) {
                    let _ = old.kill_all();
                    let _ = old.remove();
                }
                root.create(&prefix, &slot.name, &limits).map_err(|e| e.to_string())
            }
            Err(e) => Err(format!("cgroups unavailable: {e}")),
        };
        match made {
            Ok(cg) => slot.cgroup = Some(cg),
            Err(e) => slot.cgroup_error = Some(format!("cannot apply memory/pids caps: {e}")),
        }
    }

    /// The files a child writes to join its cgroup; an error when its caps could not be made.
    pub(super) fn cgroup_join(&self, i: usize) -> Result<Vec<CString>, String> {
        let slot = &self.slots[i];
        if let Some(e) = &slot.cgroup_error {
            return Err(e.clone());
        }
        Ok(slot.cgroup.as_ref().map(|c| c.join_files().to_vec()).unwrap_or_default())
    }

    /// SIGKILLs every process in the service's cgroup, once, without waiting: the actor must
    /// not block, and a new run may join the cgroup right after.
    pub(super) fn kill_cgroup(&self, i: usize) {
        let Some(cg) = &self.slots[i].cgroup else {
            return;
        };
        for pid in cg.pids().unwrap_or_default() {
            if pid > 0 && pid != std::process::id() as i32 {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }

    /// Remembers the OOM counter when a run starts.
    pub(super) fn note_spawned(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        slot.oom_base = slot.cgroup.as_ref().and_then(|c| c.oom_kills().ok()).unwrap_or(0);
    }

    /// Whether the kernel OOM-killed something in the service's cgroup during this run.
    pub(super) fn oom_since_spawn(&self, i: usize) -> bool {
        let slot = &self.slots[i];
        slot.cgroup.as_ref().and_then(|c| c.oom_kills().ok()).is_some_and(|n| n > slot.oom_base)
    }

    /// Kills leftovers and removes every service cgroup (at exit).
    pub(super) fn remove_cgroups(&mut self) {
        for slot in &mut self.slots {
            if let Some(cg) = slot.cgroup.take() {
                let _ = cg.kill_all();
                if let Err(e) = cg.remove() {
                    tracing::debug!(service = %slot.name, "cgroup not removed: {e}");
                }
            }
        }
    }
}
