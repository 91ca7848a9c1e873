//! Integration tests of `titan-supervisor test-service`: every test runs the real binary, waits
//! on conditions with a deadline (never on bare sleeps), and kills what it started on drop.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long any single condition may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(10);

/// Polls `check` until it yields a value; panics with `what` (and `context()`) at the deadline.
fn wait_until<T>(what: &str, context: impl Fn() -> String, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}\n{}", context());
        std::thread::sleep(POLL);
    }
}

/// Everything read from one pipe so far, and whether it reached end of file.
#[derive(Default)]
struct Captured {
    bytes: Mutex<Vec<u8>>,
    eof: AtomicBool,
}

impl Captured {
    fn spawn(mut pipe: impl Read + Send + 'static) -> Arc<Captured> {
        let captured = Arc::new(Captured::default());
        let sink = Arc::clone(&captured);
        std::thread::spawn(move || {
            let mut chunk = [0u8; 64 << 10];
            while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                sink.bytes.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
            sink.eof.store(true, Ordering::SeqCst);
        });
        captured
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes.lock().unwrap()).into_owned()
    }

    /// Complete (newline-terminated) lines, without their newline.
    fn lines(&self) -> Vec<String> {
        let text = self.text();
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete.split('\n').filter(|_| !complete.is_empty()).map(str::to_owned).collect()
    }
}

/// A running test service; dropping it SIGKILLs the service and every extra pid registered.
struct Svc {
    child: Child,
    out: Arc<Captured>,
    err: Arc<Captured>,
    extra_pids: Vec<i32>,
}

fn svc(args: &[&str]) -> Svc {
    svc_with(args, |_| {})
}

fn svc_with(args: &[&str], tweak: impl FnOnce(&mut Command)) -> Svc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_titan-supervisor"));
    cmd.arg("test-service").args(args);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    tweak(&mut cmd);
    let mut child = cmd.spawn().expect("spawn test service");
    let out = Captured::spawn(child.stdout.take().expect("stdout pipe"));
    let err = Captured::spawn(child.stderr.take().expect("stderr pipe"));
    Svc { child, out, err, extra_pids: Vec::new() }
}

impl Svc {
    fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits i32")
    }

    fn context(&self) -> String {
        format!("stdout:\n{}\nstderr:\n{}", self.out.text(), self.err.text())
    }

    /// Waits for a stdout line equal to `line`.
    fn wait_line(&self, line: &str) {
        self.wait_line_with(line, |l| l == line);
    }

    /// Waits for a stdout line matching `pred` and returns it.
    fn wait_line_with(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        wait_until(
            &format!("line {what:?}"),
            || self.context(),
            || self.out.lines().into_iter().find(|l| pred(l)),
        )
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(Instant::now() < deadline, "service did not exit\n{}", self.context());
            std::thread::sleep(POLL);
        }
    }

    /// Waits until both pipes reached end of file (all output is captured).
    fn wait_output_closed(&self) {
        wait_until(
            "end of output",
            || self.context(),
            || (self.out.eof.load(Ordering::SeqCst) && self.err.eof.load(Ordering::SeqCst)).then_some(()),
        );
    }

    fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.pid()), sig).expect("send signal");
    }

    /// Checks the first line every service prints.
    fn assert_started(&self, name: &str) {
        let first = self.wait_line_with("started", |l| l.contains(" started pid="));
        assert_eq!(first, format!("{name} started pid={}", self.pid()));
        assert_eq!(self.out.lines()[0], first, "the started line comes first");
    }
}

impl Drop for Svc {
    fn drop(&mut self) {
        for &pid in &self.extra_pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago. Picked just below the kernel's ephemeral range, not with
/// port 0: ports from that range are also handed to client sockets (this file's HTTP requests),
/// and a client socket holding the port makes the service's bind fail.
fn free_port() -> SocketAddr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let low = ephemeral_low();
    let span = low.saturating_sub(1024).min(10_000);
    let seed = std::process::id().wrapping_mul(7919);
    for _ in 0..span {
        let offset = seed.wrapping_add(NEXT.fetch_add(1, Ordering::SeqCst)) % span;
        let Ok(port) = u16::try_from(low - 1 - offset) else {
            continue;
        };
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            return listener.local_addr().expect("local addr");
        }
    }
    panic!("no free port below {low}");
}

