//! `titan-supervisor logs SERVICE [-n N] [-f] [--since DUR]`: a service's log from the files in
//! `log_dir`, across rotated and compressed files, following across rotations with `-f`.

use std::time::{Duration, SystemTime};

use super::{Exit, default_config};
use crate::cli::LogsArgs;
use crate::config;
use crate::logs::read::{self, Select};

/// How often `-f` looks for new lines.
const POLL: Duration = Duration::from_millis(100);

pub fn run(args: &LogsArgs) -> Exit {
    let path = default_config(args.config.as_deref());
    let (supervisor, services) = match config::load_supervisor(&path) {
        Ok(found) => found,
        Err(e) => {
            eprint!("{e}");
            return Exit::Refused;
        }
    };
    let dir = supervisor.log_dir.join(&args.service);
    if args.service != "supervisor" && !services.contains(&args.service) && !dir.is_dir() {
        eprintln!(
            "unknown service {:?} in {} (services: {})",
            args.service,
            path.display(),
            services.join(", ")
        );
        return Exit::Refused;
    }
    let last = args.lines.or(args.follow.then_some(10));
    let select = Select { last, since: args.since.map(|d| SystemTime::now() - d) };
    let mut out = std::io::stdout().lock();
    let offset = match read::print(&dir, &args.service, select, &mut out) {
        Ok(offset) => offset,
        Err(e) => {
            eprintln!("logs: {e}");
            return Exit::Failed;
        }
    };
    if args.follow {
        if let Err(e) = read::follow(&dir, offset, &mut out, POLL) {
            eprintln!("logs: {}: {e}", dir.join("current.log").display());
            return Exit::Failed;
        }
    }
    Exit::Ok
}
