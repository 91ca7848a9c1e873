//! Where printing starts: a file of the log and a byte in it, for the last N lines (`tail`,
//! plain files read backwards from their end), for the records since a time (`since`, files
//! rotated before it skipped by their names), and back from there to the first piece of any
//! line ending after it that the writer split (`chain`).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::record::{Kind, PEEK_HEAD, PEEK_TAIL, read_head};
use super::{BUF, HEAD_MAX, Log, ReadError, STAMP_MAX, Start, Stream, read_error};

/// How far back from where printing starts the earlier pieces of a line are looked for, past
/// the records of a stream with nothing open: a piece is continued by the next record of its
/// stream, and a stream not heard from for a MiB is taken to have no line open.
const CHAIN_REACH: u64 = 1 << 20;

/// How far back the last lines reach in one file.
enum Tail {
    /// The lines still needed are those ending at or after this byte.
    At(u64),
    /// All of the file is needed, and this many lines end in it: look further back.
    Short(u64),
}

/// Where the first of the last `n` lines ends (the record ending it), reading the newest files
/// first and none older than `floor`. Lines are counted by the records that end one
/// (`Kind::ends_line`): the pieces of a split line count once. Plain files are read backwards
/// from their end, a block at a time. A `.gz` cannot be read backwards, so it is read forwards: once to count
/// its lines and, only if it holds more than are needed, once more to find the byte where the
/// needed ones start (and printing decompresses up to there again). That costs decompressing
/// one file two or three times instead of once, for memory that does not grow with `n` (a
/// ring of the last `n` lines, or even of their offsets, would).
pub(super) fn tail_start(log: &Log, n: u64, floor: usize) -> Result<Start, ReadError> {
    let mut need = n;
    if need == 0 {
        return Ok(log.end());
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

/// The last `need` lines of `file`'s first `len` bytes, reading backwards.
fn last_lines_plain(file: &File, len: u64, need: u64) -> io::Result<Tail> {
    let (mut found, mut at) = (0, None);
    scan_back(file, len, |start, kind| {
        found += u64::from(kind.ends_line());
        if found == need {
            at = Some(start);
        }
        at.is_none()
    })?;
    Ok(at.map_or(Tail::Short(found), Tail::At))
}

/// The last `need` lines of file `i` read forwards: counted first, then passed over.
fn last_lines_stream(log: &Log, i: usize, need: u64) -> Result<Tail, ReadError> {
    let path = log.path(i);
    let Some(mut r) = log.stream(i, 0)? else { return Ok(Tail::Short(0)) };
    let mut lines = 0;
    walk(&mut r, |_, _, kind| {
        lines += u64::from(kind.ends_line());
        true
    })
    .map_err(read_error(&path))?;
    if lines < need {
        return Ok(Tail::Short(lines));
    }
    let (pass, mut passed, mut at) = (lines - need, 0, 0);
    if pass > 0 {
        let Some(mut r) = log.stream(i, 0)? else { return Ok(Tail::Short(0)) };
        walk(&mut r, |start, len, kind| {
            passed += u64::from(kind.ends_line());
            at = start + len;
            passed < pass
        })
        .map_err(read_error(&path))?;
    }
    Ok(Tail::At(at))
}

/// Where each stream stands, looking backwards for the first pieces of open lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chain {
    /// No record of the stream seen yet.
    Unknown,
    /// A line of it is open: its pieces go on further back.
    Open,
    /// Its line before (or its open line's first piece) was found.
    Closed,
}

/// Reading back from `from`, where the earliest first piece of a line still open there is.
struct Chains {
    streams: [Chain; 2],
    start: Start,
}

impl Chains {
    /// A record met reading backwards; whether to read on (`scanned` bytes back so far).
    fn back(&mut self, file: usize, at: u64, kind: Kind, scanned: u64) -> bool {
        match kind {
            Kind::Continued(s) if self.streams[s] != Chain::Closed => {
                self.streams[s] = Chain::Open;
                self.start = Start { file, skip: at };
            }
            Kind::Ends(s) => self.streams[s] = Chain::Closed,
            _ => {}
        }
        !self.done(scanned)
    }

    /// A whole file (or its first `upto` bytes) read forwards, as if read backwards.
    fn file(&mut self, file: usize, r: &mut Stream, upto: Option<u64>) -> io::Result<u64> {
        let (mut first, mut ended, mut read) = ([None; 2], [false; 2], 0);
        walk(r, |at, len, kind| {
            if upto.is_some_and(|u| at >= u) {
                return false;
            }
            match kind {
                Kind::Continued(s) => {
                    first[s].get_or_insert(at);
                }
                Kind::Ends(s) => (first[s], ended[s]) = (None, true),
                Kind::Other => {}
            }
            read = at + len;
            true
        })?;
        for s in 0..2 {
            if self.streams[s] == Chain::Closed {
                continue;
            }
            if let Some(at) = first[s] {
                self.start = self.start.min(Start { file, skip: at });
                self.streams[s] = Chain::Open;
            }
            if ended[s] {
                self.streams[s] = Chain::Closed;
            }
        }
        Ok(read)
    }

    fn done(&self, scanned: u64) -> bool {
        let open = self.streams.contains(&Chain::Open);
        self.streams.iter().all(|s| *s == Chain::Closed) || (!open && scanned >= CHAIN_REACH)
    }
}

/// Where reading starts for the lines ending at or after `from` to be printed whole: at the
/// first piece of each of them that has pieces before it (up to `CHAIN_REACH` back, for a
/// stream that has none open).
pub(super) fn chain_start(log: &Log, from: Start) -> Result<Start, ReadError> {
    if from == Start::default() {
        return Ok(from);
    }
    let mut chains = Chains { streams: [Chain::Unknown; 2], start: from };
    let mut scanned = 0;
    for i in (0..=from.file.min(log.len() - 1)).rev() {
        let path = log.path(i);
        let upto = (i == from.file).then_some(from.skip);
        match log.plain(i)? {
            Some((file, len)) => {
                let end = upto.unwrap_or(len).min(len);
                scan_back(&file, end, |at, kind| chains.back(i, at, kind, scanned + end - at))
                    .map_err(read_error(&path))?;
                scanned += end;
            }
            None => {
                let Some(mut r) = log.stream(i, 0)? else { continue };
                scanned += chains.file(i, &mut r, upto).map_err(read_error(&path))?;
            }
        }
        if chains.done(scanned) {
            break;
        }
    }
    Ok(chains.start)
}

/// Visits the records of `file`'s first `len` bytes from the last to the first, with where
/// each starts and its kind, until `visit` says to stop. Read backwards a block at a time; a
/// record's kind is told by its first bytes (and a JSON one's last), from the block or read.
fn scan_back(file: &File, len: u64, mut visit: impl FnMut(u64, Kind) -> bool) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    let mut block = vec![0u8; BUF];
    let mut peek = Peek::default();
    let mut last = [0u8];
    file.read_exact_at(&mut last, len - 1)?;
    // the end of the record looked for, without its newline
    let mut end = if last[0] == b'\n' { len - 1 } else { len };
    let mut upto = end;
    while upto > 0 {
        let from = upto.saturating_sub(BUF as u64);
        let block = &mut block[..(upto - from) as usize];
        file.read_exact_at(block, from)?;
        for i in (0..block.len()).rev().filter(|&i| block[i] == b'\n') {
            let start = from + i as u64 + 1;
            if !visit(start, peek.kind(file, (block, from), start, end)?) {
                return Ok(());
            }
            end = start - 1;
        }
        upto = from;
    }
    visit(0, peek.kind(file, (&block[..0], 0), 0, end)?);
    Ok(())
}

