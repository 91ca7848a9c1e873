//! The `field` of a verify check or parity source: a dotted path into a JSON body
//! (`policy.hash`, an array element by its index: `items.0.id`) and the text its value compares
//! as — a string as itself, anything else as its JSON text, so `42` equals `"42"`.

use serde_json::Value;

/// Why a body has no value at a field.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FieldError {
    #[error("body is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("no field {path} in the body")]
    Missing { path: String },
}

/// The text of the value at `path` in the JSON `body`. Never panics: serde_json refuses
/// garbage, numbers out of range and nesting deeper than its recursion limit with an error.
pub(crate) fn text_at(body: &[u8], path: &str) -> Result<String, FieldError> {
    let json: Value = serde_json::from_slice(body).map_err(FieldError::NotJson)?;
    lookup(&json, path).map(text).ok_or_else(|| FieldError::Missing { path: path.to_owned() })
}

/// The value at a dotted path: an object's member by name, an array's element by index.
fn lookup<'a>(json: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(json, |value, segment| match value {
        Value::Object(members) => members.get(segment),
        Value::Array(items) => items.get(index(segment)?),
        _ => None,
    })
}

/// An array index: decimal digits only (`usize::from_str` would also take `+0`).
fn index(segment: &str) -> Option<usize> {
    segment.bytes().all(|b| b.is_ascii_digit()).then(|| segment.parse().ok()).flatten()
}

/// A string as itself; a number, bool, null, array or object as its (compact) JSON text.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] =
        br#"{"policy":{"hash":"abc"},"items":[{"id":7},{"id":8}],"n":42,"ok":true,"none":null,"1":"one"}"#;

    fn at(path: &str) -> Result<String, String> {
        text_at(BODY, path).map_err(|e| e.to_string())
    }

    #[test]
    fn dotted_paths_reach_members_and_array_elements() {
        assert_eq!(at("policy.hash"), Ok("abc".into()));
        assert_eq!(at("items.0.id"), Ok("7".into()));
        assert_eq!(at("items.1.id"), Ok("8".into()));
        assert_eq!(at("1"), Ok("one".into()), "a numeric segment names an object member too");
    }

    #[test]
    fn values_compare_as_text() {
        assert_eq!(at("n"), Ok("42".into()));
        assert_eq!(at("ok"), Ok("true".into()));
        assert_eq!(at("none"), Ok("null".into()));
        assert_eq!(at("policy"), Ok(r#"{"hash":"abc"}"#.into()));
    }

    #[test]
    fn a_path_that_leads_nowhere_is_missing() {
        for path in ["policy.size", "items.2.id", "items.+0.id", "items.x", "n.0", "policy.hash.x"] {
            assert_eq!(at(path), Err(format!("no field {path} in the body")), "{path}");
        }
    }

    #[test]
    fn bodies_that_are_not_json_are_refused_without_panicking() {
        let deep = "[".repeat(100_000);
        for body in [&b"<html>"[..], b"", b"\xff\xfe", b"{\"a\":1e400}", deep.as_bytes(), b"{\"a\":"] {
            let error = text_at(body, "a").unwrap_err().to_string();
            assert!(error.starts_with("body is not JSON: "), "{error}");
        }
    }
}
