//! HTTP/1.1 serving that a misbehaving client cannot wear down, shared by the control socket
//! and the metrics listener: connections bounded (beyond the limit a 503 and close), a request
//! head due within `HEADER_TIMEOUT` (a client that sends nothing, or trickles, is cut off; so
//! is an idle keep-alive), bodies bounded in size and time, failing accepts backed off.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

/// A client that has not sent its request head within this is dropped.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// A body must arrive within this once its head has.
const BODY_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) type Reply = Response<BoxBody<Bytes, Infallible>>;

/// A response of `status` with `body` of the given content type.
pub(crate) fn reply(status: StatusCode, kind: &'static str, body: BoxBody<Bytes, Infallible>) -> Reply {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(kind));
    r
}

/// A listening socket connections are accepted from: the control socket's Unix listener, the
/// metrics listener's TCP one.
pub(crate) trait Listener {
    type Stream: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static;
    fn accept(&self) -> impl Future<Output = io::Result<Self::Stream>>;
    /// Writes `bytes` without waiting (a refusal to a client beyond the limit).
    fn try_write(stream: &Self::Stream, bytes: &[u8]) -> io::Result<usize>;
}

/// The Unix and the TCP listener: the same calls on other types.
macro_rules! listener {
    ($listener:ty, $stream:ty) => {
        impl Listener for $listener {
            type Stream = TokioIo<$stream>;

            async fn accept(&self) -> io::Result<Self::Stream> {
                self.accept().await.map(|(stream, _)| TokioIo::new(stream))
            }

            fn try_write(stream: &Self::Stream, bytes: &[u8]) -> io::Result<usize> {
                stream.inner().try_write(bytes)
            }
        }
    };
}

listener!(tokio::net::UnixListener, tokio::net::UnixStream);
listener!(tokio::net::TcpListener, tokio::net::TcpStream);

/// What a client beyond the connection limit gets before its connection is closed.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

/// Accepts connections for as long as the runtime runs, each served by the service
/// `service_for` makes from its stream (where a peer's credentials can be read), while one of
/// `open`'s permits is held. `what` names the listener in the log.
pub(crate) async fn serve<L, S>(
    listener: L,
    open: Arc<tokio::sync::Semaphore>,
    what: &'static str,
    mut service_for: impl FnMut(&L::Stream) -> S,
) where
    L: Listener,
    S: hyper::service::Service<Request<Incoming>, Response = Reply, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    let mut failing = Accepting { what, failures: 0 };
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => {
                failing.recovered();
                stream
            }
            Err(e) => {
                tokio::time::sleep(failing.failed(&e)).await;
                continue;
            }
        };
        let service = service_for(&stream);
        let Ok(permit) = Arc::clone(&open).try_acquire_owned() else {
            // at the limit: refused at once, so the descriptors left stay the services'
            let _ = L::try_write(&stream, BUSY);
            continue;
        };
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(stream, service);
            let _ = conn.await;
            drop(permit);
        });
    }
}

/// A run of failing accepts (EMFILE: out of descriptors): each waits a little longer before
/// the next try, up to a second, instead of spinning; the first failure is logged, and the
/// recovery.
struct Accepting {
    what: &'static str,
    failures: u32,
}

impl Accepting {
    fn failed(&mut self, e: &io::Error) -> Duration {
        if self.failures == 0 {
            tracing::error!("{}: cannot accept connections: {e}; retrying with backoff", self.what);
        }
        self.failures = self.failures.saturating_add(1);
        Duration::from_millis(10u64 << self.failures.min(7)).min(Duration::from_secs(1))
    }

    fn recovered(&mut self) {
        if self.failures > 0 {
            tracing::info!(failures = self.failures, "{}: accepting connections again", self.what);
        }
        self.failures = 0;
    }
}

/// Why a request's body was not taken.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyRefused {
    #[error("request body over {0} bytes")]
    TooLarge(usize),
    #[error("cannot read the request body: {0}")]
    Unreadable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("request body not sent within {BODY_TIMEOUT:?}")]
    Late,
}

impl BodyRefused {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            BodyRefused::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            BodyRefused::Unreadable(_) => StatusCode::BAD_REQUEST,
            BodyRefused::Late => StatusCode::REQUEST_TIMEOUT,
        }
    }
}

/// The request's body, bounded in size and time: a client cannot make us hold more than `max`
/// bytes of it, nor wait on it for longer than `BODY_TIMEOUT`.
pub(crate) async fn read_body(req: Request<Incoming>, max: usize) -> Result<Bytes, BodyRefused> {
    let limited = http_body_util::Limited::new(req.into_body(), max);
    match tokio::time::timeout(BODY_TIMEOUT, limited.collect()).await {
        Ok(Ok(body)) => Ok(body.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(BodyRefused::TooLarge(max)),
        Ok(Err(e)) => Err(BodyRefused::Unreadable(e)),
        Err(_) => Err(BodyRefused::Late),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_accepts_back_off_to_a_second_and_log_once() {
        let mut a = Accepting { what: "test", failures: 0 };
        let e = io::Error::from_raw_os_error(24);
        let waits: Vec<Duration> = (0..10).map(|_| a.failed(&e)).collect();
        assert_eq!(waits[0], Duration::from_millis(20));
        assert!(waits.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*waits.last().unwrap(), Duration::from_secs(1));
        a.recovered();
        assert_eq!(a.failed(&e), Duration::from_millis(20));
    }
}
