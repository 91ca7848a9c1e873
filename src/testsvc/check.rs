//! `--check-http URL`: one `GET`, exit 0 on a 2xx answer, 1 on anything else (refused, timed
//! out, another status). A health-check command for images that have no shell and no curl:
//! docker-compose's `healthcheck` runs it inside the FROM-scratch test image.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// The whole check (connect, request, status line) must fit in this.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(2);

/// Where a check goes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Target {
    /// `host:port`, as resolved and as sent in `Host:`.
    pub(crate) authority: String,
    pub(crate) path: String,
}

/// `http://HOST[:PORT][/PATH]` (port 80 by default, path `/`); `https` and the rest are refused.
pub(crate) fn parse_url(url: &str) -> Result<Target, String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| format!("{url:?} is not an http:// URL"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') || path.contains(char::is_whitespace) {
        return Err(format!("{url:?} is not a plain http://host:port/path URL"));
    }
    let has_port = match authority.strip_prefix('[') {
        Some(v6) => v6.split_once(']').is_some_and(|(_, after)| after.starts_with(':')),
        None => authority.contains(':'),
    };
    let authority = if has_port { authority.to_owned() } else { format!("{authority}:80") };
    Ok(Target { authority, path: path.to_owned() })
}

/// The status code of one `GET`, within [`TIMEOUT`].
pub(crate) fn status_of(target: &Target) -> Result<u16, String> {
    let deadline = Instant::now() + TIMEOUT;
    let addrs: Vec<SocketAddr> = target
        .authority
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", target.authority))?
        .collect();
    let addr = addrs.first().ok_or_else(|| format!("{} resolves to no address", target.authority))?;
    let mut stream = TcpStream::connect_timeout(addr, TIMEOUT).map_err(|e| format!("{addr}: {e}"))?;
    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    stream
        .set_read_timeout(Some(left))
        .and_then(|()| stream.set_write_timeout(Some(left)))
        .map_err(|e| e.to_string())?;
    let request =
        format!("GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", target.path, target.authority);
    stream.write_all(request.as_bytes()).map_err(|e| format!("{addr}: {e}"))?;
    // The status line is all that matters: read until its end (or the connection's).
    let mut head = Vec::with_capacity(128);
    let mut chunk = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 4096 {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("{addr}: {e}")),
        }
    }
    let line = String::from_utf8_lossy(&head);
    let mut words = line.split_whitespace();
    match (words.next(), words.next().and_then(|c| c.parse().ok())) {
        (Some(v), Some(code)) if v.starts_with("HTTP/1.") => Ok(code),
        _ => Err(format!("{addr}: not an HTTP response")),
    }
}

/// Runs the check and exits: 0 on a 2xx, 1 otherwise (saying why on stderr).
pub(crate) fn run(url: &str) -> ! {
    let target = parse_url(url).unwrap_or_else(|e| {
        super::output::warn("--check-http", &e);
        std::process::exit(2)
    });
    match status_of(&target) {
        Ok(code) if (200..300).contains(&code) => std::process::exit(0),
        Ok(code) => super::output::warn("--check-http", &format!("{url}: status {code}")),
        Err(e) => super::output::warn("--check-http", &e),
    }
    std::process::exit(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(authority: &str, path: &str) -> Target {
        Target { authority: authority.to_owned(), path: path.to_owned() }
    }

    #[test]
    fn urls() {
        assert_eq!(parse_url("http://127.0.0.1:8080/health"), Ok(t("127.0.0.1:8080", "/health")));
        assert_eq!(parse_url("http://localhost"), Ok(t("localhost:80", "/")));
        assert_eq!(parse_url("http://[::1]:9/h?x=1"), Ok(t("[::1]:9", "/h?x=1")));
        assert_eq!(parse_url("http://[::1]/h"), Ok(t("[::1]:80", "/h")));
        for bad in ["https://a/", "127.0.0.1:80/health", "http:///x", "http://u@h/", "http://h/a b"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
