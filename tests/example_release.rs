//! The committed example release under releases/ (made by scripts/example-release.sh): its
//! signature verifies with the minisign CLI against the committed test key, the checks a switch
//! runs before it changes anything accept it, it is in step with the repo's services.toml, and a
//! tampered copy is refused naming the file.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{fixtures, write_env_file};
use sha2::{Digest, Sha256};

const STALE: &str = "the example release under releases/ does not match services.toml: \
                     run scripts/example-release.sh (and commit what it writes)";

/// The production env_file the pinned services.toml must keep naming.
const ENV_FILE: &str = "/opt/titan/compose/.env.prod";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn releases() -> PathBuf {
    root().join("releases")
}

fn test_key() -> PathBuf {
    releases().join("test-key.pub")
}

fn text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The one release directory under releases/ (the keys and the example digests are files).
fn example() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(releases())
        .expect("releases/")
        .map(|e| e.expect("releases/ entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert_eq!(dirs.len(), 1, "releases/ holds one example release, not {dirs:?}: {STALE}");
    dirs.remove(0)
}

fn minisign(args: &[&str]) -> Output {
    Command::new("/usr/bin/minisign")
        .args(args)
        .output()
        .expect("/usr/bin/minisign: install it (apt-get install minisign; scripts/test.sh does)")
}

fn shown(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// A copy of the example release as a host has it: the same files, the same directory name, the
/// env_file it names present (tests/fixtures/titan.env.sample with mode 0600, in place of the
/// production /opt/titan/compose/.env.prod). That one line is the only change.
fn on_a_host(tmp: &Path) -> PathBuf {
    let example = example();
    let env = write_env_file(tmp, "env.prod", &text(&fixtures().join("titan.env.sample")));
    let dir = tmp.join(example.file_name().unwrap());
    std::fs::create_dir(&dir).unwrap();
    for entry in std::fs::read_dir(&example).unwrap() {
        let from = entry.unwrap().path();
        std::fs::copy(&from, dir.join(from.file_name().unwrap())).unwrap();
    }
    let config = dir.join("services.toml");
    let line = format!("env_file = \"{ENV_FILE}\"");
    let pinned = text(&config);
    assert_eq!(
        pinned.lines().filter(|l| *l == line).count(),
        1,
        "{}: names {ENV_FILE} once",
        config.display()
    );
    std::fs::write(&config, pinned.replace(&line, &format!("env_file = \"{}\"", env.display()))).unwrap();
    dir
}

/// The `[supervisor]` of a daemon running the example's config, trusting `keys`.
fn daemon_trusting(keys: &[PathBuf]) -> titan_supervisor::config::Supervisor {
    let (mut settings, _) =
        titan_supervisor::config::load_supervisor(&example().join("services.toml")).expect("[supervisor]");
    settings.trusted_keys = keys.to_vec();
    settings
}

#[test]
fn the_test_keys_say_they_are_test_keys() {
    for name in ["test-key.pub", "test-key.sec"] {
        let first = text(&releases().join(name)).lines().next().unwrap_or_default().to_owned();
        assert!(first.starts_with("untrusted comment: TEST KEY, NOT FOR PRODUCTION"), "{name}: {first}");
    }
}

#[test]
fn the_example_release_is_signed_by_the_test_key() {
    let dir = example();
    let mut files: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    files.sort();
    // nothing a supervisor writes (evidence/, BAD) was committed with it
    assert_eq!(files, ["digests.json", "digests.json.minisig", "release.json", "services.toml"]);
    let digests = dir.join("digests.json");
    let out = minisign(&["-V", "-p", path(&test_key()), "-m", path(&digests)]);
    assert!(out.status.success(), "minisign -V: {}", shown(&out));
    let id = dir.file_name().unwrap().to_str().unwrap();
    assert!(shown(&out).contains(&format!("file:digests.json\trelease:{id}")), "{}", shown(&out));
    let info: serde_json::Value = serde_json::from_str(&text(&dir.join("release.json"))).unwrap();
    assert_eq!(info["id"], id);
    assert!(id.ends_with(&format!("-{}", &info["sha"].as_str().unwrap()[..7])), "{info}");
}

#[test]
fn a_switch_trusting_the_test_key_accepts_the_example_release() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = on_a_host(tmp.path());
    let cfg = titan_supervisor::validate_release(&dir, &daemon_trusting(&[test_key()]))
        .unwrap_or_else(|e| panic!("a switch would refuse the example release: {e}"));
    let source: toml::Table = text(&root().join("services.toml")).parse().unwrap();
    assert_eq!(cfg.services.len(), source["services"].as_table().unwrap().len());
    let digests: BTreeMap<String, String> = serde_json::from_str(&text(&dir.join("digests.json"))).unwrap();
    for (name, svc) in &cfg.services {
        let titan_supervisor::config::Exec::Image { image, .. } = &svc.exec else {
            panic!("{name}: the Titan graph is all containers")
        };
        assert_eq!(Some(image), digests.get(name), "{name}");
    }
}

#[test]
fn a_switch_trusting_another_key_refuses_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = on_a_host(tmp.path());
    let (public, secret) = (tmp.path().join("other.pub"), tmp.path().join("other.key"));
    let made = minisign(&["-G", "-W", "-p", path(&public), "-s", path(&secret)]);
    assert!(made.status.success(), "minisign -G: {}", shown(&made));
    let e = titan_supervisor::validate_release(&dir, &daemon_trusting(&[public])).unwrap_err();
    let signature = dir.join("digests.json.minisig");
    assert!(e.starts_with(&format!("{}: signed by key ", signature.display())), "{e}");
    assert!(e.contains("which is none of the trusted keys"), "{e}");
}

