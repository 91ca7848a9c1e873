//! services.toml: the serde model (`raw`), value types (`units`), env_file and interpolation,
//! resolution against `[defaults]` (`resolve`), cross-service checks (`validate`) and
//! diagnostics that report every problem at once with file:line:col (`diag`).
//!
//! Reading is lenient so that checking can be strict: each section and each service is
//! deserialized on its own, and a key that fails is reported and set aside so the rest of the
//! file is still checked.

pub mod diag;
pub mod envfile;
pub mod interp;
pub mod model;
pub mod raw;
pub mod resolve;
pub mod units;
pub mod validate;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::{DeserializeOwned, IntoDeserializer};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

pub use diag::Report;
pub use model::*;

use diag::{Diagnostics, SpanIndex, join};
use interp::Vars;

/// The top-level sections of services.toml.
const SECTIONS: &[&str] = &["supervisor", "groups", "defaults", "services", "deploy", "verify", "nats"];

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: larger than {} MiB: not a services.toml", path.display(), MAX_SIZE >> 20)]
    TooLarge { path: PathBuf },
    #[error("{0}")]
    Invalid(Report),
}

/// The largest services.toml read: a real one is a few KiB; one of 50 MB (a huge array) costs
/// seconds and gigabytes to parse.
pub const MAX_SIZE: u64 = 4 << 20;

/// Reads and validates a services.toml, taking variables from its env_file and this process's
/// environment.
pub fn load(path: &Path) -> Result<Config, LoadError> {
    let text = read_bounded(path)?;
    let base_dir = path.parent().unwrap_or(Path::new("."));
    let source = Source { name: &path.display().to_string(), text: &text, base_dir };
    parse(&source, &|name| std::env::var(name).ok()).map_err(LoadError::Invalid)
}

/// Just the `[supervisor]` section and the service names of a services.toml, read leniently:
/// enough for tools that look at files on disk (`logs`) even when the rest of the file would
/// not validate here (an env_file only the daemon can read, an image not pinned yet).
pub fn load_supervisor(path: &Path) -> Result<(Supervisor, Vec<String>), LoadError> {
    let text = read_bounded(path)?;
    let name = path.display().to_string();
    let root = DeTable::parse(&text).map_err(|e| {
        let mut d = Diagnostics::default();
        d.at_span(e.span(), e.message());
        LoadError::Invalid(d.locate(&name, &text, &SpanIndex::default()))
    })?;
    let mut d = Diagnostics::default();
    let mut supervisor: Supervisor =
        root.get_ref().get("supervisor").and_then(|v| lenient(v, &mut d)).unwrap_or_default();
    anchor_paths(&mut supervisor, path.parent().unwrap_or(Path::new(".")));
    let services = match root.get_ref().get("services").map(|v| v.get_ref()) {
        Some(DeValue::Table(t)) => t.keys().map(|k| k.get_ref().to_string()).collect(),
        _ => Vec::new(),
    };
    Ok((supervisor, services))
}

/// The file's text, refused past `MAX_SIZE` (read no further than that).
fn read_bounded(path: &Path) -> Result<String, LoadError> {
    use std::io::Read;
    let read = |source| LoadError::Read { path: path.to_owned(), source };
    let file = std::fs::File::open(path).map_err(read)?;
    let mut text = String::new();
    file.take(MAX_SIZE + 1).read_to_string(&mut text).map_err(read)?;
    if text.len() as u64 > MAX_SIZE {
        return Err(LoadError::TooLarge { path: path.to_owned() });
    }
    Ok(text)
}

/// A services.toml to parse: its name for messages, its text, and the directory relative paths
/// (env_file, cwd) are taken from.
pub struct Source<'a> {
    pub name: &'a str,
    pub text: &'a str,
    pub base_dir: &'a Path,
}

