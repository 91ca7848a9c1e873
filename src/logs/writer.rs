//! Per-service log file: `<log_dir>/<service>/current.log`, one record per output line as
//! `<RFC 3339 UTC ms> <out|err> <line>` (or JSON lines). Rotation is by rename, never copy: a
//! record that would take the file past `max_size` goes to a fresh file, and a line too long
//! for any file is split into records marked as continued (`out+`/`err+`, JSON
//! `"partial": true`). A failed write (disk full) is rolled back to the last whole record and
//! counted; the next write that succeeds is preceded by a marker saying how many were lost.
//! Directories 0750, files 0640.

use std::fs::File;
#[cfg(test)]
use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::rotated;
use crate::config::{LogFormat, Logs};
use crate::metrics::LogCounters;

/// Which pipe a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stream {
    Out,
    Err,
}

impl Stream {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Stream::Out => "out",
            Stream::Err => "err",
        }
    }
}

/// Called with every file rotated away (to compress it and apply retention).
pub(crate) type OnRotate = Arc<dyn Fn(PathBuf) + Send + Sync>;

/// A file that is not rotated for age gets rotated once it holds lines older than this.
pub(crate) const MAX_AGE: Duration = Duration::from_secs(86_400);

/// The current log of one service.
pub(crate) struct LogWriter {
    dir: PathBuf,
    service: String,
    path: PathBuf,
    /// `current.log`, open while it is written to; `None` once it has been quiet for a while
    /// (10,000 quiet services hold no 10,000 descriptors) or when a rotation could not make a
    /// new one. The next batch opens it (again).
    file: Option<File>,
    /// When a record was last written.
    written_at: Instant,
    /// Bytes in `current.log`.
    size: u64,
    /// When the oldest record in `current.log` was written.
    since: Option<SystemTime>,
    max_size: u64,
    format: LogFormat,
    /// Formatted records not yet written, and where each ends.
    buf: Vec<u8>,
    ends: Vec<usize>,
    /// Records lost to failed writes, and the last error, not yet reported in the file.
    dropped: u64,
    dropped_why: String,
    on_rotate: Option<OnRotate>,
    counters: LogCounters,
    /// What keeps the file from being written or rotated now (its directory deleted and not
    /// made again, a rename refused), once reported: warned when it starts, told when it ends.
    trouble: Option<String>,
}

pub(crate) type SharedWriter = Arc<Mutex<LogWriter>>;

/// Makes `dir` (and parents) with mode 0750, or checks the one there is the supervisor's own
/// and writable by nobody else (`runtime::files::private_dir`).
pub(crate) fn create_dir(dir: &Path) -> io::Result<()> {
    crate::runtime::files::private_dir(dir)
}

/// `current.log`, appended to: never through a link, never anything but a regular file.
fn open_current(path: &Path) -> io::Result<File> {
    crate::runtime::files::open_append(path, 0o640)
}

impl LogWriter {
    /// Opens (appending) `<log_dir>/<service>/current.log`; rotates it at once when it already
    /// holds lines older than `MAX_AGE`.
    pub(crate) fn open(
        log_dir: &Path,
        service: &str,
        spec: &Logs,
        on_rotate: Option<OnRotate>,
    ) -> io::Result<Self> {
        let dir = log_dir.join(service);
        create_dir(&dir)?;
        let path = dir.join("current.log");
        let file = open_current(&path)?;
        let size = file.metadata()?.len();
        let since = if size > 0 { first_stamp(&path) } else { None };
        let mut w = LogWriter {
            dir,
            service: service.to_owned(),
            path,
            file: Some(file),
            written_at: Instant::now(),
            size,
            since,
            max_size: spec.max_size.bytes(),
            format: spec.format,
            buf: Vec::new(),
            ends: Vec::new(),
            dropped: 0,
            dropped_why: String::new(),
            on_rotate,
            counters: LogCounters::default(),
            trouble: None,
        };
        w.rotate_if_older(SystemTime::now(), MAX_AGE);
        Ok(w)
    }

    /// New settings for the records from now on (a reload changed `logs`): the size limit
    /// and format, and what happens to rotated files. A file already past a smaller limit is
    /// rotated before its next record.
    pub(crate) fn configure(&mut self, spec: &Logs, on_rotate: Option<OnRotate>) {
        self.max_size = spec.max_size.bytes();
        self.format = spec.format;
        self.on_rotate = on_rotate;
    }

