//! One worker task per container service: its Docker calls in the order the actor asked for
//! them (a start, then its stop signal, then a recreate), each outcome reported back as a
//! message. While dockerd does not answer at all, calls are retried; only errors from a
//! daemon that answers are final.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::tracker::Inspected;
use super::{Report, tell};
use crate::runtime::docker::{ContainerSpec, DockerError, Engine, Running};
use crate::runtime::exit::Exit;
use crate::supervisor::handle::Msg;

/// What a worker does for its service.
pub(super) enum Op {
    Prepare(Box<ContainerSpec>),
    /// Start the container for `run`, or take over the one found running (`adopt`).
    Start {
        run: u64,
        adopt: Option<Running>,
    },
    /// The stop signal or SIGKILL to the container of `run`.
    Signal {
        run: u64,
        sig: String,
    },
    /// Is the container of `run` still running, and if not, how did it end?
    Check {
        run: u64,
        id: String,
    },
    /// Stop the container (within its grace), leaving it in place for a later start.
    Halt,
    /// Rename the running container to `to`, out of the way of its successor (start-first):
    /// it keeps serving until `EndRetired`.
    Retire {
        to: String,
    },
    /// Stop and remove the retired container, in the background; `done` when it is gone.
    EndRetired {
        done: tokio::sync::oneshot::Sender<()>,
    },
    /// Stop and remove the container (and a retired one); the worker ends.
    Remove,
}

/// How long a start waits for a removal from outside to finish before it fails.
const REMOVAL_WAIT: Duration = Duration::from_secs(15);

pub(super) struct Worker {
    pub(crate) engine: Engine,
    pub(crate) slot: usize,
    pub(crate) spec: ContainerSpec,
    /// How long a call may wait for an unreachable dockerd (the service's startup timeout).
    pub(crate) patience: Duration,
    /// Whether the container in place is this spec's: a start never runs a stale one.
    pub(crate) prepared: bool,
    /// The container retired by a start-first update, by name, with the spec it ran.
    pub(crate) retired: Option<(String, ContainerSpec)>,
}

impl Worker {
    /// Handles `ops` until the actor or the channel goes away (or the service is removed).
    pub(crate) async fn run(mut self, mut ops: mpsc::UnboundedReceiver<Op>, tx: mpsc::UnboundedSender<Msg>) {
        while let Some(op) = ops.recv().await {
            let removed = matches!(op, Op::Remove);
            if let Some(report) = self.handle(op).await
                && !tell(&tx, report)
            {
                return;
            }
            if removed {
                return;
            }
        }
    }

    async fn handle(&mut self, op: Op) -> Option<Report> {
        let slot = self.slot;
        match op {
            Op::Prepare(new) => {
                self.spec = *new;
                let result = self.retried(|e| e.prepare(&self.spec)).await;
                self.prepared = result.is_ok();
                Some(Report::Prepared { slot, result })
            }
            Op::Start { run, adopt: Some(running) } => {
                Some(Report::Started { slot, run, result: Ok(running) })
            }
            Op::Start { run, adopt: None } => Some(Report::Started { slot, run, result: self.start().await }),
            Op::Signal { run, sig } => self.signal(run, &sig).await,
            Op::Check { run, id } => {
                let found = match self.retried(|e| e.exit_of(&id)).await {
                    Ok(Some((code, oom))) => Inspected::Ended { exit: Exit::of_docker(code), oom },
                    Ok(None) => Inspected::Running,
                    // gone altogether (removed while dockerd was down), or dockerd answers no
                    // more: nothing of it is left to wait for
                    Err(e) => {
                        if !e.is_not_found() {
                            tracing::warn!(service = %self.spec.service, "{e}");
                        }
                        Inspected::Gone
                    }
                };
                Some(Report::Inspected { slot, run, found })
            }
            Op::Halt => {
                if let Err(e) = self.engine.stop(&self.spec).await {
                    tracing::warn!(service = %self.spec.service, "{e}");
                }
                None
            }
            Op::Retire { to } => {
                match self.engine.retire(&self.spec, &to).await {
                    Ok(()) => self.retired = Some((to, self.spec.clone())),
                    // the next preparation replaces it the plain way: stopped, then created
                    Err(e) => {
                        tracing::warn!(service = %self.spec.service, "cannot start its successor first: {e}")
                    }
                }
                None
            }
            Op::EndRetired { done } => {
                let retired = self.retired.take();
                let engine = self.engine.clone();
                tokio::spawn(async move {
                    if let Some((name, spec)) = retired {
                        end_retired(&engine, &name, &spec).await;
                    }
                    let _ = done.send(());
                });
                None
            }
            Op::Remove => {
                if let Some((name, spec)) = self.retired.take() {
                    end_retired(&self.engine, &name, &spec).await;
                }
                if let Err(e) = self.engine.remove(&self.spec).await {
                    tracing::warn!(service = %self.spec.service, "{e}");
                }
                None
            }
        }
    }