/// First port of the ephemeral range (clients' automatically bound ports).
fn ephemeral_low() -> u32 {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range");
    let low = range.ok().and_then(|r| r.split_whitespace().next()?.parse().ok());
    low.unwrap_or(32768)
}

/// One `Connection: close` HTTP request; returns the status code and body.
fn http_get(addr: SocketAddr, path: &str) -> io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(parse_response(&response))
}

fn parse_response(response: &str) -> (u16, String) {
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_owned())
}

/// VmRSS of `pid` in bytes.
fn rss_bytes(pid: i32) -> u64 {
    let kib = proc_status_field(pid, "VmRSS").expect("VmRSS in /proc status");
    kib.trim_end_matches("kB").trim().parse::<u64>().expect("VmRSS number") * 1024
}

/// A field of /proc/PID/status, or `None` if the process is gone.
fn proc_status_field(pid: i32, key: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == key).then(|| v.trim().to_owned())
    })
}

fn is_dead(pid: i32) -> bool {
    proc_status_field(pid, "State").is_none_or(|s| s.starts_with('Z') || s.starts_with('X'))
}

#[test]
fn health_is_absent_before_ready_then_ok() {
    let addr = free_port();
    let spawned = Instant::now();
    let s = svc(&["--listen", &addr.to_string(), "--ready-after", "1500ms"]);
    s.assert_started("svc");
    let refused = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err();
    // Only meaningful if the attempt finished before the service could have become ready.
    if spawned.elapsed() < Duration::from_millis(1500) {
        assert!(refused, "listener must not be bound before ready");
    }
    s.wait_line("ready");
    assert_eq!(http_get(addr, "/health").unwrap(), (200, "ok\n".to_owned()));
    assert_eq!(http_get(addr, "/nope").unwrap().0, 404);
}

#[test]
fn bind_early_answers_503_until_ready() {
    let addr = free_port();
    let spawned = Instant::now();
    let s = svc(&["--listen", &addr.to_string(), "--bind-early", "--ready-after", "2s"]);
    let early = wait_until("early listener", || s.context(), || http_get(addr, "/health").ok());
    if spawned.elapsed() < Duration::from_secs(2) {
        assert_eq!(early, (503, "starting\n".to_owned()));
    }
    s.wait_line("ready");
    assert_eq!(http_get(addr, "/health").unwrap().0, 200);
}

