//! Records as the writer stores them, read back: which stream each is of and whether it is
//! continued by the next record of that stream (`Kind`), and the joining of a line the writer
//! split into pieces back into one line for printing (`Joiner`).
//!
//! A text record is `<stamp> <out|err>[+] <line>`, a JSON one `{"line":..,["partial":true,]
//! "stream":..,"ts":..}` (keys sorted); `+` and `"partial"` mark a piece continued by the next
//! record of its stream. Records of the other stream may come between the pieces (both pipes
//! are read as their output arrives). A joined line is printed where its last piece is, with
//! that piece's stamp (any line is stamped when its end arrives): the record the writer would
//! have written for the whole line. At most `JOIN_MAX` of a line is held; a longer one is
//! printed in pieces of that size, each still marked continued.

use std::io::{self, BufRead, Write};
use std::path::Path;

use serde_json::{Map, Value};

use super::{BUF, HEAD_MAX, ReadError, STAMP_MAX, Start, Stream, read_error};

/// The most of one line held to join it with its rest.
pub const JOIN_MAX: usize = 1 << 20;
/// Enough of a record's start for its stamp and tag.
pub(super) const PEEK_HEAD: u64 = 64;
/// Enough of a JSON record's end for `,"partial":true,"stream":"out","ts":"<stamp>"}`.
pub(super) const PEEK_TAIL: u64 = 128;

/// What a record is to the lines printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// Not a record of one of the service's streams (a line of the supervisor's own log, a
    /// JSON record too long to look at its end): a line of its own.
    Other,
    /// A record of stream 0 (out) or 1 (err) ending a line: all of it, or its last piece.
    Ends(usize),
    /// A piece of a line of stream 0 or 1, continued by that stream's next record.
    Continued(usize),
}

impl Kind {
    /// The kind of a record from its first `PEEK_HEAD` bytes (or all of it), its last
    /// `PEEK_TAIL` ones, and its length, without its newline.
    pub(super) fn of(head: &[u8], tail: &[u8], len: u64) -> Kind {
        let kind = if head.first() == Some(&b'{') {
            (len <= HEAD_MAX as u64).then(|| json_kind(head, tail)).flatten()
        } else {
            text_kind(head).map(|(kind, _)| kind)
        };
        kind.unwrap_or(Kind::Other)
    }

    /// Whether a line ends with it (one line is printed for it).
    pub(super) fn ends_line(self) -> bool {
        !matches!(self, Kind::Continued(_))
    }
}

/// The kind of a text record, and where its line starts.
fn text_kind(head: &[u8]) -> Option<(Kind, usize)> {
    // a stamp starts with the year: a line of another format that says `out+` is not a piece
    if !head.first().is_some_and(u8::is_ascii_digit) {
        return None;
    }
    let stamp = head.iter().take(STAMP_MAX + 1).position(|&b| b == b' ')?;
    let rest = &head[stamp + 1..];
    let tag = rest.iter().take(5).position(|&b| b == b' ')?;
    let kind = match &rest[..tag] {
        b"out" => Kind::Ends(0),
        b"err" => Kind::Ends(1),
        b"out+" => Kind::Continued(0),
        b"err+" => Kind::Continued(1),
        _ => return None,
    };
    Some((kind, stamp + 1 + tag + 1))
}

