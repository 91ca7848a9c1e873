//! `release create`: a source config checked against CI's digests.json, pinned, and written as
//! a release directory. The directory is built in a hidden staging directory beside its target
//! and renamed into place without replacing anything, so a failed create leaves nothing behind.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use minisign::PError;
use toml_edit::DocumentMut;

use super::pin::{self, Unpinned, parse_unpinned};
use super::reference::{pin_problem, repository};
use super::sign::{self, KeyError};
use super::{DIGESTS, INFO, MAX_DIGESTS, ReleaseError, ReleaseInfo, SERVICES, SIGNATURE};
use crate::config::{self, Exec, LoadError, Report, Source};

/// What `release create` was asked for.
pub(crate) struct Request<'a> {
    /// The source services.toml.
    pub(crate) config: &'a Path,
    pub(crate) digests: &'a Path,
    pub(crate) sha: &'a str,
    /// A minisign secret key to sign digests.json with.
    pub(crate) sign: Option<&'a Path>,
    /// The password of an encrypted `sign` key.
    pub(crate) password: Option<&'a str>,
    /// Where the release directory goes (default: the config's `releases_dir`).
    pub(crate) out: Option<&'a Path>,
    pub(crate) now: SystemTime,
    /// `${VAR}`s of the config that its env_file does not set.
    pub(crate) env: &'a dyn Fn(&str) -> Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum CreateError {
    #[error("--sha: {problem}")]
    Sha { problem: String },
    #[error("{0}")]
    Source(LoadError),
    #[error("{report}{}: invalid source config: {} problem(s)", report.file, report.items.len())]
    Invalid { report: Report },
    #[error(transparent)]
    Digests(ReleaseError),
    #[error("{}: does not match {}:\n{}", digests.display(), config.display(), indented(problems))]
    Mismatch { digests: PathBuf, config: PathBuf, problems: Vec<DigestProblem> },
    #[error(transparent)]
    Key(KeyError),
    #[error("{}: already exists (a release of this commit made in the same second)", path.display())]
    Exists { path: PathBuf },
    #[error("{}: services.{service}.image: not a string value that can be pinned", path.display())]
    NotEditable { path: PathBuf, service: String },
    #[error("{report}{}: the pinned services.toml does not validate", report.file)]
    Pinned { report: Report },
    #[error("{}: cannot write: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: cannot sign digests.json with it: {source}", key.display())]
    Sign {
        key: PathBuf,
        #[source]
        source: PError,
    },
}

impl CreateError {
    /// Refused (bad input: exit 2), as opposed to failed while writing (exit 1).
    pub(crate) fn is_refusal(&self) -> bool {
        !matches!(self, CreateError::Write { .. } | CreateError::Sign { .. })
    }
}

/// A way digests.json and the config's container services disagree.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DigestProblem {
    #[error("service {service:?} (image {image:?}) is a container and has no digest")]
    Missing { service: String, image: String },
    #[error("{service:?} names no service of the config")]
    Unknown { service: String },
    #[error("{service:?} is a native service (command): it has no image to pin")]
    Native { service: String },
    #[error("service {service:?}: {problem}")]
    NotPinned { service: String, problem: String },
    #[error(
        "service {service:?}: digest {digest:?} is not of the config's image {image:?} (repository {} vs {})",
        repository(digest),
        repository(image)
    )]
    Repository { service: String, image: String, digest: String },
}

fn indented(problems: &[DigestProblem]) -> String {
    problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n")
}