#[test]
fn policy_reports_the_hash_as_json() {
    let addr = free_port();
    let s = svc(&["--listen", &addr.to_string(), "--policy-hash", "abc123"]);
    s.wait_line("ready");
    let (status, body) = http_get(addr, "/policy").unwrap();
    assert_eq!(status, 200);
    assert_eq!(body.trim(), r#"{"policy_hash":"abc123"}"#);
}

#[test]
fn policy_hash_defaults_to_demo() {
    let addr = free_port();
    let s = svc(&["--listen", &addr.to_string()]);
    s.wait_line("ready");
    assert_eq!(http_get(addr, "/policy").unwrap().1.trim(), r#"{"policy_hash":"demo"}"#);
}

#[test]
fn http_survives_garbage_and_keeps_connections_alive() {
    let addr = free_port();
    let s = svc(&["--listen", &addr.to_string()]);
    s.wait_line("ready");
    let mut junk = TcpStream::connect(addr).unwrap();
    junk.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    junk.write_all(b"\x00\xffnot http at all\r\n\r\n").unwrap();
    let mut reply = String::new();
    junk.read_to_string(&mut reply).unwrap();
    assert_eq!(parse_response(&reply).0, 400);
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let request = "GET /health HTTP/1.1\r\nHost: t\r\n\r\n";
    conn.write_all(format!("{request}{request}").as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    wait_until(
        "two pipelined responses",
        || s.context(),
        || {
            let n = conn.read(&mut chunk).ok()?;
            got.extend_from_slice(&chunk[..n]);
            (String::from_utf8_lossy(&got).matches("HTTP/1.1 200 OK").count() == 2).then_some(())
        },
    );
    assert_eq!(http_get(addr, "/health").unwrap().0, 200);
}

#[test]
fn exits_after_delay_with_code() {
    let mut s = svc(&["--exit-after", "200ms", "--exit-code", "7", "--name", "quitter"]);
    s.assert_started("quitter");
    assert_eq!(s.wait_exit().code(), Some(7));
}

#[test]
fn abort_after_dies_by_sigabrt() {
    let mut s = svc(&["--abort-after", "100ms"]);
    assert_eq!(s.wait_exit().signal(), Some(Signal::SIGABRT as i32));
}

#[test]
fn sigterm_exits_zero() {
    let mut s = svc(&[]);
    s.wait_line("ready");
    s.signal(Signal::SIGTERM);
    assert_eq!(s.wait_exit().code(), Some(0));
    s.wait_line("stopping on SIGTERM");
}

#[test]
fn sigint_exits_zero() {
    let mut s = svc(&[]);
    s.assert_started("svc");
    s.signal(Signal::SIGINT);
    assert_eq!(s.wait_exit().code(), Some(0));
    s.wait_line("stopping on SIGINT");
}

#[test]
fn ignore_sigterm_survives_until_sigkill() {
    let mut s = svc(&["--ignore-sigterm"]);
    s.assert_started("svc");
    s.signal(Signal::SIGTERM);
    s.wait_line("ignoring SIGTERM");
    s.signal(Signal::SIGHUP);
    s.wait_line("ignoring SIGHUP");
    assert!(s.exited().is_none(), "must survive SIGTERM and SIGHUP");
    s.signal(Signal::SIGKILL);
    assert_eq!(s.wait_exit().signal(), Some(Signal::SIGKILL as i32));
}

#[test]
fn term_delay_postpones_exit() {
    let mut s = svc(&["--term-delay", "500ms"]);
    s.wait_line("ready");
    let sent = Instant::now();
    s.signal(Signal::SIGTERM);
    s.wait_line("stopping on SIGTERM");
    assert_eq!(s.wait_exit().code(), Some(0));
    // A lower bound only: the service cannot exit before its delay has passed.
    assert!(sent.elapsed() >= Duration::from_millis(500), "exited before --term-delay");
}

#[test]
fn alloc_raises_rss() {
    let s = svc(&["--alloc", "64"]);
    s.wait_line("allocated 64 MiB");
    let rss = rss_bytes(s.pid());
    assert!(rss >= 64 << 20, "VmRSS {rss} below 64 MiB");
}

#[test]
fn alloc_grows_in_steps() {
    let s = svc(&["--alloc", "48", "--alloc-step", "16", "--alloc-interval", "200ms"]);
    s.wait_line("allocated 16 MiB");
    let first = rss_bytes(s.pid());
    s.wait_line("allocated 48 MiB");
    let last = rss_bytes(s.pid());
    assert!(last >= first + (32 << 20), "VmRSS grew from {first} to {last} only");
    let steps: Vec<String> = s.out.lines().into_iter().filter(|l| l.starts_with("allocated")).collect();
    assert_eq!(steps, ["allocated 16 MiB", "allocated 32 MiB", "allocated 48 MiB"]);
}

/// Parses numbered lines `<name> <stream> <seq> xxx` of exactly `bytes` bytes (newline included).
fn numbered(lines: &[String], name: &str, stream: &str, bytes: usize) -> Vec<u64> {
    let prefix = format!("{name} {stream} ");
    let mine: Vec<&String> = lines.iter().filter(|l| l.starts_with(&prefix)).collect();
    mine.iter()
        .map(|l| {
            assert_eq!(l.len() + 1, bytes, "line size: {l:?}");
            let rest = &l[prefix.len()..];
            assert!(rest[11..].bytes().all(|b| b == b'x'), "padding: {l:?}");
            rest[..10].parse().expect("sequence number")
        })
        .collect()
}

#[test]
fn lines_have_exact_count_size_and_sequence() {
    let mut s = svc(&["--lines", "5000", "--line-bytes", "100", "--lines-exit", "--name", "lg"]);
    assert_eq!(s.wait_exit().code(), Some(0));
    s.wait_output_closed();
    let seqs = numbered(&s.out.lines(), "lg", "out", 100);
    assert_eq!(seqs, (1..=5000).collect::<Vec<u64>>());
    assert!(s.out.text().ends_with('\n'), "nothing after the last line");
    assert!(s.err.text().is_empty());
}

#[test]
fn lines_alternate_over_both_streams() {
    let args = ["--lines", "501", "--line-bytes", "40", "--stream", "both", "--lines-exit"];
    let mut s = svc(&args);
    assert_eq!(s.wait_exit().code(), Some(0));
    s.wait_output_closed();
    let out = numbered(&s.out.lines(), "svc", "out", 40);
    let err = numbered(&s.err.lines(), "svc", "err", 40);
    assert_eq!(out, (1..=501).step_by(2).collect::<Vec<u64>>());
    assert_eq!(err, (2..=500).step_by(2).collect::<Vec<u64>>());
}

#[test]
fn rate_limited_lines_keep_running_after_the_last() {
    let mut s = svc(&["--lines", "20", "--rate", "200", "--stream", "err"]);
    let all_there = || (numbered(&s.err.lines(), "svc", "err", 64).len() == 20).then_some(());
    wait_until("20 lines on stderr", || s.context(), all_there);
    assert_eq!(numbered(&s.err.lines(), "svc", "err", 64), (1..=20).collect::<Vec<u64>>());
    assert!(s.exited().is_none(), "without --lines-exit the service keeps running");
}

/// Pids from lines `<tag> pid=<pid>`.
fn tagged_pids(s: &Svc, tag: &str) -> Vec<i32> {
    let prefix = format!("{tag} pid=");
    s.out.lines().iter().filter_map(|l| l.strip_prefix(&prefix)?.parse().ok()).collect()
}

#[test]
fn fork_children_and_orphans() {
    let mut s = svc(&["--fork-children", "2", "--orphans", "2", "--ready-line", "up"]);
    s.wait_line("up");
    let children = tagged_pids(&s, "child");
    let orphans = tagged_pids(&s, "orphan");
    s.extra_pids.extend(children.iter().chain(&orphans));
    assert_eq!((children.len(), orphans.len()), (2, 2), "{}", s.context());
    let me = s.pid().to_string();
    for &pid in children.iter().chain(&orphans) {
        assert!(!is_dead(pid), "{pid} should be alive");
        // Forked children unblock the signals the service blocks (soon after the fork).
        let unblocked = || proc_status_field(pid, "SigBlk").filter(|m| m.trim_start_matches('0').is_empty());
        wait_until(&format!("{pid} to unblock signals"), || s.context(), unblocked);
    }
    for &pid in &children {
        assert_eq!(proc_status_field(pid, "PPid"), Some(me.clone()), "child {pid}");
    }
    for &pid in &orphans {
        assert_ne!(proc_status_field(pid, "PPid"), Some(me.clone()), "orphan {pid}");
    }
    // Children took back default signal handling: SIGTERM ends them.
    for &pid in children.iter().chain(&orphans) {
        kill(Pid::from_raw(pid), Signal::SIGTERM).unwrap();
        wait_until(&format!("{pid} to die"), || s.context(), || is_dead(pid).then_some(()));
    }
}

#[test]
fn print_env_is_sorted_and_terminated() {
    let s = svc_with(&["--print-env"], |c| {
        c.env_clear().env("ZED", "last").env("ALPHA", "first=1").env("MID", "");
    });
    s.wait_line("--- env end");
    let lines = s.out.lines();
    let end = lines.iter().position(|l| l == "--- env end").unwrap();
    assert_eq!(lines[1..end], ["ALPHA=first=1", "MID=", "ZED=last"]);
}

#[test]
fn notify_sends_ready_to_a_socket_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(DEADLINE)).unwrap();
    let _s = svc_with(&["--notify", "--ready-after", "100ms"], |c| {
        c.env("NOTIFY_SOCKET", &path);
    });
    let mut buf = [0u8; 64];
    let n = socket.recv(&mut buf).expect("READY=1 datagram");
    assert_eq!(&buf[..n], b"READY=1");
}

#[test]
fn notify_supports_abstract_sockets() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("titan-testsvc-{}-{:?}", std::process::id(), Instant::now());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let socket = UnixDatagram::bind_addr(&addr).unwrap();
    socket.set_read_timeout(Some(DEADLINE)).unwrap();
    let _s = svc_with(&["--notify"], |c| {
        c.env("NOTIFY_SOCKET", format!("@{name}"));
    });
    let mut buf = [0u8; 64];
    let n = socket.recv(&mut buf).expect("READY=1 datagram");
    assert_eq!(&buf[..n], b"READY=1");
}

