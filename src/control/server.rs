//! The control socket: HTTP/1.1 on a Unix socket, each connection's peer checked with
//! SO_PEERCRED against `allow_uids`/`allow_gids` (root always allowed). A stale socket file is
//! removed only after a connect to it fails; a live one means another supervisor runs.
//! Handlers talk to the actor through its `Handle` and never block it.

use std::convert::Infallible;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, StatusCode};
use serde::Serialize;

use super::access::{Access, Grade, needed};
use super::proto::{Board, ErrorBody, Outcome, StateKind, Status, Verb};
use super::socket::{Bound, peer_groups};
use crate::deploy::switch::{self as deploys, Deployer, Kind, Peer};
use crate::httpd::{Reply, read_body, reply};
use crate::supervisor::UpgradeRefused;
use crate::supervisor::handle::{Act, Handle};

/// Request bodies (`{"release": ...}`) are small; anything larger is refused with 413.
const MAX_BODY: usize = 64 * 1024;

/// Serves the API on a thread and runtime of its own, so parsing and answering requests —
/// a hundred clients at once — never takes the actor's thread; only the questions reach it.
/// `metrics_listen`'s TCP listener, when bound, is served on the same thread. Once the
/// supervisor has stopped, the socket at `path` is closed and removed, and the TCP listener
/// closed (a daemon upgrading binds its own after the exec).
pub(crate) fn spawn_thread(
    socket: Bound,
    metrics: Option<crate::metrics_listen::Bound>,
    access: Access,
    handle: Handle,
    settings: crate::config::Supervisor,
) -> io::Result<Control> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let thread = std::thread::Builder::new().name("titan-control".into()).spawn(move || {
        let Bound { listener, file } = socket;
        let limit = connection_limit();
        let open = Arc::new(tokio::sync::Semaphore::new(limit));
        rt.block_on(async {
            tokio::select! {
                () = serve(listener, access, handle.clone(), settings, Arc::clone(&open)) => {}
                () = crate::metrics_listen::serve(metrics, handle.clone()) => {}
                () = handle.stopped() => {}
            }
            // the answers under way (an upgrade's 202, a stop's outcome) reach their clients;
            // followers of events or logs are cut off after the grace
            let all = u32::try_from(limit).unwrap_or(u32::MAX);
            let _ = tokio::time::timeout(GRACE, open.acquire_many(all)).await;
        });
        drop(file); // removes the socket file
    })?;
    Ok(Control(Some(thread)))
}

/// How long answers under way get once the supervisor has stopped.
const GRACE: Duration = Duration::from_millis(500);

/// The control thread, to wait for once the supervisor has stopped.
pub(crate) struct Control(Option<std::thread::JoinHandle<()>>);

impl Control {
    /// Waits until the answers under way are out and the socket is gone (at most `GRACE`
    /// after the supervisor stopped).
    pub(crate) fn finish(mut self) {
        if let Some(thread) = self.0.take() {
            let _ = thread.join();
        }
    }
}

/// Accepts connections for as long as the runtime runs.
async fn serve(
    listener: std::os::unix::net::UnixListener,
    access: Access,
    handle: Handle,
    settings: crate::config::Supervisor,
    open: Arc<tokio::sync::Semaphore>,
) {
    let listener = match tokio::net::UnixListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => return tracing::error!("control socket unusable: {e}"),
    };
    let deployer = Deployer { settings, handle: handle.clone(), probation: Default::default() };
    crate::deploy::probation::resume(&deployer);
    let ctx = Arc::new(Ctx { handle, log_dir: access.log_dir.clone(), rendered: Mutex::default(), deployer });
    crate::httpd::serve(listener, open, "control socket", move |stream| {
        let (peer, grade) = admit(stream.inner(), &access);
        let ctx = Arc::clone(&ctx);
        hyper::service::service_fn(move |req| route(req, grade, peer, Arc::clone(&ctx)))
    })
    .await;
}