/// Writes the release directory and returns its path.
pub(crate) fn create(req: &Request<'_>) -> Result<PathBuf, CreateError> {
    if let Some(problem) = super::sha_problem(req.sha) {
        return Err(CreateError::Sha { problem });
    }
    let sha = req.sha.to_ascii_lowercase();
    let source = read_source(req)?;
    let (digests_bytes, digests) = read_digests(req, &source)?;
    let id = release_id(req.now, &sha);
    let signature = signature(req, &digests_bytes, &id)?;
    let out = req.out.map_or_else(|| source.config.supervisor.releases_dir.clone(), Path::to_owned);
    let target = out.join(&id);
    if target.symlink_metadata().is_ok() {
        return Err(CreateError::Exists { path: target });
    }
    let pinned = pinned_text(req.config, source.doc, &digests)?;
    let info = info_json(&id, &sha, req.now)
        .map_err(|e| CreateError::Write { path: target.join(INFO), source: e.into() })?;
    let staging = Staging::create(&out, &id)?;
    staging.write(SERVICES, pinned.as_bytes())?;
    staging.write(DIGESTS, &digests_bytes)?;
    staging.write(INFO, info.as_bytes())?;
    if let Some(signature) = signature {
        staging.write(SIGNATURE, signature.as_bytes())?;
    }
    check_written(&staging.dir, &target, req.env)?;
    staging.commit(&target)?;
    Ok(target)
}

/// digests.json as given and as read, checked against the source's container services.
fn read_digests(
    req: &Request<'_>,
    source: &Unpinned,
) -> Result<(Vec<u8>, BTreeMap<String, String>), CreateError> {
    let bytes = read_input(req.digests)?;
    let digests = super::parse_digests(req.digests, &bytes).map_err(CreateError::Digests)?;
    let problems = check_digests(source, &digests);
    if !problems.is_empty() {
        let (digests, config) = (req.digests.to_owned(), req.config.to_owned());
        return Err(CreateError::Mismatch { digests, config, problems });
    }
    Ok((bytes, digests))
}

/// The text of digests.json.minisig, with `--sign`.
fn signature(req: &Request<'_>, digests: &[u8], id: &str) -> Result<Option<String>, CreateError> {
    let Some(path) = req.sign else {
        return Ok(None);
    };
    let key = sign::load_secret_key(path, req.password).map_err(CreateError::Key)?;
    let signature = sign::sign(&key, digests, id, req.now)
        .map_err(|source| CreateError::Sign { key: path.to_owned(), source })?;
    Ok(Some(signature))
}

/// The source config, valid except that its images may be unpinned.
fn read_source(req: &Request<'_>) -> Result<Unpinned, CreateError> {
    let text = pin::read_source(req.config).map_err(CreateError::Source)?;
    let name = req.config.display().to_string();
    let base_dir = req.config.parent().unwrap_or(Path::new("."));
    let source = Source { name: &name, text: &text, base_dir };
    parse_unpinned(&source, req.env).map_err(|report| CreateError::Invalid { report })
}

/// digests.json as given (a pipe will do: `--digests <(ci-tool)`), at most `MAX_DIGESTS` bytes.
fn read_input(path: &Path) -> Result<Vec<u8>, CreateError> {
    let read = |source| CreateError::Digests(ReleaseError::Read { path: path.to_owned(), source });
    let file = std::fs::File::open(path).map_err(read)?;
    super::read_at_most(file, MAX_DIGESTS).map_err(read)
}

/// Every container service has a pinned digest of its own repository, and every digest names a
/// container service.
fn check_digests(source: &Unpinned, digests: &BTreeMap<String, String>) -> Vec<DigestProblem> {
    let mut problems = Vec::new();
    for (service, image) in &source.images {
        let (service, image) = (service.clone(), image.clone());
        match digests.get(&service) {
            None => problems.push(DigestProblem::Missing { service, image }),
            Some(digest) => match pin_problem(digest) {
                Some(problem) => problems.push(DigestProblem::NotPinned { service, problem }),
                None if repository(digest) != repository(&image) => {
                    problems.push(DigestProblem::Repository { service, image, digest: digest.clone() })
                }
                None => {}
            },
        }
    }
    for service in digests.keys().filter(|s| !source.images.contains_key(*s)) {
        let service = service.clone();
        match source.config.service(&service) {
            Some(_) => problems.push(DigestProblem::Native { service }),
            None => problems.push(DigestProblem::Unknown { service }),
        }
    }
    problems
}

/// `<YYYYMMDDTHHMMSSZ>-<sha7>`, UTC.
fn release_id(now: SystemTime, sha: &str) -> String {
    let stamp: String = humantime::format_rfc3339_seconds(now).to_string().replace(['-', ':'], "");
    format!("{stamp}-{}", &sha[..7])
}

