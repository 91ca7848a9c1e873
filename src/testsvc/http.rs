//! The health server: a tiny blocking HTTP/1.1 server (a thread per connection) answering
//! `GET /health` (503 until ready, then 200) and `GET /policy` (JSON); everything else is 404.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// Longest request head accepted (request line plus headers).
const MAX_HEAD: usize = 8 << 10;
/// Connections served at once; more are closed right away.
const MAX_CONNECTIONS: usize = 256;
/// Requests served on one keep-alive connection before it is closed.
const MAX_REQUESTS: usize = 1000;
/// Idle time after which a connection is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the server answers with; shared with the thread that flips readiness.
#[derive(Debug)]
pub(crate) struct State {
    ready: AtomicBool,
    connections: AtomicUsize,
    policy_json: String,
}

impl State {
    pub(crate) fn new(policy_hash: &str) -> State {
        State {
            ready: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            policy_json: format!("{{\"policy_hash\":\"{}\"}}\n", json_escape(policy_hash)),
        }
    }

    pub(crate) fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }
}

/// Binds `addr` and serves it on a background thread.
pub(crate) fn start(addr: SocketAddr, state: Arc<State>) -> io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    std::thread::Builder::new().name("http-accept".into()).spawn(move || accept_loop(&listener, &state))?;
    Ok(())
}

