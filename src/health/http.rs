//! The HTTP probe: one GET over a fresh plain HTTP/1.1 connection, healthy on a 2xx status.
//! No client, no pool: a service may restart between probes, and a probe must leave nothing
//! running behind it.

use std::fmt::Write as _;
use std::pin::pin;
use std::time::Duration;

use http::header::{CONNECTION, HOST, HeaderValue};
use http::uri::{Parts, PathAndQuery};
use http::{Request, Uri};
use http_body_util::Empty;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

use super::ProbeError;

/// A GET has no body; `&[u8]` chunks avoid a direct dependency on `bytes`.
type NoBody = Empty<&'static [u8]>;

/// GET `uri` over plain HTTP/1.1 (Host header, `Connection: close`), success on 2xx, the whole
/// probe (connect + request + response head) bounded by `timeout`. The body is never read: the
/// connection is dropped as soon as the response head is in.
pub async fn probe(uri: &Uri, timeout: Duration) -> Result<(), ProbeError> {
    match tokio::time::timeout(timeout, exchange(uri)).await {
        Ok(result) => result,
        Err(_) => Err(ProbeError::Timeout(timeout)),
    }
}

/// Connect, handshake, send, and read the response head, driving hyper's connection future
/// here beside the request so that it is dropped with the probe (no spawned task).
async fn exchange(uri: &Uri) -> Result<(), ProbeError> {
    let (host, port) = host_port(uri)?;
    let request = request_for(uri)?;
    let stream = super::connect(host, port).await?;
    let (mut sender, conn) = http1::handshake::<_, NoBody>(TokioIo::new(stream))
        .await
        .map_err(http_error)?;
    let mut conn = pin!(conn);
    let mut response = pin!(sender.send_request(request));
    let response = tokio::select! {
        biased;
        response = &mut response => response,
        // The connection ended first: the request future now resolves at once, with the
        // response if one was parsed, else with hyper's "closed before message completed".
        done = &mut conn => match done {
            Ok(()) => response.await,
            Err(e) => Err(e),
        },
    }
    .map_err(http_error)?;
    match response.status() {
        status if status.is_success() => Ok(()),
        status => Err(ProbeError::Status(status.as_u16())),
    }
}

/// Where to connect: the URI's host and port (80 by default). Only `http` is supported.
fn host_port(uri: &Uri) -> Result<(&str, u16), ProbeError> {
    let bad = |reason| ProbeError::BadTarget {
        target: uri.to_string(),
        reason,
    };
    if uri.scheme_str() != Some("http") {
        return Err(bad("only http:// URLs can be probed"));
    }
    match uri.host() {
        Some(host) if !host.is_empty() => Ok((host, uri.port_u16().unwrap_or(80))),
        _ => Err(bad("no host")),
    }
}

/// `GET /path?query` in origin form, with `Host` and `Connection: close`.
fn request_for(uri: &Uri) -> Result<Request<NoBody>, ProbeError> {
    let bad = |reason| ProbeError::BadTarget {
        target: uri.to_string(),
        reason,
    };
    let mut parts = Parts::default();
    parts.path_and_query = Some(match uri.path_and_query() {
        Some(pq) if !pq.as_str().is_empty() => pq.clone(),
        _ => PathAndQuery::from_static("/"),
    });
    let target = Uri::from_parts(parts).map_err(|_| bad("invalid path"))?;
    let authority = uri.authority().ok_or_else(|| bad("no host"))?;
    let host = HeaderValue::from_str(authority.as_str()).map_err(|_| bad("invalid host"))?;
    let mut request = Request::new(NoBody::new());
    *request.uri_mut() = target;
    request.headers_mut().insert(HOST, host);
    request
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    Ok(request)
}

/// hyper's error text with its causes, e.g. "error reading a body from connection: ...".
fn http_error(error: hyper::Error) -> ProbeError {
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(&error);
    while let Some(e) = cause {
        let _ = write!(text, ": {e}");
        cause = e.source();
    }
    ProbeError::Http(text)
}
