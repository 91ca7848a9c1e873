//! What the daemon tells systemd over `$NOTIFY_SOCKET` (sd_notify(3)), heard by a datagram
//! socket of the test's own standing in for systemd: READY=1 once the bring-up settled, STATUS
//! lines, RELOADING=1 with MONOTONIC_USEC then READY=1 around a reload, the steps of a switch,
//! EXTEND_TIMEOUT_USEC during a long bring-up, STOPPING=1, and WATCHDOG=1 pings that stop
//! when the actor is wedged (the debug builds' fault hook).

mod common;

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

use common::daemon::{Daemon, port, svc, wait_for};
use common::host::{Host, release, services};
use nix::sys::signal::Signal;

const SEC: Duration = Duration::from_secs(1);

/// systemd's end of the protocol: every datagram received, in order.
struct Manager {
    socket: UnixDatagram,
    /// `NOTIFY_SOCKET` for the daemon.
    addr: String,
    heard: Vec<String>,
    _dir: Option<tempfile::TempDir>,
}

impl Manager {
    /// A socket at a path in a temp dir.
    fn at_path() -> Manager {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        Manager { socket, addr: path.display().to_string(), heard: Vec::new(), _dir: Some(dir) }
    }

    /// A socket in the abstract namespace (`@name`), as systemd binds its own.
    fn abstract_name() -> Manager {
        let name = format!("titan-test-notify-{}-{}", std::process::id(), port());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract name");
        let socket = UnixDatagram::bind_addr(&addr).expect("bind the abstract notify socket");
        Manager { socket, addr: format!("@{name}"), heard: Vec::new(), _dir: None }
    }

    /// Reads datagrams until one satisfies `want` (its index in `heard`), failing after `limit`.
    fn wait(&mut self, limit: Duration, what: &str, want: impl Fn(&str) -> bool) -> usize {
        let from = self.heard.len();
        self.hear_until(limit, |heard| heard[from..].iter().position(|m| want(m)).map(|i| from + i))
            .unwrap_or_else(|| panic!("never heard {what} within {limit:?}; heard: {:#?}", self.heard))
    }

    /// Reads datagrams until `done` says so or `limit` passes.
    fn hear_until<T>(&mut self, limit: Duration, done: impl Fn(&[String]) -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(v) = done(&self.heard) {
                return Some(v);
            }
            let left = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())?;
            self.socket.set_read_timeout(Some(left)).expect("read timeout");
            let mut buf = [0u8; 4096];
            if let Ok(n) = self.socket.recv(&mut buf) {
                self.heard.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
    }

    /// Everything already queued, without waiting.
    fn drain(&mut self) {
        self.socket.set_nonblocking(true).expect("nonblocking");
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.socket.recv(&mut buf) {
            self.heard.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        self.socket.set_nonblocking(false).expect("blocking");
    }

    fn count(&self, message: &str) -> usize {
        self.heard.iter().filter(|m| m.lines().any(|l| l == message)).count()
    }
}

/// `key=` of a message, if it has one.
fn field<'m>(message: &'m str, key: &str) -> Option<&'m str> {
    message.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

fn has(message: &str, line: &str) -> bool {
    message.lines().any(|l| l == line)
}

/// Two native services, b after a, each ready by READY=1 to its own notify socket (not ours).
fn two_services() -> String {
    format!(
        "[services.a]\n{}\nhealth = {{ notify = true }}\n\n[services.b]\ndepends_on = [\"a\"]\n{}\nhealth = {{ notify = true }}\n",
        svc("a", "\"--notify\""),
        svc("b", "\"--notify\"")
    )
}

fn monotonic_usec() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("clock");
    u64::try_from(t.tv_sec()).unwrap() * 1_000_000 + u64::try_from(t.tv_nsec()).unwrap() / 1000
}

