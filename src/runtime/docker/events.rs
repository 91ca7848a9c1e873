//! The Docker events stream, filtered to the project's container deaths, OOM kills and signals: a
//! crashed container is known within milliseconds, with no polling and no inspect. When the stream breaks (dockerd restarted),
//! it is reopened from the last event seen and the loss is reported, so the actor can check
//! what died meanwhile.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::EventsOptions;
use futures_util::StreamExt;

use super::spec;

/// What the stream tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Notice {
    /// A container of the project stopped (`name` without Docker's leading `/`).
    Died { id: String, name: String, at_nanos: i64, exit_code: Option<i64> },
    /// The kernel's OOM killer struck in a container of the project (usually, not always,
    /// reported before its `die`).
    Oom { name: String, at_nanos: i64 },
    /// A signal was sent to a container of the project through Docker (`docker stop`,
    /// `docker kill`, or the supervisor's own stop).
    Killed { name: String, at_nanos: i64, signal: String },
    /// The stream broke: dockerd is unreachable.
    Lost(String),
    /// The stream is back after a loss (events in between may have been missed).
    Back,
}

/// Follows the project's `die` and `oom` events until `tell` reports that nobody listens.
///
/// The stream is read from the moment this is called, not from when dockerd first answers it:
/// a container that dies while the request is on its way is still reported.
pub(crate) async fn follow(host: String, mut docker: Docker, project: String, tell: impl Fn(Notice) -> bool) {
    let mut since = super::now_nanos();
    loop {
        let filters = HashMap::from([
            ("type".to_owned(), vec!["container".to_owned()]),
            ("event".to_owned(), vec!["die".to_owned(), "oom".to_owned(), "kill".to_owned()]),
            ("label".to_owned(), vec![format!("{}={project}", spec::LABEL_PROJECT)]),
        ]);
        let options = EventsOptions { since: Some(timestamp(since)), until: None, filters: Some(filters) };
        let mut stream = docker.events(Some(options));
        let error = loop {
            match stream.next().await {
                Some(Ok(event)) => {
                    since = event.time_nano.unwrap_or(since);
                    let actor = event.actor.unwrap_or_default();
                    let attributes = actor.attributes.unwrap_or_default();
                    let id = actor.id.unwrap_or_default();
                    let name = attributes.get("name").map_or("", |n| n.trim_start_matches('/')).to_owned();
                    let at_nanos = event.time_nano.unwrap_or(0);
                    let notice = match event.action.as_deref() {
                        Some("oom") => Notice::Oom { name, at_nanos },
                        Some("kill") => Notice::Killed {
                            name,
                            at_nanos,
                            signal: attributes.get("signal").cloned().unwrap_or_default(),
                        },
                        _ => Notice::Died {
                            id,
                            name,
                            at_nanos,
                            exit_code: attributes.get("exitCode").and_then(|c| c.parse().ok()),
                        },
                    };
                    if !tell(notice) {
                        return;
                    }
                }
                Some(Err(e)) => break e.to_string(),
                None => break "the events stream ended".to_owned(),
            }
        };
        if !tell(Notice::Lost(error)) {
            return;
        }
        docker = reconnect(&host).await;
        if !tell(Notice::Back) {
            return;
        }
    }
}

/// Docker's `since` for a time in nanoseconds since the epoch: `seconds.nanoseconds`.
fn timestamp(nanos: i64) -> String {
    format!("{}.{:09}", nanos / 1_000_000_000, nanos % 1_000_000_000)
}

/// Reconnects quietly (the loss was reported once), every 0.2 s doubling to 5 s.
async fn reconnect(host: &str) -> Docker {
    let mut delay = Duration::from_millis(200);
    loop {
        tokio::time::sleep(delay).await;
        if let Ok(docker) = super::connect(host).await
            && docker.ping().await.is_ok()
        {
            return docker;
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn since_is_seconds_dot_nanoseconds() {
        assert_eq!(super::timestamp(1_700_000_000_000_000_123), "1700000000.000000123");
    }
}