    /// Counts what this writer does in `counters` (the `/metrics` families).
    pub(crate) fn with_counters(mut self, counters: LogCounters) -> Self {
        self.counters = counters;
        self
    }

    pub(crate) fn shared(self) -> SharedWriter {
        Arc::new(Mutex::new(self))
    }

    #[cfg(test)]
    fn path(&self) -> &Path {
        &self.path
    }

    /// Adds one line (without its newline) to the pending batch; `continues` marks a piece of
    /// a longer line whose rest follows.
    pub(crate) fn push(&mut self, stream: Stream, line: &[u8], stamp: &str, continues: bool) {
        let start = self.buf.len();
        format_record(&mut self.buf, self.format, stream, line, stamp, continues);
        let len = (self.buf.len() - start) as u64;
        if len > self.max_size && line.len() > 1 {
            // too long for any file: split the line and try each half again
            self.buf.truncate(start);
            let mid = line.len() / 2;
            self.push(stream, &line[..mid], stamp, true);
            self.push(stream, &line[mid..], stamp, continues);
            return;
        }
        self.ends.push(self.buf.len());
    }

    /// Writes the pending records in as few writes as possible, rotating before any record
    /// that would not fit in the current file.
    pub(crate) fn flush(&mut self) {
        if self.ends.is_empty() {
            return;
        }
        let (buf, ends) = (std::mem::take(&mut self.buf), std::mem::take(&mut self.ends));
        if !self.ensure_file() {
            // nowhere to write: every record of the batch is lost, and counted
            self.lose_rest(&ends, 0);
            return self.recycle(buf, ends);
        }
        self.report_dropped();
        let (mut run_start, mut prev_end) = (0, 0);
        for &end in &ends {
            if self.size + (end - run_start) as u64 > self.max_size {
                if !self.write_run(&buf[run_start..prev_end], count_records(&ends, run_start, prev_end)) {
                    self.lose_rest(&ends, prev_end);
                    return self.recycle(buf, ends);
                }
                if !self.rotate() {
                    // the file may not grow past max_size: what does not fit is lost, counted
                    self.lose_rest(&ends, prev_end);
                    return self.recycle(buf, ends);
                }
                run_start = prev_end;
            }
            prev_end = end;
        }
        if !self.write_run(&buf[run_start..prev_end], count_records(&ends, run_start, prev_end)) {
            self.lose_rest(&ends, prev_end);
        }
        self.recycle(buf, ends);
    }

    /// Keeps the buffers' capacity for the next batch.
    fn recycle(&mut self, mut buf: Vec<u8>, mut ends: Vec<usize>) {
        buf.clear();
        ends.clear();
        self.buf = buf;
        self.ends = ends;
    }

    fn lose_rest(&mut self, ends: &[usize], from: usize) {
        let lost = ends.iter().filter(|&&e| e > from).count() as u64;
        self.dropped += lost;
        self.counters.dropped.inc_by(lost);
    }

    /// Appends whole records; on failure rolls the file back to the last whole record.
    fn write_run(&mut self, bytes: &[u8], records: u64) -> bool {
        if bytes.is_empty() {
            return true;
        }
        let Some(file) = self.file.as_mut() else { return false };
        match file.write_all(bytes) {
            Ok(()) => {
                self.written_at = Instant::now();
                self.size += bytes.len() as u64;
                self.counters.bytes.inc_by(bytes.len() as u64);
                self.counters.lines.inc_by(records);
                self.since.get_or_insert_with(SystemTime::now);
                true
            }
            Err(e) => {
                let _ = file.set_len(self.size);
                self.dropped += records;
                self.counters.dropped.inc_by(records);
                self.dropped_why = describe(&e);
                false
            }
        }
    }

    /// Writes the marker for lines lost earlier, once writing works again.
    fn report_dropped(&mut self) {
        if self.dropped == 0 {
            return;
        }
        let text = format!("[titan-supervisor] dropped {} lines: {}", self.dropped, self.dropped_why);
        let mut marker = Vec::new();
        format_record(
            &mut marker,
            self.format,
            Stream::Err,
            text.as_bytes(),
            &timestamp(SystemTime::now()),
            false,
        );
        let fits = self.size + marker.len() as u64 <= self.max_size || self.size == 0 || self.rotate();
        if fits && self.write_run(&marker, 0) {
            self.dropped = 0;
        }
    }

