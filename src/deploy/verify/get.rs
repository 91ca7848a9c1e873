//! One HTTP GET with its body, for `[verify]` http checks and parity sources: plain HTTP/1.1 over
//! a fresh connection (`Connection: close`), the whole exchange bounded by a timeout and the body
//! by 1 MiB. Like the health probe (`health::http`, which never reads a body) it spawns nothing:
//! the connection is driven here and dropped with the request.

use std::fmt::Write as _;
use std::io;
use std::pin::pin;
use std::time::Duration;

use http::header::{ACCEPT, CONNECTION, HOST};
use http::{Request, Uri};
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// The largest body read: a verify answer is a few bytes of JSON.
pub(crate) const MAX_BODY: usize = 1 << 20;

/// A GET has no body; `&[u8]` chunks avoid a direct dependency on `bytes`.
type NoBody = Empty<&'static [u8]>;

/// What the server answered.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Bytes,
}

/// Why a GET got no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GetError {
    #[error("invalid URL {url:?}: {reason}")]
    BadUrl { url: String, reason: &'static str },
    #[error("cannot connect to {addr}: {}", io_text(.error))]
    Connect { addr: String, error: io::Error },
    #[error("HTTP error: {0}")]
    Http(String),
    #[error("body larger than {} MiB", MAX_BODY >> 20)]
    TooLarge,
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

/// GETs `url`; connect, request, response and body all within `timeout`.
pub(crate) async fn get(url: &str, timeout: Duration) -> Result<Answer, GetError> {
    let bad = |reason| GetError::BadUrl { url: url.to_owned(), reason };
    let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
    if uri.scheme_str() != Some("http") {
        return Err(bad("only http:// URLs are supported"));
    }
    let request = request_for(&uri).map_err(bad)?;
    tokio::time::timeout(timeout, exchange(&uri, request)).await.unwrap_or(Err(GetError::Timeout(timeout)))
}

/// `GET /path?query` in origin form, with `Host`, `Accept` and `Connection: close`.
fn request_for(uri: &Uri) -> Result<Request<NoBody>, &'static str> {
    let authority = uri.authority().filter(|a| !a.host().is_empty()).ok_or("no host")?;
    let target = match uri.path_and_query().map(|pq| pq.as_str()) {
        Some(pq) if !pq.is_empty() => pq,
        _ => "/",
    };
    Request::get(target)
        .header(HOST, authority.as_str())
        .header(ACCEPT, "application/json")
        .header(CONNECTION, "close")
        .body(NoBody::new())
        .map_err(|_| "invalid path or host")
}

/// Connects, sends, and reads the response and its body, driving hyper's connection future
/// beside the request (no spawned task).
async fn exchange(uri: &Uri, request: Request<NoBody>) -> Result<Answer, GetError> {
    let host = uri.host().unwrap_or_default();
    let port = uri.port_u16().unwrap_or(80);
    // an IPv6 literal comes bracketed in a URI, and is an address without its brackets
    let ip_or_name = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let stream = TcpStream::connect((ip_or_name, port))
        .await
        .map_err(|error| GetError::Connect { addr: format!("{host}:{port}"), error })?;
    let (mut sender, conn) = http1::handshake::<_, NoBody>(TokioIo::new(stream)).await.map_err(http_error)?;
    let mut conn = pin!(conn);
    let mut answer = pin!(async move {
        let response = sender.send_request(request).await.map_err(http_error)?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), MAX_BODY).collect().await.map_err(body_error)?;
        Ok(Answer { status, body: body.to_bytes() })
    });
    tokio::select! {
        biased;
        answer = &mut answer => answer,
        // the connection ended first: what it delivered is still in the body's channel, and
        // the request resolves at once with it or with hyper's "closed before complete"
        done = &mut conn => match done {
            Ok(()) => answer.await,
            Err(e) => Err(http_error(e)),
        },
    }
}

/// A body that failed: too large, or hyper's error while reading it.
fn body_error(error: Box<dyn std::error::Error + Send + Sync>) -> GetError {
    if error.is::<LengthLimitError>() {
        return GetError::TooLarge;
    }
    GetError::Http(chain(error.as_ref()))
}

fn http_error(error: hyper::Error) -> GetError {
    GetError::Http(chain(&error))
}

/// An error's text with its causes, e.g. "error reading a body from connection: ...".
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let _ = write!(text, ": {e}");
        cause = e.source();
    }
    text
}

/// "connection refused" rather than "Connection refused (os error 111)" for the usual causes.
fn io_text(error: &io::Error) -> String {
    use io::ErrorKind::*;
    match error.kind() {
        kind @ (ConnectionRefused | ConnectionReset | HostUnreachable | NetworkUnreachable | TimedOut) => {
            kind.to_string()
        }
        _ => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{answering, json, refused};
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn a_json_answer_comes_back_with_its_status_and_body() {
        let base = answering(json(201, r#"{"a":1}"#));
        let answer = get(&format!("{base}/x?y=1"), TIMEOUT).await.unwrap();
        assert_eq!((answer.status, &answer.body[..]), (201, &br#"{"a":1}"#[..]));
    }

    #[tokio::test]
    async fn a_body_larger_than_1_mib_is_refused() {
        let body = "x".repeat(MAX_BODY + 1);
        let base = answering(json(200, &body));
        assert_eq!(get(&base, TIMEOUT).await.unwrap_err().to_string(), "body larger than 1 MiB");
        let exactly = answering(json(200, &body[1..]));
        assert_eq!(get(&exactly, TIMEOUT).await.unwrap().body.len(), MAX_BODY);
    }

    #[tokio::test]
    async fn garbage_instead_of_http_is_an_error_not_a_panic() {
        for garbage in [&b"\x00\xff garbage\r\n\r\n"[..], b"HTTP/1.1 999999 X\r\n\r\n", b"", b"HTTP/1.1 200"]
        {
            let base = answering(garbage.to_vec());
            let error = get(&base, TIMEOUT).await.unwrap_err().to_string();
            assert!(error.starts_with("HTTP error: "), "{garbage:?}: {error}");
        }
    }

    #[tokio::test]
    async fn a_body_cut_short_is_an_error() {
        let base = answering(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{\"a\"".to_vec());
        let error = get(&base, TIMEOUT).await.unwrap_err().to_string();
        assert!(error.starts_with("HTTP error: "), "{error}");
    }

    #[tokio::test]
    async fn a_closed_port_is_named_with_the_reason() {
        let url = refused();
        let addr = url.trim_start_matches("http://").trim_end_matches("/policy");
        let error = get(&url, TIMEOUT).await.unwrap_err().to_string();
        assert_eq!(error, format!("cannot connect to {addr}: connection refused"));
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let error = get(&url, Duration::from_millis(200)).await.unwrap_err().to_string();
        assert_eq!(error, "timed out after 200ms");
        drop(listener);
    }

    #[tokio::test]
    async fn only_plain_http_urls_are_fetched() {
        for (url, reason) in [
            ("https://127.0.0.1/x", "only http:// URLs are supported"),
            ("ftp://127.0.0.1/x", "only http:// URLs are supported"),
            ("127.0.0.1:80/x", "not a URL"),
            ("http://", "not a URL"),
            ("not a url", "not a URL"),
        ] {
            let error = get(url, TIMEOUT).await.unwrap_err().to_string();
            assert_eq!(error, format!("invalid URL {url:?}: {reason}"));
        }
    }
}
