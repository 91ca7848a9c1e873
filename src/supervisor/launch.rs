//! Starting and ending runs. The Spawn action of a native service: pipes to its log, its
//! cgroup, the fork/exec (which returns once the exec succeeded), its pid file; of a container
//! service: its worker's start. What ends with a run: its process group and the rest of its
//! cgroup, an exec probe still running, its pid file — and the run itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::actor::{Owner, Supervisor};
use super::definition::{Launch, Native};
use super::fsm::Event;
use super::run::{Run, RunKind};
use crate::logs::capture;
use crate::runtime::exit::Exit;
use crate::runtime::spawn::{self, SpawnError};

/// Why a native run could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
    #[error("cannot apply memory/pids caps: {0}")]
    Caps(String),
    #[error("cannot create pipes: {0}")]
    Pipes(#[source] std::io::Error),
    #[error(transparent)]
    Spawn(#[from] SpawnError),
}

impl Supervisor {
    /// The Spawn action: `Spawned` once a native exec succeeded, nothing while a container's
    /// start is under way (its outcome comes as a report), `SpawnFailed` with why.
    pub(super) fn launch(&mut self, i: usize) -> Option<Event> {
        match &self.services[i].def.launch {
            Launch::Container(_) => {
                self.launch_container(i);
                None
            }
            Launch::Native(native) => Some(match self.launch_native(i, &native.clone()) {
                Ok(()) => Event::Spawned,
                Err(e) => Event::SpawnFailed(e.to_string()),
            }),
        }
    }

    /// Makes `run` service `i`'s current run, its probes scheduled for the startup gate.
    pub(super) fn begin_run(&mut self, i: usize, mut run: Run) {
        let health = &self.services[i].def.config.health;
        if health.check.is_polled() {
            run.probe.next = Some(super::fsm::after(Instant::now(), health.start_interval.0));
        }
        self.services[i].run = Some(run);
    }

    /// The arming of a new run's `log` check: armed from the start when it has one (the output
    /// is read on the log thread and may show the line before the actor moves on).
    pub(super) fn new_log_arming(&self, i: usize) -> Arc<AtomicBool> {
        Arc::new(AtomicBool::new(self.services[i].def.log_pattern.is_some()))
    }

    fn launch_native(&mut self, i: usize, native: &Native) -> Result<(), StartError> {
        let join = self.cgroup_join(i).map_err(StartError::Caps)?;
        let pipes = capture::pipes().map_err(StartError::Pipes)?;
        let out = pipes.out_read.try_clone().map_err(StartError::Pipes)?;
        let err = pipes.err_read.try_clone().map_err(StartError::Pipes)?;
        let generation = self.services[i].next_generation();
        let armed = self.new_log_arming(i);
        let watch = self.log_watch(i, generation, &armed);
        let svc = &self.services[i];
        self.logs.capture(pipes.out_read, pipes.err_read, svc.log.clone(), watch);
        let env = native.environment(svc.notify.as_ref().map(|b| b.addr.as_str()));
        let cmd = spawn::Command {
            argv: &native.argv,
            name: &native.name,
            env: &env,
            cwd: native.cwd.as_deref(),
            credentials: native.credentials.as_ref(),
            cgroup_join: &join,
            stdout: Some(pipes.out_write),
            stderr: Some(pipes.err_write),
        };
        let started = Instant::now();
        let pid = spawn::spawn(cmd)?;
        tracing::debug!(service = %svc.name, pid = pid.as_raw(), took_us = started.elapsed().as_micros() as u64, "spawned");
        self.owners.insert(pid, Owner::Service { slot: i, run: generation });
        let oom_base = svc.cgroup().and_then(|c| c.oom_kills().ok()).unwrap_or(0);
        if let Err(e) = super::leftovers::record(&self.pid_dir(), &svc.name, pid) {
            tracing::warn!(service = %svc.name, "cannot write its pid file: {e}");
        }
        let mut run = Run::new(generation, RunKind::Native { pid, oom_base, output: [out, err] });
        run.log_armed = armed;
        self.begin_run(i, run);
        Ok(())
    }

    pub(super) fn pid_dir(&self) -> std::path::PathBuf {
        self.settings.state_dir.join("pids")
    }

    /// The main process of service `i`'s current run ended.
    pub(super) fn on_service_exit(&mut self, i: usize, pid: Pid, exit: Exit) {
        // Whatever the main process left behind (its process group, its cgroup) goes with it.
        let _ = kill(Pid::from_raw(-pid.as_raw()), Signal::SIGKILL);
        self.kill_cgroup(i);
        let oom = self.oom_during_run(i);
        super::leftovers::forget(&self.pid_dir(), &self.services[i].name);
        self.end_run(i);
        self.logs.note(&self.services[i].log, format!("pid {pid} ended: {exit}"));
        self.apply(i, Event::Exited { exit, oom });
    }

    /// Drops service `i`'s current run and what belongs to it alone.
    pub(super) fn end_run(&mut self, i: usize) {
        let Some(run) = self.services[i].run.take() else { return };
        run.log_armed.store(false, Ordering::Release);
        if let Some((probe, _)) = run.probe.exec {
            // reaped like any child; its result then belongs to no run
            let _ = kill(Pid::from_raw(-probe.as_raw()), Signal::SIGKILL);
        }
    }

    /// Whether the kernel OOM-killed something in the service's cgroup during its current run.
    fn oom_during_run(&self, i: usize) -> bool {
        let svc = &self.services[i];
        let Some(RunKind::Native { oom_base, .. }) = svc.run.as_ref().map(|r| &r.kind) else { return false };
        svc.cgroup().and_then(|c| c.oom_kills().ok()).is_some_and(|n| n > *oom_base)
    }
}
