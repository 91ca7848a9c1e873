//! A container's output into its service's log: the Engine API's log stream with Docker's own
//! timestamps, written with those stamps (to the nanosecond), so that after a supervisor
//! restart the stream resumes right after the last line on disk — nothing repeated, nothing
//! missed, even for lines written while no supervisor ran.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptions;
use futures_util::{FutureExt, StreamExt};

use crate::logs::capture::Watch;
use crate::logs::writer::{SharedWriter, Stream};

/// Where a service's container log stands: the last stamp written and how many lines carried
/// exactly that stamp.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub(crate) stamp: String,
    pub(crate) same: usize,
}

pub(crate) type SharedCursor = Arc<Mutex<Cursor>>;

impl Cursor {
    /// The cursor of `service`'s log in `dir`: its newest file holding a container line
    /// (current.log, else the rotated ones, compressed or not); nothing found means a fresh
    /// log, which takes the container's output from its first line.
    pub(crate) fn of_log(dir: &Path, service: &str) -> Cursor {
        for path in crate::logs::read::files(dir, service).iter().rev() {
            let Ok(bytes) = crate::logs::compress::read_all(path) else { continue };
            let cursor = Cursor::of_text(&bytes);
            if !cursor.stamp.is_empty() {
                return cursor;
            }
        }
        Cursor::default()
    }

    fn of_text(text: &[u8]) -> Cursor {
        let mut cursor = Cursor::default();
        for line in text.split(|&b| b == b'\n') {
            let Some(stamp) = stamp_token(line) else { continue };
            // only container lines carry nanosecond stamps; supervisor notes do not count
            if stamp.len() != NANO_STAMP_LEN {
                continue;
            }
            if stamp == cursor.stamp {
                cursor.same += 1;
            } else if stamp > cursor.stamp.as_str() {
                cursor = Cursor { stamp: stamp.to_owned(), same: 1 };
            }
        }
        cursor
    }

    /// Whether a line stamped `stamp` is not yet in the log; `seen` is what this stream met
    /// so far at its latest stamp (the stamp and how many lines carried it). Checked against the
    /// live cursor, so two streams of one container never both write a line.
    fn admits(&self, stamp: &str, seen: &mut (String, usize)) -> bool {
        if seen.0 == stamp {
            seen.1 += 1;
        } else {
            *seen = (stamp.to_owned(), 1);
        }
        match stamp.cmp(self.stamp.as_str()) {
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal => seen.1 > self.same,
            std::cmp::Ordering::Greater => true,
        }
    }

    fn advance(&mut self, stamp: &str) {
        if stamp == self.stamp {
            self.same += 1;
        } else {
            self.stamp = stamp.to_owned();
            self.same = 1;
        }
    }

    /// Whole seconds since the epoch of the cursor, for the API's `since`.
    fn since_secs(&self) -> i32 {
        super::nanos_of(&self.stamp).map_or(0, |n| (n / 1_000_000_000) as i32)
    }
}

/// `2026-11-23T17:16:29.123456789Z`
const NANO_STAMP_LEN: usize = 30;

fn stamp_token(line: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(line.get(..line.len().min(64))?).ok()?;
    let token = text.trim_start_matches('{').split([' ', '"']).find(|t| t.ends_with('Z') && t.len() >= 20)?;
    Some(token)
}

/// Docker's RFC3339Nano stamp (trailing zeros trimmed) with exactly nine fraction digits, so
/// stamps compare as strings.
pub(crate) fn normalize(stamp: &str) -> Option<String> {
    let body = stamp.strip_suffix('Z')?;
    let (secs, frac) = body.split_once('.').unwrap_or((body, ""));
    (secs.len() == 19 && frac.len() <= 9 && frac.bytes().all(|b| b.is_ascii_digit()))
        .then(|| format!("{secs}.{frac:0<9}Z"))
}

/// Copies container `id`'s output from the cursor on into `writer` until the container stops
/// (the stream then ends), matching lines for a `log` health check on the way.
///
/// dockerd 20.10's follow does not cross a rotation of Docker's log files when it lags behind
/// the container (it waits on the rotated-away file until the container ends): a stream that
/// goes quiet after a burst, or that ends having brought lines, is opened again from the
/// cursor, which drops what is written already.
pub(crate) async fn follow(
    docker: Docker,
    id: String,
    writer: SharedWriter,
    cursor: SharedCursor,
    watch: Option<Watch>,
) {
    let pass = Pass { docker: &docker, id: &id, writer: &writer, cursor: &cursor, watch: watch.as_ref() };
    while pass.stream().await == Ended::Again {}
}

/// How many lines make a burst, and how long after one a stream may stay quiet before it is
/// opened again.
const BURST: usize = 10_000;
const QUIET: Duration = Duration::from_secs(2);

#[derive(PartialEq, Eq)]
enum Ended {
    /// Done: the container stopped and the stream brought nothing more, or it broke.
    Done,
    /// Open it again from the cursor.
    Again,
}

struct Pass<'a> {
    docker: &'a Docker,
    id: &'a str,
    writer: &'a SharedWriter,
    cursor: &'a SharedCursor,
    watch: Option<&'a Watch>,
}

