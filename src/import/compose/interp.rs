//! Compose's variable interpolation (`$VAR`, `${VAR}`, `${VAR:-d}`, `${VAR-d}`, `${VAR:?e}`,
//! `${VAR?e}`, `$$`), with one twist: a variable whose name looks secret is never expanded into
//! the output, it stays a `${VAR}` reference that services.toml resolves from its env_file.

use std::collections::HashMap;

/// Where an interpolated string goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// A services.toml key that interpolates itself (env, args): a literal `$` is written `$$`,
    /// a secret stays `${VAR}`.
    Interpolated,
    /// A key taken as written (image, ports, health): a secret stays `${VAR}` as plain text.
    Literal,
}

/// The variables compose would see: the process environment first, then the env file.
pub(crate) struct Vars {
    pub(crate) process: HashMap<String, String>,
    pub(crate) file: HashMap<String, String>,
}

impl Vars {
    fn get(&self, name: &str) -> Option<&str> {
        self.process.get(name).or_else(|| self.file.get(name)).map(String::as_str)
    }
}

/// What interpolation could not do.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum InterpError {
    #[error("required variable {name} is not set: {message}")]
    Required { name: String, message: String },
    #[error("unclosed \"${{\" (write \"$$\" for a literal \"$\")")]
    Unclosed,
    #[error("invalid variable name {0:?} in \"${{...}}\"")]
    BadName(String),
}

/// The result: the text, and the secret variables left as references.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Interpolated {
    pub(crate) text: String,
    pub(crate) secrets: Vec<String>,
}

/// Names compose users give secrets: PASSWORD, SECRET, TOKEN, KEY, PRIVATE, CREDENTIAL.
pub(crate) fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["PASSWORD", "SECRET", "TOKEN", "KEY", "PRIVATE", "CREDENTIAL"].iter().any(|w| upper.contains(w))
}

pub(crate) fn interpolate(text: &str, vars: &Vars, target: Target) -> Result<Interpolated, InterpError> {
    let mut out = Interpolated::default();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        push_literal(&mut out.text, &rest[..at], target);
        rest = &rest[at + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            push_literal(&mut out.text, "$", target);
            rest = r;
        } else if let Some(body) = rest.strip_prefix('{') {
            let close = body.find('}').ok_or(InterpError::Unclosed)?;
            substitute(&body[..close], vars, target, &mut out)?;
            rest = &body[close + 1..];
        } else {
            let len = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
            if len == 0 || rest.starts_with(|c: char| c.is_ascii_digit()) {
                push_literal(&mut out.text, "$", target); // a lone `$` is literal in compose
            } else {
                substitute(&rest[..len], vars, target, &mut out)?;
                rest = &rest[len..];
            }
        }
    }
    push_literal(&mut out.text, rest, target);
    Ok(out)
}

fn push_literal(out: &mut String, text: &str, target: Target) {
    match target {
        Target::Interpolated => out.push_str(&text.replace('$', "$$")),
        Target::Literal => out.push_str(text),
    }
}

/// One `${...}` body: `NAME`, `NAME:-d`, `NAME-d`, `NAME:?e`, `NAME?e`.
fn substitute(body: &str, vars: &Vars, target: Target, out: &mut Interpolated) -> Result<(), InterpError> {
    let split = body.find([':', '-', '?']).unwrap_or(body.len());
    let (name, op) = body.split_at(split);
    if !crate::config::interp::is_var_name(name) {
        return Err(InterpError::BadName(body.to_owned()));
    }
    let (unset_or_empty, operator, arg) = match op {
        "" => (false, "", ""),
        _ if op.starts_with(":-") => (true, "-", &op[2..]),
        _ if op.starts_with(":?") => (true, "?", &op[2..]),
        _ if op.starts_with('-') => (false, "-", &op[1..]),
        _ if op.starts_with('?') => (false, "?", &op[1..]),
        _ => return Err(InterpError::BadName(body.to_owned())),
    };
    let value = vars.get(name).filter(|v| !(unset_or_empty && v.is_empty()));
    if operator == "?" && value.is_none() {
        let message = if arg.is_empty() { "required".to_owned() } else { arg.to_owned() };
        return Err(InterpError::Required { name: name.to_owned(), message });
    }
    if looks_secret(name) {
        out.secrets.push(name.to_owned());
        out.text.push_str(&match (operator, target) {
            ("-", _) if !arg.is_empty() => format!("${{{name}:-{arg}}}"),
            _ => format!("${{{name}}}"),
        });
        return Ok(());
    }
    let chosen = match (value, operator) {
        (Some(v), _) => v,
        (None, "-") => arg,
        (None, _) => "", // compose: an unset variable is empty (with a warning of its own)
    };
    push_literal(&mut out.text, chosen, target);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        let process = HashMap::from([("HOME".into(), "/root".into()), ("EMPTY".into(), String::new())]);
        let file = HashMap::from([("TAG".into(), "1.2".into()), ("HOME".into(), "/file".into())]);
        Vars { process, file }
    }

    fn lit(text: &str) -> String {
        interpolate(text, &vars(), Target::Literal).unwrap().text
    }

    #[test]
    fn compose_forms_expand() {
        assert_eq!(lit("img:${TAG}"), "img:1.2");
        assert_eq!(lit("$HOME/x"), "/root/x", "the process environment wins over the env file");
        assert_eq!(lit("${NOPE:-d}|${EMPTY:-d}|${EMPTY-d}|${NOPE-d}"), "d|d||d");
        assert_eq!(lit("$$HOME costs $5 and $"), "$HOME costs $5 and $");
        assert_eq!(lit("${NOPE}"), "");
    }

    #[test]
    fn toml_targets_escape_dollars() {
        let out = interpolate("a$$b ${TAG}", &vars(), Target::Interpolated).unwrap();
        assert_eq!(out.text, "a$$b 1.2");
    }

    #[test]
    fn required_variables_are_named() {
        let err = interpolate("${DB_URL:?set DB_URL}", &vars(), Target::Literal).unwrap_err();
        assert_eq!(err, InterpError::Required { name: "DB_URL".into(), message: "set DB_URL".into() });
        assert!(interpolate("${EMPTY:?x}", &vars(), Target::Literal).is_err());
        assert!(interpolate("${EMPTY?x}", &vars(), Target::Literal).is_ok());
        assert_eq!(interpolate("${HOME", &vars(), Target::Literal), Err(InterpError::Unclosed));
    }

    #[test]
    fn secrets_stay_references() {
        let mut v = vars();
        v.process.insert("DB_PASSWORD".into(), "hunter2".into());
        let out = interpolate("pw=${DB_PASSWORD}", &v, Target::Interpolated).unwrap();
        assert_eq!(out.text, "pw=${DB_PASSWORD}");
        assert_eq!(out.secrets, ["DB_PASSWORD"]);
        let out = interpolate("${API_TOKEN:-dev}", &v, Target::Interpolated).unwrap();
        assert_eq!(out.text, "${API_TOKEN:-dev}");
        assert!(looks_secret("hmac_secret") && looks_secret("PrivateKey") && !looks_secret("HOME"));
    }
}
