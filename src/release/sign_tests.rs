//! Signing and verifying against Debian's minisign CLI, and every way a signature is refused.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use minisign::KeyPair;

use super::*;

const DIGESTS_TEXT: &str = r#"{"api": "127.0.0.1:5000/titan-testsvc@sha256:1111111111111111111111111111111111111111111111111111111111111111"}
"#;

/// Runs /usr/bin/minisign with `input` on stdin (the password, when it asks for one).
fn minisign_cli(dir: &Path, args: &[&str], input: &str) -> std::process::Output {
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

/// A key pair made by `minisign -G -W` (no password) in `dir`: (public, secret) paths.
fn cli_keypair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (public, secret) = (format!("{name}.pub"), format!("{name}.key"));
    let out = minisign_cli(dir, &["-G", "-W", "-p", &public, "-s", &secret], "");
    assert!(out.status.success(), "minisign -G: {}", String::from_utf8_lossy(&out.stderr));
    (dir.join(public), dir.join(secret))
}

/// A key pair made by the minisign crate, written as the CLI writes one.
fn crate_keypair(dir: &Path, name: &str) -> PathBuf {
    let pair = KeyPair::generate_unencrypted_keypair().unwrap();
    let public = dir.join(format!("{name}.pub"));
    std::fs::write(&public, pair.pk.to_box().unwrap().into_string()).unwrap();
    public
}

/// A release directory holding digests.json only.
fn release() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(DIGESTS), DIGESTS_TEXT).unwrap();
    dir
}

