//! Capture of a service's stdout and stderr: a pipe per stream, read by a task on the log
//! thread that joins partial lines, splits overlong ones, and hands each batch to the
//! service's `LogWriter` — and, while a `log` health check waits, matches lines against its
//! pattern. The actor never touches the pipes.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use regex::bytes::Regex;
use tokio::io::unix::AsyncFd;

use super::writer::{SharedWriter, Stream, timestamp};

/// Longest line kept whole; a longer one is written in pieces of this size.
pub(crate) const MAX_LINE: usize = 64 * 1024;

thread_local! {
    /// One read buffer for every reader on the actor's thread: reads never await while they
    /// hold it, and 200 services would otherwise keep 25 MiB of buffers.
    static READ_BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; 64 * 1024]);
}

/// The ends of one run's pipes: the write ends go to the child, the read ends to `capture`.
pub(crate) struct Pipes {
    pub(crate) out_read: OwnedFd,
    pub(crate) out_write: OwnedFd,
    pub(crate) err_read: OwnedFd,
    pub(crate) err_write: OwnedFd,
}

/// Two close-on-exec pipes (the spawner dup2s the write ends onto 1 and 2).
pub(crate) fn pipes() -> io::Result<Pipes> {
    let (out_read, out_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let (err_read, err_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    Ok(Pipes { out_read, out_write, err_read, err_write })
}

/// Watches output for a `log` health check: once a line matches while `armed`, calls `on_match`
/// (once per arming).
#[derive(Clone)]
pub(crate) struct Watch {
    pub(crate) pattern: Regex,
    pub(crate) armed: Arc<AtomicBool>,
    pub(crate) on_match: Arc<dyn Fn() + Send + Sync>,
}

impl Watch {
    pub(crate) fn check(&self, line: &[u8]) {
        if self.armed.load(Ordering::Relaxed)
            && self.pattern.is_match(line)
            && self.armed.swap(false, Ordering::AcqRel)
        {
            (self.on_match)();
        }
    }
}

/// Reads one pipe of a service until its end, writing whole records.
pub(crate) struct Reader {
    fd: AsyncFd<OwnedFd>,
    lines: Lines,
}

/// Line assembly of one stream.
struct Lines {
    stream: Stream,
    writer: SharedWriter,
    watch: Option<Watch>,
    /// The start of a line whose end has not arrived yet.
    partial: Vec<u8>,
}

impl Reader {
    /// Must be called on the runtime that will run it (it registers the pipe there).
    pub(crate) fn new(
        fd: OwnedFd,
        stream: Stream,
        writer: SharedWriter,
        watch: Option<Watch>,
    ) -> io::Result<Self> {
        let flags = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL)?);
        fcntl(&fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        // SAFETY: the OwnedFd moves into the AsyncFd, so it stays open for the AsyncFd's life.
        let fd = unsafe { AsyncFd::register(fd) }?;
        Ok(Reader { fd, lines: Lines { stream, writer, watch, partial: Vec::new() } })
    }

    /// Reads until the end of the pipe; or, once `handover` turns true (an upgrade hands the
    /// pipe to the next process), stops reading, leaving what is unread in the pipe, and writes
    /// its unfinished line as a record the next reader continues.
    pub(crate) async fn run(mut self, mut handover: tokio::sync::watch::Receiver<bool>) {
        let mut asked = true; // whether a handover can still be asked for
        loop {
            if *handover.borrow_and_update() {
                return self.lines.hand_over();
            }
            let (fd, lines) = (&self.fd, &mut self.lines);
            let readable = tokio::select! {
                biased;
                changed = handover.changed(), if asked => {
                    asked = changed.is_ok();
                    continue;
                }
                readable = fd.readable() => readable,
            };
            let Ok(mut ready) = readable else { break };
            let read = READ_BUF.with(|buf| {
                let mut buf = buf.borrow_mut();
                let n = nix::unistd::read(fd.get_ref(), &mut buf)?;
                lines.take(&buf[..n]);
                Ok(n)
            });
            match read {
                Ok(0) => break,
                Ok(_) => {}
                Err(nix::Error::EAGAIN) => ready.clear_ready(),
                Err(nix::Error::EINTR) => {}
                Err(_) => break,
            }
        }
        self.lines.finish();
    }
}

impl Lines {
    /// Splits a chunk into lines, keeping an unfinished last line for the next chunk.
    fn take(&mut self, chunk: &[u8]) {
        let stamp = timestamp(SystemTime::now());
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut rest = chunk;
        while let Some(nl) = memchr(rest) {
            let (line, tail) = rest.split_at(nl);
            rest = &tail[1..];
            if self.partial.is_empty() {
                emit(&mut writer, self.stream, line, &stamp, self.watch.as_ref(), false);
            } else {
                self.partial.extend_from_slice(line);
                let whole = std::mem::take(&mut self.partial);
                emit(&mut writer, self.stream, &whole, &stamp, self.watch.as_ref(), false);
            }
        }
        self.partial.extend_from_slice(rest);
        while self.partial.len() >= MAX_LINE {
            let piece: Vec<u8> = self.partial.drain(..MAX_LINE).collect();
            // a line longer than MAX_LINE: this piece is continued by the next record
            emit(&mut writer, self.stream, &piece, &stamp, self.watch.as_ref(), true);
        }
        writer.flush();
    }

    /// At a handover, an unfinished line is written as a piece continued by the next record
    /// (`out+`): the next process reads its rest from the pipe.
    fn hand_over(&mut self) {
        self.write_partial(true);
    }

    /// At end of stream, a last line without newline is still a line.
    fn finish(&mut self) {
        self.write_partial(false);
    }

    /// Writes the unfinished line, if any; `continues`: its rest follows in another record.
    fn write_partial(&mut self, continues: bool) {
        if self.partial.is_empty() {
            return;
        }
        let stamp = timestamp(SystemTime::now());
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let line = std::mem::take(&mut self.partial);
        emit(&mut writer, self.stream, &line, &stamp, self.watch.as_ref(), continues);
        writer.flush();
    }
}

fn emit(
    writer: &mut super::writer::LogWriter,
    stream: Stream,
    line: &[u8],
    stamp: &str,
    watch: Option<&Watch>,
    continues: bool,
) {
    if let Some(w) = watch {
        w.check(line);
    }
    writer.push(stream, line, stamp, continues);
}

fn memchr(hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == b'\n')
}
