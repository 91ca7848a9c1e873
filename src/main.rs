//! Entry point: route the hidden test-service mode first (it must start in about a millisecond),
//! then parse the command line, dispatch to `commands`, and map errors to SPEC's exit codes.

use std::process::ExitCode;

use titan_supervisor::{cli, commands, testsvc};

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == testsvc::SUBCOMMAND) {
        testsvc::main(&args[2..]);
    }
    let cli = <cli::Cli as clap::Parser>::parse();
    commands::dispatch(cli)
}
