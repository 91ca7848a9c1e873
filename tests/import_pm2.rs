//! `import-pm2` end to end: the real binary on PM2 ecosystem fixtures (tests/fixtures/pm2/),
//! its services.toml checked by `validate`, its warnings and refusals checked on stderr.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{Run, fixtures, run, run_with, write};

fn fixture(name: &str) -> PathBuf {
    fixtures().join("pm2").join(name)
}

fn import(name: &str, extra: &[&str]) -> Run {
    let file = fixture(name);
    let mut args = vec!["import-pm2", file.to_str().expect("UTF-8 path")];
    args.extend_from_slice(extra);
    run(&args)
}

/// Writes `toml` to a temp dir and runs `validate` on it with `vars` in its environment (the
/// secrets an operator would put in the env_file).
fn validates(toml: &str, vars: &[(&str, &str)]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "services.toml", toml);
    let out = run_with(&["validate", path.to_str().expect("UTF-8 path")], vars, Duration::from_secs(30));
    assert_eq!(out.code, Some(0), "validate refused the import:\n{toml}\n{}", out.stderr);
}

fn parsed(toml: &str) -> toml::Table {
    toml::from_str(toml).unwrap_or_else(|e| panic!("not TOML: {e}\n{toml}"))
}

#[test]
fn titans_ecosystem_converts_to_a_services_toml_that_validates() {
    let out = import("ecosystem.config.js", &["--env", "production"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let secrets = [("HMAC_SECRET", "x"), ("TITAN_DB_PASSWORD", "x"), ("EXCHANGE_API_KEY", "x")];
    validates(&out.stdout, &secrets);
    let doc = parsed(&out.stdout);
    let services = doc["services"].as_table().expect("[services]");
    let names: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("[services.")?.strip_suffix(']'))
        .filter(|name| !name.contains('.'))
        .collect();
    let expected =
        ["titan-shared", "titan-security", "titan-brain", "titan-execution", "titan-phase1-scavenger"];
    assert_eq!(names[..5], expected, "apps keep the file's order");
    assert_eq!(services.len(), 7);
    let brain = &services["titan-brain"];
    assert_eq!(
        brain["command"],
        toml::Value::from(vec!["node", "--max-old-space-size=512", "dist/index.js"])
    );
    assert_eq!(brain["memory_restart"].as_str(), Some("600MiB"));
    assert_eq!(brain["stop_timeout"].as_str(), Some("1600ms"));
    assert_eq!(brain["startup_timeout"].as_str(), Some("30s"));
    assert_eq!(brain["max_restarts"].as_integer(), Some(10));
    assert_eq!(brain["restart"].as_str(), Some("always"));
    assert_eq!(brain["env"]["NODE_ENV"].as_str(), Some("production"), "env_production merged over env");
    assert_eq!(brain["env"]["LOG_LEVEL"].as_str(), Some("info"));
    assert_eq!(brain["env"]["PORT"].as_str(), Some("3000"));
    assert_eq!(brain["env"]["TITAN_DB_PASSWORD"].as_str(), Some("${TITAN_DB_PASSWORD}"));
    assert_eq!(services["titan-shared"]["memory_restart"].as_str(), Some("200MiB"));
    assert_eq!(services["titan-shared"]["min_uptime"].as_str(), Some("10s"));
    assert_eq!(services["titan-console"]["restart"].as_str(), Some("never"));
    assert_eq!(
        services["titan-console"]["command"],
        toml::Value::from(vec!["npm", "run", "start", "--", "--port", "3006"])
    );
    let backoff = &services["titan-execution"]["backoff"];
    assert_eq!((backoff["initial"].as_str(), backoff["max"].as_str()), (Some("100ms"), Some("15s")));
    assert_eq!(doc["defaults"]["logs"]["max_size"].as_str(), Some("10MiB"));
    assert_eq!(doc["defaults"]["logs"]["max_files"].as_integer(), Some(30));
}

#[test]
fn secrets_are_references_with_a_warning_and_never_printed() {
    let out = import("ecosystem.config.js", &["--env", "production"]);
    for (secret, value) in [
        ("TITAN_DB_PASSWORD", "dev-password"),
        ("HMAC_SECRET", "dev-only-hmac"),
        ("EXCHANGE_API_KEY", "dev-key"),
    ] {
        assert!(!out.all().contains(value), "{secret}'s value was printed");
        assert!(out.stdout.contains(&format!("{secret} = \"${{{secret}}}\"")), "{}", out.stdout);
        let warning = out.stderr.lines().find(|l| l.contains(&format!("env.{secret}: looks secret")));
        assert!(warning.is_some_and(|w| w.contains("env_file")), "{}", out.stderr);
    }
    assert!(out.stderr.contains("app \"titan-brain\": wait_ready: not imported"), "{}", out.stderr);
    assert!(out.stderr.contains("health = { http = \"http://127.0.0.1:3000/health\" }"), "{}", out.stderr);
}

#[test]
fn json_and_a_bare_array_convert_and_validate() {
    let out = import("ecosystem.json", &[]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    validates(&out.stdout, &[]);
    let doc = parsed(&out.stdout);
    let console = &doc["services"]["titan-console"];
    assert_eq!(console["command"], toml::Value::from(vec!["bash", "server.sh", "--port", "3006"]));
    assert_eq!(console["memory_restart"].as_str(), Some("200MiB"));
    assert!(out.stderr.is_empty(), "{}", out.stderr);

    let out = import("bare-array.json", &[]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    validates(&out.stdout, &[]);
    let doc = parsed(&out.stdout);
    assert_eq!(
        doc["services"]["titan-security"]["command"],
        toml::Value::from(vec!["/usr/local/bin/titan-security"])
    );
}

#[test]
fn javascript_that_is_code_is_refused_with_its_line_and_how_to_export_json() {
    for (name, line) in [("code.config.js", 1), ("call-inside.config.js", 6)] {
        let out = import(name, &[]);
        assert_eq!(out.code, Some(2), "{name}: {}", out.stderr);
        let place = format!("{}:{line}:", fixture(name).display());
        assert!(out.stderr.contains(&place), "{name}: want {place} in {}", out.stderr);
        assert!(
            out.stderr.contains("pm2 ecosystem") && out.stderr.contains("JSON.stringify"),
            "{}",
            out.stderr
        );
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn what_the_supervisor_cannot_do_is_warned_naming_app_and_key() {
    let out = import("unsupported.config.js", &[]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    validates(&out.stdout, &[]);
    for key in ["instances", "exec_mode", "watch", "ignore_watch", "out_file", "cron_restart"] {
        let needle = format!("app \"titan-brain\": {key}: not imported");
        assert!(out.stderr.contains(&needle), "{needle} missing from\n{}", out.stderr);
    }
    assert!(out.stderr.contains("app \"titan-brain\": colour: unknown PM2 key"), "{}", out.stderr);
}

#[test]
fn an_app_whose_name_services_toml_refuses_is_named_in_the_error() {
    let out = import("bad-name.json", &[]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains(":4: app \"titan brain/2\""), "{}", out.stderr);
    assert!(out.stdout.is_empty());
}

#[test]
fn garbage_is_refused_without_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let deep = "[".repeat(100_000) + &"]".repeat(100_000);
    let deep_map = "{a:".repeat(100_000);
    let cases: [(&str, Vec<u8>); 6] = [
        ("empty.json", Vec::new()),
        ("binary.json", vec![0x7f, b'E', b'L', b'F', 0xff, 0xfe, 0, 1, 2]),
        ("deep.json", deep.into_bytes()),
        ("deep.js", deep_map.into_bytes()),
        ("truncated.js", b"module.exports = { apps: [ { name: 'a', ".to_vec()),
        ("nul.js", b"module.exports = {\0}".to_vec()),
    ];
    for (name, bytes) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("write");
        let out = run(&["import-pm2", path.to_str().expect("UTF-8 path")]);
        assert_eq!(out.code, Some(2), "{name}: {}", out.stderr);
        assert!(out.stderr.contains(&path.display().to_string()), "{name}: {}", out.stderr);
        assert!(!out.stderr.contains("panicked") && out.stdout.is_empty(), "{name}: {}", out.stderr);
    }
    let out = run(&["import-pm2", "/nonexistent/ecosystem.json"]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
}
