//! The NATS link (`[nats]`): one async-nats client on a thread of its own, connecting and
//! reconnecting in the background (with the client's backoff), and a bounded queue in front
//! of it. NATS being away never blocks or slows supervision: events are queued and sent once
//! it is back, the oldest dropped and counted when the queue is full; requests (parity) and
//! acknowledged publishes (disarm, arm) wait at most their timeout. Its state and counters
//! show in `status` and `/metrics`.

pub(crate) mod events;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::client::RequestErrorKind;
use hyper::body::Bytes;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{Notify, oneshot};

use crate::config::{Nats, NatsAuth};

/// How many events wait for NATS before the oldest are dropped.
pub(crate) const QUEUE: usize = 4096;

/// Why the link could not be made (the servers being away is not one: it connects later).
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    #[error("nats.{key}: cannot read {path}: {source}")]
    File { key: &'static str, path: String, source: std::io::Error },
    #[error("nats: {0}")]
    Connect(String),
    #[error("cannot start the NATS thread: {0}")]
    Thread(std::io::Error),
}

/// Why a request got no reply, kept apart: nobody subscribes (the server says so at once),
/// nobody replied in time, or NATS could not be asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum NoReply {
    NoResponders,
    TimedOut(Duration),
    Failed(String),
}

impl NoReply {
    /// A stable label for evidence and events: `no_responders`, `timeout`, `error`.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            NoReply::NoResponders => "no_responders",
            NoReply::TimedOut(_) => "timeout",
            NoReply::Failed(_) => "error",
        }
    }
}

impl std::fmt::Display for NoReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoReply::NoResponders => f.write_str("no responders: nobody subscribes to the subject"),
            NoReply::TimedOut(d) => write!(f, "no reply within {}", humantime::format_duration(*d)),
            NoReply::Failed(why) => f.write_str(why),
        }
    }
}

/// The link's state as status and metrics show it (the counters are the metrics' own).
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// 0 connecting (never connected yet), 1 connected, 2 disconnected.
    state: AtomicU8,
    pub(crate) published: Counter,
    pub(crate) dropped: Counter,
    pub(crate) queued: Gauge,
}

impl Stats {
    pub(crate) fn state(&self) -> &'static str {
        match self.state.load(Ordering::Relaxed) {
            1 => "connected",
            2 => "disconnected",
            _ => "connecting",
        }
    }

    pub(crate) fn connected(&self) -> bool {
        self.state.load(Ordering::Relaxed) == 1
    }
}

/// A message on its way out, in order with every other.
struct Outgoing {
    subject: String,
    payload: Bytes,
    /// Told once the server has it (a flush after it), for an acknowledged publish.
    ack: Option<oneshot::Sender<Result<(), String>>>,
    /// Set when the publisher stopped waiting: it must not go out late.
    abandoned: Arc<AtomicBool>,
}

/// A handle on the link; clones share it.
#[derive(Clone)]
pub(crate) struct Link {
    client: async_nats::Client,
    queue: Arc<Mutex<VecDeque<Outgoing>>>,
    wake: Arc<Notify>,
    pub(crate) stats: Arc<Stats>,
    /// How long an acknowledged publish waits (`[nats] timeout`).
    pub(crate) timeout: Duration,
    /// The runtime of the link's thread.
    runtime: tokio::runtime::Handle,
}

impl Link {
    /// The link for `cfg`, its client and sender on a thread of their own. Returns at once:
    /// the servers may be away, it connects when they are there.
    pub(crate) fn start(cfg: &Nats) -> Result<Link, LinkError> {
        let rt =
            tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(LinkError::Thread)?;
        let stats = Arc::new(Stats::default());
        let wake = Arc::new(Notify::new());
        let client = rt.block_on(connect(cfg, Arc::clone(&stats), Arc::clone(&wake)))?;
        let link = Link {
            client,
            queue: Arc::default(),
            wake,
            stats,
            timeout: cfg.timeout.0,
            runtime: rt.handle().clone(),
        };
        let sender = link.clone();
        std::thread::Builder::new()
            .name("titan-nats".into())
            .spawn(move || rt.block_on(sender.send_queued()))
            .map_err(LinkError::Thread)?;
        Ok(link)
    }

    /// How `status` shows the link.
    pub(crate) fn status(&self) -> crate::supervisor::status::NatsStatus {
        crate::supervisor::status::NatsStatus {
            state: self.stats.state().to_owned(),
            published: self.stats.published.get(),
            dropped: self.stats.dropped.get(),
            queued: u64::try_from(self.stats.queued.get()).unwrap_or(0),
        }
    }

