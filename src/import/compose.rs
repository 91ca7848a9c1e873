//! `import-compose`: a docker compose file as a services.toml. Every compose key is either
//! translated or reported as a warning naming the service and key; nothing is dropped silently,
//! and no secret is ever written out (it stays a `${VAR}` reference for the env_file).

mod interp;
mod runtime_keys;
mod service;
mod values;
mod yaml;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use toml_edit::{DocumentMut, Item, Table, value};

pub(crate) use interp::Vars;
use yaml::Yaml;

/// What the converter reads: the compose text and everything it is interpolated with.
pub(crate) struct Input<'a> {
    /// The compose file as named on the command line (messages, the header).
    pub(crate) file: &'a Path,
    pub(crate) text: &'a str,
    /// The compose file's directory, absolute: relative bind mounts are resolved against it.
    pub(crate) dir: PathBuf,
    pub(crate) vars: Vars,
    /// `--digests`: service → `repo@sha256:...`, replacing the service's image.
    pub(crate) digests: BTreeMap<String, String>,
    /// `--project`, winning over compose's `name:`.
    pub(crate) project: Option<String>,
}

/// The services.toml text and the warnings to print on stderr.
pub(crate) use super::Output;

/// Why the file cannot be converted at all.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ComposeError {
    #[error("{file}: {message}")]
    Yaml { file: String, message: String },
    #[error("{file}: {what}")]
    Shape { file: String, what: String },
    #[error(
        "{file}: services.{service}: the name is refused by services.toml (letters, digits, - and _, at most 63)"
    )]
    BadName { file: String, service: String },
    #[error("{file}: {path}")]
    Interp {
        file: String,
        path: String,
        #[source]
        source: interp::InterpError,
    },
    #[error("{file}: services.{service}: neither image nor a usable build: a release needs an image")]
    NoImage { file: String, service: String },
    #[error("{file}: {path}: {message}")]
    Value { file: String, path: String, message: String },
    #[error("--digests names {service:?}, which is not a service of {file}")]
    UnknownDigest { file: String, service: String },
}

/// Top-level keys that only declare things services refer to by name.
const DECLARATIONS: &[&str] = &["networks", "volumes"];

pub(crate) fn convert(input: &Input<'_>) -> Result<Output, ComposeError> {
    let file = input.file.display().to_string();
    let root =
        yaml::parse(input.text).map_err(|message| ComposeError::Yaml { file: file.clone(), message })?;
    let Yaml::Map(top) = &root else {
        return Err(ComposeError::Shape {
            file,
            what: format!("the file is {}, not a compose mapping", root.kind()),
        });
    };
    let mut cx = service::Cx { file: file.clone(), input, warnings: Vec::new(), oneshots: BTreeSet::new() };
    for (key, _) in top {
        match key.as_str() {
            "services" | "name" | "version" => {}
            k if k.starts_with("x-") || DECLARATIONS.contains(&k) => {}
            other => cx.warn(other, "not supported by services.toml: ignored"),
        }
    }
    let Some(Yaml::Map(services)) = root.get("services") else {
        return Err(ComposeError::Shape { file, what: "no `services:` mapping".into() });
    };
    for name in input.digests.keys() {
        if !services.iter().any(|(s, _)| s == name) {
            return Err(ComposeError::UnknownDigest { file, service: name.clone() });
        }
    }
    let project = project_name(&mut cx, &root)?;
    let mut converted = Vec::new();
    for (name, def) in services {
        let declared = service::Declared {
            networks: root.get("networks"),
            volumes: root.get("volumes"),
            project: &project,
        };
        converted.push((name.clone(), cx.service(name, def, declared)?));
    }
    let toml = render(&cx, &project, converted);
    Ok(Output { toml, warnings: cx.warnings })
}

/// `--project`, else compose's `name:`, else the directory's name, sanitized as compose does.
fn project_name(cx: &mut service::Cx<'_>, root: &Yaml) -> Result<String, ComposeError> {
    if let Some(p) = &cx.input.project {
        return Ok(p.clone());
    }
    let named = root.get("name").and_then(Yaml::scalar);
    let raw = match named {
        Some(n) => cx.literal("name", &n)?,
        None => cx.input.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
    };
    let clean: String = raw
        .to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .skip_while(|c| !c.is_ascii_alphanumeric())
        .take(63)
        .collect();
    Ok(if clean.is_empty() { "compose".into() } else { clean })
}