#[test]
fn notify_without_socket_warns_and_keeps_running() {
    let mut s = svc_with(&["--notify"], |c| {
        c.env_remove("NOTIFY_SOCKET");
    });
    s.wait_line("ready");
    wait_until("warning", || s.context(), || s.err.text().contains("NOTIFY_SOCKET").then_some(()));
    assert!(s.exited().is_none());
}

/// `(name, event, nanos)` lines of a start log.
fn start_log(path: &std::path::Path) -> Vec<(String, String, u128)> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .map(|l| {
            let parts: Vec<&str> = l.split(' ').collect();
            assert_eq!(parts.len(), 3, "start log line {l:?}");
            (parts[0].to_owned(), parts[1].to_owned(), parts[2].parse().unwrap())
        })
        .collect()
}

#[test]
fn start_log_records_start_and_ready_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("start.log");
    let log_arg = log.to_str().unwrap();
    let a = svc(&["--name", "a", "--start-log", log_arg, "--ready-after", "100ms"]);
    a.wait_line("ready");
    let b = svc(&["--name", "b", "--start-log", log_arg]);
    b.wait_line("ready");
    let events = start_log(&log);
    let kinds: Vec<(&str, &str)> = events.iter().map(|(n, e, _)| (n.as_str(), e.as_str())).collect();
    assert_eq!(kinds, [("a", "start"), ("a", "ready"), ("b", "start"), ("b", "ready")]);
    assert!(events.windows(2).all(|w| w[0].2 <= w[1].2), "times ascend: {events:?}");
}

