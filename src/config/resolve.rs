//! Turns one `[services.X]` table plus `[defaults]` into a `model::Service`: keys inherited one
//! by one (tables such as `health`, `logs`, `env` merged field by field), variables
//! interpolated, values checked. Problems that involve other services live in `validate`.

use std::collections::BTreeMap;
use std::path::Path;

use regex::Regex;

use super::diag::{Diagnostics, join};
use super::interp::{Value, Vars, interpolate, is_var_name};
use super::model::{self, Check, Exec, Health, Port, Protocol, builtin};
use super::raw::{self, Kind, RestartPolicy, UpdateOrder};
use super::units::{Duration, Signal, Size};

/// What resolving a service needs besides its own table.
pub struct Ctx<'a> {
    pub defaults: &'a raw::Service,
    pub require_digests: bool,
    /// Directory of the config file; relative `cwd`s are taken from here.
    pub base_dir: &'a Path,
    pub vars: &'a Vars<'a>,
}

/// The smallest cap that makes sense for a process; below it a value is a typo.
const MIN_MEMORY: Size = Size::mib(1);
const MIN_LOG_SIZE: Size = Size(4096);

/// Resolves one service; `None` when a problem prevents building it at all. Every problem is
/// recorded in `d`.
pub fn service(name: &str, raw: &raw::Service, ctx: &Ctx<'_>, d: &mut Diagnostics) -> Option<model::Service> {
    let p = join("services", name);
    let def = ctx.defaults;
    let kind = raw.kind.unwrap_or_default();
    let exec = exec(&p, raw, ctx, d);
    let env = env(&p, raw, ctx, d);
    let health = health(&p, raw, ctx, kind, d);
    let restart = restart(&p, raw, def, kind, d);
    let logs = logs(&p, raw, def, d);
    let memory = raw.memory.or(def.memory);
    let memory_restart = raw.memory_restart.or(def.memory_restart);
    check_memory(&p, memory, memory_restart, d);
    let user = raw.user.clone().or_else(|| def.user.clone());
    if let (Some(user), Some(Exec::Command { .. })) = (&user, &exec) {
        check_host_user(&format!("{p}.user"), user, d);
    }
    let positive = |key: &str, v: Option<u32>, d: &mut Diagnostics| {
        if v == Some(0) {
            d.at(format!("{p}.{key}"), format!("{key} must be at least 1"));
        }
    };
    positive("unhealthy_after", raw.unhealthy_after.or(def.unhealthy_after), d);
    positive("max_pids", raw.max_pids.or(def.max_pids), d);
    let startup_timeout = raw.startup_timeout.or(def.startup_timeout).unwrap_or(builtin::STARTUP_TIMEOUT);
    nonzero(&format!("{p}.startup_timeout"), startup_timeout, d);
    if raw.breaks_previous == Some(true) && kind != Kind::Oneshot {
        d.at(format!("{p}.breaks_previous"), "breaks_previous applies to a oneshot (a migration)");
    }
    if raw.update_order == Some(UpdateOrder::StartFirst) {
        check_start_first(&format!("{p}.update_order"), raw, kind, d);
    }
    // A service with bad values is still built when its shape allows, so checks that span
    // services (ports, dependencies) see it too; the diagnostics make the file invalid anyway.
    Some(model::Service {
        name: name.to_owned(),
        group: raw.group.clone(),
        depends_on: raw.depends_on.clone().unwrap_or_default(),
        explicit_depends_on: raw.depends_on.is_some(),
        kind,
        exec: exec?,
        env: env?,
        health: health?,
        unhealthy_after: raw.unhealthy_after.or(def.unhealthy_after).unwrap_or(builtin::UNHEALTHY_AFTER),
        memory,
        memory_restart,
        max_pids: raw.max_pids.or(def.max_pids),
        user,
        stop_signal: raw.stop_signal.or(def.stop_signal).unwrap_or(Signal(nix::sys::signal::SIGTERM)),
        stop_timeout: raw.stop_timeout.or(def.stop_timeout).unwrap_or(builtin::STOP_TIMEOUT),
        startup_timeout,
        restart: restart?,
        logs: logs?,
        breaks_previous: raw.breaks_previous == Some(true),
        update_order: raw.update_order.unwrap_or_default(),
    })
}

