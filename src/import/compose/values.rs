//! Compose's value syntaxes translated to services.toml's: shell-split commands, port specs,
//! volume specs, sizes (`512m`) and Go durations (`1m30s`). Pure functions; an `Err` is the
//! reason, which the caller turns into a warning naming the service and key.

use std::path::Path;

/// Splits a string command as compose does: words on whitespace, '' literal, "" with `\`
/// escapes, `\` escaping the next character outside quotes.
pub(crate) fn shell_split(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let (mut word, mut in_word) = (String::new(), false);
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(format!("unclosed ' in {text:?}")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some(c) => word.extend(['\\', c]),
                            None => return Err(format!("unclosed \" in {text:?}")),
                        },
                        Some(c) => word.push(c),
                        None => return Err(format!("unclosed \" in {text:?}")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.extend(chars.next());
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// A compose short port spec (`[ip:][host:]container[/proto]`, ranges allowed) as services.toml
/// ports, one per port of a range.
pub(crate) fn ports(spec: &str) -> Result<Vec<String>, String> {
    let (addr, proto) = match spec.rsplit_once('/') {
        Some((a, p @ ("tcp" | "udp"))) => (a, p),
        Some((_, p)) => return Err(format!("protocol {p:?} is not supported (tcp or udp)")),
        None => (spec, "tcp"),
    };
    let (ip, rest) = match addr.strip_prefix('[') {
        Some(v6) => {
            let (ip, rest) = v6.split_once("]:").ok_or("invalid IPv6 address")?;
            (Some(format!("[{ip}]")), rest)
        }
        None => match addr.matches(':').count() {
            2 => addr.split_once(':').map(|(ip, r)| (Some(ip.to_owned()), r)).ok_or("invalid port")?,
            _ => (None, addr),
        },
    };
    let Some((host, container)) = rest.split_once(':') else {
        return Err(
            "no host port: compose would publish an ephemeral one; services.toml needs host:container".into(),
        );
    };
    let (hosts, containers) = (range(host)?, range(container)?);
    if hosts.len() != containers.len() {
        return Err("the host and container ranges differ in length".into());
    }
    let suffix = if proto == "udp" { "/udp" } else { "" };
    let prefix = ip.filter(|ip| !ip.is_empty()).map(|ip| format!("{ip}:")).unwrap_or_default();
    Ok(hosts.iter().zip(&containers).map(|(h, c)| format!("{prefix}{h}:{c}{suffix}")).collect())
}

fn range(text: &str) -> Result<Vec<u16>, String> {
    let port = |s: &str| s.parse::<u16>().ok().filter(|&p| p > 0).ok_or(format!("invalid port {s:?}"));
    match text.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (port(a)?, port(b)?);
            if a > b {
                return Err(format!("invalid range {text:?}"));
            }
            Ok((a..=b).collect())
        }
        None => Ok(vec![port(text)?]),
    }
}

/// A compose short volume spec: `name:/path`, `./dir:/path`, with `:ro`/`:rw`. Relative bind
/// sources are made absolute against the compose file's directory, as compose does.
pub(crate) fn volume(spec: &str, dir: &Path) -> Result<(String, Vec<String>), String> {
    let mut parts = spec.splitn(3, ':');
    let (source, target) = match (parts.next(), parts.next()) {
        (Some(s), Some(t)) => (s, t),
        _ => return Err("an anonymous volume (no source) has no services.toml form".into()),
    };
    let mut dropped = Vec::new();
    let mut read_only = false;
    for mode in parts.next().unwrap_or_default().split(',').filter(|m| !m.is_empty()) {
        match mode {
            "ro" => read_only = true,
            "rw" => {}
            other => dropped.push(other.to_owned()),
        }
    }
    Ok((mount(source, target, read_only, dir)?, dropped))
}

/// `source:target[:ro]` in services.toml's syntax.
pub(crate) fn mount(source: &str, target: &str, read_only: bool, dir: &Path) -> Result<String, String> {
    let source = if source.starts_with('.') {
        dir.join(source.strip_prefix("./").unwrap_or(source)).display().to_string()
    } else if let Some(rel) = source.strip_prefix("~/") {
        let home = std::env::var("HOME").map_err(|_| "a ~ path and no $HOME".to_owned())?;
        format!("{home}/{rel}")
    } else {
        source.to_owned()
    };
    if source.is_empty() || source.contains(':') || !target.starts_with('/') || target.contains(':') {
        return Err(format!("{source:?}:{target:?} cannot be written as source:/path"));
    }
    Ok(if read_only { format!("{source}:{target}:ro") } else { format!("{source}:{target}") })
}

