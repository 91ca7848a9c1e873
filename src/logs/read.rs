//! Reading a service's log back, straight from the log directory (no daemon needed): the
//! rotated files in time order, compressed or not, then `current.log`; the last N lines or
//! those since a time; and following `current.log` across rotations without losing a line
//! (`follow`). Only whole records of `current.log` are read: one still being written waits.
//!
//! Memory stays flat whatever is asked: every file is streamed through one `BUF`-sized
//! buffer (`.gz` through a streaming decoder), never held whole. A read is planned first —
//! where printing starts, as a file and a byte offset into its content — then printed from
//! there to the end. `tail` reads plain files backwards from their end; `since` skips the
//! files rotated before it by their names and scans the rest forwards.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use flate2::read::MultiGzDecoder;

use super::rotated;

mod follow;

pub use follow::follow;

/// The read buffer: what one read holds of a file at a time, and the most it writes at once.
pub const BUF: usize = 64 * 1024;
/// The most of one line kept to read its stamp. JSON records carry `ts` after the line (the
/// keys are sorted), and the longest captured line (64 KiB, `capture::MAX_LINE`) escapes to
/// at most 6 bytes a byte; a longer line whose stamp is beyond this counts as unstamped.
const HEAD_MAX: usize = 512 * 1024;
/// The longest stamp at the start of a text record (nanoseconds and an offset fit).
const STAMP_MAX: usize = 40;

/// A log that could not be read, or the output that could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write the log out: {0}")]
    Write(#[source] io::Error),
}

fn read_error(path: &Path) -> impl Fn(io::Error) -> ReadError + '_ {
    move |source| ReadError::Read { path: path.to_owned(), source }
}

/// A service's log files, oldest first, `current.log` last.
pub fn files(dir: &Path, service: &str) -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = rotated::list(dir, service).into_iter().map(|r| r.path).collect();
    all.push(dir.join("current.log"));
    all
}

/// Which lines to print.
#[derive(Clone, Copy, Debug, Default)]
pub struct Select {
    /// Only the last N lines.
    pub last: Option<usize>,
    /// Only records from the first one stamped at or after this time on.
    pub since: Option<SystemTime>,
}

/// Where following continues: the `current.log` that was read, still open (so a rotation in
/// between loses nothing), how much of it was printed (whole records), and which rotated
/// files are not to be read again.
#[derive(Debug)]
pub struct Cursor {
    file: Option<File>,
    offset: u64,
    service: String,
    /// The rotated files printed or older than `file`, by `plain_name`: any other one listed
    /// later was rotated after them.
    seen: HashSet<String>,
}

impl Cursor {
    /// The length of `current.log` that was printed.
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

/// Prints the selected lines of every file, oldest first, each ending in a newline. Returns
/// where following continues.
///
/// `since` selects from the first record stamped at or after it to the end. Records are in
/// time order, so a record before that one is older — except an unstamped line (no stamp
/// that parses) right before it, after the last record stamped earlier: it is kept.
pub fn print(dir: &Path, service: &str, select: Select, out: &mut impl Write) -> Result<Cursor, ReadError> {
    let log = Log::open(dir, service)?;
    let mut start = Start::default();
    if let Some(since) = select.since {
        start = since_start(&log, since)?;
    }
    if let Some(n) = select.last {
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        start = start.max(tail_start(&log, n, start.file)?);
    }
    for i in start.file..log.len() {
        let skip = if i == start.file { start.skip } else { 0 };
        if let Some(mut r) = log.stream(i, skip)? {
            copy_lines(&mut r, out, &log.path(i))?;
        }
    }
    out.flush().map_err(ReadError::Write)?;
    Ok(log.into_cursor())
}

/// Where printing starts: a file of the log (its index, oldest first) and how many bytes of
/// its content to skip. Bytes of the content, decompressed, so that a plain file gzipped
/// while it is read (renamed to `.gz`) is still read from the same place.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Start {
    file: usize,
    skip: u64,
}

