//! `release create` and `validate --allow-unpinned` end to end: the real binary on the fixture
//! source config (tests/fixtures/release/), its release checked file by file, signatures checked
//! with Debian's minisign CLI, and every refusal exiting 2 with nothing left behind.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{Run, fixtures, run, run_with, write};

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";
const PIN_CACHE: &str =
    "127.0.0.1:5000/titan-testsvc@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const PIN_API: &str =
    "127.0.0.1:5000/titan-api@sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn source() -> PathBuf {
    fixtures().join("release/services.toml")
}

fn digests() -> PathBuf {
    fixtures().join("release/digests.json")
}

fn text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `release create` of `config` and `digests` into `out`, with `extra` arguments.
fn create(config: &Path, digests: &Path, sha: &str, out: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["release", "create", "--config", path(config), "--digests", path(digests)];
    args.extend(["--sha", sha, "--out", path(out)]);
    args.extend(extra);
    run(&args)
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

/// The release directory a successful create printed.
fn created(out: &Run) -> PathBuf {
    assert_eq!(out.code, Some(0), "{}", out.all());
    PathBuf::from(out.stdout.trim_end())
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

/// Debian's minisign CLI in `dir`, `input` on stdin (a password, when it asks for one).
fn minisign(dir: &Path, args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new("/usr/bin/minisign")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("/usr/bin/minisign: install it (apt-get install minisign; scripts/test.sh does)");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn assert_ok(what: &str, out: &Output) {
    let shown = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{what}: {shown}");
}

#[test]
fn a_release_pins_every_image_and_keeps_every_other_byte() {
    let out = tempfile::tempdir().unwrap();
    let dir = created(&create(&source(), &digests(), SHA, out.path(), &[]));
    let name = dir.file_name().unwrap().to_str().unwrap();
    let (stamp, sha7) = name.split_once('-').unwrap();
    assert_eq!(sha7, "0123456");
    assert!(stamp.len() == 16 && stamp.as_bytes()[8] == b'T' && stamp.ends_with('Z'), "{name}");
    assert!(stamp.bytes().filter(u8::is_ascii_digit).count() == 14, "{name}");
    assert_eq!(dir.parent(), Some(out.path()));
    assert_eq!(entries(out.path()), [name], "nothing but the release in --out");
    assert_eq!(entries(&dir), ["digests.json", "release.json", "services.toml"]);

    let expected = text(&source())
        .replace("\"127.0.0.1:5000/titan-testsvc:1.2\"", &format!("\"{PIN_CACHE}\""))
        .replace("'127.0.0.1:5000/titan-api'", &format!("\"{PIN_API}\""));
    assert_eq!(text(&dir.join("services.toml")), expected);
    assert_eq!(std::fs::read(dir.join("digests.json")).unwrap(), std::fs::read(digests()).unwrap());

    let info: serde_json::Value = serde_json::from_str(&text(&dir.join("release.json"))).unwrap();
    assert_eq!(info["id"], name);
    assert_eq!(info["sha"], SHA);
    let created = info["created"].as_str().unwrap();
    let (date, time) = (&stamp[..8], &stamp[9..15]);
    assert_eq!(created.replace(['-', ':'], ""), format!("{date}T{time}Z"), "{created}");
}

#[test]
fn the_release_validates_with_every_image_pinned() {
    let out = tempfile::tempdir().unwrap();
    let dir = created(&create(&source(), &digests(), SHA, out.path(), &[]));
    let validated = run(&["validate", path(&dir.join("services.toml"))]);
    assert_eq!(validated.code, Some(0), "{}", validated.all());
}

#[test]
fn without_out_the_release_goes_to_releases_dir_beside_the_config() {
    let tmp = tempfile::tempdir().unwrap();
    let config = write(tmp.path(), "services.toml", &text(&source()));
    let made =
        run(&["release", "create", "--config", path(&config), "--digests", path(&digests()), "--sha", SHA]);
    let dir = created(&made);
    assert_eq!(dir.parent(), Some(tmp.path().join("releases").as_path()));
    assert!(dir.join("services.toml").is_file());
}

#[test]
fn a_release_signed_by_create_verifies_with_the_minisign_cli() {
    let keys = tempfile::tempdir().unwrap();
    assert_ok("minisign -G", &minisign(keys.path(), &["-G", "-W", "-p", "k.pub", "-s", "k.key"], ""));
    let out = tempfile::tempdir().unwrap();
    let key = keys.path().join("k.key");
    let dir = created(&create(&source(), &digests(), SHA, out.path(), &["--sign", path(&key)]));
    assert_eq!(entries(&dir), ["digests.json", "digests.json.minisig", "release.json", "services.toml"]);
    let public = keys.path().join("k.pub");
    let verified = minisign(&dir, &["-V", "-p", path(&public), "-m", "digests.json"], "");
    assert_ok("minisign -V", &verified);
    let shown = String::from_utf8_lossy(&verified.stdout);
    assert!(shown.contains(&format!("release:{}", dir.file_name().unwrap().to_str().unwrap())), "{shown}");
}

#[test]
fn an_encrypted_signing_key_takes_its_password_from_the_environment() {
    let keys = tempfile::tempdir().unwrap();
    let made = minisign(keys.path(), &["-G", "-p", "k.pub", "-s", "k.key"], "hunter2\nhunter2\n");
    assert_ok("minisign -G", &made);
    let key = keys.path().join("k.key");
    let out = tempfile::tempdir().unwrap();
    let refused = create(&source(), &digests(), SHA, out.path(), &["--sign", path(&key)]);
    assert_eq!(refused.code, Some(2), "{}", refused.all());
    assert!(
        refused.stderr.contains("TITAN_MINISIGN_PASSWORD") && refused.stderr.contains(path(&key)),
        "{}",
        refused.stderr
    );
    assert_eq!(entries(out.path()), Vec::<String>::new());

    let (config, digests) = (source(), digests());
    let mut args = vec!["release", "create", "--config", path(&config), "--digests", path(&digests)];
    args.extend(["--sha", SHA, "--out", path(out.path()), "--sign", path(&key)]);
    let signed = run_with(&args, &[("TITAN_MINISIGN_PASSWORD", "hunter2")], Duration::from_secs(60));
    let dir = created(&signed);
    let verified = minisign(&dir, &["-V", "-p", path(&keys.path().join("k.pub")), "-m", "digests.json"], "");
    assert_ok("minisign -V", &verified);
}

/// A create that must be refused: exit 2, stderr naming every one of `named`, and nothing
/// written to --out.
fn assert_refused(config: &Path, digests: &Path, sha: &str, named: &[&str]) {
    let out = tempfile::tempdir().unwrap();
    let releases = out.path().join("releases");
    let refused = create(config, digests, sha, &releases, &[]);
    assert_eq!(refused.code, Some(2), "{named:?}: {}", refused.all());
    assert_eq!(refused.stdout, "", "{named:?}");
    for name in named {
        assert!(refused.stderr.contains(name), "{name:?} not in: {}", refused.stderr);
    }
    assert!(!releases.exists(), "{named:?}: {:?} left behind", entries(&releases));
}

/// digests.json with `edit` applied to the fixture's text.
fn digests_edited(dir: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    write(dir, "digests.json", &edit(text(&digests())))
}

#[test]
fn a_digest_for_an_unknown_service_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ghost = format!("\"ghost\": \"{PIN_API}\",\n  \"api\"");
    let d = digests_edited(tmp.path(), |t| t.replacen("\"api\"", &ghost, 1));
    assert_refused(&source(), &d, SHA, &[path(&d), path(&source()), "\"ghost\" names no service"]);
}

#[test]
fn a_digest_for_a_native_service_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let worker = format!("\"worker\": \"{PIN_API}\",\n  \"api\"");
    let d = digests_edited(tmp.path(), |t| t.replacen("\"api\"", &worker, 1));
    assert_refused(&source(), &d, SHA, &[path(&d), "\"worker\" is a native service"]);
}

#[test]
fn a_container_service_without_a_digest_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = write(tmp.path(), "digests.json", &format!("{{\"cache\": \"{PIN_CACHE}\"}}"));
    assert_refused(
        &source(),
        &d,
        SHA,
        &[path(&d), "service \"api\"", "127.0.0.1:5000/titan-api", "no digest"],
    );
}

