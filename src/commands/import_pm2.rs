//! `titan-supervisor import-pm2 FILE [--env NAME]`: a PM2 ecosystem file as a services.toml on
//! stdout, every untranslated key warned on stderr; bad input exits 2.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, bail};

use super::Exit;
use crate::cli::ImportPm2Args;
use crate::import::pm2::{self, Input};

pub(crate) fn run(args: &ImportPm2Args) -> Exit {
    match convert(args) {
        Ok(out) => {
            for w in &out.warnings {
                eprintln!("warning: {w}");
            }
            print!("{}", out.toml);
            Exit::Ok
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            Exit::Refused
        }
    }
}

fn convert(args: &ImportPm2Args) -> anyhow::Result<pm2::Output> {
    let text = read_text(&args.file)?;
    let file = args.file.display().to_string();
    let input = Input { file: &file, text: &text, env: args.env.as_deref() };
    Ok(pm2::convert(&input)?)
}

/// The file's text: refused past the config's own size bound, or when it is not UTF-8.
fn read_text(path: &Path) -> anyhow::Result<String> {
    let limit = crate::config::MAX_SIZE;
    let file = std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    if bytes.len() as u64 > limit {
        bail!("{}: larger than {} MiB: not a PM2 ecosystem file", path.display(), limit >> 20);
    }
    match String::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let line = e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1;
            bail!("{}:{line}: not UTF-8 text: not a PM2 ecosystem file (JSON or JavaScript)", path.display())
        }
    }
}
