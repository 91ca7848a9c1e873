//! PM2's value syntaxes read into services.toml's: milliseconds and `ms`-style strings into
//! durations, `200M`/`1G` into sizes, argument strings split as a shell splits simple words,
//! and the text forms services.toml writes them in. Errors are plain sentences; the caller
//! names the file, app and key.

use std::time::Duration;

use super::jsdata::{Data, Node};

/// A number or a string of digits as milliseconds, or a string such as `"10s"`.
pub(crate) fn duration(node: &Node) -> Result<Duration, String> {
    let d = ms_or_text(node)?;
    if d > crate::config::units::Duration::MAX.0 {
        return Err(format!("{} is longer than 100 years", duration_text(d)));
    }
    Ok(d)
}

fn ms_or_text(node: &Node) -> Result<Duration, String> {
    match &node.data {
        Data::Num(n) => whole(*n).map(Duration::from_millis),
        Data::Str(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse::<u64>().map(Duration::from_millis).map_err(|_| format!("{s:?} is too large"))
        }
        Data::Str(s) => s
            .parse::<crate::config::units::Duration>()
            .map(|d| d.0)
            .map_err(|e| format!("{e} (or milliseconds as a number)")),
        _ => Err("expected milliseconds as a number, or a string such as \"10s\"".into()),
    }
}

/// A non-negative whole number.
pub(crate) fn whole(n: f64) -> Result<u64, String> {
    if n >= 0.0 && n.fract() == 0.0 && n <= 2f64.powi(53) {
        Ok(n as u64)
    } else {
        Err(format!("expected a whole number of at least 0, not {n}"))
    }
}

/// A count such as `max_restarts`.
pub(crate) fn count(node: &Node) -> Result<u32, String> {
    match &node.data {
        Data::Num(n) => whole(*n).and_then(|n| u32::try_from(n).map_err(|_| format!("{n} is too large"))),
        Data::Str(s) => s.trim().parse::<u32>().map_err(|_| format!("expected a whole number, not {s:?}")),
        _ => Err("expected a whole number".into()),
    }
}

/// `max_memory_restart` and pm2-logrotate's `max_size`: bytes as a number, or a number with
/// PM2's binary units `K`, `M`, `G` (an optional trailing `B` is accepted).
pub(crate) fn size(node: &Node) -> Result<u64, String> {
    let text = match &node.data {
        Data::Num(n) => return whole(*n),
        Data::Str(s) => s.trim(),
        _ => return Err("expected a size such as \"200M\" or a number of bytes".into()),
    };
    let bad = || format!("invalid size {text:?}: write e.g. \"512K\", \"200M\", \"1G\" or a number of bytes");
    let lower = text.to_ascii_lowercase();
    let digits = lower.strip_suffix('b').unwrap_or(&lower);
    let (number, unit) = match digits.as_bytes().last() {
        Some(b'k') => (&digits[..digits.len() - 1], 1u64 << 10),
        Some(b'm') => (&digits[..digits.len() - 1], 1 << 20),
        Some(b'g') => (&digits[..digits.len() - 1], 1 << 30),
        _ => (digits, 1),
    };
    let n: f64 = number.trim().parse().map_err(|_| bad())?;
    if !n.is_finite() || n < 0.0 || n * unit as f64 > 2f64.powi(62) {
        return Err(bad());
    }
    Ok((n * unit as f64) as u64)
}

/// A size in services.toml's syntax, exact: `200MiB`, `1GiB`, else bytes (`1000B`).
pub(crate) fn size_text(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    match UNITS.iter().find(|(n, _)| bytes >= *n && bytes % n == 0) {
        Some((n, unit)) => format!("{}{unit}", bytes / n),
        None => format!("{bytes}B"),
    }
}

