//! `release create`: a release directory from a source config and CI's digests.json; prints
//! its path. Refusals (bad input) exit 2, failures to write exit 1.

use std::time::SystemTime;

use crate::cli::{ReleaseCommand, ReleaseCreateArgs};
use crate::release::{self, PASSWORD_VAR, Request};

use super::Exit;

pub(crate) fn run(command: &ReleaseCommand) -> Exit {
    match command {
        ReleaseCommand::Create(args) => create(args),
    }
}

fn create(args: &ReleaseCreateArgs) -> Exit {
    let password = match args.sign.as_ref().map(|_| std::env::var(PASSWORD_VAR)) {
        Some(Ok(password)) => Some(password),
        Some(Err(std::env::VarError::NotUnicode(_))) => {
            eprintln!("{PASSWORD_VAR} is not valid UTF-8");
            return Exit::Refused;
        }
        Some(Err(std::env::VarError::NotPresent)) | None => None,
    };
    let request = Request {
        config: &args.config,
        digests: &args.digests,
        sha: &args.sha,
        sign: args.sign.as_deref(),
        password: password.as_deref(),
        out: args.out.as_deref(),
        now: SystemTime::now(),
        env: &|name| std::env::var(name).ok(),
    };
    match release::create(&request) {
        Ok(dir) => {
            println!("{}", dir.display());
            Exit::Ok
        }
        Err(e) => {
            eprintln!("{e}");
            if e.is_refusal() { Exit::Refused } else { Exit::Failed }
        }
    }
}
