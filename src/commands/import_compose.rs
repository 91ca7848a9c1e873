//! `titan-supervisor import-compose FILE [--digests F] [--env-file F] [--project NAME]`: a
//! docker compose file as a services.toml on stdout, every untranslated key warned on stderr.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::Exit;
use crate::cli::ImportComposeArgs;
use crate::import::compose::{self, Input, Vars};
use crate::import::read_bounded;

pub(crate) fn run(args: &ImportComposeArgs) -> Exit {
    super::print_import(convert(args))
}

fn convert(args: &ImportComposeArgs) -> anyhow::Result<crate::import::Output> {
    let text = read_bounded(&args.file, "compose file")?;
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

fn read_env(path: &Path) -> anyhow::Result<HashMap<String, String>> {
    let text = read_bounded(path, "KEY=VALUE file")?;
    crate::config::envfile::parse(&text)
        .map_err(|(line, why)| anyhow::anyhow!("{}:{line}: {why}", path.display()))
}

/// `{"service": "repo@sha256:..."}`, each checked to be a well-formed pinned reference.
fn read_digests(path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let text = read_bounded(path, "digests.json")?;
    let map: BTreeMap<String, String> = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a {{\"service\": \"image@sha256:...\"}} object", path.display()))?;
    for (service, image) in &map {
        if let Some(problem) = crate::config::resolve::image_problem(image, true) {
            bail!("{}: {service}: {problem}", path.display());
        }
    }
    Ok(map)
}