#[test]
fn a_digest_of_another_repository_is_refused_naming_both() {
    let tmp = tempfile::tempdir().unwrap();
    let d = digests_edited(tmp.path(), |t| t.replace("5000/titan-api@", "5000/titan-other@"));
    let named = ["service \"api\"", "127.0.0.1:5000/titan-other@sha256:bbbb", "\"127.0.0.1:5000/titan-api\""];
    assert_refused(&source(), &d, SHA, &named);
}

#[test]
fn an_unpinned_or_malformed_digest_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = digests_edited(tmp.path(), |t| t.replace(PIN_API, "127.0.0.1:5000/titan-api:latest"));
    assert_refused(&source(), &d, SHA, &["service \"api\"", "is not pinned"]);
    let d = digests_edited(tmp.path(), |t| t.replace("bbbbbbbb", "BBBB"));
    assert_refused(&source(), &d, SHA, &["service \"api\"", "invalid digest"]);
}

#[test]
fn a_digests_file_that_is_not_an_object_of_strings_is_refused_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    for garbage in ["{\"api\": ", "not json", "{\"api\": [1]}", "[]"] {
        let d = write(tmp.path(), "digests.json", garbage);
        assert_refused(&source(), &d, SHA, &[path(&d)]);
    }
    assert_refused(&source(), &tmp.path().join("missing.json"), SHA, &["missing.json", "cannot read"]);
}

