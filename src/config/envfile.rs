//! The env_file: `KEY=VALUE` secrets for interpolation. Refused unless it is a regular file (not
//! a link, not a FIFO that would hang the read) owned by the supervisor's user and readable by
//! nobody else (mode 0600 or 0400) — checked on the descriptor it is then read from, so nothing
//! can be swapped in between. Errors name the file and line, never a value.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::interp::is_var_name;

#[derive(Debug, thiserror::Error)]
pub enum EnvFileError {
    #[error("cannot read env_file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("env_file {path} has mode {mode:04o}; it must be 0600 or 0400 (chmod 600 {path})")]
    Mode { path: PathBuf, mode: u32 },
    #[error("env_file {path} is owned by uid {owner}, not by the supervisor's uid {me}")]
    Owner { path: PathBuf, owner: u32, me: u32 },
    #[error("env_file {path} is a symbolic link: name the file itself")]
    Link { path: PathBuf },
    #[error("env_file {path} is not a regular file")]
    NotAFile { path: PathBuf },
    #[error("env_file {path} is over {MAX_SIZE} bytes")]
    TooLarge { path: PathBuf },
    #[error("env_file {path}:{line}: {problem}")]
    Syntax { path: PathBuf, line: usize, problem: &'static str },
}

/// An env file of secrets is small; anything larger is not one.
const MAX_SIZE: u64 = 1 << 20;

/// Reads and checks the env file at `path`; `me` is the uid that must own it.
pub fn read(path: &Path, me: u32) -> Result<HashMap<String, String>, EnvFileError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let read_err = |source| EnvFileError::Read { path: path.to_owned(), source };
    // no link followed, and a FIFO opens without waiting for a writer (then is refused)
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path);
    let file = match opened {
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            return Err(EnvFileError::Link { path: path.to_owned() });
        }
        other => other.map_err(read_err)?,
    };
    let meta = file.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(EnvFileError::NotAFile { path: path.to_owned() });
    }
    let mode = meta.mode() & 0o7777;
    if mode != 0o600 && mode != 0o400 {
        return Err(EnvFileError::Mode { path: path.to_owned(), mode });
    }
    if meta.uid() != me {
        return Err(EnvFileError::Owner { path: path.to_owned(), owner: meta.uid(), me });
    }
    let mut text = String::new();
    file.take(MAX_SIZE + 1).read_to_string(&mut text).map_err(read_err)?;
    if text.len() as u64 > MAX_SIZE {
        return Err(EnvFileError::TooLarge { path: path.to_owned() });
    }
    parse(&text).map_err(|(line, problem)| EnvFileError::Syntax { path: path.to_owned(), line, problem })
}

/// Parses `KEY=VALUE` lines: blank lines and `#` comments skipped, an optional `export `
/// prefix, values optionally in single (literal) or double quotes. Errors give the line number.
pub fn parse(text: &str) -> Result<HashMap<String, String>, (usize, &'static str)> {
    let mut vars = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (key, value) = line.split_once('=').ok_or((i + 1, "expected KEY=VALUE"))?;
        let key = key.trim();
        if !is_var_name(key) {
            return Err((i + 1, "invalid variable name before \"=\""));
        }
        vars.insert(key.to_owned(), unquote(value.trim()).ok_or((i + 1, "unterminated quote"))?);
    }
    Ok(vars)
}

fn unquote(v: &str) -> Option<String> {
    let quoted = |q: char| v.len() >= 2 && v.starts_with(q) && v.ends_with(q);
    match v.chars().next() {
        Some('\'') if quoted('\'') => Some(v[1..v.len() - 1].to_owned()),
        Some('"') if quoted('"') => Some(unescape(&v[1..v.len() - 1])),
        Some('\'' | '"') => None,
        _ => Some(v.to_owned()),
    }
}

fn unescape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn parses_the_usual_forms() {
        let vars = parse("# secrets\n\nA=1\nexport B = two words \nC='lit $X'\nD=\"q\\\"n\\n\"\nE=\nF=a=b\n")
            .unwrap();
        assert_eq!(vars["A"], "1");
        assert_eq!(vars["B"], "two words");
        assert_eq!(vars["C"], "lit $X");
        assert_eq!(vars["D"], "q\"n\n");
        assert_eq!(vars["E"], "");
        assert_eq!(vars["F"], "a=b");
    }

    #[test]
    fn syntax_errors_name_the_line() {
        assert_eq!(parse("A=1\nnot a pair\n"), Err((2, "expected KEY=VALUE")));
        assert_eq!(parse("1A=1\n"), Err((1, "invalid variable name before \"=\"")));
        assert_eq!(parse("A=\"open\n"), Err((1, "unterminated quote")));
    }

    #[test]
    fn an_env_file_that_is_a_link_or_a_fifo_is_refused_without_reading_it() {
        // regressions: a link was followed (and the file re-read by path after its checks),
        // and a FIFO hung `validate` (and would have frozen a reload)
        let dir = tempfile::tempdir().unwrap();
        let me = nix::unistd::geteuid().as_raw();
        let real = dir.path().join("real");
        std::fs::write(&real, "PW=hunter2\n").unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.path().join(".env.prod");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let e = read(&link, me).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("env_file {} is a symbolic link: name the file itself", link.display())
        );
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let e = read(&fifo, me).unwrap_err();
        assert_eq!(e.to_string(), format!("env_file {} is not a regular file", fifo.display()));
        assert!(read(dir.path(), me).is_err(), "a directory");
        assert_eq!(read(&real, me).unwrap()["PW"], "hunter2");
    }

    #[test]
    fn an_env_file_too_large_to_be_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env.prod");
        std::fs::write(&path, "A=1\n".repeat(300_000)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = read(&path, nix::unistd::geteuid().as_raw()).unwrap_err();
        assert!(matches!(e, EnvFileError::TooLarge { .. }), "{e}");
    }

    #[test]
    fn an_open_mode_is_refused_with_file_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env.prod");
        std::fs::write(&path, "PW=hunter2\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let me = nix::unistd::geteuid().as_raw();
        let err = read(&path, me).unwrap_err().to_string();
        assert!(err.contains(".env.prod") && err.contains("0644"), "{err}");
        assert!(!err.contains("hunter2"));

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read(&path, me).unwrap()["PW"], "hunter2");
        let err = read(&path, me + 1).unwrap_err().to_string();
        assert!(err.contains("owned by uid"), "{err}");
    }
}
