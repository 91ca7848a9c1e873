//! Reading a service's log back, straight from the log directory (no daemon needed): the
//! rotated files in time order, compressed or not, then `current.log`; the last N lines or
//! those since a time; and following `current.log` across rotations without losing a line
//! (`follow`). Only whole records of `current.log` are read: one still being written waits.
//! A line the writer split into records marked continued is printed joined (`record`).
//!
//! Memory stays flat whatever is asked: every file is streamed through one `BUF`-sized
//! buffer (`.gz` through a streaming decoder), never held whole; of a split line, at most
//! `record::JOIN_MAX` is held. A read is planned first (`plan`) — where printing starts, as a
//! file and a byte offset into its content — then printed from there to the end.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use flate2::read::MultiGzDecoder;

use super::rotated;

mod follow;
mod plan;
mod record;

pub use follow::follow;
pub use record::JOIN_MAX;

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
    /// The lines begun by continued records and not ended yet.
    join: record::Joiner,
}

impl Cursor {
    /// The length of `current.log` that was printed.
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

/// Prints the selected lines of every file, oldest first, each ending in a newline (a split
/// one joined; one whose last piece is not written yet is left for `follow`). Returns where
/// following continues.
///
/// `since` selects from the first record stamped at or after it to the end. Records are in
/// time order, so a record before that one is older — except an unstamped line (no stamp
/// that parses) right before it, after the last record stamped earlier: it is kept. `last`
/// counts lines, a split one once.
pub fn print(dir: &Path, service: &str, select: Select, out: &mut impl Write) -> Result<Cursor, ReadError> {
    let log = Log::open(dir, service)?;
    let mut from = Start::default();
    if let Some(since) = select.since {
        from = plan::since_start(&log, since)?;
    }
    if let Some(n) = select.last {
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        from = from.max(plan::tail_start(&log, n, from.file)?);
    }
    let start = plan::chain_start(&log, from)?;
    let mut join = record::Joiner::new(from);
    for i in start.file..log.len() {
        let skip = if i == start.file { start.skip } else { 0 };
        if let Some(mut r) = log.stream(i, skip)? {
            join.copy(&mut r, Start { file: i, skip }, out, &log.path(i))?;
        }
    }
    join.flush(out)?;
    Ok(log.into_cursor(join))
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

    /// Where the log ends: the end of `current.log`'s whole records.
    fn end(&self) -> Start {
        Start { file: self.len() - 1, skip: self.current.as_ref().map_or(0, |(_, len)| *len) }
    }

    fn into_cursor(self, join: record::Joiner) -> Cursor {
        let (file, offset) = match self.current {
            Some((file, offset)) => (Some(file), offset),
            None => (None, 0),
        };
        Cursor { file, offset, service: self.service, seen: self.seen, join: join.for_follow() }
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