#[test]
fn a_short_or_non_hex_sha_is_refused() {
    assert_refused(&source(), &digests(), "abc123", &["--sha", "\"abc123\""]);
    assert_refused(&source(), &digests(), "main-branch", &["--sha", "hexadecimal"]);
}

#[test]
fn an_invalid_source_config_is_refused_with_the_place_of_each_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = text(&source())
        .replace("group = \"app\"\ncommand", "group = \"app\"\nrestart = \"sometimes\"\ncommand");
    let config = write(tmp.path(), "services.toml", &bad);
    let place = format!("{}:23:11: services.worker.restart", path(&config));
    assert_refused(&config, &digests(), SHA, &[&place, "invalid source config"]);
    assert_refused(&tmp.path().join("nope.toml"), &digests(), SHA, &["nope.toml", "cannot read"]);
}

#[test]
fn validate_allow_unpinned_accepts_the_source_and_still_checks_the_rest() {
    let strict = run(&["validate", path(&source())]);
    assert_eq!(strict.code, Some(2), "{}", strict.all());
    assert!(
        strict.stderr.contains("services.cache.image") && strict.stderr.contains("not pinned"),
        "{}",
        strict.stderr
    );
    let lenient = run(&["validate", "--allow-unpinned", path(&source())]);
    assert_eq!(lenient.code, Some(0), "{}", lenient.all());
    assert!(lenient.stdout.contains("valid: 3 services"), "{}", lenient.stdout);

    let tmp = tempfile::tempdir().unwrap();
    let bad = text(&source()).replace("'127.0.0.1:5000/titan-api'", "'127.0.0.1:5000/titan api'");
    let config = write(tmp.path(), "services.toml", &bad);
    let refused = run(&["validate", "--allow-unpinned", "--json", path(&config)]);
    assert_eq!(refused.code, Some(2), "{}", refused.all());
    let report: serde_json::Value = serde_json::from_str(&refused.stdout).unwrap();
    let errors = report["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{report}");
    assert_eq!((&errors[0]["line"], &errors[0]["path"]), (&18.into(), &"services.api.image".into()));
}
