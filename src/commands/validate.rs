//! `titan-supervisor validate [FILE] [--json] [--allow-unpinned]`: every problem at once, exit 0
//! or 2. `--allow-unpinned` checks a source config as `release create` does before pinning it.

use serde_json::json;

use super::{Exit, default_config};
use crate::cli::ValidateArgs;
use crate::config::{self, LoadError};

pub(crate) fn run(args: &ValidateArgs) -> Exit {
    let path = default_config(args.file.as_deref());
    let shown = path.display().to_string();
    let loaded = if args.allow_unpinned { crate::release::load_unpinned(&path) } else { config::load(&path) };
    match loaded {
        Ok(cfg) => {
            let layers = cfg.graph().map(|g| g.layers().len()).unwrap_or(0);
            if args.json {
                let out = json!({
                    "file": shown, "valid": true, "errors": [],
                    "services": cfg.services.len(), "groups": cfg.groups, "start_layers": layers,
                });
                println!("{out}");
            } else {
                println!("{shown}: valid: {} services, {} start layers", cfg.services.len(), layers);
            }
            Exit::Ok
        }
        Err(LoadError::Invalid(report)) => {
            if args.json {
                let out = json!({ "file": shown, "valid": false, "errors": report.items });
                println!("{out}");
            } else {
                eprint!("{report}");
                eprintln!("{shown}: invalid: {} problem(s)", report.items.len());
            }
            Exit::Refused
        }
        Err(e @ (LoadError::Read { .. } | LoadError::TooLarge { .. })) => {
            if args.json {
                let out = json!({ "file": shown, "valid": false, "errors": [{ "message": e.to_string() }] });
                println!("{out}");
            } else {
                eprintln!("{e}");
            }
            Exit::Refused
        }
    }
}
