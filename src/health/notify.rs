//! systemd's sd_notify protocol: a Unix datagram socket a service writes `READY=1` (and
//! `STATUS=`, `MAINPID=`, ...) to, so readiness arrives by notification instead of polling.
//! The supervisor passes the socket's address to the service as `NOTIFY_SOCKET`: a path, or
//! `@name` in the abstract namespace, whose datagrams carry the sender's credentials (the
//! kernel's, not the sender's word), so a service running as any user can reach its socket and
//! only that user (or root) is believed.

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use tokio::net::UnixDatagram;

/// The largest datagram we accept, as systemd (`NOTIFY_BUFFER_MAX`, one pipe buffer). A longer
/// one is dropped whole rather than parsed truncated, as systemd does too.
const MAX_DATAGRAM: usize = 4096;

/// A bound notify socket. A socket file is removed when this is dropped.
#[derive(Debug)]
pub struct NotifySocket {
    socket: UnixDatagram,
    /// The socket file; `None` in the abstract namespace.
    path: Option<PathBuf>,
}

/// One parsed datagram. Fields are what systemd acts on; unknown keys are ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Notification {
    /// `READY=1`: startup finished.
    pub ready: bool,
    /// `RELOADING=1`: reloading its configuration.
    pub reloading: bool,
    /// `STOPPING=1`: shutting down.
    pub stopping: bool,
    /// `WATCHDOG=1`: a watchdog keep-alive ping.
    pub watchdog: bool,
    /// `STATUS=...`: free-form status text (may be empty, which clears it).
    pub status: Option<String>,
    /// `MAINPID=n`: the service's main process is now `n` (> 0).
    pub main_pid: Option<i32>,
    /// `ERRNO=n`: the service failed with this errno (≥ 0).
    pub errno: Option<i32>,
}

impl NotifySocket {
    /// Binds a datagram socket at `path` (must be called inside a tokio runtime). A stale
    /// socket file left by a dead supervisor is removed first; a socket someone still listens
    /// on, or a file that is not a socket, is left alone and binding fails.
    pub fn bind(path: &Path) -> io::Result<Self> {
        remove_stale(path)?;
        let socket = std::os::unix::net::UnixDatagram::bind(path)?;
        Self::serve(socket, Some(path.to_owned()))
    }

    /// Binds `name` in the abstract namespace (must be called inside a tokio runtime): no file,
    /// so no directory permissions stand between a service and its socket. `NOTIFY_SOCKET` is
    /// then `@name`.
    pub fn bind_abstract(name: &str) -> io::Result<Self> {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        Self::serve(std::os::unix::net::UnixDatagram::bind_addr(&addr)?, None)
    }

    /// Every datagram then carries its sender's credentials (SO_PASSCRED).
    fn serve(socket: std::os::unix::net::UnixDatagram, path: Option<PathBuf>) -> io::Result<Self> {
        nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::PassCred, &true)?;
        socket.set_nonblocking(true)?;
        Ok(Self { socket: UnixDatagram::from_std(socket)?, path })
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The next datagram, parsed. Datagrams longer than 4096 bytes are skipped.
    pub async fn recv(&self) -> io::Result<Notification> {
        Ok(self.recv_from().await?.0)
    }

    /// The next datagram, parsed, with the uid of the process that sent it. Datagrams longer
    /// than 4096 bytes are skipped.
    pub async fn recv_from(&self) -> io::Result<(Notification, Option<u32>)> {
        use std::os::fd::AsRawFd;
        // One byte more than the limit tells a datagram of exactly 4096 bytes from a longer,
        // truncated one.
        let mut buf = [0u8; MAX_DATAGRAM + 1];
        loop {
            let fd = self.socket.as_raw_fd();
            let (len, uid) =
                self.socket.async_io(tokio::io::Interest::READABLE, || receive(fd, &mut buf)).await?;
            if len <= MAX_DATAGRAM {
                return Ok((parse(&buf[..len]), uid));
            }
        }
    }
}

/// One datagram into `buf` and its sender's uid (from SCM_CREDENTIALS).
fn receive(fd: std::os::fd::RawFd, buf: &mut [u8]) -> io::Result<(usize, Option<u32>)> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, UnixAddr, UnixCredentials, recvmsg};
    let mut cmsg = nix::cmsg_space!(UnixCredentials);
    let mut iov = [io::IoSliceMut::new(buf)];
    let msg = recvmsg::<UnixAddr>(fd, &mut iov, Some(&mut cmsg), MsgFlags::empty())?;
    let uid = msg.cmsgs()?.find_map(|c| match c {
        ControlMessageOwned::ScmCredentials(creds) => Some(creds.uid()),
        _ => None,
    });
    // a datagram longer than the buffer comes truncated, flagged
    let len = if msg.flags.contains(MsgFlags::MSG_TRUNC) { usize::MAX } else { msg.bytes };
    Ok((len, uid))
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        // Best effort: the file may already be gone, and there is nobody to tell.
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Removes a socket file at `path` that nobody listens on. A datagram `connect` succeeds only
/// if a socket is bound there, so a refused connect proves the file stale.
fn remove_stale(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        ));
    }
    let probe = std::os::unix::net::UnixDatagram::unbound()?;
    if probe.connect(path).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("{} is in use by a live process", path.display()),
        ));
    }
    std::fs::remove_file(path)
}

