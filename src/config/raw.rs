//! The serde model of services.toml exactly as written: every section and key from SPEC, unknown
//! keys refused, values typed. Per-service keys are optional here because `[defaults]` fills
//! them in `resolve`; the supervisor-wide sections carry their defaults directly.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::units::{Duration, ListenAddr, Mode, Signal, Size};

/// `[supervisor]`: paths, the control socket, the metrics listener, secrets and image policy.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Supervisor {
    pub project: String,
    pub state_dir: PathBuf,
    pub log_dir: PathBuf,
    pub releases_dir: PathBuf,
    pub current: PathBuf,
    pub socket: PathBuf,
    pub socket_mode: Mode,
    /// Peers that may do everything (root always may).
    pub allow_uids: Vec<u32>,
    pub allow_gids: Vec<u32>,
    /// Peers that may start, stop and restart services, and read.
    pub operate_uids: Vec<u32>,
    pub operate_gids: Vec<u32>,
    /// Peers that may read: status, logs, events, metrics, releases.
    pub read_uids: Vec<u32>,
    pub read_gids: Vec<u32>,
    pub env_file: Option<PathBuf>,
    pub docker_host: String,
    pub require_digests: bool,
    pub trusted_keys: Vec<PathBuf>,
    /// `GET /metrics` (only that) served on this TCP address too, for a Prometheus that cannot
    /// scrape a Unix socket; absent: no TCP listener at all.
    pub metrics_listen: Option<ListenAddr>,
}

impl Default for Supervisor {
    fn default() -> Self {
        Supervisor {
            project: "titan".into(),
            state_dir: "/opt/titan/state".into(),
            log_dir: "/opt/titan/logs".into(),
            releases_dir: "/opt/titan/releases".into(),
            current: "/opt/titan/current".into(),
            socket: "/run/titan/supervisor.sock".into(),
            socket_mode: Mode(0o660),
            allow_uids: vec![0],
            allow_gids: Vec::new(),
            operate_uids: Vec::new(),
            operate_gids: Vec::new(),
            read_uids: Vec::new(),
            read_gids: Vec::new(),
            env_file: None,
            docker_host: "unix:///var/run/docker.sock".into(),
            require_digests: true,
            trusted_keys: Vec::new(),
            metrics_listen: None,
        }
    }
}

/// `[groups]`: the tiers, in start order.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Groups {
    pub order: Vec<String>,
}

/// `[services.X]`, and `[defaults]` which every service inherits key by key.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub group: Option<String>,
    pub depends_on: Option<Vec<String>>,
    pub image: Option<String>,
    pub command: Option<Vec<String>>,
    pub args: Option<Vec<String>>,
    pub cwd: Option<PathBuf>,
    pub env: Option<BTreeMap<String, EnvString>>,
    pub kind: Option<Kind>,
    pub health: Option<Health>,
    pub unhealthy_after: Option<u32>,
    pub memory: Option<Size>,
    pub memory_restart: Option<Size>,
    pub max_pids: Option<u32>,
    pub ports: Option<Vec<String>>,
    pub volumes: Option<Vec<String>>,
    pub network: Option<String>,
    /// Docker's init (tini) as the container's PID 1, for images whose entrypoint cannot reap.
    pub init: Option<bool>,
    /// A oneshot (a migration) after which the previous release cannot run: a switch that
    /// ran it does not roll back.
    pub breaks_previous: Option<bool>,
    /// How a changed container is replaced: stopped first (default), or started beside the
    /// running one and gated before that one stops.
    pub update_order: Option<UpdateOrder>,
    pub user: Option<String>,
    pub stop_signal: Option<Signal>,
    pub stop_timeout: Option<Duration>,
    pub startup_timeout: Option<Duration>,
    pub restart: Option<RestartPolicy>,
    pub max_restarts: Option<u32>,
    pub restart_window: Option<Duration>,
    pub backoff: Option<Backoff>,
    pub min_uptime: Option<Duration>,
    pub logs: Option<Logs>,
}

