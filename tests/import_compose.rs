//! `import-compose`: each fixture under tests/fixtures/compose/ converted by the real binary,
//! its services.toml checked for the translated keys and accepted by `validate`.

mod common;

use std::time::Duration;

use common::{Run, fixtures, run_with};

const LIMIT: Duration = Duration::from_secs(30);

fn fixture(name: &str) -> String {
    fixtures().join("compose").join(name).display().to_string()
}

/// Converts a fixture with `envs` set, as the operator's shell would have them.
fn import(name: &str, extra: &[&str], envs: &[(&str, &str)]) -> Run {
    let file = fixture(name);
    let mut args = vec!["import-compose", file.as_str()];
    args.extend_from_slice(extra);
    run_with(&args, envs, LIMIT)
}

/// The output must validate (images left as tags unless `pinned`).
fn assert_validates(toml: &str, pinned: bool, envs: &[(&str, &str)]) -> toml::Table {
    let dir = tempfile::tempdir().unwrap();
    let path = common::write(dir.path(), "services.toml", toml);
    let path = path.display().to_string();
    let mut args = vec!["validate", path.as_str()];
    if !pinned {
        args.push("--allow-unpinned");
    }
    let run = run_with(&args, envs, LIMIT);
    assert_eq!(run.code, Some(0), "validate refused:\n{}\n{toml}", run.all());
    toml.parse().unwrap()
}

fn service<'a>(doc: &'a toml::Table, name: &str) -> &'a toml::Table {
    doc["services"][name].as_table().unwrap_or_else(|| panic!("no [services.{name}]"))
}

#[test]
fn anchors_merge_keys_and_interpolation_resolve_like_compose() {
    let run = import("anchors.yml", &[], &[("LOG_LEVEL", "debug")]);
    assert_eq!(run.code, Some(0), "{}", run.all());
    let doc = assert_validates(&run.stdout, false, &[]);
    assert_eq!(doc["supervisor"]["project"].as_str(), Some("demo"));
    let api = service(&doc, "api");
    assert_eq!(api["image"].as_str(), Some("registry.example/api:latest"));
    assert_eq!(api["args"][2].as_str(), Some("$$5"), "a compose $$ stays a literal $ in services.toml");
    assert_eq!(api["restart"].as_str(), Some("on-failure"));
    assert_eq!(api["max_restarts"].as_integer(), Some(5));
    assert_eq!(service(&doc, "worker")["env"]["LOG_LEVEL"].as_str(), Some("debug"));
    assert_eq!(service(&doc, "worker")["env"]["MODE"].as_str(), Some("worker"));
}

#[test]
fn digests_pin_images_and_the_pinned_output_validates_as_is() {
    let dir = tempfile::tempdir().unwrap();
    let hex = "a".repeat(64);
    let digests = format!(
        r#"{{"api": "registry.example/api@sha256:{hex}", "worker": "registry.example/worker@sha256:{hex}"}}"#
    );
    let path = common::write(dir.path(), "digests.json", &digests).display().to_string();
    let run = import("anchors.yml", &["--digests", &path, "--project", "pinned"], &[]);
    assert_eq!(run.code, Some(0), "{}", run.all());
    let doc = assert_validates(&run.stdout, true, &[]);
    assert_eq!(
        service(&doc, "api")["image"].as_str(),
        Some(format!("registry.example/api@sha256:{hex}").as_str())
    );
    assert_eq!(doc["supervisor"]["project"].as_str(), Some("pinned"));
}

