//! minisign signatures of a release's digests.json: signing with a secret key as `minisign -G`
//! writes it (`load_secret_key`, `sign`), and the check a switch runs against the trusted
//! public keys of `[supervisor] trusted_keys` (`verify_signature`).

use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use ct_codecs::{Base64, Decoder};
use minisign::{PError, PublicKey, PublicKeyBox, SecretKey, SecretKeyBox, SignatureBox};

use super::{DIGESTS, MAX_DIGESTS, SIGNATURE};

/// Key and signature files are a few hundred bytes.
const MAX_KEY: u64 = 64 << 10;

/// The environment variable that holds the password of an encrypted secret key.
pub(crate) const PASSWORD_VAR: &str = "TITAN_MINISIGN_PASSWORD";

/// Signatures by minisign before 0.10 sign the file itself rather than its BLAKE2b hash. Both
/// are Ed25519 and equally sound; accepting them lets an older minisign in CI sign releases.
const ALLOW_LEGACY: bool = true;

#[derive(Debug, thiserror::Error)]
pub(crate) enum KeyError {
    #[error("{}: cannot read the secret key: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: not a minisign secret key: {source}", path.display())]
    Invalid {
        path: PathBuf,
        #[source]
        source: PError,
    },
    #[error(
        "{}: the secret key is encrypted: set {PASSWORD_VAR} to its password \
         (or make a key without one: minisign -G -W)",
        path.display()
    )]
    PasswordNeeded { path: PathBuf },
    #[error("{}: cannot decrypt the secret key with {PASSWORD_VAR}: {source}", path.display())]
    Password {
        path: PathBuf,
        #[source]
        source: PError,
    },
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum SignatureError {
    #[error("{}: missing: [supervisor] trusted_keys is set, so releases must be signed", path.display())]
    Missing { path: PathBuf },
    #[error("{}: cannot read: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("trusted key {}: cannot read: {source}", path.display())]
    KeyUnreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("trusted key {}: not a minisign public key: {source}", path.display())]
    KeyInvalid {
        path: PathBuf,
        #[source]
        source: PError,
    },
    #[error("{}: not a minisign signature: {source}", path.display())]
    Malformed {
        path: PathBuf,
        #[source]
        source: PError,
    },
    #[error(
        "{}: signed by key {key_id}, which is none of the trusted keys: {}",
        path.display(),
        trusted.join(", ")
    )]
    Untrusted { path: PathBuf, key_id: String, trusted: Vec<String> },
    #[error(
        "{}: does not match its signature by trusted key {key_id} ({}): changed after signing ({source})",
        path.display(),
        key.display()
    )]
    Tampered {
        path: PathBuf,
        key_id: String,
        key: PathBuf,
        #[source]
        source: PError,
    },
}

/// The secret key at `path`, decrypted with `password` when it is encrypted.
pub(crate) fn load_secret_key(path: &Path, password: Option<&str>) -> Result<SecretKey, KeyError> {
    let text = read_text(path).map_err(|source| KeyError::Read { path: path.to_owned(), source })?;
    let invalid = |source| KeyError::Invalid { path: path.to_owned(), source };
    let key = decode_secret_key(&text).map_err(invalid)?;
    if !key.is_encrypted() {
        // Debian's minisign 0.11 writes a zero checksum into a key without password (-W), which
        // the crate's loader rejects as corrupted: the key is checked by signing with it instead.
        probe(&key).map_err(invalid)?;
        return Ok(key);
    }
    // checked here: given no password, minisign would prompt for one on the terminal
    let Some(password) = password else {
        return Err(KeyError::PasswordNeeded { path: path.to_owned() });
    };
    let key_box = SecretKeyBox::from_string(&text).map_err(invalid)?;
    SecretKey::from_box(key_box, Some(password.to_owned()))
        .map_err(|source| KeyError::Password { path: path.to_owned(), source })
}

/// The key of a secret key file: its second line, base64.
fn decode_secret_key(text: &str) -> Result<SecretKey, PError> {
    let line = text.lines().nth(1).ok_or_else(|| PError::new(minisign::ErrorKind::Io, "no key line"))?;
    let bytes = Base64::decode_to_vec(line.trim(), None)
        .map_err(|e| PError::new(minisign::ErrorKind::Encoding, e))?;
    SecretKey::from_bytes(&bytes)
}

