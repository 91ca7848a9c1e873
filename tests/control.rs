//! The control socket end to end: the CLI talking to a running daemon over its Unix socket,
//! peers checked by their credentials, the socket file handled like a lock.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::BIN;
use common::daemon::{Daemon, alive, port, svc, wait_for};

const SEC: Duration = Duration::from_secs(1);

fn cli(d: &Daemon, args: &[&str]) -> Output {
    let socket = d.path("s.sock");
    Command::new(BIN).args(args).arg("--socket").arg(&socket).output().expect("run the CLI")
}

fn two_services() -> String {
    let p = port();
    format!(
        "[services.db]\n{}\nhealth = {{ tcp = \"127.0.0.1:{p}\" }}\n\n[services.api]\ndepends_on = [\"db\"]\n{}\nhealth = {{ log = \"^ready$\" }}\n",
        svc("db", &format!("\"--listen\", \"127.0.0.1:{p}\"")),
        svc("api", "")
    )
}

#[test]
fn status_lists_every_service_as_a_table_and_as_json() {
    let d = Daemon::start(&two_services());
    d.wait_state("api", "healthy", 10 * SEC);
    let out = cli(&d, &["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("NAME"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("api ") && l.contains("healthy") && l.contains("log")),
        "{text}"
    );
    let out = cli(&d, &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let services = v["services"].as_array().unwrap();
    assert_eq!(services.len(), 2);
    let db = services.iter().find(|s| s["name"] == "db").unwrap();
    assert_eq!(
        (db["state"].as_str(), db["health"].as_str(), db["kind"].as_str()),
        (Some("healthy"), Some("tcp"), Some("process"))
    );
    assert_eq!(db["pid"].as_i64(), d.service_pid("db").map(i64::from));
    // every running service's memory is read within the sampling period (5 s)
    let memory = wait_for(15 * SEC, || {
        let out = cli(&d, &["status", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let db = v["services"].as_array()?.iter().find(|s| s["name"] == "db")?.clone();
        db["memory_bytes"].as_u64().filter(|&m| m > 0)
    });
    let vm_rss = std::fs::read_to_string(format!("/proc/{}/status", d.service_pid("db").unwrap())).unwrap();
    let kib: u64 = vm_rss
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let memory = memory.expect("memory_bytes reported");
    assert!(memory / 1024 > kib / 4 && memory / 1024 < kib * 4, "{memory} B against VmRSS {kib} KiB");
}

#[test]
fn stop_holds_a_service_until_start_and_restart_goes_through_the_gate() {
    let d = Daemon::start(&two_services());
    d.wait_state("api", "healthy", 10 * SEC);
    let first = d.service_pid("api").unwrap();

    let out = cli(&d, &["stop", "api"]);
    assert_eq!((out.status.code(), String::from_utf8_lossy(&out.stdout).trim()), (Some(0), "api: stopped"));
    assert!(!alive(first));
    std::thread::sleep(Duration::from_millis(300)); // nothing brings it back on its own
    assert_eq!(d.states("api").last().map(String::as_str), Some("stopped"));

    let out = cli(&d, &["start", "api"]);
    assert_eq!((out.status.code(), String::from_utf8_lossy(&out.stdout).trim()), (Some(0), "api: healthy"));
    let second = d.service_pid("api").unwrap();
    assert!(alive(second) && second != first);

    let out = cli(&d, &["restart", "api"]);
    assert_eq!((out.status.code(), String::from_utf8_lossy(&out.stdout).trim()), (Some(0), "api: healthy"));
    let third = wait_for(5 * SEC, || d.service_pid("api").filter(|&p| p != second)).expect("a new process");
    assert!(alive(third) && !alive(second));
    assert_eq!(d.states("api").iter().rev().take(3).collect::<Vec<_>>(), ["healthy", "starting", "stopping"]);
}

#[test]
fn a_service_cannot_start_while_its_dependency_is_held_stopped() {
    let d = Daemon::start(&two_services());
    d.wait_state("api", "healthy", 10 * SEC);
    assert_eq!(cli(&d, &["stop", "api"]).status.code(), Some(0));
    assert_eq!(cli(&d, &["stop", "db"]).status.code(), Some(0));
    let out = cli(&d, &["start", "api"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("api cannot start: held: dependency db is stopped")
    );
}

#[test]
fn unknown_services_and_an_unreachable_daemon_have_their_exit_codes() {
    let d = Daemon::start(&two_services());
    d.wait_state("db", "healthy", 10 * SEC);
    let out = cli(&d, &["restart", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown service \"nope\""));
    let gone = Command::new(BIN).args(["status", "--socket", "/nonexistent/titan.sock"]).output().unwrap();
    assert_eq!(gone.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("cannot reach the daemon at /nonexistent/titan.sock")
    );
    // the environment variable names the socket too
    let env =
        Command::new(BIN).arg("status").env("TITAN_SUPERVISOR_SOCKET", d.path("s.sock")).output().unwrap();
    assert_eq!(env.status.code(), Some(0));
}

#[test]
fn the_socket_has_its_mode_and_peers_outside_the_allow_lists_get_403() {
    let d = Daemon::start(&two_services());
    d.wait_state("db", "healthy", 10 * SEC);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(d.path("s.sock")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    drop(d);

    // a socket anyone may connect to: the credentials decide
    let open = two_services();
    let d = Daemon::start_with_header(&open, "socket_mode = \"0666\"\nallow_uids = [0]\n");
    d.wait_state("db", "healthy", 10 * SEC);
    let socket = d.path("s.sock");
    let nobody = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--", BIN, "status", "--socket"])
        .arg(&socket)
        .output()
        .expect("setpriv (util-linux)");
    assert_eq!(nobody.status.code(), Some(2), "{}", String::from_utf8_lossy(&nobody.stderr));
    assert!(String::from_utf8_lossy(&nobody.stderr).contains("403"));
    let logged = wait_for(5 * SEC, || d.log_tail().contains("peer not allowed").then_some(()));
    assert!(logged.is_some(), "{}", d.log_tail());
    assert_eq!(cli(&d, &["status"]).status.code(), Some(0), "root is always allowed");
}

#[test]
fn a_group_in_allow_gids_owns_the_socket_and_its_members_get_in() {
    let d = Daemon::start_with_header(&two_services(), "allow_gids = [65534]\n");
    d.wait_state("db", "healthy", 10 * SEC);
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(d.path("s.sock")).unwrap();
    assert_eq!((meta.gid(), meta.mode() & 0o777), (65534, 0o660));
    // nobody:nogroup reaches a 0660 socket only through its group, and is let in by allow_gids
    let member = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--", BIN, "status", "--socket"])
        .arg(d.path("s.sock"))
        .output()
        .expect("setpriv (util-linux)");
    assert_eq!(member.status.code(), Some(0), "{}", String::from_utf8_lossy(&member.stderr));
    assert!(String::from_utf8_lossy(&member.stdout).contains("db"));
}

#[test]
fn a_supplementary_member_of_an_allowed_group_gets_in() {
    // regression: only the peer's primary group was matched against allow_gids
    let d = Daemon::start_with_header(&two_services(), "allow_gids = [4242]\n");
    d.wait_state("db", "healthy", 10 * SEC);
    let as_nobody = |groups: &str| {
        Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", groups, "--", BIN, "status", "--socket"])
            .arg(d.path("s.sock"))
            .output()
            .expect("setpriv (util-linux)")
    };
    let member = as_nobody("--groups=4242");
    assert_eq!(member.status.code(), Some(0), "{}", String::from_utf8_lossy(&member.stderr));
    assert!(String::from_utf8_lossy(&member.stdout).contains("db"));
    // the socket is the group's (0660): without the group there is no way in at all
    let outsider = as_nobody("--clear-groups");
    assert_ne!(outsider.status.code(), Some(0));
}

/// Sends `request` raw and returns what comes back before the server closes or 10 s pass.
fn raw(socket: &std::path::Path, request: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(10 * SEC)).unwrap();
    let _ = s.write_all(request);
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    String::from_utf8_lossy(&reply).into_owned()
}

#[test]
fn a_request_right_after_boot_sees_every_service() {
    // regression: the board was empty until the actor's first turn while the socket already
    // answered, so `logs -f` of a service right after boot got "unknown service"
    let config: String =
        (0..20).map(|i| format!("[services.s{i:02}]\ncommand = [\"sleep\", \"1000\"]\n\n")).collect();
    let d = Daemon::start(&config);
    let socket = d.path("s.sock");
    let first = wait_for(10 * SEC, || {
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(&socket).ok()?;
        s.write_all(b"GET /v1/status HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").ok()?;
        let mut reply = String::new();
        s.read_to_string(&mut reply).ok()?;
        serde_json::from_str::<serde_json::Value>(reply.split("\r\n\r\n").nth(1)?).ok()
    })
    .expect("the daemon answers");
    assert_eq!(first["services"].as_array().map(Vec::len), Some(20), "{first}");
}

#[test]
fn a_logs_request_reaching_before_the_epoch_is_a_bad_request_and_harms_nobody() {
    // regression: `since_s=<huge>` panicked the connection task
    let d = Daemon::start(&two_services());
    d.wait_state("api", "healthy", 10 * SEC);
    let socket = d.path("s.sock");
    for path in [
        "/v1/logs/api?since_s=18446744073709551615",
        "/v1/logs/api?since_s=99999999999",
        "/v1/logs/api?tail=many",
    ] {
        assert_eq!(raw_get(&socket, path), Some(400), "{path}");
    }
    assert_eq!(raw_get(&socket, "/v1/logs/api?since_s=60"), Some(200));
    assert_eq!(raw_get(&socket, "/v1/status"), Some(200));
    assert!(alive(d.pid));
}

#[test]
fn accept_failures_back_off_and_are_logged_once() {
    // regression: an accept error (EMFILE) made the control thread spin
    let d = Daemon::start(&two_services());
    d.wait_state("api", "healthy", 10 * SEC);
    let socket = d.path("s.sock");
    let open_fds = std::fs::read_dir(format!("/proc/{}/fd", d.pid)).unwrap().count();
    // the soft limit only: raising a hard limit again needs CAP_SYS_RESOURCE
    let soft = |n: usize| {
        let set =
            Command::new("prlimit").args(["--pid", &d.pid.to_string(), &format!("--nofile={n}:")]).status();
        assert!(set.unwrap().success());
    };
    soft(open_fds + 3);
    // held open: the daemon runs out of descriptors and its accepts fail
    let held: Vec<_> =
        (0..12).filter_map(|_| std::os::unix::net::UnixStream::connect(&socket).ok()).collect();
    let failing = wait_for(10 * SEC, || d.log_tail().contains("cannot accept connections").then_some(()));
    assert!(failing.is_some(), "{}", d.log_tail());
    // a spinning loop makes thousands of failed accepts a millisecond
    soft(1024);
    drop(held);
    let recovered = wait_for(10 * SEC, || {
        let log = std::fs::read_to_string(d.path("supervisor.log")).unwrap_or_default();
        log.lines().find(|l| l.contains("accepting connections again")).map(str::to_owned)
    })
    .expect("the control socket recovers");
    let v: serde_json::Value = serde_json::from_str(&recovered).unwrap();
    let failures = v["fields"]["failures"].as_u64().unwrap();
    assert!((1..100).contains(&failures), "backed off: {failures} failed accepts");
    let log = std::fs::read_to_string(d.path("supervisor.log")).unwrap();
    assert_eq!(log.matches("cannot accept connections").count(), 1, "logged once");
    assert_eq!(raw_get(&socket, "/v1/status"), Some(200));
}

#[test]
fn request_bodies_are_bounded_in_size_and_in_time() {
    let d = Daemon::start(&two_services());
    d.wait_state("db", "healthy", 10 * SEC);
    let socket = d.path("s.sock");
    let mut huge = b"POST /v1/reload HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n".to_vec();
    huge.extend(std::iter::repeat_n(b'x', 100_000));
    assert!(raw(&socket, &huge).starts_with("HTTP/1.1 413"), "an oversized body is refused");
    let trickle = b"POST /v1/reload HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{\"rel";
    assert!(raw(&socket, trickle).starts_with("HTTP/1.1 408"), "a body that never completes times out");
    // neither disturbed anything: no reload happened, the services kept their runs
    assert!(!d.log_tail().contains("reloaded"), "{}", d.log_tail());
    assert_eq!(d.wait_state("db", "healthy", SEC).restarts, 0);
}

#[test]
fn a_stale_socket_is_replaced_and_a_live_one_refuses_a_second_daemon() {
    let d = Daemon::start(&two_services());
    d.wait_state("db", "healthy", 10 * SEC);
    // a second supervisor on the same socket: refused, and the first keeps running
    let second = Command::new(BIN).args(["run", "--config"]).arg(d.path("services.toml")).output().unwrap();
    assert_eq!(second.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&second.stderr).contains("another titan-supervisor is running"));
    assert!(alive(d.pid));
    drop(d);

    let stale_dir = tempfile::tempdir().unwrap();
    let stale = stale_dir.path().join("s.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap()); // the file stays, nobody listens
    let d = Daemon::start_with_header(&two_services(), &format!("socket = \"{}\"\n", stale.display()));
    d.wait_state("db", "healthy", 10 * SEC);
    let out = Command::new(BIN).args(["status", "--socket"]).arg(&stale).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
}

/// `run` on a config in a fresh dir whose socket is `s.sock` there, prepared by `prepare`.
fn boot_with_socket(prepare: impl FnOnce(&std::path::Path), extra: &str) -> (tempfile::TempDir, Output) {
    let dir = tempfile::tempdir().unwrap();
    prepare(&dir.path().join("s.sock"));
    let config = format!(
        "[supervisor]\nsocket = \"s.sock\"\nlog_dir = \"logs\"\nstate_dir = \"state\"\n{extra}\n[services.a]\ncommand = [\"sleep\", \"1000\"]\n"
    );
    let path = common::write(dir.path(), "services.toml", &config);
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = common::wait_or_kill(&mut child, 10 * SEC, "titan-supervisor run");
    let mut stderr = Vec::new();
    std::io::Read::read_to_end(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (dir, Output { status, stdout: Vec::new(), stderr })
}

#[test]
fn a_regular_file_at_the_socket_path_is_refused_and_kept() {
    // regression: a regular file at the socket path was silently deleted
    let (dir, out) = boot_with_socket(|p| std::fs::write(p, "precious").unwrap(), "");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("s.sock exists and is not a socket (it is a regular file)"), "{err}");
    assert_eq!(std::fs::read_to_string(dir.path().join("s.sock")).unwrap(), "precious");
}

#[test]
fn a_foreign_listener_on_the_socket_path_is_named_as_such() {
    // regression: any listener was reported as "another titan-supervisor is running"
    let mut foreign = None;
    let (dir, out) = boot_with_socket(
        |p| {
            let listener = std::os::unix::net::UnixListener::bind(p).unwrap();
            // answers every connection with something that is not titan-supervisor
            foreign = Some(std::thread::spawn(move || {
                for stream in listener.incoming().take(1) {
                    let _ = std::io::Write::write_all(&mut stream.unwrap(), b"220 smtp ready\r\n");
                }
            }));
        },
        "",
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("s.sock is in use by another program"), "{err}");
    assert!(dir.path().join("s.sock").exists(), "not ours to remove");
    let _ = foreign.map(std::thread::JoinHandle::join);
}

#[test]
fn a_refused_boot_leaves_no_socket() {
    // regression: a boot refused after binding left a stale socket behind; here the log
    // directory cannot be made (a file is in its place)
    let (dir, out) = boot_with_socket(|p| std::fs::write(p.with_file_name("logs"), "a file").unwrap(), "");
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!dir.path().join("s.sock").exists());
}

#[test]
fn events_stream_every_state_change_as_json_lines() {
    let d = Daemon::start(&two_services());
    d.wait_state("api", "healthy", 10 * SEC);
    let out_path = d.path("events.out");
    let mut follower = Command::new(BIN)
        .args(["events", "--socket"])
        .arg(d.path("s.sock"))
        .stdout(std::fs::File::create(&out_path).unwrap())
        .spawn()
        .unwrap();
    // restart until the follower (connecting meanwhile) has seen a whole restart
    let lines = wait_for(10 * SEC, || {
        assert_eq!(cli(&d, &["restart", "api"]).status.code(), Some(0));
        let text = std::fs::read_to_string(&out_path).unwrap_or_default();
        // from the first whole restart on (the follower may have joined in the middle of one)
        let at = text.lines().position(|l| l.contains("\"from\":\"healthy\",\"to\":\"stopping\""))?;
        let whole: Vec<&str> = text.lines().skip(at).collect();
        (whole.len() >= 3).then(|| whole.join("\n"))
    });
    let _ = follower.kill();
    let _ = follower.wait();
    let text = lines.expect("three events");
    let events: Vec<serde_json::Value> =
        text.lines().take(3).map(|l| serde_json::from_str(l).unwrap()).collect();
    let path: Vec<(&str, &str)> =
        events.iter().map(|e| (e["from"].as_str().unwrap(), e["to"].as_str().unwrap())).collect();
    assert_eq!(path, [("healthy", "stopping"), ("stopping", "starting"), ("starting", "healthy")]);
    assert!(events.iter().all(|e| e["service"] == "api"));
    assert_eq!(events[0]["reason_kind"], "manual");
    assert!(events[2]["restarts"].as_u64() >= Some(1));
}

#[test]
fn logs_go_through_the_daemon_and_straight_to_the_files_without_it() {
    let mut d = Daemon::start(&two_services());
    d.wait_state("api", "healthy", 10 * SEC);
    let cfg = d.path("services.toml");
    let logs = |n: &str| {
        Command::new(BIN).args(["logs", "api", "-n", n, "--config", cfg.to_str().unwrap()]).output().unwrap()
    };
    let via_daemon = logs("2");
    assert_eq!(via_daemon.status.code(), Some(0));
    let text = String::from_utf8_lossy(&via_daemon.stdout).into_owned();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.lines().last().is_some_and(|l| l.ends_with(" out ready")), "{text}");
    let unknown =
        Command::new(BIN).args(["logs", "nope", "--socket"]).arg(d.path("s.sock")).output().unwrap();
    assert_eq!(unknown.status.code(), Some(2));
    assert_eq!(d.stop(10 * SEC), Some(0));
    // no daemon: the same lines from the files (the stop added one more)
    let from_files = logs("3");
    let after = String::from_utf8_lossy(&from_files.stdout).into_owned();
    assert_eq!(from_files.status.code(), Some(0));
    assert!(after.lines().any(|l| l.ends_with(" out ready")), "{after}");
}

/// `GET path` over a raw connection to the socket; the status code.
fn raw_get(socket: &std::path::Path, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).ok()?;
    s.set_read_timeout(Some(10 * SEC)).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").ok()?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).ok()?;
    reply.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn many_clients_and_stalled_clients_neither_block_the_api_nor_supervision() {
    let config = format!(
        "{}\n[services.crasher]\n{}\nmax_restarts = 5\nbackoff = {{ initial = \"20ms\", max = \"40ms\" }}\n",
        two_services(),
        svc("crasher", "\"--exit-after\", \"30ms\", \"--exit-code\", \"1\"")
    );
    let d = Daemon::start(&config);
    d.wait_state("api", "healthy", 10 * SEC);
    let socket = d.path("s.sock");
    // 20 clients that connect and send nothing, or half a request head, and stall
    let stalled: Vec<std::os::unix::net::UnixStream> = (0..20)
        .map(|i| {
            let mut s = std::os::unix::net::UnixStream::connect(&socket).unwrap();
            if i % 2 == 0 {
                std::io::Write::write_all(&mut s, b"GET /v1/sta").unwrap();
            }
            s
        })
        .collect();
    // 200 clients at once, while the crasher crash-loops
    let answers: Vec<Option<u16>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..200).map(|_| scope.spawn(|| raw_get(&socket, "/v1/status"))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(answers.iter().all(|a| *a == Some(200)), "{answers:?}");
    let failed = d.wait_state("crasher", "failed", 20 * SEC);
    assert!(failed.reason.starts_with("crash loop: 5 restarts"), "{failed:?}");
    // the stalled clients are dropped once their request head is overdue
    for mut s in stalled {
        s.set_read_timeout(Some(15 * SEC)).unwrap();
        let mut buf = [0u8; 256];
        let n = std::io::Read::read(&mut s, &mut buf).unwrap_or(0);
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(n == 0 || text.starts_with("HTTP/1.1 408"), "a stalled client is closed: {text}");
    }
    assert_eq!(raw_get(&socket, "/v1/status"), Some(200));
}

/// Parses an OpenMetrics exposition with the official Python parser (prometheus_client) and
/// returns `name{labels} value` for every sample.
fn parse_metrics(text: &str) -> Vec<String> {
    let script = "import sys\nfrom prometheus_client.openmetrics.parser import text_string_to_metric_families as p\n\
                  for f in p(sys.stdin.read()):\n    for s in f.samples:\n        \
                  print(s.name + str(sorted(s.labels.items())) + ' ' + repr(s.value))\n";
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the exposition does not parse: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

fn scrape(socket: &std::path::Path) -> String {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let body = reply.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    // chunked or not: keep only the exposition lines
    body.lines().filter(|l| l.starts_with('#') || l.starts_with("titan_")).map(|l| format!("{l}\n")).collect()
}

/// The value of the sample printed as `name[labels]` by `parse_metrics`.
fn value(samples: &[String], sample: &str) -> Option<f64> {
    samples.iter().find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_parse_and_their_counters_move_when_a_service_restarts() {
    let d = Daemon::start(&two_services());
    d.wait_state("api", "healthy", 10 * SEC);
    let before = parse_metrics(&scrape(&d.path("s.sock")));
    assert_eq!(value(&before, "titan_service_up[('service', 'api')]"), Some(1.0), "{before:#?}");
    assert_eq!(value(&before, "titan_service_state[('service', 'api'), ('state', 'healthy')]"), Some(1.0));
    assert_eq!(value(&before, "titan_supervisor_build_info[('version', '0.1.0')]"), Some(1.0));
    assert!(value(&before, "titan_health_probe_duration_seconds_count[('service', 'db')]") >= Some(1.0));
    assert!(value(&before, "titan_supervisor_resident_memory_bytes[]") > Some(0.0));
    let crashes = "titan_service_restarts_total[('reason', 'crash'), ('service', 'api')]";
    assert_eq!(value(&before, crashes), None);
    let pid = d.service_pid("api").unwrap();
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    d.wait_state_n("api", "healthy", 2, 10 * SEC);
    let after = parse_metrics(&scrape(&d.path("s.sock")));
    assert_eq!(value(&after, crashes), Some(1.0), "{after:#?}");
    assert_eq!(value(&after, "titan_service_last_exit_code[('service', 'api')]"), Some(137.0));
    let lines = "titan_log_lines_total[('service', 'api')]";
    assert!(value(&after, lines) > value(&before, lines), "the log counters move too");
}

fn status_of(d: &Daemon) -> Vec<(String, String, Option<i64>)> {
    let out = cli(d, &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["services"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    (
                        s["name"].as_str().unwrap_or("").to_owned(),
                        s["state"].as_str().unwrap_or("").to_owned(),
                        s["pid"].as_i64(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn reload_applies_only_the_difference_and_an_invalid_config_changes_nothing() {
    let ready = "health = { log = \"^ready$\" }";
    let body = |extra: &str| {
        format!(
            "[services.db]\n{}\n{ready}\n\n[services.keep]\n{}\n{ready}\n\n{extra}",
            svc("db", ""),
            svc("keep", "")
        )
    };
    let v1 = body(&format!(
        "[services.api]\ndepends_on = [\"db\"]\n{}\n{ready}\n\n[services.old]\n{}\n{ready}\n",
        svc("api", ""),
        svc("old", "")
    ));
    let d = Daemon::start(&v1);
    for name in ["db", "keep", "api", "old"] {
        d.wait_state(name, "healthy", 10 * SEC);
    }
    let pid = |n: &str| d.service_pid(n).unwrap();
    let (db, keep, api) = (pid("db"), pid("keep"), pid("api"));

    let config = d.path("services.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let header = &text[..text.find("[services.").unwrap()];
    let v2 = body(&format!(
        "[services.api]\ndepends_on = [\"db\"]\n{}\n{ready}\nenv = {{ MODE = \"canary\" }}\n\n[services.new]\n{}\n{ready}\n",
        svc("api", ""),
        svc("new", "")
    ));
    std::fs::write(&config, format!("{header}{v2}").replace("{dir}", &d.dir.path().display().to_string()))
        .unwrap();
    let out = cli(&d, &["reload"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "reloaded: added [new], removed [old], changed [api], 2 unchanged"
    );
    d.wait_state("new", "healthy", 10 * SEC);
    d.wait_state_n("api", "healthy", 2, 10 * SEC);
    d.wait_state("old", "stopped", 10 * SEC);
    assert_ne!(pid("api"), api, "the changed service runs again");
    assert_eq!((pid("db"), pid("keep")), (db, keep), "untouched services were not restarted");
    let names: Vec<String> = status_of(&d).into_iter().map(|s| s.0).collect();
    assert!(!names.contains(&"old".to_owned()) && names.contains(&"new".to_owned()), "{names:?}");

    // an invalid config: refused with its problems, nothing changes
    let before = status_of(&d);
    std::fs::write(&config, format!("{header}[services.db]\ncommand = [\"x\"]\nfrobnicate = 1\n")).unwrap();
    let out = cli(&d, &["reload"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("services.db.frobnicate: unknown key \"frobnicate\""), "{err}");
    assert_eq!(status_of(&d), before);
}

#[test]
fn sighup_reloads_like_the_reload_command() {
    let d = Daemon::start(&format!("[services.one]\n{}\nhealth = {{ log = \"^ready$\" }}\n", svc("one", "")));
    d.wait_state("one", "healthy", 10 * SEC);
    let config = d.path("services.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text += &format!("\n[services.two]\n{}\nhealth = {{ log = \"^ready$\" }}\n", svc("two", ""))
        .replace("{dir}", &d.dir.path().display().to_string());
    std::fs::write(&config, text).unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    d.wait_state("two", "healthy", 10 * SEC);
    assert_eq!(d.states("one"), ["starting", "healthy"].map(String::from), "one untouched");
}

#[test]
fn an_upgrade_whose_binary_is_gone_or_broken_stops_nothing() {
    // regression: it answered 202, stopped every native service, failed to exec and exited
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("titan-supervisor");
    // written by another process: a write descriptor of ours, inherited by a child a test beside
    // this one forks, would make the binary busy (ETXTBSY) until that child execs
    let made = |script: &str| assert!(Command::new("sh").args(["-c", script]).status().unwrap().success());
    made(&format!("cp {BIN} {}", binary.display()));
    let config = format!(
        "[supervisor]\nsocket = \"s.sock\"\nlog_dir = \"logs\"\nstate_dir = \"state\"\n\n[services.web]\n{}\nhealth = {{ log = \"^ready$\" }}\n",
        svc("web", "")
    )
    .replace("{dir}", &dir.path().display().to_string());
    let path = common::write(dir.path(), "services.toml", &config);
    std::fs::create_dir_all(dir.path().join("pids")).unwrap();
    let log = std::fs::File::create(dir.path().join("supervisor.log")).unwrap();
    let child = Command::new(&binary)
        .args(["run", "--log-format", "json", "--config"])
        .arg(&path)
        .stderr(log)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let d = Daemon { dir, child: Some(child), pid };
    d.wait_state("web", "healthy", 10 * SEC);
    let web = d.service_pid("web").unwrap();
    std::fs::remove_file(&binary).unwrap();
    let gone = cli(&d, &["upgrade"]);
    assert_eq!(gone.status.code(), Some(2), "{gone:?}");
    let err = String::from_utf8_lossy(&gone.stderr);
    assert!(err.contains("upgrade refused, nothing stopped") && err.contains("cannot be run"), "{err}");
    // a binary in its place that does not run as titan-supervisor does
    made(&format!("printf '#!/bin/sh\\nexit 1\\n' > {0} && chmod 755 {0}", binary.display()));
    let broken = cli(&d, &["upgrade"]);
    assert_eq!(broken.status.code(), Some(2), "{broken:?}");
    assert!(
        String::from_utf8_lossy(&broken.stderr).contains("`--version` ended with exit code 1"),
        "{broken:?}"
    );
    assert!(alive(d.pid) && alive(web), "nothing stopped");
    assert_eq!(d.service_pid("web"), Some(web));
    assert_eq!(d.states("web"), ["starting", "healthy"].map(String::from));
}

#[test]
fn an_upgrade_keeps_native_services_running_and_their_output_whole() {
    // an upgrade cost every native service a restart; now the new image takes them up, as
    // systemd's daemon-reexec keeps its units
    let ticker = svc("ticker", "\"--lines\", \"100000\", \"--line-bytes\", \"40\", \"--rate\", \"300\"");
    let capped = svc("capped", "");
    let config = format!(
        "[services.ticker]\n{ticker}\nhealth = {{ log = \"^ready$\" }}\n\n[services.capped]\n{capped}\nmemory = \"64MiB\"\nhealth = {{ log = \"^ready$\" }}\n"
    );
    let d = Daemon::start(&config);
    d.wait_state("ticker", "healthy", 10 * SEC);
    d.wait_state("capped", "healthy", 10 * SEC);
    let (ticker, capped) = (d.service_pid("ticker").unwrap(), d.service_pid("capped").unwrap());
    let upgrade = cli(&d, &["upgrade"]);
    assert_eq!(upgrade.status.code(), Some(0), "{upgrade:?}");
    assert!(d.log_tail().contains("taken up across the upgrade"), "{}", d.log_tail());
    for (name, pid) in [("ticker", ticker), ("capped", capped)] {
        let s = d.status_of(name);
        assert_eq!(
            (s["state"].as_str(), s["pid"].as_i64(), s["restarts"].as_u64()),
            (Some("healthy"), Some(i64::from(pid)), Some(0)),
            "{name}: {s}"
        );
        assert!(alive(pid), "{name} never stopped");
    }
    assert_eq!(d.states("ticker"), ["starting", "healthy"].map(String::from), "no stop, no start");
    // every line once, in order, across the handover: what the old log thread had not read was
    // left in the pipe for the new one
    let numbers = |text: &str| -> Vec<u64> {
        text.lines()
            .filter(|l| l.contains(" out ticker out "))
            .filter_map(|l| l.split_whitespace().nth(4)?.parse().ok())
            .collect()
    };
    let later = wait_for(20 * SEC, || {
        let seq = numbers(&d.service_log("ticker"));
        (seq.len() > 600).then_some(seq)
    })
    .expect("the ticker's lines go on reaching its log");
    assert!(later.iter().copied().eq(1..=later.len() as u64), "a gap or a repeat: {later:?}");
    // and the taken-up run is supervised: a crash is a restart
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(ticker), nix::sys::signal::Signal::SIGKILL);
    let restarted = wait_for(10 * SEC, || {
        let s = d.status_of("ticker");
        (s["state"] == "healthy" && s["pid"].as_i64() != Some(i64::from(ticker))).then_some(s)
    });
    assert!(restarted.is_some_and(|s| s["restarts"] == 1), "{}", d.log_tail());
}

#[test]
fn an_upgrade_during_a_startup_gate_lets_the_gate_finish_in_the_new_image() {
    // a service in its startup gate was stopped and started again by an upgrade; now the new
    // image goes on waiting for its READY=1 (at the address it was given) or its log line
    let slow = |name: &str, check: &str| {
        format!(
            "[services.{name}]\n{}\nhealth = {{ {check} }}\nstartup_timeout = \"30s\"\n",
            svc(name, "\"--notify\", \"--ready-after\", \"2s\"")
        )
    };
    let d = Daemon::start(&format!(
        "{}\n{}",
        slow("notified", "notify = true"),
        slow("logged", "log = \"^ready$\"")
    ));
    d.wait_state("notified", "starting", 10 * SEC);
    d.wait_state("logged", "starting", 10 * SEC);
    let pid_of = |name: &str| wait_for(5 * SEC, || d.service_pid(name)).expect("its pid file");
    let (notified, logged) = (pid_of("notified"), pid_of("logged"));
    let upgrade = cli(&d, &["upgrade"]);
    assert_eq!(upgrade.status.code(), Some(0), "{upgrade:?}");
    let log = std::fs::read_to_string(d.path("supervisor.log")).unwrap();
    let taken = log.lines().filter(|l| l.contains("taken up across the upgrade")).count();
    let before_ready =
        log.find("taken up across the upgrade") < log.find("\"to\":\"healthy\"").or(Some(usize::MAX));
    assert!(taken == 2 && before_ready, "both taken up while in their gates:\n{}", d.log_tail());
    for (name, pid) in [("notified", notified), ("logged", logged)] {
        d.wait_state(name, "healthy", 30 * SEC);
        assert_eq!(d.states(name), ["starting", "healthy"].map(String::from), "{name}: never stopped");
        let s = d.status_of(name);
        assert_eq!(
            (s["pid"].as_i64(), s["restarts"].as_u64()),
            (Some(i64::from(pid)), Some(0)),
            "{name}: {s}"
        );
    }
}

#[test]
fn a_refused_stream_prints_the_daemons_reason() {
    // regression: `events`, `logs -f` and `switch` stream their answer; one refused (403) was
    // printed as "titan-supervisor:  (403 Forbidden)", the daemon's reason dropped
    let d = Daemon::start_with_header(&two_services(), "socket_mode = \"0666\"\n");
    d.wait_state("db", "healthy", 10 * SEC);
    for args in [&["events"][..], &["switch", "some-release"], &["logs", "db", "-f"]] {
        let out = Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--", BIN])
            .args(args)
            .arg("--socket")
            .arg(d.path("s.sock"))
            .output()
            .expect("setpriv (util-linux)");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("needs read access; uid 65534 has no access")
                || stderr.contains("needs deploy access; uid 65534 has no access"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn status_and_releases_into_a_closed_pipe_end_quietly_without_a_panic() {
    // `titan-supervisor status --json | head -c 300` panicked on EPIPE ("failed printing to
    // stdout"): the reader had gone before the answer was printed
    let d = Daemon::start(&two_services());
    d.wait_state("api", "healthy", 10 * SEC);
    for args in [&["status", "--json"][..], &["status"], &["releases"]] {
        let mut child = Command::new(BIN)
            .args(args)
            .arg("--socket")
            .arg(d.path("s.sock"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run the CLI");
        drop(child.stdout.take()); // the reader is gone before anything is written
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        use std::os::unix::process::ExitStatusExt;
        let quiet = out.status.signal() == Some(nix::libc::SIGPIPE) || out.status.success();
        assert!(quiet, "{args:?}: {:?} {stderr}", out.status);
    }
}
