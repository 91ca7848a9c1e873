//! The Titan stack in two files that must not drift: the repo's services.toml and
//! docker-compose.prod.yml define the same services, images, ports, dependencies, health checks,
//! memory caps, volumes, networks and environments. Proved twice, by independent roads: the
//! compose YAML read as plain data, and the compose file through `import-compose`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde_json::Value as Json;
use titan_supervisor::config::{self, Check, Config, Exec, Kind, Source};

use common::{fixtures, run_with, write, write_env_file};

const LIMIT: Duration = Duration::from_secs(30);

/// What both files must agree on for one service, in a form both can be brought to.
#[derive(Debug, PartialEq)]
struct Shape {
    image: String,
    args: Vec<String>,
    oneshot: bool,
    /// `[ip:]host:container`, interpolated.
    ports: Vec<String>,
    volumes: Vec<String>,
    network: Option<String>,
    depends_on: BTreeSet<String>,
    /// `GET :<container port><path> every <interval> within <timeout>`, `exec ...`, or
    /// `started` (no probe compose can express).
    probe: String,
    memory: Option<u64>,
    env: BTreeMap<String, String>,
    /// How long a stop waits before SIGKILL.
    stop_timeout: Duration,
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The sample env file's variables (what `.env.prod` holds on a real host).
fn sample_vars() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(fixtures().join("titan.env.sample")).unwrap();
    text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

/// The repo's services.toml through the library, its env_file replaced by a 0600 copy of the
/// sample, its tags accepted as `validate --allow-unpinned` does (`release create` pins them).
fn services_toml(dir: &Path) -> Config {
    let env = write_env_file(
        dir,
        "env.prod",
        &std::fs::read_to_string(fixtures().join("titan.env.sample")).unwrap(),
    );
    let text = std::fs::read_to_string(root().join("services.toml")).unwrap();
    let text = text.replace("/opt/titan/compose/.env.prod", env.to_str().unwrap());
    let text = text.replace("require_digests = true", "require_digests = false");
    parse("services.toml", &text, &|_| None)
}

fn parse(name: &str, text: &str, env: &dyn Fn(&str) -> Option<String>) -> Config {
    let source = Source { name, text, base_dir: root() };
    config::parse(&source, env).unwrap_or_else(|report| panic!("{report}"))
}

/// A resolved service brought to its shape.
fn shape_of_model(cfg: &Config, name: &str) -> Shape {
    let svc = &cfg.services[name];
    let Exec::Image { image, args, ports, volumes, network, .. } = &svc.exec else {
        panic!("{name}: every Titan service is a container")
    };
    let ports: Vec<String> = ports
        .iter()
        .map(|p| match p.host_ip {
            Some(ip) => format!("{ip}:{}:{}", p.host, p.container),
            None => format!("{}:{}", p.host, p.container),
        })
        .collect();
    let probe = match &svc.health.check {
        Check::Http(uri) => {
            let host_port = uri.port_u16().unwrap_or(80);
            let mapped = svc_container_port(&ports, host_port)
                .unwrap_or_else(|| panic!("{name}: probes host port {host_port}, which it does not publish"));
            timed(format!("GET :{mapped}{}", uri.path()), svc.health.interval.0, svc.health.timeout.0)
        }
        Check::Exec(argv) => timed(exec_probe(argv), svc.health.interval.0, svc.health.timeout.0),
        // compose cannot watch a log line: it is started, as far as compose can say
        Check::None | Check::Log(_) => "started".to_owned(),
        other => panic!("{name}: no compose form for {other:?}"),
    };
    Shape {
        image: image.clone(),
        args: args.iter().map(|a| a.expose().to_owned()).collect(),
        oneshot: svc.kind == Kind::Oneshot,
        ports,
        volumes: volumes.clone(),
        network: network.clone(),
        depends_on: svc.depends_on.iter().cloned().collect(),
        probe,
        memory: svc.memory.map(|m| m.0),
        env: svc.env.iter().map(|(k, v)| (k.clone(), v.expose().to_owned())).collect(),
        stop_timeout: svc.stop_timeout.0,
    }
}

/// The container port a published `host` port leads to.
fn svc_container_port(ports: &[String], host: u16) -> Option<u16> {
    ports.iter().find_map(|p| {
        let mut parts = p.rsplit(':');
        let container = parts.next()?.parse().ok()?;
        (parts.next()?.parse::<u16>().ok()? == host).then_some(container)
    })
}

/// `wget -qO- http://127.0.0.1:P/path` is the compose way of an HTTP probe.
fn exec_probe(argv: &[String]) -> String {
    let url = argv.last().and_then(|u| u.strip_prefix("http://127.0.0.1:"));
    match (argv.first().map(String::as_str), url) {
        (Some("wget"), Some(rest)) => {
            let (port, path) = rest.split_once('/').unwrap_or((rest, ""));
            format!("GET :{port}/{path}")
        }
        _ => format!("exec {}", argv.join(" ")),
    }
}

fn timed(probe: String, interval: Duration, timeout: Duration) -> String {
    format!("{probe} every {interval:?} within {timeout:?}")
}

/// docker-compose.prod.yml as plain YAML data (anchors and merge keys resolved).
fn compose_yaml() -> Json {
    let text = std::fs::read_to_string(root().join("docker-compose.prod.yml")).unwrap();
    serde_saphyr::from_str(&text).expect("docker-compose.prod.yml parses")
}

/// compose's `${VAR}` and `${VAR:-default}` from `vars`.
fn interpolate(text: &str, vars: &BTreeMap<String, String>) -> String {
    let re = regex::Regex::new(r"\$\{([A-Z_][A-Z0-9_]*)(?::-([^}]*))?\}").unwrap();
    re.replace_all(text, |c: &regex::Captures<'_>| match (vars.get(&c[1]), c.get(2)) {
        (Some(v), _) => v.clone(),
        (None, Some(default)) => default.as_str().to_owned(),
        (None, None) => panic!("{}: unset and without a default", &c[1]),
    })
    .into_owned()
}