/// `start-first` runs the new container beside the old one: a container (a native process
/// would meet itself on its port), long-running, and publishing no host port (the second
/// could not bind it while the first holds it).
fn check_start_first(path: &str, raw: &raw::Service, kind: Kind, d: &mut Diagnostics) {
    let why = if raw.image.is_none() {
        "start-first applies to containers: a native process cannot run beside itself"
    } else if kind == Kind::Oneshot {
        "start-first applies to long-running services, not a oneshot"
    } else if raw.ports.as_ref().is_some_and(|p| !p.is_empty()) {
        "start-first needs a container without published host ports: the new one could not bind them while the old one holds them"
    } else {
        return;
    };
    d.at(path, why);
}

fn exec(p: &str, raw: &raw::Service, ctx: &Ctx<'_>, d: &mut Diagnostics) -> Option<Exec> {
    let args = raw.args.as_deref().unwrap_or_default();
    let args: Option<Vec<Value>> =
        args.iter().enumerate().map(|(i, a)| interp(&format!("{p}.args[{i}]"), a, ctx, d)).collect();
    match (&raw.image, &raw.command) {
        (Some(_), Some(_)) => {
            d.at(
                format!("{p}.command"),
                "give either image (a container) or command (a native process), not both",
            );
            None
        }
        (None, None) => {
            d.at(p, "give image (a container) or command (a native process)");
            None
        }
        (Some(image), None) => image_exec(p, image, raw, ctx, args?, d),
        (None, Some(command)) => command_exec(p, command, raw, ctx, args?, d),
    }
}

fn image_exec(
    p: &str,
    image: &str,
    raw: &raw::Service,
    ctx: &Ctx<'_>,
    args: Vec<Value>,
    d: &mut Diagnostics,
) -> Option<Exec> {
    if let Some(problem) = image_problem(image, ctx.require_digests) {
        d.at(format!("{p}.image"), problem);
    }
    let cwd = raw.cwd.clone().or_else(|| ctx.defaults.cwd.clone());
    if cwd.as_ref().is_some_and(|c| !c.is_absolute()) {
        d.at(format!("{p}.cwd"), "cwd of a container is a path inside it and must be absolute");
    }
    let ports = raw.ports.as_deref().unwrap_or_default();
    let ports: Vec<Port> = ports
        .iter()
        .enumerate()
        .filter_map(|(i, spec)| {
            // `${VPC_IP:-127.0.0.1}:4222:4222`: interpolated first, as every other value
            let at = format!("{p}.ports[{i}]");
            let spec = interp(&at, spec, ctx, d)?;
            let problem =
                |e: String| if spec.is_secret() { "invalid port (from a secret variable)".into() } else { e };
            parse_port(spec.expose()).map_err(|e| d.at(at, problem(e))).ok()
        })
        .collect();
    let volumes = raw.volumes.clone().or_else(|| ctx.defaults.volumes.clone()).unwrap_or_default();
    for (i, v) in volumes.iter().enumerate() {
        if let Err(e) = check_volume(v) {
            d.at(format!("{p}.volumes[{i}]"), e);
        }
    }
    let network = raw.network.clone().or_else(|| ctx.defaults.network.clone());
    let init = raw.init.or(ctx.defaults.init).unwrap_or(false);
    Some(Exec::Image { image: image.to_owned(), args, cwd, ports, volumes, network, init })
}

fn command_exec(
    p: &str,
    command: &[String],
    raw: &raw::Service,
    ctx: &Ctx<'_>,
    args: Vec<Value>,
    d: &mut Diagnostics,
) -> Option<Exec> {
    let container_only = [
        ("ports", raw.ports.is_some()),
        ("volumes", raw.volumes.is_some()),
        ("network", raw.network.is_some()),
        ("init", raw.init.is_some()),
    ];
    for (key, _) in container_only.into_iter().filter(|(_, set)| *set) {
        d.at(format!("{p}.{key}"), format!("{key} applies to containers (image); a native command has none"));
    }
    if command.is_empty() || command[0].is_empty() {
        d.at(format!("{p}.command"), "command needs a program: command = [\"program\", \"arg\", ...]");
        return None;
    }
    let mut argv: Vec<Value> = command
        .iter()
        .enumerate()
        .map(|(i, c)| interp(&format!("{p}.command[{i}]"), c, ctx, d))
        .collect::<Option<_>>()?;
    argv.extend(args);
    let cwd = raw.cwd.clone().or_else(|| ctx.defaults.cwd.clone()).map(|c| ctx.base_dir.join(c));
    Some(Exec::Command { argv, cwd })
}

