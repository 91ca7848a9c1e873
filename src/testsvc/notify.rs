//! `--notify`: the systemd readiness protocol, a `READY=1` datagram to `$NOTIFY_SOCKET` (a path,
//! or `@name` for the abstract namespace).

use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Sends `READY=1`; the error says what went wrong, for a warning line.
pub(crate) fn send_ready() -> Result<(), String> {
    let target = std::env::var_os("NOTIFY_SOCKET").ok_or("NOTIFY_SOCKET is not set")?;
    let fail = |e: std::io::Error| format!("cannot notify {}: {e}", target.to_string_lossy());
    let socket = UnixDatagram::unbound().map_err(fail)?;
    let sent = match target.as_bytes().strip_prefix(b"@") {
        Some(name) => {
            SocketAddr::from_abstract_name(name).and_then(|addr| socket.send_to_addr(b"READY=1", &addr))
        }
        None => socket.send_to(b"READY=1", &target),
    };
    sent.map(drop).map_err(fail)
}
