//! The resolved configuration the rest of the program uses: defaults applied, variables
//! interpolated, dependencies expanded to service names, health checks typed.

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use super::interp::Value;
pub use super::raw::{
    Deploy, Kind, LogFormat, Parity, ParitySource, RestartPolicy, Supervisor, UpdateOrder, Verify,
    VerifyExec, VerifyHttp,
};
use super::units::{Duration, Signal, Size};
use crate::graph::{Graph, GraphError};

/// A valid services.toml.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it was read from (as given), for messages.
    pub file: PathBuf,
    pub supervisor: Supervisor,
    /// Group names in start order; empty when the file has no `[groups]`.
    pub groups: Vec<String>,
    /// Services by name.
    pub services: BTreeMap<String, Service>,
    pub deploy: Deploy,
    pub verify: Verify,
    pub nats: Option<Nats>,
}

impl Config {
    /// No services, with `supervisor`'s settings: a host waiting for its first deploy.
    pub fn empty(supervisor: Supervisor) -> Config {
        Config {
            file: PathBuf::from("(no services.toml yet)"),
            supervisor,
            groups: Vec::new(),
            services: BTreeMap::new(),
            deploy: Deploy::default(),
            verify: Verify::default(),
            nats: None,
        }
    }

    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.get(name)
    }

    /// The dependency graph of the services.
    pub fn graph(&self) -> Result<Graph, GraphError> {
        let nodes = self.services.iter().map(|(n, s)| (n.clone(), s.depends_on.clone())).collect();
        Graph::new(&nodes)
    }
}

/// `[nats]`, resolved: the servers, how the supervisor authenticates, its name there.
#[derive(Clone, Debug)]
pub struct Nats {
    pub urls: Vec<String>,
    pub auth: NatsAuth,
    /// A private CA the servers' certificates are checked against (besides the system's).
    pub ca_file: Option<PathBuf>,
    pub name: String,
    pub timeout: Duration,
}

/// One way to authenticate to NATS (at most one is given).
#[derive(Clone, Debug)]
pub enum NatsAuth {
    None,
    UserPassword { user: Value, password: Value },
    Token(Value),
    Nkey(Value),
    CredsFile(PathBuf),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Service {
    pub name: String,
    pub group: Option<String>,
    /// Every service this one waits for, groups expanded, sorted.
    pub depends_on: Vec<String>,
    /// Whether `depends_on` was written (true) or derived from the group order (false).
    pub explicit_depends_on: bool,
    pub kind: Kind,
    pub exec: Exec,
    pub env: BTreeMap<String, Value>,
    pub health: Health,
    pub unhealthy_after: u32,
    pub memory: Option<Size>,
    pub memory_restart: Option<Size>,
    pub max_pids: Option<u32>,
    pub user: Option<String>,
    pub stop_signal: Signal,
    pub stop_timeout: Duration,
    pub startup_timeout: Duration,
    pub restart: Restart,
    pub logs: Logs,
    /// A migration after which the previous release cannot run (`rollback_blocked`).
    pub breaks_previous: bool,
    pub update_order: UpdateOrder,
}

/// What runs: a container image or a native command.
#[derive(Clone, Debug, PartialEq)]
pub enum Exec {
    Image {
        image: String,
        args: Vec<Value>,
        cwd: Option<PathBuf>,
        ports: Vec<Port>,
        volumes: Vec<String>,
        network: Option<String>,
        /// Docker's init as PID 1 (`docker run --init`).
        init: bool,
    },
    Command {
        /// Program and arguments (`command` followed by `args`).
        argv: Vec<Value>,
        /// Working directory, relative paths already resolved against the config's directory.
        cwd: Option<PathBuf>,
    },
}

/// A published port, `[ip:]host:container[/proto]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    pub host_ip: Option<std::net::IpAddr>,
    pub host: u16,
    pub container: u16,
    pub protocol: Protocol,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Health {
    pub check: Check,
    /// Probe period after the startup gate.
    pub interval: Duration,
    pub timeout: Duration,
    /// Probe period during the startup gate.
    pub start_interval: Duration,
}

#[derive(Clone, Debug)]
pub enum Check {
    /// Healthy as soon as it runs (compose's `service_started`).
    None,
    Http(http::Uri),
    Tcp(String),
    Exec(Vec<String>),
    Log(regex::Regex),
    /// The service sends `READY=1` to `$NOTIFY_SOCKET`.
    Notify,
}

impl Check {
    /// Whether it is a probe the supervisor runs periodically (http, tcp, exec).
    pub fn is_polled(&self) -> bool {
        matches!(self, Check::Http(_) | Check::Tcp(_) | Check::Exec(_))
    }
}

impl PartialEq for Check {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Check::None, Check::None) | (Check::Notify, Check::Notify) => true,
            (Check::Http(a), Check::Http(b)) => a == b,
            (Check::Tcp(a), Check::Tcp(b)) => a == b,
            (Check::Exec(a), Check::Exec(b)) => a == b,
            (Check::Log(a), Check::Log(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restart {
    pub policy: RestartPolicy,
    pub max_restarts: u32,
    pub window: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub min_uptime: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logs {
    pub max_size: Size,
    pub retain: Duration,
    pub max_files: u32,
    pub compress: bool,
    pub format: LogFormat,
}

/// Built-in values for every per-service key `[defaults]` does not set.
pub mod builtin {
    use super::*;

    pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
    pub const STOP_TIMEOUT: Duration = Duration::from_millis(1600);
    pub const INTERVAL: Duration = Duration::from_secs(5);
    pub const TIMEOUT: Duration = Duration::from_secs(2);
    pub const START_INTERVAL: Duration = Duration::from_millis(20);
    pub const UNHEALTHY_AFTER: u32 = 3;
    pub const MAX_RESTARTS: u32 = 10;
    pub const RESTART_WINDOW: Duration = Duration::from_secs(60);
    pub const BACKOFF_INITIAL: Duration = Duration::from_millis(100);
    pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
    pub const MIN_UPTIME: Duration = Duration::from_secs(1);
    pub const LOG_MAX_SIZE: Size = Size::mib(10);
    pub const LOG_RETAIN: Duration = Duration::from_secs(30 * 86_400);
    pub const LOG_MAX_FILES: u32 = 30;
}