/// Docker's stop timeout when compose says none.
const COMPOSE_STOP_GRACE: &str = "10s";

fn render(cx: &service::Cx<'_>, project: &str, services: Vec<(String, Table)>) -> String {
    let mut doc = DocumentMut::new();
    let mut sup = Table::new();
    sup.insert("project", value(project));
    doc.insert("supervisor", Item::Table(sup));
    // compose waits 10s before SIGKILL where stop_grace_period is not given; the supervisor's
    // own default is shorter, and a database killed early loses what it was flushing
    let mut defaults = Table::new();
    defaults.insert("stop_timeout", value(COMPOSE_STOP_GRACE));
    doc.insert("defaults", Item::Table(defaults));
    let mut all = Table::new();
    all.set_implicit(true);
    for (name, mut table) in services {
        if cx.oneshots.contains(&name) {
            table = service::as_oneshot(table);
        }
        all.insert(&name, Item::Table(table));
    }
    doc.insert("services", Item::Table(all));
    format!(
        "# Imported from {} by `titan-supervisor import-compose`.\n# Review the warnings it printed; secrets stay ${{VAR}} references for [supervisor] env_file.\n\n{doc}",
        cx.file
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn convert_text(text: &str) -> Result<Output, ComposeError> {
        let vars = Vars { process: HashMap::from([("TAG".into(), "7".into())]), file: HashMap::new() };
        let input = Input {
            file: Path::new("compose.yml"),
            text,
            dir: PathBuf::from("/srv/My App"),
            vars,
            digests: BTreeMap::new(),
            project: None,
        };
        convert(&input)
    }

    #[test]
    fn services_keep_the_file_order_and_project_comes_from_the_directory() {
        let out = convert_text("services:\n  web: {image: \"nginx:${TAG}\"}\n  api: {image: api}\n").unwrap();
        let web = out.toml.find("[services.web]").unwrap();
        let api = out.toml.find("[services.api]").unwrap();
        assert!(web < api, "{}", out.toml);
        assert!(out.toml.contains("image = \"nginx:7\""), "{}", out.toml);
        assert!(out.toml.contains("project = \"myapp\""), "{}", out.toml);
    }

    #[test]
    fn an_imported_service_without_stop_grace_period_keeps_composes_10s() {
        let out =
            convert_text("services:\n  db: {image: postgres}\n  web: {image: a, stop_grace_period: 3s}\n")
                .unwrap();
        let doc: toml::Table = out.toml.parse().unwrap();
        assert_eq!(doc["defaults"]["stop_timeout"].as_str(), Some("10s"), "{}", out.toml);
        assert_eq!(doc["services"]["web"]["stop_timeout"].as_str(), Some("3s"), "{}", out.toml);
    }

    #[test]
    fn unknown_keys_warn_with_service_and_key() {
        let out = convert_text(
            "services:\n  web:\n    image: a\n    cap_add: [NET_ADMIN]\n    x-note: ok\nfoo: 1\n",
        )
        .unwrap();
        assert!(out.warnings.iter().any(|w| w.contains("services.web.cap_add")), "{:?}", out.warnings);
        assert!(out.warnings.iter().any(|w| w.contains("compose.yml: foo")), "{:?}", out.warnings);
        assert!(!out.warnings.iter().any(|w| w.contains("x-note")), "{:?}", out.warnings);
    }

    #[test]
    fn bad_names_and_missing_images_are_errors() {
        assert!(matches!(
            convert_text("services:\n  web.1: {image: a}\n"),
            Err(ComposeError::BadName { .. })
        ));
        assert!(matches!(convert_text("services:\n  web: {build: .}\n"), Err(ComposeError::NoImage { .. })));
        assert!(matches!(convert_text("- a\n"), Err(ComposeError::Shape { .. })));
    }
}
