//! The control socket's file: bound with its mode and group, never over something that is not
//! ours to replace — a live titan-supervisor, a socket another program answers on, or a file
//! that is not a socket — and removed when the daemon stops or its boot is refused.

use std::io::{self, Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub(crate) enum BindError {
    #[error("another titan-supervisor is running: {} answers", .0.display())]
    Running(PathBuf),
    #[error("{} is in use by another program (it does not answer as titan-supervisor)", .0.display())]
    Foreign(PathBuf),
    #[error("{} exists and is not a socket (it is {kind}): move it away or choose another [supervisor] socket", path.display())]
    NotASocket { path: PathBuf, kind: &'static str },
    #[error("cannot create the control socket {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A bound control socket and the file that names it.
#[derive(Debug)]
pub(crate) struct Bound {
    pub(crate) listener: UnixListener,
    pub(crate) file: SocketFile,
}

/// The socket's path; removed when this is dropped (the daemon stopped, or its boot failed
/// after binding).
#[derive(Debug)]
pub(crate) struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// How long a socket found at the path gets to answer as titan-supervisor.
const PROBE: Duration = Duration::from_secs(1);

/// Binds the socket with `mode`, owned by `group` when given — the first of `allow_gids`, so that
/// group's members can reach a 0660 socket at all. A socket nobody answers on is stale and
/// replaced; anything else at the path is refused, naming it.
pub(crate) fn bind(path: &Path, mode: u32, group: Option<u32>) -> Result<Bound, BindError> {
    let io_err = |source| BindError::Io { path: path.to_owned(), source };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(BindError::NotASocket { path: path.to_owned(), kind: kind_of(&meta.file_type()) });
        }
        Ok(_) => match UnixStream::connect(path) {
            Ok(peer) if answers_as_titan(&peer) => return Err(BindError::Running(path.to_owned())),
            Ok(_) => return Err(BindError::Foreign(path.to_owned())),
            Err(_) => std::fs::remove_file(path).map_err(io_err)?,
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(e)),
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err)?;
    }
    let listener = bind_with_mode(path, mode).map_err(io_err)?;
    let file = SocketFile(path.to_owned());
    if let Some(gid) = group {
        // lchown: the name is the socket just bound, never a link someone put in its place
        std::os::unix::fs::lchown(path, None, Some(gid)).map_err(io_err)?;
    }
    listener.set_nonblocking(true).map_err(io_err)?;
    Ok(Bound { listener, file })
}

/// Binds with the socket file created at `mode` from the start (the umask narrowed around the
/// bind), instead of a chmod of the path afterwards that could follow a link planted there.
fn bind_with_mode(path: &Path, mode: u32) -> io::Result<UnixListener> {
    use nix::sys::stat::{Mode, umask};
    let narrow = Mode::from_bits_truncate(!mode & 0o777);
    // the umask is the process's: this runs at boot, before any thread creates files
    let old = umask(narrow);
    let bound = UnixListener::bind(path);
    umask(old);
    bound
}

/// Whether the socket's listener answers `GET /v1/status` as titan-supervisor does (its JSON
/// status, or its refusal of a peer outside the allow lists).
fn answers_as_titan(mut peer: &UnixStream) -> bool {
    let _ = peer.set_read_timeout(Some(PROBE));
    let _ = peer.set_write_timeout(Some(PROBE));
    if peer
        .write_all(b"GET /v1/status HTTP/1.1\r\nHost: titan-supervisor\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut reply = Vec::new();
    let _ = peer.take(64 * 1024).read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply);
    reply.starts_with("HTTP/1.1 ") && (reply.contains("\"services\"") || reply.contains("allow_uids"))
}

fn kind_of(t: &std::fs::FileType) -> &'static str {
    if t.is_file() {
        "a regular file"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_fifo() {
        "a FIFO"
    } else {
        "a device"
    }
}

/// SO_PEERGROUPS (Linux 4.13), the generic value (x86_64, aarch64): not exported by libc here.
const SO_PEERGROUPS: nix::libc::c_int = 59;

/// The supplementary groups of the peer at the other end of `stream`, as the kernel recorded
/// them when it connected (not read from /proc afterwards, where the pid may have gone).
pub(crate) fn peer_groups(stream: &impl std::os::fd::AsRawFd) -> io::Result<Vec<u32>> {
    let mut groups: Vec<nix::libc::gid_t> = vec![0; 64];
    loop {
        let mut len = (groups.len() * std::mem::size_of::<nix::libc::gid_t>()) as nix::libc::socklen_t;
        // SAFETY: the buffer is `len` bytes of gid_t the kernel may write into; `len` is
        // updated to what it wrote (or needs, with ERANGE).
        let rc = unsafe {
            nix::libc::getsockopt(
                stream.as_raw_fd(),
                nix::libc::SOL_SOCKET,
                SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let n = len as usize / std::mem::size_of::<nix::libc::gid_t>();
        if rc == 0 {
            groups.truncate(n);
            return Ok(groups);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(nix::libc::ERANGE) || n <= groups.len() || n > 65_536 {
            return Err(e);
        }
        groups.resize(n, 0);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_peer_groups_are_the_connecting_process_groups() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut mine: Vec<u32> = nix::unistd::getgroups().unwrap().into_iter().map(|g| g.as_raw()).collect();
        let mut theirs = super::peer_groups(&a).unwrap();
        mine.sort_unstable();
        theirs.sort_unstable();
        assert_eq!(theirs, mine);
    }
}
