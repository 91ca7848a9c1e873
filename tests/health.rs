//! Health probes against real sockets on loopback: tiny TCP servers answering fixed HTTP
//! responses, closed ports, and the sd_notify datagram socket in a temp dir.

use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram as StdDatagram;
use std::time::{Duration, Instant};

use http::Uri;
use titan_supervisor::health::notify::{self, NotifySocket};
use titan_supervisor::health::{ProbeError, http as http_probe, tcp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Every test body runs under this hard limit.
const LIMIT: Duration = Duration::from_secs(20);
/// A probe timeout long enough that nothing on loopback legitimately hits it.
const PATIENT: Duration = Duration::from_secs(5);

async fn within<F: Future>(body: F) -> F::Output {
    tokio::time::timeout(LIMIT, body).await.expect("test exceeded its hard timeout")
}

/// Accepts one connection, reads the request head, writes `reply` and closes. The handle
/// yields the request head as received.
async fn serve_once(reply: &'static [u8]) -> (SocketAddr, JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let task = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let head = read_head(&mut stream).await;
        stream.write_all(reply).await.expect("write reply");
        let _ = stream.shutdown().await;
        head
    });
    (addr, task)
}

async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

fn uri(addr: SocketAddr, path: &str) -> Uri {
    format!("http://{addr}{path}").parse().expect("valid uri")
}

/// A port nothing listens on: bound once, then released.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local addr").port()
}

#[tokio::test]
async fn http_200_is_ok_and_request_is_well_formed() {
    within(async {
        let (addr, server) = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
        let result = http_probe::probe(&uri(addr, "/health?deep=1"), PATIENT).await;
        assert!(result.is_ok(), "{result:?}");
        let head = server.await.expect("server task").to_ascii_lowercase();
        assert!(head.starts_with("get /health?deep=1 http/1.1\r\n"), "{head}");
        assert!(head.contains(&format!("\r\nhost: {addr}\r\n")), "{head}");
        assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
    })
    .await;
}

#[tokio::test]
async fn http_without_path_requests_root() {
    within(async {
        let (addr, server) = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
        let result = http_probe::probe(&uri(addr, ""), PATIENT).await;
        assert!(result.is_ok(), "{result:?}");
        let head = server.await.expect("server task");
        assert!(head.starts_with("GET / HTTP/1.1\r\n"), "{head}");
    })
    .await;
}

#[tokio::test]
async fn http_204_is_ok() {
    within(async {
        let (addr, _server) = serve_once(b"HTTP/1.1 204 No Content\r\n\r\n").await;
        let result = http_probe::probe(&uri(addr, "/"), PATIENT).await;
        assert!(result.is_ok(), "{result:?}");
    })
    .await;
}

#[tokio::test]
async fn http_503_is_status_error() {
    within(async {
        let reply = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\ndown";
        let (addr, _server) = serve_once(reply).await;
        let result = http_probe::probe(&uri(addr, "/"), PATIENT).await;
        assert!(matches!(result, Err(ProbeError::Status(503))), "{result:?}");
    })
    .await;
}

#[tokio::test]
async fn http_301_is_status_error_not_followed() {
    within(async {
        let reply = b"HTTP/1.1 301 Moved Permanently\r\nLocation: /elsewhere\r\n\
                      Content-Length: 0\r\n\r\n";
        let (addr, _server) = serve_once(reply).await;
        let result = http_probe::probe(&uri(addr, "/"), PATIENT).await;
        assert!(matches!(result, Err(ProbeError::Status(301))), "{result:?}");
    })
    .await;
}

