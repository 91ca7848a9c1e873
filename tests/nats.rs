//! NATS end to end with a real `nats-server` (Debian's, user/password auth as Titan's
//! nats.conf has it, on a port of the test's own): events with their schema, disarm before a
//! switch's migrations and arm after its verify, policy-hash parity by request/reply, no
//! responders told from a timeout, NATS away while services run and at deploy time.

mod common;

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::daemon::{port, wait_for};
use common::host::{Host, migration, release, services};
use futures_util::StreamExt;

const SEC: Duration = Duration::from_secs(1);
const USER: &str = "titan";
const PASSWORD: &str = "s3cret";

/// A nats-server on 127.0.0.1:`port` with one user; killed on drop.
struct Server {
    port: u16,
    child: Child,
}

impl Server {
    fn start() -> Server {
        Self::on(port())
    }

    fn on(port: u16) -> Server {
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "--user", USER, "--pass", PASSWORD])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server (Debian's nats-server package: scripts/test.sh installs it)");
        let up = wait_for(10 * SEC, || TcpStream::connect(("127.0.0.1", port)).ok());
        assert!(up.is_some(), "nats-server did not listen on {port}");
        Server { port, child }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn stop(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `[nats]` for the daemon, the password from its environment (as from an env file).
fn nats_section(url: &str) -> String {
    format!(
        "\n[nats]\nurl = \"{url}\"\nuser = \"{USER}\"\npassword = \"${{NATS_PASSWORD}}\"\ntimeout = \"2s\"\n"
    )
}

/// A test client on a runtime of its own: it records every message on `subjects` (with
/// `on_message` run for each), and answers requests as the responders set up say.
struct Client {
    /// The runtime, driven by a thread of its own (it runs the subscriptions).
    rt: tokio::runtime::Handle,
    client: async_nats::Client,
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

impl Client {
    fn connect(url: &str) -> Client {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let rt = runtime.handle().clone();
        std::thread::spawn(move || runtime.block_on(std::future::pending::<()>()));
        let opts = async_nats::ConnectOptions::new().user_and_password(USER.into(), PASSWORD.into());
        let client = rt.block_on(opts.connect(url)).expect("connect to nats-server");
        Client { rt, client, seen: Arc::default() }
    }

    /// Records what arrives on `subject` (wildcards allowed); `then` runs on each message.
    fn record(&self, subject: &str, then: impl Fn(&str, &str) + Send + 'static) {
        let mut sub = self.rt.block_on(self.client.subscribe(subject.to_owned())).unwrap();
        let seen = Arc::clone(&self.seen);
        self.rt.spawn(async move {
            while let Some(m) = sub.next().await {
                let body = String::from_utf8_lossy(&m.payload).into_owned();
                then(m.subject.as_str(), &body);
                seen.lock().unwrap().push((m.subject.to_string(), body));
            }
        });
        self.rt.block_on(self.client.flush()).unwrap();
    }

    /// Answers requests on `subject` with `reply` (`None`: takes them and never answers).
    fn respond(&self, subject: &str, reply: Option<String>) {
        let mut sub = self.rt.block_on(self.client.subscribe(subject.to_owned())).unwrap();
        let client = self.client.clone();
        self.rt.spawn(async move {
            while let Some(m) = sub.next().await {
                if let (Some(to), Some(reply)) = (m.reply, &reply) {
                    let _ = client.publish(to, reply.clone().into()).await;
                }
            }
        });
        self.rt.block_on(self.client.flush()).unwrap();
    }

    fn seen(&self) -> Vec<(String, String)> {
        self.seen.lock().unwrap().clone()
    }

    /// The events seen, parsed, with their subject.
    fn events(&self) -> Vec<(String, serde_json::Value)> {
        self.seen()
            .into_iter()
            .filter(|(s, _)| s.starts_with("titan.evt."))
            .map(|(s, b)| (s, serde_json::from_str(&b).unwrap_or_default()))
            .collect()
    }
}

/// Waits until `status` shows the NATS link in `state`.
fn wait_nats(d: &common::daemon::Daemon, state: &str) -> bool {
    let seen = wait_for(30 * SEC, || {
        let status = d.cli(&["status", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&status.stdout).ok()?;
        (v["nats"]["state"] == state).then_some(())
    });
    seen.is_some()
}

/// A host whose daemon runs with `[nats]` at `url`.
fn host(url: &str, ports: (u16, u16)) -> Host {
    let section = nats_section(url);
    Host::start_env(move |dir| services(dir, ports, "h1", "") + &section, &[("NATS_PASSWORD", PASSWORD)])
}

/// Writes release `id` with `body`, `[deploy] disarm = true` when `disarm`.
fn nats_release(h: &Host, id: &str, body: &str, disarm: bool) {
    let at = release(h.dir(), id, body);
    if disarm {
        let path = at.join("services.toml");
        let text =
            std::fs::read_to_string(&path).unwrap().replacen("[deploy]\n", "[deploy]\ndisarm = true\n", 1);
        std::fs::write(path, text).unwrap();
    }
}

#[test]
fn service_events_arrive_on_nats_with_their_schema() {
    let server = Server::start();
    let watcher = Client::connect(&server.url());
    watcher.record("titan.evt.supervisor.>", |_, _| {});
    let ports = (port(), port());
    let h = host(&server.url(), ports);
    let healthy = wait_for(30 * SEC, || {
        watcher.events().into_iter().find(|(_, e)| e["service"] == "b" && e["to"] == "healthy")
    });
    let (subject, event) = healthy.unwrap_or_else(|| panic!("{:?}\n{}", watcher.seen(), h.d.log_tail()));
    assert_eq!(subject, "titan.evt.supervisor.service.v1");
    assert_eq!(event["schema"], "titan.supervisor.event.v1");
    assert_eq!(event["kind"], "service");
    assert_eq!(event["from"], "starting");
    assert_eq!(event["release"], "20261202T000000Z-aaaaaaa");
    assert_eq!(event["restarts"], 0);
    for key in ["seq", "dropped", "at", "host", "project"] {
        assert!(event.get(key).is_some(), "{key} in {event}");
    }
    let status = h.d.cli(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["nats"]["state"], "connected", "{status}");
    let metrics = scrape(&h.dir().join("s.sock"));
    assert!(metrics.contains("titan_supervisor_nats_up 1"), "{metrics}");
    assert!(metrics.contains("titan_supervisor_nats_published_total"), "{metrics}");
}

/// `GET /metrics` on the control socket: the body.
fn scrape(socket: &Path) -> String {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    reply
}

#[test]
fn a_switch_disarms_before_its_migration_starts_and_arms_after_verify() {
    let server = Server::start();
    let watcher = Client::connect(&server.url());
    let ports = (port(), port());
    let h = host(&server.url(), ports);
    h.d.healthy_pid("b", None, 30 * SEC);
    // the migration runs only if the disarm reached a subscriber before it started
    let disarmed = h.dir().join("disarmed");
    let marker = disarmed.clone();
    watcher.record("titan.cmd.operator.>", move |subject, _| {
        if subject.ends_with("disarm.v1") {
            std::fs::write(&marker, "").unwrap();
        }
    });
    watcher.record("titan.evt.supervisor.deploy.v1", |_, _| {});
    let id = "20261202T020000Z-2000001";
    let check = format!("test -f {}", disarmed.display());
    let body = services(h.dir(), ports, "h2", "") + &nats_section(&server.url()) + &migration(&check, "");
    nats_release(&h, id, &body, true);

    let (code, out) = h.deploy(&["switch", id]);
    assert_eq!(code, Some(0), "{out}\n{}", h.d.log_tail());
    assert!(out.contains("  disarm ") && out.contains("  arm "), "{out}");
    let arm =
        wait_for(10 * SEC, || watcher.seen().iter().position(|(s, _)| s == "titan.cmd.operator.arm.v1"));
    let seen = watcher.seen();
    let arm = arm.unwrap_or_else(|| panic!("no arm: {seen:?}"));
    let disarm = seen.iter().position(|(s, _)| s == "titan.cmd.operator.disarm.v1").expect("a disarm");
    let (_, reason) = &seen[disarm];
    assert!(reason.contains(id), "the disarm's reason names the release: {reason}");
    // the verify's end was announced before the arm
    let verified = seen.iter().position(|(s, b)| {
        s.ends_with("deploy.v1") && b.contains("\"step\":\"verify\"") && b.contains("\"result\":\"ok\"")
    });
    assert!(disarm < arm && verified.is_some_and(|v| v < arm), "disarm, verify, arm: {seen:#?}");
}

#[test]
fn a_parity_mismatch_over_nats_rolls_back_and_arms_only_once_the_old_release_is_verified() {
    let server = Server::start();
    let watcher = Client::connect(&server.url());
    watcher.record("titan.cmd.operator.>", |_, _| {});
    watcher.record("titan.evt.supervisor.deploy.v1", |_, _| {});
    // execution's policy hash, by request/reply, stays h1
    watcher.respond("titan.req.exec.policy_hash.v1", Some("{\"policy_hash\":\"h1\"}".into()));
    let ports = (port(), port());
    let parity = nats_parity(ports.1, "");
    let section = nats_section(&server.url());
    let h =
        Host::start_env(|dir| services(dir, ports, "h1", &parity) + &section, &[("NATS_PASSWORD", PASSWORD)]);
    h.d.healthy_pid("b", None, 30 * SEC);
    let id = "20261202T020100Z-2000002";
    nats_release(&h, id, &(services(h.dir(), ports, "h2", &parity) + &section), true);

    let (code, out) = h.deploy(&["switch", id]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("rolled_back") && out.contains("differs: a=h2 b=h1"), "{out}");
    assert_eq!(h.current(), "20261202T000000Z-aaaaaaa");
    let seen = watcher.seen();
    let at = |pred: &dyn Fn(&(String, String)) -> bool| seen.iter().position(pred);
    let arm = at(&|(s, _)| s == "titan.cmd.operator.arm.v1").unwrap_or_else(|| panic!("{seen:#?}"));
    let old_verified =
        at(&|(_, b)| b.contains("\"step\":\"rollback verify\"") && b.contains("\"result\":\"ok\""));
    assert!(old_verified.is_some_and(|v| v < arm), "armed only after the old release verified: {seen:#?}");
}

/// A parity of b's HTTP policy hash against execution's over NATS (`extra` in the NATS side).
fn nats_parity(b_port: u16, extra: &str) -> String {
    format!(
        "\n[[verify.parity]]\nname = \"policy_hash\"\na = {{ http = \"http://127.0.0.1:{b_port}/policy\", field = \"policy_hash\" }}\n\
         b = {{ nats = \"titan.req.exec.policy_hash.v1\", payload = \"{{}}\", field = \"policy_hash\"{extra} }}\n"
    )
}

#[test]
fn no_responders_and_a_timeout_are_reported_apart() {
    let server = Server::start();
    let ports = (port(), port());
    let h = host(&server.url(), ports);
    h.d.healthy_pid("b", None, 30 * SEC);
    let section = nats_section(&server.url());
    let parity = nats_parity(ports.1, ", timeout = \"300ms\"");

    // nobody subscribes: the server says so at once
    let says = |id: &str, said: &str, not: &str| {
        nats_release(&h, id, &(services(h.dir(), ports, "h1", &parity) + &section), false);
        let (code, out) = h.deploy(&["switch", id]);
        assert_eq!(code, Some(1), "{out}");
        assert!(out.contains(said) && !out.contains(not), "{said}, not {not}: {out}");
    };
    says("20261202T020200Z-2000003", "no responders", "no reply within");
    // a responder that takes the request and never answers
    let silent = Client::connect(&server.url());
    silent.respond("titan.req.exec.policy_hash.v1", None);
    says("20261202T020300Z-2000004", "no reply within 300ms", "no responders");
}

#[test]
fn nats_away_slows_nothing_and_the_events_of_the_outage_arrive_once_it_is_back() {
    let server = Server::start();
    let url = server.url();
    let ports = (port(), port());
    let h = host(&url, ports);
    let b = h.d.healthy_pid("b", None, 30 * SEC);
    let nats_port = server.stop();
    assert!(wait_nats(&h.d, "disconnected"), "status says NATS is away: {}", h.d.log_tail());
    // supervision goes on: a restart goes through its gate as ever
    let out = h.d.cli(&["restart", "b"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let again = h.d.healthy_pid("b", Some(b), 30 * SEC);
    assert_ne!(again, b);

    // nats-server back on its port: what happened meanwhile is delivered
    let server = Server::on(nats_port);
    let watcher = Client::connect(&server.url());
    watcher.record("titan.evt.supervisor.>", |_, _| {});
    let delivered = wait_for(60 * SEC, || {
        watcher.events().into_iter().find(|(_, e)| e["service"] == "b" && e["to"] == "stopping")
    });
    let (_, event) = delivered.unwrap_or_else(|| panic!("{:?}\n{}", watcher.seen(), h.d.log_tail()));
    assert_eq!(event["dropped"], 0, "nothing lost: {event}");
}

#[test]
fn a_switch_that_cannot_disarm_is_refused_unless_no_disarm_is_given() {
    let server = Server::start();
    let url = server.url();
    let ports = (port(), port());
    let h = host(&url, ports);
    let (a, b) = (h.d.healthy_pid("a", None, 30 * SEC), h.d.healthy_pid("b", None, 30 * SEC));
    let id = "20261202T020400Z-2000005";
    nats_release(&h, id, &(services(h.dir(), ports, "h2", "") + &nats_section(&url)), true);
    drop(server);
    assert!(wait_nats(&h.d, "disconnected"), "{}", h.d.log_tail());

    let (code, out) = h.deploy(&["switch", id]);
    assert_eq!(code, Some(2), "refused: {out}");
    assert!(out.contains("disarm") && out.contains("--no-disarm"), "{out}");
    assert_eq!(h.current(), "20261202T000000Z-aaaaaaa");
    assert_eq!((h.pid("a"), h.pid("b")), (a, b), "nothing touched");

    let (code, out) = h.deploy(&["switch", id, "--no-disarm"]);
    assert_eq!(code, Some(0), "{out}");
    let evidence_dir = h.dir().join("releases").join(id).join("evidence");
    let recorded = std::fs::read_dir(&evidence_dir)
        .unwrap()
        .flatten()
        .map(|e| serde_json::from_slice::<serde_json::Value>(&std::fs::read(e.path()).unwrap()).unwrap())
        .any(|evidence| evidence["no_disarm"] == true);
    assert!(recorded, "the evidence records --no-disarm");
    assert!(Path::new(&evidence_dir).exists());
}

#[test]
fn a_token_authenticates_and_a_creds_file_that_cannot_be_read_refuses_the_start() {
    let port = port();
    let mut server = Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "--auth", "t0ken"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server");
    assert!(wait_for(10 * SEC, || TcpStream::connect(("127.0.0.1", port)).ok()).is_some());
    let section = format!("\n[nats]\nurl = \"nats://127.0.0.1:{port}\"\ntoken = \"${{NATS_TOKEN}}\"\n");
    let d = common::daemon::Daemon::start_with(&section, &[("NATS_TOKEN", "t0ken")], &[]);
    assert!(wait_nats(&d, "connected"), "{}", d.log_tail());
    let _ = server.kill();
    let _ = server.wait();

    let section = "\n[nats]\nurl = \"nats://127.0.0.1:4222\"\ncreds_file = \"missing.creds\"\n";
    let mut d = common::daemon::Daemon::start(section);
    assert_eq!(d.wait_exit(10 * SEC), Some(2), "{}", d.log_tail());
    let log = std::fs::read_to_string(d.path("supervisor.log")).unwrap_or_default();
    assert!(log.contains("nats.creds_file") && log.contains("missing.creds"), "{log}");
}

#[test]
fn a_tls_url_connects_to_a_server_whose_certificate_a_private_ca_signed() {
    let dir = tempfile::tempdir().unwrap();
    let path = |f: &str| dir.path().join(f).display().to_string();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl").args(args).stdin(Stdio::null()).output().expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    // a CA of our own, and the server's certificate for 127.0.0.1 signed by it
    openssl(
        &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca"]
            .iter()
            .copied()
            .chain(["-keyout", &path("ca.key"), "-out", &path("ca.pem")])
            .collect::<Vec<_>>(),
    );
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &path("server.key"),
        "-out",
        &path("server.csr"),
    ]);
    std::fs::write(path("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &path("server.csr"),
        "-CA",
        &path("ca.pem"),
        "-CAkey",
        &path("ca.key"),
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        &path("san.ext"),
        "-out",
        &path("server.pem"),
    ]);
    let port = port();
    let mut server = Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "--tls", "--tlscert", &path("server.pem")])
        .args(["--tlskey", &path("server.key")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server");
    assert!(wait_for(10 * SEC, || TcpStream::connect(("127.0.0.1", port)).ok()).is_some());
    let section = format!("\n[nats]\nurl = \"tls://127.0.0.1:{port}\"\nca_file = \"{}\"\n", path("ca.pem"));
    let d = common::daemon::Daemon::start(&section);
    let connected = wait_nats(&d, "connected");
    let _ = server.kill();
    let _ = server.wait();
    assert!(connected, "{}", d.log_tail());
}
