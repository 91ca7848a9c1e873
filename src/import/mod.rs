//! Converters from other tools' configuration into a services.toml.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, bail};

pub(crate) mod compose;
pub(crate) mod pm2;

/// A converted file: the services.toml, and what could not be said in it.
#[derive(Debug)]
pub(crate) struct Output {
    pub(crate) toml: String,
    pub(crate) warnings: Vec<String>,
}

/// The text of `path` (a `what`: "compose file", ...), refused past the config's own size
/// bound, or where it is not UTF-8 (naming the line).
pub(crate) fn read_bounded(path: &Path, what: &str) -> anyhow::Result<String> {
    let limit = crate::config::MAX_SIZE;
    let file = std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    if bytes.len() as u64 > limit {
        bail!("{}: larger than {} MiB: not a {what}", path.display(), limit >> 20);
    }
    match String::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let line = e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1;
            bail!("{}:{line}: not UTF-8 text: not a {what}", path.display())
        }
    }
}