fn accept_loop(listener: &TcpListener, state: &Arc<State>) {
    loop {
        let Ok((stream, _)) = listener.accept() else {
            // Out of fds or similar: back off instead of spinning.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        if state.connections.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            state.connections.fetch_sub(1, Ordering::SeqCst);
            continue;
        }
        let conn_state = Arc::clone(state);
        let spawned = std::thread::Builder::new().name("http-conn".into()).spawn(move || {
            let _ = serve(stream, &conn_state);
            conn_state.connections.fetch_sub(1, Ordering::SeqCst);
        });
        if spawned.is_err() {
            state.connections.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Serves requests on one connection until the client or a response closes it.
fn serve(mut stream: TcpStream, state: &State) -> io::Result<()> {
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    stream.set_write_timeout(Some(IDLE_TIMEOUT))?;
    let mut buf = Vec::with_capacity(1024);
    for _ in 0..MAX_REQUESTS {
        let (response, keep_alive) = match read_head(&mut stream, &mut buf)? {
            Head::Complete(len) => {
                let head: Vec<u8> = buf.drain(..len).collect();
                answer(&head, state)
            }
            Head::Closed => return Ok(()),
            Head::TooLarge => (Response::plain(431, "request head too large"), false),
        };
        stream.write_all(&response.bytes(keep_alive))?;
        if !keep_alive {
            break;
        }
    }
    close_gently(stream);
    Ok(())
}

/// Half-closes and drains briefly, so unread request bytes do not turn the close into a reset
/// that could destroy the response in flight.
fn close_gently(mut stream: TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut sink = [0u8; 4096];
    for _ in 0..16 {
        match stream.read(&mut sink) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
}

enum Head {
    /// A complete head occupies `buf[..len]`.
    Complete(usize),
    /// The client closed (or went idle) before sending a complete head.
    Closed,
    TooLarge,
}

/// Reads until `buf` holds a whole request head (ended by an empty line).
fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<Head> {
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(len) = head_len(buf) {
            return Ok(Head::Complete(len));
        }
        if buf.len() >= MAX_HEAD {
            return Ok(Head::TooLarge);
        }
        let n = match stream.read(&mut chunk) {
            Ok(0) => return Ok(Head::Closed),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if is_timeout(&e) => return Ok(Head::Closed),
            Err(e) => return Err(e),
        };
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

/// Length of the head at the start of `buf`, including its terminating empty line.
fn head_len(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A request head, as far as this server cares.
#[derive(Debug, PartialEq, Eq)]
struct Request<'a> {
    method: &'a str,
    path: &'a str,
    keep_alive: bool,
    has_body: bool,
}

/// Parses a request head; `None` if it is not HTTP/1.x.
fn parse_request(head: &str) -> Option<Request<'_>> {
    let mut lines = head.lines();
    let mut parts = lines.next()?.split_whitespace();
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !version.starts_with("HTTP/1.") {
        return None;
    }
    let mut req = Request {
        method,
        path: target.split(['?', '#']).next().unwrap_or(target),
        keep_alive: version != "HTTP/1.0",
        has_body: false,
    };
    for line in lines.take_while(|l| !l.trim().is_empty()) {
        let (key, value) = line.split_once(':')?;
        apply_header(&mut req, key.trim(), value.trim());
    }
    Some(req)
}

fn apply_header(req: &mut Request<'_>, key: &str, value: &str) {
    let has_token = |t: &str| value.split(',').any(|v| v.trim().eq_ignore_ascii_case(t));
    if key.eq_ignore_ascii_case("connection") {
        if has_token("close") {
            req.keep_alive = false;
        } else if has_token("keep-alive") {
            req.keep_alive = true;
        }
    } else if key.eq_ignore_ascii_case("transfer-encoding") {
        req.has_body = true;
    } else if key.eq_ignore_ascii_case("content-length") {
        req.has_body |= value != "0";
    }
}

/// The response to a request head, and whether the connection stays open after it.
fn answer(head: &[u8], state: &State) -> (Response, bool) {
    let Some(req) = std::str::from_utf8(head).ok().and_then(parse_request) else {
        return (Response::plain(400, "bad request"), false);
    };
    // Bodies are never read, so a request with one ends the connection.
    let keep_alive = req.keep_alive && !req.has_body;
    let mut response = route(&req, state);
    response.head_only = req.method == "HEAD";
    (response, keep_alive)
}

fn route(req: &Request<'_>, state: &State) -> Response {
    if req.method != "GET" && req.method != "HEAD" {
        return Response::plain(404, "not found");
    }
    match req.path {
        "/health" if state.ready.load(Ordering::SeqCst) => Response::plain(200, "ok"),
        "/health" => Response::plain(503, "starting"),
        "/policy" => Response {
            status: 200,
            content_type: "application/json",
            body: state.policy_json.clone(),
            head_only: false,
        },
        _ => Response::plain(404, "not found"),
    }
}

#[derive(Debug)]
struct Response {
    status: u16,
    content_type: &'static str,
    body: String,
    head_only: bool,
}

impl Response {
    fn plain(status: u16, text: &str) -> Response {
        Response { status, content_type: "text/plain", body: format!("{text}\n"), head_only: false }
    }

    fn bytes(&self, keep_alive: bool) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len(),
            if keep_alive { "keep-alive" } else { "close" },
        );
        if !self.head_only {
            out.push_str(&self.body);
        }
        out.into_bytes()
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_request_and_connection_header() {
        let head = "GET /health?x=1 HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n";
        let req = parse_request(head).unwrap();
        assert_eq!((req.method, req.path, req.keep_alive), ("GET", "/health", false));
        assert!(parse_request("GET / HTTP/1.0\r\n\r\n").is_some_and(|r| !r.keep_alive));
    }

    #[test]
    fn garbage_is_a_bad_request() {
        let state = State::new("demo");
        for head in [&b"\xff\xfe\r\n\r\n"[..], b"hello\r\n\r\n", b"GET / SMTP\r\n\r\n"] {
            assert_eq!(answer(head, &state).0.status, 400);
        }
    }

    #[test]
    fn routes() {
        let state = State::new("a\"b");
        let get = |path| answer(format!("GET {path} HTTP/1.1\r\n\r\n").as_bytes(), &state).0;
        assert_eq!(get("/health").status, 503);
        state.set_ready();
        assert_eq!(get("/health").status, 200);
        assert_eq!(get("/policy").body, "{\"policy_hash\":\"a\\\"b\"}\n");
        assert_eq!(get("/nope").status, 404);
    }

    #[test]
    fn head_length() {
        assert_eq!(head_len(b"GET / HTTP/1.1\r\n\r\nrest"), Some(18));
        assert_eq!(head_len(b"GET / HTTP/1.1\r\n"), None);
    }
}
