//! The run-time compose keys: healthcheck, memory limits, restart policy, stopping, logging,
//! and the keys that only earn a note (labels, profiles, container_name).

use toml_edit::{Array, Table, Value, value};

use super::ComposeError;
use super::service::{Cx, inline};
use super::values;
use super::yaml::Yaml;

impl Cx<'_> {
    fn duration_of(&mut self, path: &str, node: &Yaml) -> Result<Option<String>, ComposeError> {
        let text = self.scalar_text(path, node)?;
        match values::duration(&text) {
            Ok(d) => Ok(Some(d)),
            Err(e) => {
                self.warn(path, &format!("{e}: ignored"));
                Ok(None)
            }
        }
    }

    fn scalar_text(&mut self, path: &str, node: &Yaml) -> Result<String, ComposeError> {
        match node.scalar() {
            Some(s) => self.literal(path, &s),
            None => Err(ComposeError::Value {
                file: self.file.clone(),
                path: path.to_owned(),
                message: format!("expected a string, found {}", node.kind()),
            }),
        }
    }

    pub(super) fn healthcheck(&mut self, p: &str, def: &Yaml, t: &mut Table) -> Result<(), ComposeError> {
        let Some(hc) = def.get("healthcheck") else { return Ok(()) };
        let hp = format!("{p}.healthcheck");
        if hc.get("disable") == Some(&Yaml::Bool(true)) {
            t.insert("health", value("none"));
            return Ok(());
        }
        let exec: Option<Vec<String>> = match hc.get("test") {
            Some(Yaml::Seq(items)) => {
                let words: Vec<String> = items.iter().filter_map(Yaml::scalar).collect();
                match words.split_first() {
                    Some((first, rest)) if first == "CMD" => Some(rest.to_vec()),
                    Some((first, rest)) if first == "CMD-SHELL" => Some(shell(&rest.join(" "))),
                    Some((first, _)) if first == "NONE" => None,
                    _ => {
                        return Err(
                            self.value_error(&format!("{hp}.test"), "must start with CMD, CMD-SHELL or NONE")
                        );
                    }
                }
            }
            Some(Yaml::Str(line)) => Some(shell(line)),
            Some(other) => {
                return Err(self.value_error(
                    &format!("{hp}.test"),
                    &format!("expected a list or string, found {}", other.kind()),
                ));
            }
            None => None,
        };
        let Some(exec) = exec
            .map(|e| {
                e.into_iter().map(|w| self.literal(&format!("{hp}.test"), &w)).collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
        else {
            t.insert("health", value("none"));
            return Ok(());
        };
        let mut pairs = vec![("exec", Value::from(Array::from_iter(exec)))];
        for key in ["interval", "timeout", "start_interval"] {
            if let Some(v) = hc.get(key) {
                if let Some(d) = self.duration_of(&format!("{hp}.{key}"), v)? {
                    pairs.push((key, Value::from(d)));
                }
            }
        }
        t.insert("health", inline(pairs));
        if let Some(Yaml::Int(n)) = hc.get("retries") {
            t.insert("unhealthy_after", value((*n).clamp(1, u32::MAX.into()) as i64));
        }
        if let Some(v) = hc.get("start_period") {
            if let Some(d) = self.duration_of(&format!("{hp}.start_period"), v)? {
                t.insert("startup_timeout", value(d));
            }
        }
        Ok(())
    }

    fn value_error(&self, path: &str, message: &str) -> ComposeError {
        ComposeError::Value { file: self.file.clone(), path: path.to_owned(), message: message.to_owned() }
    }

    pub(super) fn memory(&mut self, p: &str, def: &Yaml, t: &mut Table) -> Result<(), ComposeError> {
        let limits = def.get("deploy").and_then(|d| d.get("resources")).and_then(|r| r.get("limits"));
        if let Some(Yaml::Map(deploy)) = def.get("deploy") {
            for (key, _) in deploy.iter().filter(|(k, _)| k != "resources") {
                self.warn(&format!("{p}.deploy.{key}"), "not supported by services.toml: ignored");
            }
        }
        if let Some(Yaml::Map(l)) = limits {
            for (key, _) in l.iter().filter(|(k, _)| k != "memory") {
                self.warn(
                    &format!("{p}.deploy.resources.limits.{key}"),
                    "not supported by services.toml: ignored",
                );
            }
        }
        let found = [
            ("mem_limit", def.get("mem_limit")),
            ("deploy.resources.limits.memory", limits.and_then(|l| l.get("memory"))),
        ];
        for (key, node) in found {
            let Some(node) = node else { continue };
            let path = format!("{p}.{key}");
            let text = self.scalar_text(&path, node)?;
            match values::size(&text) {
                Ok(size) => {
                    t.insert("memory", value(size));
                }
                Err(e) => self.warn(&path, &format!("{e}: ignored")),
            }
        }
        Ok(())
    }

    pub(super) fn restart(&mut self, p: &str, def: &Yaml, t: &mut Table) -> Result<(), ComposeError> {
        let Some(node) = def.get("restart") else { return Ok(()) };
        let path = format!("{p}.restart");
        let text = self.scalar_text(&path, node)?;
        let (policy, max) = match text.split_once(':') {
            Some(("on-failure", n)) => ("on-failure", n.parse::<u32>().ok()),
            _ => match text.as_str() {
                "no" | "false" => ("never", None),
                "always" => ("always", None),
                "on-failure" => ("on-failure", None),
                "unless-stopped" => {
                    self.warn(&path, "unless-stopped becomes always: a service stopped with `stop` stays stopped until `start`");
                    ("always", None)
                }
                other => {
                    self.warn(&path, &format!("unknown policy {other:?}: ignored"));
                    return Ok(());
                }
            },
        };
        t.insert("restart", value(policy));
        if let Some(n) = max {
            t.insert("max_restarts", value(i64::from(n)));
        }
        Ok(())
    }

    pub(super) fn stopping(&mut self, p: &str, def: &Yaml, t: &mut Table) -> Result<(), ComposeError> {
        if let Some(node) = def.get("stop_signal") {
            let path = format!("{p}.stop_signal");
            let sig = self.scalar_text(&path, node)?;
            match sig.parse::<crate::config::units::Signal>() {
                Ok(_) => {
                    t.insert("stop_signal", value(sig));
                }
                Err(e) => self.warn(&path, &format!("{e}: ignored")),
            }
        }
        if let Some(node) = def.get("stop_grace_period") {
            if let Some(d) = self.duration_of(&format!("{p}.stop_grace_period"), node)? {
                t.insert("stop_timeout", value(d));
            }
        }
        Ok(())
    }

    pub(super) fn logging(&mut self, p: &str, def: &Yaml, t: &mut Table) -> Result<(), ComposeError> {
        let Some(logging) = def.get("logging") else { return Ok(()) };
        let lp = format!("{p}.logging");
        if let Some(driver) = logging.get("driver").and_then(Yaml::scalar) {
            if driver != "json-file" && driver != "local" {
                self.warn(
                    &format!("{lp}.driver"),
                    &format!("{driver:?}: the supervisor writes its own log files; ignored"),
                );
            }
        }
        let mut pairs = Vec::new();
        if let Some(Yaml::Map(options)) = logging.get("options") {
            for (key, node) in options {
                let path = format!("{lp}.options.{key}");
                let text = self.scalar_text(&path, node)?;
                match key.as_str() {
                    "max-size" => match values::size(&text) {
                        Ok(s) => pairs.push(("max_size", Value::from(s))),
                        Err(e) => self.warn(&path, &format!("{e}: ignored")),
                    },
                    "max-file" => match text.parse::<u32>() {
                        Ok(n) => pairs.push(("max_files", Value::from(i64::from(n)))),
                        Err(_) => self.warn(&path, &format!("{text:?} is not a count: ignored")),
                    },
                    _ => self.warn(&path, "not supported by services.toml: ignored"),
                }
            }
        }
        if !pairs.is_empty() {
            t.insert("logs", inline(pairs));
        }
        Ok(())
    }

    /// Keys with nothing to translate but worth a word.
    pub(super) fn notes(&mut self, p: &str, def: &Yaml) {
        let notes = [
            ("labels", "services.toml has no labels (containers get the supervisor's own): dropped"),
            ("profiles", "every service is imported whatever its profiles"),
            ("container_name", "containers are named <project>-<service>: dropped"),
        ];
        for (key, note) in notes {
            if def.get(key).is_some() {
                self.warn(&format!("{p}.{key}"), note);
            }
        }
    }
}

/// compose's CMD-SHELL: the command line run by `/bin/sh -c`.
fn shell(line: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), line.into()]
}
