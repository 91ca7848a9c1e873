//! Where the releases live and which one is `current`: reading the symlink, resolving the
//! RELEASE the CLI names, and swapping `current` only by rename(2) of a fresh symlink.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::{StateError, fsync_dir, io_at, parent_of};

/// A release directory is one that holds this.
pub(super) const SERVICES_TOML: &str = "services.toml";

/// The deploy's paths, from `[supervisor]`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Layout {
    pub(crate) releases_dir: PathBuf,
    pub(crate) current: PathBuf,
    pub(crate) state_dir: PathBuf,
}

impl Layout {
    pub(crate) fn of(sup: &crate::config::Supervisor) -> Layout {
        Layout {
            releases_dir: sup.releases_dir.clone(),
            current: sup.current.clone(),
            state_dir: sup.state_dir.clone(),
        }
    }

    /// The id (directory name) `current` points to; None when there is no `current` (first
    /// deploy). A `current` that is not a symlink, or dangles, is an error naming it.
    pub(crate) fn current_release(&self) -> Result<Option<String>, StateError> {
        let path = &self.current;
        match fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_symlink() => {}
            Ok(_) => return Err(StateError::NotSymlink { path: path.clone() }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_at(path, "read")(e)),
        }
        let target = fs::read_link(path).map_err(io_at(path, "read the symlink"))?;
        let dir = match fs::canonicalize(path) {
            Ok(dir) => dir,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StateError::Dangling { path: path.clone(), target });
            }
            Err(e) => return Err(io_at(path, "follow")(e)),
        };
        if !dir.is_dir() {
            return Err(StateError::CurrentNotDir { path: path.clone(), target });
        }
        id_of(&dir).map(Some)
    }

    /// RELEASE as the CLI gives it: a directory name under releases_dir, or a path (absolute or
    /// relative to the working dir); it must be a directory holding services.toml. Returns (id,
    /// canonical dir). Errors name what was looked up.
    ///
    /// A bare name (no '/') is looked for under releases_dir first, then in the working dir.
    pub(crate) fn resolve(&self, release: &str) -> Result<(String, PathBuf), StateError> {
        let looked = self.candidates(release);
        let Some(found) = looked.iter().find(|p| fs::symlink_metadata(p).is_ok()) else {
            return Err(StateError::NoRelease { release: release.to_string(), looked });
        };
        let dir = fs::canonicalize(found).map_err(io_at(found, "resolve"))?;
        if !dir.is_dir() {
            return Err(StateError::NotRelease { path: dir, why: "not a directory" });
        }
        if !dir.join(SERVICES_TOML).is_file() {
            return Err(StateError::NotRelease { path: dir, why: "no services.toml in it" });
        }
        Ok((id_of(&dir)?, dir))
    }

    fn candidates(&self, release: &str) -> Vec<PathBuf> {
        let path = PathBuf::from(release);
        let bare = !release.is_empty() && !release.contains('/') && release != "." && release != "..";
        if bare { vec![self.releases_dir.join(release), path] } else { vec![path] }
    }

    /// Points `current` at `release_dir`: a fresh symlink `<current>.tmp-<pid>` (target relative
    /// to current's parent when release_dir is beneath it, else absolute) renamed over `current`
    /// (rename(2), atomic), then the parent directory fsynced.
    pub(crate) fn swap_current(&self, release_dir: &Path) -> Result<(), StateError> {
        let parent = parent_of(&self.current);
        let release = fs::canonicalize(release_dir).map_err(io_at(release_dir, "resolve"))?;
        if !release.is_dir() {
            return Err(StateError::NotRelease { path: release, why: "not a directory" });
        }
        let target = link_target(parent, &release)?;
        let mut tmp = self.current.clone().into_os_string();
        tmp.push(format!(".tmp-{}", std::process::id()));
        let tmp = PathBuf::from(tmp);
        // a leftover of a dead process that had our pid: symlink(2) will not replace it
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&target, &tmp).map_err(io_at(&tmp, "create the symlink"))?;
        if let Err(e) = fs::rename(&tmp, &self.current) {
            let _ = fs::remove_file(&tmp);
            return Err(io_at(&self.current, "replace")(e));
        }
        fsync_dir(parent).map_err(io_at(parent, "fsync"))
    }

    /// Removes `current` (a first deploy that failed leaves none). No `current` is not an error.
    pub(crate) fn remove_current(&self) -> Result<(), StateError> {
        match fs::remove_file(&self.current) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_at(&self.current, "remove")(e)),
        }
        let parent = parent_of(&self.current);
        fsync_dir(parent).map_err(io_at(parent, "fsync"))
    }
}

/// What the symlink in `parent` should hold to reach `release` (canonical): relative when
/// `release` is beneath `parent`, so the tree can be moved or mounted elsewhere whole.
fn link_target(parent: &Path, release: &Path) -> Result<PathBuf, StateError> {
    // a relative link is resolved from the directory really holding it: compare canonically
    let parent = fs::canonicalize(parent).map_err(io_at(parent, "resolve"))?;
    match release.strip_prefix(&parent) {
        Ok(rel) if !rel.as_os_str().is_empty() => Ok(rel.to_path_buf()),
        _ => Ok(release.to_path_buf()),
    }
}

