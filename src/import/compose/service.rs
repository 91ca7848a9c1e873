//! One compose service as one `[services.X]` table, key by key, in a stable order; what has
//! no services.toml form becomes a warning naming the service and key.

use std::collections::BTreeSet;

use toml_edit::{Array, InlineTable, Item, Table, Value, value};

use super::interp::{self, Target, looks_secret};
use super::values;
use super::yaml::Yaml;
use super::{ComposeError, Input};

/// The conversion's state: where warnings go, which services dependents need to have exited.
pub(crate) struct Cx<'a> {
    pub(crate) file: String,
    pub(crate) input: &'a Input<'a>,
    pub(crate) warnings: Vec<String>,
    /// Services something depends on with `condition: service_completed_successfully`.
    pub(crate) oneshots: BTreeSet<String>,
}

/// Keys handled below; anything else is warned about.
const HANDLED: &[&str] = &[
    "image",
    "build",
    "command",
    "entrypoint",
    "working_dir",
    "user",
    "environment",
    "env_file",
    "ports",
    "expose",
    "volumes",
    "networks",
    "depends_on",
    "healthcheck",
    "mem_limit",
    "deploy",
    "restart",
    "stop_signal",
    "stop_grace_period",
    "logging",
    "init",
    "labels",
    "profiles",
    "container_name",
];

/// The top-level `networks:` and `volumes:`, which may give what a service names its real name,
/// and the project, which prefixes the others as compose does.
#[derive(Clone, Copy)]
pub(crate) struct Declared<'y> {
    pub(crate) networks: Option<&'y Yaml>,
    pub(crate) volumes: Option<&'y Yaml>,
    pub(crate) project: &'y str,
}

impl Declared<'_> {
    /// The name Docker knows a network or volume `key` by under compose: the `name:` of its
    /// declaration (returned raw, for interpolation), else the key itself when it is
    /// `external`, else `<project>_<key>`. The supervisor uses names as they are, so an
    /// imported stack mounts the volumes compose filled, not new empty ones.
    fn real_name(&self, section: Option<&Yaml>, key: &str) -> RealName {
        let decl = section.and_then(|v| v.get(key));
        if let Some(name) = decl.and_then(|v| v.get("name")).and_then(Yaml::scalar) {
            return RealName::Declared(name);
        }
        match decl.and_then(|v| v.get("external")) {
            Some(Yaml::Bool(true)) => RealName::Given(key.to_owned()),
            _ => RealName::Given(format!("{}_{key}", self.project)),
        }
    }
}

/// What `Declared::real_name` found.
enum RealName {
    /// A declaration's `name:`, still to be interpolated.
    Declared(String),
    /// The name as Docker knows it.
    Given(String),
}

