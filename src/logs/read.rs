//! Reading a service's log back, straight from the log directory (no daemon needed): the
//! rotated files in time order, compressed or not, then `current.log`; the last N lines or
//! those since a time; and following `current.log` across rotations without losing a line.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{compress, rotated};

/// A service's log files, oldest first, `current.log` last.
pub fn files(dir: &Path, service: &str) -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = rotated::list(dir, service).into_iter().map(|r| r.path).collect();
    all.push(dir.join("current.log"));
    all
}

/// The time at the start of a record, if it has one (text and JSON records both do).
fn stamp_of(line: &[u8]) -> Option<SystemTime> {
    let head = std::str::from_utf8(&line[..line.len().min(64)]).ok()?;
    let token = head.trim_start_matches("{\"ts\":\"").split([' ', '"']).next()?;
    humantime::parse_rfc3339_weak(token).ok()
}

/// Which lines to print.
#[derive(Clone, Copy, Debug, Default)]
pub struct Select {
    /// Only the last N lines.
    pub last: Option<usize>,
    /// Only lines stamped at or after this time.
    pub since: Option<SystemTime>,
}

/// Prints the selected lines of every file, oldest first. Returns the length of
/// `current.log` that was read, where following continues.
pub fn print(dir: &Path, service: &str, select: Select, out: &mut impl Write) -> io::Result<u64> {
    let mut chosen: Vec<Vec<u8>> = Vec::new();
    let all = files(dir, service);
    let mut current_len = 0;
    // newest first, so `-n` stops reading old files once it has enough
    for path in all.iter().rev() {
        let bytes = match compress::read_all(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        };
        if path.ends_with("current.log") {
            current_len = bytes.len() as u64;
        }
        let mut lines: Vec<&[u8]> = bytes.split_inclusive(|&b| b == b'\n').collect();
        if let Some(since) = select.since {
            let first_new = lines.iter().position(|l| stamp_of(l).is_some_and(|t| t >= since));
            lines.drain(..first_new.unwrap_or(lines.len()));
        }
        chosen.splice(0..0, lines.into_iter().map(<[u8]>::to_vec));
        if select.last.is_some_and(|n| chosen.len() >= n) {
            break;
        }
    }
    let skip = select.last.map_or(0, |n| chosen.len().saturating_sub(n));
    for line in &chosen[skip..] {
        out.write_all(line)?;
        if !line.ends_with(b"\n") {
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    Ok(current_len)
}

/// Prints what is appended to `current.log` from `offset` on, forever: when the file is
/// rotated away, the rest of the old file is read before the new one.
pub fn follow(dir: &Path, offset: u64, out: &mut impl Write, poll: Duration) -> io::Result<()> {
    let path = dir.join("current.log");
    let mut file = File::open(&path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    loop {
        let got = reader.read_until(b'\n', &mut line)?;
        if got > 0 && line.ends_with(b"\n") {
            out.write_all(&line)?;
            line.clear();
            continue;
        }
        out.flush()?;
        if rotated_away(&path, reader.get_ref()) {
            // the old file is complete: read what is left, then switch
            reader.read_to_end(&mut line)?;
            out.write_all(&line)?;
            line.clear();
            reader = BufReader::new(File::open(&path)?);
            continue;
        }
        std::thread::sleep(poll);
    }
}

fn rotated_away(path: &Path, open: &File) -> bool {
    match (std::fs::metadata(path), open.metadata()) {
        (Ok(now), Ok(ours)) => now.ino() != ours.ino() || now.dev() != ours.dev(),
        _ => false,
    }
}