fn cli_sign(release: &Path, secret: &Path, password: &str) {
    let out = minisign_cli(release, &["-S", "-s", secret.to_str().unwrap(), "-m", DIGESTS], password);
    assert!(out.status.success(), "minisign -S: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_signature_made_by_the_minisign_cli_verifies() {
    let keys = tempfile::tempdir().unwrap();
    let (public, secret) = cli_keypair(keys.path(), "ci");
    let release = release();
    cli_sign(release.path(), &secret, "");
    verify_signature(release.path(), &[public]).unwrap();
}

#[test]
fn any_one_of_the_trusted_keys_will_do() {
    let keys = tempfile::tempdir().unwrap();
    let other = crate_keypair(keys.path(), "other");
    let (public, secret) = cli_keypair(keys.path(), "ci");
    let release = release();
    cli_sign(release.path(), &secret, "");
    verify_signature(release.path(), &[other, public]).unwrap();
}

#[test]
fn our_signature_verifies_with_the_minisign_cli() {
    let keys = tempfile::tempdir().unwrap();
    let (public, secret) = cli_keypair(keys.path(), "ci");
    let release = release();
    let key = load_secret_key(&secret, None).unwrap();
    let signature =
        sign(&key, DIGESTS_TEXT.as_bytes(), "20260102T030405Z-abcdef1", SystemTime::now()).unwrap();
    std::fs::write(release.path().join(SIGNATURE), signature).unwrap();
    let out = minisign_cli(release.path(), &["-V", "-p", public.to_str().unwrap(), "-m", DIGESTS], "");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "minisign -V: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("release:20260102T030405Z-abcdef1"), "{stdout}");
    verify_signature(release.path(), &[public]).unwrap();
}

#[test]
fn an_encrypted_key_needs_its_password() {
    let keys = tempfile::tempdir().unwrap();
    let out = minisign_cli(keys.path(), &["-G", "-p", "e.pub", "-s", "e.key"], "s3cret\ns3cret\n");
    assert!(out.status.success(), "minisign -G: {}", String::from_utf8_lossy(&out.stderr));
    let secret = keys.path().join("e.key");
    let e = load_secret_key(&secret, None).unwrap_err();
    assert!(matches!(e, KeyError::PasswordNeeded { .. }), "{e}");
    assert!(e.to_string().contains(PASSWORD_VAR), "{e}");
    let e = load_secret_key(&secret, Some("wrong")).unwrap_err();
    assert!(matches!(e, KeyError::Password { .. }), "{e}");
    let key = load_secret_key(&secret, Some("s3cret")).unwrap();
    let release = release();
    let signature = sign(&key, DIGESTS_TEXT.as_bytes(), "r", SystemTime::now()).unwrap();
    std::fs::write(release.path().join(SIGNATURE), signature).unwrap();
    verify_signature(release.path(), &[keys.path().join("e.pub")]).unwrap();
}

#[test]
fn a_secret_key_file_that_is_not_one_is_refused_naming_it() {
    let keys = tempfile::tempdir().unwrap();
    let missing = keys.path().join("missing.key");
    assert!(matches!(load_secret_key(&missing, None), Err(KeyError::Read { .. })));
    for text in [
        "",
        "untrusted comment: x\n",
        "untrusted comment: x\nnot base64!\n",
        "untrusted comment: x\nRWQAAA==\n",
    ] {
        let path = keys.path().join("bad.key");
        std::fs::write(&path, text).unwrap();
        let e = load_secret_key(&path, None).unwrap_err();
        assert!(matches!(e, KeyError::Invalid { .. }), "{text:?}: {e}");
        assert!(e.to_string().starts_with(&path.display().to_string()), "{e}");
    }
}

#[test]
fn no_trusted_keys_means_unsigned_releases_are_allowed() {
    verify_signature(Path::new("/nonexistent"), &[]).unwrap();
}

#[test]
fn changed_content_is_tampered() {
    let keys = tempfile::tempdir().unwrap();
    let (public, secret) = cli_keypair(keys.path(), "ci");
    let release = release();
    cli_sign(release.path(), &secret, "");
    std::fs::write(release.path().join(DIGESTS), DIGESTS_TEXT.replace("1111", "2222")).unwrap();
    let e = verify_signature(release.path(), &[public]).unwrap_err();
    assert!(matches!(e, SignatureError::Tampered { .. }), "{e}");
    assert!(e.to_string().contains("changed after signing"), "{e}");
}

#[test]
fn a_signature_by_an_untrusted_key_names_both_key_ids() {
    let keys = tempfile::tempdir().unwrap();
    let trusted = crate_keypair(keys.path(), "ops");
    let (public, secret) = cli_keypair(keys.path(), "intruder");
    let release = release();
    cli_sign(release.path(), &secret, "");
    let e = verify_signature(release.path(), std::slice::from_ref(&trusted)).unwrap_err();
    let SignatureError::Untrusted { key_id, trusted: ids, .. } = &e else { panic!("{e}") };
    let id_of = |p: &Path| key_id_of(&std::fs::read_to_string(p).unwrap());
    assert_eq!(key_id, &id_of(&public));
    assert_eq!(ids, &[format!("{} ({})", id_of(&trusted), trusted.display())]);
}

/// The key id `minisign -G` writes in a public key's comment line.
fn key_id_of(public_key_file: &str) -> String {
    public_key_file.lines().next().unwrap().rsplit(' ').next().unwrap().to_owned()
}

#[test]
fn a_missing_signature_is_refused() {
    let keys = tempfile::tempdir().unwrap();
    let trusted = crate_keypair(keys.path(), "ops");
    let e = verify_signature(release().path(), &[trusted]).unwrap_err();
    assert!(matches!(e, SignatureError::Missing { .. }), "{e}");
}

#[test]
fn a_garbage_signature_file_is_malformed() {
    let keys = tempfile::tempdir().unwrap();
    let trusted = crate_keypair(keys.path(), "ops");
    let release = release();
    let garbage: [&[u8]; 5] =
        [b"", b"garbage", b"untrusted comment: x\nRWQ=\ntrusted comment: y\nAAAA\n", b"\0", &[0xff, 0xfe]];
    for bytes in garbage {
        std::fs::write(release.path().join(SIGNATURE), bytes).unwrap();
        let e = verify_signature(release.path(), std::slice::from_ref(&trusted)).unwrap_err();
        assert!(matches!(e, SignatureError::Malformed { .. }), "{bytes:?}: {e}");
    }
}

#[test]
fn a_bad_trusted_key_file_is_named() {
    let keys = tempfile::tempdir().unwrap();
    let garbage = keys.path().join("garbage.pub");
    std::fs::write(&garbage, "untrusted comment: x\nnot a key\n").unwrap();
    let e = verify_signature(release().path(), std::slice::from_ref(&garbage)).unwrap_err();
    assert!(matches!(e, SignatureError::KeyInvalid { .. }), "{e}");
    assert!(e.to_string().contains(&garbage.display().to_string()), "{e}");
    let missing = keys.path().join("missing.pub");
    let e = verify_signature(release().path(), &[missing]).unwrap_err();
    assert!(matches!(e, SignatureError::KeyUnreadable { .. }), "{e}");
}