#[test]
fn pid_file_holds_the_pid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("svc.pid");
    let s = svc(&["--pid-file", path.to_str().unwrap()]);
    s.wait_line("ready");
    assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), s.pid().to_string());
}

#[test]
fn bad_options_exit_2_naming_the_option() {
    let cases: [(&[&str], &str); 8] = [
        (&["--bogus"], "--bogus"),
        (&["--ready-after", "soon"], "--ready-after"),
        (&["--exit-code", "3"], "--exit-code"),
        (&["--lines", "3", "--line-bytes", "10"], "--line-bytes"),
        (&["--listen", "not an address"], "--listen"),
        (&["--stream", "both"], "--stream"),
        (&["--name"], "--name"),
        (&["--orphans", "-1"], "--orphans"),
    ];
    for (args, option) in cases {
        let output = Command::new(env!("CARGO_BIN_EXE_titan-supervisor"))
            .arg("test-service")
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with(&format!("test-service: {option}: ")), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn help_exits_zero() {
    let output = Command::new(env!("CARGO_BIN_EXE_titan-supervisor"))
        .args(["test-service", "--help"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).contains("--ready-after"));
}

#[test]
fn starts_and_exits_repeatedly() {
    for _ in 0..20 {
        let mut s = svc(&["--exit-after", "0ms"]);
        assert_eq!(s.wait_exit().code(), Some(0), "{}", s.context());
        s.wait_output_closed();
        s.assert_started("svc");
    }
}

#[test]
fn the_small_binary_runs_the_same_service_with_or_without_the_subcommand() {
    for args in [
        &["test-service", "--exit-after", "0ms", "--exit-code", "7"][..],
        &["--exit-after", "0ms", "--exit-code", "7"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_titan-testsvc")).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(7), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("svc started pid="));
    }
}

/// Exit code and stderr of `titan-testsvc --check-http URL`.
fn check_http(url: &str) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_titan-testsvc")).args(["--check-http", url]).output().unwrap();
    assert!(out.stdout.is_empty(), "a check prints nothing on stdout");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn check_http_exits_0_on_2xx_and_1_otherwise() {
    let addr = free_port();
    let url = format!("http://{addr}/health");
    // nobody listens yet
    let (code, err) = check_http(&url);
    assert_eq!(code, Some(1), "{err}");
    let s = svc(&["--listen", &addr.to_string(), "--bind-early", "--ready-after", "30s"]);
    wait_until("early listener", || s.context(), || http_get(addr, "/health").ok());
    let (code, err) = check_http(&url);
    assert_eq!(code, Some(1), "503 while starting: {err}");
    assert!(err.contains("status 503"), "{err}");
    assert_eq!(check_http(&format!("http://{addr}/nope")).0, Some(1));
    drop(s);

    let ready = free_port();
    let s = svc(&["--listen", &ready.to_string()]);
    s.wait_line("ready");
    assert_eq!(check_http(&format!("http://{ready}/health")), (Some(0), String::new()));
    assert_eq!(check_http(&format!("http://{ready}/policy")).0, Some(0));
    assert_eq!(check_http("https://127.0.0.1:1/").0, Some(2), "not a URL it speaks");
}