/// release.json, its keys in SPEC's order.
fn info_json(id: &str, sha: &str, now: SystemTime) -> serde_json::Result<String> {
    let created = humantime::format_rfc3339_seconds(now).to_string();
    let info = ReleaseInfo { id: id.to_owned(), sha: sha.to_owned(), created };
    Ok(serde_json::to_string_pretty(&info)? + "\n")
}

fn pinned_text(
    config: &Path,
    mut doc: DocumentMut,
    digests: &BTreeMap<String, String>,
) -> Result<String, CreateError> {
    for (service, reference) in digests {
        if !pin::pin(&mut doc, service, reference) {
            return Err(CreateError::NotEditable { path: config.to_owned(), service: service.clone() });
        }
    }
    Ok(doc.to_string())
}

/// The services.toml as written must parse with every image pinned; it is named and its
/// relative paths (a native service's `cwd`) taken as at its final place.
fn check_written(
    staged: &Path,
    target: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), CreateError> {
    let path = staged.join(SERVICES);
    let text = std::fs::read_to_string(&path).map_err(|source| CreateError::Write { path, source })?;
    let name = target.join(SERVICES).display().to_string();
    let config = config::parse(&Source { name: &name, text: &text, base_dir: target }, env)
        .map_err(|report| CreateError::Pinned { report })?;
    for (service, svc) in &config.services {
        let Exec::Image { image, .. } = &svc.exec else { continue };
        if let Some(problem) = pin_problem(image) {
            let report = Report::single(&name, format!("services.{service}.image: {problem}"));
            return Err(CreateError::Pinned { report });
        }
    }
    Ok(())
}

/// The release being written: a hidden directory beside its target, removed unless committed.
struct Staging {
    dir: PathBuf,
    committed: bool,
}

impl Staging {
    fn create(out: &Path, id: &str) -> Result<Self, CreateError> {
        std::fs::create_dir_all(out).map_err(|source| CreateError::Write { path: out.to_owned(), source })?;
        let dir = out.join(format!(".{id}.partial-{}", std::process::id()));
        std::fs::create_dir(&dir).map_err(|source| CreateError::Write { path: dir.clone(), source })?;
        Ok(Staging { dir, committed: false })
    }

    fn write(&self, name: &str, bytes: &[u8]) -> Result<(), CreateError> {
        let path = self.dir.join(name);
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .and_then(|mut file| file.write_all(bytes).and_then(|()| file.sync_all()));
        written.map_err(|source| CreateError::Write { path, source })
    }

    /// Renames the directory to `target`, which must not exist (RENAME_NOREPLACE: a release
    /// made at the same time is never replaced, not even an empty directory).
    fn commit(mut self, target: &Path) -> Result<(), CreateError> {
        use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
        sync_dir(&self.dir).map_err(|source| CreateError::Write { path: self.dir.clone(), source })?;
        renameat2(AT_FDCWD, &self.dir, AT_FDCWD, target, RenameFlags::RENAME_NOREPLACE).map_err(
            |e| match e {
                nix::errno::Errno::EEXIST | nix::errno::Errno::ENOTEMPTY => {
                    CreateError::Exists { path: target.to_owned() }
                }
                e => CreateError::Write { path: target.to_owned(), source: e.into() },
            },
        )?;
        self.committed = true;
        // The release is in place; a crash before this sync may lose it, and CI makes it again.
        let _ = target.parent().map(sync_dir);
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "1111111111111111111111111111111111111111111111111111111111111111";

    #[test]
    fn a_release_is_named_by_its_utc_time_and_short_sha() {
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_767_323_045);
        assert_eq!(release_id(now, "abcdef1234567"), "20260102T030405Z-abcdef1");
        let info = info_json("x", "abcdef1234567", now).unwrap();
        assert_eq!(
            info,
            "{\n  \"id\": \"x\",\n  \"sha\": \"abcdef1234567\",\n  \"created\": \"2026-01-02T03:04:05Z\"\n}\n"
        );
    }