fn strings(v: &Json, vars: &BTreeMap<String, String>) -> Vec<String> {
    v.as_array().into_iter().flatten().map(|s| interpolate(s.as_str().unwrap(), vars)).collect()
}

/// `512m`, `1g` as docker reads them (binary units).
fn docker_bytes(text: &str) -> u64 {
    let (n, unit) = text.split_at(text.trim_end_matches(char::is_alphabetic).len());
    let scale = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        other => panic!("mem_limit unit {other:?}"),
    };
    n.parse::<u64>().unwrap() * scale
}

fn compose_duration(v: &Json) -> Duration {
    humantime::parse_duration(v.as_str().expect("a duration")).unwrap()
}

/// One compose service brought to its shape, `oneshot` when a dependent waits for it to
/// complete.
fn shape_of_compose(services: &Json, name: &str, vars: &BTreeMap<String, String>) -> Shape {
    let s = &services[name];
    let probe = match s["healthcheck"]["test"].as_array() {
        Some(test) => {
            assert_eq!(test[0], "CMD", "{name}: healthcheck in CMD form");
            let argv: Vec<String> = test[1..].iter().map(|a| a.as_str().unwrap().to_owned()).collect();
            let hc = &s["healthcheck"];
            timed(exec_probe(&argv), compose_duration(&hc["interval"]), compose_duration(&hc["timeout"]))
        }
        None => "started".to_owned(),
    };
    let depends_on: BTreeSet<String> =
        s["depends_on"].as_object().into_iter().flatten().map(|(k, _)| k.clone()).collect();
    let waits_for_completion = services.as_object().unwrap().values().any(|other| {
        other["depends_on"][name]["condition"].as_str() == Some("service_completed_successfully")
    });
    let env = s["environment"].as_object().into_iter().flatten();
    Shape {
        image: s["image"].as_str().unwrap().to_owned(),
        args: strings(&s["command"], vars),
        oneshot: waits_for_completion,
        ports: strings(&s["ports"], vars),
        volumes: strings(&s["volumes"], vars),
        network: s["networks"].as_array().and_then(|n| n.first()).map(|n| n.as_str().unwrap().to_owned()),
        depends_on,
        probe,
        memory: s["mem_limit"].as_str().map(docker_bytes),
        env: env.map(|(k, v)| (k.clone(), interpolate(v.as_str().unwrap(), vars))).collect(),
        // compose's default grace period, the stack's [defaults] stop_timeout
        stop_timeout: s.get("stop_grace_period").map_or(Duration::from_secs(10), compose_duration),
    }
}

/// Both shapes of every service, side by side; the message names what differs.
fn assert_same_stack(
    expected: &Config,
    actual: &dyn Fn(&str) -> Shape,
    actual_names: BTreeSet<String>,
    what: &str,
) {
    let names: BTreeSet<String> = expected.services.keys().cloned().collect();
    assert_eq!(names, actual_names, "services of services.toml and {what}");
    for name in &names {
        assert_eq!(
            shape_of_model(expected, name),
            actual(name),
            "service {name:?}: services.toml and {what} drifted"
        );
    }
}

