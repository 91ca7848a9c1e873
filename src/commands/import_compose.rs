//! `titan-supervisor import-compose FILE [--digests F] [--env-file F] [--project NAME]`: a
//! docker compose file as a services.toml on stdout, every untranslated key warned on stderr.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::Exit;
use crate::cli::ImportComposeArgs;
use crate::import::compose::{self, Input, Vars};

pub(crate) fn run(args: &ImportComposeArgs) -> Exit {
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

fn convert(args: &ImportComposeArgs) -> anyhow::Result<compose::Output> {
    let text = read_bounded(&args.file)?;
    let absolute = std::path::absolute(&args.file).with_context(|| format!("{}", args.file.display()))?;
    let dir = absolute.parent().map(Path::to_owned).unwrap_or_else(|| PathBuf::from("/"));
    let env_file = args.env_file.clone().unwrap_or_else(|| dir.join(".env"));
    let file_vars = match (read_env(&env_file), &args.env_file) {
        (Ok(vars), _) => vars,
        (Err(_), None) if !env_file.exists() => HashMap::new(),
        (Err(e), _) => return Err(e),
    };
    let vars = Vars { process: std::env::vars().collect(), file: file_vars };
    let digests = match &args.digests {
        Some(path) => read_digests(path)?,
        None => BTreeMap::new(),
    };
    let input = Input { file: &args.file, text: &text, dir, vars, digests, project: args.project.clone() };
    Ok(compose::convert(&input)?)
}

/// The file's text, refused past the config's own size bound.
fn read_bounded(path: &Path) -> anyhow::Result<String> {
    let limit = crate::config::MAX_SIZE;
    let file = std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut text = String::new();
    file.take(limit + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    if text.len() as u64 > limit {
        bail!("{}: larger than {} MiB: not a compose file", path.display(), limit >> 20);
    }
    Ok(text)
}

fn read_env(path: &Path) -> anyhow::Result<HashMap<String, String>> {
    let text = read_bounded(path)?;
    crate::config::envfile::parse(&text)
        .map_err(|(line, why)| anyhow::anyhow!("{}:{line}: {why}", path.display()))
}

/// `{"service": "repo@sha256:..."}`, each checked to be a well-formed pinned reference.
fn read_digests(path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let text = read_bounded(path)?;
    let map: BTreeMap<String, String> = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a {{\"service\": \"image@sha256:...\"}} object", path.display()))?;
    for (service, image) in &map {
        if let Some(problem) = crate::config::resolve::image_problem(image, true) {
            bail!("{}: {service}: {problem}", path.display());
        }
    }
    Ok(map)
}
