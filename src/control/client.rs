//! The CLI's side of the control socket: one HTTP/1.1 request per command over a Unix socket.

use std::path::{Path, PathBuf};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientError {
    #[error("cannot reach the daemon at {}: {source} (is titan-supervisor running? --socket or TITAN_SUPERVISOR_SOCKET name another socket)", socket.display())]
    Unreachable {
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the daemon at {} broke off: {detail}", socket.display())]
    Protocol { socket: PathBuf, detail: String },
}

/// Sends `method path` and returns the status and the body.
pub(crate) fn request(
    socket: &Path,
    method: Method,
    path: &str,
) -> Result<(StatusCode, Vec<u8>), ClientError> {
    runtime(socket)?.block_on(send(socket, method, path))
}

/// The single-threaded runtime one CLI request runs on.
fn runtime(socket: &Path) -> Result<tokio::runtime::Runtime, ClientError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ClientError::Unreachable { socket: socket.to_owned(), source: e })
}

/// Sends `GET path` and copies the body to `out` as it arrives (event streams, followed
/// logs) until the daemon ends it; returns the status, and the body of an answer that is not
/// 200 (the daemon's reason) instead of streaming it.
pub(crate) fn follow(
    socket: &Path,
    path: &str,
    out: &mut impl std::io::Write,
) -> Result<(StatusCode, Vec<u8>), ClientError> {
    follow_request(socket, Method::GET, path, None, out)
}

/// `follow` for any request, with a JSON body (a switch's progress).
pub(crate) fn follow_request(
    socket: &Path,
    method: Method,
    path: &str,
    json: Option<Vec<u8>>,
    out: &mut impl std::io::Write,
) -> Result<(StatusCode, Vec<u8>), ClientError> {
    runtime(socket)?.block_on(async {
        let broke = |detail: String| ClientError::Protocol { socket: socket.to_owned(), detail };
        let mut body = open(socket, method, path, json).await?;
        let status = body.status();
        if status != StatusCode::OK {
            let reason = body.into_body().collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
            return Ok((status, reason));
        }
        while let Some(frame) = body.body_mut().frame().await {
            let frame = frame.map_err(|e| broke(e.to_string()))?;
            if let Some(data) = frame.data_ref() {
                if out.write_all(data).and_then(|()| out.flush()).is_err() {
                    break;
                }
            }
        }
        Ok((status, Vec::new()))
    })
}

async fn open(
    socket: &Path,
    method: Method,
    path: &str,
    json: Option<Vec<u8>>,
) -> Result<hyper::Response<hyper::body::Incoming>, ClientError> {
    let broke = |detail: String| ClientError::Protocol { socket: socket.to_owned(), detail };
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|source| ClientError::Unreachable { socket: socket.to_owned(), source })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| broke(e.to_string()))?;
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, "titan-supervisor")
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(json.unwrap_or_default())))
        .map_err(|e| broke(e.to_string()))?;
    sender.send_request(req).await.map_err(|e| broke(e.to_string()))
}

async fn send(socket: &Path, method: Method, path: &str) -> Result<(StatusCode, Vec<u8>), ClientError> {
    let resp = open(socket, method, path, None).await?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| ClientError::Protocol { socket: socket.to_owned(), detail: e.to_string() })?
        .to_bytes();
    Ok((status, body.to_vec()))
}
