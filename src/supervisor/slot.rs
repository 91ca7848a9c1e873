//! One service as the actor holds it: its config, its lifecycle, and the resources of its
//! current run (pid, pipes' writer, probe schedule, cgroup). Also how its process is described
//! to the spawner: argv, the cleared environment, working directory and user.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use nix::unistd::Pid;

use super::fsm::{self, Lifecycle};
use crate::config::{self, Exec};
use crate::logs::writer::SharedWriter;
use crate::runtime::cgroup::ServiceCgroup;
use crate::runtime::spawn::Credentials;

/// The default PATH of a service when the supervisor has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The probe schedule of the current run.
#[derive(Debug, Default)]
pub struct Probe {
    /// When the next periodic probe is due (`None`: no periodic probe now).
    pub next: Option<Instant>,
    pub in_flight: bool,
    /// A running exec probe and when it times out.
    pub exec: Option<(Pid, Instant)>,
    /// When the probe in flight was launched.
    pub launched: Option<Instant>,
}

pub struct Slot {
    pub name: String,
    pub svc: config::Service,
    pub spec: fsm::Spec,
    pub life: Lifecycle,
    pub deps: Vec<usize>,
    pub dependents: Vec<usize>,
    /// Generation of the current run; results of older runs are ignored.
    pub run: u64,
    pub pid: Option<Pid>,
    /// How long the last start took to become ready.
    pub ready_after: Option<Duration>,
    pub log: SharedWriter,
    pub probe: Probe,
    /// Set while a `log` health check waits for its line.
    pub log_armed: Arc<AtomicBool>,
    pub notify_socket: Option<PathBuf>,
    pub credentials: Option<Credentials>,
    /// Since when RSS has been above `memory_restart`.
    pub memory_high_since: Option<Instant>,
    pub last_rss: Option<u64>,
    /// The compiled pattern of a `log` health check.
    pub log_pattern: Option<regex::bytes::Regex>,
    pub cgroup: Option<ServiceCgroup>,
    /// Why the caps of this service could not be applied (it then cannot start).
    pub cgroup_error: Option<String>,
    /// The cgroup's OOM-kill counter when the current run started.
    pub oom_base: u64,
    /// Removed from the config by a reload: stopped, and no longer shown.
    pub retired: bool,
    /// Changed by a reload: once stopped, back to pending with the new definition.
    pub requeue: bool,
    /// A container service's container; `None` for a native service.
    pub container: Option<super::containers::ContainerSlot>,
}

impl Slot {
    pub fn new(svc: config::Service, log: SharedWriter) -> Self {
        Slot {
            name: svc.name.clone(),
            spec: fsm::Spec::of(&svc),
            svc,
            life: Lifecycle::default(),
            deps: Vec::new(),
            dependents: Vec::new(),
            run: 0,
            pid: None,
            ready_after: None,
            log,
            probe: Probe::default(),
            log_armed: Arc::new(AtomicBool::new(false)),
            notify_socket: None,
            credentials: None,
            memory_high_since: None,
            last_rss: None,
            log_pattern: None,
            cgroup: None,
            cgroup_error: None,
            oom_base: 0,
            retired: false,
            requeue: false,
            container: None,
        }
    }

    /// argv of a native service (`command` + `args`, interpolated).
    pub fn argv(&self) -> Vec<String> {
        match &self.svc.exec {
            Exec::Command { argv, .. } => argv.iter().map(|a| a.expose().to_owned()).collect(),
            Exec::Image { .. } => Vec::new(),
        }
    }

    pub fn cwd(&self) -> Option<&std::path::Path> {
        match &self.svc.exec {
            Exec::Command { cwd, .. } => cwd.as_deref(),
            Exec::Image { .. } => None,
        }
    }

    /// The whole environment of the service: PATH and HOME (and USER/LOGNAME when it runs as
    /// a user), then the config's `env` (which may override them), then NOTIFY_SOCKET.
    pub fn environment(&self) -> Vec<(String, String)> {
        let mut env = BTreeMap::new();
        let path = std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.to_owned());
        env.insert("PATH".to_owned(), path);
        let home = match &self.credentials {
            Some(c) => c.home.display().to_string(),
            None => std::env::var("HOME").unwrap_or_else(|_| "/".to_owned()),
        };
        env.insert("HOME".to_owned(), home);
        if let Some(c) = &self.credentials {
            env.insert("USER".to_owned(), c.name.clone());
            env.insert("LOGNAME".to_owned(), c.name.clone());
        }
        for (k, v) in &self.svc.env {
            env.insert(k.clone(), v.expose().to_owned());
        }
        if let Some(sock) = &self.notify_socket {
            env.insert("NOTIFY_SOCKET".to_owned(), sock.display().to_string());
        }
        env.into_iter().collect()
    }

    pub fn state_name(&self) -> &'static str {
        self.life.state.name()
    }
}
