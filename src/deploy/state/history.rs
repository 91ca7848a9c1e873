//! state_dir/history.jsonl: one JSON line per deploy attempt, appended whole, read back in
//! order; a line torn by a crash mid-write is the only damage forgiven.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{StateError, fsync_dir, io_at};

const HISTORY: &str = "history.jsonl";

/// One line per deploy attempt in state_dir/history.jsonl.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub(crate) struct Attempt {
    /// e.g. 20261202T013000Z-<release id>
    pub(crate) attempt: String,
    pub(crate) release: String,
    pub(crate) from: Option<String>,
    /// "switch" | "rollback" | "probation"
    pub(crate) kind: String,
    /// verified, rolled_back, rollback_failed, rollback_blocked, refused
    pub(crate) outcome: String,
    pub(crate) reason: Option<String>,
    pub(crate) started: String,
    pub(crate) ended: String,
    pub(crate) uid: Option<u32>,
    pub(crate) pid: Option<i32>,
}

/// Appends `a` as one line: O_APPEND, one write of the whole line, fsync.
pub(crate) fn append_history(state_dir: &Path, a: &Attempt) -> Result<(), StateError> {
    let path = state_dir.join(HISTORY);
    let mut line =
        serde_json::to_vec(a).map_err(|source| StateError::Encode { path: path.clone(), source })?;
    line.push(b'\n');
    let mut file =
        OpenOptions::new().read(true).append(true).create(true).open(&path).map_err(io_at(&path, "open"))?;
    let len = file.metadata().map_err(io_at(&path, "read"))?.len();
    if len > 0 && !ends_with_newline(&file, len).map_err(io_at(&path, "read"))? {
        mend_torn_tail(&mut file, &path, &mut line)?;
    }
    // a regular file takes the whole buffer in one write(2) but for a full disk or a signal,
    // where write_all goes on from where it stopped
    file.write_all(&line).map_err(io_at(&path, "append to"))?;
    file.sync_data().map_err(io_at(&path, "fsync"))?;
    if len == 0 {
        // the file may be new: make its name durable too
        fsync_dir(state_dir).map_err(io_at(state_dir, "fsync"))?;
    }
    Ok(())
}

fn ends_with_newline(file: &File, len: u64) -> io::Result<bool> {
    let mut last = [0u8];
    file.read_exact_at(&mut last, len - 1)?;
    Ok(last[0] == b'\n')
}

/// The file ends without a newline (a crash mid-write). A complete attempt there only lacks
/// its newline: `line` gets one in front. Anything else is cut off, so that the torn line does
/// not become a middle line that fails every later read.
fn mend_torn_tail(file: &mut File, path: &Path, line: &mut Vec<u8>) -> Result<(), StateError> {
    let bytes = fs::read(path).map_err(io_at(path, "read"))?;
    let start = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    if serde_json::from_slice::<Attempt>(&bytes[start..]).is_ok() {
        line.insert(0, b'\n');
        return Ok(());
    }
    tracing::warn!(path = %path.display(), bytes = bytes.len() - start, "cutting off a torn last line (a crash mid-write)");
    file.set_len(start as u64).map_err(io_at(path, "truncate"))
}

/// Every attempt in order; a torn last line (a crash mid-write) is skipped with a warning; any
/// other bad line is an error naming the file and line number. No history yet is none.
pub(crate) fn read_history(state_dir: &Path) -> Result<Vec<Attempt>, StateError> {
    let path = state_dir.join(HISTORY);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_at(&path, "read")(e)),
    };
    let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    // after the last newline: empty, or a line whose write never finished
    let torn = lines.len() - 1;
    let mut attempts = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        if line.trim_ascii().is_empty() {
            continue;
        }
        match serde_json::from_slice(line) {
            Ok(a) => attempts.push(a),
            Err(e) if i == torn => {
                tracing::warn!(path = %path.display(), line = i + 1, "skipping a torn last line (a crash mid-write): {e}");
            }
            Err(e) => return Err(StateError::CorruptLine { path, line: i + 1, detail: e.to_string() }),
        }
    }
    Ok(attempts)
}

