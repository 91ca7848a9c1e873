//! The releases on disk as a list: their marks (current, last known good, bad, last outcome),
//! pruning the old ones, and the rollback target when there is no last known good.

use std::fs;
use std::io;
use std::path::Path;

use serde::Serialize;

use super::layout::SERVICES_TOML;
use super::{Layout, StateError, bad_reason, io_at, is_bad, last_known_good, read_history};

#[derive(Serialize, Clone, Debug, PartialEq)]
pub(crate) struct ReleaseEntry {
    pub(crate) id: String,
    pub(crate) current: bool,
    pub(crate) last_known_good: bool,
    /// The reason in its BAD, when it has one.
    pub(crate) bad: Option<String>,
    /// The outcome of the last attempt naming it in history.jsonl.
    pub(crate) last_outcome: Option<String>,
    /// release.json "created" if readable
    pub(crate) created: Option<String>,
}

/// The ids of the releases: directories under releases_dir holding a services.toml, oldest
/// first by name (names start with a UTC stamp). No releases_dir yet is no releases.
fn release_ids(layout: &Layout) -> Result<Vec<String>, StateError> {
    let dir = &layout.releases_dir;
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_at(dir, "list")(e)),
    };
    let mut ids = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_at(dir, "list"))?;
        if !entry.path().join(SERVICES_TOML).is_file() {
            continue;
        }
        match entry.file_name().into_string() {
            Ok(id) => ids.push(id),
            Err(name) => {
                tracing::warn!(dir = %dir.display(), ?name, "skipping a release whose name is not UTF-8")
            }
        }
    }
    ids.sort();
    Ok(ids)
}

/// Every directory under releases_dir holding a services.toml, oldest first by name, with the
/// marks (last_outcome from history.jsonl, the last attempt naming it).
pub(crate) fn list_releases(layout: &Layout) -> Result<Vec<ReleaseEntry>, StateError> {
    let ids = release_ids(layout)?;
    let current = layout.current_release()?;
    let lkg = last_known_good(&layout.state_dir)?;
    let history = read_history(&layout.state_dir)?;
    let entries = ids.into_iter().map(|id| {
        let dir = layout.releases_dir.join(&id);
        ReleaseEntry {
            current: current.as_deref() == Some(id.as_str()),
            last_known_good: lkg.as_deref() == Some(id.as_str()),
            bad: bad_reason(&dir),
            last_outcome: history.iter().rev().find(|a| a.release == id).map(|a| a.outcome.clone()),
            created: created(&dir),
            id,
        }
    });
    Ok(entries.collect())
}

/// release.json's "created", if it is there and a string.
fn created(release_dir: &Path) -> Option<String> {
    let bytes = fs::read(release_dir.join("release.json")).ok()?;
    let json: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    json.get("created")?.as_str().map(str::to_string)
}

/// Removes the oldest releases beyond `keep` (the `keep` newest stay), never the current one,
/// the last known good, nor any in `protect`, which stay besides the `keep`; returns the ids
/// removed. A `current` or last_known_good.json that cannot be read removes nothing.
pub(crate) fn prune(layout: &Layout, keep: u32, protect: &[&str]) -> Result<Vec<String>, StateError> {
    let ids = release_ids(layout)?;
    let current = layout.current_release()?;
    let lkg = last_known_good(&layout.state_dir)?;
    let kept =
        |id: &str| current.as_deref() == Some(id) || lkg.as_deref() == Some(id) || protect.contains(&id);
    let beyond = ids.len().saturating_sub(keep as usize);
    let mut removed = Vec::new();
    for id in ids.into_iter().take(beyond).filter(|id| !kept(id)) {
        let dir = layout.releases_dir.join(&id);
        // remove_dir_all removes a symlinked release's link, never what it points to
        fs::remove_dir_all(&dir).map_err(io_at(&dir, "remove"))?;
        tracing::info!(release = %id, "pruned");
        removed.push(id);
    }
    Ok(removed)
}

/// The newest release that is neither bad nor `not` (for `rollback` without an argument when
/// there is no last known good): None if none.
pub(crate) fn newest_good(layout: &Layout, not: &str) -> Result<Option<String>, StateError> {
    let ids = release_ids(layout)?;
    Ok(ids.into_iter().rev().find(|id| id != not && !is_bad(&layout.releases_dir.join(id))))
}

#[cfg(test)]
mod tests {
    use super::super::history::attempt;
    use super::super::{append_history, fixture, mark_bad, release, set_last_known_good};
    use super::*;

    const R1: &str = "20261201T000000Z-aaaaaaa";
    const R2: &str = "20261202T000000Z-bbbbbbb";
    const R3: &str = "20261203T000000Z-ccccccc";
    const R4: &str = "20261204T000000Z-ddddddd";
    const R5: &str = "20261205T000000Z-eeeeeee";

