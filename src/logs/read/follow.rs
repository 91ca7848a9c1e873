//! Following a service's log: what is appended to `current.log`, a whole record at a time, and
//! once it is rotated away the rest of it, then every file rotated after it, oldest first and
//! plain or already compressed, then the new `current.log` — however many rotations happen
//! between two looks. Also how far one look at a rotating directory can be trusted (`Look`),
//! which `print` needs as well.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use flate2::read::MultiGzDecoder;

use super::record::Joiner;
use super::{BUF, Cursor, ReadError, Start, Stream, complete_len, gz_stream, plain_name, read_error};
use crate::logs::rotated::{self, Rotated};

/// Prints what is written to the log after `from`, forever, looking every `poll` when there
/// is nothing new. Whole records only, each once and in order, a split line joined (once its
/// last piece is written), at most `BUF` bytes a write.
pub fn follow(dir: &Path, from: Cursor, out: &mut impl Write, poll: Duration) -> Result<(), ReadError> {
    let mut f = Follower {
        dir,
        path: dir.join("current.log"),
        service: from.service,
        file: from.file,
        offset: from.offset,
        seen: from.seen,
        passed: None,
        join: from.join,
    };
    loop {
        if !f.step(out)? {
            f.join.flush(out)?;
            std::thread::sleep(poll);
        }
    }
}

struct Follower<'a> {
    dir: &'a Path,
    path: PathBuf,
    service: String,
    /// The `current.log` being read, and how much of it was printed.
    file: Option<File>,
    offset: u64,
    /// The rotated files printed or older than `file`, by name (see `Cursor::seen`).
    seen: HashSet<String>,
    /// The `current.log` read to its end after it was rotated away, until it is found among
    /// the rotated files (not to be printed again).
    passed: Option<File>,
    join: Joiner,
}

impl Follower<'_> {
    /// Prints what is new; false when there was nothing.
    fn step(&mut self, out: &mut impl Write) -> Result<bool, ReadError> {
        let Some(file) = self.file.take() else { return self.catch_up(out) };
        let path = self.path.clone();
        let err = read_error(&path);
        // looked at before the length: once current.log is another file, nothing more is
        // written to this one, and its last record is whole even without a newline
        let moved = rotated_away(&self.path, &file);
        let len = file.metadata().map_err(&err)?.len();
        let end = if moved { len } else { complete_len(&file, self.offset, len).map_err(&err)? };
        let news = end > self.offset;
        if news {
            let mut r = file.try_clone().map_err(&err)?;
            r.seek(SeekFrom::Start(self.offset)).map_err(&err)?;
            let mut r: Stream = Box::new(BufReader::with_capacity(BUF, r.take(end - self.offset)));
            self.join.copy(&mut r, Start::default(), out, &self.path)?;
            self.offset = end;
        }
        if moved {
            self.passed = Some(file);
            self.catch_up(out)?;
            return Ok(true);
        }
        self.file = Some(file);
        Ok(news)
    }

    /// With no `current.log` open (the one read was rotated away): prints every rotated file
    /// not seen yet, oldest first, but the `passed` one, and opens the new `current.log`. While
    /// it is rotated again as the directory is read, what the listing is sure of is printed and
    /// it is read again. False when there is no `current.log` to open (yet).
    fn catch_up(&mut self, out: &mut impl Write) -> Result<bool, ReadError> {
        loop {
            let look = Look::at(self.dir, &self.service, &self.seen)?;
            if look.current.is_none() {
                return Ok(false);
            }
            for r in &look.listed[..look.certain] {
                if self.seen.contains(&plain_name(&r.path)) {
                    continue;
                }
                if self.passed.as_ref().is_some_and(|p| same_file(p, r)) {
                    self.passed = None;
                } else {
                    print_whole(r, &mut self.join, out)?;
                }
            }
            let listed: Vec<String> = look.listed.iter().map(|r| plain_name(&r.path)).collect();
            let (sure, later) = listed.split_at(look.certain);
            let still = later.iter().filter(|n| self.seen.contains(*n)).cloned();
            self.seen = sure.iter().cloned().chain(still).collect();
            if look.settled {
                // the passed file was rotated before this listing: it is not among later ones
                self.passed = None;
                (self.file, self.offset) = (look.current, 0);
                return Ok(true);
            }
        }
    }
}