    /// Makes sure records go to a file at `path`: opened again when it was closed, and one
    /// whose directory was deleted under it (its link count is 0: whatever is written there is
    /// lost to an invisible inode that still fills the disk) replaced by a fresh `current.log`
    /// in a directory made again. False when that cannot be done (the records are then counted
    /// as dropped).
    fn ensure_file(&mut self) -> bool {
        use std::os::unix::fs::MetadataExt;
        let deleted = match &self.file {
            Some(f) if f.metadata().is_ok_and(|m| m.nlink() > 0) => return true,
            Some(_) => true,
            None => false,
        };
        let reopened = create_dir(&self.dir).and_then(|()| open_current(&self.path));
        match reopened.and_then(|f| Ok((f.metadata()?.len(), f))) {
            Ok((size, file)) => {
                if deleted || size < self.size {
                    self.since = None; // a new file, not the one its first stamp was read from
                }
                self.file = Some(file);
                self.size = size;
                if deleted {
                    self.trouble(Ok("its log file was deleted: made it again".into()));
                } else if self.trouble.is_some() {
                    self.trouble(Ok(format!("writing {} again", self.path.display())));
                }
                true
            }
            Err(e) => {
                let what = if deleted {
                    "its log file was deleted and cannot be made again"
                } else {
                    "cannot open its log file"
                };
                self.dropped_why = format!("{what}: {}", describe(&e));
                self.trouble(Err(self.dropped_why.clone()));
                false
            }
        }
    }

    /// Closes `current.log` when nothing was written to it for `idle` (the maintenance pass
    /// asks every minute); the next record opens it again.
    pub(crate) fn close_if_idle(&mut self, idle: Duration) {
        if self.buf.is_empty() && self.written_at.elapsed() >= idle {
            self.file = None;
        }
    }

    /// Reports trouble once when it starts (`Err`), and once when it is over (`Ok`), instead
    /// of a warning for every batch of lines.
    fn trouble(&mut self, now: Result<String, String>) {
        match now {
            Err(why) if self.trouble.is_none() => {
                tracing::warn!(service = %self.service, "{why}");
                self.trouble = Some(why);
            }
            Err(_) => {}
            Ok(news) => {
                tracing::warn!(service = %self.service, "{news}");
                self.trouble = None;
            }
        }
    }

    /// `current.log` becomes `<service>-<UTC stamp>.log`; a fresh `current.log` takes its place.
    /// False when it could not (the directory refuses the rename, or the new file).
    pub(crate) fn rotate(&mut self) -> bool {
        if self.size == 0 {
            return true;
        }
        let target = rotated::fresh_name(&self.dir, &self.service, SystemTime::now());
        if let Err(e) = std::fs::rename(&self.path, &target) {
            let why = format!("cannot rotate {}: {}", self.path.display(), describe(&e));
            self.dropped_why = why.clone();
            self.trouble(Err(why));
            return false;
        }
        self.counters.rotations.inc();
        if let Some(f) = &self.on_rotate {
            f(target);
        }
        self.size = 0;
        self.since = None;
        match open_current(&self.path) {
            Ok(file) => {
                self.file = Some(file);
                if self.trouble.is_some() {
                    self.trouble(Ok(format!("rotating {} again", self.path.display())));
                }
                true
            }
            Err(e) => {
                // the rotated file is done with; the next batch makes a new one (ensure_file)
                self.file = None;
                self.dropped_why = format!("cannot open a new {}: {}", self.path.display(), describe(&e));
                self.trouble(Err(self.dropped_why.clone()));
                false
            }
        }
    }

    /// Rotates a non-empty file whose oldest record is older than `age`.
    pub(crate) fn rotate_if_older(&mut self, now: SystemTime, age: Duration) {
        let old = self.since.is_some_and(|t| now.duration_since(t).is_ok_and(|d| d >= age));
        if self.size > 0 && old {
            let _ = self.rotate();
        }
    }

    /// A line from the supervisor itself about this service (`[titan-supervisor] ...`).
    pub(crate) fn note(&mut self, text: &str) {
        let line = format!("[titan-supervisor] {text}");
        self.push(Stream::Err, line.as_bytes(), &timestamp(SystemTime::now()), false);
        self.flush();
    }
}

