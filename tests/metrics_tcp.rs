//! `[supervisor] metrics_listen` end to end (issue 15): `/metrics` over TCP for Prometheus, and
//! nothing else there: no other path, no other method, no control; slow clients cut off as on
//! the control socket; bound at boot or the start refused; scraped by a real Prometheus and
//! checked by promtool.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::daemon::{Daemon, port, svc, wait_for};
use common::host::{Host, release, services};

const SEC: Duration = Duration::from_secs(1);

/// Service `a`, gated by a TCP probe (so the probe histogram is in the exposition).
fn service_a() -> String {
    let p = port();
    format!(
        "[services.a]\n{}\nhealth = {{ tcp = \"127.0.0.1:{p}\", interval = \"100ms\" }}\n",
        svc("a", &format!("\"--listen\", \"127.0.0.1:{p}\""))
    )
}

/// The daemon with service `a` healthy and `metrics_listen` on a free port.
fn daemon_listening() -> (Daemon, u16) {
    let listen = port();
    let d = Daemon::start_with_header(&service_a(), &format!("metrics_listen = \"127.0.0.1:{listen}\""));
    d.wait_state("a", "healthy", 10 * SEC);
    (d, listen)
}

/// An answer read off a raw connection.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

/// Sends `head` (a request without its final blank line) and `body` over TCP to `port`;
/// what comes back before the server closes or 10 s pass.
fn request(port: u16, head: &str, body: &str) -> Answer {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to metrics_listen");
    s.set_read_timeout(Some(10 * SEC)).unwrap();
    write!(s, "{head}\r\nHost: t\r\nConnection: close\r\n\r\n{body}").unwrap();
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply).into_owned();
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Answer { status, head: head.to_ascii_lowercase(), body: body.to_owned() }
}

fn get(port: u16, path: &str) -> Answer {
    request(port, &format!("GET {path} HTTP/1.1"), "")
}

/// `promtool check metrics` on `body`: its exit code and everything it printed.
fn promtool(body: &str) -> (Option<i32>, String) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), body).unwrap();
    let out = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(file.path()).unwrap())
        .output()
        .expect("promtool (Debian package prometheus; scripts/test.sh installs it)");
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code(), printed)
}

/// The TCP ports `pid` itself listens on (from its descriptors and /proc/net/tcp{,6}).
fn tcp_listeners(pid: i32) -> Vec<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|link| {
            let link = link.to_string_lossy().into_owned();
            Some(link.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let table = ["/proc/net/tcp", "/proc/net/tcp6"].map(|t| std::fs::read_to_string(t).unwrap_or_default());
    let mut ports: Vec<u16> = table
        .iter()
        .flat_map(|t| t.lines().skip(1))
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() > 9 && f[3] == "0A" && inodes.contains(&f[9].to_owned()))
        .filter_map(|f| u16::from_str_radix(f[1].rsplit(':').next()?, 16).ok())
        .collect();
    ports.sort_unstable();
    ports
}

#[test]
fn get_metrics_over_tcp_answers_the_service_metrics_and_promtool_finds_nothing_wrong() {
    let (d, listen) = daemon_listening();
    let a = wait_for(10 * SEC, || {
        let a = get(listen, "/metrics");
        a.body.contains("titan_health_probe_duration_seconds_count{service=\"a\"}").then_some(a)
    })
    .expect("the exposition has a's probes");
    assert_eq!(a.status, 200, "{}", a.head);
    assert!(a.head.contains("content-type: text/plain; version=0.0.4; charset=utf-8"), "{}", a.head);
    assert!(a.body.contains("titan_service_up{service=\"a\"} 1\n"), "{}", a.body);
    assert!(a.body.contains("titan_service_state{service=\"a\",state=\"healthy\"} 1\n"));
    assert!(a.body.contains("# TYPE titan_log_lines_total counter\n"), "{}", a.body);
    assert!(!a.body.contains("# EOF"), "{}", a.body);
    let (code, printed) = promtool(&a.body);
    assert_eq!((code, printed.as_str()), (Some(0), ""), "promtool on:\n{}", a.body);
    // a scraper that asks for OpenMetrics gets it, as on the control socket
    let accept = "Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
    let om = request(listen, &format!("GET /metrics HTTP/1.1\r\n{accept}"), "");
    assert!(om.head.contains("content-type: application/openmetrics-text; version=1.0.0"), "{}", om.head);
    assert!(om.body.contains("titan_service_up{service=\"a\"} 1\n") && om.body.ends_with("# EOF\n"));
    assert_eq!(tcp_listeners(d.pid), [listen], "the daemon listens on metrics_listen alone");
}