/// Who the peer is, and what `access` lets it do (`None`: nothing; a refusal is logged).
fn admit(stream: &tokio::net::UnixStream, access: &Access) -> (Peer, Option<Grade>) {
    let peer =
        stream.peer_cred().map_or(Peer { uid: u32::MAX, pid: None }, |c| Peer { uid: c.uid(), pid: c.pid() });
    let grade = match stream.peer_cred() {
        Ok(c) => {
            let grade = access.grade(c.uid(), c.gid(), &|| peer_groups(stream).unwrap_or_default());
            if grade.is_none() {
                tracing::warn!(
                    pid = c.pid(),
                    uid = c.uid(),
                    gid = c.gid(),
                    "control socket: peer not allowed"
                );
            }
            grade
        }
        Err(e) => {
            tracing::warn!("control socket: cannot read peer credentials: {e}");
            None
        }
    };
    (peer, grade)
}

/// A 403 for a peer whose grade does not reach what `method path` needs.
fn refused(method: &Method, path: &str, peer: &Peer, grade: Option<Grade>, need: Grade) -> Reply {
    let has = grade.map_or_else(|| "no access".to_owned(), |g| format!("only {g}"));
    tracing::warn!(uid = peer.uid, pid = peer.pid, %method, path, "control socket: refused, needs {need}");
    let message = format!("{method} {path} needs {need} access; uid {} has {has}", peer.uid);
    error(StatusCode::FORBIDDEN, message)
}

/// How many connections are served at once: a quarter of the descriptors this process may
/// open (the rest are the services': their pipes, logs and probes), between 16 and 1024.
fn connection_limit() -> usize {
    let soft =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).map_or(1024, |(s, _)| s);
    usize::try_from(soft / 4).unwrap_or(usize::MAX).clamp(16, 1024)
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
    deployer: Deployer,
}

struct Rendered {
    board: Board,
    at: Instant,
    body: Bytes,
}

/// How long a rendered status is served again while the board has not changed: its uptimes
/// are at most this old, and a hundred clients polling cost one rendering per interval.
const RENDER_REUSE: Duration = Duration::from_millis(10);

async fn route(
    req: Request<Incoming>,
    grade: Option<Grade>,
    peer: Peer,
    ctx: Arc<Ctx>,
) -> Result<Reply, Infallible> {
    let (handle, log_dir) = (&ctx.handle, &ctx.log_dir);
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let need = needed(&method, &path.trim_matches('/').split('/').collect::<Vec<_>>());
    if grade.is_none_or(|g| g < need) {
        return Ok(refused(&method, &path, &peer, grade, need));
    }
    let query = req.uri().query().map(str::to_owned);
    let body = match read_body(req, MAX_BODY).await {
        Ok(body) => body,
        Err(refused) => return Ok(error(refused.status(), refused.to_string())),
    };
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let answer = match (&method, parts.as_slice()) {
        (&Method::GET, ["v1", "status"]) => status(&ctx),
        (&Method::GET, ["v1", "events"]) => events(handle),
        (&Method::GET, ["metrics"]) => metrics(handle).await,
        (&Method::POST, ["v1", "reload"]) => match handle.reload().await {
            Ok(done) => json(StatusCode::OK, &done),
            Err(report) => error(StatusCode::UNPROCESSABLE_ENTITY, report.to_string()),
        },
        (&Method::POST, ["v1", "upgrade"]) => match handle.upgrade().await {
            Ok(()) => json(
                StatusCode::ACCEPTED,
                &serde_json::json!({ "upgrading": true, "pid": std::process::id() }),
            ),
            Err(UpgradeRefused::Stopping) => {
                error(StatusCode::SERVICE_UNAVAILABLE, "the supervisor is stopping")
            }
            Err(why) => error(StatusCode::CONFLICT, format!("upgrade refused, nothing stopped: {why}")),
        },
        (&Method::GET, ["v1", "logs", name]) => logs(handle, log_dir, name, query.as_deref()).await,
        (&Method::GET, ["v1", "services", name]) => service(handle, name),
        (&Method::POST, ["v1", "services", name, verb]) => match Verb::parse(verb) {
            Some(verb) => act(handle, name, verb).await,
            None => error(StatusCode::NOT_FOUND, format!("no action {verb:?}: start, stop or restart")),
        },
        (&Method::POST, ["v1", "switch"]) => deploy(&ctx, &body, Kind::Switch, peer),
        (&Method::POST, ["v1", "rollback"]) => deploy(&ctx, &body, Kind::Rollback, peer),
        (&Method::GET, ["v1", "releases"]) => releases(&ctx),
        _ => error(StatusCode::NOT_FOUND, format!("no endpoint {method} {path}")),
    };
    Ok(answer)
}