impl Write for LogWriter {
    /// Whole lines of text written by the supervisor's own logger become records as they are.
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        for line in bytes.split_inclusive(|&b| b == b'\n') {
            let start = self.buf.len();
            self.buf.extend_from_slice(line);
            if !line.ends_with(b"\n") {
                self.buf.push(b'\n');
            }
            if (self.buf.len() - start) as u64 > self.max_size {
                self.buf.truncate(start + self.max_size as usize - 1);
                self.buf.push(b'\n');
            }
            self.ends.push(self.buf.len());
        }
        self.flush();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        LogWriter::flush(self);
        Ok(())
    }
}

/// Appends one record (with its newline) to `buf`.
fn format_record(
    buf: &mut Vec<u8>,
    format: LogFormat,
    stream: Stream,
    line: &[u8],
    stamp: &str,
    continues: bool,
) {
    match format {
        LogFormat::Text => {
            buf.extend_from_slice(stamp.as_bytes());
            buf.push(b' ');
            buf.extend_from_slice(stream.as_str().as_bytes());
            if continues {
                buf.push(b'+');
            }
            buf.push(b' ');
            buf.extend_from_slice(line);
            buf.push(b'\n');
        }
        LogFormat::Json => {
            let text = String::from_utf8_lossy(line);
            let mut v = serde_json::json!({ "ts": stamp, "stream": stream.as_str(), "line": text });
            if continues {
                v["partial"] = serde_json::Value::Bool(true);
            }
            buf.extend_from_slice(v.to_string().as_bytes());
            buf.push(b'\n');
        }
    }
}

fn count_records(ends: &[usize], from: usize, to: usize) -> u64 {
    ends.iter().filter(|&&e| e > from && e <= to).count() as u64
}

fn describe(e: &io::Error) -> String {
    match e.raw_os_error().and_then(errno_name) {
        Some(name) => name.to_owned(),
        None => e.to_string(),
    }
}

/// The symbolic name of an errno (`ENOSPC`), as operators grep for it.
fn errno_name(code: i32) -> Option<&'static str> {
    Some(match nix::Error::from_raw(code) {
        nix::Error::ENOSPC => "ENOSPC",
        nix::Error::EDQUOT => "EDQUOT",
        nix::Error::EIO => "EIO",
        nix::Error::EROFS => "EROFS",
        nix::Error::EFBIG => "EFBIG",
        _ => return None,
    })
}

/// The time of the first record of a log file, from its leading timestamp.
fn first_stamp(path: &Path) -> Option<SystemTime> {
    let mut head = [0u8; 64];
    let n = crate::runtime::files::open_read(path).ok()?.read(&mut head).ok()?;
    // the head may end inside a UTF-8 character: the stamp is at its start either way
    let text = String::from_utf8_lossy(&head[..n]);
    let stamp = text.split([' ', '"']).find(|t| t.len() >= 20 && t.ends_with('Z'));
    stamp
        .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
        .or_else(|| std::fs::metadata(path).ok()?.modified().ok())
}

