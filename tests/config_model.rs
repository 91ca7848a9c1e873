//! The resolved model through the library: group-order defaults, explicit dependencies,
//! `[defaults]` inheritance, relative paths and secret redaction.

use std::path::Path;

use titan_supervisor::config::{self, Check, Config, Exec, Report, Source};

fn parse_with(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, Report> {
    let source = Source { name: "services.toml", text, base_dir: Path::new("/srv/titan") };
    config::parse(&source, env)
}

fn parse(text: &str) -> Config {
    parse_with(text, &|_| None).unwrap_or_else(|r| panic!("{r}"))
}

fn deps<'a>(cfg: &'a Config, name: &str) -> Vec<&'a str> {
    cfg.services[name].depends_on.iter().map(String::as_str).collect()
}

const TIERS: &str = r#"
[groups]
order = ["shared", "security", "brain", "execution", "phases", "console"]

[services.nats]
group = "shared"
command = ["nats"]
[services.redis]
group = "shared"
command = ["redis"]
[services.titan-brain]
group = "brain"
command = ["brain"]
[services.titan-execution]
group = "execution"
command = ["execution"]
[services.scavenger]
group = "phases"
command = ["scavenger"]
[services.hunter]
group = "phases"
command = ["hunter"]
[services.titan-console]
group = "console"
command = ["console"]
"#;

#[test]
fn a_service_without_depends_on_waits_for_the_nearest_earlier_non_empty_group() {
    let cfg = parse(TIERS);
    assert_eq!(deps(&cfg, "nats"), Vec::<&str>::new());
    // "security" is empty, so the brain waits for "shared"
    assert_eq!(deps(&cfg, "titan-brain"), ["nats", "redis"]);
    assert_eq!(deps(&cfg, "titan-execution"), ["titan-brain"]);
    assert_eq!(deps(&cfg, "scavenger"), ["titan-execution"]);
    assert_eq!(deps(&cfg, "titan-console"), ["hunter", "scavenger"]);
    let layers = cfg.graph().unwrap().layers().len();
    assert_eq!(layers, 5);
}

#[test]
fn an_explicit_depends_on_replaces_the_group_default_and_may_name_groups() {
    let text = TIERS.replace(
        "[services.titan-console]\ngroup = \"console\"",
        "[services.titan-console]\ngroup = \"console\"\ndepends_on = [\"brain\", \"shared\"]",
    );
    let cfg = parse(&text);
    assert_eq!(deps(&cfg, "titan-console"), ["nats", "redis", "titan-brain"]);
    assert!(cfg.services["titan-console"].explicit_depends_on);
    // nothing after the brain has to be up before the console starts
    let graph = cfg.graph().unwrap();
    assert_eq!(graph.layers()[2], ["titan-console", "titan-execution"]);

    let text = TIERS.replace("group = \"brain\"", "group = \"brain\"\ndepends_on = []");
    assert_eq!(deps(&parse(&text), "titan-brain"), Vec::<&str>::new());
}

#[test]
fn a_small_config_without_groups_is_valid_and_ungrouped_services_have_exactly_their_dependencies() {
    let cfg = parse(
        r#"
        [services.db]
        command = ["postgres"]
        [services.api]
        command = ["api"]
        depends_on = ["db"]
        "#,
    );
    assert!(cfg.groups.is_empty());
    assert_eq!(deps(&cfg, "api"), ["db"]);
    assert_eq!(deps(&cfg, "db"), Vec::<&str>::new());
    assert_eq!(cfg.graph().unwrap().stop_order(), ["api", "db"]);
}

#[test]
fn defaults_are_inherited_key_by_key_and_tables_merge_field_by_field() {
    let cfg = parse(
        r#"
        [defaults]
        stop_timeout = "5s"
        memory = "512MiB"
        health = { interval = "2s", start_interval = "10ms" }
        logs = { max_size = "1MiB", max_files = 3 }
        env = { TZ = "UTC", MODE = "prod" }
        backoff = { max = "10s" }

        [services.api]
        command = ["api"]
        stop_timeout = "100ms"
        health = { http = "http://127.0.0.1:8080/health", timeout = "300ms" }
        logs = { compress = false }
        env = { MODE = "canary" }
        backoff = { initial = "1s" }
        "#,
    );
    let api = &cfg.services["api"];
    assert_eq!(api.stop_timeout.0.as_millis(), 100);
    assert_eq!(api.memory.unwrap().bytes(), 512 << 20);
    assert!(matches!(&api.health.check, Check::Http(u) if u.port_u16() == Some(8080)));
    assert_eq!(api.health.interval.0.as_secs(), 2);
    assert_eq!(api.health.timeout.0.as_millis(), 300);
    assert_eq!(api.health.start_interval.0.as_millis(), 10);
    assert_eq!((api.logs.max_size.bytes(), api.logs.max_files, api.logs.compress), (1 << 20, 3, false));
    assert_eq!(api.env["TZ"].expose(), "UTC");
    assert_eq!(api.env["MODE"].expose(), "canary");
    assert_eq!((api.restart.backoff_initial.0.as_secs(), api.restart.backoff_max.0.as_secs()), (1, 10));
    // built-in values where neither says anything
    assert_eq!(api.startup_timeout.0.as_secs(), 30);
    assert_eq!(api.restart.max_restarts, 10);
}

