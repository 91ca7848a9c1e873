//! Commands that talk to the running daemon over its control socket: `status`, `start`,
//! `stop`, `restart`. Exit 3 when the daemon cannot be reached, 2 for an unknown service or a
//! refused request, 1 when the operation ran and the service failed.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use hyper::{Method, StatusCode};

use super::{Exit, default_config, table};
use crate::cli::StatusArgs;
use crate::config;
use crate::control::client::{self, ClientError};
use crate::control::proto::{ErrorBody, Outcome, StateKind, Status, Verb};

/// `--socket` / `TITAN_SUPERVISOR_SOCKET`, else `[supervisor] socket` of the default config,
/// else SPEC's default.
pub(crate) fn socket_path(given: Option<&Path>) -> PathBuf {
    if let Some(p) = given {
        return p.to_owned();
    }
    match config::load_supervisor(&default_config(None)) {
        Ok((sup, _)) => sup.socket,
        Err(_) => config::raw::Supervisor::default().socket,
    }
}

pub(super) fn call(socket: &Path, method: Method, path: &str) -> Result<(StatusCode, Vec<u8>), Exit> {
    client::request(socket, method, path).map_err(failed)
}

/// Reports a client error and gives its exit code: 3 when the daemon cannot be reached.
pub(super) fn failed(e: ClientError) -> Exit {
    eprintln!("{e}");
    match e {
        ClientError::Unreachable { .. } => Exit::Unreachable,
        ClientError::Protocol { .. } => Exit::Failed,
    }
}

/// Prints the daemon's error body and maps its status to an exit code.
pub(super) fn refused(status: StatusCode, body: &[u8]) -> Exit {
    let msg = serde_json::from_slice::<ErrorBody>(body)
        .map(|e| e.error)
        .unwrap_or_else(|_| String::from_utf8_lossy(body).into_owned());
    eprintln!("titan-supervisor: {msg} ({status})");
    match status {
        StatusCode::NOT_FOUND | StatusCode::FORBIDDEN | StatusCode::CONFLICT => Exit::Refused,
        _ => Exit::Failed,
    }
}

pub(crate) fn status(socket: Option<&Path>, args: &StatusArgs) -> Exit {
    let socket = socket_path(socket);
    let (code, body) = match call(&socket, Method::GET, "/v1/status") {
        Ok(r) => r,
        Err(exit) => return exit,
    };
    if code != StatusCode::OK {
        return refused(code, &body);
    }
    if args.json {
        println!("{}", String::from_utf8_lossy(&body));
        return Exit::Ok;
    }
    let Ok(status) = serde_json::from_slice::<Status>(&body) else {
        eprintln!("titan-supervisor: the daemon's status is not what this CLI understands");
        return Exit::Failed;
    };
    print!("{}", table::render(&status.services, std::io::stdout().is_terminal()));
    Exit::Ok
}

pub(crate) fn act(socket: Option<&Path>, service: &str, verb: Verb) -> Exit {
    let socket = socket_path(socket);
    let path = format!("/v1/services/{service}/{}", verb.as_str());
    let (code, body) = match call(&socket, Method::POST, &path) {
        Ok(r) => r,
        Err(exit) => return exit,
    };
    if code != StatusCode::OK {
        return refused(code, &body);
    }
    let Ok(outcome) = serde_json::from_slice::<Outcome>(&body) else {
        eprintln!("titan-supervisor: unexpected answer: {}", String::from_utf8_lossy(&body));
        return Exit::Failed;
    };
    let reason = outcome.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
    println!("{}: {}{reason}", outcome.service, outcome.state);
    if verb.wanted(outcome.state) { Exit::Ok } else { Exit::Failed }
}

pub(crate) fn events(socket: Option<&Path>) -> Exit {
    let socket = socket_path(socket);
    let mut out = std::io::stdout().lock();
    match client::follow(&socket, "/v1/events", &mut out) {
        Ok((StatusCode::OK, _)) => Exit::Ok,
        Ok((code, reason)) => refused(code, &reason),
        Err(e) => failed(e),
    }
}

pub(crate) fn reload(socket: Option<&Path>) -> Exit {
    let socket = socket_path(socket);
    let (code, body) = match call(&socket, Method::POST, "/v1/reload") {
        Ok(r) => r,
        Err(exit) => return exit,
    };
    if code != StatusCode::OK {
        let msg = serde_json::from_slice::<ErrorBody>(&body).map(|e| e.error).unwrap_or_default();
        eprintln!("{}", msg.trim_end());
        eprintln!("titan-supervisor: reload refused, nothing changed");
        return Exit::Refused;
    }
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let list = |k: &str| {
        v[k].as_array()
            .map(|a| a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(", "))
            .unwrap_or_default()
    };
    println!(
        "reloaded: added [{}], removed [{}], changed [{}], {} unchanged",
        list("added"),
        list("removed"),
        list("changed"),
        v["unchanged"].as_u64().unwrap_or(0)
    );
    Exit::Ok
}

/// Asks the daemon to re-execute itself, then waits until the new process answers with every
/// service settled.
pub(crate) fn upgrade(socket: Option<&Path>) -> Exit {
    let socket = socket_path(socket);
    let (code, body) = match call(&socket, Method::POST, "/v1/upgrade") {
        Ok(r) => r,
        Err(exit) => return exit,
    };
    if code != StatusCode::ACCEPTED {
        refused(code, &body);
        return Exit::Refused; // whatever the reason, nothing was upgraded
    }
    eprintln!("upgrading: the new binary runs; services that are up keep running");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    // the old process goes away, then the new one answers: wait for a status with nothing
    // pending or starting
    std::thread::sleep(std::time::Duration::from_millis(50));
    while std::time::Instant::now() < deadline {
        if let Ok((StatusCode::OK, body)) = client::request(&socket, Method::GET, "/v1/status") {
            let settled = serde_json::from_slice::<Status>(&body).is_ok_and(|s| {
                s.services.iter().all(|s| !matches!(s.state, StateKind::Pending | StateKind::Starting))
            });
            if settled {
                println!("upgraded: the daemon runs its new binary and every service is settled");
                return Exit::Ok;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    eprintln!("titan-supervisor: the upgraded daemon did not settle within 120s");
    Exit::Failed
}
