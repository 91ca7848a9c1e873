//! Command-line types (clap derive) and nothing else: the logic lives in `commands`.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "titan-supervisor", version, about = "Single-host service supervisor for Titan")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a services.toml and report every problem at once (exit 0 valid, 2 invalid).
    Validate,
}
