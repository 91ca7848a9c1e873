//! `${VAR}` / `${VAR:-default}` interpolation (`$$` is a literal `$`), and `Value`, the text it
//! produces: a value that took anything from the env_file is a secret and prints as `***`.

use std::collections::HashMap;
use std::fmt;

/// Interpolated text. `Display` and `Debug` show `***` for secrets; `expose` gives the real text
/// to the one place that needs it (building a service's environment or argv).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Value {
    text: String,
    secret: bool,
}

impl Value {
    pub fn plain(text: impl Into<String>) -> Self {
        Value { text: text.into(), secret: false }
    }

    pub fn expose(&self) -> &str {
        &self.text
    }

    pub fn is_secret(&self) -> bool {
        self.secret
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.secret { f.write_str("***") } else { f.write_str(&self.text) }
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.secret { f.write_str("\"***\"") } else { fmt::Debug::fmt(&self.text, f) }
    }
}

/// Where variables come from: the env_file (secrets) first, then the supervisor's environment.
pub struct Vars<'a> {
    pub file: HashMap<String, String>,
    pub process: &'a dyn Fn(&str) -> Option<String>,
}

impl Vars<'_> {
    fn lookup(&self, name: &str) -> Option<(String, bool)> {
        if let Some(v) = self.file.get(name) {
            return Some((v.clone(), true));
        }
        (self.process)(name).map(|v| (v, false))
    }
}

/// Why a string could not be interpolated. Messages name variables, never their values.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum InterpError {
    #[error(
        "undefined variable {0:?} (set it in the env_file or the supervisor's environment, or give a default: ${{{0}:-value}})"
    )]
    Undefined(String),
    #[error("unclosed \"${{\" (write \"$$\" for a literal \"$\")")]
    Unclosed,
    #[error("invalid variable name {0:?} in \"${{...}}\"")]
    BadName(String),
    #[error("\"$\" must start \"${{VAR}}\" or be doubled as \"$$\" for a literal \"$\"")]
    LoneDollar,
}

/// Interpolates `text`. Undefined variables without a default are errors; `${VAR:-d}` takes `d`
/// when VAR is unset or empty.
pub fn interpolate(text: &str, vars: &Vars<'_>) -> Result<Value, InterpError> {
    let mut out = String::with_capacity(text.len());
    let mut secret = false;
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
            continue;
        }
        let body_and_tail = rest.strip_prefix('{').ok_or(InterpError::LoneDollar)?;
        let close = body_and_tail.find('}').ok_or(InterpError::Unclosed)?;
        let (name, default) = match body_and_tail[..close].split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (&body_and_tail[..close], None),
        };
        if !is_var_name(name) {
            return Err(InterpError::BadName(name.to_owned()));
        }
        let found = vars.lookup(name).filter(|(v, _)| !(v.is_empty() && default.is_some()));
        match (found, default) {
            (Some((v, s)), _) => {
                out.push_str(&v);
                secret |= s;
            }
            (None, Some(d)) => out.push_str(d),
            (None, None) => return Err(InterpError::Undefined(name.to_owned())),
        }
        rest = &body_and_tail[close + 1..];
    }
    out.push_str(rest);
    Ok(Value { text: out, secret })
}

/// `[A-Za-z_][A-Za-z0-9_]*`, the names a shell and compose accept.
pub fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(process: &dyn Fn(&str) -> Option<String>) -> Vars<'_> {
        let file = HashMap::from([("SECRET".into(), "hunter2".into()), ("EMPTY".into(), "".into())]);
        Vars { file, process }
    }

    fn env(name: &str) -> Option<String> {
        (name == "HOME").then(|| "/root".into())
    }

    #[test]
    fn substitutes_escapes_and_defaults() {
        let v = vars(&env);
        assert_eq!(interpolate("a${HOME}b", &v).unwrap(), Value::plain("a/rootb"));
        assert_eq!(interpolate("$$HOME costs $$5", &v).unwrap(), Value::plain("$HOME costs $5"));
        assert_eq!(interpolate("${NOPE:-x:y}", &v).unwrap(), Value::plain("x:y"));
        assert_eq!(interpolate("${EMPTY:-fallback}", &v).unwrap(), Value::plain("fallback"));
        assert_eq!(interpolate("${HOME:-x}", &v).unwrap(), Value::plain("/root"));
    }

    #[test]
    fn env_file_values_are_secret_and_never_displayed() {
        let v = vars(&env);
        let value = interpolate("pw=${SECRET}", &v).unwrap();
        assert!(value.is_secret());
        assert_eq!(value.expose(), "pw=hunter2");
        assert_eq!(value.to_string(), "***");
        assert!(!format!("{value:?}").contains("hunter2"));
    }

    #[test]
    fn the_env_file_wins_over_the_environment() {
        let process = |n: &str| (n == "SECRET").then(|| "from-env".to_string());
        let v = vars(&process);
        assert_eq!(interpolate("${SECRET}", &v).unwrap().expose(), "hunter2");
    }

    #[test]
    fn mistakes_are_named() {
        let v = vars(&env);
        assert_eq!(interpolate("${MISSING}", &v), Err(InterpError::Undefined("MISSING".into())));
        assert_eq!(interpolate("${HOME", &v), Err(InterpError::Unclosed));
        assert_eq!(interpolate("$HOME", &v), Err(InterpError::LoneDollar));
        assert_eq!(interpolate("${1X}", &v), Err(InterpError::BadName("1X".into())));
        assert_eq!(interpolate("trailing $", &v), Err(InterpError::LoneDollar));
    }
}