/// A docker size (`512m`, `1g`, `1.5G`, `1024`, `512mb`: binary units) as services.toml's.
pub(crate) fn size(text: &str) -> Result<String, String> {
    let t = text.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let t = t.strip_suffix('i').unwrap_or(t);
    let (num, shift) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 10),
        Some('m') => (&t[..t.len() - 1], 20),
        Some('g') => (&t[..t.len() - 1], 30),
        Some('t') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let n: f64 = num.trim().parse().map_err(|_| format!("invalid size {text:?}"))?;
    let bytes = n * (1u64 << shift) as f64;
    if !(bytes >= 1.0 && bytes < (1u64 << 62) as f64) {
        return Err(format!("invalid size {text:?}"));
    }
    let bytes = bytes as u64;
    let unit = [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")]
        .into_iter()
        .find(|(s, _)| bytes % (1u64 << s) == 0)
        .map(|(s, u)| format!("{}{u}", bytes >> s));
    Ok(unit.unwrap_or_else(|| format!("{bytes}B")))
}

/// A Go duration (`1m30s`, `10s`, `500ms`, `1.5s`) as services.toml's (`90s`, `500ms`).
pub(crate) fn duration(text: &str) -> Result<String, String> {
    let bad = || format!("invalid duration {text:?}");
    let mut rest = text.trim();
    let mut nanos = 0f64;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let n: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "" if n == 0.0 => 1.0,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        nanos += n * scale;
        rest = &rest[unit_len..];
    }
    let ms = (nanos / 1e6).ceil() as u64;
    Ok(if ms % 1000 == 0 { format!("{}s", ms / 1000) } else { format!("{ms}ms") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_split_like_a_shell() {
        assert_eq!(
            shell_split(r#"node dist/index.js --name "a b" 'c d' e\ f"#).unwrap(),
            ["node", "dist/index.js", "--name", "a b", "c d", "e f"]
        );
        assert_eq!(shell_split(r#"sh -c "echo \"hi\"""#).unwrap(), ["sh", "-c", "echo \"hi\""]);
        assert!(shell_split("echo 'unclosed").is_err());
    }

    #[test]
    fn ports_in_every_short_form() {
        assert_eq!(ports("8080:80").unwrap(), ["8080:80"]);
        assert_eq!(ports("127.0.0.1:8080:80").unwrap(), ["127.0.0.1:8080:80"]);
        assert_eq!(ports("9000-9002:9000-9002").unwrap(), ["9000:9000", "9001:9001", "9002:9002"]);
        assert_eq!(ports("53:53/udp").unwrap(), ["53:53/udp"]);
        assert_eq!(ports("[::1]:53:53").unwrap(), ["[::1]:53:53"]);
        assert!(ports("80").is_err());
        assert!(ports("9000-9001:80").is_err());
    }

    #[test]
    fn volumes_resolve_binds_against_the_compose_dir() {
        let dir = Path::new("/srv/app");
        assert_eq!(volume("data:/var/lib/x", dir).unwrap().0, "data:/var/lib/x");
        assert_eq!(volume("./conf:/etc/x:ro", dir).unwrap().0, "/srv/app/conf:/etc/x:ro");
        assert_eq!(volume("data:/x:ro,z", dir).unwrap().1, ["z"]);
        assert!(volume("/anonymous", dir).is_err());
    }

    #[test]
    fn sizes_and_durations_translate() {
        assert_eq!(size("512m").unwrap(), "512MiB");
        assert_eq!(size("1g").unwrap(), "1GiB");
        assert_eq!(size("1.5G").unwrap(), "1536MiB");
        assert_eq!(size("1000").unwrap(), "1000B");
        assert!(size("lots").is_err());
        assert_eq!(duration("1m30s").unwrap(), "90s");
        assert_eq!(duration("500ms").unwrap(), "500ms");
        assert_eq!(duration("1.5s").unwrap(), "1500ms");
        assert!(duration("10 parsecs").is_err());
    }
}
