//! Checks that involve more than one service: names, groups, `depends_on` (expanded here, with
//! the group-order default), cycles, host port clashes, `[defaults]` misuse and the references
//! of `[verify]` and `[deploy]`.

use std::collections::{BTreeMap, BTreeSet};

use super::diag::{Diagnostics, join};
use super::model::{Exec, Port, Service};
use super::raw::{self, SERVICE_ONLY_KEYS};
use crate::graph::find_cycles;

/// Name reserved for the supervisor's own log directory.
const RESERVED: &str = "supervisor";

/// Service and group names: `[A-Za-z0-9][A-Za-z0-9_-]*`, at most 63 characters (they become
/// container names, directory names and metric labels).
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 63
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The closest of `candidates` to `name`, if one is close enough to be a likely typo.
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(name, c), c))
        .filter(|&(dist, c)| dist <= (name.len().max(c.len()) / 3).max(1))
        .min()
        .map(|(_, c)| c)
}

fn did_you_mean(s: Option<&str>) -> String {
    s.map(|s| format!(" (did you mean {s:?}?)")).unwrap_or_default()
}

pub fn names(services: &BTreeSet<String>, groups: &[String], d: &mut Diagnostics) {
    for name in services {
        let path = join("services", name);
        if !valid_name(name) {
            d.at(path, format!("invalid service name {name:?}: use letters, digits, - and _ (at most 63)"));
        } else if name == RESERVED {
            d.at(path, format!("the service name {RESERVED:?} is reserved for the supervisor's own log"));
        }
    }
    let mut seen = BTreeSet::new();
    for (i, group) in groups.iter().enumerate() {
        let path = format!("groups.order[{i}]");
        if !valid_name(group) {
            d.at(path, format!("invalid group name {group:?}: use letters, digits, - and _"));
        } else if !seen.insert(group) {
            d.at(path, format!("group {group:?} is listed twice"));
        } else if services.contains(group) {
            d.at(
                path,
                format!("group {group:?} has the name of a service; depends_on could not tell them apart"),
            );
        }
    }
}

/// `[defaults]` may not hold keys that only make sense for one service.
pub fn defaults(defaults: &raw::Service, d: &mut Diagnostics) {
    // one entry per key, in its order (a key added to one and not the other does not compile)
    let set: [bool; SERVICE_ONLY_KEYS.len()] = [
        defaults.group.is_some(),
        defaults.depends_on.is_some(),
        defaults.image.is_some(),
        defaults.command.is_some(),
        defaults.args.is_some(),
        defaults.kind.is_some(),
        defaults.ports.is_some(),
        defaults.update_order.is_some(),
        defaults.breaks_previous.is_some(),
    ];
    for (key, _) in SERVICE_ONLY_KEYS.iter().zip(set).filter(|(_, set)| *set) {
        d.at(format!("defaults.{key}"), format!("{key} describes one service; it cannot be a default"));
    }
}

/// Checks every service's group and expands `depends_on` into service names: explicit entries
/// (services or groups) replace the default, which is every service of the nearest earlier
/// non-empty group. Returns the dependencies of every service that could be read.
pub fn dependencies(
    groups: &[String],
    raw: &BTreeMap<String, raw::Service>,
    all: &BTreeSet<String>,
    d: &mut Diagnostics,
) -> BTreeMap<String, Vec<String>> {
    let mut members: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (name, svc) in raw {
        if let Some(g) = &svc.group {
            members.entry(g.as_str()).or_default().push(name.clone());
        }
    }
    let mut graph = BTreeMap::new();
    for (name, svc) in raw {
        let deps = match (&svc.depends_on, &svc.group) {
            (Some(explicit), _) => explicit_deps(name, svc, explicit, groups, &members, all, d),
            (None, Some(g)) => group_default(name, g, groups, &members, d),
            (None, None) => Vec::new(),
        };
        graph.insert(name.clone(), deps);
    }
    graph
}