/// `current.log` and the rotated files, as far as one look at the directory can tell their
/// order. Rotated files are named in time order, but a read of the directory while a file is
/// rotated may miss it and see one rotated after it: only when `current.log` is the same
/// file before and after the listing was nothing rotated meanwhile.
pub(super) struct Look {
    /// `current.log`, opened before the listing (`None` when there is none).
    pub(super) current: Option<File>,
    /// The rotated files, oldest first (`rotated::list_settled`).
    pub(super) listed: Vec<Rotated>,
    /// Whether `current` was still `current.log` after the listing: every file listed is
    /// older than it, and none is missing.
    pub(super) settled: bool,
    /// Where `current` itself is listed, rotated meanwhile (looked for among the files not
    /// `seen`, newest first).
    pub(super) renamed: Option<usize>,
    /// How many of the files listed are sure to be there and in order: all of them when
    /// settled, those up to `current` when it was renamed, else none (with no `current.log`
    /// too: it is missing between a rename and the new file, rotated again right after).
    pub(super) certain: usize,
}

impl Look {
    pub(super) fn at(dir: &Path, service: &str, seen: &HashSet<String>) -> Result<Look, ReadError> {
        let path = dir.join("current.log");
        let current = match crate::runtime::files::open_read(&path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(read_error(&path)(e)),
        };
        let listed = rotated::list_settled(dir, service);
        let settled = current.as_ref().is_some_and(|f| is_current(&path, f));
        let renamed = match &current {
            Some(f) if !settled => {
                listed.iter().rposition(|r| !seen.contains(&plain_name(&r.path)) && same_file(f, r))
            }
            _ => None,
        };
        let certain = match renamed {
            Some(at) => at + 1,
            None if settled => listed.len(),
            None => 0,
        };
        Ok(Look { current, listed, settled, renamed, certain })
    }
}

/// Prints a rotated file whole (from its `.gz` if it was compressed meanwhile); nothing when
/// it is gone (retention deleted it).
fn print_whole(r: &Rotated, join: &mut Joiner, out: &mut impl Write) -> Result<(), ReadError> {
    let plain = if r.compressed { None } else { open_plain(&r.path)? };
    let stream = match plain {
        Some(f) => Some(Box::new(BufReader::with_capacity(BUF, f)) as Stream),
        None => gz_stream(&r.path)?,
    };
    match stream {
        Some(mut s) => join.copy(&mut s, Start::default(), out, &r.path),
        None => Ok(()),
    }
}

fn open_plain(path: &Path) -> Result<Option<File>, ReadError> {
    match crate::runtime::files::open_read(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(read_error(path)(e)),
    }
}

/// Whether `path` is now another file than `open` (missing, it is about to be made again).
fn rotated_away(path: &Path, open: &File) -> bool {
    match (std::fs::metadata(path), open.metadata()) {
        (Ok(now), Ok(ours)) => (now.dev(), now.ino()) != (ours.dev(), ours.ino()),
        _ => false,
    }
}

/// Whether `path` is `open`.
fn is_current(path: &Path, open: &File) -> bool {
    match (std::fs::metadata(path), open.metadata()) {
        (Ok(now), Ok(ours)) => (now.dev(), now.ino()) == (ours.dev(), ours.ino()),
        _ => false,
    }
}

/// Whether the rotated file `r` is `ours` (a `current.log` held open and rotated since): the
/// same inode while it is plain, the same content once compressed (a newer file differs in its
/// first record; two files with the very same bytes may be taken for each other, and then
/// printing either is printing the other).
pub(super) fn same_file(ours: &File, r: &Rotated) -> bool {
    let Ok(meta) = ours.metadata() else { return false };
    if !r.compressed {
        if let Ok(m) = std::fs::symlink_metadata(&r.path) {
            return (m.dev(), m.ino()) == (meta.dev(), meta.ino());
        }
    }
    let gz = if r.compressed { r.path.clone() } else { r.path.with_extension("log.gz") };
    same_content(ours, meta.len(), &gz).unwrap_or(false)
}

/// Whether `gz` decompresses to exactly the `len` bytes of `ours`, compared a buffer at a time.
fn same_content(ours: &File, len: u64, gz: &Path) -> io::Result<bool> {
    let mut z = MultiGzDecoder::new(BufReader::new(crate::runtime::files::open_read(gz)?));
    let (mut mine, mut theirs) = (vec![0u8; BUF], vec![0u8; BUF]);
    let mut at = 0;
    loop {
        let n = fill(&mut z, &mut theirs)?;
        if n == 0 {
            return Ok(at == len);
        }
        if at + n as u64 > len {
            return Ok(false);
        }
        ours.read_exact_at(&mut mine[..n], at)?;
        if mine[..n] != theirs[..n] {
            return Ok(false);
        }
        at += n as u64;
    }
}

/// Reads into `buf` until it is full or `r` ends; the bytes read.
fn fill(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