/// Parses and validates; every problem found is in the `Report`.
pub fn parse(src: &Source<'_>, process_env: &dyn Fn(&str) -> Option<String>) -> Result<Config, Report> {
    let (root, syntax) = DeTable::parse_recoverable(src.text);
    let index = SpanIndex::build(root.get_ref());
    let mut d = Diagnostics::default();
    // The parser recovers and goes on, but one mistake often cascades along its line: keep the
    // first error of each line.
    let mut lines_seen = BTreeSet::new();
    for e in &syntax {
        let line = e.span().map(|s| src.text[..s.start.min(src.text.len())].matches('\n').count());
        if lines_seen.insert(line) {
            d.at_span(e.span(), e.message());
        }
    }
    if !d.is_empty() {
        return Err(d.locate(src.name, src.text, &index));
    }
    let config = build(src, root.get_ref(), &index, process_env, &mut d);
    match config {
        Some(c) if d.is_empty() => Ok(c),
        _ => Err(d.locate(src.name, src.text, &index)),
    }
}

/// The sections of the file, each read on its own.
#[derive(Default)]
struct Sections {
    supervisor: raw::Supervisor,
    groups: Option<raw::Groups>,
    defaults: raw::Service,
    services: BTreeMap<String, raw::Service>,
    /// Every name under `[services]`, including ones whose table could not be read at all.
    names: BTreeSet<String>,
    deploy: raw::Deploy,
    verify: raw::Verify,
    nats: Option<raw::Nats>,
}

fn read_sections(root: &DeTable<'_>, index: &SpanIndex, d: &mut Diagnostics) -> Sections {
    let mut s = Sections::default();
    for (key, value) in root {
        let key = key.get_ref().as_ref();
        match key {
            "supervisor" => s.supervisor = lenient(value, d).unwrap_or_default(),
            "groups" => s.groups = lenient(value, d),
            "defaults" => s.defaults = lenient(value, d).unwrap_or_default(),
            "services" => read_services(value, &mut s, d),
            "deploy" => s.deploy = lenient(value, d).unwrap_or_default(),
            "verify" => s.verify = lenient(value, d).unwrap_or_default(),
            "nats" => s.nats = lenient(value, d),
            other => {
                let hint = validate::suggest(other, SECTIONS.iter().copied());
                let hint = hint.map(|h| format!(" (did you mean [{h}]?)")).unwrap_or_default();
                let msg = format!("unknown section [{other}]{hint}; sections are {}", SECTIONS.join(", "));
                d.at_span(index.key_span_of(&join("", other)), msg);
            }
        }
    }
    s
}

fn read_services(value: &Spanned<DeValue<'_>>, s: &mut Sections, d: &mut Diagnostics) {
    let DeValue::Table(table) = value.get_ref() else {
        d.at_span(Some(value.span()), "services must be a table of [services.NAME] tables");
        return;
    };
    for (name, svc) in table {
        let name = name.get_ref().to_string();
        s.names.insert(name.clone());
        if !matches!(svc.get_ref(), DeValue::Table(_)) {
            d.at_span(Some(svc.span()), format!("service {name:?} must be a table: [services.{name}]"));
        } else if let Some(raw) = lenient::<raw::Service>(svc, d) {
            s.services.insert(name, raw);
        }
    }
}

fn build(
    src: &Source<'_>,
    root: &DeTable<'_>,
    index: &SpanIndex,
    process_env: &dyn Fn(&str) -> Option<String>,
    d: &mut Diagnostics,
) -> Option<Config> {
    let mut s = read_sections(root, index, d);
    let groups = s.groups.take().map(|g| g.order).unwrap_or_default();
    validate::names(&s.names, &groups, d);
    validate::defaults(&s.defaults, d);
    anchor_paths(&mut s.supervisor, src.base_dir);
    let file_vars = read_env_file(&s.supervisor, d);
    let vars = Vars { file: file_vars, process: process_env };
    let ctx = resolve::Ctx {
        defaults: &s.defaults,
        require_digests: s.supervisor.require_digests,
        base_dir: src.base_dir,
        vars: &vars,
    };
    let mut services: BTreeMap<String, Service> = s
        .services
        .iter()
        .filter_map(|(name, raw)| resolve::service(name, raw, &ctx, d).map(|svc| (name.clone(), svc)))
        .collect();
    let graph = validate::dependencies(&groups, &s.services, &s.names, d);
    validate::cycles(&graph, &s.services, d);
    for (name, deps) in graph {
        if let Some(svc) = services.get_mut(&name) {
            svc.depends_on = deps;
        }
    }
    validate::ports(&services, d);
    interpolate_verify(&mut s.verify, &vars, d);
    validate::deploy_refs(&s.verify, &s.deploy, s.nats.is_some(), &s.names, d);
    let nats = s.nats.as_ref().and_then(|n| resolve_nats(n, src.base_dir, &vars, d));
    Some(Config {
        file: PathBuf::from(src.name),
        supervisor: s.supervisor,
        groups,
        services,
        deploy: s.deploy,
        verify: s.verify,
        nats,
    })
}

