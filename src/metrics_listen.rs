//! `[supervisor] metrics_listen`: `/metrics` on TCP, for a Prometheus that cannot scrape the
//! control socket. Read-only: `GET` and `HEAD` of `/metrics` and nothing else (any other path
//! 404, any other method 405, no request body taken). Bound at boot, served on the control
//! thread with the control socket's limits (`httpd`) but a connection budget of its own:
//! whoever can reach the port never takes the control socket's connections.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{ACCEPT, ALLOW, HeaderValue};
use hyper::{Method, Request, StatusCode};

use crate::config::units::ListenAddr;
use crate::httpd::{Reply, read_body, reply};
use crate::metrics::Format;
use crate::supervisor::handle::Handle;

/// Connections served at once: a scraper holds one; beyond these a client gets 503.
const CONNECTIONS: usize = 16;

/// How long a rendering is served again: scrapers polling in a loop cost the actor one
/// rendering per interval, whatever their number.
const RENDER_REUSE: Duration = Duration::from_millis(100);

/// The listener bound at boot.
#[derive(Debug)]
pub(crate) struct Bound(std::net::TcpListener);

#[derive(Debug, thiserror::Error)]
#[error("[supervisor] metrics_listen = \"{addr}\": cannot listen: {source}")]
pub(crate) struct BindError {
    addr: SocketAddr,
    #[source]
    source: std::io::Error,
}

pub(crate) fn bind(addr: ListenAddr) -> Result<Bound, BindError> {
    let listener = std::net::TcpListener::bind(addr.0).and_then(|l| l.set_nonblocking(true).map(|()| l));
    listener.map(Bound).map_err(|source| BindError { addr: addr.0, source })
}

/// Serves `bound`; never returns (without a listener it only waits), so that the control
/// thread, which selects over it, ends with the supervisor and nothing else.
pub(crate) async fn serve(bound: Option<Bound>, handle: Handle) {
    if let Some(Bound(listener)) = bound {
        match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => {
                let open = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS));
                let recent = Arc::new(Recent { handle, last: Mutex::default() });
                crate::httpd::serve(listener, open, "metrics_listen", move |_| {
                    let recent = Arc::clone(&recent);
                    hyper::service::service_fn(move |req| route(req, Arc::clone(&recent)))
                })
                .await;
            }
            Err(e) => tracing::error!("metrics_listen unusable: {e}"),
        }
    }
    std::future::pending::<()>().await;
}

/// `GET`/`HEAD /metrics`, in the format the scraper's `Accept` asks for; nothing else.
async fn route(req: Request<Incoming>, recent: Arc<Recent>) -> Result<Reply, Infallible> {
    const ONLY: &str = "only GET /metrics is served here\n";
    if req.uri().path() != "/metrics" {
        return Ok(text(StatusCode::NOT_FOUND, ONLY.into()));
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, ONLY.into());
        r.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Ok(r);
    }
    let format = Format::negotiate(req.headers().get(ACCEPT).and_then(|v| v.to_str().ok()));
    if let Err(refused) = read_body(req, 0).await {
        return Ok(text(refused.status(), format!("{refused}\n")));
    }
    let body = format.encode(&recent.rendered().await);
    Ok(reply(StatusCode::OK, format.content_type(), Full::new(Bytes::from(body)).boxed()))
}

fn text(status: StatusCode, body: String) -> Reply {
    reply(status, "text/plain; charset=utf-8", Full::new(Bytes::from(body)).boxed())
}

/// The actor's handle and its last rendering.
struct Recent {
    handle: Handle,
    last: Mutex<Option<(Instant, Arc<str>)>>,
}

impl Recent {
    /// The exposition, rendered by the actor at most once per `RENDER_REUSE`.
    async fn rendered(&self) -> Arc<str> {
        let fresh = |last: &Option<(Instant, Arc<str>)>| {
            last.as_ref().filter(|(at, _)| at.elapsed() < RENDER_REUSE).map(|(_, text)| Arc::clone(text))
        };
        if let Some(text) = fresh(&self.last.lock().unwrap_or_else(|p| p.into_inner())) {
            return text;
        }
        let text: Arc<str> = self.handle.metrics().await.into();
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), Arc::clone(&text)));
        text
    }
}