/// RELOADING=1 with a MONOTONIC_USEC taken while it happened, then READY=1.
fn expect_reload(m: &mut Manager, d: &Daemon, reload: impl FnOnce()) {
    let before = monotonic_usec();
    reload();
    let at = m.wait(10 * SEC, "RELOADING=1", |msg| has(msg, "RELOADING=1"));
    let stamp: u64 =
        field(&m.heard[at], "MONOTONIC_USEC").and_then(|v| v.parse().ok()).unwrap_or_else(|| {
            panic!("RELOADING=1 without MONOTONIC_USEC: {:?}", m.heard[at]);
        });
    assert!(stamp >= before && stamp <= monotonic_usec(), "MONOTONIC_USEC {stamp} is CLOCK_MONOTONIC");
    let ready = m.wait(10 * SEC, "READY=1 after the reload", |msg| has(msg, "READY=1"));
    assert!(ready > at, "{}", d.log_tail());
}

#[test]
fn systemd_hears_ready_once_settled_a_reload_begin_and_end_and_the_stop() {
    let mut m = Manager::at_path();
    let mut d = Daemon::start_with(&two_services(), &[("NOTIFY_SOCKET", &m.addr)], &[]);

    let ready = m.wait(30 * SEC, "READY=1", |msg| has(msg, "READY=1"));
    assert_eq!(m.count("READY=1"), 1, "one READY=1 for the bring-up: {:#?}", m.heard);
    d.wait_state("b", "healthy", 5 * SEC);
    assert_eq!(field(&m.heard[ready], "STATUS"), Some("2/2 healthy"), "{:#?}", m.heard);
    assert!(
        m.heard[..ready].iter().any(|msg| field(msg, "STATUS") == Some("1/2 healthy")),
        "STATUS followed the bring-up: {:#?}",
        m.heard
    );

    // `titan-supervisor reload`, then SIGHUP (`systemctl reload`'s ExecReload)
    expect_reload(&mut m, &d, || {
        let out = d.cli(&["reload"]);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    });
    expect_reload(&mut m, &d, || d.signal(Signal::SIGHUP));
    // a reload refused (a broken config) ends with READY=1 too: nothing changed
    std::fs::write(d.path("services.toml"), "[services.a\n").unwrap();
    expect_reload(&mut m, &d, || d.signal(Signal::SIGHUP));

    assert_eq!(d.stop(30 * SEC), Some(0));
    let stopping = m.wait(5 * SEC, "STOPPING=1", |msg| has(msg, "STOPPING=1"));
    assert!(
        m.heard[stopping..].iter().all(|msg| !has(msg, "READY=1")),
        "no READY=1 after STOPPING=1: {:#?}",
        m.heard
    );
}

#[test]
fn the_abstract_socket_of_systemd_is_reached_by_its_at_name() {
    let mut m = Manager::abstract_name();
    assert!(m.addr.starts_with('@'));
    let mut d = Daemon::start_with(&two_services(), &[("NOTIFY_SOCKET", &m.addr)], &[]);
    let ready = m.wait(30 * SEC, "READY=1 on the abstract socket", |msg| has(msg, "READY=1"));
    assert_eq!(field(&m.heard[ready], "STATUS"), Some("2/2 healthy"));
    assert_eq!(d.stop(30 * SEC), Some(0));
    m.wait(5 * SEC, "STOPPING=1", |msg| has(msg, "STOPPING=1"));
}

#[test]
fn watchdog_pings_come_from_the_actor_and_stop_when_it_is_wedged() {
    let mut m = Manager::at_path();
    let envs = [
        ("NOTIFY_SOCKET", m.addr.as_str()),
        ("WATCHDOG_USEC", "400000"),
        ("TITAN_SUPERVISOR_FAULT", "wedge-actor-after:3s"),
    ];
    let d = Daemon::start_with(&two_services(), &envs, &[]);
    let pings = m.hear_until(10 * SEC, |heard| {
        let n = heard.iter().filter(|msg| has(msg, "WATCHDOG=1")).count();
        (n >= 4).then_some(n)
    });
    assert!(pings.is_some(), "several pings at half of WATCHDOG_USEC: {:#?}\n{}", m.heard, d.log_tail());

    let wedged = wait_for(10 * SEC, || d.log_tail().contains("wedging the actor").then_some(()));
    assert!(wedged.is_some(), "the fault hook fired: {}", d.log_tail());
    m.drain(); // a ping sent before the wedge may still be queued
    let before = m.count("WATCHDOG=1");
    // 2.5 ping intervals: a live actor would have pinged twice
    let late = m.hear_until(SEC, |heard| {
        (heard.iter().filter(|msg| has(msg, "WATCHDOG=1")).count() > before).then_some(())
    });
    assert!(late.is_none(), "no ping after the wedge: {:#?}", m.heard);
    d.signal(Signal::SIGKILL); // a wedged actor does not hear SIGTERM
}