#[test]
fn only_get_and_head_of_metrics_are_served_and_nothing_controls_the_daemon() {
    let (d, listen) = daemon_listening();
    let pid = d.service_pid("a");
    for path in ["/", "/metrics/", "/v1/status", "/v1/services/a", "/v1/releases", "/v1/events"] {
        assert_eq!(get(listen, path).status, 404, "GET {path}");
    }
    for path in ["/v1/services/a/stop", "/v1/services/a/restart", "/v1/reload", "/v1/upgrade"] {
        assert_eq!(request(listen, &format!("POST {path} HTTP/1.1"), "").status, 404, "POST {path}");
    }
    for method in ["POST", "PUT", "DELETE"] {
        let a = request(listen, &format!("{method} /metrics HTTP/1.1"), "");
        assert_eq!(a.status, 405, "{method} /metrics");
        assert!(a.head.contains("allow: get, head"), "{}", a.head);
    }
    let head = request(listen, "HEAD /metrics HTTP/1.1", "");
    assert_eq!((head.status, head.body.as_str()), (200, ""));
    let with_body = request(listen, "GET /metrics HTTP/1.1\r\nContent-Length: 5", "hello");
    assert_eq!(with_body.status, 413, "no request body is taken");
    // nothing of that reached the actor: a kept its run, no reload, no upgrade, no stop
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(d.service_pid("a"), pid);
    assert_eq!(d.status_of("a")["state"], "healthy");
    assert_eq!(d.states("a"), ["starting", "healthy"], "{}", d.log_tail());
    assert!(!d.log_tail().contains("reload"), "{}", d.log_tail());
}

/// A client that connects and stalls: silent, or with half a request head.
fn stall(port: u16, i: usize) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    if i % 2 == 0 {
        s.write_all(b"GET /metr").unwrap();
    }
    s
}

#[test]
fn stalled_tcp_clients_are_cut_off_and_block_neither_scrapes_nor_the_control_socket() {
    let (d, listen) = daemon_listening();
    let mut stalled: Vec<TcpStream> = (0..8).map(|i| stall(listen, i)).collect();
    assert_eq!(get(listen, "/metrics").status, 200, "stalled clients block no scrape");
    // beyond the listener's budget, a client is refused at once, and the control socket,
    // which has a budget of its own, still answers
    stalled.extend((8..24).map(|i| stall(listen, i)));
    assert_eq!(get(listen, "/metrics").status, 503, "refused at once, not left hanging");
    let status = d.cli(&["status", "--json"]);
    assert_eq!(status.status.code(), Some(0), "{}", String::from_utf8_lossy(&status.stderr));
    // each stalled client is dropped once its request head is overdue (5 s)
    for mut s in stalled {
        s.set_read_timeout(Some(15 * SEC)).unwrap();
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).unwrap_or(0);
        let text = String::from_utf8_lossy(&buf[..n]);
        let closed = n == 0 || text.starts_with("HTTP/1.1 408") || text.starts_with("HTTP/1.1 503");
        assert!(closed, "a stalled client is closed: {text}");
    }
    let again = wait_for(10 * SEC, || (get(listen, "/metrics").status == 200).then_some(()));
    assert!(again.is_some(), "scrapes are served again once the stalled clients are gone");
}

#[test]
fn a_port_in_use_refuses_the_start_with_exit_2_naming_the_key_before_any_service_starts() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let mut d = Daemon::start_with_header(&service_a(), &format!("metrics_listen = \"{addr}\""));
    assert_eq!(d.wait_exit(10 * SEC), Some(2), "{}", d.log_tail());
    let log = std::fs::read_to_string(d.path("supervisor.log")).unwrap();
    assert!(log.contains(&format!("[supervisor] metrics_listen = \"{addr}\": cannot listen")), "{log}");
    assert!(log.contains("in use"), "{log}");
    assert!(d.start_log().is_empty(), "no service started: {:?}", d.start_log());
    assert!(!d.path("s.sock").exists(), "the control socket is removed again");
}

#[test]
fn a_bad_metrics_listen_is_refused_at_its_place() {
    let mut d = Daemon::start_with_header(&service_a(), "metrics_listen = \"127.0.0.1:0\"");
    assert_eq!(d.wait_exit(10 * SEC), Some(2), "{}", d.log_tail());
    let log = std::fs::read_to_string(d.path("supervisor.log")).unwrap();
    let at = log.lines().find(|l| l.contains("supervisor.metrics_listen: invalid address \"127.0.0.1:0\""));
    let at = at.unwrap_or_else(|| panic!("{log}"));
    assert!(at.contains("services.toml:6:18: "), "{at}");
}

