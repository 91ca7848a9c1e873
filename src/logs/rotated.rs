//! Rotated log files of a service: `<service>-<UTC stamp>.log`, and `.log.gz` once compressed.
//! Their names sort in time order. Retention deletes the oldest beyond `max_files` and any
//! older than `retain`; `current.log` is never one of them.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// A rotated file of one service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rotated {
    pub path: PathBuf,
    pub compressed: bool,
}

/// `<dir>/<service>-20261123T160000.123Z.log`, not yet taken (by a plain or compressed file).
pub fn fresh_name(dir: &Path, service: &str, now: SystemTime) -> PathBuf {
    let stamp = humantime::format_rfc3339_millis(now).to_string().replace(['-', ':'], "");
    let taken = |p: &Path| p.exists() || p.with_extension("log.gz").exists();
    let mut path = dir.join(format!("{service}-{stamp}.log"));
    let mut n = 1;
    while taken(&path) {
        path = dir.join(format!("{service}-{stamp}-{n}.log"));
        n += 1;
    }
    path
}

/// The rotated files of `service` in `dir`, oldest first (regular files only).
pub fn list(dir: &Path, service: &str) -> Vec<Rotated> {
    let prefix = format!("{service}-");
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<(String, Rotated)> = entries
        .flatten()
        // only regular files: a link planted among them is never read, compressed or served
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let rest = name.strip_prefix(&prefix)?;
            // the stamp starts with a digit; another service's name could share the prefix
            if !rest.starts_with(|c: char| c.is_ascii_digit()) {
                return None;
            }
            let compressed = name.ends_with(".log.gz");
            (compressed || name.ends_with(".log"))
                .then(|| (name.clone(), Rotated { path: e.path(), compressed }))
        })
        .collect();
    files.sort_by_key(|(name, _)| sort_key(name));
    files.into_iter().map(|(_, r)| r).collect()
}

/// Like `list`, but also holding a file that was being compressed while the directory was read:
/// one read can miss it (its `.gz` renamed into place where the read had passed, its plain file
/// unlinked where the read had not come yet); a second read after the first sees it under one
/// name or the other. A file listed under both names is listed once, compressed.
pub fn list_settled(dir: &Path, service: &str) -> Vec<Rotated> {
    let mut files = list(dir, service);
    files.extend(list(dir, service));
    let key = |r: &Rotated| sort_key(&r.path.file_name().unwrap_or_default().to_string_lossy());
    files.sort_by_cached_key(|r| (key(r), !r.compressed));
    files.dedup_by(|later, first| key(later) == key(first));
    files
}

/// Name without extensions, so `x.log` and `x-1.log.gz` sort by stamp then sequence.
fn sort_key(name: &str) -> (String, u32) {
    let base = name.trim_end_matches(".gz").trim_end_matches(".log");
    match base.rsplit_once('-') {
        Some((head, n)) if n.len() < 6 && n.chars().all(|c| c.is_ascii_digit()) => {
            (head.to_owned(), n.parse().unwrap_or(0))
        }
        _ => (base.to_owned(), 0),
    }
}

/// Deletes rotated files beyond `max_files` (oldest first) and those last modified more than
/// `retain` ago. Returns what it deleted.
pub fn apply_retention(
    dir: &Path,
    service: &str,
    retain: Duration,
    max_files: u32,
    now: SystemTime,
) -> Vec<PathBuf> {
    let files = list(dir, service);
    let excess = files.len().saturating_sub(max_files as usize);
    let mut deleted = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let age = std::fs::metadata(&f.path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|m| now.duration_since(m).ok());
        if (i < excess || age.is_some_and(|a| a > retain)) && std::fs::remove_file(&f.path).is_ok() {
            deleted.push(f.path.clone());
        }
    }
    deleted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_in_time_order_and_never_collide() {
        let dir = tempfile::tempdir().unwrap();
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let a = fresh_name(dir.path(), "api", t);
        assert!(a.ends_with("api-20231114T221320.123Z.log"), "{a:?}");
        std::fs::write(&a, "x").unwrap();
        let b = fresh_name(dir.path(), "api", t);
        assert!(b.ends_with("api-20231114T221320.123Z-1.log"));
        std::fs::write(b.with_extension("log.gz"), "x").unwrap();
        let c = fresh_name(dir.path(), "api", t);
        assert!(c.ends_with("api-20231114T221320.123Z-2.log"));
        std::fs::write(&c, "x").unwrap();
        let later = fresh_name(dir.path(), "api", t + Duration::from_secs(1));
        std::fs::write(&later, "x").unwrap();
        // another service whose name starts the same is not ours
        std::fs::write(dir.path().join("api-gw-20231114T221320.123Z.log"), "x").unwrap();
        std::fs::write(dir.path().join("current.log"), "x").unwrap();
        let names: Vec<String> = list(dir.path(), "api")
            .iter()
            .map(|r| r.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "api-20231114T221320.123Z.log",
                "api-20231114T221320.123Z-1.log.gz",
                "api-20231114T221320.123Z-2.log",
                "api-20231114T221321.123Z.log"
            ]
        );
    }

    #[test]
    fn retention_keeps_the_newest_and_drops_the_old() {
        let dir = tempfile::tempdir().unwrap();
        let t = SystemTime::now();
        for i in 0..5 {
            std::fs::write(fresh_name(dir.path(), "api", t + Duration::from_secs(i)), "x").unwrap();
        }
        std::fs::write(dir.path().join("current.log"), "x").unwrap();
        let deleted = apply_retention(dir.path(), "api", Duration::from_secs(3600), 3, t);
        assert_eq!(deleted.len(), 2);
        assert_eq!(list(dir.path(), "api").len(), 3);
        // everything older than `retain` goes, current.log stays
        let deleted =
            apply_retention(dir.path(), "api", Duration::from_secs(1), 3, t + Duration::from_secs(7200));
        assert_eq!(deleted.len(), 3);
        assert!(dir.path().join("current.log").exists());
    }
}