#[test]
fn a_watchdog_meant_for_another_process_is_not_pinged() {
    let mut m = Manager::at_path();
    let envs = [("NOTIFY_SOCKET", m.addr.as_str()), ("WATCHDOG_USEC", "200000"), ("WATCHDOG_PID", "1")];
    let mut d = Daemon::start_with(&two_services(), &envs, &[]);
    m.wait(30 * SEC, "READY=1", |msg| has(msg, "READY=1"));
    // 5 ping intervals, had WATCHDOG_PID been ours
    let ping = m.hear_until(SEC / 2, |heard| heard.iter().any(|msg| has(msg, "WATCHDOG=1")).then_some(()));
    assert!(ping.is_none(), "{:#?}", m.heard);
    assert_eq!(d.stop(30 * SEC), Some(0));
}

#[test]
fn a_long_bring_up_extends_the_start_timeout_while_it_makes_progress() {
    let mut m = Manager::at_path();
    let slow = format!(
        "[services.slow]\n{}\nhealth = {{ notify = true }}\nstartup_timeout = \"60s\"\n",
        svc("slow", "\"--notify\", \"--ready-after\", \"7s\"")
    );
    let mut d = Daemon::start_with(&slow, &[("NOTIFY_SOCKET", &m.addr)], &[]);
    let extended = m.wait(30 * SEC, "EXTEND_TIMEOUT_USEC", |msg| field(msg, "EXTEND_TIMEOUT_USEC").is_some());
    let by: u64 = field(&m.heard[extended], "EXTEND_TIMEOUT_USEC").unwrap().parse().unwrap();
    assert!(by > 5_000_000, "a little more than the 5 s between extensions: {by}");
    let ready = m.wait(30 * SEC, "READY=1", |msg| has(msg, "READY=1"));
    assert!(extended < ready);
    assert!(
        m.heard[ready..].iter().all(|msg| field(msg, "EXTEND_TIMEOUT_USEC").is_none()),
        "no extension once ready"
    );
    assert_eq!(d.stop(30 * SEC), Some(0));
}

#[test]
fn a_switch_shows_its_steps_in_the_status_then_the_new_release() {
    let mut m = Manager::at_path();
    let ports = (port(), port());
    let h = Host::start_env(|dir| services(dir, ports, "h1", ""), &[("NOTIFY_SOCKET", &m.addr)]);
    let first = "2/2 healthy, release 20261202T000000Z-aaaaaaa";
    m.wait(30 * SEC, "READY=1 naming the release", |msg| {
        has(msg, "READY=1") && field(msg, "STATUS") == Some(first)
    });
    let id = "20261202T000100Z-bbbbbbb";
    release(h.dir(), id, &services(h.dir(), ports, "h2", ""));

    let (code, out) = h.deploy(&["switch", id]);
    assert_eq!(code, Some(0), "{out}");
    let verify = m.wait(10 * SEC, "the verify step", |msg| {
        field(msg, "STATUS").is_some_and(|s| s.starts_with(&format!("switching to {id}: verify")))
    });
    let after = format!("2/2 healthy, release {id}");
    let done = m.wait(10 * SEC, "the new release", |msg| field(msg, "STATUS") == Some(after.as_str()));
    assert!(verify < done);
    let steps: Vec<&str> = m.heard.iter().filter_map(|msg| field(msg, "STATUS")).collect();
    for step in ["lock", "validate", "swap", "apply"] {
        let shown = format!("switching to {id}: {step}");
        assert!(steps.iter().any(|s| s.starts_with(&shown)), "{step} in {steps:#?}");
    }
}