/// Why an image reference cannot be used, if it cannot.
pub fn image_problem(image: &str, require_digests: bool) -> Option<String> {
    if image.is_empty() || image.contains(char::is_whitespace) {
        return Some(format!("invalid image reference {image:?}"));
    }
    match image.split_once('@') {
        Some((name, digest)) => {
            let hex = digest.strip_prefix("sha256:").unwrap_or("");
            let ok = !name.is_empty()
                && hex.len() == 64
                && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            (!ok).then(|| format!("invalid digest in {image:?}: expected name@sha256:<64 lowercase hex>"))
        }
        None if require_digests => Some(format!(
            "image {image:?} is not pinned by digest: write {image}@sha256:<64 hex> \
             (or set [supervisor] require_digests = false)"
        )),
        None => None,
    }
}

fn env(p: &str, raw: &raw::Service, ctx: &Ctx<'_>, d: &mut Diagnostics) -> Option<BTreeMap<String, Value>> {
    let mut merged = ctx.defaults.env.clone().unwrap_or_default();
    merged.extend(raw.env.clone().unwrap_or_default());
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (key, text) in &merged {
        let path = join(&format!("{p}.env"), key);
        if !is_var_name(key) {
            d.at(path, format!("invalid environment variable name {key:?}"));
            ok = false;
        } else if let Some(v) = interp(&path, &text.0, ctx, d) {
            out.insert(key.clone(), v);
        } else {
            ok = false;
        }
    }
    ok.then_some(out)
}

fn interp(path: &str, text: &str, ctx: &Ctx<'_>, d: &mut Diagnostics) -> Option<Value> {
    interpolate(text, ctx.vars).map_err(|e| d.at(path, e.to_string())).ok()
}

fn health(p: &str, raw: &raw::Service, ctx: &Ctx<'_>, kind: Kind, d: &mut Diagnostics) -> Option<Health> {
    let def = ctx.defaults;
    let own = raw.health.clone().unwrap_or_default().0;
    let inherited = def.health.clone().unwrap_or_default().0;
    let hp = format!("{p}.health");
    let own_check = check_kinds(&own);
    let check = if kind == Kind::Oneshot {
        if !own_check.is_empty() {
            d.at(&hp, "a oneshot is ready when it exits 0; it takes no health check");
        }
        Some(Check::None)
    } else if !own_check.is_empty() || raw.health.is_some() && own.none == Some(true) {
        build_check(&hp, &own, ctx, d)
    } else {
        build_check(&hp, &inherited, ctx, d)
    };
    let pick =
        |own: Option<Duration>, inh: Option<Duration>, dflt: Duration, key: &str, d: &mut Diagnostics| {
            let v = own.or(inh).unwrap_or(dflt);
            nonzero(&format!("{hp}.{key}"), v, d);
            v
        };
    let interval = pick(own.interval, inherited.interval, builtin::INTERVAL, "interval", d);
    let timeout = pick(own.timeout, inherited.timeout, builtin::TIMEOUT, "timeout", d);
    let start_interval =
        pick(own.start_interval, inherited.start_interval, builtin::START_INTERVAL, "start_interval", d);
    Some(Health { check: check?, interval, timeout, start_interval })
}

/// The check kinds a health table names.
fn check_kinds(h: &raw::HealthTable) -> Vec<&'static str> {
    let named = [
        ("http", h.http.is_some()),
        ("tcp", h.tcp.is_some()),
        ("exec", h.exec.is_some()),
        ("log", h.log.is_some()),
        ("notify", h.notify == Some(true)),
    ];
    named.into_iter().filter(|(_, set)| *set).map(|(k, _)| k).collect()
}

/// One health check; its `http` URL and `tcp` address are interpolated first, as ports are
/// (`http://${VPC_IP:-127.0.0.1}:8222/healthz`).
fn build_check(hp: &str, h: &raw::HealthTable, ctx: &Ctx<'_>, d: &mut Diagnostics) -> Option<Check> {
    let kinds = check_kinds(h);
    if kinds.len() > 1 || (!kinds.is_empty() && h.none == Some(true)) {
        d.at(hp, format!("give one health check, not {}", kinds.join(" and ")));
        return None;
    }
    let problem = |key: &str, msg: String, d: &mut Diagnostics| d.at(format!("{hp}.{key}"), msg);
    if let Some(url) = &h.http {
        let url = interp(&format!("{hp}.http"), url, ctx, d)?;
        return parse_http(url.expose()).map_err(|e| problem("http", e, d)).ok().map(Check::Http);
    }
    if let Some(addr) = &h.tcp {
        let addr = interp(&format!("{hp}.tcp"), addr, ctx, d)?.expose().to_owned();
        return check_tcp(&addr).map_err(|e| problem("tcp", e, d)).ok().map(|()| Check::Tcp(addr));
    }
    if let Some(argv) = &h.exec {
        if argv.is_empty() || argv[0].is_empty() {
            problem("exec", "exec needs a command: exec = [\"program\", \"arg\", ...]".into(), d);
            return None;
        }
        return Some(Check::Exec(argv.clone()));
    }
    if let Some(pattern) = &h.log {
        return match Regex::new(pattern) {
            Ok(re) if !pattern.is_empty() => Some(Check::Log(re)),
            Ok(_) => {
                problem("log", "log needs a pattern to wait for, e.g. log = \"listening on\"".into(), d);
                None
            }
            Err(e) => {
                let last = e.to_string().lines().last().unwrap_or_default().trim().to_owned();
                let reason = last.strip_prefix("error: ").unwrap_or(&last).to_owned();
                problem("log", format!("log pattern {pattern:?} does not compile: {reason}"), d);
                None
            }
        };
    }
    Some(if h.notify == Some(true) { Check::Notify } else { Check::None })
}

