//! Parity checks: two sources whose field must be equal (the policy hash invariant). A source
//! is an HTTP JSON field or a NATS request's reply (through the daemon's `[nats]` link). No
//! answer is told apart by its cause: nobody subscribes (`no_responders`, the server says so
//! at once), no reply in time (`timeout`), anything else (`error`).

use std::fmt;
use std::time::Duration;

use super::{field, get};

/// Why a NATS source cannot answer on a daemon without a link.
pub(crate) const NO_LINK: &str = "this daemon runs without [nats] (read at its start)";

/// A parity comparison: three results, kept distinct.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub(crate) enum Parity {
    Equal {
        value: String,
    },
    Differs {
        a: String,
        b: String,
    },
    /// `side` ('a' or 'b') gave no value: unreachable, an error status, no such field, ...
    NoAnswer {
        side: char,
        source: String,
        why: String,
        /// `no_responders`, `timeout` or `error`.
        cause: &'static str,
    },
}

impl Parity {
    pub(crate) fn passed(&self) -> bool {
        matches!(self, Parity::Equal { .. })
    }

    /// The line for progress and evidence: "equal: abc", "differs: a=x b=y",
    /// "no answer from b (http://...): why".
    pub(crate) fn detail(&self) -> String {
        match self {
            Parity::Equal { value } => format!("equal: {}", shown(value)),
            Parity::Differs { a, b } => format!("differs: a={} b={}", shown(a), shown(b)),
            Parity::NoAnswer { side, source, why, .. } => format!("no answer from {side} ({source}): {why}"),
        }
    }
}

/// Where a parity side's value comes from.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Source {
    Http { url: String, field: String },
    Nats { subject: String, payload: String, field: String, timeout: Option<Duration> },
}

impl Source {
    /// The source a config side names: its `http` URL, else its `nats` subject (validation
    /// refuses a side with both or neither; an empty subject here answers nothing).
    pub(crate) fn of(config: &crate::config::ParitySource) -> Source {
        let field = config.field.clone();
        match (&config.http, &config.nats) {
            (Some(url), _) => Source::Http { url: url.clone(), field },
            (None, subject) => Source::Nats {
                subject: subject.clone().unwrap_or_default(),
                payload: config.payload.clone().unwrap_or_default(),
                field,
                timeout: config.timeout.map(|d| d.0),
            },
        }
    }

    /// The source's value of its field, as text (see `field`), or why there is none and its
    /// cause.
    pub(crate) async fn fetch(&self, timeout: Duration) -> Result<String, (&'static str, String)> {
        let error = |e: String| ("error", e);
        match self {
            Source::Http { url, field } => {
                let answer = get::get(url, timeout).await.map_err(|e| error(e.to_string()))?;
                if !(200..300).contains(&answer.status) {
                    return Err(error(format!("HTTP status {}", answer.status)));
                }
                field::text_at(&answer.body, field).map_err(|e| error(e.to_string()))
            }
            Source::Nats { subject, payload, field, timeout: own } => {
                let link = crate::nats::events::publisher().ok_or_else(|| error(NO_LINK.to_owned()))?.link();
                let body = payload.clone().into_bytes().into();
                let reply = link.request(subject, body, own.unwrap_or(timeout)).await;
                let reply = reply.map_err(|e| (e.label(), e.to_string()))?;
                field::text_at(&reply, field).map_err(|e| error(e.to_string()))
            }
        }
    }
}

/// A source as a no-answer line names it: the URL or the subject.
impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Http { url, .. } => f.write_str(url),
            Source::Nats { subject, .. } => write!(f, "nats {subject}"),
        }
    }
}

/// Fetches both sides at once, each within `timeout`, and compares them. When neither
/// answers, `a` is the one reported.
pub(crate) async fn parity(a: &Source, b: &Source, timeout: Duration) -> Parity {
    let no_answer = |side, source: &Source, (cause, why)| Parity::NoAnswer {
        side,
        source: source.to_string(),
        why,
        cause,
    };
    match tokio::join!(a.fetch(timeout), b.fetch(timeout)) {
        (Err(e), _) => no_answer('a', a, e),
        (_, Err(e)) => no_answer('b', b, e),
        (Ok(a), Ok(b)) if a == b => Parity::Equal { value: a },
        (Ok(a), Ok(b)) => Parity::Differs { a, b },
    }
}

/// The longest value a detail line shows (a hash is 64 characters; a field could hold 1 MiB).
const SHOWN: usize = 200;

