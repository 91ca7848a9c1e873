//! Everything the test service prints: flushed control lines, warnings, the environment dump, and
//! the numbered lines of `--lines` (`<name> <stream> <seq:010> xxx…\n`, one global sequence).

use std::io::{self, Write};
use std::time::{Duration, Instant};

use super::opts::{Lines, Stream};

/// Batched numbered lines are written once a stream's batch reaches this size.
const BATCH_BYTES: usize = 64 << 10;
/// Sequence numbers are printed modulo this, so every line keeps its exact size.
const SEQ_MODULUS: u64 = 10_000_000_000;

/// How long last words before an exit may wait for a blocked stdout.
pub(crate) const LAST_WORDS: Duration = Duration::from_secs(1);

/// Prints one control line on stdout and flushes it; write errors (a closed pipe) are ignored.
pub(crate) fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = out.write_all(line.as_bytes()).and_then(|()| out.write_all(b"\n")).and_then(|()| out.flush());
}

/// Like [`say`], but gives up waiting after `limit`: for last words before exiting, which must
/// not hang when nobody drains stdout (a full pipe blocks the write while holding the lock).
pub(crate) fn say_within(line: &str, limit: Duration) {
    let (done, finished) = std::sync::mpsc::channel();
    let line = line.to_owned();
    let spawned = std::thread::Builder::new().spawn(move || {
        say(&line);
        let _ = done.send(());
    });
    if spawned.is_ok() {
        let _ = finished.recv_timeout(limit);
    }
}

/// Prints `test-service: <what>: <problem>` on stderr; write errors are ignored.
pub(crate) fn warn(what: &str, problem: &str) {
    let _ = writeln!(io::stderr().lock(), "test-service: {what}: {problem}");
}

/// Prints the environment as `KEY=VALUE` lines sorted by key, then `--- env end`.
pub(crate) fn print_env() {
    let mut vars: Vec<(String, String)> = std::env::vars_os()
        .map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned()))
        .collect();
    vars.sort();
    let mut text = String::new();
    for (k, v) in vars {
        text.push_str(&format!("{k}={v}\n"));
    }
    text.push_str("--- env end");
    say(&text);
}

/// Prints the numbered lines `lines` asks for; returns once done or once a stream is closed.
pub(crate) fn run_lines(name: &str, lines: &Lines) -> io::Result<()> {
    let mut out = Batch::new(Stream::Out, name, lines.bytes);
    let mut err = Batch::new(Stream::Err, name, lines.bytes);
    let start = Instant::now();
    let mut seq: u64 = 1;
    while lines.count == 0 || seq <= lines.count {
        if let Some(due) = due(start, seq, lines.rate) {
            if Instant::now() < due {
                out.flush()?;
                err.flush()?;
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
            }
        }
        match target(lines.stream, seq) {
            Stream::Err => err.push(seq)?,
            _ => out.push(seq)?,
        }
        seq += 1;
    }
    out.flush()?;
    err.flush()
}

/// When line `seq` (1-based) is due at `rate` lines per second; `None` when unlimited.
fn due(start: Instant, seq: u64, rate: f64) -> Option<Instant> {
    if rate <= 0.0 {
        return None;
    }
    // Clamped to about 30 years so absurdly low rates cannot overflow `Instant`.
    let secs = ((seq - 1) as f64 / rate).min(1e9);
    Some(start + Duration::from_secs_f64(secs))
}

/// The stream line `seq` goes to: `both` alternates, starting with stdout.
fn target(stream: Stream, seq: u64) -> Stream {
    match stream {
        Stream::Both if seq % 2 == 1 => Stream::Out,
        Stream::Both => Stream::Err,
        s => s,
    }
}

/// Whole numbered lines waiting to be written to one stream, plus the line template.
struct Batch {
    stream: Stream,
    template: Vec<u8>,
    seq_at: usize,
    buf: Vec<u8>,
}

impl Batch {
    fn new(stream: Stream, name: &str, bytes: usize) -> Batch {
        let tag = if stream == Stream::Err { "err" } else { "out" };
        let mut template = format!("{name} {tag} ").into_bytes();
        let seq_at = template.len();
        template.extend_from_slice(b"0000000000 ");
        template.resize(bytes - 1, b'x');
        template.push(b'\n');
        Batch { stream, template, seq_at, buf: Vec::new() }
    }

    fn push(&mut self, seq: u64) -> io::Result<()> {
        let mut n = seq % SEQ_MODULUS;
        for digit in self.template[self.seq_at..self.seq_at + 10].iter_mut().rev() {
            *digit = b'0' + (n % 10) as u8;
            n /= 10;
        }
        self.buf.extend_from_slice(&self.template);
        if self.buf.len() >= BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the batch under the stream's lock, so control lines never land inside a line.
    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let result = match self.stream {
            Stream::Err => write_locked(&mut io::stderr().lock(), &self.buf),
            _ => write_locked(&mut io::stdout().lock(), &self.buf),
        };
        self.buf.clear();
        result
    }
}

fn write_locked(w: &mut impl Write, buf: &[u8]) -> io::Result<()> {
    w.write_all(buf)?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_has_exact_size_and_sequence() {
        let mut b = Batch::new(Stream::Err, "api", 32);
        assert!(b.push(42).is_ok());
        assert_eq!(b.buf, b"api err 0000000042 xxxxxxxxxxxx\n");
        assert_eq!(b.buf.len(), 32);
    }

    #[test]
    fn both_alternates_starting_with_stdout() {
        assert_eq!(target(Stream::Both, 1), Stream::Out);
        assert_eq!(target(Stream::Both, 2), Stream::Err);
        assert_eq!(target(Stream::Err, 1), Stream::Err);
    }
}
