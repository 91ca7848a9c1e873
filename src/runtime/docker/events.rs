//! The Docker events stream, filtered to the project's container deaths and OOM kills: a
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
pub enum Notice {
    /// A container of the project stopped.
    Died { id: String, at_nanos: i64, exit_code: Option<i64> },
    /// The kernel's OOM killer struck in a container of the project (before its `die`).
    Oom { id: String },
    /// The stream broke: dockerd is unreachable.
    Lost(String),
    /// The stream is back after a loss (events in between may have been missed).
    Back,
}

/// Follows the project's `die` and `oom` events until `tell` reports that nobody listens.
pub async fn follow(host: String, mut docker: Docker, project: String, tell: impl Fn(Notice) -> bool) {
    let mut since: Option<i64> = None;
    loop {
        let filters = HashMap::from([
            ("type".to_owned(), vec!["container".to_owned()]),
            ("event".to_owned(), vec!["die".to_owned(), "oom".to_owned()]),
            ("label".to_owned(), vec![format!("{}={project}", spec::LABEL_PROJECT)]),
        ]);
        let options =
            EventsOptions { since: since.map(|s| s.to_string()), until: None, filters: Some(filters) };
        let mut stream = docker.events(Some(options));
        let error = loop {
            match stream.next().await {
                Some(Ok(event)) => {
                    since = event.time.or(since);
                    let actor = event.actor.unwrap_or_default();
                    let attributes = actor.attributes.unwrap_or_default();
                    let id = actor.id.unwrap_or_default();
                    let notice = match event.action.as_deref() {
                        Some("oom") => Notice::Oom { id },
                        _ => Notice::Died {
                            id,
                            at_nanos: event.time_nano.unwrap_or(0),
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
