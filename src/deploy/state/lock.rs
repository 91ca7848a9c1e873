//! The deploy lock: state_dir/deploy.lock, flock'd for as long as one deploy runs, holding who
//! runs it so that a second deploy can say whom it is waiting on.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

const LOCK: &str = "deploy.lock";

/// Who holds the deploy lock, written into the lock file once it is held.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub(crate) struct Holder {
    pub(crate) pid: u32,
    pub(crate) uid: u32,
    pub(crate) release: String,
    /// RFC 3339
    pub(crate) since: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} (uid {}) switching to {} since {}", self.pid, self.uid, self.release, self.since)
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum LockError {
    /// Another deploy holds it; who, as its lock file says (None while it is being written or
    /// when it cannot be read).
    #[error("another deploy is running: {}", held_by(.0))]
    Held(Option<Holder>),
    #[error("{}: cannot take the deploy lock: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn held_by(holder: &Option<Holder>) -> String {
    match holder {
        Some(h) => h.to_string(),
        None => "its holder is not recorded yet".to_string(),
    }
}

/// state_dir/deploy.lock held with flock(LOCK_EX|LOCK_NB) until dropped.
#[derive(Debug)]
pub(crate) struct DeployLock {
    /// Dropping it unlocks and closes: the lock is this open file description's.
    file: Flock<File>,
}

impl AsFd for DeployLock {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// Takes the deploy lock in `state_dir` (created if missing) without waiting, then records
/// `holder` in it: truncate, write the holder as JSON, fsync.
pub(crate) fn lock(state_dir: &Path, holder: &Holder) -> Result<DeployLock, LockError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| LockError::Io { path, source }
    };
    std::fs::create_dir_all(state_dir).map_err(io_err(state_dir))?;
    let path = state_dir.join(LOCK);
    // std opens every file O_CLOEXEC: the lock dies with the daemon and is never inherited by
    // a child (a service, a migration) that would otherwise keep it held after we exit. No
    // O_TRUNC: the file may be another deploy's, holding its holder.
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path);
    let file = file.map_err(io_err(&path))?;
    let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(locked) => locked,
        Err((file, errno)) if errno == Errno::EWOULDBLOCK => return Err(LockError::Held(read_holder(file))),
        Err((_, errno)) => return Err(io_err(&path)(errno.into())),
    };
    record(&mut file, holder).map_err(io_err(&path))?;
    Ok(DeployLock { file })
}

fn record(file: &mut File, holder: &Holder) -> io::Result<()> {
    let json = serde_json::to_vec(holder)?;
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(&json)?;
    file.sync_all()
}

/// The holder another deploy recorded; None when it is still writing it, or it is unreadable.
fn read_holder(mut file: File) -> Option<Holder> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

#[cfg(test)]
mod tests {
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};

    use super::*;

    fn holder(pid: u32, release: &str) -> Holder {
        Holder { pid, uid: 0, release: release.into(), since: "2026-12-02T01:30:00Z".into() }
    }

    #[test]
    fn a_second_deploy_is_refused_and_told_who_holds_the_lock() {
        let tmp = tempfile::tempdir().unwrap();
        let first = holder(123, "20261202T013000Z-abc1234");
        let _held = lock(tmp.path(), &first).unwrap();
        match lock(tmp.path(), &holder(456, "20261202T020000Z-def5678")) {
            Err(LockError::Held(Some(h))) => assert_eq!(h, first),
            other => panic!("expected Held(Some(first)), got {other:?}"),
        }
    }

    #[test]
    fn dropping_the_lock_lets_the_next_deploy_take_it_and_record_itself() {
        let tmp = tempfile::tempdir().unwrap();
        drop(lock(tmp.path(), &holder(123, "r1-with-a-long-name")).unwrap());
        let second = holder(456, "r2");
        let _held = lock(tmp.path(), &second).unwrap();
        let recorded: Holder =
            serde_json::from_slice(&std::fs::read(tmp.path().join(LOCK)).unwrap()).unwrap();
        assert_eq!(recorded, second);
    }

    #[test]
    fn an_unreadable_holder_is_held_by_nobody_known() {
        let tmp = tempfile::tempdir().unwrap();
        let _held = lock(tmp.path(), &holder(123, "r1")).unwrap();
        std::fs::write(tmp.path().join(LOCK), "{\"pid\": 12").unwrap();
        let err = lock(tmp.path(), &holder(456, "r2")).unwrap_err();
        assert!(matches!(err, LockError::Held(None)), "{err:?}");
        assert!(err.to_string().contains("not recorded"), "{err}");
    }

    #[test]
    fn the_lock_fd_is_close_on_exec() {
        let tmp = tempfile::tempdir().unwrap();
        let held = lock(tmp.path(), &holder(123, "r1")).unwrap();
        let flags = FdFlag::from_bits_truncate(fcntl(held.as_fd(), FcntlArg::F_GETFD).unwrap());
        assert!(flags.contains(FdFlag::FD_CLOEXEC));
    }

    #[test]
    fn the_lock_creates_a_missing_state_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        let _held = lock(&state, &holder(1, "r1")).unwrap();
        assert!(state.join(LOCK).is_file());
    }

    #[test]
    fn holder_reads_as_a_sentence() {
        let text = holder(123, "20261202T013000Z-abc1234").to_string();
        assert_eq!(text, "pid 123 (uid 0) switching to 20261202T013000Z-abc1234 since 2026-12-02T01:30:00Z");
    }
}
