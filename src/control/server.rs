//! The control socket: HTTP/1.1 on a Unix socket, each connection's peer checked with
//! SO_PEERCRED against `allow_uids`/`allow_gids` (root always allowed). A stale socket file is
//! removed only after a connect to it fails; a live one means another supervisor runs.
//! Handlers talk to the actor through its `Handle` and never block it.

use std::convert::Infallible;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;

use super::proto::{self, ErrorBody, Outcome, Verb};
use crate::supervisor::actor::Board;
use crate::supervisor::actor::{Act, Handle};
use crate::supervisor::status::ServiceStatus;

/// A client that has not sent its request head within this is dropped.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Request bodies (`{"release": ...}`) are small; anything larger is refused with 413.
const MAX_BODY: usize = 64 * 1024;
/// A body must arrive within this once its head has.
const BODY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("another titan-supervisor is running: {} answers", .0.display())]
    Running(PathBuf),
    #[error("cannot create the control socket {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Binds the socket (mode `mode`, owned by `group` when given — the first of `allow_gids`, so
/// that group's members can reach a 0660 socket at all), replacing a stale file but never a
/// live socket.
pub fn bind(
    path: &Path,
    mode: u32,
    group: Option<u32>,
) -> Result<std::os::unix::net::UnixListener, BindError> {
    let io_err = |source| BindError::Io { path: path.to_owned(), source };
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(BindError::Running(path.to_owned()));
        }
        std::fs::remove_file(path).map_err(io_err)?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err)?;
    }
    let listener = std::os::unix::net::UnixListener::bind(path).map_err(io_err)?;
    if let Some(gid) = group {
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(io_err)?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io_err)?;
    listener.set_nonblocking(true).map_err(io_err)?;
    Ok(listener)
}

/// Who may talk to the daemon, and where the logs are.
#[derive(Clone, Debug)]
pub struct Access {
    pub uids: Vec<u32>,
    pub gids: Vec<u32>,
    pub log_dir: PathBuf,
}

impl Access {
    fn allows(&self, uid: u32, gid: u32) -> bool {
        uid == 0 || self.uids.contains(&uid) || self.gids.contains(&gid)
    }
}

/// Serves the API on a thread and runtime of its own, so parsing and answering requests —
/// a hundred clients at once — never takes the actor's thread; only the questions reach it.
pub fn spawn_thread(
    listener: std::os::unix::net::UnixListener,
    access: Access,
    handle: Handle,
) -> io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new()
        .name("titan-control".into())
        .spawn(move || rt.block_on(serve(listener, access, handle)))?;
    Ok(())
}

/// Accepts connections until the runtime ends.
pub async fn serve(listener: std::os::unix::net::UnixListener, access: Access, handle: Handle) {
    let listener = match tokio::net::UnixListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => return tracing::error!("control socket unusable: {e}"),
    };
    let ctx = Arc::new(Ctx { handle, log_dir: access.log_dir.clone(), rendered: Mutex::default() });
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let allowed = match stream.peer_cred() {
            Ok(c) if access.allows(c.uid(), c.gid()) => true,
            Ok(c) => {
                tracing::warn!(
                    pid = c.pid(),
                    uid = c.uid(),
                    gid = c.gid(),
                    "control socket: peer not allowed"
                );
                false
            }
            Err(e) => {
                tracing::warn!("control socket: cannot read peer credentials: {e}");
                false
            }
        };
        let ctx = Arc::clone(&ctx);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| route(req, allowed, Arc::clone(&ctx)));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            let _ = conn.await;
        });
    }
}

type Reply = Response<BoxBody<Bytes, Infallible>>;

/// A response of `status` with `body` of the given content type.
fn reply(status: StatusCode, kind: &'static str, body: BoxBody<Bytes, Infallible>) -> Reply {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(kind));
    r
}

fn json(status: StatusCode, body: &impl Serialize) -> Reply {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    reply(status, "application/json", Full::new(Bytes::from(bytes)).boxed())
}

fn error(status: StatusCode, message: impl Into<String>) -> Reply {
    json(status, &ErrorBody { error: message.into() })
}

/// What every request handler shares.
struct Ctx {
    handle: Handle,
    log_dir: PathBuf,
    /// The last `/v1/status` body and the board it was rendered from.
    rendered: Mutex<Option<Rendered>>,
}

struct Rendered {
    board: Board,
    at: Instant,
    body: Bytes,
}

/// How long a rendered status is served again while the board has not changed: its uptimes
/// are at most this old, and a hundred clients polling cost one rendering per interval.
const RENDER_REUSE: Duration = Duration::from_millis(10);

