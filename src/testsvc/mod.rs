//! The test service: a tiny, fast-starting stand-in for a real service, run by tests, benchmarks
//! and the demo as `titan-supervisor test-service [OPTIONS]`. Synchronous std + nix only: it must
//! be running within about a millisecond, so no async runtime and no clap on its path.

/// The hidden subcommand that selects the test service; checked before anything else in `main`.
pub const SUBCOMMAND: &str = "test-service";

/// Runs the test service with the arguments after the subcommand; never returns.
pub fn main(_args: &[std::ffi::OsString]) -> ! {
    std::process::exit(0)
}