/// The kind of a JSON record as the writer makes them, from its end: `,"stream":"` cannot
/// occur inside the escaped line, so the last one is the key's.
fn json_kind(head: &[u8], tail: &[u8]) -> Option<Kind> {
    const STREAM: &[u8] = br#","stream":""#;
    if !head.starts_with(br#"{"line":""#) {
        return None;
    }
    let tail = tail.strip_suffix(b"\"}")?;
    let at = tail.windows(STREAM.len()).rposition(|w| w == STREAM)?;
    let (before, after) = (&tail[..at], &tail[at + STREAM.len()..]);
    let stream = match after.get(..4)? {
        b"out\"" => 0,
        b"err\"" => 1,
        _ => return None,
    };
    let ts = after[4..].strip_prefix(br#","ts":""#)?;
    if ts.contains(&b'"') {
        None
    } else if before.ends_with(br#","partial":true"#) {
        Some(Kind::Continued(stream))
    } else {
        before.ends_with(b"\"").then_some(Kind::Ends(stream))
    }
}

/// What a record's line is printed after: `<stamp> <tag> ` in text, the other keys in JSON.
#[derive(Debug)]
enum Head {
    Text(Vec<u8>),
    Json(Map<String, Value>),
}

/// A record split into its head and its line (of a JSON record, decoded); `None` for one of
/// no stream.
fn split(record: &[u8]) -> Option<(Head, Vec<u8>)> {
    if record.first() == Some(&b'{') {
        let mut map: Map<String, Value> = serde_json::from_slice(record).ok()?;
        let Some(Value::String(line)) = map.remove("line") else { return None };
        return Some((Head::Json(map), line.into_bytes()));
    }
    let (_, at) = text_kind(record)?;
    Some((Head::Text(record[..at].to_vec()), record[at..].to_vec()))
}

/// A line begun by continued records, not ended yet.
#[derive(Debug)]
struct Open {
    /// The head of its first piece (marked continued), for printing it unfinished.
    head: Head,
    line: Vec<u8>,
}

/// Prints records read in order as lines: continued ones held until their line ends.
#[derive(Debug, Default)]
pub(super) struct Joiner {
    /// Lines ending before this are not printed (their pieces are read, and dropped).
    from: Start,
    /// The open line of each stream.
    open: [Option<Open>; 2],
    /// The start of the record being read.
    head: Vec<u8>,
    /// What is to be written, at most `BUF` bytes.
    batch: Vec<u8>,
}

impl Joiner {
    pub(super) fn new(from: Start) -> Joiner {
        Joiner { from, ..Joiner::default() }
    }

    /// Prints every line from here on (for `follow`), keeping the open ones.
    pub(super) fn for_follow(mut self) -> Joiner {
        self.from = Start::default();
        self
    }

    /// Reads every record of `r`, whose first byte is at `at` of the log, a last one without
    /// its newline too.
    pub(super) fn copy(
        &mut self,
        r: &mut Stream,
        mut at: Start,
        out: &mut impl Write,
        path: &Path,
    ) -> Result<(), ReadError> {
        let err = read_error(path);
        let mut head = std::mem::take(&mut self.head);
        loop {
            let n = read_head(r, &mut head).map_err(&err)?;
            if n == 0 {
                break;
            }
            let whole = head.last() == Some(&b'\n') || head.len() <= HEAD_MAX;
            let record = head.strip_suffix(b"\n").unwrap_or(&head);
            let len = if whole { record.len() as u64 } else { HEAD_MAX as u64 + 1 };
            let tail = if whole { &record[record.len().saturating_sub(PEEK_TAIL as usize)..] } else { &[] };
            let kind = Kind::of(&record[..record.len().min(PEEK_HEAD as usize)], tail, len);
            let rest = (!whole).then_some(&mut *r);
            let print = at >= self.from;
            let more = match kind {
                Kind::Continued(s) => self.piece(s, record, rest, print, out),
                Kind::Ends(s) if self.open[s].is_some() => self.end(s, record, rest, print, out),
                _ => self.single(record, rest, print, out),
            };
            at.skip += n + more.map_err(|e| e.at(path))?;
        }
        self.head = head;
        Ok(())
    }

    /// Writes out what is batched.
    pub(super) fn flush(&mut self, out: &mut impl Write) -> Result<(), ReadError> {
        out.write_all(&self.batch).map_err(ReadError::Write)?;
        self.batch.clear();
        out.flush().map_err(ReadError::Write)
    }

    /// A record that is a line of its own; the bytes of its rest read.
    fn single(
        &mut self,
        record: &[u8],
        rest: Option<&mut Stream>,
        print: bool,
        out: &mut impl Write,
    ) -> Result<u64, Failed> {
        let batch = &mut self.batch;
        if print {
            put(batch, out, record)?;
        }
        let more = read_rest(rest, |chunk| if print { put(batch, out, chunk) } else { Ok(()) })?;
        if print {
            put(batch, out, b"\n")?;
        }
        Ok(more)
    }

    /// A piece of a line of stream `s`: held, and printed unfinished once `JOIN_MAX` is held.
    fn piece(
        &mut self,
        s: usize,
        record: &[u8],
        rest: Option<&mut Stream>,
        print: bool,
        out: &mut impl Write,
    ) -> Result<u64, Failed> {
        let Some((head, line)) = split(record) else { return self.single(record, rest, print, out) };
        let (open, batch) = (self.open[s].get_or_insert(Open { head, line: Vec::new() }), &mut self.batch);
        open.line.extend_from_slice(&line);
        let mut spill = |open: &mut Open| {
            while open.line.len() >= JOIN_MAX {
                let cut = char_boundary(&open.line, JOIN_MAX);
                if print {
                    unfinished(&open.head, &open.line[..cut], batch, out)?;
                }
                open.line.drain(..cut);
            }
            Ok(())
        };
        spill(open)?;
        read_rest(rest, |chunk| {
            open.line.extend_from_slice(chunk);
            spill(open)
        })
    }

    /// The last piece of the open line of stream `s`: the whole line printed.
    fn end(
        &mut self,
        s: usize,
        record: &[u8],
        rest: Option<&mut Stream>,
        print: bool,
        out: &mut impl Write,
    ) -> Result<u64, Failed> {
        let Some(open) = self.open[s].take() else { return self.single(record, rest, print, out) };
        if !print {
            return read_rest(rest, |_| Ok(()));
        }
        let batch = &mut self.batch;
        match split(record) {
            Some((Head::Text(head), line)) => {
                put(batch, out, &head)?;
                put(batch, out, &open.line)?;
                put(batch, out, &line)?;
                let more = read_rest(rest, |chunk| put(batch, out, chunk))?;
                put(batch, out, b"\n")?;
                Ok(more)
            }
            Some((Head::Json(mut map), line)) => {
                let mut whole = open.line;
                whole.extend_from_slice(&line);
                map.insert("line".into(), Value::String(String::from_utf8_lossy(&whole).into_owned()));
                put(batch, out, Value::Object(map).to_string().as_bytes())?;
                put(batch, out, b"\n")?;
                Ok(0)
            }
            None => {
                unfinished(&open.head, &open.line, batch, out)?;
                self.single(record, rest, print, out)
            }
        }
    }
}

/// Prints `line`, of an open line, as a record still marked continued (`head` is its first
/// piece's).
fn unfinished(head: &Head, line: &[u8], batch: &mut Vec<u8>, out: &mut impl Write) -> Result<(), Failed> {
    match head {
        Head::Text(head) => {
            put(batch, out, head)?;
            put(batch, out, line)?;
        }
        Head::Json(map) => {
            let mut map = map.clone();
            map.insert("line".into(), Value::String(String::from_utf8_lossy(line).into_owned()));
            put(batch, out, Value::Object(map).to_string().as_bytes())?;
        }
    }
    put(batch, out, b"\n")
}

/// `at`, or up to 3 bytes before it where a UTF-8 character it falls in starts (a JSON line
/// cut there keeps every character).
fn char_boundary(bytes: &[u8], at: usize) -> usize {
    let inside = |i: usize| bytes.get(i).is_some_and(|b| b & 0xC0 == 0x80);
    (at.saturating_sub(3)..=at).rev().find(|&i| !inside(i)).unwrap_or(at)
}

/// Reading or writing failed, in the middle of a record.
pub(super) enum Failed {
    Read(io::Error),
    Write(io::Error),
}

impl Failed {
    fn at(self, path: &Path) -> ReadError {
        match self {
            Failed::Read(e) => read_error(path)(e),
            Failed::Write(e) => ReadError::Write(e),
        }
    }
}

/// Adds `bytes` to the batch, writing it out each time it holds `BUF` bytes.
fn put(batch: &mut Vec<u8>, out: &mut impl Write, mut bytes: &[u8]) -> Result<(), Failed> {
    while !bytes.is_empty() {
        let n = bytes.len().min(BUF - batch.len());
        batch.extend_from_slice(&bytes[..n]);
        bytes = &bytes[n..];
        if batch.len() == BUF {
            out.write_all(batch).map_err(Failed::Write)?;
            batch.clear();
        }
    }
    Ok(())
}

/// Reads the start of the next record of `r` into `head`: up to its newline (kept) or
/// `HEAD_MAX + 1` bytes, whichever comes first. The bytes read, 0 at the end.
pub(super) fn read_head(r: &mut Stream, head: &mut Vec<u8>) -> io::Result<u64> {
    head.clear();
    while head.len() <= HEAD_MAX {
        let chunk = r.fill_buf()?;
        if chunk.is_empty() {
            break;
        }
        let room = HEAD_MAX + 1 - head.len();
        let window = &chunk[..chunk.len().min(room)];
        let (take, ended) = match window.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (window.len(), false),
        };
        head.extend_from_slice(&window[..take]);
        r.consume(take);
        if ended {
            break;
        }
    }
    Ok(head.len() as u64)
}

