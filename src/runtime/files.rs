//! Files the daemon — root, usually — opens under its log and state directories. A service's
//! user who can write into such a directory could plant a link there and make root append to,
//! truncate or read back a file of its choosing, so: directories are the daemon's own and
//! writable by nobody else (refused, naming owner and mode, or repaired when they are ours),
//! no file is opened through a link (O_NOFOLLOW), and nothing but a regular file is used (a
//! FIFO opens without waiting and is then refused).

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use nix::libc;

/// Opens `path` to read it.
pub(crate) fn open_read(path: &Path) -> io::Result<File> {
    regular(OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path), path)
}

/// Opens `path` to append to it, creating it with `mode`.
pub(crate) fn open_append(path: &Path, mode: u32) -> io::Result<File> {
    let opened = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    regular(opened, path)
}

/// Creates `path` afresh with `mode`, for writing: whatever was in its place — a leftover, or a
/// link — is removed first (the link itself, never its target), and the new file is made
/// exclusively, so no one's file is truncated.
pub(crate) fn create_new(path: &Path, mode: u32) -> io::Result<File> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    OpenOptions::new().write(true).create_new(true).mode(mode).custom_flags(libc::O_NOFOLLOW).open(path)
}

/// A file just opened without following a link must be a regular file.
fn regular(opened: io::Result<File>, path: &Path) -> io::Result<File> {
    let file = opened.map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) => io::Error::other(format!("{} is a symbolic link: not followed", path.display())),
        _ => e,
    })?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other(format!("{} is not a regular file", path.display())));
    }
    Ok(file)
}

/// Makes `dir` (and its parents) with mode 0750, or checks the one there: a directory, not a
/// link, owned by this process's user; write permission for group or others is taken away
/// (it is ours to repair). One owned by anyone else is refused, naming its owner and mode.
pub(crate) fn private_dir(dir: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return DirBuilder::new().recursive(true).mode(0o750).create(dir);
        }
        Err(e) => return Err(e),
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(io::Error::other(format!(
                "{} is a symbolic link: name the directory itself",
                dir.display()
            )));
        }
        Ok(meta) if !meta.is_dir() => {
            return Err(io::Error::other(format!("{} is not a directory", dir.display())));
        }
        Ok(meta) => {
            let me = nix::unistd::geteuid().as_raw();
            let mode = meta.mode() & 0o7777;
            if meta.uid() != me {
                return Err(io::Error::other(format!(
                    "{} is owned by uid {} (mode {mode:04o}), not by the supervisor's uid {me}: a user who can write \
                     there could make the supervisor write or read any file (chown it to uid {me})",
                    dir.display(),
                    meta.uid()
                )));
            }
            if mode & 0o022 != 0 {
                let repaired = mode & !0o022;
                tracing::warn!(
                    "{} had mode {mode:04o}: writable by others; now {repaired:04o}",
                    dir.display()
                );
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(repaired))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_and_what_is_not_a_regular_file_are_never_opened() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, "precious").unwrap();
        let link = dir.path().join("current.log");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = open_append(&link, 0o640).unwrap_err();
        assert!(e.to_string().ends_with("current.log is a symbolic link: not followed"), "{e}");
        assert!(open_read(&link).is_err());
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert!(open_read(&fifo).unwrap_err().to_string().ends_with("is not a regular file"));
        // a new file replaces the link itself; the target is untouched
        let tmp = dir.path().join("x.log.gz.tmp");
        std::os::unix::fs::symlink(&target, &tmp).unwrap();
        std::io::Write::write_all(&mut create_new(&tmp, 0o640).unwrap(), b"gz").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
        assert!(!std::fs::symlink_metadata(&tmp).unwrap().file_type().is_symlink());
    }

    #[test]
    fn a_directory_writable_by_others_is_repaired_and_one_of_another_owner_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("logs/api");
        private_dir(&dir).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o750);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        private_dir(&dir).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o755);
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::chown(&dir, Some(65534), None).unwrap();
            let e = private_dir(&dir).unwrap_err().to_string();
            assert!(e.contains("is owned by uid 65534 (mode 0755), not by the supervisor's uid 0"), "{e}");
        }
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(private_dir(&link).is_err());
    }
}
