//! The way in to a running supervisor for other tasks and threads (the control API, the demo):
//! the messages the actor takes, each question with a oneshot for its answer, and the status
//! board and event stream it publishes, which readers use without asking it.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::events;
use super::fsm::{StateKind, Verb};
use super::reload::{ReloadError, Reloaded};
use super::status::Board;

/// What reaches the actor besides signals and timers.
pub(crate) enum Msg {
    Probe {
        slot: usize,
        run: u64,
        ok: bool,
    },
    /// READY=1, or the `log` line was seen; `run` is unknown for notifications.
    Ready {
        slot: usize,
        run: Option<u64>,
    },
    /// The Prometheus exposition.
    Metrics(oneshot::Sender<String>),
    /// Re-read the config and apply the difference.
    Reload(oneshot::Sender<Result<Reloaded, ReloadError>>),
    /// Apply the config at `path` from now on (a switch's release), or no services at all
    /// (`None`: a first deploy undone): read, checked, and only the difference applied, as a
    /// reload.
    Apply {
        path: Option<std::path::PathBuf>,
        /// Oneshots the switch ran to exit 0 already with their new definition.
        migrated: Vec<String>,
        reply: oneshot::Sender<Result<Reloaded, ReloadError>>,
    },
    /// The config file the supervisor applies (reloads re-read it).
    ConfigPath(oneshot::Sender<Option<std::path::PathBuf>>),
    /// A reload's config, read and checked off the actor's thread.
    Loaded {
        why: &'static str,
        loaded: Result<Box<super::reload::Loaded>, ReloadError>,
        reply: Option<oneshot::Sender<Result<Reloaded, ReloadError>>>,
    },
    /// An operator's start, stop or restart of one service.
    Act {
        name: String,
        verb: Verb,
        reply: oneshot::Sender<Act>,
    },
    Shutdown,
    /// Stop the native services, leave containers running, and hand over to a new process
    /// (`titan-supervisor upgrade`, SIGUSR2).
    Upgrade(oneshot::Sender<Result<(), super::upgrade::UpgradeRefused>>),
    /// SIGKILL this process between two turns (fault injection of the deploy tests).
    Die,
    /// What Docker did for a container service.
    Docker(super::containers::Report),
}

/// How the actor took an operator's request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Act {
    Unknown,
    Refused(String),
    /// Nothing to wait for: the service is in this state.
    Done(StateKind),
    /// Under way: its state changes tell the outcome, within `limit`.
    Pending {
        limit: Duration,
    },
}

/// What a request gets once the actor has stopped.
pub(super) const STOPPING: &str = "the supervisor is stopping";

/// A way to talk to a running supervisor from other tasks (the demo, the control API).
#[derive(Clone)]
pub struct Handle {
    pub(super) tx: mpsc::UnboundedSender<Msg>,
    pub(super) events: events::Sender,
    pub(super) board: tokio::sync::watch::Receiver<Board>,
}

impl Handle {
    /// Sends the actor a question and waits for its answer; `None` once it has stopped.
    async fn ask<T>(&self, question: impl FnOnce(oneshot::Sender<T>) -> Msg) -> Option<T> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(question(reply)).ok()?;
        rx.await.ok()
    }

    /// Every service's status, read from the board: a hundred readers never queue at the
    /// actor, and the answer is as fresh as the last state change (uptimes as of reading).
    pub fn status(&self) -> Board {
        self.board.borrow().clone()
    }

    pub(crate) async fn reload(&self) -> Result<Reloaded, ReloadError> {
        self.ask(Msg::Reload).await.unwrap_or(Err(ReloadError::Stopping))
    }

    /// Applies the config at `path` (and re-reads it on later reloads), or with `None` no
    /// services at all.
    pub(crate) async fn apply(
        &self,
        path: Option<std::path::PathBuf>,
        migrated: Vec<String>,
    ) -> Result<Reloaded, ReloadError> {
        self.ask(|reply| Msg::Apply { path, migrated, reply }).await.unwrap_or(Err(ReloadError::Stopping))
    }

    /// The config file applied now.
    pub(crate) async fn config_path(&self) -> Option<std::path::PathBuf> {
        self.ask(Msg::ConfigPath).await.flatten()
    }

    /// The status board, to wait on its changes.
    pub(crate) fn board(&self) -> tokio::sync::watch::Receiver<Board> {
        self.board.clone()
    }

    pub(crate) async fn metrics(&self) -> String {
        self.ask(Msg::Metrics).await.unwrap_or_default()
    }

    pub(crate) async fn act(&self, name: &str, verb: Verb) -> Act {
        let name = name.to_owned();
        self.ask(|reply| Msg::Act { name, verb, reply })
            .await
            .unwrap_or_else(|| Act::Refused(STOPPING.into()))
    }

    pub(crate) fn subscribe(&self) -> events::Receiver {
        self.events.subscribe()
    }

    /// Has the actor SIGKILL the process at its next turn (fault injection, debug builds).
    pub(crate) fn die(&self) {
        let _ = self.tx.send(Msg::Die);
    }

    pub fn shutdown(&self) {
        let _ = self.tx.send(Msg::Shutdown);
    }

    /// Starts an upgrade, once the new binary has been found to run.
    pub(crate) async fn upgrade(&self) -> Result<(), super::upgrade::UpgradeRefused> {
        self.ask(Msg::Upgrade).await.unwrap_or(Err(super::upgrade::UpgradeRefused::Stopping))
    }

    /// Resolves once the supervisor has stopped supervising (every service at rest, or handed
    /// over for an upgrade): nothing asked of it from then on can be answered.
    pub(crate) async fn stopped(&self) {
        self.tx.closed().await;
    }
}