#[test]
fn relative_paths_are_taken_from_the_config_directory() {
    let cfg = parse(
        r#"
        [supervisor]
        log_dir = "logs"
        socket = "/run/titan/supervisor.sock"
        [services.scavenger]
        command = ["node", "dist/index.js"]
        args = ["--phase", "1"]
        cwd = "services/scavenger"
        "#,
    );
    assert_eq!(cfg.supervisor.log_dir, Path::new("/srv/titan/logs"));
    assert_eq!(cfg.supervisor.socket, Path::new("/run/titan/supervisor.sock"));
    let Exec::Command { argv, cwd } = &cfg.services["scavenger"].exec else { panic!("native") };
    let argv: Vec<&str> = argv.iter().map(|a| a.expose()).collect();
    assert_eq!(argv, ["node", "dist/index.js", "--phase", "1"]);
    assert_eq!(cwd.as_deref(), Some(Path::new("/srv/titan/services/scavenger")));
}

#[test]
fn variables_come_from_the_environment_with_defaults_and_escapes() {
    let env = |name: &str| (name == "TITAN_MODE").then(|| "paper".to_string());
    let cfg = parse_with(
        r#"
        [services.titan-brain]
        command = ["brain", "--mode=${TITAN_MODE}", "--venue=${VENUE:-binance}", "cost=$$5"]
        "#,
        &env,
    )
    .unwrap();
    let Exec::Command { argv, .. } = &cfg.services["titan-brain"].exec else { panic!("native") };
    let argv: Vec<&str> = argv.iter().map(|a| a.expose()).collect();
    assert_eq!(argv, ["brain", "--mode=paper", "--venue=binance", "cost=$5"]);
}

#[test]
fn a_container_service_keeps_its_image_ports_and_volumes() {
    let cfg = parse(
        r#"
        [services.titan-brain]
        image = "ghcr.io/peycheff-com/titan-brain@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
        ports = ["127.0.0.1:3100:3100"]
        volumes = ["titan-ipc:/tmp/ipc"]
        network = "titan-network"
        user = "titan"
        "#,
    );
    let Exec::Image { image, ports, volumes, network, .. } = &cfg.services["titan-brain"].exec else {
        panic!("image")
    };
    assert!(image.ends_with("0123456789abcdef"));
    assert_eq!((ports[0].host, ports[0].container), (3100, 3100));
    assert_eq!(volumes, &["titan-ipc:/tmp/ipc"]);
    assert_eq!(network.as_deref(), Some("titan-network"));
    // `user` of a container is a user inside the image: not looked up on this host
    assert_eq!(cfg.services["titan-brain"].user.as_deref(), Some("titan"));
}

#[test]
fn a_native_service_user_must_exist_on_this_host() {
    let err =
        parse_with("[services.a]\ncommand = [\"a\"]\nuser = \"no-such-user-here\"\n", &|_| None).unwrap_err();
    assert!(err.to_string().contains("services.a.user: user \"no-such-user-here\" does not exist"), "{err}");
    parse("[services.a]\ncommand = [\"a\"]\nuser = \"root:root\"\n");
}

#[test]
fn probe_verify_and_nats_addresses_are_interpolated_like_ports() {
    // NATS binds to the VPC address: everything that talks to it must follow the variable
    let env = |name: &str| (name == "VPC_IP").then(|| "10.0.0.7".to_string());
    let cfg = parse_with(
        r#"
        [services.nats]
        command = ["nats-server"]
        health = { http = "http://${VPC_IP:-127.0.0.1}:8222/healthz" }
        [services.redis]
        command = ["redis-server"]
        health = { tcp = "${REDIS_HOST:-127.0.0.1}:6379" }
        [verify]
        http = [ { url = "http://${VPC_IP:-127.0.0.1}:8222/healthz" } ]
        [[verify.parity]]
        name = "policy_hash"
        a = { http = "http://${VPC_IP}:3100/policy", field = "policy_hash" }
        b = { http = "http://127.0.0.1:3002/policy", field = "policy_hash" }
        [nats]
        url = "nats://${VPC_IP:-127.0.0.1}:4222"
        "#,
        &env,
    )
    .unwrap_or_else(|r| panic!("{r}"));
    let Check::Http(uri) = &cfg.services["nats"].health.check else { panic!("http") };
    assert_eq!(uri.to_string(), "http://10.0.0.7:8222/healthz");
    let Check::Tcp(addr) = &cfg.services["redis"].health.check else { panic!("tcp") };
    assert_eq!(addr, "127.0.0.1:6379");
    assert_eq!(cfg.verify.http[0].url, "http://10.0.0.7:8222/healthz");
    assert_eq!(cfg.verify.parity[0].a.http.as_deref(), Some("http://10.0.0.7:3100/policy"));
    assert_eq!(cfg.nats.as_ref().unwrap().urls, ["nats://10.0.0.7:4222"]);

    let unset = parse_with("[verify]\nhttp = [ { url = \"http://${NOWHERE}/\" } ]\n", &|_| None);
    let Err(report) = unset else { panic!("an undefined variable is refused") };
    let report = report.to_string();
    assert!(report.contains("verify.http") && report.contains("NOWHERE"), "{report}");
}
