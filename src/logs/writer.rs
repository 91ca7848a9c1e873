//! Per-service log file: `<log_dir>/<service>/current.log`, one line per output line as
//! `<RFC 3339 UTC ms> <out|err> <line>` (or JSON lines). Directories 0750, files 0640.
//! One writer per service, shared by the readers of all its runs.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::config::{LogFormat, Logs};

/// Which pipe a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Out,
    Err,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Out => "out",
            Stream::Err => "err",
        }
    }
}

/// The file of the current log of one service.
pub struct LogWriter {
    path: PathBuf,
    file: File,
    format: LogFormat,
    buf: Vec<u8>,
    /// Lines that could not be written (disk full, ...), not yet reported in the file.
    dropped: u64,
}

pub type SharedWriter = Arc<Mutex<LogWriter>>;

/// Creates `dir` (and parents) with mode 0750.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o750).create(dir)
}

impl LogWriter {
    /// Opens (appending) `<log_dir>/<service>/current.log`.
    pub fn open(log_dir: &Path, service: &str, spec: &Logs) -> io::Result<Self> {
        let dir = log_dir.join(service);
        create_dir(&dir)?;
        let path = dir.join("current.log");
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(&path)?;
        Ok(LogWriter {
            path,
            file,
            format: spec.format,
            buf: Vec::with_capacity(8192),
            dropped: 0,
        })
    }

    pub fn shared(self) -> SharedWriter {
        Arc::new(Mutex::new(self))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Adds one line (without its newline) to the pending batch.
    pub fn push(&mut self, stream: Stream, line: &[u8], stamp: &str) {
        match self.format {
            LogFormat::Text => {
                self.buf.extend_from_slice(stamp.as_bytes());
                self.buf.push(b' ');
                self.buf.extend_from_slice(stream.as_str().as_bytes());
                self.buf.push(b' ');
                self.buf.extend_from_slice(line);
                self.buf.push(b'\n');
            }
            LogFormat::Json => {
                let text = String::from_utf8_lossy(line);
                let v = serde_json::json!({ "ts": stamp, "stream": stream.as_str(), "line": text });
                self.buf.extend_from_slice(v.to_string().as_bytes());
                self.buf.push(b'\n');
            }
        }
    }

    /// Writes the pending batch with one system call. A failed write drops the batch and counts
    /// its lines; the next successful write reports them first.
    pub fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        if self.dropped > 0 {
            let marker = format!(
                "{} err [titan-supervisor] dropped {} lines\n",
                timestamp(SystemTime::now()),
                self.dropped
            );
            if self.file.write_all(marker.as_bytes()).is_ok() {
                self.dropped = 0;
            }
        }
        if self.file.write_all(&self.buf).is_err() {
            self.dropped += self.buf.iter().filter(|&&b| b == b'\n').count() as u64;
        }
        self.buf.clear();
    }

    /// A line from the supervisor itself about this service (`[titan-supervisor] ...`).
    pub fn note(&mut self, text: &str) {
        let line = format!("[titan-supervisor] {text}");
        self.push(Stream::Err, line.as_bytes(), &timestamp(SystemTime::now()));
        self.flush();
    }
}

/// RFC 3339 UTC with milliseconds, `2026-11-23T14:59:43.123Z`.
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::units::{Duration, Size};

    fn logs(format: LogFormat) -> Logs {
        Logs {
            max_size: Size::mib(10),
            retain: Duration::from_secs(60),
            max_files: 3,
            compress: true,
            format,
        }
    }

    #[test]
    fn lines_are_stamped_with_their_stream_and_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mut w = LogWriter::open(dir.path(), "api", &logs(LogFormat::Text)).unwrap();
        w.push(Stream::Out, b"hello", "2026-01-01T00:00:00.000Z");
        w.push(Stream::Err, b"\xff bytes", "2026-01-01T00:00:00.001Z");
        w.flush();
        let text = std::fs::read(w.path()).unwrap();
        assert_eq!(
            text,
            b"2026-01-01T00:00:00.000Z out hello\n2026-01-01T00:00:00.001Z err \xff bytes\n"
        );
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            (mode(w.path()), mode(&dir.path().join("api"))),
            (0o640, 0o750)
        );
    }

    #[test]
    fn json_lines_carry_the_same_fields() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LogWriter::open(dir.path(), "api", &logs(LogFormat::Json)).unwrap();
        w.push(Stream::Out, b"say \"hi\"", "T");
        w.flush();
        let line = std::fs::read_to_string(w.path()).unwrap();
        let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(
            (v["ts"].as_str(), v["stream"].as_str(), v["line"].as_str()),
            (Some("T"), Some("out"), Some("say \"hi\""))
        );
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123);
        assert_eq!(timestamp(t), "2023-11-14T22:13:20.123Z");
    }
}
