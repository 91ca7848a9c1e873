//! `validate` and `graph` end to end: the real binary on fixture files, one per error kind,
//! checked for exit code 2 and the exact `FILE:LINE:COL: path: message` of every problem.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{fixtures, run, run_in, write, write_env_file};

/// The `# expect: LINE:COL: path: message` lines at the top of a fixture.
fn expected(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines().filter_map(|l| l.strip_prefix("# expect: ")).map(str::to_owned).collect()
}

/// The problems `validate` printed, without the file prefix and the summary line.
fn reported(path: &Path, stderr: &str) -> Vec<String> {
    let prefix = format!("{}:", path.display());
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter(|l| !l.starts_with(" invalid"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_invalid_fixture_is_refused_with_the_exact_place_of_each_problem() {
    let dir = fixtures().join("invalid");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 15, "fixtures missing from {}", dir.display());
    for file in files {
        let out = run(&["validate", file.to_str().unwrap()]);
        assert_eq!(out.code, Some(2), "{}: {}", file.display(), out.stderr);
        assert_eq!(reported(&file, &out.stderr), expected(&file), "{}", file.display());
    }
}

#[test]
fn several_problems_in_one_file_are_all_reported_in_one_run() {
    let file = fixtures().join("invalid/many-problems.toml");
    let out = run(&["validate", file.to_str().unwrap()]);
    let problems = reported(&file, &out.stderr);
    assert_eq!(problems.len(), 6, "{}", out.stderr);
    // two services, each with more than one problem
    assert!(problems.iter().filter(|p| p.contains("services.nats.")).count() >= 3);
    assert!(problems.iter().filter(|p| p.contains("services.titan-brain.")).count() >= 3);
    assert!(out.stderr.contains("invalid: 6 problem(s)"));
}

#[test]
fn json_output_gives_every_problem_with_line_column_and_path() {
    let file = fixtures().join("invalid/many-problems.toml");
    let out = run(&["validate", "--json", file.to_str().unwrap()]);
    assert_eq!(out.code, Some(2));
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON on stdout");
    assert_eq!(v["valid"], false);
    let errors = v["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 6);
    assert_eq!(errors[0]["line"], 14);
    assert_eq!(errors[0]["column"], 9);
    assert_eq!(errors[0]["path"], "services.nats.image");
}

/// Copies the released SPEC example and its env file (mode 0600) into a temp dir.
fn released_spec_example(dir: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(fixtures().join("spec-example-release.toml")).unwrap();
    write_env_file(dir, ".env.prod", "TITAN_DB_PASSWORD=pw\nNATS_SYS_USER=sys\nNATS_SYS_PASSWORD=pw2\n");
    write(dir, "services.toml", &text)
}

#[test]
fn the_spec_example_as_a_release_carries_it_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let file = released_spec_example(dir.path());
    let out = run(&["validate", file.to_str().unwrap()]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("valid: 5 services, 3 start layers"), "{}", out.stdout);

    let out = run(&["validate", "--json", file.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!((v["valid"].as_bool(), v["services"].as_u64()), (Some(true), Some(5)));
}

#[test]
fn the_verbatim_spec_example_is_refused_for_its_unpinned_images() {
    let file = fixtures().join("spec-example.toml");
    let out = run(&["validate", file.to_str().unwrap()]);
    assert_eq!(out.code, Some(2));
    let problems = reported(&file, &out.stderr);
    for place in
        ["32:9: services.nats.image", "40:9: services.titan-brain.image", "59:9: services.migrate.image"]
    {
        assert!(
            problems.iter().any(|p| p.starts_with(place) && p.contains("not pinned by digest")),
            "{place}: {problems:#?}"
        );
    }
    assert!(problems.iter().any(|p| p.contains("verify.exec.service: unknown service \"redis\"")));
}

#[test]
fn the_default_config_is_services_toml_in_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    released_spec_example(dir.path());
    let out = run_in(dir.path(), &["validate"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.starts_with("services.toml: valid"), "{}", out.stdout);
}

#[test]
fn a_missing_file_is_refused_naming_the_path() {
    let out = run(&["validate", "/nonexistent/titan/services.toml"]);
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("/nonexistent/titan/services.toml: cannot read"), "{}", out.stderr);
}

const SECRET: &str = "s3cr3t-Zebra-4711";

#[test]
fn env_file_values_never_appear_in_any_output() {
    let dir = tempfile::tempdir().unwrap();
    write_env_file(dir.path(), "secrets.env", &format!("DB_PASSWORD={SECRET}\nNATS_PW='{SECRET}'\n"));
    let good = r#"
        [supervisor]
        env_file = "secrets.env"
        [services.brain]
        command = ["brain", "--password=${DB_PASSWORD}"]
        env = { DB_PASSWORD = "${DB_PASSWORD}", DSN = "postgres://titan:${DB_PASSWORD}@db/titan" }
        [services.console]
        command = ["console"]
        depends_on = ["brain"]
        [nats]
        url = "nats://127.0.0.1:4222"
        user = "titan"
        password = "${NATS_PW}"
    "#;
    let good = write(dir.path(), "good.toml", good);
    // The same secrets next to problems in the same service and key.
    let bad = std::fs::read_to_string(&good).unwrap().replace(
        "command = [\"console\"]",
        "command = [\"console\", \"${DB_PASSWORD}${NOT_SET}\"]\nmemory = \"${DB_PASSWORD}\"\nenv = { X = \"${DB_PASSWORD\" }",
    );
    let bad = write(dir.path(), "bad.toml", &bad);
    let mut outputs = Vec::new();
    for file in [&good, &bad] {
        let f = file.to_str().unwrap();
        for args in [
            vec!["validate", f],
            vec!["validate", "--json", f],
            vec!["graph", f],
            vec!["graph", "--format", "dot", f],
        ] {
            outputs.push((args.join(" "), run(&args)));
        }
    }
    assert_eq!(outputs[0].1.code, Some(0), "{}", outputs[0].1.stderr);
    assert_eq!(outputs[4].1.code, Some(2));
    assert!(outputs[4].1.stderr.contains("services.console.memory"), "{}", outputs[4].1.stderr);
    assert!(outputs[4].1.stderr.contains("\"NOT_SET\""));
    for (what, out) in outputs {
        assert!(!out.all().contains(SECRET), "{what} printed the secret:\n{}", out.all());
    }
}

#[test]
fn an_env_file_readable_by_others_is_refused_naming_file_and_mode() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let env = write(dir.path(), ".env.prod", &format!("PW={SECRET}\n"));
    std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cfg = "[supervisor]\nenv_file = \".env.prod\"\n\n[services.a]\ncommand = [\"a\", \"${PW}\"]\n";
    let cfg = write(dir.path(), "services.toml", cfg);
    let out = run(&["validate", cfg.to_str().unwrap()]);
    assert_eq!(out.code, Some(2));
    let want = format!("services.toml:2:12: supervisor.env_file: env_file {} has mode 0644", env.display());
    assert!(out.stderr.contains(&want), "{}", out.stderr);
    assert!(!out.all().contains(SECRET));
}

/// The embedded demo config written to a file.
fn demo_config(dir: &Path) -> std::path::PathBuf {
    let out = run(&["demo", "--print-config"]);
    assert_eq!(out.code, Some(0));
    write(dir, "demo.toml", &out.stdout)
}

#[test]
fn the_embedded_demo_config_prints_and_validates() {
    let dir = tempfile::tempdir().unwrap();
    let file = demo_config(dir.path());
    let out = run(&["validate", file.to_str().unwrap()]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
}

#[test]
fn graph_text_shows_tiers_dependencies_and_start_layers() {
    let dir = tempfile::tempdir().unwrap();
    let file = demo_config(dir.path());
    let out = run(&["graph", file.to_str().unwrap()]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().map(str::trim_end).collect();
    let tiers: Vec<&str> = lines.iter().copied().filter(|l| !l.starts_with(' ') && !l.is_empty()).collect();
    assert_eq!(&tiers[1..8], ["shared", "security", "brain", "execution", "phases", "console", "(no group)"]);
    let has =
        |needle: &str| lines.iter().any(|l| l.split_whitespace().collect::<Vec<_>>().join(" ") == needle);
    assert!(has("titan-security <- nats, postgres, redis"), "{}", out.stdout);
    assert!(has("titan-brain <- migrate, titan-security"));
    assert!(has("migrate <- postgres [oneshot]"));
    assert!(has("1: nats, postgres, redis"));
    assert!(has("5: titan-hunter, titan-scavenger, titan-sentinel"));
}

#[test]
fn graph_dot_is_accepted_by_graphviz() {
    let dir = tempfile::tempdir().unwrap();
    let file = demo_config(dir.path());
    let out = run(&["graph", "--format", "dot", file.to_str().unwrap()]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("\"titan-brain\" -> \"titan-execution\";"));
    let mut dot = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("Graphviz `dot` is needed (scripts/test.sh installs it)");
    use std::io::Write;
    dot.stdin.take().unwrap().write_all(out.stdout.as_bytes()).unwrap();
    let svg = dot.wait_with_output().unwrap();
    assert!(svg.status.success(), "dot refused the graph: {}", String::from_utf8_lossy(&svg.stderr));
    assert!(String::from_utf8_lossy(&svg.stdout).contains("<svg"));
}

#[test]
fn graph_of_an_invalid_config_prints_the_problems_and_exits_2() {
    let file = fixtures().join("invalid/cycle.toml");
    let out = run(&["graph", file.to_str().unwrap()]);
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("dependency cycle: a -> b -> c -> a"));
}

#[test]
fn the_titan_stack_validates_in_six_tiers_with_its_hardening() {
    // the repo's services.toml with a sample env file (mode 0600, as the daemon demands)
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join("env.prod");
    std::fs::copy(fixtures().join("titan.env.sample"), &env).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o600)).unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("services.toml")).unwrap();
    let text = text.replace("/opt/titan/compose/.env.prod", &env.display().to_string());
    let config = dir.path().join("services.toml");
    std::fs::write(&config, &text).unwrap();

    let out = run(&["validate", "--allow-unpinned", "--json", config.to_str().unwrap()]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let tiers = ["shared", "security", "brain", "execution", "phases", "console"];
    assert_eq!(report["groups"], serde_json::json!(tiers));
    assert_eq!((report["services"].as_u64(), report["start_layers"].as_u64()), (Some(18), Some(6)));

    let parsed: toml::Table = text.parse().unwrap();
    let services = parsed["services"].as_table().unwrap();
    let ports = |name: &str| services[name].get("ports").and_then(|p| p.as_array()).map_or(0, Vec::len);
    assert_eq!((ports("postgres"), ports("redis")), (0, 0), "storage is internal only");
    let world: Vec<&str> = services
        .keys()
        .filter(|name| {
            let published =
                services[name.as_str()].get("ports").and_then(|p| p.as_array()).cloned().unwrap_or_default();
            published.iter().any(|p| p.as_str().is_some_and(|p| p.split(':').count() == 2))
        })
        .map(String::as_str)
        .collect();
    assert_eq!(world, ["traefik"], "only the edge publishes beyond loopback and the VPC address");
    assert!(text.contains("${VPC_IP:-127.0.0.1}:4222:4222"), "NATS on the VPC address");
    for secret in ["POSTGRES_PASSWORD", "NATS_SYS_PASSWORD", "AI_API_KEY"] {
        assert!(text.contains(&format!("${{{secret}}}")), "{secret} only as a reference");
    }
    assert!(!out.stdout.contains("sample-postgres") && !out.stderr.contains("sample-postgres"));
}