fn parse_http(url: &str) -> Result<http::Uri, String> {
    let example = "e.g. http://127.0.0.1:3100/health";
    if url.is_empty() {
        return Err(format!("http needs a URL, {example}"));
    }
    let uri: http::Uri = url.parse().map_err(|e| format!("invalid URL {url:?}: {e} ({example})"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http"), Some(h)) if !h.is_empty() => Ok(uri),
        (Some("https"), _) => {
            Err(format!("{url:?}: https probes are not supported; probe the plain-HTTP port"))
        }
        _ => Err(format!("invalid URL {url:?}: need http://host[:port]/path ({example})")),
    }
}

fn check_tcp(addr: &str) -> Result<(), String> {
    let bad = || format!("invalid address {addr:?}: write host:port, e.g. 127.0.0.1:4222");
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    match port.parse::<u16>() {
        Ok(p) if p > 0 && !host.is_empty() => Ok(()),
        _ => Err(bad()),
    }
}

fn restart(
    p: &str,
    raw: &raw::Service,
    def: &raw::Service,
    kind: Kind,
    d: &mut Diagnostics,
) -> Option<model::Restart> {
    let policy = raw.restart.or(def.restart).unwrap_or(RestartPolicy::OnFailure);
    if kind == Kind::Oneshot && policy == RestartPolicy::Always {
        let from = if raw.restart.is_some() { "" } else { " (inherited from [defaults])" };
        d.at(
            format!("{p}.restart"),
            format!(
                "restart = \"always\"{from} would rerun a oneshot forever: use \"on-failure\" or \"never\""
            ),
        );
    }
    let backoff = raw.backoff.clone().unwrap_or_default();
    let def_backoff = def.backoff.clone().unwrap_or_default();
    let initial = backoff.initial.or(def_backoff.initial).unwrap_or(builtin::BACKOFF_INITIAL);
    let max = backoff.max.or(def_backoff.max).unwrap_or(builtin::BACKOFF_MAX);
    if initial > max {
        d.at(
            format!("{p}.backoff.initial"),
            format!("backoff.initial ({initial}) is above backoff.max ({max})"),
        );
    }
    let window = raw.restart_window.or(def.restart_window).unwrap_or(builtin::RESTART_WINDOW);
    nonzero(&format!("{p}.restart_window"), window, d);
    Some(model::Restart {
        policy,
        max_restarts: raw.max_restarts.or(def.max_restarts).unwrap_or(builtin::MAX_RESTARTS),
        window,
        backoff_initial: initial,
        backoff_max: max,
        min_uptime: raw.min_uptime.or(def.min_uptime).unwrap_or(builtin::MIN_UPTIME),
    })
}

fn logs(p: &str, raw: &raw::Service, def: &raw::Service, d: &mut Diagnostics) -> Option<model::Logs> {
    let own = raw.logs.clone().unwrap_or_default();
    let inh = def.logs.clone().unwrap_or_default();
    let max_size = own.max_size.or(inh.max_size).unwrap_or(builtin::LOG_MAX_SIZE);
    if max_size < MIN_LOG_SIZE {
        d.at(
            format!("{p}.logs.max_size"),
            format!("logs.max_size ({max_size}) is below the minimum {MIN_LOG_SIZE}"),
        );
    }
    let retain = own.retain.or(inh.retain).unwrap_or(builtin::LOG_RETAIN);
    nonzero(&format!("{p}.logs.retain"), retain, d);
    let max_files = own.max_files.or(inh.max_files).unwrap_or(builtin::LOG_MAX_FILES);
    if max_files == 0 {
        d.at(format!("{p}.logs.max_files"), "logs.max_files must be at least 1");
    }
    Some(model::Logs {
        max_size,
        retain,
        max_files,
        compress: own.compress.or(inh.compress).unwrap_or(true),
        format: own.format.or(inh.format).unwrap_or_default(),
    })
}

fn check_memory(p: &str, memory: Option<Size>, soft: Option<Size>, d: &mut Diagnostics) {
    for (key, v) in [("memory", memory), ("memory_restart", soft)] {
        if v.is_some_and(|v| v < MIN_MEMORY) {
            d.at(format!("{p}.{key}"), format!("{key} is below the minimum {MIN_MEMORY}"));
        }
    }
    if let (Some(hard), Some(soft)) = (memory, soft) {
        if soft >= hard {
            d.at(
                format!("{p}.memory_restart"),
                format!(
                    "memory_restart ({soft}) must be below memory ({hard}): the soft cap restarts \
                 the service before the hard cap kills it"
                ),
            );
        }
    }
}

/// A native service's `user` must resolve here exactly as the spawn will resolve it.
fn check_host_user(path: &str, spec: &str, d: &mut Diagnostics) {
    if let Err(e) = crate::runtime::credentials::resolve(spec) {
        d.at(path, e.to_string());
    }
}

fn nonzero(path: &str, v: Duration, d: &mut Diagnostics) {
    if v.is_zero() {
        let key = path.rsplit('.').next().unwrap_or(path);
        d.at(path, format!("{key} must be greater than 0"));
    }
}

/// Parses `[ip:]host:container[/tcp|udp]`.
pub fn parse_port(spec: &str) -> Result<Port, String> {
    let bad = |why: &str| format!("invalid port {spec:?}: {why} (write [ip:]host:container[/tcp|udp])");
    let (addr, protocol) = match spec.rsplit_once('/') {
        Some((a, "tcp")) => (a, Protocol::Tcp),
        Some((a, "udp")) => (a, Protocol::Udp),
        Some(_) => return Err(bad("protocol must be tcp or udp")),
        None => (spec, Protocol::Tcp),
    };
    let (rest, container) = addr.rsplit_once(':').ok_or_else(|| bad("missing container port"))?;
    let (ip, host) = match rest.rsplit_once(':') {
        Some((ip, host)) => (Some(ip.trim_start_matches('[').trim_end_matches(']')), host),
        None => (None, rest),
    };
    let number = |s: &str| s.parse::<u16>().ok().filter(|&p| p > 0);
    let host = number(host).ok_or_else(|| bad("host port must be 1-65535"))?;
    let container = number(container).ok_or_else(|| bad("container port must be 1-65535"))?;
    let host_ip = ip.map(|ip| ip.parse().map_err(|_| bad("invalid IP address"))).transpose()?;
    Ok(Port { host_ip, host, container, protocol })
}

fn check_volume(spec: &str) -> Result<(), String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let ok = match parts.as_slice() {
        [src, dst] => !src.is_empty() && dst.starts_with('/'),
        [src, dst, mode] => !src.is_empty() && dst.starts_with('/') && matches!(*mode, "ro" | "rw"),
        _ => false,
    };
    if ok { Ok(()) } else { Err(format!("invalid volume {spec:?}: write source:/path/in/container[:ro|rw]")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_parse_in_compose_syntax() {
        let p = parse_port("127.0.0.1:3100:3100").unwrap();
        assert_eq!((p.host, p.container, p.protocol), (3100, 3100, Protocol::Tcp));
        assert_eq!(p.host_ip, Some("127.0.0.1".parse().unwrap()));
        let p = parse_port("8080:80/udp").unwrap();
        assert_eq!((p.host_ip, p.host, p.protocol), (None, 8080, Protocol::Udp));
        assert_eq!(parse_port("[::1]:53:53").unwrap().host_ip, Some("::1".parse().unwrap()));
        for bad in ["80", "0:80", "a:80", "1.2.3:80:80", "80:80/sctp", "70000:80"] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn digests_must_be_well_formed() {
        let hex = "a".repeat(64);
        assert_eq!(image_problem(&format!("nats@sha256:{hex}"), true), None);
        assert_eq!(image_problem("nats:2.10", false), None);
        assert!(image_problem("nats:2.10", true).unwrap().contains("not pinned"));
        assert!(image_problem("nats@sha256:abc", false).unwrap().contains("invalid digest"));
        assert!(image_problem(&format!("nats@sha256:{}", "A".repeat(64)), false).is_some());
    }
}
