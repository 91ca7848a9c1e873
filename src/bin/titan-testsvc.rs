//! The test service as a small binary of its own: the same code as `titan-supervisor
//! test-service`, without the supervisor linked in, so it execs and starts faster (fewer
//! pages, far fewer relocations). A leading `test-service` argument is accepted, so a command
//! line works with either binary.

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let skip = usize::from(args.first().is_some_and(|a| a == titan_supervisor::testsvc::SUBCOMMAND));
    titan_supervisor::testsvc::main(&args[skip..]);
}
