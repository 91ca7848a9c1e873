//! The TCP probe: healthy when something accepts a connection at `host:port`.

use std::time::Duration;

use super::ProbeError;

/// Connects to `addr` (`host:port`, `[v6]:port` or `name:port`; names resolved with
/// `tokio::net::lookup_host`, IP literals never), success when connected. The connection is
/// closed at once. Resolve + connect are bounded by `timeout`.
pub async fn probe(addr: &str, timeout: Duration) -> Result<(), ProbeError> {
    let bad = |reason| ProbeError::BadTarget {
        target: addr.to_owned(),
        reason,
    };
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| bad("need host:port"))?;
    let port = port.parse::<u16>().map_err(|_| bad("invalid port"))?;
    if host.is_empty() {
        return Err(bad("empty host"));
    }
    match tokio::time::timeout(timeout, super::connect(host, port)).await {
        Ok(connected) => connected.map(drop),
        Err(_) => Err(ProbeError::Timeout(timeout)),
    }
}