/// `[verify]` URLs are interpolated like every other value (`http://${VPC_IP:-127.0.0.1}:8222`).
fn interpolate_verify(verify: &mut raw::Verify, vars: &Vars<'_>, d: &mut Diagnostics) {
    let mut fill = |path: String, text: &mut String| match interp::interpolate(text, vars) {
        Ok(v) => *text = v.expose().to_owned(),
        Err(e) => d.at(path, e.to_string()),
    };
    for (i, check) in verify.http.iter_mut().enumerate() {
        fill(format!("verify.http[{i}].url"), &mut check.url);
    }
    for (i, parity) in verify.parity.iter_mut().enumerate() {
        for (side, source) in [("a", &mut parity.a), ("b", &mut parity.b)] {
            if let Some(url) = source.http.as_mut() {
                fill(format!("verify.parity[{i}].{side}.http"), url);
            }
        }
    }
}

/// Relative paths in `[supervisor]` are taken from the config file's directory.
fn anchor_paths(sup: &mut raw::Supervisor, base_dir: &Path) {
    for path in
        [&mut sup.state_dir, &mut sup.log_dir, &mut sup.releases_dir, &mut sup.current, &mut sup.socket]
    {
        *path = base_dir.join(&*path);
    }
    if let Some(env_file) = sup.env_file.as_mut() {
        *env_file = base_dir.join(&*env_file);
    }
    for key in &mut sup.trusted_keys {
        *key = base_dir.join(&*key);
    }
}

/// Reads `[supervisor] env_file` (relative to the config's directory) if one is configured.
fn read_env_file(sup: &raw::Supervisor, d: &mut Diagnostics) -> std::collections::HashMap<String, String> {
    let Some(path) = sup.env_file.as_ref() else {
        return Default::default();
    };
    let me = nix::unistd::geteuid().as_raw();
    envfile::read(path, me).unwrap_or_else(|e| {
        d.at("supervisor.env_file", e.to_string());
        Default::default()
    })
}

fn resolve_nats(n: &raw::Nats, base_dir: &Path, vars: &Vars<'_>, d: &mut Diagnostics) -> Option<Nats> {
    // `nats://${VPC_IP:-127.0.0.1}:4222`: interpolated first, as every other value
    let url = match interp::interpolate(&n.url, vars) {
        Ok(v) => v.expose().to_owned(),
        Err(e) => {
            d.at("nats.url", e.to_string());
            return None;
        }
    };
    let urls: Vec<String> = url.split(',').map(|u| u.trim().to_owned()).collect();
    for url in &urls {
        let valid =
            ["nats://", "tls://"].iter().any(|s| url.strip_prefix(s).is_some_and(|rest| !rest.is_empty()));
        if !valid {
            d.at(
                "nats.url",
                format!("invalid NATS URL {url:?}: write nats://host:port (tls://host:port for TLS)"),
            );
        }
    }
    let mut value = |key: &str, text: &Option<String>| {
        let text = text.as_ref()?;
        interp::interpolate(text, vars).map_err(|e| d.at(format!("nats.{key}"), e.to_string())).ok()
    };
    let (user, password, token, nkey) = (
        value("user", &n.user),
        value("password", &n.password),
        value("token", &n.token),
        value("nkey", &n.nkey),
    );
    let creds = n.creds_file.as_ref().map(|p| base_dir.join(p));
    let given = [n.user.is_some(), n.token.is_some(), n.nkey.is_some(), n.creds_file.is_some()];
    if given.iter().filter(|g| **g).count() > 1 {
        d.at("nats", "give one way to authenticate: user and password, token, nkey or creds_file");
    }
    if n.user.is_some() != n.password.is_some() {
        let key = if n.user.is_some() { "nats.password" } else { "nats.user" };
        d.at(key, "user and password go together");
    }
    let auth = match (user, password, token, nkey, creds) {
        (Some(user), Some(password), ..) => NatsAuth::UserPassword { user, password },
        (_, _, Some(token), ..) => NatsAuth::Token(token),
        (_, _, _, Some(seed), _) => NatsAuth::Nkey(seed),
        (.., Some(path)) => NatsAuth::CredsFile(path),
        _ => NatsAuth::None,
    };
    let name = n.name.clone().unwrap_or_else(|| "titan-supervisor".to_owned());
    let timeout = n.timeout.unwrap_or(units::Duration::from_secs(2));
    let ca_file = n.ca_file.as_ref().map(|p| base_dir.join(p));
    Some(Nats { urls, auth, ca_file, name, timeout })
}