#[tokio::test]
async fn http_silent_server_times_out() {
    within(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let _server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let _ = read_head(&mut stream).await;
            tokio::time::sleep(LIMIT).await; // holds the connection, never answers
        });
        let timeout = Duration::from_millis(300);
        let start = Instant::now();
        let result = http_probe::probe(&uri(addr, "/"), timeout).await;
        let took = start.elapsed();
        assert!(matches!(result, Err(ProbeError::Timeout(t)) if t == timeout), "{result:?}");
        assert!(took >= timeout, "returned early: {took:?}");
        assert!(took < timeout + Duration::from_secs(3), "too slow: {took:?}");
    })
    .await;
}

#[tokio::test]
async fn http_nothing_listening_is_connect_error_not_timeout() {
    within(async {
        let port = closed_port();
        let target: Uri = format!("http://127.0.0.1:{port}/health").parse().expect("uri");
        let start = Instant::now();
        let result = http_probe::probe(&target, PATIENT).await;
        match result {
            Err(ProbeError::Connect { addr, source }) => {
                assert_eq!(addr, format!("127.0.0.1:{port}"));
                assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused);
            }
            other => panic!("expected a connect error, got {other:?}"),
        }
        assert!(start.elapsed() < PATIENT / 2, "refusal should be fast");
    })
    .await;
}

#[tokio::test]
async fn http_garbage_is_http_error() {
    within(async {
        let (addr, _server) = serve_once(b"\x00\x01\x02 this is not HTTP at all\r\n\r\n").await;
        let result = http_probe::probe(&uri(addr, "/"), PATIENT).await;
        match result {
            Err(ProbeError::Http(text)) => assert!(!text.is_empty()),
            other => panic!("expected an HTTP error, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn http_closed_without_answer_is_http_error() {
    within(async {
        let (addr, _server) = serve_once(b"").await;
        let result = http_probe::probe(&uri(addr, "/"), PATIENT).await;
        assert!(matches!(result, Err(ProbeError::Http(_))), "{result:?}");
    })
    .await;
}

#[tokio::test]
async fn http_1_0_body_until_close_is_ok() {
    within(async {
        let reply = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nall good, read to EOF";
        let (addr, _server) = serve_once(reply).await;
        let result = http_probe::probe(&uri(addr, "/"), PATIENT).await;
        assert!(result.is_ok(), "{result:?}");
    })
    .await;
}

/// The body is never awaited: a server that promises a huge body and sends none of it still
/// yields a quick success once the head is in.
#[tokio::test]
async fn http_body_is_not_read() {
    within(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let _server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let _ = read_head(&mut stream).await;
            let head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n";
            stream.write_all(head).await.expect("write head");
            tokio::time::sleep(LIMIT).await; // the body never comes
        });
        let result = http_probe::probe(&uri(addr, "/"), PATIENT).await;
        assert!(result.is_ok(), "{result:?}");
    })
    .await;
}

#[tokio::test]
async fn http_by_name_resolves_localhost() {
    within(async {
        let (addr, _server) = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
        let target: Uri = format!("http://localhost:{}/", addr.port()).parse().expect("uri");
        let result = http_probe::probe(&target, PATIENT).await;
        assert!(result.is_ok(), "{result:?}");
    })
    .await;
}

#[tokio::test]
async fn http_https_is_rejected_as_bad_target() {
    within(async {
        let target: Uri = "https://127.0.0.1:1/".parse().expect("uri");
        let result = http_probe::probe(&target, PATIENT).await;
        assert!(matches!(result, Err(ProbeError::BadTarget { .. })), "{result:?}");
    })
    .await;
}

#[tokio::test]
async fn tcp_listening_is_ok() {
    within(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let result = tcp::probe(&addr.to_string(), PATIENT).await;
        assert!(result.is_ok(), "{result:?}");
        // The probe really connected: the listener has a connection to accept.
        let accepted = tokio::time::timeout(PATIENT, listener.accept()).await;
        assert!(matches!(accepted, Ok(Ok(_))), "{accepted:?}");
    })
    .await;
}