/// RFC 3339 UTC with milliseconds, `2026-11-23T14:59:43.123Z`.
pub(crate) fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::units::{Duration as D, Size};

    fn logs(format: LogFormat, max_size: u64) -> Logs {
        Logs { max_size: Size(max_size), retain: D::from_secs(60), max_files: 100, compress: false, format }
    }

    /// Every file of a service's log dir, oldest first, as (name, bytes).
    fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut out: Vec<(String, Vec<u8>)> = super::rotated::list(dir, "api")
            .into_iter()
            .map(|r| {
                (r.path.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&r.path).unwrap())
            })
            .collect();
        out.push(("current.log".into(), std::fs::read(dir.join("current.log")).unwrap()));
        out
    }

    #[test]
    fn lines_are_stamped_with_their_stream_and_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mut w = LogWriter::open(dir.path(), "api", &logs(LogFormat::Text, 1 << 20), None).unwrap();
        w.push(Stream::Out, b"hello", "2026-01-01T00:00:00.000Z", false);
        w.push(Stream::Err, b"\xff bytes", "2026-01-01T00:00:00.001Z", false);
        w.flush();
        let text = std::fs::read(w.path()).unwrap();
        assert_eq!(text, b"2026-01-01T00:00:00.000Z out hello\n2026-01-01T00:00:00.001Z err \xff bytes\n");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(w.path()), mode(&dir.path().join("api"))), (0o640, 0o750));
    }

    fn line(w: &mut LogWriter, i: usize) {
        w.push(
            Stream::Out,
            format!("line {i:05} {}", "x".repeat(90)).as_bytes(),
            "2026-01-01T00:00:00.000Z",
            false,
        );
    }

    #[test]
    fn a_deleted_log_dir_is_made_again_and_nothing_is_written_into_the_void() {
        // regression: the writer appended to the unlinked inode (every line lost uncounted, the
        // invisible file filling the disk) and the directory was never made again
        let root = tempfile::tempdir().unwrap();
        let mut w = LogWriter::open(root.path(), "api", &logs(LogFormat::Text, 1 << 20), None).unwrap();
        line(&mut w, 1);
        w.flush();
        std::fs::remove_dir_all(root.path().join("api")).unwrap();
        line(&mut w, 2);
        w.flush();
        let text = std::fs::read_to_string(root.path().join("api/current.log")).expect("made again");
        assert!(text.contains("line 00002") && !text.contains("line 00001"), "{text}");
        // a directory that cannot be made again: the lines are counted, then reported
        std::fs::remove_dir_all(root.path().join("api")).unwrap();
        std::fs::write(root.path().join("api"), "a file in the way").unwrap();
        line(&mut w, 3);
        w.flush();
        assert_eq!(w.counters.dropped.get(), 1);
        std::fs::remove_file(root.path().join("api")).unwrap();
        line(&mut w, 4);
        w.flush();
        let text = std::fs::read_to_string(root.path().join("api/current.log")).unwrap();
        assert!(
            text.contains("dropped 1 lines: its log file was deleted and cannot be made again"),
            "{text}"
        );
        assert!(text.contains("line 00004"));
    }

    #[test]
    fn a_log_dir_that_refuses_rotation_never_grows_past_max_size() {
        // regression: a directory that refused the rename let current.log grow to 107 KB
        // against a 16 KiB limit; `chattr +i` makes the directory refuse it, even to root
        let root = tempfile::tempdir().unwrap();
        let mut w = LogWriter::open(root.path(), "api", &logs(LogFormat::Text, 4096), None).unwrap();
        let dir = root.path().join("api");
        let chattr = |flag: &str| std::process::Command::new("chattr").arg(flag).arg(&dir).status().unwrap();
        assert!(chattr("+i").success(), "chattr (e2fsprogs) on an ext4 /tmp");
        for i in 0..200 {
            line(&mut w, i);
        }
        w.flush();
        let size = std::fs::metadata(dir.join("current.log")).unwrap().len();
        let lost = w.counters.dropped.get();
        assert!(chattr("-i").success());
        assert!(size <= 4096, "{size} bytes");
        assert!(lost > 150, "{lost} lines counted as lost");
        line(&mut w, 999);
        w.flush();
        let text = std::fs::read_to_string(dir.join("current.log")).unwrap();
        assert!(text.contains(&format!("dropped {lost} lines: cannot rotate")), "{text}");
        assert!(text.contains("line 00999"));
    }

    #[test]
    fn a_file_whose_head_ends_inside_a_utf8_character_is_still_rotated_for_age() {
        // regression: the first 64 bytes were read as UTF-8 or not at all, so such a file never
        // had a first stamp and was never rotated for age
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("api");
        std::fs::create_dir(&dir).unwrap();
        let line = format!("2020-01-01T00:00:00.000Z out {}\n", "é".repeat(30));
        assert!(!line.is_char_boundary(64), "byte 64 falls inside a character");
        std::fs::write(dir.join("current.log"), &line).unwrap();
        let w = LogWriter::open(root.path(), "api", &logs(LogFormat::Text, 1 << 20), None).unwrap();
        assert_eq!(w.size, 0, "rotated at once: its first line is years old");
        assert_eq!(super::rotated::list(&dir, "api").len(), 1);
    }

    #[test]
    fn a_quiet_log_holds_no_descriptor_and_opens_again_on_the_next_line() {
        // regression: every service kept its log descriptor for life (10,000 services, 10,000)
        let root = tempfile::tempdir().unwrap();
        let mut w = LogWriter::open(root.path(), "api", &logs(LogFormat::Text, 1 << 20), None).unwrap();
        line(&mut w, 1);
        w.flush();
        w.close_if_idle(Duration::from_secs(3600));
        assert!(w.file.is_some(), "written to just now");
        w.close_if_idle(Duration::ZERO);
        assert!(w.file.is_none());
        line(&mut w, 2);
        w.flush();
        assert!(w.file.is_some());
        let text = std::fs::read_to_string(root.path().join("api/current.log")).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert_eq!(w.counters.dropped.get(), 0);
    }

    #[test]
    fn json_lines_carry_the_same_fields() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LogWriter::open(dir.path(), "api", &logs(LogFormat::Json, 1 << 20), None).unwrap();
        w.push(Stream::Out, b"say \"hi\"", "T", false);
        w.flush();
        let line = std::fs::read_to_string(w.path()).unwrap();
        let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(
            (v["ts"].as_str(), v["stream"].as_str(), v["line"].as_str()),
            (Some("T"), Some("out"), Some("say \"hi\""))
        );
    }

    #[test]
    fn rotation_keeps_every_file_under_max_size_and_every_line_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let rotated = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&rotated);
        let on_rotate: OnRotate = Arc::new(move |p| seen.lock().unwrap().push(p));
        let mut w =
            LogWriter::open(dir.path(), "api", &logs(LogFormat::Text, 4096), Some(on_rotate)).unwrap();
        for i in 0..500 {
            w.push(
                Stream::Out,
                format!("line {i:05} {}", "x".repeat(50)).as_bytes(),
                "2026-01-01T00:00:00.000Z",
                false,
            );
            if i % 37 == 0 {
                w.flush();
            }
        }
        w.flush();
        let all = files(&dir.path().join("api"));
        assert!(all.len() > 5, "{} files", all.len());
        assert_eq!(rotated.lock().unwrap().len(), all.len() - 1);
        let mut numbers = Vec::new();
        for (name, bytes) in &all {
            assert!(bytes.len() <= 4096, "{name} has {} bytes", bytes.len());
            assert!(bytes.ends_with(b"\n"), "{name} ends mid-record");
            numbers.extend(String::from_utf8_lossy(bytes).lines().map(|l| l[34..39].parse::<u32>().unwrap()));
        }
        assert_eq!(numbers, (0..500).collect::<Vec<_>>());
    }

    #[test]
    fn a_line_longer_than_max_size_is_split_into_marked_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LogWriter::open(dir.path(), "api", &logs(LogFormat::Text, 4096), None).unwrap();
        let long: Vec<u8> = (0..20_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        w.push(Stream::Err, &long, "2026-01-01T00:00:00.000Z", false);
        w.flush();
        let mut joined = Vec::new();
        let mut markers = Vec::new();
        for (_, bytes) in files(&dir.path().join("api")) {
            assert!(bytes.len() <= 4096);
            for rec in bytes.split(|&b| b == b'\n').filter(|r| !r.is_empty()) {
                let tag = &rec[25..29];
                markers.push(tag == b"err+");
                joined.extend_from_slice(&rec[if tag == b"err+" { 30 } else { 29 }..]);
            }
        }
        assert_eq!(joined, long);
        assert_eq!(markers.last(), Some(&false), "the last piece ends the line");
        assert!(markers[..markers.len() - 1].iter().all(|&m| m), "every other piece says it continues");
    }

    #[test]
    fn a_full_disk_drops_whole_records_and_says_so_when_space_returns() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LogWriter::open(dir.path(), "api", &logs(LogFormat::Text, 1 << 20), None).unwrap();
        w.push(Stream::Out, b"before", "T0", false);
        w.flush();
        let good = w.file.replace(OpenOptions::new().append(true).open("/dev/full").unwrap());
        for i in 0..3 {
            w.push(Stream::Out, format!("lost {i}").as_bytes(), "T1", false);
            w.flush();
        }
        w.file = good;
        w.push(Stream::Out, b"after", "T2", false);
        w.flush();
        let text = std::fs::read_to_string(w.path()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "T0 out before");
        assert!(lines[1].ends_with(" err [titan-supervisor] dropped 3 lines: ENOSPC"), "{text}");
        assert_eq!(lines[2], "T2 out after");
    }

    #[test]
    fn a_file_holding_day_old_lines_is_rotated_when_opened() {
        let dir = tempfile::tempdir().unwrap();
        create_dir(&dir.path().join("api")).unwrap();
        std::fs::write(dir.path().join("api/current.log"), "2020-01-01T00:00:00.000Z out old\n").unwrap();
        let w = LogWriter::open(dir.path(), "api", &logs(LogFormat::Text, 1 << 20), None).unwrap();
        assert_eq!(std::fs::metadata(w.path()).unwrap().len(), 0);
        assert_eq!(super::rotated::list(&dir.path().join("api"), "api").len(), 1);
    }
}
