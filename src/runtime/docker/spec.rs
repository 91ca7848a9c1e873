//! What defines a service's container: its create request (image, args, env, ports, volumes,
//! network, memory cap, stop signal, labels) and the spec hash over all of it, which decides
//! between adopting a running container and recreating it.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, HostConfigLogConfig, NetworkingConfig, PortBinding,
    RestartPolicy, RestartPolicyNameEnum,
};
use sha2::{Digest, Sha256};

use crate::config::{self, Exec, Protocol};

/// What a container retired by a start-first update is called after its own name (and its
/// run's generation), while its successor starts.
pub(crate) const RETIRED: &str = ".retired-";
pub(crate) const LABEL_PROJECT: &str = "titan.project";
pub(crate) const LABEL_SERVICE: &str = "titan.service";
pub(crate) const LABEL_HASH: &str = "titan.spec-hash";
pub(crate) const COMPOSE_PROJECT: &str = "com.docker.compose.project";
pub(crate) const COMPOSE_SERVICE: &str = "com.docker.compose.service";

/// A container service as the Engine API will create it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ContainerSpec {
    pub(crate) service: String,
    /// `<project>-<service>`.
    pub(crate) name: String,
    pub(crate) image: String,
    /// The network it joins (its own `network`, else `<project>_default`).
    pub(crate) network: String,
    /// Named volumes it mounts (created when missing).
    pub(crate) volumes: Vec<String>,
    pub(crate) body: ContainerCreateBody,
    /// Its stop signal's grace before SIGKILL, as configured (the body's StopTimeout, for a
    /// `docker stop` from outside, is rounded up to whole seconds).
    pub(crate) grace: std::time::Duration,
    /// Hex SHA-256 over everything that defines the container.
    pub(crate) hash: String,
}

impl ContainerSpec {
    /// The spec of `svc` in `project`; `None` for a native service.
    pub(crate) fn of(project: &str, svc: &config::Service) -> Option<Self> {
        let Exec::Image { image, args, cwd, ports, volumes, network, init } = &svc.exec else {
            return None;
        };
        let name = format!("{project}-{}", svc.name);
        let network = network.clone().unwrap_or_else(|| format!("{project}_default"));
        let env: Vec<String> = svc.env.iter().map(|(k, v)| format!("{k}={}", v.expose())).collect();
        let memory = svc.memory.map(|m| m.bytes() as i64);
        let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        for p in ports {
            let proto = if p.protocol == Protocol::Udp { "udp" } else { "tcp" };
            let binding = PortBinding {
                host_ip: Some(p.host_ip.map_or_else(|| "0.0.0.0".into(), |ip| ip.to_string())),
                host_port: Some(p.host.to_string()),
            };
            bindings
                .entry(format!("{}/{proto}", p.container))
                .or_default()
                .get_or_insert_default()
                .push(binding);
        }
        let mut exposed: Vec<String> = bindings.keys().cloned().collect();
        exposed.sort();
        let host_config = HostConfig {
            memory,
            // equal to the memory limit: no swap on top of it
            memory_swap: memory,
            pids_limit: svc.max_pids.map(i64::from),
            port_bindings: (!bindings.is_empty()).then_some(bindings),
            binds: (!volumes.is_empty()).then(|| volumes.clone()),
            network_mode: Some(network.clone()),
            log_config: Some(docker_log()),
            init: init.then_some(true),
            // the supervisor decides restarts
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::NO),
                maximum_retry_count: None,
            }),
            ..Default::default()
        };
        let endpoint = EndpointSettings { aliases: Some(vec![svc.name.clone()]), ..Default::default() };
        let body = ContainerCreateBody {
            image: Some(image.clone()),
            cmd: (!args.is_empty()).then(|| args.iter().map(|a| a.expose().to_owned()).collect()),
            env: Some(env),
            working_dir: cwd.as_ref().map(|c| c.display().to_string()),
            // a user (or uid[:gid]) inside the image, as `docker run --user`
            user: svc.user.clone(),
            exposed_ports: (!exposed.is_empty()).then_some(exposed),
            stop_signal: Some(svc.stop_signal.to_string()),
            stop_timeout: Some(svc.stop_timeout.0.as_secs_f64().ceil() as i64),
            host_config: Some(host_config),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(network.clone(), endpoint)])),
            }),
            ..Default::default()
        };
        let hash = hash_of(&body);
        let mut body = body;
        body.labels = Some(HashMap::from([
            (LABEL_PROJECT.to_owned(), project.to_owned()),
            (LABEL_SERVICE.to_owned(), svc.name.clone()),
            (LABEL_HASH.to_owned(), hash.clone()),
            (COMPOSE_PROJECT.to_owned(), project.to_owned()),
            (COMPOSE_SERVICE.to_owned(), svc.name.clone()),
        ]));
        let named = volumes.iter().filter_map(|v| named_volume(v)).map(str::to_owned).collect();
        Some(ContainerSpec {
            service: svc.name.clone(),
            name,
            image: image.clone(),
            network,
            volumes: named,
            body,
            grace: svc.stop_timeout.0,
            hash,
        })
    }
}

/// Docker's own copy of a container's output, a bounded buffer: the supervisor streams the
/// output from it into the service's log, and after a restart of the supervisor takes up from
/// where its log ends, so Docker's copy needs to cover only the supervisor's lag and that gap.
/// The `local` driver compresses its rotated files: 20 MiB of output plus four compressed
/// files per container (Docker's `local` defaults, set here so that a daemon-wide default of
/// an unbounded `json-file` does not apply). A 1M-line flood of 100-byte lines is 100 MB of
/// output and left about 25 MiB on disk; unbounded `json-file` kept 128 MB of it.
const DOCKER_LOG_MAX_SIZE: &str = "20m";
const DOCKER_LOG_MAX_FILES: &str = "5";