async fn route(req: Request<Incoming>, allowed: bool, ctx: Arc<Ctx>) -> Result<Reply, Infallible> {
    let (handle, log_dir) = (&ctx.handle, &ctx.log_dir);
    if !allowed {
        return Ok(error(StatusCode::FORBIDDEN, "this uid/gid is not in allow_uids/allow_gids"));
    }
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let query = req.uri().query().map(str::to_owned);
    let _body = match read_body(req).await {
        Ok(body) => body,
        Err(refusal) => return Ok(refusal),
    };
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let answer = match (&method, parts.as_slice()) {
        (&Method::GET, ["v1", "status"]) => status(&ctx),
        (&Method::GET, ["v1", "events"]) => events(handle),
        (&Method::GET, ["metrics"]) => metrics(handle).await,
        (&Method::POST, ["v1", "reload"]) => match handle.reload().await {
            Ok(done) => json(StatusCode::OK, &done),
            Err(report) => error(StatusCode::UNPROCESSABLE_ENTITY, report),
        },
        (&Method::POST, ["v1", "upgrade"]) => match handle.upgrade() {
            true => json(
                StatusCode::ACCEPTED,
                &serde_json::json!({ "upgrading": true, "pid": std::process::id() }),
            ),
            false => error(StatusCode::SERVICE_UNAVAILABLE, "the supervisor is stopping"),
        },
        (&Method::GET, ["v1", "logs", name]) => logs(handle, log_dir, name, query.as_deref()).await,
        (&Method::GET, ["v1", "services", name]) => service(handle, name),
        (&Method::POST, ["v1", "services", name, verb]) => match Verb::parse(verb) {
            Some(verb) => act(handle, name, verb).await,
            None => error(StatusCode::NOT_FOUND, format!("no action {verb:?}: start, stop or restart")),
        },
        _ if proto::RESERVED.contains(&path.as_str()) => {
            error(StatusCode::NOT_IMPLEMENTED, format!("{path} comes with release switching"))
        }
        _ => error(StatusCode::NOT_FOUND, format!("no endpoint {method} {path}")),
    };
    Ok(answer)
}

/// The request's body, bounded in size and time: a client cannot make us hold more than
/// `MAX_BODY` bytes of it, nor wait on it for longer than `BODY_TIMEOUT`.
async fn read_body(req: Request<Incoming>) -> Result<Bytes, Reply> {
    let limited = http_body_util::Limited::new(req.into_body(), MAX_BODY);
    match tokio::time::timeout(BODY_TIMEOUT, limited.collect()).await {
        Ok(Ok(body)) => Ok(body.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            Err(error(StatusCode::PAYLOAD_TOO_LARGE, format!("request body over {MAX_BODY} bytes")))
        }
        Ok(Err(e)) => Err(error(StatusCode::BAD_REQUEST, format!("cannot read the request body: {e}"))),
        Err(_) => {
            Err(error(StatusCode::REQUEST_TIMEOUT, format!("request body not sent within {BODY_TIMEOUT:?}")))
        }
    }
}

async fn metrics(handle: &Handle) -> Reply {
    let kind = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    reply(StatusCode::OK, kind, Full::new(Bytes::from(handle.metrics().await)).boxed())
}

/// `GET /v1/status`, serialized straight from the actor's board: no question reaches the actor.
fn status(ctx: &Ctx) -> Reply {
    #[derive(Serialize)]
    struct View<'a> {
        release: Option<&'a str>,
        services: &'a [ServiceStatus],
    }
    let board = ctx.handle.status();
    let mut rendered = ctx.rendered.lock().unwrap_or_else(|p| p.into_inner());
    let fresh = rendered.as_ref().filter(|r| Arc::ptr_eq(&r.board, &board) && r.at.elapsed() < RENDER_REUSE);
    let body = match fresh {
        Some(r) => r.body.clone(),
        None => {
            let body = Bytes::from(
                serde_json::to_vec(&View { release: None, services: &board }).unwrap_or_default(),
            );
            *rendered = Some(Rendered { board, at: Instant::now(), body: body.clone() });
            body
        }
    };
    reply(StatusCode::OK, "application/json", Full::new(body).boxed())
}

fn service(handle: &Handle, name: &str) -> Reply {
    match handle.status().iter().find(|s| s.name == name) {
        Some(s) => json(StatusCode::OK, s),
        None => error(StatusCode::NOT_FOUND, format!("unknown service {name:?}")),
    }
}