    /// Runs `task` on the link's thread.
    pub(crate) fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.runtime.spawn(task);
    }

    /// Queues `payload` for `subject`; never waits. When the queue is full the oldest message
    /// is dropped and counted.
    pub(crate) fn publish(&self, subject: String, payload: Bytes) {
        self.enqueue(Outgoing { subject, payload, ack: None, abandoned: Arc::default() });
    }

    fn enqueue(&self, out: Outgoing) {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if queue.len() >= QUEUE {
            queue.pop_front();
            self.stats.dropped.inc();
        }
        queue.push_back(out);
        self.stats.queued.set(queue.len() as i64);
        drop(queue);
        self.wake.notify_one();
    }

    /// Publishes `payload` after everything queued before it and waits until the server has
    /// it (a flush: its PONG comes after it processed what came before), within the link's
    /// timeout; one not sent by then never is.
    pub(crate) async fn publish_acked(&self, subject: &str, payload: Bytes) -> Result<(), String> {
        if !self.stats.connected() {
            return Err(format!("NATS is not connected ({})", self.stats.state()));
        }
        let (ack, acked) = oneshot::channel();
        let abandoned = Arc::new(AtomicBool::new(false));
        let out = Outgoing {
            subject: subject.to_owned(),
            payload,
            ack: Some(ack),
            abandoned: Arc::clone(&abandoned),
        };
        self.enqueue(out);
        match tokio::time::timeout(self.timeout, acked).await {
            Ok(Ok(result)) => result.map_err(|e| format!("publish on {subject}: {e}")),
            Ok(Err(_)) => Err(format!("publish on {subject}: the NATS link went away")),
            Err(_) => {
                abandoned.store(true, Ordering::Release);
                Err(format!(
                    "publish on {subject}: not acknowledged within {}",
                    humantime::format_duration(self.timeout)
                ))
            }
        }
    }

    /// Requests on `subject` and returns the reply's payload, within `timeout`.
    pub(crate) async fn request(
        &self,
        subject: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, NoReply> {
        if !self.stats.connected() {
            return Err(NoReply::Failed(format!("NATS is not connected ({})", self.stats.state())));
        }
        let request = async_nats::Request::new().payload(payload).timeout(Some(timeout));
        // the client's own timeout, and ours in case the request cannot even be sent
        let asked = self.client.send_request(subject.to_owned(), request);
        match tokio::time::timeout(timeout + Duration::from_millis(100), asked).await {
            Ok(Ok(message)) => Ok(message.payload),
            Ok(Err(e)) => Err(match e.kind() {
                RequestErrorKind::NoResponders => NoReply::NoResponders,
                RequestErrorKind::TimedOut => NoReply::TimedOut(timeout),
                _ => NoReply::Failed(e.to_string()),
            }),
            Err(_) => Err(NoReply::TimedOut(timeout)),
        }
    }

    /// Sends what is queued while connected, oldest first; waits while NATS is away.
    async fn send_queued(self) {
        loop {
            let next = if self.stats.connected() { self.pop() } else { None };
            let Some(out) = next else {
                // woken by a publish or a connection event; polled now and then regardless
                let _ = tokio::time::timeout(Duration::from_secs(1), self.wake.notified()).await;
                continue;
            };
            if out.abandoned.load(Ordering::Acquire) {
                continue;
            }
            let sent = self.client.publish(out.subject.clone(), out.payload.clone());
            match tokio::time::timeout(Duration::from_secs(5), sent).await {
                Ok(Ok(())) => {
                    self.stats.published.inc();
                    if let Some(ack) = out.ack {
                        let flushed = self.client.flush().await.map_err(|e| e.to_string());
                        let _ = ack.send(flushed);
                    }
                }
                _ => {
                    // not taken: back at the front, tried again once connected
                    self.queue.lock().unwrap_or_else(|p| p.into_inner()).push_front(out);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    fn pop(&self) -> Option<Outgoing> {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let next = queue.pop_front();
        self.stats.queued.set(queue.len() as i64);
        next
    }
}

/// The client, connecting in the background, its state kept in `stats`.
async fn connect(cfg: &Nats, stats: Arc<Stats>, wake: Arc<Notify>) -> Result<async_nats::Client, LinkError> {
    let options = async_nats::ConnectOptions::new()
        .name(&cfg.name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(3))
        .event_callback(move |event| {
            let (stats, wake) = (Arc::clone(&stats), Arc::clone(&wake));
            async move {
                match event {
                    async_nats::Event::Connected => {
                        tracing::info!("connected to NATS");
                        stats.state.store(1, Ordering::Relaxed);
                    }
                    async_nats::Event::Disconnected => {
                        tracing::warn!("lost NATS: reconnecting");
                        stats.state.store(2, Ordering::Relaxed);
                    }
                    other => tracing::debug!("NATS: {other}"),
                }
                wake.notify_one();
            }
        });
    let options = match &cfg.auth {
        NatsAuth::None => options,
        NatsAuth::UserPassword { user, password } => {
            options.user_and_password(user.expose().to_owned(), password.expose().to_owned())
        }
        NatsAuth::Token(token) => options.token(token.expose().to_owned()),
        NatsAuth::Nkey(seed) => options.nkey(seed.expose().to_owned()),
        NatsAuth::CredsFile(path) => options.credentials_file(path).await.map_err(|source| {
            LinkError::File { key: "creds_file", path: path.display().to_string(), source }
        })?,
    };
    let options = match &cfg.ca_file {
        Some(ca) => {
            // read now: a CA file that is not there would only show as a link never up
            std::fs::File::open(ca).map_err(|source| LinkError::File {
                key: "ca_file",
                path: ca.display().to_string(),
                source,
            })?;
            options.add_root_certificates(ca.clone())
        }
        None => options,
    };
    options.connect(cfg.urls.join(",")).await.map_err(|e| LinkError::Connect(e.to_string()))
}
