//! One run of a service: born when its start is performed, dropped when its process (or
//! container) has ended, so nothing of one run can leak into the next. It holds what belongs to
//! that run only: its generation (results of older runs are ignored), the process or the
//! container, the probe schedule, the memory watch and the arming of a `log` health check.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use nix::unistd::Pid;

use super::containers::tracker::ContainerRun;

/// A run of a service.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) generation: u64,
    pub(crate) kind: RunKind,
    pub(crate) probe: Probe,
    pub(crate) memory: MemoryWatch,
    /// Set while a `log` health check waits for its line; the output watch of this run holds
    /// it, so a line of an earlier run can never pass a later run's gate.
    pub(crate) log_armed: Arc<AtomicBool>,
}

/// What runs: a process of ours, or a container.
#[derive(Debug)]
pub(crate) enum RunKind {
    Native {
        pid: Pid,
        /// The cgroup's OOM-kill counter when the run started.
        oom_base: u64,
        /// The read ends of its stdout and stderr pipes (what the log thread reads, duplicated):
        /// an upgrade hands them to the next process image with the run.
        output: [std::os::fd::OwnedFd; 2],
    },
    Container(ContainerRun),
}

/// The probe schedule of the run.
#[derive(Debug, Default)]
pub(crate) struct Probe {
    /// When the next periodic probe is due (`None`: no periodic probe now).
    pub(crate) next: Option<Instant>,
    /// When the probe in flight was launched.
    pub(crate) in_flight: Option<Instant>,
    /// A running exec probe and when it times out.
    pub(crate) exec: Option<(Pid, Instant)>,
}

/// The memory of the run's processes, as last read.
#[derive(Debug, Default)]
pub(crate) struct MemoryWatch {
    pub(crate) rss: Option<u64>,
    /// Since when RSS has been above `memory_restart`.
    pub(crate) high_since: Option<Instant>,
}

impl Run {
    pub(crate) fn new(generation: u64, kind: RunKind) -> Run {
        Run {
            generation,
            kind,
            probe: Probe::default(),
            memory: MemoryWatch::default(),
            log_armed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The process whose session (and so whose memory) is the run's: our child, or the
    /// container's main process as the host sees it.
    pub(crate) fn main_pid(&self) -> Option<Pid> {
        match &self.kind {
            RunKind::Native { pid, .. } => Some(*pid),
            RunKind::Container(c) => c.running.as_ref()?.pid.map(Pid::from_raw),
        }
    }

    /// The pid `status` shows: a native run's (a container shows its id instead).
    pub(crate) fn pid(&self) -> Option<Pid> {
        match &self.kind {
            RunKind::Native { pid, .. } => Some(*pid),
            RunKind::Container(_) => None,
        }
    }

    pub(crate) fn container(&self) -> Option<&ContainerRun> {
        match &self.kind {
            RunKind::Container(c) => Some(c),
            RunKind::Native { .. } => None,
        }
    }

    pub(crate) fn container_mut(&mut self) -> Option<&mut ContainerRun> {
        match &mut self.kind {
            RunKind::Container(c) => Some(c),
            RunKind::Native { .. } => None,
        }
    }

    /// The id of the run's container, once it runs.
    pub(crate) fn container_id(&self) -> Option<&str> {
        Some(self.container()?.running.as_ref()?.id.as_str())
    }

    /// A container that has not been reported running yet: nothing to probe (its published
    /// ports answer through docker-proxy before it listens).
    pub(crate) fn awaiting_container(&self) -> bool {
        self.container().is_some_and(|c| c.running.is_none())
    }

    /// When a container run's container really started, as an `Instant` (an adopted one
    /// started before this supervisor did); `None` for a native run.
    pub(crate) fn started_at(&self) -> Option<Instant> {
        let nanos = self.container()?.running.as_ref()?.started_nanos;
        let nanos = u64::try_from(nanos).ok().filter(|&n| n > 0)?;
        let started = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(nanos);
        let ago = std::time::SystemTime::now().duration_since(started).ok()?;
        Instant::now().checked_sub(ago)
    }
}
