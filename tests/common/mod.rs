//! Helpers shared by the end-to-end tests: run the real binary with a hard timeout, write
//! configs into temp dirs.

#![allow(dead_code)] // each test crate uses its own subset

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub mod daemon;
pub mod docker;
pub mod host;

pub const BIN: &str = env!("CARGO_BIN_EXE_titan-supervisor");
/// The test service as its own small binary (it also takes `test-service` as first argument).
pub const TESTSVC: &str = env!("CARGO_BIN_EXE_titan-testsvc");

/// What a finished run printed.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Everything printed, for "never appears anywhere" checks.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs the binary with `args`, killing it if it outlives `limit`.
pub fn run_with(args: &[&str], envs: &[(&str, &str)], limit: Duration) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.args(args).envs(envs.iter().copied());
    finish(cmd, limit)
}

/// Runs the binary with `args` in the working directory `dir`.
pub fn run_in(dir: &Path, args: &[&str]) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(dir);
    finish(cmd, Duration::from_secs(30))
}

fn finish(mut cmd: Command, limit: Duration) -> Run {
    let args: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn titan-supervisor");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let mut stderr = Vec::new();
    let _ = err.read_to_end(&mut stderr);
    let status = wait_or_kill(&mut child, limit, &format!("titan-supervisor {args:?}"));
    let stdout = reader.join().expect("reader");
    Run {
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// Waits for `child` to exit; past `limit` it is killed and the test fails naming `what`.
pub fn wait_or_kill(
    child: &mut std::process::Child,
    limit: Duration,
    what: &str,
) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs the binary with a 30 s limit and no extra environment.
pub fn run(args: &[&str]) -> Run {
    run_with(args, &[], Duration::from_secs(30))
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write fixture");
    path
}

/// Writes an env file with mode 0600.
pub fn write_env_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = write(dir, name, text);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    path
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// `GET path` on 127.0.0.1:`port` (HTTP/1.0): the whole answer, head and body; empty when
/// nothing answers.
pub fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return String::new() };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(s, "GET {path} HTTP/1.0\r\nHost: t\r\n\r\n");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
}