impl Cx<'_> {
    pub(crate) fn warn(&mut self, path: &str, message: &str) {
        self.warnings.push(format!("{}: {path}: {message}", self.file));
    }

    fn interp(&mut self, path: &str, text: &str, target: Target) -> Result<String, ComposeError> {
        let out = interp::interpolate(text, &self.input.vars, target).map_err(|source| {
            ComposeError::Interp { file: self.file.clone(), path: path.to_owned(), source }
        })?;
        for name in &out.secrets {
            let msg =
                format!("${{{name}}} looks secret: left as a reference; put {name} in [supervisor] env_file");
            self.warn(path, &msg);
        }
        Ok(out.text)
    }

    /// Text for a key services.toml takes as written.
    pub(crate) fn literal(&mut self, path: &str, text: &str) -> Result<String, ComposeError> {
        self.interp(path, text, Target::Literal)
    }

    fn scalar(&mut self, path: &str, node: &Yaml, target: Target) -> Result<String, ComposeError> {
        let text = node
            .scalar()
            .ok_or_else(|| self.bad(path, format!("expected a string, found {}", node.kind())))?;
        self.interp(path, &text, target)
    }

    fn bad(&self, path: &str, message: String) -> ComposeError {
        ComposeError::Value { file: self.file.clone(), path: path.to_owned(), message }
    }

    /// A string or list of strings (`command`, `healthcheck.test`), list items interpolated.
    fn words(&mut self, path: &str, node: &Yaml, target: Target) -> Result<Vec<String>, ComposeError> {
        match node {
            Yaml::Seq(items) => items
                .iter()
                .enumerate()
                .map(|(i, it)| self.scalar(&format!("{path}[{i}]"), it, target))
                .collect(),
            _ => {
                let text = self.scalar(path, node, Target::Literal)?;
                let words = values::shell_split(&text).map_err(|e| self.bad(path, e))?;
                Ok(match target {
                    Target::Interpolated => words.into_iter().map(|w| w.replace('$', "$$")).collect(),
                    Target::Literal => words,
                })
            }
        }
    }

    pub(crate) fn service(
        &mut self,
        name: &str,
        def: &Yaml,
        declared: Declared<'_>,
    ) -> Result<Table, ComposeError> {
        if !crate::config::validate::valid_name(name) {
            return Err(ComposeError::BadName { file: self.file.clone(), service: name.to_owned() });
        }
        let p = format!("services.{name}");
        let Yaml::Map(keys) = def else {
            return Err(self.bad(&p, format!("a service must be a mapping, found {}", def.kind())));
        };
        for (key, _) in keys {
            if !HANDLED.contains(&key.as_str()) && !key.starts_with("x-") {
                self.warn(&format!("{p}.{key}"), "not supported by services.toml: ignored");
            }
        }
        let mut t = Table::new();
        self.depends_on(&p, def, &mut t)?;
        self.image(name, &p, def, &mut t)?;
        self.command(&p, def, &mut t)?;
        self.simple(&p, def, &mut t)?;
        self.environment(&p, def, &mut t)?;
        self.ports(&p, def, &mut t)?;
        self.volumes(&p, def, declared, &mut t)?;
        self.network(&p, def, declared, &mut t)?;
        self.healthcheck(&p, def, &mut t)?;
        self.memory(&p, def, &mut t)?;
        self.restart(&p, def, &mut t)?;
        self.stopping(&p, def, &mut t)?;
        self.logging(&p, def, &mut t)?;
        self.notes(&p, def);
        Ok(t)
    }

    fn image(&mut self, name: &str, p: &str, def: &Yaml, t: &mut Table) -> Result<(), ComposeError> {
        let image = match (self.input.digests.get(name), def.get("image")) {
            (Some(pinned), _) => Some(pinned.clone()),
            (None, Some(img)) => Some(self.scalar(&format!("{p}.image"), img, Target::Literal)?),
            (None, None) => None,
        };
        if def.get("build").is_some() {
            self.warn(&format!("{p}.build"), "not built by the supervisor: a release needs a pushed image");
        }
        let image =
            image.ok_or_else(|| ComposeError::NoImage { file: self.file.clone(), service: name.into() })?;
        t.insert("image", value(image));
        Ok(())
    }

    fn command(&mut self, p: &str, def: &Yaml, t: &mut Table) -> Result<(), ComposeError> {
        if let Some(ep) = def.get("entrypoint") {
            let words = self.words(&format!("{p}.entrypoint"), ep, Target::Literal)?;
            let msg = format!(
                "services.toml cannot override an image's entrypoint: {words:?} dropped; bake it into the image"
            );
            self.warn(&format!("{p}.entrypoint"), &msg);
        }
        if let Some(cmd) = def.get("command") {
            let args = self.words(&format!("{p}.command"), cmd, Target::Interpolated)?;
            t.insert("args", value(Array::from_iter(args)));
        }
        Ok(())
    }

    /// Keys that map one to one: working_dir, user, init.
    fn simple(&mut self, p: &str, def: &Yaml, t: &mut Table) -> Result<(), ComposeError> {
        for (from, to) in [("working_dir", "cwd"), ("user", "user")] {
            if let Some(v) = def.get(from) {
                let text = self.scalar(&format!("{p}.{from}"), v, Target::Literal)?;
                t.insert(to, value(text));
            }
        }
        match def.get("init") {
            Some(Yaml::Bool(b)) => {
                t.insert("init", value(*b));
            }
            Some(other) => self.warn(
                &format!("{p}.init"),
                &format!("expected true or false, found {}: ignored", other.kind()),
            ),
            None => {}
        }
        Ok(())
    }

    fn environment(&mut self, p: &str, def: &Yaml, t: &mut Table) -> Result<(), ComposeError> {
        if let Some(files) = def.get("env_file") {
            let list = match files {
                Yaml::Seq(items) => {
                    items.iter().filter_map(|i| i.scalar().or_else(|| i.get("path")?.scalar())).collect()
                }
                other => other.scalar().into_iter().collect::<Vec<_>>(),
            };
            let msg = format!(
                "{} not read: the supervisor takes variables from [supervisor] env_file; merge them there",
                list.join(", ")
            );
            self.warn(&format!("{p}.env_file"), &msg);
        }
        let Some(env) = def.get("environment") else { return Ok(()) };
        let pairs: Vec<(String, Option<Yaml>)> = match env {
            Yaml::Map(entries) => {
                entries.iter().map(|(k, v)| (k.clone(), (*v != Yaml::Null).then(|| v.clone()))).collect()
            }
            Yaml::Seq(items) => items
                .iter()
                .filter_map(Yaml::scalar)
                .map(|s| match s.split_once('=') {
                    Some((k, v)) => (k.to_owned(), Some(Yaml::Str(v.to_owned()))),
                    None => (s, None),
                })
                .collect(),
            other => {
                return Err(self.bad(
                    &format!("{p}.environment"),
                    format!("expected a list or mapping, found {}", other.kind()),
                ));
            }
        };
        let mut table = InlineTable::new();
        for (key, val) in pairs {
            let path = format!("{p}.environment.{key}");
            let text = match val {
                // `KEY` alone passes the caller's variable through: the supervisor's own `${KEY}`
                None => format!("${{{key}}}"),
                Some(v) => self.scalar(&path, &v, Target::Interpolated)?,
            };
            let literal_secret = looks_secret(&key) && !text.is_empty() && !text.contains("${");
            let text = if literal_secret {
                self.warn(
                    &path,
                    &format!(
                        "looks secret: its value is not written out; put {key} in [supervisor] env_file"
                    ),
                );
                format!("${{{key}}}")
            } else {
                text
            };
            table.insert(&key, Value::from(text));
        }
        t.insert("env", value(table));
        Ok(())
    }

    fn ports(&mut self, p: &str, def: &Yaml, t: &mut Table) -> Result<(), ComposeError> {
        if def.get("expose").is_some() {
            self.warn(
                &format!("{p}.expose"),
                "nothing to publish: containers on a network reach each other anyway; ignored",
            );
        }
        let Some(Yaml::Seq(items)) = def.get("ports") else { return Ok(()) };
        let mut out = Array::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("{p}.ports[{i}]");
            let spec = match item {
                Yaml::Map(_) => self.long_port(&path, item)?,
                _ => self.scalar(&path, item, Target::Literal)?,
            };
            match values::ports(&spec) {
                Ok(list) => list.into_iter().for_each(|s| out.push(s)),
                Err(e) => self.warn(&path, &format!("{spec:?}: {e}: ignored")),
            }
        }
        t.insert("ports", value(out));
        Ok(())
    }

    /// `{target, published, host_ip, protocol}` as the short syntax.
    fn long_port(&mut self, path: &str, item: &Yaml) -> Result<String, ComposeError> {
        let mut field = |k: &str| {
            item.get(k).map(|v| self.scalar(&format!("{path}.{k}"), v, Target::Literal)).transpose()
        };
        let target = field("target")?.unwrap_or_default();
        let published = field("published")?.unwrap_or_default();
        let ip =
            field("host_ip")?.map(|ip| if ip.contains(':') { format!("[{ip}]:") } else { format!("{ip}:") });
        let proto = field("protocol")?.map(|p| format!("/{p}")).unwrap_or_default();
        let host = if published.is_empty() { String::new() } else { format!("{published}:") };
        Ok(format!("{}{host}{target}{proto}", ip.unwrap_or_default()))
    }

    fn volumes(
        &mut self,
        p: &str,
        def: &Yaml,
        declared: Declared<'_>,
        t: &mut Table,
    ) -> Result<(), ComposeError> {
        let Some(Yaml::Seq(items)) = def.get("volumes") else { return Ok(()) };
        let mut out = Array::new();
        let dir = self.input.dir.clone();
        for (i, item) in items.iter().enumerate() {
            let path = format!("{p}.volumes[{i}]");
            let converted = match item {
                Yaml::Map(_) => self.long_volume(&path, item)?,
                _ => {
                    let spec = self.scalar(&path, item, Target::Literal)?;
                    values::volume(&spec, &dir).map(|(v, dropped)| {
                        if !dropped.is_empty() {
                            self.warn(
                                &path,
                                &format!("options {dropped:?} have no services.toml form: dropped"),
                            );
                        }
                        v
                    })
                }
            };
            match converted {
                Ok(v) => out.push(self.declared_volume(v, declared)?),
                Err(e) => self.warn(&path, &format!("{e}: ignored")),
            }
        }
        t.insert("volumes", value(out));
        Ok(())
    }

    /// A named volume's mount with the volume's real name (`Declared::real_name`). Bind mounts
    /// are already absolute paths here.
    fn declared_volume(&mut self, mount: String, declared: Declared<'_>) -> Result<String, ComposeError> {
        let Some((key, rest)) = mount.split_once(':') else { return Ok(mount) };
        if key.starts_with('/') {
            return Ok(mount);
        }
        let path = format!("volumes.{key}.name");
        let real = match declared.real_name(declared.volumes, key) {
            RealName::Declared(raw) => self.literal(&path, &raw)?,
            RealName::Given(name) => name,
        };
        if real.is_empty() || real.contains([':', '/']) {
            let msg = format!("{real:?} cannot be a volume name in services.toml: {key} kept");
            self.warn(&path, &msg);
            return Ok(mount);
        }
        Ok(format!("{real}:{rest}"))
    }

    fn long_volume(&mut self, path: &str, item: &Yaml) -> Result<Result<String, String>, ComposeError> {
        let kind = item.get("type").and_then(Yaml::scalar).unwrap_or_else(|| "volume".into());
        if kind != "volume" && kind != "bind" {
            return Ok(Err(format!("type {kind:?} is not supported by services.toml")));
        }
        let mut field = |k: &str| {
            item.get(k).map(|v| self.scalar(&format!("{path}.{k}"), v, Target::Literal)).transpose()
        };
        let (source, target) = (field("source")?.unwrap_or_default(), field("target")?.unwrap_or_default());
        let read_only = item.get("read_only") == Some(&Yaml::Bool(true));
        Ok(values::mount(&source, &target, read_only, &self.input.dir))
    }

    fn network(
        &mut self,
        p: &str,
        def: &Yaml,
        declared: Declared<'_>,
        t: &mut Table,
    ) -> Result<(), ComposeError> {
        if def.get("network_mode").is_some() {
            self.warn(&format!("{p}.network_mode"), "not supported by services.toml: ignored");
        }
        let names: Vec<String> = match def.get("networks") {
            Some(Yaml::Seq(items)) => items.iter().filter_map(Yaml::scalar).collect(),
            Some(Yaml::Map(entries)) => entries.iter().map(|(k, _)| k.clone()).collect(),
            _ => return Ok(()),
        };
        let Some(first) = names.first() else { return Ok(()) };
        if names.len() > 1 {
            self.warn(
                &format!("{p}.networks"),
                &format!("one network per service in services.toml: {first} kept, {:?} dropped", &names[1..]),
            );
        }
        let real = match declared.real_name(declared.networks, first) {
            RealName::Declared(raw) => self.literal(&format!("networks.{first}.name"), &raw)?,
            RealName::Given(name) => name,
        };
        t.insert("network", value(real));
        Ok(())
    }

    fn depends_on(&mut self, p: &str, def: &Yaml, t: &mut Table) -> Result<(), ComposeError> {
        let deps: Vec<(String, Option<String>)> = match def.get("depends_on") {
            Some(Yaml::Seq(items)) => items.iter().filter_map(Yaml::scalar).map(|d| (d, None)).collect(),
            Some(Yaml::Map(entries)) => {
                entries.iter().map(|(k, v)| (k.clone(), v.get("condition").and_then(Yaml::scalar))).collect()
            }
            _ => return Ok(()),
        };
        let mut out = Array::new();
        for (dep, condition) in deps {
            match condition.as_deref() {
                None | Some("service_started") => {
                    let msg =
                        format!("{dep}: the supervisor waits for it to be ready (healthy), not just started");
                    self.warn(&format!("{p}.depends_on"), &msg);
                }
                Some("service_healthy") => {}
                Some("service_completed_successfully") => {
                    self.oneshots.insert(dep.clone());
                }
                Some(other) => self.warn(
                    &format!("{p}.depends_on.{dep}"),
                    &format!("unknown condition {other:?}: treated as service_healthy"),
                ),
            }
            out.push(dep);
        }
        t.insert("depends_on", value(out));
        Ok(())
    }
}

/// `kind = "oneshot"` first, and no health check (a oneshot is ready when it exits 0).
pub(crate) fn as_oneshot(table: Table) -> Table {
    let mut out = Table::new();
    out.insert("kind", value("oneshot"));
    for (k, v) in table.iter() {
        if k != "health" && k != "unhealthy_after" {
            out.insert(k, v.clone());
        }
    }
    out
}

/// `Item` for an inline table built from pairs, for health and logs.
pub(crate) fn inline(pairs: Vec<(&str, Value)>) -> Item {
    let mut t = InlineTable::new();
    for (k, v) in pairs {
        t.insert(k, v);
    }
    value(t)
}
