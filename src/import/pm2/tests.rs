//! The converter on small ecosystem files: what each PM2 key becomes, and what is refused.

use super::*;

fn import(text: &str, env: Option<&str>) -> Result<Output, Pm2Error> {
    convert(&Input { file: "eco.js", text, env })
}

fn ok(text: &str) -> Output {
    import(text, None).unwrap_or_else(|e| panic!("{e}"))
}

/// Every service of `toml` reads as a `[services.X]` table of services.toml.
fn services_toml_reads_it(toml: &str) {
    let doc: toml::Table = toml::from_str(toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    for (name, table) in doc["services"].as_table().into_iter().flatten() {
        let read: Result<crate::config::raw::Service, _> = table.clone().try_into();
        assert!(read.is_ok(), "{name}: {read:?}\n{toml}");
    }
}

fn warned(out: &Output, needle: &str) -> bool {
    out.warnings.iter().any(|w| w.contains(needle))
}

#[test]
fn a_script_runs_under_its_interpreter_with_its_arguments() {
    let out = ok("{apps: [{name: 'a', script: 'app.js', node_args: ['--inspect'], args: ['-p', 3000]}]}");
    assert!(out.toml.contains(r#"command = ["node", "--inspect", "app.js", "-p", "3000"]"#), "{}", out.toml);
    let out = ok("[{name: 'b', script: './bin/server', args: '--name \"my app\"'}]");
    assert!(out.toml.contains(r#"command = ["./bin/server", "--name", "my app"]"#), "{}", out.toml);
    let out = ok("[{name: 'c', script: 'run.py', interpreter: '/usr/bin/python3', interpreter_args: '-u'}]");
    assert!(out.toml.contains(r#"command = ["/usr/bin/python3", "-u", "run.py"]"#), "{}", out.toml);
    let out = ok("[{name: 'd', script: 'run.js', interpreter: 'none', node_args: '-x'}]");
    assert!(out.toml.contains(r#"command = ["run.js"]"#), "{}", out.toml);
    assert!(warned(&out, "app \"d\": node_args: ignored"));
}

#[test]
fn restart_settings_map_to_their_services_toml_keys() {
    let out = ok("[{name: 'a', script: 'a.js', autorestart: false, max_restarts: 3, min_uptime: 5000, \
                  kill_timeout: 3000, listen_timeout: 8000, max_memory_restart: '1G', \
                  exp_backoff_restart_delay: 100}]");
    for line in [
        "restart = \"never\"",
        "max_restarts = 3",
        "min_uptime = \"5s\"",
        "stop_timeout = \"3s\"",
        "startup_timeout = \"8s\"",
        "memory_restart = \"1GiB\"",
        "backoff = { initial = \"100ms\", max = \"15s\" }",
    ] {
        assert!(out.toml.contains(line), "{line} missing from\n{}", out.toml);
    }
    services_toml_reads_it(&out.toml);
    let out = ok("[{name: 'a', script: 'a.js', stop_exit_codes: [0]}]");
    assert!(out.toml.contains("restart = \"on-failure\""), "{}", out.toml);
}

#[test]
fn env_name_merges_over_env_and_secrets_stay_references() {
    let text = "[{name: 'a', script: 'a.js', env: {MODE: 'dev', API_TOKEN: 'abc123'}, env_production: {MODE: 'prod'}}]";
    let out = import(text, Some("production")).unwrap();
    assert!(out.toml.contains("MODE = \"prod\""), "{}", out.toml);
    assert!(out.toml.contains("API_TOKEN = \"${API_TOKEN}\""), "{}", out.toml);
    assert!(!out.toml.contains("abc123"));
    assert!(warned(&out, "env.API_TOKEN: looks secret"));
    let out = import(text, Some("staging")).unwrap();
    assert!(out.toml.contains("MODE = \"dev\"") && warned(&out, "env_staging: not in this app"));
}

#[test]
fn dollars_and_quotes_in_values_come_out_literal() {
    let out = ok(r#"[{name: 'a', script: 'a.js', args: ['$HOME', 'say "hi"'], env: {PRICE: '$5'}}]"#);
    let doc: toml::Table = toml::from_str(&out.toml).expect("TOML");
    let a = &doc["services"]["a"];
    assert_eq!(a["command"], toml::Value::from(vec!["node", "a.js", "$$HOME", "say \"hi\""]));
    assert_eq!(a["env"]["PRICE"].as_str(), Some("$$5"));
}

#[test]
fn what_services_toml_cannot_say_is_warned_naming_app_and_key() {
    let out = ok("[{name: 'a', script: 'a.js', instances: 4, exec_mode: 'cluster', watch: true, \
                  cron_restart: '0 * * * *', frobnicate: 1, envy: 1}]");
    for needle in [
        "app \"a\": instances: not imported",
        "app \"a\": exec_mode: not imported",
        "app \"a\": watch: not imported",
        "app \"a\": cron_restart: not imported",
        "app \"a\": frobnicate: unknown PM2 key",
        "app \"a\": envy: unknown PM2 key",
    ] {
        assert!(warned(&out, needle), "{needle}: {:?}", out.warnings);
    }
    let quiet = ok("[{name: 'a', script: 'a.js', instances: 1, exec_mode: 'fork', watch: false}]");
    assert!(quiet.warnings.is_empty(), "{:?}", quiet.warnings);
}

#[test]
fn bad_apps_are_refused_naming_the_app_and_line() {
    let cases = [
        ("[\n{name: 'bad name!', script: 'a.js'}]", "eco.js:2: app \"bad name!\""),
        ("[{script: 'a.js'}]", "has no name"),
        ("[{name: 'supervisor', script: 'a.js'}]", "reserved"),
        ("[{name: 'a'}]", "app \"a\": script: missing"),
        ("[{name: 'a', script: 'a.js'}, {name: 'a', script: 'b.js'}]", "two apps are named \"a\""),
        ("[{name: 'a', script: 'a.js', max_memory_restart: 'lots'}]", "max_memory_restart: invalid size"),
        ("[{name: 'a', script: 'a.js', max_memory_restart: 1000}]", "minimum memory_restart"),
        ("[{name: 'a', script: 'a.js', env: {'A-B': 1}}]", "env.A-B: not a valid"),
        ("{apps: {}}", "apps: expected an array"),
        ("{}", "there is no apps key"),
        ("42", "not a single value"),
    ];
    for (text, needle) in cases {
        let e = import(text, None).expect_err(text).to_string();
        assert!(e.contains(needle), "{text}: {e}");
    }
}

#[test]
fn code_is_refused_with_the_way_to_export_json() {
    let e = import("module.exports = {\n  apps: [{ name: 'a', script: require.resolve('x') }],\n}", None)
        .expect_err("code")
        .to_string();
    assert!(e.starts_with("eco.js:2:"), "{e}");
    assert!(e.contains("pm2 ecosystem") && e.contains("JSON.stringify"), "{e}");
}

#[test]
fn pm2_logrotate_settings_become_the_default_logs() {
    let out = ok("{apps: [{name: 'a', script: 'a.js'}], module_conf: {'pm2-logrotate': \
                  {max_size: '10M', retain: '30', compress: 'true', dateFormat: 'YYYY'}}}");
    assert!(
        out.toml.contains("logs = { max_size = \"10MiB\", max_files = 30, compress = true }"),
        "{}",
        out.toml
    );
    assert!(warned(&out, "pm2-logrotate.dateFormat: not imported"));
}

/// Pieces of ecosystem files, glued at random: close enough to real input to reach deep.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    "'",
    "\"",
    "\\",
    "`",
    "/*",
    "*/",
    "//",
    "\n",
    "module.exports =",
    "apps",
    "name",
    "script",
    "'a.js'",
    "'app'",
    "env",
    "env_production",
    "instances",
    "max_memory_restart",
    "'200M'",
    "-1",
    "1e999",
    "0x10",
    "\\u{110000}",
    "\\uD800",
    "true",
    "null",
    "require(",
    "process.env.X",
    "é",
    ";",
];

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 512, ..Default::default() })]

    #[test]
    fn any_text_is_converted_or_refused_never_a_panic(text in "\\PC{0,300}") {
        let _ = import(&text, Some("production"));
    }

    #[test]
    fn token_soup_is_converted_or_refused_never_a_panic(tokens in proptest::collection::vec(0..TOKENS.len(), 0..80)) {
        let text: String = tokens.iter().map(|&t| TOKENS[t]).collect::<Vec<_>>().join(" ");
        for text in [format!("{{apps: [{{name: 'a', script: 'a.js', {text}"), text] {
            if let Ok(out) = import(&text, None) {
                services_toml_reads_it(&out.toml);
            }
        }
    }
}
