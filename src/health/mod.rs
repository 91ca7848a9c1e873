//! Health probes the supervisor's actor launches as short tasks: one HTTP GET or one TCP connect
//! per probe, bounded by a timeout, plus the sd_notify socket for readiness by notification.
//! Exec and log checks live with the spawner and the log pipeline they need, not here.

pub mod http;
pub mod notify;
pub mod tcp;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::TcpStream;

/// Why one probe failed. The caller knows which service and check it launched; the variants
/// carry the address or target so the message stands on its own in a log line.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The whole probe (resolve + connect + request + response head) took longer than this.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The target could not be turned into an address (malformed, or unsupported scheme).
    #[error("invalid probe target {target:?}: {reason}")]
    BadTarget {
        target: String,
        reason: &'static str,
    },
    /// Name resolution failed or returned no address.
    #[error("cannot resolve {addr}")]
    Resolve {
        addr: String,
        #[source]
        source: io::Error,
    },
    /// Nothing accepted the connection (refused, unreachable, ...).
    #[error("cannot connect to {addr}")]
    Connect {
        addr: String,
        #[source]
        source: io::Error,
    },
    /// The server answered with a status outside 2xx.
    #[error("HTTP status {0}")]
    Status(u16),
    /// The HTTP exchange failed: malformed response, connection closed early, ... (hyper's text).
    #[error("HTTP error: {0}")]
    Http(String),
}

/// Connects to `host:port`. An IP literal (brackets allowed) is used as is; only a name goes
/// through `lookup_host`, and then every address it yields is tried in turn.
async fn connect(host: &str, port: u16) -> Result<TcpStream, ProbeError> {
    if let Some(ip) = ip_literal(host) {
        return connect_addr(SocketAddr::new(ip, port)).await;
    }
    let addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|source| ProbeError::Resolve {
            addr: format!("{host}:{port}"),
            source,
        })?;
    connect_first(addrs, || format!("{host}:{port}")).await
}

/// `127.0.0.1`, `::1` or `[::1]` (the URI form) as an address; `None` for a name.
fn ip_literal(host: &str) -> Option<IpAddr> {
    let unbracketed = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    unbracketed.unwrap_or(host).parse().ok()
}

/// Connects to a socket address; no resolution.
async fn connect_addr(addr: SocketAddr) -> Result<TcpStream, ProbeError> {
    TcpStream::connect(addr)
        .await
        .map_err(|source| ProbeError::Connect {
            addr: addr.to_string(),
            source,
        })
}

/// Tries each resolved address in order; if none accepts, the last connect error wins, named
/// `name (ip:port)`.
async fn connect_first(
    addrs: impl Iterator<Item = SocketAddr>,
    name: impl Fn() -> String,
) -> Result<TcpStream, ProbeError> {
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(source) => last = Some((addr, source)),
        }
    }
    Err(match last {
        Some((addr, source)) => ProbeError::Connect {
            addr: format!("{} ({addr})", name()),
            source,
        },
        None => ProbeError::Resolve {
            addr: name(),
            source: io::Error::new(io::ErrorKind::NotFound, "no address"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_literals_skip_resolution_names_do_not() {
        assert_eq!(ip_literal("127.0.0.1"), Some(IpAddr::from([127, 0, 0, 1])));
        assert_eq!(
            ip_literal("[::1]"),
            Some(IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]))
        );
        assert_eq!(
            ip_literal("::1"),
            Some(IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]))
        );
        for name in [
            "localhost",
            "db.internal",
            "[localhost]",
            "",
            "[::1",
            "1.2.3",
        ] {
            assert_eq!(ip_literal(name), None, "{name}");
        }
    }
}