/// Start, stop or restart, answered once the outcome is known (healthy, stopped, failed...).
async fn act(handle: &Handle, name: &str, verb: Verb) -> Reply {
    // subscribed before asking, so no state change can slip by unseen
    let mut events = handle.subscribe();
    let outcome = |state: &str, reason: Option<String>| Outcome {
        service: name.to_owned(),
        action: verb.as_str().to_owned(),
        state: state.to_owned(),
        reason,
    };
    match handle.act(name, verb).await {
        Act::Unknown => error(StatusCode::NOT_FOUND, format!("unknown service {name:?}")),
        Act::Refused(why) => error(StatusCode::CONFLICT, why),
        Act::Done(state) => json(StatusCode::OK, &outcome(&state, None)),
        Act::Pending { limit } => {
            let ends: &[&str] = match verb {
                Verb::Stop => &["stopped", "failed", "exited"],
                Verb::Start | Verb::Restart => &["healthy", "failed", "exited", "stopped"],
            };
            let wait = async {
                loop {
                    match events.recv().await {
                        Ok(e) if e.service == name && ends.contains(&e.to) => return Some(e),
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(_) => return None,
                    }
                }
            };
            match tokio::time::timeout(limit, wait).await {
                Ok(Some(e)) => json(StatusCode::OK, &outcome(e.to, e.reason)),
                Ok(None) => error(StatusCode::SERVICE_UNAVAILABLE, "the supervisor is stopping"),
                Err(_) => {
                    error(StatusCode::GATEWAY_TIMEOUT, format!("{name} did not settle within {limit:?}"))
                }
            }
        }
    }
}

/// How many lines a stream may run ahead of a slow reader before it is cut off.
const STREAM_BACKLOG: usize = 256;

/// A response body fed line by line from a channel; it ends when the sender goes away.
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|line| line.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

fn stream(rx: tokio::sync::mpsc::Receiver<Bytes>) -> Reply {
    reply(StatusCode::OK, "application/x-ndjson", ChannelBody(rx).boxed())
}

/// `GET /v1/events`: every state change as a JSON line, as it happens. A follower that stops
/// reading is cut off (with a last line saying so) instead of being buffered without bound.
fn events(handle: &Handle) -> Reply {
    let mut events = handle.subscribe();
    let (tx, rx) = tokio::sync::mpsc::channel(STREAM_BACKLOG);
    tokio::spawn(async move {
        loop {
            let line = match events.recv().await {
                Ok(e) => serde_json::to_vec(&e).unwrap_or_default(),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    let _ = tx.try_send(Bytes::from(format!(
                        "{{\"error\":\"too slow: {n} events missed; reconnect\"}}\n"
                    )));
                    return;
                }
                Err(_) => return,
            };
            let mut line = line;
            line.push(b'\n');
            // a full channel means the reader is not reading: cut it off
            if tx.try_send(Bytes::from(line)).is_err() {
                return;
            }
        }
    });
    stream(rx)
}

/// `GET /v1/logs/{name}?tail=N&follow=1&since_s=S`: the service's log as stored, across
/// rotated and compressed files, then followed across rotations. File reading runs on the
/// blocking pool; a reader that stops reading holds at most `STREAM_BACKLOG` chunks.
async fn logs(handle: &Handle, log_dir: &Path, name: &str, query: Option<&str>) -> Reply {
    let known = name == "supervisor" || handle.status().iter().any(|s| s.name == name);
    if !known {
        return error(StatusCode::NOT_FOUND, format!("unknown service {name:?}"));
    }
    let param = |key: &str| {
        query.unwrap_or_default().split('&').find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
    };
    let tail = param("tail").and_then(|v| v.parse().ok());
    let since = param("since_s")
        .and_then(|v| v.parse().ok())
        .map(|s| std::time::SystemTime::now() - Duration::from_secs(s));
    let follow = param("follow").is_some_and(|v| v == "1" || v == "true");
    let dir = log_dir.join(name);
    let service = name.to_owned();
    let (tx, rx) = tokio::sync::mpsc::channel(STREAM_BACKLOG);
    tokio::task::spawn_blocking(move || {
        use crate::logs::read::{self, Select};
        let mut out = ChannelWriter(tx);
        let Ok(offset) = read::print(&dir, &service, Select { last: tail, since }, &mut out) else { return };
        if follow {
            let _ = read::follow(&dir, offset, &mut out, Duration::from_millis(100));
        }
    });
    stream(rx)
}

/// `io::Write` into a response stream; fails once the client has gone.
struct ChannelWriter(tokio::sync::mpsc::Sender<Bytes>);

impl io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .blocking_send(Bytes::copy_from_slice(buf))
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.0.is_closed() { Err(io::Error::from(io::ErrorKind::BrokenPipe)) } else { Ok(()) }
    }
}
