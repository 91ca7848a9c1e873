//! `titan-supervisor import-pm2 FILE [--env NAME]`: a PM2 ecosystem file as a services.toml on
//! stdout, every untranslated key warned on stderr; bad input exits 2.

use super::Exit;
use crate::cli::ImportPm2Args;
use crate::import::pm2::{self, Input};

pub(crate) fn run(args: &ImportPm2Args) -> Exit {
    super::print_import(convert(args))
}

fn convert(args: &ImportPm2Args) -> anyhow::Result<crate::import::Output> {
    let text = crate::import::read_bounded(&args.file, "PM2 ecosystem file (JSON or JavaScript)")?;
    let file = args.file.display().to_string();
    let input = Input { file: &file, text: &text, env: args.env.as_deref() };
    Ok(pm2::convert(&input)?)
}