/// Passes the rest of a record longer than its head to `each` a chunk at a time, up to its
/// newline (read, not passed) or the end; the bytes read. Nothing without a rest.
fn read_rest(
    r: Option<&mut Stream>,
    mut each: impl FnMut(&[u8]) -> Result<(), Failed>,
) -> Result<u64, Failed> {
    let Some(r) = r else { return Ok(0) };
    let mut read = 0;
    loop {
        let chunk = r.fill_buf().map_err(Failed::Read)?;
        if chunk.is_empty() {
            return Ok(read);
        }
        let (take, ended) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (chunk.len(), false),
        };
        each(&chunk[..take])?;
        let used = take + usize::from(ended);
        r.consume(used);
        read += used as u64;
        if ended {
            return Ok(read);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(record: &str) -> Kind {
        let b = record.as_bytes();
        let tail = &b[b.len().saturating_sub(PEEK_TAIL as usize)..];
        Kind::of(&b[..b.len().min(PEEK_HEAD as usize)], tail, b.len() as u64)
    }

    #[test]
    fn a_record_says_its_stream_and_whether_its_line_goes_on() {
        let t = "2026-01-01T00:00:00.000Z";
        assert_eq!(kind(&format!("{t} out hello")), Kind::Ends(0));
        assert_eq!(kind(&format!("{t} err+ hel")), Kind::Continued(1));
        assert_eq!(kind(&format!("{t} out ")), Kind::Ends(0));
        let json = |line: &str, partial: bool, stream: &str| {
            let mut v = serde_json::json!({ "ts": t, "stream": stream, "line": line });
            if partial {
                v["partial"] = Value::Bool(true);
            }
            v.to_string()
        };
        assert_eq!(kind(&json("hel", true, "out")), Kind::Continued(0));
        assert_eq!(kind(&json("hello", false, "err")), Kind::Ends(1));
        // what a line says about itself inside the record is escaped, never taken for a key
        assert_eq!(kind(&json(r#"x","partial":true"#, false, "out")), Kind::Ends(0));
        assert_eq!(kind(&json(r#"x","stream":"err","ts":"y"}"#, true, "out")), Kind::Continued(0));
        for other in [
            "",
            "hello out+ there",
            "2026-01-01T00:00:00.000123Z  INFO titan: started",
            r#"{"timestamp":"2026-01-01T00:00:00Z","level":"INFO"}"#,
            r#"{"line":"x","stream":"both","ts":"T"}"#,
        ] {
            assert_eq!(kind(other), Kind::Other, "{other:?}");
        }
    }
}