impl Pass<'_> {
    async fn stream(&self) -> Ended {
        let since = self.cursor.lock().unwrap_or_else(|p| p.into_inner()).since_secs();
        let options = LogsOptions {
            follow: true,
            stdout: true,
            stderr: true,
            timestamps: true,
            since,
            ..Default::default()
        };
        let mut stream = self.docker.logs(self.id, Some(options));
        let mut seen = (String::new(), 0);
        let mut brought = 0;
        loop {
            let first = match tokio::time::timeout(QUIET, stream.next()).await {
                Err(_quiet) if brought >= BURST => return Ended::Again,
                Err(_quiet) => continue,
                Ok(None) if brought > 0 => return Ended::Again,
                Ok(None) => return Ended::Done,
                Ok(Some(first)) => first,
            };
            let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            let mut item = Some(first);
            // everything already arrived goes out in one flush
            while let Some(next) = item.take() {
                let output = match next {
                    Ok(output) => output,
                    Err(e) => {
                        tracing::warn!(container = %self.id, "its log stream broke: {e}");
                        return Ended::Done;
                    }
                };
                if self.write(&mut w, output, &mut seen) {
                    brought += 1;
                }
                item = stream.next().now_or_never().flatten();
            }
            w.flush();
        }
    }

    /// Writes one record unless the log has it already; whether it was written.
    fn write(
        &self,
        w: &mut crate::logs::writer::LogWriter,
        output: LogOutput,
        seen: &mut (String, usize),
    ) -> bool {
        let (kind, message) = match output {
            LogOutput::StdErr { message } => (Stream::Err, message),
            LogOutput::StdOut { message } | LogOutput::Console { message } => (Stream::Out, message),
            LogOutput::StdIn { .. } => return false,
        };
        let Some((stamp, line)) = split_stamp(&message) else { return false };
        let mut live = self.cursor.lock().unwrap_or_else(|p| p.into_inner());
        if !live.admits(&stamp, seen) {
            return false;
        }
        live.advance(&stamp);
        drop(live);
        let (line, continues) = match line.strip_suffix(b"\n") {
            Some(l) => (l, false),
            None => (line, true),
        };
        if let Some(watch) = self.watch {
            watch.check(line);
        }
        w.push(kind, line, &stamp, continues);
        true
    }
}

/// Docker's `<stamp> <line>` split, the stamp normalized.
fn split_stamp(message: &[u8]) -> Option<(String, &[u8])> {
    let space = message.iter().position(|&b| b == b' ')?;
    let stamp = normalize(std::str::from_utf8(&message[..space]).ok()?)?;
    Some((stamp, &message[space + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_normalized_to_nanoseconds() {
        assert_eq!(normalize("2026-11-23T17:16:29.1234Z").as_deref(), Some("2026-11-23T17:16:29.123400000Z"));
        assert_eq!(normalize("2026-11-23T17:16:29Z").as_deref(), Some("2026-11-23T17:16:29.000000000Z"));
        assert_eq!(normalize("garbage"), None);
        assert_eq!(normalize("2026-11-23T17:16:29.1234").as_deref(), None);
    }

    #[test]
    fn a_resumed_stream_skips_exactly_what_is_on_disk() {
        let cursor = Cursor { stamp: "2026-01-01T00:00:01.000000005Z".into(), same: 2 };
        let mut seen = (String::new(), 0);
        let stamps = [
            "2026-01-01T00:00:00.900000000Z", // before: on disk
            "2026-01-01T00:00:01.000000005Z", // the two at the cursor: on disk
            "2026-01-01T00:00:01.000000005Z",
            "2026-01-01T00:00:01.000000005Z", // a third at the same stamp: new
            "2026-01-01T00:00:01.100000000Z",
        ];
        let mut live = cursor.clone();
        let mut admit = |s: &str, seen: &mut (String, usize)| {
            let new = live.admits(s, seen);
            if new {
                live.advance(s);
            }
            new
        };
        let admitted: Vec<bool> = stamps.iter().map(|s| admit(s, &mut seen)).collect();
        assert_eq!(admitted, [false, false, false, true, true]);
        // a second stream of the same container over the same lines writes none of them again
        let mut other = (String::new(), 0);
        assert!(stamps.iter().all(|s| !admit(s, &mut other)));
    }

    #[test]
    fn the_cursor_is_read_back_from_the_log() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("current.log"),
            "2026-01-01T00:00:00.000000001Z out a\n2026-01-01T00:00:00.000000002Z out b\n\
             2026-01-01T00:00:00.000000002Z err c\n2026-01-01T00:00:09.000Z out [titan-supervisor] note\n",
        )
        .unwrap();
        let expected = Cursor { stamp: "2026-01-01T00:00:00.000000002Z".into(), same: 2 };
        assert_eq!(Cursor::of_log(dir.path(), "api"), expected);
        // after a rotation, the rotated file tells
        let rotated = crate::logs::rotated::fresh_name(dir.path(), "api", std::time::SystemTime::now());
        std::fs::rename(dir.path().join("current.log"), rotated).unwrap();
        std::fs::write(
            dir.path().join("current.log"),
            "2026-01-01T00:00:11.000Z out [titan-supervisor] note\n",
        )
        .unwrap();
        assert_eq!(Cursor::of_log(dir.path(), "api"), expected);
        assert_eq!(Cursor::of_log(&dir.path().join("none"), "api"), Cursor::default());
    }
}