    /// A start; after a failed preparation it is tried again first (and the start fails with
    /// its reason), and what was removed behind our back is made again: the container (also
    /// one whose removal from outside is still under way) or its network.
    async fn start(&mut self) -> Result<Running, DockerError> {
        if !self.prepared {
            self.retried(|e| e.prepare(&self.spec)).await?;
            self.prepared = true;
        }
        let deadline = Instant::now() + REMOVAL_WAIT;
        loop {
            let spec = &self.spec;
            let result = self
                .retried(|e| async move {
                    match e.start(&spec.name).await {
                        Err(err) if err.is_not_found() => {
                            tracing::warn!(service = %spec.service, "{err}: making it again");
                            e.prepare(spec).await?;
                            e.start(&spec.name).await
                        }
                        other => other,
                    }
                })
                .await;
            match result {
                Err(e) if e.is_being_removed() && Instant::now() < deadline => {
                    tracing::info!(service = %self.spec.service, "{e}: waiting for the removal");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                other => return other,
            }
        }
    }

    /// The stop signal or SIGKILL. A SIGKILL that cannot reach dockerd reports the container
    /// gone: a stop must not wait forever for a death nobody will report.
    async fn signal(&self, run: u64, sig: &str) -> Option<Report> {
        let Err(e) = self.engine.signal(&self.spec.name, sig).await else { return None };
        if sig == "SIGKILL" && !reachable(&self.engine).await {
            tracing::warn!(service = %self.spec.service, "{e}: dockerd unreachable, leaving the container as it is");
            let found = Inspected::Ended { exit: Exit::Signal(9), oom: false };
            return Some(Report::Inspected { slot: self.slot, run, found });
        }
        tracing::warn!(service = %self.spec.service, "{e}");
        None
    }

    /// Runs `call`, and while dockerd does not answer at all (restarting), tries again for up
    /// to `patience`.
    async fn retried<'a, T, F, Fut>(&'a self, call: F) -> Result<T, DockerError>
    where
        F: Fn(&'a Engine) -> Fut,
        Fut: std::future::Future<Output = Result<T, DockerError>>,
    {
        let deadline = crate::supervisor::fsm::after(Instant::now(), self.patience);
        let mut delay = Duration::from_millis(100);
        loop {
            match call(&self.engine).await {
                Ok(v) => return Ok(v),
                Err(e) if Instant::now() < deadline && !reachable(&self.engine).await => {
                    tracing::debug!("dockerd unreachable ({e}); retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Stops and removes a container a start-first update retired, saying so.
async fn end_retired(engine: &Engine, name: &str, spec: &ContainerSpec) {
    match engine.remove_retired(name, spec).await {
        Ok(()) => {
            tracing::info!(service = %spec.service, container = %name, "its predecessor stopped and removed")
        }
        Err(e) => tracing::warn!(service = %spec.service, "{e}"),
    }
}

/// Whether dockerd answers a ping within 2 s (a hung daemon counts as unreachable).
async fn reachable(engine: &Engine) -> bool {
    matches!(tokio::time::timeout(Duration::from_secs(2), engine.docker().ping()).await, Ok(Ok(_)))
}
