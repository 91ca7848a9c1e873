//! The configured checks that verify a release (`[verify]`), run once, all at once, every
//! result kept: http GETs (`get`, with a JSON `field` compared by `field`), exec commands in a
//! container or on the host (`exec`) and parity between two sources (`parity`).

pub(crate) mod exec;
mod field;
mod get;
mod parity;
#[cfg(test)]
mod testing;

pub(crate) use parity::{Parity, Source, parity};

use std::collections::HashMap;
use std::time::Duration;

use futures_util::future::join_all;

use crate::config::{self, Verify, VerifyExec, VerifyHttp};
use parity::shown;

/// The result of one check, for the switch's progress lines and evidence.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub(crate) struct CheckResult {
    /// "http", "exec" or "parity".
    pub(crate) kind: &'static str,
    /// The URL, the command joined by spaces, or the parity's name.
    pub(crate) name: String,
    pub(crate) passed: bool,
    /// What was found: "200", "exit 0", "equal: abc", "differs: a=x b=y",
    /// "no answer from b (http://...): cannot connect to ...: connection refused", ...
    pub(crate) detail: String,
    /// A parity check's result, its three kinds kept apart (equal, differs, no answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) parity: Option<Parity>,
}

/// Runs `[verify]`'s checks. An exec check of a service in `containers` runs inside that
/// container through `docker`; one of a native service, or of no service, runs on the host,
/// in the supervisor's environment, killed when its timeout expires.
pub(crate) struct Checker {
    pub(crate) docker: Option<bollard::Docker>,
    /// Service name -> container name, for every container service.
    pub(crate) containers: HashMap<String, String>,
    /// The bound of each check on its own (a parity's two sides are fetched side by side).
    pub(crate) timeout: Duration,
}

impl Checker {
    /// Every check, concurrently; the results in config order (http, exec, parity), all of
    /// them, failed ones included.
    pub(crate) async fn run(&self, verify: &Verify) -> Vec<CheckResult> {
        let (http, exec, parity) = tokio::join!(
            join_all(verify.http.iter().map(|check| self.http(check))),
            join_all(verify.exec.iter().map(|check| self.exec(check))),
            join_all(verify.parity.iter().map(|check| self.parity(check))),
        );
        http.into_iter().chain(exec).chain(parity).collect()
    }

    async fn http(&self, check: &VerifyHttp) -> CheckResult {
        let (passed, detail) = match get::get(&check.url, self.timeout).await {
            Ok(answer) => judge(check, &answer),
            Err(e) => (false, e.to_string()),
        };
        CheckResult { kind: "http", name: check.url.clone(), passed, detail, parity: None }
    }

    async fn exec(&self, check: &VerifyExec) -> CheckResult {
        let service = check.service.as_deref();
        let container = service.and_then(|s| self.containers.get(s));
        let (passed, detail) = match (container, &self.docker) {
            (Some(container), Some(docker)) => {
                exec::in_container(docker, container, &check.command, self.timeout).await
            }
            (Some(container), None) => (false, format!("no Docker connection to exec in {container}")),
            (None, _) => exec::on_host(&check.command, self.timeout).await,
        };
        CheckResult { kind: "exec", name: check.command.join(" "), passed, detail, parity: None }
    }

    async fn parity(&self, check: &config::Parity) -> CheckResult {
        let result: Parity = parity(&Source::of(&check.a), &Source::of(&check.b), self.timeout).await;
        CheckResult {
            kind: "parity",
            name: check.name.clone(),
            passed: result.passed(),
            detail: result.detail(),
            parity: Some(result),
        }
    }
}

/// Whether an answer passes an http check: its status, then its `field` against `equals`.
/// The detail: "200", "200, policy.hash = abc", "status 503, want 200", "200, policy.hash =
/// abc, want xyz", "200, no field policy.hash in the body", "200, body is not JSON: ...".
fn judge(check: &VerifyHttp, answer: &get::Answer) -> (bool, String) {
    let status = answer.status;
    if status != check.status {
        return (false, format!("status {status}, want {}", check.status));
    }
    let Some(path) = &check.field else { return (true, status.to_string()) };
    match field::text_at(&answer.body, path) {
        Err(e) => (false, format!("{status}, {e}")),
        Ok(found) => match &check.equals {
            Some(want) if *want != found => {
                (false, format!("{status}, {path} = {}, want {}", shown(&found), shown(want)))
            }
            _ => (true, format!("{status}, {path} = {}", shown(&found))),
        },
    }
}

#[cfg(test)]
mod tests;
