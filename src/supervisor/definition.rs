//! A service's definition: everything the supervisor derives from its resolved config — the
//! state machine's spec, how it is launched (argv, environment, directory and credentials of a
//! native process; the create request of a container), its log settings and health pattern,
//! whether it notifies readiness, its cgroup caps. `Definition::build` is the one constructor:
//! boot, reload and switch all obtain a service this way, so a key added to services.toml is
//! applied everywhere by changing this one place.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::fsm;
use crate::config::{self, Check, Exec};
use crate::runtime::cgroup::Limits;
use crate::runtime::credentials::{self, Credentials, UserError};
use crate::runtime::docker::ContainerSpec;

/// The default PATH of a service when the supervisor has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What a service is, as derived from its config.
#[derive(Clone, Debug)]
pub(crate) struct Definition {
    /// The resolved config it came from (a reload compares these).
    pub(crate) config: config::Service,
    pub(crate) spec: fsm::Spec,
    pub(crate) launch: Launch,
    pub(crate) logs: config::Logs,
    /// The compiled pattern of a `log` health check.
    pub(crate) log_pattern: Option<regex::bytes::Regex>,
    /// Readiness comes as `READY=1` on a notify socket of its own.
    pub(crate) notify: bool,
}

/// How a run is started.
#[derive(Clone, Debug)]
pub(crate) enum Launch {
    Native(Native),
    Container(Box<ContainerSpec>),
}

/// A native process: what the spawner needs, ready to use.
#[derive(Clone, Debug)]
pub(crate) struct Native {
    pub(crate) argv: Vec<String>,
    /// The program as errors and logs name it: `***` when it holds a secret, which no
    /// output may show.
    pub(crate) name: String,
    /// PATH and HOME (USER and LOGNAME with a user), then the config's `env`, which may
    /// override them. NOTIFY_SOCKET is added at spawn, from the socket bound for the service.
    pub(crate) env: BTreeMap<String, String>,
    pub(crate) cwd: Option<PathBuf>,
    pub(crate) credentials: Option<Credentials>,
    /// Its cgroup caps (`memory`, `max_pids`); none: it gets no cgroup.
    pub(crate) limits: Limits,
}

/// Why a service's definition cannot be built on this host.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    #[error("service {service:?}: {source}")]
    User {
        service: String,
        #[source]
        source: UserError,
    },
    #[error("service {service:?}: health.log: {source}")]
    Pattern {
        service: String,
        #[source]
        source: regex::Error,
    },
}

impl Definition {
    /// The definition of `svc` run by a supervisor with settings `sup` (its project names the
    /// containers). Resolves the user on this host.
    pub(crate) fn build(
        sup: &config::Supervisor,
        svc: &config::Service,
    ) -> Result<Definition, DefinitionError> {
        // an image service always has a container spec; every other service runs a command
        let launch = match ContainerSpec::of(&sup.project, svc) {
            Some(spec) => Launch::Container(Box::new(spec)),
            None => Launch::Native(native(svc)?),
        };
        let log_pattern = match &svc.health.check {
            Check::Log(re) => Some(
                regex::bytes::Regex::new(re.as_str())
                    .map_err(|source| DefinitionError::Pattern { service: svc.name.clone(), source })?,
            ),
            _ => None,
        };
        Ok(Definition {
            spec: fsm::Spec::of(svc),
            launch,
            logs: svc.logs.clone(),
            log_pattern,
            notify: matches!(svc.health.check, Check::Notify),
            config: svc.clone(),
        })
    }

    pub(crate) fn container(&self) -> Option<&ContainerSpec> {
        match &self.launch {
            Launch::Container(spec) => Some(spec),
            Launch::Native(_) => None,
        }
    }

    pub(crate) fn native(&self) -> Option<&Native> {
        match &self.launch {
            Launch::Native(n) => Some(n),
            Launch::Container(_) => None,
        }
    }

    /// The uid its processes run as (and may send READY=1 as): its user's, else ours.
    pub(crate) fn uid(&self) -> u32 {
        let own = nix::unistd::geteuid().as_raw();
        self.native().and_then(|n| n.credentials.as_ref()).map_or(own, |c| c.uid)
    }
}

