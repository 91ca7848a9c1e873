//! The deploy's files on disk: `current` and the release directories (`layout`), the deploy
//! lock (`lock`), the attempt log (`history`), the release list and pruning (`releases`), and
//! here the small files with their atomic writes: last_known_good.json, a release's BAD mark and
//! its evidence. Every write that replaces a file goes through `write_atomic`, so a crash leaves
//! the old content or the new, never half of either.

mod history;
mod layout;
mod lock;
mod releases;

// Globs, so that a name the pipeline does not spell out (DeployLock, ReleaseEntry) is no
// unused import. history: Attempt, append_history, read_history. layout: Layout. lock:
// DeployLock, Holder, LockError, lock. releases: ReleaseEntry, list_releases, newest_good, prune.
pub(crate) use history::*;
pub(crate) use layout::*;
pub(crate) use lock::*;
pub(crate) use releases::*;

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};

const LAST_KNOWN_GOOD: &str = "last_known_good.json";
const BAD: &str = "BAD";
const EVIDENCE: &str = "evidence";

#[derive(Debug, thiserror::Error)]
pub(crate) enum StateError {
    #[error("{}: cannot {what}: {source}", path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{}: not a symlink: `current` must be a symlink to a release", path.display())]
    NotSymlink { path: PathBuf },
    #[error("{} -> {}: dangling: the release it points to is gone", path.display(), target.display())]
    Dangling { path: PathBuf, target: PathBuf },
    #[error("{} -> {}: not a directory", path.display(), target.display())]
    CurrentNotDir { path: PathBuf, target: PathBuf },
    #[error("release {release:?} not found (looked for {})", shown(looked))]
    NoRelease { release: String, looked: Vec<PathBuf> },
    #[error("{}: not a release: {why}", path.display())]
    NotRelease { path: PathBuf, why: &'static str },
    #[error("{}: the name is not UTF-8", path.display())]
    NotUtf8 { path: PathBuf },
    #[error("{}: corrupt: {detail}", path.display())]
    Corrupt { path: PathBuf, detail: String },
    #[error("{}:{line}: corrupt: {detail}", path.display())]
    CorruptLine { path: PathBuf, line: usize, detail: String },
    #[error("{}: cannot encode its JSON: {source}", path.display())]
    Encode {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{}: {attempt:?} is not a name for an evidence file", path.display())]
    BadAttempt { path: PathBuf, attempt: String },
}

fn shown(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// `map_err` for an I/O failure on `path`.
fn io_at(path: &Path, what: &'static str) -> impl FnOnce(io::Error) -> StateError {
    let path = path.to_path_buf();
    move |source| StateError::Io { path, what, source }
}

/// The directory holding `path` ("." for a bare file name).
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Now, as RFC 3339 in UTC to the second.
fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// Makes the entries of `dir` (a rename, a new file) durable.
fn fsync_dir(dir: &Path) -> io::Result<()> {
    let fd = open(dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
    nix::unistd::fsync(&fd)?;
    Ok(())
}

/// Writes `bytes` to `path` as a whole or not at all: temp file in the same dir, fsync, rename
/// over, fsync the directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temp_beside(path)?;
    let written = write_then_rename(&tmp, path, bytes);
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// `.<name>.tmp-<pid>-<n>` beside `path`: unique to this process and call, hidden from listings.
fn temp_beside(path: &Path) -> io::Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let Some(name) = path.file_name() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "no file name to write"));
    };
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut tmp = std::ffi::OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".tmp-{}-{n}", std::process::id()));
    Ok(parent_of(path).join(tmp))
}

