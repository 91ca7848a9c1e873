//! `import-compose` for real: tests/fixtures/compose/run-stack.yml (four tiers of the test
//! image) converted by the real binary, pinned with `--digests` to the digest the private
//! registry gave, run by the real supervisor on the private dockerd that scripts/test.sh
//! starts. Every tier reaches healthy (the migration exits 0) in dependency order, with the
//! memory limit, the network and the volume compose declared, and stops in reverse order.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::daemon::{Change, Daemon, port};
use common::docker::{self, PROJECT_LABEL, Project, docker_ok, inspect};

/// The whole test, from the import to the last container gone, must fit in this.
const LIMIT: Duration = Duration::from_secs(120);

/// Each tier and what compose says it waits for.
const TIERS: [(&str, &[&str]); 4] =
    [("db", &[]), ("migrate", &["db"]), ("api", &["db", "migrate"]), ("web", &["api"])];
/// How long migrate runs (`--exit-after` in the fixture).
const MIGRATE_RUNS: Duration = Duration::from_millis(300);
/// mem_limit: 48m.
const MEMORY: u64 = 48 << 20;

/// The state in which a tier lets its dependents start: a oneshot's exit 0, else healthy.
fn done(tier: &str) -> &'static str {
    if tier == "migrate" { "exited" } else { "healthy" }
}

/// Time left before `deadline`; the test fails once none is.
fn left(deadline: Instant) -> Duration {
    let left = deadline.saturating_duration_since(Instant::now());
    assert!(!left.is_zero(), "the test exceeded its {LIMIT:?}");
    left
}

/// The imported services.toml split into what `Daemon::start_with_header` takes: the lines of
/// its `[supervisor]` table, merged with what this machine needs (the private dockerd), and
/// the rest of the document. The table is merged, never repeated: TOML refuses a second one.
fn runnable(imported: &str) -> (String, String) {
    let mut doc: toml_edit::DocumentMut = imported.parse().unwrap_or_else(|e| panic!("{e}\n{imported}"));
    let supervisor = doc.remove("supervisor").and_then(|t| t.into_table().ok());
    let mut supervisor = supervisor.unwrap_or_else(|| panic!("no [supervisor] table:\n{imported}"));
    supervisor.insert("docker_host", toml_edit::value(docker::host()));
    let header: String = supervisor
        .iter()
        .map(|(key, item)| {
            let value = item.as_value().unwrap_or_else(|| panic!("[supervisor] {key} is not a value"));
            format!("{key} = {}\n", value.to_string().trim())
        })
        .collect();
    (doc.to_string(), header)
}

/// `NAME start|ready UNIX_NANOS` lines the tiers wrote to /data/start.log in their shared
/// volume, copied out of `container`.
fn start_log(container: &str, dir: &Path) -> Vec<(String, String, u128)> {
    docker_ok(&["cp", &format!("{container}:/data/start.log"), &dir.display().to_string()]);
    let text = std::fs::read_to_string(dir.join("start.log")).expect("start.log");
    text.lines()
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(w.len(), 3, "{l:?} in\n{text}");
            (w[0].to_owned(), w[1].to_owned(), w[2].parse().unwrap_or_else(|_| panic!("{l:?}")))
        })
        .collect()
}

/// What the project left behind of one kind (`ps` for containers, `network`, `volume`).
fn labelled(kind: &str, project: &str) -> String {
    let filter = format!("label={PROJECT_LABEL}={project}");
    let all = if kind == "ps" { vec!["ps", "-a"] } else { vec![kind, "ls"] };
    docker_ok(&[&all[..], &["-q", "--filter", &filter]].concat())
}

fn label_of(kind: &str, name: &str) -> String {
    docker_ok(&[kind, "inspect", "-f", &format!("{{{{index .Labels \"{PROJECT_LABEL}\"}}}}"), name])
}

