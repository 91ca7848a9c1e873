//! The notify socket of a `notify = true` service: bound in the abstract namespace under an
//! unguessable name (nobody can take it first), given to the service as `NOTIFY_SOCKET`, and
//! read by a task that forwards `READY=1` to the actor — only from the service's own uid or
//! root, as the kernel vouches for the sender. Bound when the definition is installed, so a
//! service added or changed by a reload gets its socket like one present at boot.

use std::io::Read;

use tokio::sync::mpsc;

use super::handle::Msg;
use crate::health::notify::NotifySocket;

/// A service's bound notify socket; dropping it stops reading and closes the socket.
#[derive(Debug)]
pub(crate) struct Binding {
    /// `NOTIFY_SOCKET` for the service: `@<name>`.
    pub(crate) addr: String,
    /// The uid whose datagrams are believed (besides root's).
    pub(crate) uid: u32,
    task: tokio::task::AbortHandle,
}

impl Drop for Binding {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds a notify socket for service `slot` of `project`, believing `uid` (and root); its
/// READY=1 reaches the actor through `tx`. Must be called inside the actor's runtime.
pub(crate) fn bind(
    project: &str,
    service: &str,
    slot: usize,
    uid: u32,
    tx: mpsc::UnboundedSender<Msg>,
) -> std::io::Result<Binding> {
    let name = format!("titan-supervisor/{project}/{service}/{}", nonce()?);
    bind_at(name, slot, uid, tx)
}

/// Binds the notify socket at `name` (`NOTIFY_SOCKET` without its `@`): a run taken up
/// across an upgrade keeps the address it was started with.
pub(crate) fn bind_at(
    name: String,
    slot: usize,
    uid: u32,
    tx: mpsc::UnboundedSender<Msg>,
) -> std::io::Result<Binding> {
    let socket = NotifySocket::bind_abstract(&name)?;
    let task = tokio::spawn(async move {
        while let Ok((n, sender)) = socket.recv_from().await {
            let believed = sender.is_some_and(|s| s == uid || s == 0);
            if !believed {
                tracing::warn!(slot, sender, uid, "notify socket: a datagram from another user, ignored");
                continue;
            }
            if n.ready && tx.send(Msg::Ready { slot, run: None }).is_err() {
                break;
            }
        }
    });
    Ok(Binding { addr: format!("@{name}"), uid, task: task.abort_handle() })
}

/// 64 random bits, hex: the part of the name nobody can guess.
fn nonce() -> std::io::Result<String> {
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