fn write_then_rename(tmp: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    // a leftover of a dead process that had our pid: ours to replace
    let _ = fs::remove_file(tmp);
    // std opens with O_CLOEXEC; create_new (O_EXCL) never follows a planted symlink
    let mut file = OpenOptions::new().write(true).create_new(true).open(tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(tmp, path)?;
    fsync_dir(parent_of(path))
}

/// last_known_good.json as written.
#[derive(Serialize, Deserialize)]
struct LastKnownGood {
    release: String,
    since: String,
}

/// state_dir/last_known_good.json {"release": id, "since": RFC 3339}. Missing → Ok(None).
/// Truncated/garbage/wrong types → StateError::Corrupt (never a panic, never silently None).
pub(crate) fn last_known_good(state_dir: &Path) -> Result<Option<String>, StateError> {
    let path = state_dir.join(LAST_KNOWN_GOOD);
    let Some(lkg) = read_json::<LastKnownGood>(&path)? else { return Ok(None) };
    if !is_plain_name(&lkg.release) {
        let detail = format!("release {:?} is not a release directory name", lkg.release);
        return Err(StateError::Corrupt { path, detail });
    }
    Ok(Some(lkg.release))
}

/// Records `release` as the last known good, atomically.
pub(crate) fn set_last_known_good(state_dir: &Path, release: &str) -> Result<(), StateError> {
    let path = state_dir.join(LAST_KNOWN_GOOD);
    write_json(&path, &LastKnownGood { release: release.to_string(), since: now_rfc3339() })
}

/// A small state file as JSON: `None` when it is not there; truncated, garbage or of the
/// wrong shape is `Corrupt`, naming it.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, StateError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_at(path, "read")(e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| StateError::Corrupt { path: path.to_owned(), detail: e.to_string() })
}

/// Writes a small state file as one JSON line, atomically.
pub(crate) fn write_json(path: &Path, value: &impl Serialize) -> Result<(), StateError> {
    let mut bytes =
        serde_json::to_vec(value).map_err(|source| StateError::Encode { path: path.to_owned(), source })?;
    bytes.push(b'\n');
    write_atomic(path, &bytes).map_err(io_at(path, "write"))
}

/// A single path component: not empty, no '/', not "." nor "..", no NUL.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

/// <release_dir>/BAD holds the reason a switch to it failed; a bad release is never chosen by
/// `rollback`. Written atomically.
pub(crate) fn mark_bad(release_dir: &Path, reason: &str) -> Result<(), StateError> {
    let path = release_dir.join(BAD);
    write_atomic(&path, format!("{}\n", reason.trim_end()).as_bytes()).map_err(io_at(&path, "write"))
}

/// Whether `release_dir` is marked bad. A BAD that cannot even be looked at (permissions)
/// counts as bad: a release in doubt is never a rollback target.
pub(crate) fn is_bad(release_dir: &Path) -> bool {
    !matches!(fs::symlink_metadata(release_dir.join(BAD)), Err(e) if e.kind() == io::ErrorKind::NotFound)
}

/// The reason in `release_dir`'s BAD, when it has one.
fn bad_reason(release_dir: &Path) -> Option<String> {
    match fs::read(release_dir.join(BAD)) {
        Ok(bytes) => {
            let reason = String::from_utf8_lossy(&bytes).trim().to_string();
            Some(if reason.is_empty() { "(no reason given)".to_string() } else { reason })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => Some(format!("(BAD unreadable: {e})")),
    }
}

/// <release_dir>/evidence/<attempt>.json, atomic; returns its path.
pub(crate) fn write_evidence(
    release_dir: &Path,
    attempt: &str,
    evidence: &serde_json::Value,
) -> Result<PathBuf, StateError> {
    let dir = release_dir.join(EVIDENCE);
    if !is_plain_name(attempt) || attempt.starts_with('.') {
        return Err(StateError::BadAttempt { path: dir, attempt: attempt.to_string() });
    }
    fs::create_dir_all(&dir).map_err(io_at(&dir, "create"))?;
    let path = dir.join(format!("{attempt}.json"));
    // Value's Display cannot fail: `{:#}` is its pretty JSON
    write_atomic(&path, format!("{evidence:#}\n").as_bytes()).map_err(io_at(&path, "write"))?;
    Ok(path)
}

/// A temp dir with releases/, state/ and a `current` beside them, as on a host.
#[cfg(test)]
fn fixture() -> (tempfile::TempDir, Layout) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let layout = Layout {
        releases_dir: tmp.path().join("releases"),
        current: tmp.path().join("current"),
        state_dir: tmp.path().join("state"),
    };
    fs::create_dir_all(&layout.releases_dir).expect("releases dir");
    fs::create_dir_all(&layout.state_dir).expect("state dir");
    (tmp, layout)
}