/// A reader over one file's content.
type Stream = Box<dyn BufRead>;

/// The log as it was when the read began: the rotated files by name, and `current.log` open
/// with the length of its whole records then (what is appended later is for `follow`).
struct Log {
    service: String,
    rotated: Vec<PathBuf>,
    current: Option<(File, u64)>,
    current_path: PathBuf,
    /// What `Cursor::seen` starts with.
    seen: HashSet<String>,
}

impl Log {
    /// `current.log` is opened before the rotated files are listed (`follow::Look`): rotated
    /// meanwhile, it is found among them and read as `current.log`, the files listed after it
    /// left for `follow`; not found there, the directory is looked at again. Missing twice in
    /// a row (not just between a rename and the new file), there is none: the rotated files
    /// are the whole log.
    fn open(dir: &Path, service: &str) -> Result<Log, ReadError> {
        let current_path = dir.join("current.log");
        let mut missing = 0;
        let look = loop {
            let look = follow::Look::at(dir, service, &HashSet::new())?;
            missing = if look.current.is_none() { missing + 1 } else { 0 };
            if look.settled || look.renamed.is_some() || missing == 2 {
                break look;
            }
        };
        let certain = if look.current.is_none() { look.listed.len() } else { look.certain };
        let seen = look.listed[..certain].iter().map(|r| plain_name(&r.path)).collect();
        let rotated = look.listed.into_iter().take(look.renamed.unwrap_or(usize::MAX)).map(|r| r.path);
        let err = |source| ReadError::Read { path: current_path.clone(), source };
        let current = match look.current {
            Some(f) => {
                let len = f.metadata().map_err(err)?.len();
                let whole = complete_len(&f, 0, len).map_err(err)?;
                Some((f, whole))
            }
            None => None,
        };
        Ok(Log { service: service.to_owned(), rotated: rotated.collect(), current, current_path, seen })
    }

    /// Files, `current.log` (the last) counted even when it does not exist.
    fn len(&self) -> usize {
        self.rotated.len() + 1
    }

    fn path(&self, i: usize) -> PathBuf {
        self.rotated.get(i).unwrap_or(&self.current_path).clone()
    }

    fn into_cursor(self) -> Cursor {
        let (file, offset) = match self.current {
            Some((file, offset)) => (Some(file), offset),
            None => (None, 0),
        };
        Cursor { file, offset, service: self.service, seen: self.seen }
    }