#[test]
fn every_translated_key_lands_and_the_rest_is_warned() {
    let run = import("features.yml", &[], &[]);
    assert_eq!(run.code, Some(0), "{}", run.all());
    let doc = assert_validates(&run.stdout, false, &[("POSTGRES_DB", "titan")]);
    let db = service(&doc, "db");
    assert_eq!(db["memory"].as_str(), Some("512MiB"));
    assert_eq!(db["stop_timeout"].as_str(), Some("90s"));
    assert_eq!(db["startup_timeout"].as_str(), Some("90s"));
    assert_eq!(db["unhealthy_after"].as_integer(), Some(3));
    assert_eq!(db["health"]["exec"][2].as_str(), Some("pg_isready -U titan"));
    assert_eq!(db["network"].as_str(), Some("titan-backend"));
    assert_eq!(db["volumes"].as_array().unwrap().len(), 3);
    assert_eq!(service(&doc, "migrate")["kind"].as_str(), Some("oneshot"));
    assert_eq!(service(&doc, "migrate")["args"][2].as_str(), Some("latest version"));
    let api = service(&doc, "api");
    let ports: Vec<&str> = api["ports"].as_array().unwrap().iter().filter_map(|p| p.as_str()).collect();
    assert_eq!(ports, ["127.0.0.1:8080:8080", "9000:9000", "9001:9001", "53:53/udp", "127.0.0.1:8443:8443"]);
    assert_eq!(api["memory"].as_str(), Some("1GiB"));
    assert_eq!(api["restart"].as_str(), Some("always"));
    assert_eq!(api["logs"]["max_files"].as_integer(), Some(3));
    assert_eq!(service(&doc, "cache")["restart"].as_str(), Some("never"));
    for warned in [
        "services.db.volumes[3]",
        "services.db.networks",
        "services.api.entrypoint",
        "services.api.env_file: .env.api",
        "services.api.expose",
        "services.api.ports[3]",
        "services.api.deploy.replicas",
        "services.api.labels",
        "services.api.profiles",
        "services.cache.cap_add",
    ] {
        assert!(run.stderr.contains(warned), "no warning for {warned}:\n{}", run.stderr);
    }
}

#[test]
fn secrets_are_never_written_out() {
    let envs = [("DB_PASSWORD", "hunter2"), ("PLAIN_VALUE", "visible")];
    let run = import("secrets.yml", &[], &envs);
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert!(!run.all().contains("hunter2") && !run.all().contains("literal-token-value"), "{}", run.all());
    let doc = assert_validates(&run.stdout, false, &[("DB_PASSWORD", "x"), ("API_TOKEN", "y")]);
    let env = &service(&doc, "api")["env"];
    assert_eq!(env["DB_PASSWORD"].as_str(), Some("${DB_PASSWORD}"));
    assert_eq!(env["API_TOKEN"].as_str(), Some("${API_TOKEN}"));
    assert_eq!(env["DSN"].as_str(), Some("postgres://titan:${DB_PASSWORD}@db/titan"));
    assert_eq!(env["PLAIN"].as_str(), Some("visible"));
    assert!(run.stderr.contains("put DB_PASSWORD in [supervisor] env_file"), "{}", run.stderr);
}