    fn source() -> Unpinned {
        let text = "[services.api]\nimage = \"ghcr.io/x/api:1\"\nhealth = { none = true }\n\n\
                    [services.web]\nimage = \"nats\"\nhealth = { none = true }\n\n\
                    [services.job]\ncommand = [\"/bin/true\"]\nkind = \"oneshot\"\n";
        let src = Source { name: "services.toml", text, base_dir: Path::new("/") };
        parse_unpinned(&src, &|_| None).unwrap()
    }

    fn digests(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(s, d)| (s.to_string(), d.replace("HEX", HEX))).collect()
    }

    #[test]
    fn digests_that_cover_every_container_of_its_repository_pass() {
        let d = digests(&[("api", "ghcr.io/x/api@sha256:HEX"), ("web", "docker.io/library/nats@sha256:HEX")]);
        assert_eq!(check_digests(&source(), &d), []);
    }

    #[test]
    fn every_disagreement_is_reported_at_once() {
        let d = digests(&[
            ("web", "ghcr.io/x/nats@sha256:HEX"),
            ("job", "x@sha256:HEX"),
            ("ghost", "x@sha256:HEX"),
        ]);
        let problems: Vec<String> = check_digests(&source(), &d).iter().map(ToString::to_string).collect();
        assert_eq!(
            problems,
            [
                "service \"api\" (image \"ghcr.io/x/api:1\") is a container and has no digest",
                "service \"web\": digest \"ghcr.io/x/nats@sha256:1111111111111111111111111111111111111111111111111111111111111111\" \
             is not of the config's image \"nats\" (repository ghcr.io/x/nats vs docker.io/library/nats)",
                "\"ghost\" names no service of the config",
                "\"job\" is a native service (command): it has no image to pin",
            ]
        );
        let d = digests(&[("api", "ghcr.io/x/api:1"), ("web", "nats@sha256:HEX")]);
        let problems = check_digests(&source(), &d);
        assert!(
            matches!(&problems[..], [DigestProblem::NotPinned { service, .. }] if service == "api"),
            "{problems:?}"
        );
    }

    fn fixture_request<'a>(config: &'a Path, out: &'a Path, now: SystemTime) -> Request<'a> {
        Request {
            config,
            digests: Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/release/digests.json")),
            sha: "abcdef1",
            sign: None,
            password: None,
            out: Some(out),
            now,
            env: &|_| None,
        }
    }

    const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/release/services.toml");

    #[test]
    fn a_relative_cwd_of_a_native_service_is_inside_the_release() {
        let out = tempfile::tempdir().unwrap();
        let dir = create(&fixture_request(Path::new(FIXTURE), out.path(), SystemTime::now())).unwrap();
        let release = config::load(&dir.join(SERVICES)).unwrap();
        let Exec::Command { cwd, .. } = &release.services["worker"].exec else { panic!("worker is native") };
        assert_eq!(cwd.as_deref(), Some(dir.join("services/worker").as_path()));
    }

    #[test]
    fn a_second_release_of_the_same_commit_in_the_same_second_is_refused_and_leaves_nothing() {
        let out = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let first = create(&fixture_request(Path::new(FIXTURE), out.path(), now)).unwrap();
        let e = create(&fixture_request(Path::new(FIXTURE), out.path(), now)).unwrap_err();
        assert!(matches!(&e, CreateError::Exists { path } if *path == first), "{e}");
        assert!(e.is_refusal());
        let entries: Vec<_> = std::fs::read_dir(out.path()).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(entries, [first]);
    }

    #[test]
    fn an_uncommitted_staging_directory_is_removed() {
        let out = tempfile::tempdir().unwrap();
        let staging = Staging::create(out.path(), "20260102T030405Z-abcdef1").unwrap();
        staging.write(SERVICES, b"half").unwrap();
        assert!(staging.dir.exists());
        drop(staging);
        assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
    }

    #[test]
    fn an_empty_directory_in_the_way_is_not_replaced() {
        let out = tempfile::tempdir().unwrap();
        let staging = Staging::create(out.path(), "r").unwrap();
        let target = out.path().join("r");
        std::fs::create_dir(&target).unwrap();
        let e = staging.commit(&target).unwrap_err();
        assert!(matches!(e, CreateError::Exists { .. }), "{e}");
        assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 1);
    }
}