fn explicit_deps(
    name: &str,
    svc: &raw::Service,
    explicit: &[String],
    groups: &[String],
    members: &BTreeMap<&str, Vec<String>>,
    all: &BTreeSet<String>,
    d: &mut Diagnostics,
) -> Vec<String> {
    let p = join("services", name);
    let mut out = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for (i, dep) in explicit.iter().enumerate() {
        let path = format!("{p}.depends_on[{i}]");
        if !seen.insert(dep) {
            d.at(path, format!("{dep:?} is listed twice"));
        } else if dep == name {
            d.at(path, "a service cannot depend on itself");
        } else if all.contains(dep) {
            out.insert(dep.clone());
        } else if groups.contains(dep) {
            if svc.group.as_ref() == Some(dep) {
                d.at(path, format!("{name:?} is in group {dep:?} and cannot depend on its own group"));
            }
            out.extend(members.get(dep.as_str()).into_iter().flatten().cloned());
        } else {
            let candidates = all.iter().chain(groups).map(String::as_str);
            let hint = suggest(dep, candidates);
            let what = match hint {
                Some(h) if groups.iter().any(|g| g == h) => "group",
                Some(_) => "service",
                None if groups.is_empty() => "service",
                None => "service or group",
            };
            d.at(path, format!("unknown {what} {dep:?}{}", did_you_mean(hint)));
        }
    }
    out.into_iter().collect()
}

fn group_default(
    name: &str,
    group: &str,
    groups: &[String],
    members: &BTreeMap<&str, Vec<String>>,
    d: &mut Diagnostics,
) -> Vec<String> {
    let Some(pos) = groups.iter().position(|g| g == group) else {
        let path = format!("{}.group", join("services", name));
        let msg = if groups.is_empty() {
            format!("unknown group {group:?}: no [groups] order is declared")
        } else {
            let hint = suggest(group, groups.iter().map(String::as_str));
            format!("unknown group {group:?}{} (groups: {})", did_you_mean(hint), groups.join(", "))
        };
        d.at(path, msg);
        return Vec::new();
    };
    groups[..pos]
        .iter()
        .rev()
        .find_map(|g| members.get(g.as_str()).filter(|m| !m.is_empty()))
        .cloned()
        .unwrap_or_default()
}

/// Reports each dependency cycle once, at the first service of the cycle: its `depends_on`, or
/// its `group` when the edge came from the group order.
pub fn cycles(
    graph: &BTreeMap<String, Vec<String>>,
    raw: &BTreeMap<String, raw::Service>,
    d: &mut Diagnostics,
) {
    for cycle in find_cycles(graph) {
        let first = &cycle[0];
        let explicit = raw.get(first).is_some_and(|s| s.depends_on.is_some());
        let key = if explicit { "depends_on" } else { "group" };
        d.at(
            format!("{}.{key}", join("services", first)),
            format!("dependency cycle: {}", cycle.join(" -> ")),
        );
    }
}

/// No host port may be published twice (an unspecified IP overlaps every address).
pub fn ports(services: &BTreeMap<String, Service>, d: &mut Diagnostics) {
    let mut taken: Vec<(&str, &Port)> = Vec::new();
    for (name, svc) in services {
        let Exec::Image { ports, .. } = &svc.exec else {
            continue;
        };
        for (i, port) in ports.iter().enumerate() {
            let clash = taken.iter().find(|(_, q)| {
                q.host == port.host
                    && q.protocol == port.protocol
                    && (q.host_ip.is_none_or(|ip| ip.is_unspecified())
                        || port.host_ip.is_none_or(|ip| ip.is_unspecified())
                        || q.host_ip == port.host_ip)
            });
            if let Some((other, _)) = clash {
                let proto = if port.protocol == super::model::Protocol::Udp { "udp" } else { "tcp" };
                let by = if *other == name.as_str() {
                    "this service".to_owned()
                } else {
                    format!("service {other:?}")
                };
                d.at(
                    format!("{}.ports[{i}]", join("services", name)),
                    format!("host port {}/{proto} is already published by {by}", port.host),
                );
            }
            taken.push((name, port));
        }
    }
}