/// `value`, cut at `SHOWN` characters with an ellipsis.
pub(crate) fn shown(value: &str) -> std::borrow::Cow<'_, str> {
    match value.char_indices().nth(SHOWN) {
        Some((at, _)) => format!("{}…", &value[..at]).into(),
        None => value.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{answering, json, refused};
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(5);

    fn http(url: &str, field: &str) -> Source {
        Source::Http { url: url.to_owned(), field: field.to_owned() }
    }

    /// A source answering what the test service's `GET /policy` does.
    fn policy(hash: &str) -> Source {
        let body = format!("{{\"policy_hash\":\"{hash}\"}}\n");
        http(&format!("{}/policy", answering(json(200, &body))), "policy_hash")
    }

    #[tokio::test]
    async fn two_sources_with_the_same_value_are_equal() {
        let result = parity(&policy("abc"), &policy("abc"), TIMEOUT).await;
        assert_eq!(result, Parity::Equal { value: "abc".into() });
        assert_eq!((result.passed(), result.detail()), (true, "equal: abc".into()));
    }

    #[tokio::test]
    async fn different_values_are_reported_side_by_side() {
        let result = parity(&policy("abc"), &policy("xyz"), TIMEOUT).await;
        assert_eq!(result, Parity::Differs { a: "abc".into(), b: "xyz".into() });
        assert_eq!((result.passed(), result.detail()), (false, "differs: a=abc b=xyz".into()));
    }

    #[tokio::test]
    async fn a_side_that_refuses_the_connection_is_named_with_its_source() {
        let url = refused();
        let addr = url.trim_start_matches("http://").trim_end_matches("/policy");
        let result = parity(&policy("abc"), &http(&url, "policy_hash"), TIMEOUT).await;
        let why = format!("cannot connect to {addr}: connection refused");
        assert_eq!(
            result,
            Parity::NoAnswer { side: 'b', source: url.clone(), why: why.clone(), cause: "error" }
        );
        assert_eq!(result.detail(), format!("no answer from b ({url}): {why}"));
    }

    #[tokio::test]
    async fn a_side_answering_something_other_than_json_gives_no_answer() {
        let html =
            format!("{}/policy", answering(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n<html>".to_vec()));
        let result = parity(&http(&html, "policy_hash"), &policy("abc"), TIMEOUT).await;
        let Parity::NoAnswer { side: 'a', source, why, .. } = result else { panic!("{result:?}") };
        assert_eq!(source, html);
        assert!(why.starts_with("body is not JSON: "), "{why}");
    }

    #[tokio::test]
    async fn an_error_status_or_a_missing_field_gives_no_answer() {
        let down = format!("{}/policy", answering(json(503, r#"{"policy_hash":"abc"}"#)));
        let result = parity(&policy("abc"), &http(&down, "policy_hash"), TIMEOUT).await;
        assert!(
            matches!(&result, Parity::NoAnswer { side: 'b', why, .. } if why == "HTTP status 503"),
            "{result:?}"
        );
        let result = parity(&policy("abc"), &policy("abc").with_field("policy.hash"), TIMEOUT).await;
        assert!(
            matches!(&result, Parity::NoAnswer { side: 'b', why, .. } if why == "no field policy.hash in the body"),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn a_nats_source_on_a_daemon_without_nats_answers_nothing_saying_why() {
        let nats = Source::Nats {
            subject: "titan.req.exec.policy_hash.v1".into(),
            payload: "{}".into(),
            field: "policy_hash".into(),
            timeout: None,
        };
        let result = parity(&policy("abc"), &nats, TIMEOUT).await;
        let expected = Parity::NoAnswer {
            side: 'b',
            source: "nats titan.req.exec.policy_hash.v1".into(),
            why: NO_LINK.into(),
            cause: "error",
        };
        assert_eq!(result, expected);
    }

    #[test]
    fn a_config_side_becomes_its_source() {
        let side = |http: Option<&str>, nats: Option<&str>| crate::config::ParitySource {
            http: http.map(str::to_owned),
            nats: nats.map(str::to_owned),
            payload: nats.map(|_| "{}".to_owned()),
            field: "policy_hash".into(),
            timeout: None,
        };
        assert_eq!(Source::of(&side(Some("http://h/p"), None)), http("http://h/p", "policy_hash"));
        assert_eq!(
            Source::of(&side(None, Some("s.v1"))),
            Source::Nats {
                subject: "s.v1".into(),
                payload: "{}".into(),
                field: "policy_hash".into(),
                timeout: None
            }
        );
    }

    #[test]
    fn long_values_are_cut_in_the_detail_only() {
        let long = "é".repeat(SHOWN + 1);
        let result = Parity::Equal { value: long.clone() };
        assert_eq!(result.detail(), format!("equal: {}…", "é".repeat(SHOWN)));
        assert_eq!(result, Parity::Equal { value: long });
    }

    #[test]
    fn results_serialize_tagged() {
        let json = |p: &Parity| serde_json::to_string(p).unwrap();
        assert_eq!(json(&Parity::Equal { value: "x".into() }), r#"{"result":"equal","value":"x"}"#);
        assert_eq!(
            json(&Parity::Differs { a: "x".into(), b: "y".into() }),
            r#"{"result":"differs","a":"x","b":"y"}"#
        );
        let none = Parity::NoAnswer { side: 'b', source: "u".into(), why: "w".into(), cause: "timeout" };
        assert_eq!(
            json(&none),
            r#"{"result":"no_answer","side":"b","source":"u","why":"w","cause":"timeout"}"#
        );
    }

    impl Source {
        fn with_field(self, path: &str) -> Source {
            match self {
                Source::Http { url, .. } => Source::Http { url, field: path.to_owned() },
                nats => nats,
            }
        }
    }
}
