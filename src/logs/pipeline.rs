//! The log thread: every service's output is read, stamped and written here, on a runtime of
//! its own, so a service flooding its output or a slow disk never holds up the actor. It also
//! rotates quiet files for age every minute. Rotated files go to the compression thread.

use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::capture::{self, Watch};
use super::compress::{self, Compressor, Job};
use super::writer::{self, LogWriter, SharedWriter};
use crate::config::Logs;
use crate::metrics::LogCounters;

/// How often quiet files are checked for age rotation.
const MAINTENANCE: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub(crate) struct Pipeline {
    handle: tokio::runtime::Handle,
    compressor: Compressor,
    writers: Arc<Mutex<Vec<SharedWriter>>>,
    /// Reader tasks still running.
    readers: Arc<AtomicUsize>,
    /// Pipe readers still running, and the word that tells them to hand their pipes over.
    pipe_readers: Arc<AtomicUsize>,
    handover: tokio::sync::watch::Sender<bool>,
}

impl Pipeline {
    /// Starts the log thread and the compression thread.
    pub(crate) fn start() -> io::Result<Pipeline> {
        let compressor = Compressor::start()?;
        let writers: Arc<Mutex<Vec<SharedWriter>>> = Arc::default();
        let (tx, rx) = std::sync::mpsc::channel();
        let maintained = Arc::clone(&writers);
        std::thread::Builder::new().name("titan-logs".into()).spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => return drop(tx.send(Err(e))),
            };
            let _ = tx.send(Ok(rt.handle().clone()));
            rt.block_on(maintain(maintained));
        })?;
        let handle = rx.recv().map_err(|_| io::Error::other("the log thread did not start"))??;
        let (handover, _) = tokio::sync::watch::channel(false);
        Ok(Pipeline {
            handle,
            compressor,
            writers,
            readers: Arc::default(),
            pipe_readers: Arc::default(),
            handover,
        })
    }

    /// Opens a service's log, first finishing compressions a crash interrupted.
    pub(crate) fn open_writer(
        &self,
        log_dir: &Path,
        service: &str,
        spec: &Logs,
        counters: LogCounters,
    ) -> io::Result<SharedWriter> {
        for path in compress::recover(&log_dir.join(service), service) {
            self.compressor.submit(job(service, spec, path));
        }
        let on_rotate = self.on_rotate(service, spec);
        let w = LogWriter::open(log_dir, service, spec, Some(on_rotate))?.with_counters(counters).shared();
        self.writers.lock().unwrap_or_else(|p| p.into_inner()).push(Arc::clone(&w));
        Ok(w)
    }

    /// Applies new settings to a service's open log (a reload changed them): its size limit
    /// and format from the next record on, compression and retention from the next rotation.
    pub(crate) fn configure(&self, writer: &SharedWriter, service: &str, spec: &Logs) {
        let on_rotate = self.on_rotate(service, spec);
        writer.lock().unwrap_or_else(|p| p.into_inner()).configure(spec, Some(on_rotate));
    }

    /// What happens to each file of `service` rotated away: compressed (or not) and retention
    /// applied, on the compression thread.
    fn on_rotate(&self, service: &str, spec: &Logs) -> writer::OnRotate {
        let (compressor, service, spec) = (self.compressor.clone(), service.to_owned(), spec.clone());
        Arc::new(move |path| compressor.submit(job(&service, &spec, path)))
    }

    /// Reads one run's stdout and stderr into `writer` on the log thread.
    pub(crate) fn capture(&self, out: OwnedFd, err: OwnedFd, writer: SharedWriter, watch: Option<Watch>) {
        for (fd, stream) in [(out, writer::Stream::Out), (err, writer::Stream::Err)] {
            let (writer, watch) = (writer.clone(), watch.clone());
            let (pipe_readers, handover) = (Arc::clone(&self.pipe_readers), self.handover.subscribe());
            pipe_readers.fetch_add(1, Ordering::AcqRel);
            self.spawn_reader(async move {
                match capture::Reader::new(fd, stream, writer, watch) {
                    Ok(reader) => reader.run(handover).await,
                    Err(e) => tracing::warn!("cannot read a service's output: {e}"),
                }
                pipe_readers.fetch_sub(1, Ordering::AcqRel);
            });
        }
    }

    /// Tells every pipe reader to stop reading (the pipes go to the next process of an
    /// upgrade), writing the unfinished line it holds as a record the next one continues, and
    /// waits up to `limit` for all of them.
    pub(crate) fn hand_over(&self, limit: Duration) {
        self.handover.send_replace(true);
        let deadline = Instant::now() + limit;
        while self.pipe_readers.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Runs a reader of a service's output (a pipe, a container's log stream) on the log
    /// thread; `drain` waits for it.
    pub(crate) fn spawn_reader(&self, reader: impl Future<Output = ()> + Send + 'static) {
        let readers = Arc::clone(&self.readers);
        readers.fetch_add(1, Ordering::AcqRel);
        self.handle.spawn(async move {
            reader.await;
            readers.fetch_sub(1, Ordering::AcqRel);
        });
    }

    /// Writes a `[titan-supervisor]` line into a service's log, on the log thread (`drain`
    /// waits for it too: the last note before an exit is not lost).
    pub(crate) fn note(&self, writer: &SharedWriter, text: String) {
        let writer = Arc::clone(writer);
        self.spawn_reader(async move { writer.lock().unwrap_or_else(|p| p.into_inner()).note(&text) });
    }

    /// Waits up to `limit` for every reader to reach the end of its pipe (after the services
    /// have stopped) and every note to be written, so their last lines are on disk.
    pub(crate) fn drain(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.readers.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// The compression job of a rotated file of `service`.
fn job(service: &str, spec: &Logs, path: std::path::PathBuf) -> Job {
    Job {
        path,
        service: service.to_owned(),
        compress: spec.compress,
        retain: spec.retain.0,
        max_files: spec.max_files,
    }
}

/// Every minute: rotate files holding lines older than a day, so retention works on quiet
/// services too, and close the files nothing was written to for a minute.
async fn maintain(writers: Arc<Mutex<Vec<SharedWriter>>>) {
    loop {
        tokio::time::sleep(MAINTENANCE).await;
        let all = writers.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for w in all {
            let mut w = w.lock().unwrap_or_else(|p| p.into_inner());
            w.rotate_if_older(SystemTime::now(), writer::MAX_AGE);
            w.close_if_idle(MAINTENANCE);
        }
    }
}