/// A duration in services.toml's syntax, exact: `30s`, `1600ms`, else humantime's form.
pub(crate) fn duration_text(d: Duration) -> String {
    if d.subsec_nanos() % 1_000_000 != 0 {
        return humantime::format_duration(d).to_string().replace(' ', "");
    }
    let ms = d.as_millis();
    if ms % 1000 == 0 { format!("{}s", ms / 1000) } else { format!("{ms}ms") }
}

/// A string, number or boolean as environment text.
pub(crate) fn scalar_text(node: &Node) -> Option<String> {
    match &node.data {
        Data::Str(s) => Some(s.clone()),
        Data::Num(n) if n.fract() == 0.0 && n.abs() < 1e15 => Some(format!("{}", *n as i64)),
        Data::Num(n) => Some(n.to_string()),
        Data::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `args`/`interpreter_args`: an array of strings (or numbers), or one string split into words.
pub(crate) fn words(node: &Node) -> Result<Vec<String>, String> {
    match &node.data {
        Data::Str(s) => split(s),
        Data::List(items) => items
            .iter()
            .map(|n| match &n.data {
                Data::List(_) | Data::Map(_) | Data::Null => Err("expected strings in the array".to_owned()),
                _ => scalar_text(n).ok_or_else(|| "expected strings in the array".to_owned()),
            })
            .collect(),
        _ => Err("expected a string or an array of strings".into()),
    }
}

/// Splits as a shell splits simple words: blanks separate, single quotes are literal, double
/// quotes and backslashes escape. Nothing is expanded.
pub(crate) fn split(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => words.extend(word.take()),
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err(format!("unclosed ' in {text:?}")),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => w.push(c),
                            Some(c) => w.extend(['\\', c]),
                            None => return Err(format!("unclosed \" in {text:?}")),
                        },
                        Some(c) => w.push(c),
                        None => return Err(format!("unclosed \" in {text:?}")),
                    }
                }
            }
            '\\' => word.get_or_insert_with(String::new).extend(chars.next()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(n: f64) -> Node {
        Node { line: 1, data: Data::Num(n) }
    }

    fn text(s: &str) -> Node {
        Node { line: 1, data: Data::Str(s.into()) }
    }

    #[test]
    fn pm2_sizes_are_binary_and_come_out_exact() {
        let cases = [
            ("200M", "200MiB"),
            ("1G", "1GiB"),
            ("512K", "512KiB"),
            ("600mb", "600MiB"),
            ("1.5G", "1536MiB"),
        ];
        for (pm2, toml) in cases {
            assert_eq!(size(&text(pm2)).map(size_text).as_deref(), Ok(toml), "{pm2}");
        }
        assert_eq!(size(&num(1_000_000.0)).map(size_text).as_deref(), Ok("1000000B"));
        assert_eq!(size(&text("1048576")).map(size_text).as_deref(), Ok("1MiB"));
        for bad in ["", "M", "12X", "-1M", "1e400M"] {
            assert!(size(&text(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_are_milliseconds_or_ms_strings() {
        assert_eq!(duration(&num(1600.0)).map(duration_text).as_deref(), Ok("1600ms"));
        assert_eq!(duration(&num(3000.0)).map(duration_text).as_deref(), Ok("3s"));
        assert_eq!(duration(&text("10s")).map(duration_text).as_deref(), Ok("10s"));
        assert_eq!(duration(&text("250")).map(duration_text).as_deref(), Ok("250ms"));
        for bad in [num(-1.0), num(1.5), num(9e15), text("soon"), Node { line: 1, data: Data::Bool(true) }] {
            assert!(duration(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn argument_strings_split_like_simple_shell_words() {
        let got = split(r#"--port 3000  --name 'my app' --msg "say \"hi\"" a\ b"#).unwrap();
        assert_eq!(got, ["--port", "3000", "--name", "my app", "--msg", "say \"hi\"", "a b"]);
        assert_eq!(split("''").unwrap(), [""]);
        assert!(split("'open").is_err());
        assert!(split("\"open").is_err());
    }
}
