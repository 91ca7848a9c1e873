//! Releases as directories: `release create` writes one (`create`), the switch checks its
//! signature (`sign`) and reads it back (`read_digests`, `read_info`). Image references live in
//! `reference`, the byte-preserving pinning of services.toml in `pin`.

mod create;
mod pin;
mod reference;
pub(crate) mod sign;

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub(crate) use create::{Request, create};
pub(crate) use pin::load_unpinned;
pub(crate) use sign::{PASSWORD_VAR, verify_signature};

/// The files of a release directory (SPEC "Files").
pub(crate) const SERVICES: &str = "services.toml";
pub(crate) const DIGESTS: &str = "digests.json";
pub(crate) const SIGNATURE: &str = "digests.json.minisig";
pub(crate) const INFO: &str = "release.json";

/// digests.json names a few dozen images; release.json is three fields. Anything larger is not
/// one of them, and is refused before it is read whole.
const MAX_DIGESTS: u64 = 1 << 20;
const MAX_INFO: u64 = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ReleaseError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{}: service {service:?}: {problem}", path.display())]
    Digest { path: PathBuf, service: String, problem: String },
    #[error("{}: {key}: {problem}", path.display())]
    Field { path: PathBuf, key: &'static str, problem: String },
}

/// release.json: which commit a release was built from, and when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ReleaseInfo {
    /// The directory name, `<YYYYMMDDTHHMMSSZ>-<sha7>`.
    pub(crate) id: String,
    /// The full commit SHA.
    pub(crate) sha: String,
    /// RFC 3339, UTC.
    pub(crate) created: String,
}

/// digests.json of a release: service → `<repo>@sha256:<64 hex>`, every value pinned.
pub(crate) fn read_digests(release_dir: &Path) -> Result<BTreeMap<String, String>, ReleaseError> {
    let path = release_dir.join(DIGESTS);
    let bytes = read_release_file(&path, MAX_DIGESTS)?;
    let digests = parse_digests(&path, &bytes)?;
    if let Some((service, problem)) =
        digests.iter().find_map(|(s, v)| reference::pin_problem(v).map(|p| (s.clone(), p)))
    {
        return Err(ReleaseError::Digest { path, service, problem });
    }
    Ok(digests)
}

/// release.json of a release, its fields checked.
// Read by `releases` and the evidence once they show a release's commit; tested here until then.
#[allow(dead_code)]
pub(crate) fn read_info(release_dir: &Path) -> Result<ReleaseInfo, ReleaseError> {
    let path = release_dir.join(INFO);
    let bytes = read_release_file(&path, MAX_INFO)?;
    let info: ReleaseInfo =
        serde_json::from_slice(&bytes).map_err(|source| ReleaseError::Json { path: path.clone(), source })?;
    let field = |key, problem: String| ReleaseError::Field { path: path.clone(), key, problem };
    if info.id.is_empty() || info.id.starts_with('.') || info.id.contains('/') {
        return Err(field("id", format!("{:?} is not a release directory name", info.id)));
    }
    if let Some(problem) = sha_problem(&info.sha) {
        return Err(field("sha", problem));
    }
    if let Err(e) = humantime::parse_rfc3339(&info.created) {
        return Err(field("created", format!("{:?} is not an RFC 3339 UTC time: {e}", info.created)));
    }
    Ok(info)
}

/// The JSON shape of digests.json: one object of strings. Values are checked by the callers.
fn parse_digests(path: &Path, bytes: &[u8]) -> Result<BTreeMap<String, String>, ReleaseError> {
    serde_json::from_slice(bytes).map_err(|source| ReleaseError::Json { path: path.to_owned(), source })
}

/// Why `sha` cannot be a commit SHA, if it cannot.
fn sha_problem(sha: &str) -> Option<String> {
    let hex = sha.bytes().all(|b| b.is_ascii_hexdigit());
    (!hex || !(7..=64).contains(&sha.len()))
        .then(|| format!("{sha:?} is not a commit SHA: expected 7 to 64 hexadecimal characters"))
}