fn native(svc: &config::Service) -> Result<Native, DefinitionError> {
    let (argv, cwd) = match &svc.exec {
        Exec::Command { argv, cwd } => (argv.as_slice(), cwd.clone()),
        Exec::Image { .. } => (&[][..], None),
    };
    let credentials = svc
        .user
        .as_deref()
        .map(credentials::resolve)
        .transpose()
        .map_err(|source| DefinitionError::User { service: svc.name.clone(), source })?;
    let mut env = BTreeMap::new();
    let path = std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.to_owned());
    env.insert("PATH".to_owned(), path);
    let home = match &credentials {
        Some(c) => c.home.display().to_string(),
        None => std::env::var("HOME").unwrap_or_else(|_| "/".to_owned()),
    };
    env.insert("HOME".to_owned(), home);
    if let Some(c) = &credentials {
        env.insert("USER".to_owned(), c.name.clone());
        env.insert("LOGNAME".to_owned(), c.name.clone());
    }
    for (k, v) in &svc.env {
        env.insert(k.clone(), v.expose().to_owned());
    }
    Ok(Native {
        argv: argv.iter().map(|a| a.expose().to_owned()).collect(),
        name: argv.first().map(ToString::to_string).unwrap_or_default(),
        env,
        cwd,
        credentials,
        limits: Limits { memory_max: svc.memory.map(|m| m.bytes()), pids_max: svc.max_pids },
    })
}

impl Native {
    /// The whole environment of a run, NOTIFY_SOCKET included when it has one.
    pub(crate) fn environment(&self, notify_socket: Option<&str>) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = self.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        if let Some(addr) = notify_socket {
            env.retain(|(k, _)| k != "NOTIFY_SOCKET");
            env.push(("NOTIFY_SOCKET".to_owned(), addr.to_owned()));
        }
        env
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(service: &str) -> config::Config {
        let text =
            format!("[supervisor]\nproject = \"t\"\nrequire_digests = false\n\n[services.api]\n{service}\n");
        let src =
            config::Source { name: "services.toml", text: &text, base_dir: std::path::Path::new("/srv") };
        config::parse(&src, &|_| None).unwrap()
    }

    fn build(service: &str) -> Definition {
        let cfg = cfg(service);
        Definition::build(&cfg.supervisor, &cfg.services["api"]).unwrap()
    }

    #[test]
    fn a_native_definition_carries_every_key_of_its_config() {
        let d = build(
            "command = [\"/bin/app\", \"--x\"]\ncwd = \"app\"\nuser = \"nobody\"\nenv = { MODE = \"prod\", PATH = \"/opt/bin\" }\n\
             memory = \"64MiB\"\nmax_pids = 50\nhealth = { log = \"ready\" }\nlogs = { max_size = \"1MiB\" }",
        );
        let n = d.native().unwrap();
        assert_eq!(n.argv, ["/bin/app", "--x"]);
        assert_eq!(n.cwd.as_deref(), Some(std::path::Path::new("/srv/app")));
        assert_eq!(n.credentials.as_ref().map(|c| c.name.as_str()), Some("nobody"));
        assert_eq!(n.env["MODE"], "prod");
        assert_eq!(n.env["PATH"], "/opt/bin", "the config's env overrides the defaults");
        assert_eq!(n.env["USER"], "nobody");
        assert_eq!(n.limits, Limits { memory_max: Some(64 << 20), pids_max: Some(50) });
        assert!(d.log_pattern.as_ref().is_some_and(|p| p.is_match(b"now ready")));
        assert_eq!(d.logs.max_size.bytes(), 1 << 20);
        assert!(d.spec.gated && !d.notify);
        assert_eq!(d.uid(), n.credentials.as_ref().unwrap().uid);
        let env = n.environment(Some("@sock"));
        assert!(env.contains(&("NOTIFY_SOCKET".to_owned(), "@sock".to_owned())));
    }

    #[test]
    fn a_container_definition_names_its_container_after_the_running_project() {
        let d = build("image = \"reg/api:1\"\nhealth = { notify = true }");
        assert_eq!(d.container().map(|c| c.name.as_str()), Some("t-api"));
        assert!(d.native().is_none() && d.notify);
    }

    #[test]
    fn a_user_this_host_does_not_know_is_an_error_naming_the_service() {
        let cfg = cfg("command = [\"/bin/app\"]");
        let mut svc = cfg.services["api"].clone();
        svc.user = Some("4242424".into());
        let e = Definition::build(&cfg.supervisor, &svc).unwrap_err();
        assert_eq!(e.to_string(), "service \"api\": user \"4242424\" does not exist on this host");
    }
}