#[test]
fn a_tampered_digest_is_refused_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = on_a_host(tmp.path());
    let digests = dir.join("digests.json");
    let original = text(&digests);
    // one hexadecimal digit of the first digest changed: still well formed, no longer signed
    let at = original.find("@sha256:").expect("a digest") + "@sha256:".len();
    let digit = if original.as_bytes()[at] == b'0' { "1" } else { "0" };
    let tampered = format!("{}{digit}{}", &original[..at], &original[at + 1..]);
    std::fs::write(&digests, &tampered).unwrap();
    let e = titan_supervisor::validate_release(&dir, &daemon_trusting(&[test_key()])).unwrap_err();
    assert!(e.starts_with(&format!("{}: does not match its signature", digests.display())), "{e}");
    assert!(e.contains("changed after signing"), "{e}");
    let out = minisign(&["-V", "-p", path(&test_key()), "-m", path(&digests)]);
    assert!(!out.status.success(), "minisign -V accepted a tampered digests.json: {}", shown(&out));
}

/// The made-up digest scripts/example-release.sh gives an image: the repository as written, its
/// tag dropped, and the sha256 of the reference as written.
fn example_pin(image: &str) -> String {
    let name = image.split_once('@').map_or(image, |(name, _)| name);
    let repository = match name.rfind(':') {
        Some(colon) if !name[colon..].contains('/') => &name[..colon],
        _ => name,
    };
    let hex: String = Sha256::digest(image.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    format!("{repository}@sha256:{hex}")
}

/// The first line where `got` and `want` differ, for a short failure message.
fn first_difference(got: &str, want: &str) -> Option<String> {
    let (mut got_lines, mut want_lines) = (got.lines(), want.lines());
    for n in 1.. {
        match (got_lines.next(), want_lines.next()) {
            (None, None) => return None,
            (g, w) if g == w => {}
            (g, w) => return Some(format!("line {n}: the example has {g:?}, expected {w:?}")),
        }
    }
    unreachable!()
}

#[test]
fn the_example_is_services_toml_with_only_its_images_pinned() {
    let source = text(&root().join("services.toml"));
    let parsed: toml::Table = source.parse().unwrap();
    let expected_digests: BTreeMap<String, String> = parsed["services"]
        .as_table()
        .unwrap()
        .iter()
        .filter_map(|(name, svc)| Some((name.clone(), example_pin(svc.get("image")?.as_str()?))))
        .collect();
    let committed = text(&releases().join("digests.example.json"));
    let committed_digests: BTreeMap<String, String> = serde_json::from_str(&committed).unwrap();
    assert_eq!(committed_digests, expected_digests, "releases/digests.example.json: {STALE}");
    let dir = example();
    assert_eq!(text(&dir.join("digests.json")), committed, "{}/digests.json: {STALE}", dir.display());

    // every line as in services.toml, but `image = "<tag>"` → `image = "<repo>@sha256:<hex>"`
    let expected: String = source
        .split_inclusive('\n')
        .map(|line| match line.strip_prefix("image = \"").and_then(|rest| rest.split_once('"')) {
            Some((image, rest)) => format!("image = \"{}\"{rest}", example_pin(image)),
            None => line.to_owned(),
        })
        .collect();
    let pinned = text(&dir.join("services.toml"));
    if let Some(difference) = first_difference(&pinned, &expected) {
        panic!("{}/services.toml: {difference}: {STALE}", dir.display());
    }
    assert_eq!(pinned, expected, "{STALE}");
    // the production env file, and secrets as references only
    assert!(pinned.contains(&format!("env_file = \"{ENV_FILE}\"")));
    assert!(pinned.contains("${POSTGRES_PASSWORD}") && !pinned.contains("sample-postgres"));
}
