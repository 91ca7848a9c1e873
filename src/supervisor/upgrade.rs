//! Upgrade (`titan-supervisor upgrade`, SIGUSR2): before anything stops, the binary the daemon
//! will execute is run once with `--version` (by the one spawner, reaped by the one reaper) and
//! must exit 0 within `CHECK_LIMIT`; a binary that is gone, not executable or broken refuses
//! the upgrade with nothing touched. Then the services that are up keep running — containers,
//! and native runs handed to the next image (`handover`) — the others stop, and the caller
//! re-executes the binary, which takes them up.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::actor::{Owner, Supervisor};
use super::order::Shutdown;
use crate::runtime::exit::Exit;
use crate::runtime::spawn;

/// How long the new binary gets to answer `--version`.
const CHECK_LIMIT: Duration = Duration::from_secs(10);

/// Why an upgrade was refused (nothing stopped).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpgradeRefused {
    #[error("the supervisor is stopping")]
    Stopping,
    #[error("an upgrade is already under way")]
    Busy,
    #[error("cannot tell which binary to execute")]
    NoBinary,
    #[error("the new binary {} cannot be run: {why}", binary.display())]
    Broken { binary: PathBuf, why: String },
}

pub(crate) type Reply = Option<tokio::sync::oneshot::Sender<Result<(), UpgradeRefused>>>;

/// The `--version` run of the new binary under way.
pub(crate) struct Check {
    pid: Pid,
    deadline: Instant,
    what: &'static str,
    reply: Reply,
}

impl Check {
    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }
}

impl Supervisor {
    /// An upgrade asked for (`what`: SIGUSR2 or a request): the new binary is checked first.
    pub(super) fn on_upgrade(&mut self, what: &'static str, reply: Reply) {
        let refused = if self.is_stopping() {
            Some(UpgradeRefused::Stopping)
        } else if self.upgrade_check.is_some() {
            Some(UpgradeRefused::Busy)
        } else {
            self.check_binary(what).err()
        };
        match (refused, reply) {
            (Some(why), reply) => refuse(what, why, reply),
            (None, reply) => {
                if let Some(check) = self.upgrade_check.as_mut() {
                    check.reply = reply;
                }
            }
        }
    }

    /// Starts `<binary> --version`.
    fn check_binary(&mut self, what: &'static str) -> Result<(), UpgradeRefused> {
        let binary = self.binary.clone().ok_or(UpgradeRefused::NoBinary)?;
        let broken = |why: String| UpgradeRefused::Broken { binary: binary.clone(), why };
        let argv = [binary.display().to_string(), "--version".to_owned()];
        let env: Vec<(String, String)> = std::env::vars().collect();
        let cmd = spawn::Command {
            argv: &argv,
            name: &argv[0],
            env: &env,
            cwd: None,
            credentials: None,
            cgroup_join: &[],
            stdout: None,
            stderr: None,
        };
        let pid = spawn::spawn(cmd).map_err(|e| broken(e.to_string()))?;
        self.owners.insert(pid, Owner::UpgradeCheck);
        self.upgrade_check = Some(Check { pid, deadline: Instant::now() + CHECK_LIMIT, what, reply: None });
        Ok(())
    }

    /// The `--version` run ended: the upgrade goes ahead on a clean exit.
    pub(super) fn on_upgrade_check(&mut self, exit: Exit) {
        let Some(check) = self.upgrade_check.take() else { return };
        if !exit.success() {
            let binary = self.binary.clone().unwrap_or_default();
            return refuse(
                check.what,
                UpgradeRefused::Broken { binary, why: format!("`--version` ended with {exit}") },
                check.reply,
            );
        }
        if self.is_stopping() {
            return refuse(check.what, UpgradeRefused::Stopping, check.reply);
        }
        if let Some(reply) = check.reply {
            let _ = reply.send(Ok(()));
        }
        tracing::info!(
            "{}: upgrading: services that are up keep running for the new image, the others stop",
            check.what
        );
        crate::notify::reloading();
        self.upgrading = true;
        self.shutdown = Shutdown::Graceful;
        self.progress_shutdown();
    }

    /// A `--version` that does not end in time is killed (and then refuses the upgrade).
    pub(super) fn upgrade_timer(&mut self, now: Instant) {
        if let Some(check) = &self.upgrade_check
            && check.deadline <= now
        {
            let _ = kill(check.pid, Signal::SIGKILL);
        }
    }
}

fn refuse(what: &str, why: UpgradeRefused, reply: Reply) {
    tracing::warn!("{what}: upgrade refused, nothing stopped: {why}");
    if let Some(reply) = reply {
        let _ = reply.send(Err(why));
    }
}