/// Keys that describe one service and so make no sense in `[defaults]`.
pub const SERVICE_ONLY_KEYS: &[&str] =
    &["group", "depends_on", "image", "command", "args", "kind", "ports", "update_order", "breaks_previous"];

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateOrder {
    #[default]
    StopFirst,
    StartFirst,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Long-running; ready when its health check passes.
    #[default]
    Service,
    /// Runs to completion; ready when it has exited 0.
    Oneshot,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    pub initial: Option<Duration>,
    pub max: Option<Duration>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Logs {
    pub max_size: Option<Size>,
    pub retain: Option<Duration>,
    pub max_files: Option<u32>,
    pub compress: Option<bool>,
    pub format: Option<LogFormat>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `health = { http = "..." , interval = "1s", ... }` or `health = "none"`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthTable {
    pub http: Option<String>,
    pub tcp: Option<String>,
    pub exec: Option<Vec<String>>,
    pub log: Option<String>,
    pub notify: Option<bool>,
    pub none: Option<bool>,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub start_interval: Option<Duration>,
}

#[derive(Clone, Debug, Default)]
pub struct Health(pub HealthTable);

impl<'de> Deserialize<'de> for Health {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Health;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table such as { http = \"http://127.0.0.1:3100/health\" } or \"none\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Health, E> {
                match v {
                    "none" => Ok(Health(HealthTable { none: Some(true), ..Default::default() })),
                    other => Err(E::custom(format!(
                        "unknown health check {other:?}: write \"none\" or a table with one of \
                         http, tcp, exec, log, notify"
                    ))),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Health, A::Error> {
                HealthTable::deserialize(de::value::MapAccessDeserializer::new(map)).map(Health)
            }
        }
        d.deserialize_any(V)
    }
}

/// An environment value: TOML strings, integers, floats and booleans are all accepted and kept
/// as text, as compose does (`PORT = 3000`).
#[derive(Clone, Debug, PartialEq)]
pub struct EnvString(pub String);

impl<'de> Deserialize<'de> for EnvString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = EnvString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EnvString, E> {
                Ok(EnvString(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<EnvString, E> {
                Ok(EnvString(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<EnvString, E> {
                Ok(EnvString(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<EnvString, E> {
                Ok(EnvString(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<EnvString, E> {
                Ok(EnvString(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// `[deploy]`: how a release switch is verified and rolled back.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Deploy {
    pub probation: Duration,
    pub verify_timeout: Duration,
    pub keep_releases: u32,
    pub disarm: bool,
}

impl Default for Deploy {
    fn default() -> Self {
        Deploy {
            probation: Duration::from_secs(300),
            verify_timeout: Duration::from_secs(60),
            keep_releases: 10,
            disarm: false,
        }
    }
}

/// `[verify]`: checks beyond "every service healthy".
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Verify {
    pub http: Vec<VerifyHttp>,
    pub exec: Vec<VerifyExec>,
    pub parity: Vec<Parity>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VerifyHttp {
    pub url: String,
    #[serde(default = "ok_status")]
    pub status: u16,
    /// A JSON field of the answer's body, as a dotted path (`policy.hash`; an array element by
    /// its index, `items.0.id`). Alone, the check needs the field to be there.
    pub field: Option<String>,
    /// What `field` must equal: a string as itself, anything else as its JSON text (so `42`
    /// equals `"42"`). Needs `field`.
    pub equals: Option<String>,
}

fn ok_status() -> u16 {
    200
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VerifyExec {
    pub command: Vec<String>,
    pub service: Option<String>,
}

/// `[[verify.parity]]`: two sources whose `field` must be equal (the policy hash invariant).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Parity {
    pub name: String,
    pub a: ParitySource,
    pub b: ParitySource,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ParitySource {
    /// GET this URL; exactly one of `http` and `nats`.
    pub http: Option<String>,
    /// Request on this NATS subject and take the reply; exactly one of `http` and `nats`.
    pub nats: Option<String>,
    /// The NATS request's body (empty when not given); only with `nats`.
    pub payload: Option<String>,
    /// How long a NATS request waits for its reply; default 2s; only with `nats`.
    pub timeout: Option<Duration>,
    /// The JSON field compared, as a dotted path (see `VerifyHttp::field`).
    pub field: String,
}

/// `[nats]`: where events go, disarm/arm is sent and parity requests are made. Secrets
/// (`password`, `token`, `nkey`) are interpolated, usually from the env file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nats {
    /// One server or several, comma-separated: `nats://host:port` (`tls://` requires TLS).
    pub url: String,
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    /// An nkey seed (`SU...`).
    pub nkey: Option<String>,
    /// A `.creds` file (a user JWT and its nkey seed).
    pub creds_file: Option<PathBuf>,
    /// PEM certificates of the CA that signed the servers' (for `tls://` with a private CA).
    pub ca_file: Option<PathBuf>,
    /// The client name the server shows; default `titan-supervisor`.
    pub name: Option<String>,
    /// How long the disarm/arm acknowledgement waits; default 2s.
    pub timeout: Option<Duration>,
}