/// `[verify]` and `[deploy]` refer to services and need `[nats]` for NATS sources and disarm.
pub fn deploy_refs(
    verify: &raw::Verify,
    deploy: &raw::Deploy,
    has_nats: bool,
    all: &BTreeSet<String>,
    d: &mut Diagnostics,
) {
    if deploy.disarm && !has_nats {
        d.at("deploy.disarm", "disarm = true publishes on NATS and needs a [nats] section");
    }
    for (i, check) in verify.exec.iter().enumerate() {
        if let Some(svc) = check.service.as_deref().filter(|s| !all.contains(*s)) {
            let hint = suggest(svc, all.iter().map(String::as_str));
            d.at(
                format!("verify.exec[{i}].service"),
                format!("unknown service {svc:?}{}", did_you_mean(hint)),
            );
        }
        if check.command.first().is_none_or(String::is_empty) {
            d.at(format!("verify.exec[{i}].command"), "command needs a program");
        }
    }
    for (i, check) in verify.http.iter().enumerate() {
        verify_http(&format!("verify.http[{i}]"), check, d);
    }
    for (i, parity) in verify.parity.iter().enumerate() {
        for (side, src) in [("a", &parity.a), ("b", &parity.b)] {
            parity_source(&format!("verify.parity[{i}].{side}"), src, has_nats, d);
        }
    }
}

/// A `[verify]` http check: a plain-HTTP URL, and `equals` only with the `field` it compares.
fn verify_http(path: &str, check: &raw::VerifyHttp, d: &mut Diagnostics) {
    http_url(&format!("{path}.url"), &check.url, d);
    if let Some(field) = &check.field {
        field_path(&format!("{path}.field"), field, d);
    }
    if check.equals.is_some() && check.field.is_none() {
        d.at(format!("{path}.equals"), "equals needs field = PATH, the JSON field it compares");
    }
}

/// One side of a parity check: exactly one source, `payload` only for NATS, a valid `field`.
fn parity_source(path: &str, src: &raw::ParitySource, has_nats: bool, d: &mut Diagnostics) {
    match (&src.http, &src.nats) {
        (Some(_), Some(_)) | (None, None) => d.at(path, "give one source: http = URL or nats = SUBJECT"),
        (Some(url), None) => http_url(&format!("{path}.http"), url, d),
        (None, Some(_)) if !has_nats => d.at(path, "a nats source needs a [nats] section"),
        (None, Some(_)) => {}
    }
    if src.payload.is_some() && src.nats.is_none() {
        d.at(format!("{path}.payload"), "payload is the body of a NATS request: it needs nats = SUBJECT");
    }
    if src.timeout.is_some() && src.nats.is_none() {
        d.at(format!("{path}.timeout"), "timeout bounds a NATS request: it needs nats = SUBJECT");
    }
    field_path(&format!("{path}.field"), &src.field, d);
}

/// Verify checks GET over plain HTTP only, like the health probe.
fn http_url(path: &str, url: &str, d: &mut Diagnostics) {
    if !url.starts_with("http://") {
        d.at(path, format!("invalid URL {url:?}: need http://host[:port]/path"));
    }
}

/// A JSON field path: names (or array indexes) separated by dots, none empty.
fn field_path(path: &str, field: &str, d: &mut Diagnostics) {
    if field.split('.').any(str::is_empty) {
        d.at(path, format!("invalid field {field:?}: need NAME[.NAME...], e.g. policy.hash or items.0.id"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_catch_typos_only() {
        let names = ["titan-brain", "titan-execution", "nats"];
        assert_eq!(suggest("titan-brian", names), Some("titan-brain"));
        assert_eq!(suggest("nast", names), Some("nats"));
        assert_eq!(suggest("postgres", names), None);
    }

    #[test]
    fn names_are_restricted() {
        assert!(valid_name("titan-brain_2"));
        for bad in ["", "-x", "a.b", "a b", "ä", &"x".repeat(64)] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }
}