/// Parses one datagram: newline-separated `KEY=VALUE` assignments. Lines that are not valid
/// UTF-8, have no `=`, or carry an unknown key or an unparsable value are ignored; the last
/// assignment of a key wins. Never panics.
pub fn parse(datagram: &[u8]) -> Notification {
    let mut n = Notification::default();
    for line in datagram.split(|&b| b == b'\n') {
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        match key {
            "READY" => n.ready |= value == "1",
            "RELOADING" => n.reloading |= value == "1",
            "STOPPING" => n.stopping |= value == "1",
            "WATCHDOG" => n.watchdog |= value == "1",
            "STATUS" => n.status = Some(value.to_owned()),
            "MAINPID" => {
                if let Some(pid) = value.parse().ok().filter(|&pid: &i32| pid > 0) {
                    n.main_pid = Some(pid);
                }
            }
            "ERRNO" => {
                if let Some(errno) = value.parse().ok().filter(|&e: &i32| e >= 0) {
                    n.errno = Some(errno);
                }
            }
            _ => {}
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready() {
        let n = parse(b"READY=1");
        assert_eq!(n, Notification { ready: true, ..Default::default() });
    }

    #[test]
    fn several_lines_and_trailing_newline() {
        let n = parse(b"READY=1\nSTATUS=listening on :8080\nMAINPID=4242\n");
        assert!(n.ready);
        assert_eq!(n.status.as_deref(), Some("listening on :8080"));
        assert_eq!(n.main_pid, Some(4242));
        assert!(!n.stopping);
    }

    #[test]
    fn every_known_key() {
        let n = parse(b"RELOADING=1\nSTOPPING=1\nWATCHDOG=1\nERRNO=2");
        assert!(n.reloading && n.stopping && n.watchdog && !n.ready);
        assert_eq!(n.errno, Some(2));
    }

    #[test]
    fn status_keeps_equals_signs_and_may_be_empty() {
        assert_eq!(parse(b"STATUS=a=b").status.as_deref(), Some("a=b"));
        assert_eq!(parse(b"STATUS=").status.as_deref(), Some(""));
    }

    #[test]
    fn last_assignment_wins() {
        let n = parse(b"STATUS=starting\nSTATUS=up\nMAINPID=1\nMAINPID=7");
        assert_eq!(n.status.as_deref(), Some("up"));
        assert_eq!(n.main_pid, Some(7));
    }

    #[test]
    fn only_exact_one_sets_flags() {
        for input in [&b"READY=0"[..], b"READY=true", b"READY=", b"READY", b"READY=1 ", b"ready=1"] {
            assert!(!parse(input).ready, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn unknown_keys_are_ignored() {
        let n = parse(b"EXTEND_TIMEOUT_USEC=5000000\nFDSTORE=1\nX-CUSTOM=hello\nREADY=1");
        assert!(n.ready);
        assert_eq!(n.status, None);
    }

    #[test]
    fn bad_numbers_are_ignored() {
        let n = parse(b"MAINPID=0\nERRNO=-1");
        assert_eq!((n.main_pid, n.errno), (None, None));
        let n = parse(b"MAINPID=abc\nERRNO=99999999999999999999\nMAINPID=-5");
        assert_eq!((n.main_pid, n.errno), (None, None));
    }

    #[test]
    fn empty_and_garbage() {
        assert_eq!(parse(b""), Notification::default());
        assert_eq!(parse(b"\n\n\n"), Notification::default());
        assert_eq!(parse(b"=\n==\n=1"), Notification::default());
        assert_eq!(parse(&[0u8; 64]), Notification::default());
        let noise: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        assert!(!parse(&noise).ready);
    }

    #[test]
    fn invalid_utf8_line_is_skipped_others_kept() {
        let n = parse(b"STATUS=\xff\xfe bad\nREADY=1\n\xc3\x28=1");
        assert!(n.ready);
        assert_eq!(n.status, None);
        let n = parse(b"STATUS=caf\xc3\xa9");
        assert_eq!(n.status.as_deref(), Some("café"));
    }
}