    /// File `i` and its length if it is a plain file that is still there.
    fn plain(&self, i: usize) -> Result<Option<(File, u64)>, ReadError> {
        let Some(path) = self.rotated.get(i) else {
            let Some((file, len)) = &self.current else { return Ok(None) };
            return Ok(Some((file.try_clone().map_err(read_error(&self.current_path))?, *len)));
        };
        if is_gz(path) {
            return Ok(None);
        }
        match crate::runtime::files::open_read(path) {
            Ok(f) => {
                let len = f.metadata().map_err(read_error(path))?.len();
                Ok(Some((f, len)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(read_error(path)(e)),
        }
    }

    /// File `i`'s content from byte `skip` on; `None` when the file is gone (retention
    /// deleted it). A plain rotated file gzipped meanwhile is read from its `.gz`.
    fn stream(&self, i: usize, skip: u64) -> Result<Option<Stream>, ReadError> {
        let path = self.path(i);
        if let Some((mut file, len)) = self.plain(i)? {
            file.seek(SeekFrom::Start(skip)).map_err(read_error(&path))?;
            return Ok(Some(Box::new(BufReader::with_capacity(BUF, file.take(len.saturating_sub(skip))))));
        }
        if i == self.rotated.len() {
            return Ok(None);
        }
        let Some(mut r) = gz_stream(&path)? else { return Ok(None) };
        io::copy(&mut r.by_ref().take(skip), &mut io::sink()).map_err(read_error(&path))?;
        Ok(Some(r))
    }
}

fn is_gz(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "gz")
}

/// The `.gz` of a rotated file (`path` itself, or the one it was compressed to), decompressed;
/// `None` when it is gone (retention deleted it).
fn gz_stream(path: &Path) -> Result<Option<Stream>, ReadError> {
    let gz = if is_gz(path) { path.to_owned() } else { path.with_extension("log.gz") };
    match crate::runtime::files::open_read(&gz) {
        Ok(f) => Ok(Some(Box::new(BufReader::with_capacity(BUF, MultiGzDecoder::new(BufReader::new(f)))))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(read_error(&gz)(e)),
    }
}

/// A rotated file's name without `.gz`: the same before and after it is compressed.
fn plain_name(path: &Path) -> String {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    name.strip_suffix(".gz").unwrap_or(&name).to_owned()
}

/// How much of `file`'s first `len` bytes is whole records: up to its last newline at or after
/// `from`, else `from` (a record being written is read once its newline is there).
fn complete_len(file: &File, from: u64, len: u64) -> io::Result<u64> {
    let mut block = vec![0u8; BUF];
    let mut end = len;
    while end > from {
        let start = end.saturating_sub(BUF as u64).max(from);
        let block = &mut block[..(end - start) as usize];
        file.read_exact_at(block, start)?;
        if let Some(i) = block.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(from)
}

/// Copies `r` to `out` a buffer at a time, ending a last line that lacks its newline.
fn copy_lines(r: &mut Stream, out: &mut impl Write, path: &Path) -> Result<(), ReadError> {
    let mut last = b'\n';
    loop {
        let chunk = r.fill_buf().map_err(read_error(path))?;
        let Some(&end) = chunk.last() else { break };
        out.write_all(chunk).map_err(ReadError::Write)?;
        last = end;
        let n = chunk.len();
        r.consume(n);
    }
    if last != b'\n' {
        out.write_all(b"\n").map_err(ReadError::Write)?;
    }
    Ok(())
}

/// How far back the last lines reach in one file.
enum Tail {
    /// The lines still needed start at this byte.
    At(u64),
    /// All of the file is needed, and it has this many lines: look further back.
    Short(u64),
}

/// Where the last `n` lines start, reading the newest files first and none older than
/// `floor`. Plain files are read backwards from their end, a block at a time, until enough
/// newlines are found. A `.gz` cannot be read backwards, so it is read forwards: once to
/// count its lines and, only if it holds more than are needed, once more to find the byte
/// where the needed ones start (and printing decompresses up to there again). That costs
/// decompressing one file two or three times instead of once, for memory that does not grow
/// with `n` (a ring of the last `n` lines, or even of their offsets, would).
fn tail_start(log: &Log, n: u64, floor: usize) -> Result<Start, ReadError> {
    let mut need = n;
    if need == 0 {
        return Ok(Start { file: log.len(), skip: 0 });
    }
    for i in (floor..log.len()).rev() {
        let path = log.path(i);
        let tail = match log.plain(i)? {
            Some((file, len)) => last_lines_plain(&file, len, need).map_err(read_error(&path))?,
            None => last_lines_stream(log, i, need)?,
        };
        match tail {
            Tail::At(skip) => return Ok(Start { file: i, skip }),
            Tail::Short(lines) => need -= lines,
        }
    }
    Ok(Start { file: floor, skip: 0 })
}

/// The last `need` lines of `file`'s first `len` bytes, reading backwards a block at a time.
fn last_lines_plain(file: &File, len: u64, need: u64) -> io::Result<Tail> {
    if len == 0 {
        return Ok(Tail::Short(0));
    }
    let mut block = vec![0u8; BUF];
    let mut found = 0;
    // every newline starts a line after it, except one that is the very last byte
    let mut end = len - 1;
    while end > 0 {
        let from = end.saturating_sub(BUF as u64);
        let block = &mut block[..(end - from) as usize];
        file.read_exact_at(block, from)?;
        for (i, _) in block.iter().enumerate().rev().filter(|(_, b)| **b == b'\n') {
            found += 1;
            if found == need {
                return Ok(Tail::At(from + i as u64 + 1));
            }
        }
        end = from;
    }
    found += 1; // the line at the start of the file
    Ok(if found == need { Tail::At(0) } else { Tail::Short(found) })
}

/// The last `need` lines of file `i` read forwards: counted first, then skipped to.
fn last_lines_stream(log: &Log, i: usize, need: u64) -> Result<Tail, ReadError> {
    let path = log.path(i);
    let Some(mut r) = log.stream(i, 0)? else { return Ok(Tail::Short(0)) };
    let lines = count_lines(&mut r).map_err(read_error(&path))?;
    if lines < need {
        return Ok(Tail::Short(lines));
    }
    let Some(mut r) = log.stream(i, 0)? else { return Ok(Tail::Short(0)) };
    Ok(Tail::At(skip_lines(&mut r, lines - need).map_err(read_error(&path))?))
}

fn count_lines(r: &mut Stream) -> io::Result<u64> {
    let (mut lines, mut last) = (0u64, b'\n');
    loop {
        let chunk = r.fill_buf()?;
        let Some(&end) = chunk.last() else { break };
        lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
        last = end;
        let n = chunk.len();
        r.consume(n);
    }
    Ok(lines + u64::from(last != b'\n'))
}

/// Reads past `n` lines of `r`; the bytes they took.
fn skip_lines(r: &mut Stream, mut n: u64) -> io::Result<u64> {
    let mut bytes = 0;
    while n > 0 {
        let chunk = r.fill_buf()?;
        if chunk.is_empty() {
            break;
        }
        let mut used = chunk.len();
        for (i, _) in chunk.iter().enumerate().filter(|(_, b)| **b == b'\n') {
            n -= 1;
            if n == 0 {
                used = i + 1;
                break;
            }
        }
        r.consume(used);
        bytes += used as u64;
    }
    Ok(bytes)
}

/// Where the records since `since` start: just after the last record stamped earlier that
/// comes before the first one stamped at or after it. Files rotated before `since` are not
/// opened (see `first_maybe_since`); the others are scanned forwards, a line at a time.
fn since_start(log: &Log, since: SystemTime) -> Result<Start, ReadError> {
    let first = first_maybe_since(&log.rotated, &log.service, since);
    let mut start = Start { file: first, skip: 0 };
    let mut head = Vec::new();
    for i in first..log.len() {
        let path = log.path(i);
        let Some(mut r) = log.stream(i, 0)? else { continue };
        let mut at = 0;
        while let Some(len) = next_line(&mut r, &mut head).map_err(read_error(&path))? {
            at += len;
            match stamp_of(&head) {
                Some(t) if t >= since => return Ok(start),
                Some(_) => start = Start { file: i, skip: at },
                None => {}
            }
        }
    }
    Ok(start)
}

/// The first rotated file that may hold a record stamped at or after `since` (all of them
/// may not: the index past the last). A rotated file is named for when it was rotated, after
/// every record in it was written; one named a millisecond or more before `since` (its
/// name's precision) holds only older records.
fn first_maybe_since(rotated: &[PathBuf], service: &str, since: SystemTime) -> usize {
    let newer = |p: &PathBuf| name_stamp(p, service).is_none_or(|t| t + Duration::from_millis(1) > since);
    rotated.iter().position(newer).unwrap_or(rotated.len())
}

/// The stamp in a rotated file's name, `<service>-20261123T160000.123Z[-n].log[.gz]`.
fn name_stamp(path: &Path, service: &str) -> Option<SystemTime> {
    let rest = path.file_name()?.to_str()?.strip_prefix(service)?.strip_prefix('-')?;
    let stamp = rest.get(..rest.find('Z')? + 1)?;
    let s = |a: usize, b: usize| stamp.get(a..b);
    let text = format!(
        "{}-{}-{}T{}:{}:{}",
        s(0, 4)?,
        s(4, 6)?,
        s(6, 8)?,
        s(9, 11)?,
        s(11, 13)?,
        s(13, stamp.len())?
    );
    humantime::parse_rfc3339_weak(&text).ok()
}

/// Reads the next line of `r`, keeping its first `HEAD_MAX` bytes in `head`; its length, or
/// `None` at the end.
fn next_line(r: &mut Stream, head: &mut Vec<u8>) -> io::Result<Option<u64>> {
    head.clear();
    let mut len = 0;
    loop {
        let chunk = r.fill_buf()?;
        if chunk.is_empty() {
            return Ok((len > 0).then_some(len));
        }
        let (take, ended) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        let room = HEAD_MAX.saturating_sub(head.len());
        head.extend_from_slice(&chunk[..take.min(room)]);
        r.consume(take);
        len += take as u64;
        if ended {
            return Ok(Some(len));
        }
    }
}

/// The time a record was written, from its start (`<stamp> <out|err> ...`) or, for a JSON
/// record, its `ts` (the supervisor's own JSON lines: `timestamp`). `None` when it has no
/// stamp that parses.
fn stamp_of(line: &[u8]) -> Option<SystemTime> {
    if line.first() == Some(&b'{') {
        #[derive(serde::Deserialize)]
        struct Stamped {
            #[serde(alias = "timestamp")]
            ts: String,
        }
        let record: Stamped = serde_json::from_slice(line).ok()?;
        return humantime::parse_rfc3339_weak(&record.ts).ok();
    }
    // only the stamp's own bytes are decoded, never a slice that could end inside a character
    let end = match line.iter().take(STAMP_MAX + 1).position(u8::is_ascii_whitespace) {
        Some(end) => end,
        None if line.len() <= STAMP_MAX => line.len(),
        None => return None,
    };
    humantime::parse_rfc3339_weak(std::str::from_utf8(&line[..end]).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> Option<SystemTime> {
        humantime::parse_rfc3339_weak(rfc3339).ok()
    }

    #[test]
    fn a_rotated_file_is_dated_by_its_name_whatever_the_service_is_called() {
        let stamp = at("2026-11-23T16:00:00.123Z");
        assert_eq!(name_stamp(Path::new("/l/api-20261123T160000.123Z.log"), "api"), stamp);
        assert_eq!(name_stamp(Path::new("api-2-20261123T160000.123Z-3.log.gz"), "api-2"), stamp);
        assert_eq!(name_stamp(Path::new("api-garbage.log"), "api"), None);
        assert_eq!(name_stamp(Path::new("api-2026Z.log"), "api"), None);
    }

    #[test]
    fn stamps_are_read_from_text_and_json_records_and_nothing_else() {
        let t = at("2026-01-01T00:00:00.123Z");
        assert_eq!(stamp_of(b"2026-01-01T00:00:00.123Z out hello\n"), t);
        assert_eq!(stamp_of(b"2026-01-01T00:00:00.123Z"), t);
        assert_eq!(stamp_of(b"{\"line\":\"x\",\"stream\":\"out\",\"ts\":\"2026-01-01T00:00:00.123Z\"}\n"), t);
        assert_eq!(stamp_of(b"{\"timestamp\":\"2026-01-01T00:00:00.123Z\",\"level\":\"INFO\"}"), t);
        assert!(stamp_of("2026-01-01T00:00:00.123456789Z  INFO é".as_bytes()).is_some());
        for unstamped in [&b""[..], b"\n", b"hello world", b"{\"line\":\"x\"}", b"{broken", b"\xff\xfe out x"]
        {
            assert_eq!(stamp_of(unstamped), None, "{unstamped:?}");
        }
    }
}
