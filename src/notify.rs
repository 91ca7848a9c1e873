//! Telling systemd (or whoever started us with `$NOTIFY_SOCKET`) how we are: `READY=1` once
//! every service has settled, `STOPPING=1` when a stop begins. A unit with `Type=notify` then
//! orders itself correctly after titan-supervisor.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Sends `state` (e.g. `READY=1\nSTATUS=...`) to `$NOTIFY_SOCKET`; does nothing without one.
pub(crate) fn send(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let Some(path) = path.to_str() else { return };
    let addr = match path.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
        None => SocketAddr::from_pathname(path),
    };
    let sent = addr.and_then(|addr| UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &addr));
    if let Err(e) = sent {
        tracing::debug!("sd_notify to {path}: {e}");
    }
}