/// A release's id: its directory name.
fn id_of(dir: &Path) -> Result<String, StateError> {
    let name = dir.file_name().ok_or_else(|| StateError::NotRelease { path: dir.into(), why: "no name" })?;
    name.to_str().map(str::to_string).ok_or_else(|| StateError::NotUtf8 { path: dir.into() })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::super::{fixture, release};
    use super::*;

    #[test]
    fn layout_of_takes_the_supervisor_paths() {
        let sup = crate::config::Supervisor {
            releases_dir: "/srv/r".into(),
            current: "/srv/current".into(),
            state_dir: "/srv/state".into(),
            ..Default::default()
        };
        let layout = Layout::of(&sup);
        assert_eq!(layout.releases_dir, Path::new("/srv/r"));
        assert_eq!(layout.current, Path::new("/srv/current"));
        assert_eq!(layout.state_dir, Path::new("/srv/state"));
    }

    #[test]
    fn no_current_on_a_first_deploy() {
        let (_tmp, layout) = fixture();
        assert_eq!(layout.current_release().unwrap(), None);
    }

    #[test]
    fn a_current_that_is_a_directory_is_not_a_symlink() {
        let (_tmp, layout) = fixture();
        fs::create_dir(&layout.current).unwrap();
        let err = layout.current_release().unwrap_err();
        assert!(matches!(&err, StateError::NotSymlink { path } if *path == layout.current), "{err:?}");
    }

    #[test]
    fn a_dangling_current_is_an_error_naming_it_and_its_target() {
        let (_tmp, layout) = fixture();
        symlink("releases/gone", &layout.current).unwrap();
        let err = layout.current_release().unwrap_err();
        assert!(matches!(&err, StateError::Dangling { path, .. } if *path == layout.current), "{err:?}");
        assert!(err.to_string().contains("releases/gone"), "{err}");
    }

    #[test]
    fn swap_current_points_at_the_release_by_a_relative_link_beside_it() {
        let (_tmp, layout) = fixture();
        let dir = release(&layout, "20261202T013000Z-abc1234");
        layout.swap_current(&dir).unwrap();
        assert_eq!(fs::read_link(&layout.current).unwrap(), Path::new("releases/20261202T013000Z-abc1234"));
        assert_eq!(layout.current_release().unwrap().as_deref(), Some("20261202T013000Z-abc1234"));
    }

    #[test]
    fn swap_current_replaces_an_existing_link_and_leaves_no_temp() {
        let (tmp, layout) = fixture();
        let old = release(&layout, "20261201T000000Z-old0000");
        let new = release(&layout, "20261202T013000Z-new0000");
        layout.swap_current(&old).unwrap();
        layout.swap_current(&new).unwrap();
        assert_eq!(layout.current_release().unwrap().as_deref(), Some("20261202T013000Z-new0000"));
        let mut names: Vec<_> = fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names, ["current", "releases", "state"]);
    }

    #[test]
    fn swap_current_to_a_release_elsewhere_is_an_absolute_link() {
        let (_tmp, layout) = fixture();
        let elsewhere = tempfile::tempdir().unwrap();
        let dir = elsewhere.path().join("r1");
        fs::create_dir(&dir).unwrap();
        layout.swap_current(&dir).unwrap();
        let target = fs::read_link(&layout.current).unwrap();
        assert!(target.is_absolute(), "{}", target.display());
        assert_eq!(target, fs::canonicalize(&dir).unwrap());
    }

    #[test]
    fn remove_current_removes_the_link_not_the_release() {
        let (_tmp, layout) = fixture();
        let dir = release(&layout, "r1");
        layout.swap_current(&dir).unwrap();
        layout.remove_current().unwrap();
        assert_eq!(layout.current_release().unwrap(), None);
        assert!(dir.join("services.toml").is_file());
        layout.remove_current().unwrap();
    }

    #[test]
    fn resolve_finds_a_release_by_name_or_by_path() {
        let (tmp, layout) = fixture();
        let dir = fs::canonicalize(release(&layout, "20261202T013000Z-abc1234")).unwrap();
        let by_name = layout.resolve("20261202T013000Z-abc1234").unwrap();
        assert_eq!(by_name, ("20261202T013000Z-abc1234".to_string(), dir.clone()));
        let path = tmp.path().join("releases/./20261202T013000Z-abc1234/");
        assert_eq!(layout.resolve(path.to_str().unwrap()).unwrap(), by_name);
    }

    #[test]
    fn resolve_names_every_place_it_looked() {
        let (_tmp, layout) = fixture();
        let err = layout.resolve("20261202T013000Z-nothere").unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&layout.releases_dir.join("20261202T013000Z-nothere").display().to_string()));
        assert!(matches!(err, StateError::NoRelease { looked, .. } if looked.len() == 2));
    }

    #[test]
    fn resolve_refuses_a_directory_without_services_toml() {
        let (_tmp, layout) = fixture();
        fs::create_dir(layout.releases_dir.join("half-unpacked")).unwrap();
        let err = layout.resolve("half-unpacked").unwrap_err();
        assert!(
            matches!(&err, StateError::NotRelease { path, .. } if path.ends_with("half-unpacked")),
            "{err:?}"
        );
    }
}