#[test]
fn services_toml_and_the_compose_file_define_the_same_stack() {
    let dir = tempfile::tempdir().unwrap();
    let toml = services_toml(dir.path());
    let yaml = compose_yaml();
    let services = &yaml["services"];
    let names: BTreeSet<String> = services.as_object().unwrap().keys().cloned().collect();
    let vars = sample_vars();
    assert_same_stack(
        &toml,
        &|name| shape_of_compose(services, name, &vars),
        names,
        "docker-compose.prod.yml",
    );

    // each depends_on condition says what the supervisor waits for
    for (name, svc) in services.as_object().unwrap() {
        for (dep, how) in svc["depends_on"].as_object().into_iter().flatten() {
            let target = &toml.services[dep];
            let expected = match (&target.health.check, target.kind) {
                (_, Kind::Oneshot) => "service_completed_successfully",
                (Check::None | Check::Log(_), _) => "service_started",
                _ => "service_healthy",
            };
            assert_eq!(how["condition"], expected, "{name} -> {dep}");
        }
    }
    // the volumes and the network it uses are declared
    let declared = |key: &str| yaml[key].as_object().unwrap().keys().cloned().collect::<BTreeSet<_>>();
    let named_volumes: BTreeSet<String> = toml
        .services
        .values()
        .filter_map(|s| if let Exec::Image { volumes, .. } = &s.exec { Some(volumes.clone()) } else { None })
        .flatten()
        .filter_map(|v| v.split(':').next().filter(|src| !src.starts_with('/')).map(str::to_owned))
        .collect();
    assert_eq!(declared("volumes"), named_volumes);
    assert_eq!(declared("networks"), BTreeSet::from(["titan-network".to_owned()]));
    // by the names the supervisor uses, not compose's <project>_<key>: the same Docker objects
    for key in ["volumes", "networks"] {
        for (name, decl) in yaml[key].as_object().unwrap() {
            assert_eq!(decl["name"].as_str(), Some(name.as_str()), "{key}.{name}.name");
        }
    }
}

#[test]
fn the_compose_file_is_valid_for_debians_docker_compose() {
    let dir = tempfile::tempdir().unwrap();
    let env = write_env_file(
        dir.path(),
        "env.prod",
        &std::fs::read_to_string(fixtures().join("titan.env.sample")).unwrap(),
    );
    let file = root().join("docker-compose.prod.yml");
    let out = std::process::Command::new("docker-compose")
        .args(["--env-file", env.to_str().unwrap(), "-f", file.to_str().unwrap(), "config", "-q"])
        .output()
        .expect("docker-compose: install it (apt-get install docker-compose; scripts/test.sh does)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn importing_the_compose_file_gives_the_services_toml_stack() {
    let dir = tempfile::tempdir().unwrap();
    let toml = services_toml(dir.path());
    let sample = fixtures().join("titan.env.sample");
    let compose = root().join("docker-compose.prod.yml");
    // CI's digests pin every image, as they would for a release
    let digests: serde_json::Map<String, Json> = toml
        .services
        .iter()
        .map(|(name, svc)| {
            let Exec::Image { image, .. } = &svc.exec else { unreachable!() };
            (name.clone(), Json::from(format!("{}@sha256:{}", repository(image), "ab".repeat(32))))
        })
        .collect();
    let digests = write(dir.path(), "digests.json", &Json::Object(digests).to_string());
    let args = ["import-compose", compose.to_str().unwrap(), "--env-file", sample.to_str().unwrap()];
    let more = ["--project", "titan", "--digests", digests.to_str().unwrap()];
    let out = run_with(&[&args[..], &more].concat(), &[], LIMIT);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    // the only warnings: secrets kept as references, and the one service compose can only
    // call started that the supervisor waits for (its log line)
    for warning in out.stderr.lines() {
        let expected = warning.contains("looks secret: left as a reference")
            || warning.contains("depends_on: titan-powerlaw-lab: the supervisor waits for it to be ready");
        assert!(expected, "unexpected warning: {warning}");
    }
    assert!(!out.stdout.contains("sample-"), "secrets are never inlined:\n{}", out.stdout);

    // it validates, secrets from the environment, in the same six start layers
    let imported = write(dir.path(), "imported.toml", &out.stdout);
    let vars = sample_vars();
    let envs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let validated = run_with(&["validate", "--json", imported.to_str().unwrap()], &envs, LIMIT);
    assert_eq!(validated.code, Some(0), "{}{}", validated.stdout, validated.stderr);
    let report: Json = serde_json::from_str(&validated.stdout).unwrap();
    assert_eq!((report["services"].as_u64(), report["start_layers"].as_u64()), (Some(18), Some(6)));

    let cfg = parse("imported.toml", &out.stdout, &|name| vars.get(name).cloned());
    let names = cfg.services.keys().cloned().collect();
    let unpinned = |name: &str| {
        let mut shape = shape_of_model(&cfg, name);
        let (repo, digest) = shape.image.split_once('@').expect("pinned by --digests");
        assert_eq!(digest, format!("sha256:{}", "ab".repeat(32)));
        let tag = shape_of_model(&toml, name).image;
        assert_eq!(repo, repository(&tag), "{name}");
        shape.image = tag;
        shape
    };
    assert_same_stack(&toml, &unpinned, names, "the imported compose file");
}

/// `nats:2.10.24-alpine` -> `nats`: the image without its tag.
fn repository(image: &str) -> &str {
    let name_start = image.rfind('/').map_or(0, |i| i + 1);
    image[name_start..].find(':').map_or(image, |colon| &image[..name_start + colon])
}
