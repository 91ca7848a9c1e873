//! `import-pm2`: a PM2 ecosystem file (JSON, or `module.exports = {...}` when it is plain data)
//! as a services.toml of native services. Every PM2 key is either translated or reported as a
//! warning naming the app and key; secrets are never written out (they become `${VAR}`).

mod app;
mod emit;
mod jsdata;
mod values;

use std::collections::HashSet;

use jsdata::{Data, Node};

/// How to get plain data when the file is code: JSON.stringify of what it exports.
const EXPORT_HINT: &str = "this importer reads plain data only: export the file's result as JSON with \
     `node -e \"console.log(JSON.stringify(require('./ecosystem.config.js')))\" > ecosystem.json`, \
     or write the apps as plain data (`pm2 ecosystem json` prints a JSON skeleton)";

/// What the converter reads.
pub(crate) struct Input<'a> {
    /// The file as named on the command line (messages, the header).
    pub(crate) file: &'a str,
    pub(crate) text: &'a str,
    /// `--env NAME`: `env_NAME` merged over `env`.
    pub(crate) env: Option<&'a str>,
}

/// The services.toml text and the warnings to print on stderr.
pub(crate) use super::Output;

/// Why the file cannot be converted at all; each names the file and, when known, the line.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Pm2Error {
    #[error("{file}:{line}:{col}: {message}{}", if *code { format!("; {EXPORT_HINT}") } else { String::new() })]
    Syntax { file: String, line: usize, col: usize, message: String, code: bool },
    #[error("{file}:{line}: {what}")]
    Shape { file: String, line: usize, what: String },
    #[error(
        "{file}:{line}: app {app:?}: the name is refused by services.toml (letters, digits, - and _, at most 63)"
    )]
    BadName { file: String, line: usize, app: String },
    #[error(
        "{file}:{line}: app \"supervisor\": the name is reserved for the supervisor's own log; rename the app"
    )]
    Reserved { file: String, line: usize },
    #[error("{file}:{line}: two apps are named {app:?}: services.toml needs one name per service")]
    Duplicate { file: String, line: usize, app: String },
    #[error("{file}:{line}: app {app:?}: {key}: {message}")]
    Value { file: String, line: usize, app: String, key: String, message: String },
}

/// Warnings as they are found, and the file they are about.
pub(crate) struct Notes {
    pub(crate) file: String,
    pub(crate) warnings: Vec<String>,
}

impl Notes {
    pub(crate) fn warn(&mut self, line: usize, app: &str, key: &str, message: &str) {
        self.warnings.push(format!("{}:{line}: app {app:?}: {key}: {message}", self.file));
    }

    pub(crate) fn value(&self, line: usize, app: &str, key: &str, message: String) -> Pm2Error {
        Pm2Error::Value { file: self.file.clone(), line, app: app.to_owned(), key: key.to_owned(), message }
    }

    pub(crate) fn shape(&self, line: usize, what: String) -> Pm2Error {
        Pm2Error::Shape { file: self.file.clone(), line, what }
    }
}

/// pm2-logrotate's settings that services.toml's `logs` can say.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Logs {
    pub(crate) max_size: Option<u64>,
    pub(crate) max_files: Option<u32>,
    pub(crate) compress: Option<bool>,
}

pub(crate) fn convert(input: &Input<'_>) -> Result<Output, Pm2Error> {
    let file = input.file.to_owned();
    let root = jsdata::parse(input.text).map_err(|e| Pm2Error::Syntax {
        file: file.clone(),
        line: e.line,
        col: e.col,
        message: e.message,
        code: e.code,
    })?;
    let mut notes = Notes { file, warnings: Vec::new() };
    let (apps, logs) = top_level(&root, &mut notes)?;
    let mut services: Vec<app::Service> = Vec::new();
    let mut names = HashSet::new();
    for (i, node) in apps.iter().enumerate() {
        let svc = app::convert(node, i, input.env, &mut notes)?;
        if !names.insert(svc.name.clone()) {
            return Err(Pm2Error::Duplicate { file: notes.file, line: node.line, app: svc.name });
        }
        services.push(svc);
    }
    let toml = emit::render(input.file, input.env, &logs, &services);
    Ok(Output { toml, warnings: notes.warnings })
}

/// The apps (`{ apps: [...] }` or a bare array) and pm2-logrotate's settings.
fn top_level<'a>(root: &'a Node, notes: &mut Notes) -> Result<(&'a [Node], Logs), Pm2Error> {
    let expected = "expected { apps: [...] } or an array of apps";
    let entries = match &root.data {
        Data::List(apps) => return Ok((apps, Logs::default())),
        Data::Map(entries) => entries,
        _ => return Err(notes.shape(root.line, format!("{expected}, not a single value"))),
    };
    let mut logs = Logs::default();
    for (key, value) in entries {
        match key.as_str() {
            "apps" => {}
            "pm2-logrotate" => logs = logrotate(value, notes)?,
            "module_conf" => match value.get("pm2-logrotate") {
                Some(conf) => logs = logrotate(conf, notes)?,
                None => {
                    top_warn(notes, value.line, key, "not imported: only pm2-logrotate's settings are read")
                }
            },
            "deploy" => {
                top_warn(notes, value.line, key, "not imported: deploy with `release create` and `switch`")
            }
            _ => top_warn(notes, value.line, key, "unknown top-level key: not imported"),
        }
    }
    match root.get("apps") {
        Some(Node { data: Data::List(apps), .. }) => Ok((apps, logs)),
        Some(other) => Err(notes.shape(other.line, "apps: expected an array of apps".into())),
        None => Err(notes.shape(root.line, format!("{expected}: there is no apps key"))),
    }
}

fn top_warn(notes: &mut Notes, line: usize, key: &str, message: &str) {
    notes.warnings.push(format!("{}:{line}: {key}: {message}", notes.file));
}

/// `"pm2-logrotate": { max_size, retain, compress, ... }` as `[defaults] logs`. PM2 module
/// settings are often strings (`"30"`, `"true"`), as `pm2 set` stores them.
fn logrotate(conf: &Node, notes: &mut Notes) -> Result<Logs, Pm2Error> {
    let Data::Map(entries) = &conf.data else {
        return Err(notes.shape(conf.line, "pm2-logrotate: expected an object".into()));
    };
    let mut logs = Logs::default();
    let bad = |notes: &Notes, n: &Node, key: &str, message: String| {
        notes.shape(n.line, format!("pm2-logrotate.{key}: {message}"))
    };
    for (key, v) in entries {
        match key.as_str() {
            "max_size" => match values::size(v) {
                Ok(b) if b >= 4096 => logs.max_size = Some(b),
                Ok(_) => return Err(bad(notes, v, key, "below services.toml's minimum of 4KiB".into())),
                Err(e) => return Err(bad(notes, v, key, e)),
            },
            "retain" => match values::count(v) {
                Ok(n) if n >= 1 => logs.max_files = Some(n),
                Ok(_) => return Err(bad(notes, v, key, "must keep at least 1 file".into())),
                Err(e) => return Err(bad(notes, v, key, e)),
            },
            "compress" => match &v.data {
                Data::Bool(b) => logs.compress = Some(*b),
                Data::Str(s) if s == "true" || s == "false" => logs.compress = Some(s == "true"),
                _ => return Err(bad(notes, v, key, "expected true or false".into())),
            },
            _ => {
                let message =
                    "not imported: the supervisor rotates by size (logs.max_size), keeping logs.max_files";
                top_warn(notes, v.line, &format!("pm2-logrotate.{key}"), message);
            }
        }
    }
    Ok(logs)
}

#[cfg(test)]
mod tests;