async fn metrics(handle: &Handle) -> Reply {
    let kind = crate::metrics::Format::OpenMetrics.content_type();
    reply(StatusCode::OK, kind, Full::new(Bytes::from(handle.metrics().await)).boxed())
}

/// `GET /v1/status`, serialized straight from the actor's board: no question reaches the actor.
fn status(ctx: &Ctx) -> Reply {
    let board = ctx.handle.status();
    let mut rendered = ctx.rendered.lock().unwrap_or_else(|p| p.into_inner());
    let fresh = rendered.as_ref().filter(|r| Arc::ptr_eq(&r.board, &board) && r.at.elapsed() < RENDER_REUSE);
    let body = match fresh {
        Some(r) => r.body.clone(),
        None => {
            // the release is what `current` points to (a rendering is reused only briefly)
            let layout = crate::deploy::state::Layout::of(&ctx.deployer.settings);
            let mut view = Status::new(layout.current_release().ok().flatten(), Arc::clone(&board));
            view.nats = crate::nats::events::publisher().map(|p| p.link().status());
            let body = Bytes::from(serde_json::to_vec(&view).unwrap_or_default());
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
    let outcome = |state: StateKind, reason: Option<String>| Outcome {
        service: name.to_owned(),
        action: verb.as_str().to_owned(),
        state,
        reason,
    };
    match handle.act(name, verb).await {
        Act::Unknown => error(StatusCode::NOT_FOUND, format!("unknown service {name:?}")),
        Act::Refused(why) => error(StatusCode::CONFLICT, why),
        Act::Done(state) => json(StatusCode::OK, &outcome(state, None)),
        Act::Pending { limit } => {
            let ends = verb.outcomes();
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

/// `POST /v1/switch {"release", "no_disarm"}` and `POST /v1/rollback {"release"?}`: the deploy
/// runs as a task of its own (a client that goes away does not stop it); its progress comes
/// back as NDJSON, the last line its outcome.
fn deploy(ctx: &Ctx, body: &[u8], kind: Kind, peer: Peer) -> Reply {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Asked {
        release: Option<String>,
        #[serde(default)]
        no_disarm: bool,
    }
    let asked: Asked = match serde_json::from_slice(if body.is_empty() { b"{}" } else { body }) {
        Ok(a) => a,
        Err(e) => {
            return error(StatusCode::BAD_REQUEST, format!("the body must be {{\"release\": \"...\"}}: {e}"));
        }
    };
    if kind == Kind::Switch && asked.release.is_none() {
        return error(StatusCode::BAD_REQUEST, "a switch needs {\"release\": \"...\"}");
    }
    let request = deploys::Request { release: asked.release, kind, no_disarm: asked.no_disarm, peer };
    let (tx, rx) = tokio::sync::mpsc::channel(STREAM_BACKLOG);
    tokio::spawn(crate::deploy::switch::run(ctx.deployer.clone(), request, tx));
    stream(rx)
}

/// `GET /v1/releases`: every release with its marks.
fn releases(ctx: &Ctx) -> Reply {
    let layout = crate::deploy::state::Layout::of(&ctx.deployer.settings);
    match crate::deploy::state::list_releases(&layout) {
        Ok(list) => json(StatusCode::OK, &serde_json::json!({ "releases": list })),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
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
/// blocking pool, streaming the files; a reader that stops reading holds at most
/// `STREAM_BACKLOG` chunks of at most `LOG_CHUNK` bytes.
async fn logs(handle: &Handle, log_dir: &Path, name: &str, query: Option<&str>) -> Reply {
    let known = name == "supervisor" || handle.status().iter().any(|s| s.name == name);
    if !known {
        return error(StatusCode::NOT_FOUND, format!("unknown service {name:?}"));
    }
    let query = match LogQuery::parse(query.unwrap_or_default()) {
        Ok(q) => q,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    let (tail, since, follow) = (query.tail, query.since, query.follow);
    let dir = log_dir.join(name);
    let service = name.to_owned();
    let (tx, rx) = tokio::sync::mpsc::channel(STREAM_BACKLOG);
    tokio::task::spawn_blocking(move || {
        use crate::logs::read::{self, Select};
        let mut out = ChannelWriter::new(tx);
        let Ok(cursor) = read::print(&dir, &service, Select { last: tail, since }, &mut out) else { return };
        if follow {
            let _ = read::follow(&dir, cursor, &mut out, Duration::from_millis(100));
        }
    });
    stream(rx)
}

/// `/v1/logs`'s query string: `tail=N`, `since_s=S` (seconds back from now), `follow=1`.
#[derive(Debug, PartialEq, Eq)]
struct LogQuery {
    tail: Option<usize>,
    since: Option<std::time::SystemTime>,
    follow: bool,
}

impl LogQuery {
    /// A value that is not a number, or a `since_s` reaching back before the epoch, is a bad
    /// request, not a panic or a silent default.
    fn parse(query: &str) -> Result<LogQuery, String> {
        let param = |key: &str| query.split('&').find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='));
        let number = |key: &str| -> Result<Option<u64>, String> {
            param(key)
                .map(|v| v.parse::<u64>().map_err(|_| format!("{key}={v:?} is not a whole number")))
                .transpose()
        };
        let tail = number("tail")?.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        let since = match number("since_s")? {
            None => None,
            Some(s) => Some(
                std::time::SystemTime::now()
                    .checked_sub(Duration::from_secs(s))
                    .filter(|t| *t >= std::time::UNIX_EPOCH)
                    .ok_or_else(|| format!("since_s={s} reaches back before 1970"))?,
            ),
        };
        let follow = param("follow").is_some_and(|v| v == "1" || v == "true");
        Ok(LogQuery { tail, since, follow })
    }
}

/// The most one chunk of a log stream holds: a reader that stops reading pins at most
/// `STREAM_BACKLOG` of them (4 MiB), whatever the size of the log or of its lines.
const LOG_CHUNK: usize = 16 * 1024;

/// `io::Write` into a response stream, in chunks of at most `LOG_CHUNK` bytes, sent when full
/// or flushed; fails once the client has gone.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Bytes>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn new(tx: tokio::sync::mpsc::Sender<Bytes>) -> ChannelWriter {
        ChannelWriter { tx, buf: Vec::with_capacity(LOG_CHUNK) }
    }

    fn send(&mut self) -> io::Result<()> {
        let chunk = Bytes::copy_from_slice(&self.buf);
        self.buf.clear();
        self.tx.blocking_send(chunk).map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
    }
}

impl io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(LOG_CHUNK - self.buf.len());
        self.buf.extend_from_slice(&buf[..n]);
        if self.buf.len() == LOG_CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.send()?;
        }
        if self.tx.is_closed() { Err(io::Error::from(io::ErrorKind::BrokenPipe)) } else { Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_since_reaching_before_the_epoch_is_a_bad_request() {
        // regression: `since_s=<huge>` subtracted from now and panicked the connection task
        assert!(LogQuery::parse("since_s=18446744073709551615").is_err());
        assert!(LogQuery::parse("since_s=99999999999").is_err());
        assert!(LogQuery::parse("since_s=-1").is_err());
        assert!(LogQuery::parse("tail=x").is_err());
        let q = LogQuery::parse("tail=5&since_s=60&follow=1").unwrap();
        assert_eq!((q.tail, q.follow), (Some(5), true));
        assert!(q.since.is_some_and(|t| t < std::time::SystemTime::now()));
        assert_eq!(LogQuery::parse("").unwrap(), LogQuery { tail: None, since: None, follow: false });
    }

    #[test]
    fn a_log_stream_sends_chunks_no_bigger_than_log_chunk() {
        use std::io::Write;
        let (tx, mut rx) = tokio::sync::mpsc::channel(STREAM_BACKLOG);
        let mut out = ChannelWriter::new(tx);
        let big = vec![b'x'; 5 * LOG_CHUNK / 2];
        out.write_all(&big).unwrap();
        out.write_all(b"end\n").unwrap();
        out.flush().unwrap();
        drop(out);
        let mut sizes = Vec::new();
        while let Ok(chunk) = rx.try_recv() {
            sizes.push(chunk.len());
        }
        assert_eq!(sizes, [LOG_CHUNK, LOG_CHUNK, LOG_CHUNK / 2 + 4]);
    }
}