/// A file the daemon reads from a release directory: a regular file (a FIFO planted there would
/// otherwise hang the switch), at most `max` bytes.
fn read_release_file(path: &Path, max: u64) -> Result<Vec<u8>, ReleaseError> {
    read_regular(path, max).map_err(|source| ReleaseError::Read { path: path.to_owned(), source })
}

fn read_regular(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new().read(true).custom_flags(nix::libc::O_NONBLOCK).open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
    }
    read_at_most(file, max)
}

/// Reads everything up to `max` bytes; more is an error, and is never read.
fn read_at_most(file: impl Read, max: u64) -> io::Result<Vec<u8>> {
    read_up_to(file, max)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("larger than {max} bytes")))
}

/// Everything up to `max` bytes; `None` when there is more (which is never read).
fn read_up_to(file: impl Read, max: u64) -> io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= max).then_some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIN: &str = "127.0.0.1:5000/titan-testsvc@sha256:1111111111111111111111111111111111111111111111111111111111111111";

    fn release_with(name: &str, text: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(name), text).unwrap();
        dir
    }

    #[test]
    fn digests_of_a_release_are_read_back() {
        let dir = release_with(DIGESTS, &format!(r#"{{"api": "{PIN}"}}"#));
        let digests = read_digests(dir.path()).unwrap();
        assert_eq!(digests.get("api").map(String::as_str), Some(PIN));
    }

    #[test]
    fn broken_digests_are_errors_naming_the_file() {
        let cases = [
            (r#"{"api": "127.0.0.1:5000/titan"#, "EOF"),
            ("garbage", "expected value"),
            (r#"{"api": 5}"#, "invalid type"),
            (r#"["api"]"#, "invalid type"),
            (r#"{"api": "nats:2.10"}"#, "service \"api\": \"nats:2.10\" is not pinned"),
            (r#"{"api": "nats@sha256:abc"}"#, "invalid digest"),
        ];
        for (text, expect) in cases {
            let dir = release_with(DIGESTS, text);
            let e = read_digests(dir.path()).unwrap_err().to_string();
            assert!(e.starts_with(&dir.path().join(DIGESTS).display().to_string()), "{text}: {e}");
            assert!(e.contains(expect), "{text}: {e}");
        }
    }

    #[test]
    fn a_missing_digests_file_or_a_fifo_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(read_digests(dir.path()), Err(ReleaseError::Read { .. })));
        nix::unistd::mkfifo(&dir.path().join(DIGESTS), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let e = read_digests(dir.path()).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }

    #[test]
    fn release_info_is_read_back_and_checked() {
        let good =
            r#"{"id": "20260102T030405Z-abcdef1", "sha": "abcdef1234", "created": "2026-01-02T03:04:05Z"}"#;
        let info = read_info(release_with(INFO, good).path()).unwrap();
        assert_eq!(info.id, "20260102T030405Z-abcdef1");
        assert_eq!(info.sha, "abcdef1234");
        assert_eq!(info.created, "2026-01-02T03:04:05Z");
        let bad = [
            (r#"{"id": "x", "sha": "abcdef1"#, "EOF"),
            ("\u{0}\u{1}", "expected value"),
            (r#"{"id": 1, "sha": "abcdef1", "created": "2026-01-02T03:04:05Z"}"#, "invalid type"),
            (r#"{"id": "x", "sha": "abcdef1"}"#, "missing field `created`"),
            (r#"{"id": "../x", "sha": "abcdef1", "created": "2026-01-02T03:04:05Z"}"#, "id:"),
            (r#"{"id": "x", "sha": "abc", "created": "2026-01-02T03:04:05Z"}"#, "sha:"),
            (r#"{"id": "x", "sha": "abcdef1", "created": "yesterday"}"#, "created:"),
        ];
        for (text, expect) in bad {
            let dir = release_with(INFO, text);
            let e = read_info(dir.path()).unwrap_err().to_string();
            assert!(e.starts_with(&dir.path().join(INFO).display().to_string()), "{text}: {e}");
            assert!(e.contains(expect), "{text}: {e}");
        }
    }

    #[test]
    fn oversized_files_are_refused_unread() {
        let dir = release_with(INFO, &" ".repeat(MAX_INFO as usize + 1));
        let e = read_info(dir.path()).unwrap_err().to_string();
        assert!(e.contains("larger than"), "{e}");
    }
}
