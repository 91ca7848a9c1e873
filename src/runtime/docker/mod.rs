//! Containers through the Docker Engine API (bollard): connecting with the API version
//! negotiated, images pulled by digest and verified, networks and volumes, creating, adopting,
//! starting and signalling containers, the events stream, log streams and exec probes. I/O
//! only: what to do and when is the actor's.

pub(crate) mod claim;
pub(crate) mod engine;
pub(crate) mod error;
pub(crate) mod events;
pub(crate) mod exec;
pub(crate) mod logs;
pub(crate) mod spec;

use std::time::Duration;

use bollard::{API_DEFAULT_VERSION, Docker};

pub(crate) use engine::{Engine, Running};
pub(crate) use error::DockerError;
pub(crate) use spec::ContainerSpec;

/// How long one Engine API request may take before it counts as failed (streams are not
/// bounded by it).
const REQUEST_TIMEOUT: u64 = 120;

/// Connects to the daemon at `host` (`unix:///var/run/docker.sock`) and settles on the highest
/// API version both sides speak (Debian's dockerd is 1.41; bollard defaults above it).
pub(crate) async fn connect(host: &str) -> Result<Docker, DockerError> {
    let path = host.strip_prefix("unix://").unwrap_or(host);
    let unreachable = |source| DockerError::Connect { host: host.to_owned(), source };
    let docker =
        Docker::connect_with_unix(path, REQUEST_TIMEOUT, API_DEFAULT_VERSION).map_err(unreachable)?;
    docker.negotiate_version().await.map_err(unreachable)
}

/// Connects, retrying with backoff (0.2 s doubling to 10 s) and saying why each time, until
/// dockerd answers.
pub(crate) async fn connect_with_retry(host: &str) -> Docker {
    let mut delay = Duration::from_millis(200);
    loop {
        match connect(host).await {
            Ok(docker) => return docker,
            Err(e) => {
                tracing::warn!("{e}; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Nanoseconds since the epoch of an RFC 3339 time as Docker writes it (`StartedAt`).
pub(crate) fn nanos_of(rfc3339: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(rfc3339.trim_end_matches('Z')).ok()?;
    t.duration_since(std::time::UNIX_EPOCH).ok().map(|d| d.as_nanos() as i64)
}

/// The wall clock in nanoseconds since the epoch, as Docker stamps its events.
pub(crate) fn now_nanos() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn docker_times_parse_to_nanoseconds() {
        assert_eq!(super::nanos_of("1970-01-01T00:00:01.000000123Z"), Some(1_000_000_123));
        assert_eq!(super::nanos_of("2026-11-23T17:16:29.5Z").map(|n| n % 1_000_000_000), Some(500_000_000));
        assert_eq!(super::nanos_of("0001-01-01T00:00:00Z"), None);
    }
}