    fn ids(entries: &[ReleaseEntry]) -> Vec<&str> {
        entries.iter().map(|e| e.id.as_str()).collect()
    }

    #[test]
    fn list_releases_is_oldest_first_and_skips_what_is_not_a_release() {
        let (_tmp, layout) = fixture();
        for id in [R3, R1, R2] {
            release(&layout, id);
        }
        fs::create_dir(layout.releases_dir.join("20261206T000000Z-unpacking")).unwrap();
        fs::write(layout.releases_dir.join("notes.txt"), "").unwrap();
        assert_eq!(ids(&list_releases(&layout).unwrap()), [R1, R2, R3]);
    }

    #[test]
    fn list_releases_marks_current_last_known_good_bad_and_last_outcome() {
        let (_tmp, layout) = fixture();
        let (d1, d2, d3) = (release(&layout, R1), release(&layout, R2), release(&layout, R3));
        fs::write(
            d1.join("release.json"),
            r#"{"id": "x", "sha": "aaaaaaa", "created": "2026-12-01T00:00:00Z"}"#,
        )
        .unwrap();
        set_last_known_good(&layout.state_dir, R1).unwrap();
        layout.swap_current(&d2).unwrap();
        mark_bad(&d3, "verify failed").unwrap();
        append_history(&layout.state_dir, &attempt(R2, "rolled_back")).unwrap();
        append_history(&layout.state_dir, &attempt(R3, "rolled_back")).unwrap();
        append_history(&layout.state_dir, &attempt(R2, "verified")).unwrap();
        let list = list_releases(&layout).unwrap();
        let marks: Vec<_> = list
            .iter()
            .map(|e| (e.current, e.last_known_good, e.bad.as_deref(), e.last_outcome.as_deref()))
            .collect();
        assert_eq!(
            marks,
            [
                (false, true, None, None),
                (true, false, None, Some("verified")),
                (false, false, Some("verify failed"), Some("rolled_back")),
            ]
        );
        assert_eq!(list[0].created.as_deref(), Some("2026-12-01T00:00:00Z"));
        assert_eq!(list[1].created, None);
    }

    #[test]
    fn no_releases_dir_yet_lists_none() {
        let (_tmp, layout) = fixture();
        fs::remove_dir(&layout.releases_dir).unwrap();
        assert_eq!(list_releases(&layout).unwrap(), []);
    }

    #[test]
    fn prune_removes_the_oldest_beyond_keep_but_never_current_lkg_or_protected() {
        let (_tmp, layout) = fixture();
        let dirs: Vec<_> = [R1, R2, R3, R4, R5].iter().map(|id| release(&layout, id)).collect();
        layout.swap_current(&dirs[0]).unwrap();
        set_last_known_good(&layout.state_dir, R2).unwrap();
        let removed = prune(&layout, 1, &[R4]).unwrap();
        assert_eq!(removed, [R3]);
        assert_eq!(ids(&list_releases(&layout).unwrap()), [R1, R2, R4, R5]);
    }

    #[test]
    fn prune_with_fewer_releases_than_keep_removes_nothing() {
        let (_tmp, layout) = fixture();
        release(&layout, R1);
        release(&layout, R2);
        assert_eq!(prune(&layout, 5, &[]).unwrap(), Vec::<String>::new());
        assert_eq!(prune(&layout, 2, &[]).unwrap(), Vec::<String>::new());
        assert_eq!(prune(&layout, 1, &[]).unwrap(), [R1]);
    }

    #[test]
    fn prune_removes_nothing_while_current_dangles() {
        let (_tmp, layout) = fixture();
        release(&layout, R1);
        release(&layout, R2);
        std::os::unix::fs::symlink("releases/gone", &layout.current).unwrap();
        assert!(matches!(prune(&layout, 0, &[]), Err(StateError::Dangling { .. })));
        assert_eq!(release_ids(&layout).unwrap(), [R1, R2]);
    }

    #[test]
    fn newest_good_skips_bad_releases_and_the_one_excluded() {
        let (_tmp, layout) = fixture();
        release(&layout, R1);
        release(&layout, R2);
        mark_bad(&release(&layout, R3), "health gate failed").unwrap();
        release(&layout, R4);
        assert_eq!(newest_good(&layout, R4).unwrap().as_deref(), Some(R2));
        assert_eq!(newest_good(&layout, R1).unwrap().as_deref(), Some(R4));
    }

    #[test]
    fn newest_good_is_none_when_every_other_release_is_bad() {
        let (_tmp, layout) = fixture();
        mark_bad(&release(&layout, R1), "crash loop").unwrap();
        release(&layout, R2);
        assert_eq!(newest_good(&layout, R2).unwrap(), None);
    }
}