/// Runs the real `import-compose` on the fixture, its variables set as the test needs (the
/// private registry, free host ports, names of the project's own), every image pinned by
/// `--digests` to the digest the registry gave. The services.toml and the ports by tier.
fn import(p: &Project, dir: &Path, limit: Duration) -> (String, [(&'static str, u16); 3]) {
    let digests: serde_json::Map<String, serde_json::Value> =
        TIERS.iter().map(|(tier, _)| (tier.to_string(), docker::image().into())).collect();
    let digests = common::write(dir, "digests.json", &serde_json::Value::from(digests).to_string());
    let fixture = common::fixtures().join("compose/run-stack.yml");
    let (fixture, digests) = (fixture.display().to_string(), digests.display().to_string());
    let ports = [("db", port()), ("api", port()), ("web", port())];
    let ports_env: Vec<(String, String)> = ports
        .iter()
        .map(|(tier, port)| (format!("{}_PORT", tier.to_uppercase()), port.to_string()))
        .collect();
    let registry = docker::registry();
    let mut envs = vec![("TITAN_TEST_REGISTRY", registry.as_str()), ("RUN_PROJECT", p.0.as_str())];
    envs.extend(ports_env.iter().map(|(k, v)| (k.as_str(), v.as_str())));

    let args = ["import-compose", &fixture, "--digests", &digests, "--project", &p.0];
    let run = common::run_with(&args, &envs, limit);
    assert_eq!(run.code, Some(0), "{}", run.all());
    // the one thing this file says that services.toml cannot: web waits for api's health
    let warnings: Vec<&str> = run.stderr.lines().collect();
    let expected = format!(
        "warning: {fixture}: services.web.depends_on: api: the supervisor waits for it to be ready (healthy), not just started"
    );
    assert_eq!(warnings, [expected.as_str()], "{}", run.stderr);
    let doc: toml::Table = run.stdout.parse().unwrap();
    assert_eq!(doc["supervisor"]["project"].as_str(), Some(p.0.as_str()), "{}", run.stdout);
    for (tier, _) in TIERS {
        assert_eq!(doc["services"][tier]["image"].as_str(), Some(docker::image().as_str()), "{tier} pinned");
    }
    (run.stdout, ports)
}

/// The supervisor's own record: each tier started only once what it waits for was done, and
/// every tier came up at its first try.
fn assert_started_in_order(changes: &[Change]) {
    let first = |tier: &str, to: &str| {
        changes
            .iter()
            .position(|c| c.service == tier && c.to == to)
            .unwrap_or_else(|| panic!("{tier} never {to}: {changes:#?}"))
    };
    for (tier, deps) in TIERS {
        for dep in deps {
            let (released, started) = (first(dep, done(dep)), first(tier, "starting"));
            assert!(released < started, "{tier} started before {dep} was {}: {changes:#?}", done(dep));
        }
    }
    // (a probe failing once under load would be `unhealthy`: not what this test is about)
    let troubled: Vec<&Change> =
        changes.iter().filter(|c| c.restarts > 0 || ["failed", "backoff"].contains(&c.to.as_str())).collect();
    assert!(troubled.is_empty(), "every tier came up at its first try: {troubled:#?}");
}

/// The containers' own record, in the volume they share: each tier started once, after what
/// it waits for was ready (migrate: after it had run its course).
fn assert_started_in_order_inside(events: &[(String, String, u128)]) {
    let at = |tier: &str, event: &str| {
        let found: Vec<u128> = events.iter().filter(|e| e.0 == tier && e.1 == event).map(|e| e.2).collect();
        assert_eq!(found.len(), 1, "one {event} of {tier}: {events:?}");
        found[0]
    };
    for (tier, deps) in TIERS {
        for dep in deps {
            let released = match *dep {
                "migrate" => at(dep, "start") + MIGRATE_RUNS.as_nanos(),
                _ => at(dep, "ready"),
            };
            assert!(released <= at(tier, "start"), "{tier} started before {dep} was done: {events:?}");
        }
    }
}

/// What compose declared is there: the network and the volume by their declared names, made
/// for the project; every container capped, on that network, with that volume and its
/// environment.
fn assert_declared(p: &Project) {
    let network = format!("{}-backend", p.0);
    let volume = format!("{}-shared", p.0);
    assert_eq!(label_of("network", &network), p.0);
    assert_eq!(label_of("volume", &volume), p.0);
    for (tier, _) in TIERS {
        let c = format!("{}-{tier}", p.0);
        let memory = inspect(&c, "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}}");
        assert_eq!(memory, format!("{MEMORY} {MEMORY}"), "{tier}: no swap above the cap");
        let networks = inspect(&c, "{{json .NetworkSettings.Networks}}");
        assert!(networks.contains(&format!("\"{network}\"")), "{tier} on {network}: {networks}");
        let mounts = inspect(&c, "{{range .Mounts}}{{.Type}} {{.Name}} {{.Destination}};{{end}}");
        assert_eq!(mounts, format!("volume {volume} /data;"), "{tier}");
        let env = inspect(&c, "{{json .Config.Env}}");
        assert!(env.contains(&format!("\"TIER={tier}\"")), "{tier}: {env}");
    }
}

#[test]
fn an_imported_compose_stack_runs_under_the_supervisor_and_reaches_healthy_in_dependency_order() {
    let deadline = Instant::now() + LIMIT;
    // declared before the daemon, so dropped after it: the containers, the network and the
    // volume are removed whatever happened
    let p = Project::new("compose-run");
    let tmp = tempfile::tempdir().unwrap();
    let (imported, ports) = import(&p, tmp.path(), left(deadline).min(Duration::from_secs(30)));
    let (config, header) = runnable(&imported);
    let mut d = Daemon::start_with_header(&config, &header);
    for (tier, _) in TIERS {
        d.wait_state(tier, done(tier), left(deadline));
    }

    assert_started_in_order(&d.changes());
    assert_started_in_order_inside(&start_log(&format!("{}-web", p.0), tmp.path()));
    assert_declared(&p);
    // web's probe reached api by its service name on that network; the host reaches each
    // tier on its published port, and the environment in list form reached the processes
    for (tier, port) in ports {
        let answer = common::http_get(port, "/health");
        assert!(answer.starts_with("HTTP/1.1 200"), "{tier} on 127.0.0.1:{port}: {answer:?}");
    }
    assert!(d.service_log("db").contains("STACK=run-stack"), "{}", d.service_log("db"));
    assert!(d.service_log("api").contains("DB_URL=http://db:8080"), "{}", d.service_log("api"));
    assert_eq!(inspect(&format!("{}-migrate", p.0), "{{.State.Status}} {{.State.ExitCode}}"), "exited 0");

    assert_eq!(d.stop(left(deadline)), Some(0), "{}", d.log_tail());
    let changes = d.changes();
    let stopped = |tier: &str| {
        changes
            .iter()
            .position(|c| c.service == tier && c.to == "stopped")
            .unwrap_or_else(|| panic!("{tier} never stopped: {changes:#?}"))
    };
    assert!(stopped("web") < stopped("api") && stopped("api") < stopped("db"), "reverse order: {changes:#?}");
    let running = docker_ok(&["ps", "-q", "--filter", &format!("label={PROJECT_LABEL}={}", p.0)]);
    assert_eq!(running, "", "no container of the project runs once the supervisor stopped");
    for (tier, _) in TIERS {
        // a graceful stop: the test service exits 0 on SIGTERM
        assert_eq!(inspect(&format!("{}-{tier}", p.0), "{{.State.ExitCode}}"), "0", "{tier}");
    }
    docker::rm_f_project(&p.0);
    for kind in ["ps", "network", "volume"] {
        assert_eq!(labelled(kind, &p.0), "", "{kind}: nothing of the project is left");
    }
}