/// A release directory `id` holding a services.toml; returns it.
#[cfg(test)]
fn release(layout: &Layout, id: &str) -> PathBuf {
    let dir = layout.releases_dir.join(id);
    fs::create_dir_all(&dir).expect("release dir");
    fs::write(dir.join("services.toml"), "").expect("services.toml");
    dir
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corrupt_path(err: StateError) -> PathBuf {
        match err {
            StateError::Corrupt { path, .. } => path,
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn write_atomic_replaces_the_whole_file_and_leaves_no_temp() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f.json");
        fs::write(&path, "old old old old").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        let names: Vec<_> = fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["f.json"]);
    }

    #[test]
    fn write_atomic_into_a_missing_dir_fails_and_creates_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(write_atomic(&tmp.path().join("missing/f.json"), b"x").is_err());
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[test]
    fn last_known_good_is_none_before_the_first_success_then_the_release_set() {
        let (_tmp, layout) = fixture();
        assert_eq!(last_known_good(&layout.state_dir).unwrap(), None);
        set_last_known_good(&layout.state_dir, "20261202T013000Z-abc1234").unwrap();
        assert_eq!(last_known_good(&layout.state_dir).unwrap().as_deref(), Some("20261202T013000Z-abc1234"));
        let raw: serde_json::Value =
            serde_json::from_slice(&fs::read(layout.state_dir.join(LAST_KNOWN_GOOD)).unwrap()).unwrap();
        assert!(humantime::parse_rfc3339(raw["since"].as_str().unwrap()).is_ok(), "{raw}");
    }

    #[test]
    fn a_corrupt_last_known_good_is_an_error_naming_the_file() {
        let (_tmp, layout) = fixture();
        let path = layout.state_dir.join(LAST_KNOWN_GOOD);
        for content in [
            r#"{"release": "20261202T0130"#,
            "",
            "\u{0}\u{0}garbage",
            "42",
            r#"{"release": 7, "since": "2026-12-02T01:30:00Z"}"#,
            r#"{"release": "../etc", "since": "2026-12-02T01:30:00Z"}"#,
        ] {
            fs::write(&path, content).unwrap();
            let err = last_known_good(&layout.state_dir).expect_err(content);
            assert!(err.to_string().contains(&path.display().to_string()), "{err}");
            assert_eq!(corrupt_path(err), path, "{content:?}");
        }
    }

    #[test]
    fn a_release_marked_bad_is_bad_with_its_reason() {
        let (_tmp, layout) = fixture();
        let dir = release(&layout, "20261202T013000Z-abc1234");
        assert!(!is_bad(&dir));
        assert_eq!(bad_reason(&dir), None);
        mark_bad(&dir, "verify: policy hash parity failed\n").unwrap();
        assert!(is_bad(&dir));
        assert_eq!(bad_reason(&dir).as_deref(), Some("verify: policy hash parity failed"));
    }

    #[test]
    fn evidence_lands_under_the_release_as_pretty_json() {
        let (_tmp, layout) = fixture();
        let dir = release(&layout, "20261202T013000Z-abc1234");
        let evidence = serde_json::json!({"outcome": "verified", "checks": [1, 2]});
        let path = write_evidence(&dir, "20261202T013000Z-20261202T013000Z-abc1234", &evidence).unwrap();
        assert_eq!(path, dir.join("evidence/20261202T013000Z-20261202T013000Z-abc1234.json"));
        let back: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(back, evidence);
    }

    #[test]
    fn an_attempt_name_that_would_escape_the_evidence_dir_is_refused() {
        let (_tmp, layout) = fixture();
        let dir = release(&layout, "r1");
        for attempt in ["", "..", "../../x", "a/b", ".hidden"] {
            let err = write_evidence(&dir, attempt, &serde_json::json!({})).expect_err(attempt);
            assert!(matches!(err, StateError::BadAttempt { .. }), "{attempt:?}: {err:?}");
        }
        assert!(!dir.join(EVIDENCE).exists());
    }
}