#[test]
fn a_required_variable_unset_is_refused_naming_it() {
    let run = import("required.yml", &[], &[]);
    assert_eq!(run.code, Some(2), "{}", run.all());
    assert!(
        run.stderr.contains("API_TAG") && run.stderr.contains("set API_TAG to the release tag"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty());
}

#[test]
fn garbage_yaml_is_refused_with_file_and_line() {
    let run = import("garbage.yml", &[], &[]);
    assert_eq!(run.code, Some(2), "{}", run.all());
    assert!(run.stderr.contains("garbage.yml") && run.stderr.contains("line 4"), "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
}

#[test]
fn a_build_without_an_image_is_refused_naming_the_service() {
    let run = import("build-only.yml", &[], &[]);
    assert_eq!(run.code, Some(2), "{}", run.all());
    assert!(run.stderr.contains("services.api"), "{}", run.stderr);
}

#[test]
fn the_titan_seed_stack_converts_with_its_dependency_graph() {
    let run = import("titan-seed.yml", &[], &[]);
    assert_eq!(run.code, Some(0), "{}", run.all());
    let doc = assert_validates(&run.stdout, false, &[("TITAN_DB_PASSWORD", "x"), ("NATS_PASS", "y")]);
    assert_eq!(doc["services"].as_table().unwrap().len(), 17);
    let deps = |name: &str| -> Vec<String> {
        let list =
            service(&doc, name).get("depends_on").and_then(|d| d.as_array()).cloned().unwrap_or_default();
        let mut names: Vec<String> = list.iter().filter_map(|d| d.as_str().map(String::from)).collect();
        names.sort();
        names
    };
    assert_eq!(deps("titan-brain"), ["nats", "postgres", "redis"]);
    assert_eq!(deps("titan-execution"), ["nats", "postgres", "redis", "titan-brain"]);
    assert_eq!(deps("titan-scavenger"), ["titan-brain", "titan-execution"]);
    assert_eq!(deps("traefik"), ["titan-console"]);
    assert!(deps("nats").is_empty());
    assert_eq!(service(&doc, "postgres")["env"]["POSTGRES_PASSWORD"].as_str(), Some("${TITAN_DB_PASSWORD}"));
    assert_eq!(service(&doc, "nats")["ports"][0].as_str(), Some("127.0.0.1:4222:4222"));
}

#[test]
fn a_volume_declared_with_a_name_is_mounted_by_that_name_not_by_its_key() {
    // regression: the top-level `volumes.X.name` was ignored (networks' was honoured), so the
    // service mounted a new, empty volume named after the key instead of the one compose uses
    let dir = tempfile::tempdir().unwrap();
    let compose = "services:\n  db:\n    image: postgres\n    volumes:\n      - data:/var/lib/db\n      \
                   - {type: volume, source: cache, target: /cache, read_only: true}\n      - plain:/plain\n      \
                   - ./conf:/etc/conf:ro\nvolumes:\n  data: {name: \"${STACK}-data\"}\n  cache: {name: shared-cache, external: true}\n  \
                   plain: {}\n";
    let file = common::write(dir.path(), "compose.yml", compose).display().to_string();
    let run = run_with(&["import-compose", &file, "--project", "stack"], &[("STACK", "prod")], LIMIT);
    assert_eq!(run.code, Some(0), "{}", run.all());
    let doc = assert_validates(&run.stdout, false, &[]);
    let volumes: Vec<&str> =
        service(&doc, "db")["volumes"].as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
    let conf = format!("{}/conf:/etc/conf:ro", dir.path().display());
    assert_eq!(
        volumes,
        ["prod-data:/var/lib/db", "shared-cache:/cache:ro", "stack_plain:/plain", conf.as_str()]
    );
    assert!(run.stderr.is_empty(), "{}", run.stderr);
}

#[test]
fn undeclared_volume_and_network_names_get_composes_project_prefix() {
    // regression: a volume or network without `name:` was imported by its bare key, while
    // compose created it as <project>_<key>: the imported stack mounted new, empty volumes
    let dir = tempfile::tempdir().unwrap();
    let compose = "services:\n  db:\n    image: postgres\n    volumes: [pgdata:/var/lib/postgresql/data, \
                   old:/old]\n    networks: [backend]\nvolumes:\n  pgdata:\n  old: {external: true}\n\
                   networks:\n  backend: {driver: bridge}\n";
    let file = common::write(dir.path(), "compose.yml", compose).display().to_string();
    let run = run_with(&["import-compose", &file, "--project", "titan"], &[], LIMIT);
    assert_eq!(run.code, Some(0), "{}", run.all());
    let doc = assert_validates(&run.stdout, false, &[]);
    let db = service(&doc, "db");
    let volumes: Vec<&str> = db["volumes"].as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
    assert_eq!(volumes, ["titan_pgdata:/var/lib/postgresql/data", "old:/old"], "external keeps its name");
    assert_eq!(db["network"].as_str(), Some("titan_backend"));
}
