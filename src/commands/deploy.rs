//! `switch`, `rollback` and `releases`: the CLI side of deploys. The daemon runs them; the
//! CLI prints each step live as its line arrives (or passes the lines through with `--json`)
//! and exits with the outcome: 0 verified, 1 rolled back or failed, 2 refused.

use std::io::Write;
use std::path::Path;

use hyper::{Method, StatusCode};
use serde_json::Value;

use super::Exit;
use super::ops::{call, failed, refused, socket_path};
use crate::cli::{ReleasesArgs, RollbackArgs, SwitchArgs};
use crate::control::client;

pub(crate) fn switch(socket: Option<&Path>, args: &SwitchArgs) -> Exit {
    let body = serde_json::json!({ "release": args.release, "no_disarm": args.no_disarm });
    deploy(socket, "/v1/switch", &body, args.json)
}

pub(crate) fn rollback(socket: Option<&Path>, args: &RollbackArgs) -> Exit {
    let body = serde_json::json!({ "release": args.release });
    deploy(socket, "/v1/rollback", &body, args.json)
}

fn deploy(socket: Option<&Path>, path: &str, body: &Value, json: bool) -> Exit {
    let socket = socket_path(socket);
    let mut out = Lines { json, partial: Vec::new(), outcome: None };
    match client::follow_request(&socket, Method::POST, path, Some(body.to_string().into_bytes()), &mut out) {
        Ok((StatusCode::OK, _)) => {}
        Ok((status, reason)) => return refused(status, &reason),
        Err(e) => return failed(e),
    }
    match out.outcome.as_deref() {
        Some("verified") => Exit::Ok,
        Some("refused") => Exit::Refused,
        Some(_) => Exit::Failed,
        None => {
            eprintln!("titan-supervisor: the daemon ended the deploy's stream without an outcome");
            Exit::Failed
        }
    }
}

/// The progress stream, line by line as it arrives.
struct Lines {
    json: bool,
    partial: Vec<u8>,
    /// The outcome, once its line has come.
    outcome: Option<String>,
}

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.partial.extend_from_slice(buf);
        while let Some(at) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=at).collect();
            self.line(&line)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().flush()
    }
}

impl Lines {
    fn line(&mut self, line: &[u8]) -> std::io::Result<()> {
        let mut stdout = std::io::stdout().lock();
        let v: Value = serde_json::from_slice(line).unwrap_or(Value::Null);
        if let Some(outcome) = v["outcome"].as_str() {
            self.outcome = Some(outcome.to_owned());
        }
        if self.json {
            return stdout.write_all(line);
        }
        match (v["step"].as_str(), v["outcome"].as_str()) {
            (Some(_), _) if v["status"] == "started" => Ok(()),
            (Some(step), _) => {
                let detail = v["detail"].as_str().map(|d| format!("  {d}")).unwrap_or_default();
                let result = v["result"].as_str().unwrap_or("?");
                writeln!(stdout, "  {step:<16} {result:<8} {:>6} ms{detail}", v["ms"].as_u64().unwrap_or(0))
            }
            (None, Some(outcome)) => {
                let release = v["release"].as_str().unwrap_or("-");
                let reason = v["reason"].as_str().map(|r| format!(": {r}")).unwrap_or_default();
                writeln!(stdout, "{outcome} {release}{reason}")?;
                match v["evidence"].as_str() {
                    Some(e) => writeln!(stdout, "evidence: {e}"),
                    None => Ok(()),
                }
            }
            _ => stdout.write_all(line),
        }
    }
}

pub(crate) fn releases(socket: Option<&Path>, args: &ReleasesArgs) -> Exit {
    let socket = socket_path(socket);
    let (status, body) = match call(&socket, Method::GET, "/v1/releases") {
        Ok(r) => r,
        Err(exit) => return exit,
    };
    if status != StatusCode::OK {
        return refused(status, &body);
    }
    if args.json {
        println!("{}", String::from_utf8_lossy(&body));
        return Exit::Ok;
    }
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    println!("{:<32} {:<8} {:<6} {:<16} BAD", "RELEASE", "CURRENT", "LKG", "LAST OUTCOME");
    for r in v["releases"].as_array().into_iter().flatten() {
        let mark = |k: &str| if r[k] == true { "*" } else { "" };
        println!(
            "{:<32} {:<8} {:<6} {:<16} {}",
            r["id"].as_str().unwrap_or("?"),
            mark("current"),
            mark("last_known_good"),
            r["last_outcome"].as_str().unwrap_or("-"),
            r["bad"].as_str().unwrap_or("")
        );
    }
    Exit::Ok
}