#[cfg(test)]
pub(super) fn attempt(release: &str, outcome: &str) -> Attempt {
    Attempt {
        attempt: format!("20261202T013000Z-{release}"),
        release: release.into(),
        from: Some("20261201T000000Z-old0000".into()),
        kind: "switch".into(),
        outcome: outcome.into(),
        reason: None,
        started: "2026-12-02T01:30:00Z".into(),
        ended: "2026-12-02T01:31:00Z".into(),
        uid: Some(0),
        pid: Some(4242),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history_file(state_dir: &Path) -> std::path::PathBuf {
        state_dir.join(HISTORY)
    }

    #[test]
    fn no_history_yet_is_empty() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(read_history(tmp.path()).unwrap(), []);
    }

    #[test]
    fn attempts_read_back_in_the_order_appended() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (attempt("r1", "verified"), attempt("r2", "rolled_back"));
        append_history(tmp.path(), &a).unwrap();
        append_history(tmp.path(), &b).unwrap();
        assert_eq!(read_history(tmp.path()).unwrap(), [a, b]);
        let text = fs::read_to_string(history_file(tmp.path())).unwrap();
        assert_eq!(text.lines().count(), 2);
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_the_good_lines_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let a = attempt("r1", "verified");
        append_history(tmp.path(), &a).unwrap();
        let mut file = OpenOptions::new().append(true).open(history_file(tmp.path())).unwrap();
        file.write_all(br#"{"attempt":"20261202T0200"#).unwrap();
        assert_eq!(read_history(tmp.path()).unwrap(), [a]);
    }

    #[test]
    fn an_append_after_a_torn_line_cuts_it_off() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (attempt("r1", "verified"), attempt("r2", "verified"));
        append_history(tmp.path(), &a).unwrap();
        let mut file = OpenOptions::new().append(true).open(history_file(tmp.path())).unwrap();
        file.write_all(br#"{"attempt":"20261202T0200"#).unwrap();
        append_history(tmp.path(), &b).unwrap();
        assert_eq!(read_history(tmp.path()).unwrap(), [a, b]);
    }

    #[test]
    fn an_append_after_a_whole_line_without_its_newline_keeps_it() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (attempt("r1", "verified"), attempt("r2", "verified"));
        fs::write(history_file(tmp.path()), serde_json::to_vec(&a).unwrap()).unwrap();
        append_history(tmp.path(), &b).unwrap();
        assert_eq!(read_history(tmp.path()).unwrap(), [a, b]);
    }

    #[test]
    fn a_garbage_middle_line_is_an_error_naming_the_file_and_line_2() {
        let tmp = tempfile::tempdir().unwrap();
        append_history(tmp.path(), &attempt("r1", "verified")).unwrap();
        let mut file = OpenOptions::new().append(true).open(history_file(tmp.path())).unwrap();
        file.write_all(b"not json at all\n").unwrap();
        append_history(tmp.path(), &attempt("r2", "verified")).unwrap();
        let err = read_history(tmp.path()).unwrap_err();
        let StateError::CorruptLine { path, line, .. } = &err else { panic!("{err:?}") };
        assert_eq!((path, *line), (&history_file(tmp.path()), 2));
        assert!(err.to_string().contains("history.jsonl:2:"), "{err}");
    }

    #[test]
    fn a_line_with_a_wrong_type_is_corrupt_even_when_last() {
        let tmp = tempfile::tempdir().unwrap();
        append_history(tmp.path(), &attempt("r1", "verified")).unwrap();
        let mut file = OpenOptions::new().append(true).open(history_file(tmp.path())).unwrap();
        file.write_all(b"{\"attempt\": 7}\n").unwrap();
        let err = read_history(tmp.path()).unwrap_err();
        assert!(matches!(err, StateError::CorruptLine { line: 2, .. }), "{err:?}");
    }

    #[test]
    fn an_attempt_with_only_the_required_fields_reads_with_nones() {
        let tmp = tempfile::tempdir().unwrap();
        let line =
            r#"{"attempt":"a","release":"r1","kind":"switch","outcome":"refused","started":"s","ended":"e"}"#;
        fs::write(history_file(tmp.path()), format!("{line}\n")).unwrap();
        let read = read_history(tmp.path()).unwrap();
        assert_eq!((read[0].from.clone(), read[0].uid, read[0].pid), (None, None, None));
    }
}