#[test]
fn without_metrics_listen_the_daemon_listens_on_no_tcp_port() {
    let d = Daemon::start(&service_a());
    d.wait_state("a", "healthy", 10 * SEC);
    assert_eq!(tcp_listeners(d.pid), Vec::<u16>::new());
}

#[test]
fn an_upgrade_closes_metrics_listen_before_the_exec_and_the_new_image_binds_it_again() {
    let (d, listen) = daemon_listening();
    let upgrade = d.cli(&["upgrade"]);
    assert_eq!(upgrade.status.code(), Some(0), "{upgrade:?}");
    let starts = || {
        let log = std::fs::read_to_string(d.path("supervisor.log")).unwrap_or_default();
        log.matches("titan-supervisor starting").count()
    };
    assert!(wait_for(20 * SEC, || (starts() == 2).then_some(())).is_some(), "{}", d.log_tail());
    assert!(common::daemon::alive(d.pid), "the new image started: {}", d.log_tail());
    let a = get(listen, "/metrics");
    assert!(a.body.contains("titan_service_up{service=\"a\"} 1\n"), "{}", d.log_tail());
}

#[test]
fn a_switch_cannot_change_metrics_listen() {
    let (listen, other) = (port(), port());
    let ports = (port(), port());
    let extra = format!("metrics_listen = \"127.0.0.1:{listen}\"\n");
    let h = Host::start_with(|dir| services(dir, ports, "h1", ""), &[], &extra);
    h.d.healthy_pid("b", None, 30 * SEC);
    let id = "20261202T000300Z-ddddddd";
    let at = release(h.dir(), id, &services(h.dir(), ports, "h2", ""));
    let text = std::fs::read_to_string(at.join("services.toml")).unwrap();
    std::fs::write(at.join("services.toml"), text.replace(&format!(":{listen}\""), &format!(":{other}\"")))
        .unwrap();

    let (code, out) = h.deploy(&["switch", id]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("metrics_listen cannot change in a switch"), "{out}");
    assert_eq!(h.current(), "20261202T000000Z-aaaaaaa");
    assert_eq!(get(listen, "/metrics").status, 200);
}

/// A Prometheus server of its own (Debian's `prometheus`), scraping `target` every second;
/// killed when dropped.
struct Prometheus {
    child: Child,
    web: u16,
    dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: u16) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: titan\n    \
             static_configs:\n      - targets: [\"127.0.0.1:{target}\"]\n"
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let web = port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{web}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus (Debian package prometheus; scripts/test.sh installs it)");
        Prometheus { child, web, dir }
    }

    /// `GET path` of Prometheus's HTTP API: the JSON answer's `data` (null until it answers).
    fn api(&self, path: &str) -> serde_json::Value {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.web)) else { return serde_json::Value::Null };
        let _ = s.set_read_timeout(Some(5 * SEC));
        // HTTP/1.0: the answer comes whole, not chunked
        if write!(s, "GET {path} HTTP/1.0\r\nHost: t\r\n\r\n").is_err() {
            return serde_json::Value::Null;
        }
        let mut reply = String::new();
        let _ = s.read_to_string(&mut reply);
        let body = reply.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        v["data"].clone()
    }

    /// The results of the instant query `query`.
    fn query(&self, query: &str) -> Vec<serde_json::Value> {
        let escaped: String = query
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let data = self.api(&format!("/api/v1/query?query={escaped}"));
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// The value of the first result of `query` once it is there, within `limit`.
    fn value(&self, query: &str, limit: Duration) -> Option<String> {
        wait_for(limit, || {
            std::thread::sleep(Duration::from_millis(200)); // a query a few times a second
            let results = self.query(query);
            results.first().and_then(|r| r["value"][1].as_str().map(str::to_owned))
        })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_real_prometheus_scrapes_metrics_listen_and_sees_the_services() {
    let (_d, listen) = daemon_listening();
    let prometheus = Prometheus::start(listen);
    let up = prometheus.value("up{job=\"titan\"} == 1", 60 * SEC);
    assert_eq!(up.as_deref(), Some("1"), "the target is up within 60 s\n{}", prometheus.log());
    let service = prometheus.value("titan_service_up{service=\"a\"}", 30 * SEC);
    assert_eq!(service.as_deref(), Some("1"), "{}", prometheus.log());
    let probes = prometheus.value("titan_health_probe_duration_seconds_count{service=\"a\"}", 30 * SEC);
    assert!(probes.is_some(), "histograms are ingested\n{}", prometheus.log());
    // the scrape itself went without a complaint
    let targets = prometheus.api("/api/v1/targets");
    let target = &targets["activeTargets"][0];
    assert_eq!(
        (target["health"].as_str(), target["lastError"].as_str()),
        (Some("up"), Some("")),
        "{targets}"
    );
}