fn docker_log() -> HostConfigLogConfig {
    HostConfigLogConfig {
        typ: Some("local".into()),
        config: Some(HashMap::from([
            ("max-size".to_owned(), DOCKER_LOG_MAX_SIZE.to_owned()),
            ("max-file".to_owned(), DOCKER_LOG_MAX_FILES.to_owned()),
        ])),
    }
}

/// The volume name of a `name:/path[:mode]` mount; host paths (`/…`, `./…`) are not volumes.
fn named_volume(mount: &str) -> Option<&str> {
    let source = mount.split(':').next()?;
    (!source.is_empty() && !source.starts_with(['/', '.', '~']) && mount.contains(':')).then_some(source)
}

/// SHA-256 of the request as JSON with every map's keys in order, so the same definition
/// hashes the same in every build of the supervisor (a changed hash recreates the container).
fn hash_of(body: &ContainerCreateBody) -> String {
    let value = serde_json::to_value(body).unwrap_or_default();
    let canonical = serde_json::to_string(&sorted(value)).unwrap_or_default();
    Sha256::digest(canonical.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn sorted(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().map(|(k, v)| (k, sorted(v))).collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(toml: &str) -> config::Service {
        let toml = toml.replace("{A}", &"a".repeat(64)).replace("{B}", &"b".repeat(64));
        let text =
            format!("[supervisor]\nproject = \"t\"\nrequire_digests = false\n\n[services.api]\n{toml}\n");
        let src = config::Source { name: "services.toml", text: &text, base_dir: std::path::Path::new("/") };
        let cfg = config::parse(&src, &|_| None).unwrap();
        cfg.services["api"].clone()
    }

    #[test]
    fn the_create_request_carries_the_definition_and_compose_labels() {
        let svc = service(
            "image = \"reg/api@sha256:{A}\"\nargs = [\"-js\"]\nports = [\"127.0.0.1:3100:3100\"]\n\
             memory = \"256MiB\"\nvolumes = [\"ipc:/tmp/ipc\", \"/etc/x:/x:ro\"]\nenv = { A = \"1\" }",
        );
        let spec = ContainerSpec::of("titan", &svc).unwrap();
        assert_eq!((spec.name.as_str(), spec.network.as_str()), ("titan-api", "titan_default"));
        assert_eq!(spec.volumes, vec!["ipc".to_owned()]);
        let host = spec.body.host_config.as_ref().unwrap();
        assert_eq!((host.memory, host.memory_swap), (Some(256 << 20), Some(256 << 20)));
        let binding = &host.port_bindings.as_ref().unwrap()["3100/tcp"].as_ref().unwrap()[0];
        assert_eq!(
            (binding.host_ip.as_deref(), binding.host_port.as_deref()),
            (Some("127.0.0.1"), Some("3100"))
        );
        assert_eq!(spec.body.cmd, Some(vec!["-js".to_owned()]));
        assert_eq!(spec.body.env, Some(vec!["A=1".to_owned()]));
        let labels = spec.body.labels.as_ref().unwrap();
        assert_eq!(labels[COMPOSE_SERVICE], "api");
        assert_eq!(labels[LABEL_HASH], spec.hash);
    }

    #[test]
    fn the_hash_is_stable_and_moves_with_any_defining_change() {
        let a = ContainerSpec::of(
            "t",
            &service("image = \"reg/api@sha256:{A}\"\nenv = { A = \"1\", B = \"2\" }"),
        )
        .unwrap();
        let again = ContainerSpec::of(
            "t",
            &service("image = \"reg/api@sha256:{A}\"\nenv = { B = \"2\", A = \"1\" }"),
        )
        .unwrap();
        assert_eq!(a.hash, again.hash);
        assert_eq!(a.hash.len(), 64);
        for changed in [
            "image = \"reg/api@sha256:{B}\"\nenv = { A = \"1\", B = \"2\" }",
            "image = \"reg/api@sha256:{A}\"\nenv = { A = \"1\", B = \"3\" }",
            "image = \"reg/api@sha256:{A}\"\nenv = { A = \"1\", B = \"2\" }\nmemory = \"64MiB\"",
        ] {
            assert_ne!(ContainerSpec::of("t", &service(changed)).unwrap().hash, a.hash, "{changed}");
        }
        // Docker knows whole seconds; the supervisor's own stop keeps the configured grace
        let graceful =
            ContainerSpec::of("t", &service("image = \"reg/api@sha256:{A}\"\nstop_timeout = \"1.6s\""))
                .unwrap();
        assert_eq!(
            (graceful.grace, graceful.body.stop_timeout),
            (std::time::Duration::from_millis(1600), Some(2))
        );
        let log = graceful.body.host_config.as_ref().and_then(|h| h.log_config.clone()).unwrap();
        assert_eq!(log.typ.as_deref(), Some("local"), "Docker's copy is bounded");
        assert!(log.config.unwrap().contains_key("max-size"));
        // a health check or restart policy does not define the container
        let probe = "image = \"reg/api@sha256:{A}\"\nenv = { A = \"1\", B = \"2\" }\nhealth = { tcp = \"127.0.0.1:1\" }";
        assert_eq!(ContainerSpec::of("t", &service(probe)).unwrap().hash, a.hash);
    }
}