#[tokio::test]
async fn tcp_closed_port_is_connect_error() {
    within(async {
        let target = format!("127.0.0.1:{}", closed_port());
        let result = tcp::probe(&target, PATIENT).await;
        match result {
            Err(ProbeError::Connect { addr, source }) => {
                assert_eq!(addr, target);
                assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused);
            }
            other => panic!("expected a connect error, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn tcp_localhost_name_works() {
    within(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("local addr").port();
        let result = tcp::probe(&format!("localhost:{port}"), PATIENT).await;
        assert!(result.is_ok(), "{result:?}");
    })
    .await;
}

#[tokio::test]
async fn tcp_name_on_closed_port_names_host_in_error() {
    within(async {
        let port = closed_port();
        let result = tcp::probe(&format!("localhost:{port}"), PATIENT).await;
        match result {
            Err(ProbeError::Connect { addr, .. }) => {
                assert!(addr.starts_with(&format!("localhost:{port} (")), "{addr}")
            }
            other => panic!("expected a connect error, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn tcp_malformed_address_is_bad_target() {
    within(async {
        for target in ["no-port", "host:notaport", ":8080", "host:70000"] {
            let result = tcp::probe(target, PATIENT).await;
            assert!(matches!(result, Err(ProbeError::BadTarget { .. })), "{target}: {result:?}");
        }
    })
    .await;
}

#[tokio::test]
async fn notify_receives_ready_and_status() {
    within(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify.sock");
        let socket = NotifySocket::bind(&path).expect("bind notify socket");
        assert_eq!(socket.path(), Some(path.as_path()));
        let sender = StdDatagram::unbound().expect("client socket");
        sender.send_to(b"READY=1\nSTATUS=up", &path).expect("send");
        let n = socket.recv().await.expect("recv");
        assert!(n.ready);
        assert_eq!(n.status.as_deref(), Some("up"));
        assert_eq!(n, notify::parse(b"READY=1\nSTATUS=up"));
    })
    .await;
}

#[tokio::test]
async fn notify_skips_oversized_datagram() {
    within(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify.sock");
        let socket = NotifySocket::bind(&path).expect("bind notify socket");
        let sender = StdDatagram::unbound().expect("client socket");
        let mut huge = b"READY=1\nSTATUS=".to_vec();
        huge.resize(5000, b'x');
        sender.send_to(&huge, &path).expect("send huge");
        let exact = {
            let mut v = b"STATUS=".to_vec();
            v.resize(4096, b'y');
            v
        };
        sender.send_to(&exact, &path).expect("send 4096");
        let n = socket.recv().await.expect("recv");
        assert!(!n.ready, "the oversized datagram must be ignored");
        assert_eq!(n.status.map(|s| s.len()), Some(4096 - "STATUS=".len()));
    })
    .await;
}

#[tokio::test]
async fn notify_replaces_stale_socket_and_removes_file_on_drop() {
    within(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify.sock");
        drop(StdDatagram::bind(&path).expect("bind stale")); // std leaves the file behind
        assert!(path.exists());
        let socket = NotifySocket::bind(&path).expect("stale socket must be replaced");
        let sender = StdDatagram::unbound().expect("client socket");
        sender.send_to(b"STOPPING=1", &path).expect("send");
        assert!(socket.recv().await.expect("recv").stopping);
        drop(socket);
        assert!(!path.exists(), "socket file must be removed on drop");
    })
    .await;
}

#[tokio::test]
async fn notify_leaves_live_socket_and_regular_file_alone() {
    within(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let live = dir.path().join("live.sock");
        let _owner = StdDatagram::bind(&live).expect("bind live");
        let err = NotifySocket::bind(&live).expect_err("a live socket must not be stolen");
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
        assert!(live.exists());

        let file = dir.path().join("file.sock");
        std::fs::write(&file, b"keep me").expect("write file");
        assert!(NotifySocket::bind(&file).is_err());
        assert_eq!(std::fs::read(&file).expect("read file"), b"keep me");
    })
    .await;
}