/// Deserializes `value` as `T`. A key that fails is reported (with its span) and removed, and
/// the rest is tried again, so one bad key does not hide the next. `None` when nothing of the
/// table could be read.
fn lenient<T: DeserializeOwned>(value: &Spanned<DeValue<'_>>, d: &mut Diagnostics) -> Option<T> {
    let mut work = value.clone();
    loop {
        match T::deserialize(work.clone().into_deserializer()) {
            Ok(t) => return Some(t),
            Err(e) => {
                let span = e.span();
                d.at_span(span.clone(), friendlier(e.message()));
                if !span.is_some_and(|s| remove_at(&mut work, &s)) {
                    return None;
                }
            }
        }
    }
}

/// Removes the deepest table entry whose key or value holds `span`; false if there is none.
fn remove_at(value: &mut Spanned<DeValue<'_>>, span: &Range<usize>) -> bool {
    let DeValue::Table(table) = value.get_mut() else {
        return false;
    };
    let holds = |r: Range<usize>| r.start <= span.start && span.end <= r.end.max(r.start + 1);
    let Some(key) =
        table.iter().find(|(k, v)| holds(k.span()) || holds(v.span())).map(|(k, _)| k.get_ref().to_string())
    else {
        return false;
    };
    let nested = table.get_mut(key.as_str()).is_some_and(|v| remove_at(v, span));
    nested || table.remove(key.as_str()).is_some()
}

/// Rewrites serde's "unknown field `x`, expected one of `a`, `b`" (and the same for enum
/// variants) into a shorter message with a "did you mean" when one name is close.
fn friendlier(message: &str) -> String {
    let (what, rest) = if let Some(r) = message.strip_prefix("unknown field `") {
        ("key", r)
    } else if let Some(r) = message.strip_prefix("unknown variant `") {
        ("value", r)
    } else {
        return message.to_owned();
    };
    let Some((name, expected)) = rest.split_once('`') else {
        return message.to_owned();
    };
    let options: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    match validate::suggest(name, options.iter().copied()) {
        Some(hint) => format!("unknown {what} {name:?} (did you mean {hint:?}?)"),
        None if options.is_empty() => format!("unknown {what} {name:?}"),
        None => format!("unknown {what} {name:?}; expected one of: {}", options.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::friendlier;

    #[test]
    fn serde_unknown_names_get_a_suggestion() {
        let m = "unknown field `socket_mod`, expected one of `socket`, `socket_mode`";
        assert_eq!(friendlier(m), "unknown key \"socket_mod\" (did you mean \"socket_mode\"?)");
        let m = "unknown variant `sometimes`, expected one of `always`, `on-failure`, `never`";
        assert_eq!(friendlier(m), "unknown value \"sometimes\"; expected one of: always, on-failure, never");
        assert_eq!(friendlier("invalid type"), "invalid type");
    }
}
