//! Files the test service writes: `--pid-file` and the `--start-log` event lines.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Writes the service's pid (and a newline) to `path`, replacing what was there.
pub(crate) fn write_pid(path: &Path) -> io::Result<()> {
    std::fs::write(path, format!("{}\n", std::process::id()))
}

/// Appends `<name> <event> <unix_time_nanos>` to `path` with a single `write(2)` on an
/// `O_APPEND` file, so services logging concurrently never interleave within a line.
pub(crate) fn log_event(path: &Path, name: &str, event: &str) -> io::Result<()> {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let line = format!("{name} {event} {nanos}\n");
    let mut file = OpenOptions::new().append(true).create(true).open(path)?;
    let written = file.write(line.as_bytes())?;
    if written != line.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "short write"));
    }
    Ok(())
}