/// Signs nothing and checks the signature with the key's public half.
fn probe(key: &SecretKey) -> Result<(), PError> {
    let public = PublicKey::from_secret_key(key)?;
    minisign::sign(Some(&public), key, Cursor::new(b""), None, None).map(drop)
}

/// A minisign signature (the text of a `.minisig` file) of `digests`, its trusted comment naming
/// the release.
pub(crate) fn sign(
    key: &SecretKey,
    digests: &[u8],
    release_id: &str,
    now: SystemTime,
) -> Result<String, PError> {
    let public = PublicKey::from_secret_key(key)?;
    let timestamp = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let trusted = format!("timestamp:{timestamp}\tfile:{DIGESTS}\trelease:{release_id}");
    let untrusted = "signature from titan-supervisor release create";
    // with the public key given, minisign checks the signature it made
    let signature =
        minisign::sign(Some(&public), key, Cursor::new(digests), Some(&trusted), Some(untrusted))?;
    Ok(signature.into_string())
}

/// Checks `<release_dir>/digests.json.minisig` against `<release_dir>/digests.json` with the
/// trusted public keys. No trusted keys: unsigned releases are allowed, and nothing is read.
pub(crate) fn verify_signature(release_dir: &Path, trusted_keys: &[PathBuf]) -> Result<(), SignatureError> {
    if trusted_keys.is_empty() {
        return Ok(());
    }
    let keys: Vec<(&PathBuf, PublicKey)> = trusted_keys
        .iter()
        .map(|path| load_public_key(path).map(|key| (path, key)))
        .collect::<Result<_, _>>()?;
    let sig_path = release_dir.join(SIGNATURE);
    let signature = read_signature(&sig_path)?;
    let path = release_dir.join(DIGESTS);
    let digests = super::read_regular(&path, MAX_DIGESTS)
        .map_err(|source| SignatureError::Unreadable { path: path.clone(), source })?;
    let key_id = key_id(signature.keynum());
    let Some((key_path, key)) = keys.iter().find(|(_, key)| key.keynum() == signature.keynum()) else {
        let trusted =
            keys.iter().map(|(p, k)| format!("{} ({})", self::key_id(k.keynum()), p.display())).collect();
        return Err(SignatureError::Untrusted { path: sig_path, key_id, trusted });
    };
    minisign::verify(key, &signature, Cursor::new(&digests), true, false, ALLOW_LEGACY)
        .map_err(|source| SignatureError::Tampered { path, key_id, key: key_path.to_path_buf(), source })
}

fn load_public_key(path: &Path) -> Result<PublicKey, SignatureError> {
    let text =
        read_text(path).map_err(|source| SignatureError::KeyUnreadable { path: path.to_owned(), source })?;
    let invalid = |source| SignatureError::KeyInvalid { path: path.to_owned(), source };
    PublicKeyBox::from_string(&text).and_then(PublicKeyBox::into_public_key).map_err(invalid)
}

fn read_signature(path: &Path) -> Result<SignatureBox, SignatureError> {
    let bytes = super::read_regular(path, MAX_KEY).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => SignatureError::Missing { path: path.to_owned() },
        _ => SignatureError::Unreadable { path: path.to_owned(), source },
    })?;
    let malformed = |source| SignatureError::Malformed { path: path.to_owned(), source };
    let text =
        std::str::from_utf8(&bytes).map_err(|e| malformed(PError::new(minisign::ErrorKind::Encoding, e)))?;
    SignatureBox::from_string(text).map_err(malformed)
}

/// A small text file: a regular file, UTF-8, at most `MAX_KEY` bytes.
fn read_text(path: &Path) -> io::Result<String> {
    let bytes = super::read_regular(path, MAX_KEY)?;
    String::from_utf8(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// A key id as the minisign CLI prints it (`minisign public key <id>`): the 8 bytes read as a
/// little-endian number, in upper-case hex.
fn key_id(keynum: &[u8]) -> String {
    let id = keynum.iter().rev().fold(0u64, |id, b| (id << 8) | u64::from(*b));
    format!("{id:X}")
}

#[cfg(test)]
#[path = "sign_tests.rs"]
mod tests;
