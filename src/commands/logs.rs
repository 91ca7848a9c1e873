//! `titan-supervisor logs SERVICE [-n N] [-f] [--since DUR]`: a service's log through the
//! daemon when it runs (`/v1/logs`), else straight from the files in `log_dir` — across
//! rotated and compressed files, following across rotations with `-f`.

use std::path::Path;
use std::time::{Duration, SystemTime};

use hyper::StatusCode;

use super::{Exit, default_config};
use crate::cli::LogsArgs;
use crate::config;
use crate::control::client::{self, ClientError};
use crate::logs::read::{self, Select};

/// How often `-f` looks for new lines.
const POLL: Duration = Duration::from_millis(100);

pub(crate) fn run(socket: Option<&Path>, args: &LogsArgs) -> Exit {
    let path = default_config(args.config.as_deref());
    let found = config::load_supervisor(&path);
    let daemon = socket.map(Path::to_owned).or_else(|| found.as_ref().ok().map(|(s, _)| s.socket.clone()));
    if let Some(exit) = daemon.and_then(|socket| through_daemon(&socket, args)) {
        return exit;
    }
    let (supervisor, services) = match found {
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
    from_files(&dir, args)
}

fn last(args: &LogsArgs) -> Option<usize> {
    args.lines.or(args.follow.then_some(10))
}

/// `None` when the daemon is not there (the files are read instead).
fn through_daemon(socket: &Path, args: &LogsArgs) -> Option<Exit> {
    let mut query = Vec::new();
    if let Some(n) = last(args) {
        query.push(format!("tail={n}"));
    }
    if args.follow {
        query.push("follow=1".into());
    }
    if let Some(d) = args.since {
        query.push(format!("since_s={}", d.as_secs()));
    }
    let path = format!("/v1/logs/{}?{}", args.service, query.join("&"));
    let mut out = std::io::stdout().lock();
    match client::follow(socket, &path, &mut out) {
        Ok((StatusCode::OK, _)) => Some(Exit::Ok),
        Ok((StatusCode::NOT_FOUND, _)) => {
            eprintln!("unknown service {:?}", args.service);
            Some(Exit::Refused)
        }
        Ok((code, reason)) => Some(super::ops::refused(code, &reason)),
        Err(ClientError::Unreachable { .. }) => None,
        Err(e) => {
            eprintln!("{e}");
            Some(Exit::Failed)
        }
    }
}

fn from_files(dir: &Path, args: &LogsArgs) -> Exit {
    let since = match args.since {
        None => None,
        Some(d) => match SystemTime::now().checked_sub(d).filter(|t| *t >= SystemTime::UNIX_EPOCH) {
            Some(t) => Some(t),
            None => {
                eprintln!("logs: --since {} reaches back before 1970", humantime::format_duration(d));
                return Exit::Refused;
            }
        },
    };
    let select = Select { last: last(args), since };
    let mut out = std::io::stdout().lock();
    let cursor = match read::print(dir, &args.service, select, &mut out) {
        Ok(cursor) => cursor,
        Err(e) => {
            eprintln!("logs: {e}");
            return Exit::Failed;
        }
    };
    if args.follow {
        if let Err(e) = read::follow(dir, cursor, &mut out, POLL) {
            eprintln!("logs: {e}");
            return Exit::Failed;
        }
    }
    Exit::Ok
}