/// The few bytes that tell a record's kind, taken from the block at hand when they are in it.
#[derive(Default)]
struct Peek {
    head: Vec<u8>,
    tail: Vec<u8>,
}

impl Peek {
    /// The kind of the record whose content is `start..end` of `file`; `block` holds the bytes
    /// from its offset on.
    fn kind(&mut self, file: &File, block: (&[u8], u64), start: u64, end: u64) -> io::Result<Kind> {
        let len = end - start;
        let head = bytes(file, block, start, len.min(PEEK_HEAD), &mut self.head)?;
        if head.first() != Some(&b'{') || len > HEAD_MAX as u64 {
            return Ok(Kind::of(head, &[], len));
        }
        let n = len.min(PEEK_TAIL);
        let tail = bytes(file, block, end - n, n, &mut self.tail)?;
        Ok(Kind::of(head, tail, len))
    }
}

/// `n` bytes of `file` at `at`: from `block` (its bytes and their offset) if they are all in
/// it, else read into `spare`.
fn bytes<'a>(
    file: &File,
    (block, from): (&'a [u8], u64),
    at: u64,
    n: u64,
    spare: &'a mut Vec<u8>,
) -> io::Result<&'a [u8]> {
    if at >= from && at + n <= from + block.len() as u64 {
        let i = (at - from) as usize;
        return Ok(&block[i..i + n as usize]);
    }
    spare.resize(n as usize, 0);
    file.read_exact_at(spare, at)?;
    Ok(spare)
}

/// Visits the records of `r` in order, with where each starts, its length (with its newline)
/// and its kind, until `visit` says to stop.
fn walk(r: &mut Stream, mut visit: impl FnMut(u64, u64, Kind) -> bool) -> io::Result<()> {
    let (mut head, mut at) = (Vec::new(), 0);
    loop {
        let mut len = read_head(r, &mut head)?;
        if len == 0 {
            return Ok(());
        }
        let whole = head.last() == Some(&b'\n') || head.len() <= HEAD_MAX;
        let record = head.strip_suffix(b"\n").unwrap_or(&head);
        let kind = if whole {
            let tail = &record[record.len().saturating_sub(PEEK_TAIL as usize)..];
            Kind::of(&record[..record.len().min(PEEK_HEAD as usize)], tail, record.len() as u64)
        } else {
            len += skip_rest(r)?;
            Kind::of(&record[..PEEK_HEAD as usize], &[], HEAD_MAX as u64 + 1)
        };
        if !visit(at, len, kind) {
            return Ok(());
        }
        at += len;
    }
}

/// Reads past the rest of a record, its newline included; the bytes read.
fn skip_rest(r: &mut Stream) -> io::Result<u64> {
    let mut read = 0;
    loop {
        let chunk = r.fill_buf()?;
        if chunk.is_empty() {
            return Ok(read);
        }
        let (used, ended) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        r.consume(used);
        read += used as u64;
        if ended {
            return Ok(read);
        }
    }
}

/// Where the records since `since` start: just after the last record stamped earlier that
/// comes before the first one stamped at or after it. Files rotated before `since` are not
/// opened (see `first_maybe_since`); the others are scanned forwards, a line at a time.
pub(super) fn since_start(log: &Log, since: SystemTime) -> Result<Start, ReadError> {
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
