//! Little HTTP servers for the verify tests: each answers every connection on 127.0.0.1 with
//! one fixed response, raw bytes, so a test can send garbage or a body too large as easily as
//! JSON.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::Duration;

/// Serves `response` to every connection on a thread; the base URL, `http://127.0.0.1:PORT`.
pub(super) fn answering(response: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let base = format!("http://{}", listener.local_addr().expect("a bound address"));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            answer(stream, &response);
        }
    });
    base
}

/// Reads the request head, writes the response, closes.
fn answer(mut stream: TcpStream, response: &[u8]) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk) {
            Ok(n) if n > 0 => head.extend_from_slice(&chunk[..n]),
            _ => return,
        }
    }
    // the client may hang up early (a body too large): nothing to do about it here
    let _ = stream.write_all(response);
    let _ = stream.shutdown(Shutdown::Write);
}

/// A complete response with a JSON body.
pub(super) fn json(status: u16, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A URL on a port where nothing listens (it was bound a moment ago, then closed).
pub(super) fn refused() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("a bound address");
    drop(listener);
    format!("http://{addr}/policy")
}
