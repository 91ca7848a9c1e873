//! The unit file under a real systemd: PID 1 of a container on the private dockerd (the image
//! of scripts/systemd-image.sh), running systemd/titan-supervisor.service exactly as shipped
//! on a release of two native services. `systemctl start` returns once READY=1 came, with
//! every service healthy; STATUS names the release; `systemctl reload` applies a change;
//! `journalctl SERVICE=<name>` finds a service's lines; `systemctl stop` stops in reverse
//! dependency order; `systemd-analyze security` rates the sandbox; a wedged actor is killed by
//! the watchdog and restarted.

mod common;

use std::time::Duration;

use common::daemon::wait_for;
use common::docker::{Project, docker, docker_ok};
use common::{BIN, TESTSVC};

const SEC: Duration = Duration::from_secs(1);
const RELEASE: &str = "20261202T000000Z-aaaaaaa";
const UNIT: &str = "titan-supervisor.service";

/// A container booted with systemd as PID 1; removed on drop (with its project).
struct Host {
    id: String,
    _project: Project,
}

impl Host {
    fn boot() -> Host {
        let image = std::env::var("TITAN_TEST_SYSTEMD_IMAGE")
            .expect("TITAN_TEST_SYSTEMD_IMAGE is not set: run scripts/test.sh (scripts/systemd-image.sh)");
        let project = Project::new("systemd");
        let label = project.label();
        // what test-environment.md found to work here (--privileged does not)
        let id = docker_ok(&[
            "run",
            "-d",
            "--label",
            &label,
            "--cap-add",
            "SYS_ADMIN",
            "--security-opt",
            "seccomp=unconfined",
            "--cgroupns=host",
            "-v",
            "/sys/fs/cgroup:/sys/fs/cgroup:rw",
            "--tmpfs",
            "/run",
            "--tmpfs",
            "/run/lock",
            "--network",
            "none",
            &image,
            "/lib/systemd/systemd",
        ]);
        let host = Host { id, _project: project };
        let up = wait_for(60 * SEC, || {
            let state = host.sh_out("systemctl is-system-running");
            matches!(state.trim(), "running" | "degraded").then_some(())
        });
        assert!(up.is_some(), "systemd did not come up: {}", host.sh_out("systemctl --failed"));
        host
    }

    /// `sh -c script` inside, with its exit code and everything it printed.
    fn sh(&self, script: &str) -> (Option<i32>, String) {
        let out = docker(&["exec", &self.id, "sh", "-c", script]);
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.code(), text)
    }

    fn sh_out(&self, script: &str) -> String {
        self.sh(script).1
    }

    /// `sh -c script`, which must succeed.
    fn sh_ok(&self, script: &str) -> String {
        let (code, text) = self.sh(script);
        assert_eq!(code, Some(0), "{script}: {text}\njournal:\n{}", self.journal());
        text
    }

    fn copy_in(&self, from: &str, to: &str) {
        docker_ok(&["cp", from, &format!("{}:{to}", self.id)]);
    }

    fn write(&self, path: &str, text: &str) {
        let local = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(local.path(), text).expect("write");
        self.copy_in(&local.path().display().to_string(), path);
    }

    fn show(&self, property: &str) -> String {
        self.sh_out(&format!("systemctl show {UNIT} -p {property} --value")).trim().to_owned()
    }

    fn journal(&self) -> String {
        self.sh_out(&format!("journalctl -u {UNIT} --no-pager -o cat -n 40"))
    }

    /// The supervisor's journal entries, as JSON objects (fields upper-cased).
    fn entries(&self, filter: &str) -> Vec<serde_json::Value> {
        let text = self.sh_out(&format!("journalctl -u {UNIT} {filter} -o json --no-pager"));
        text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }
}

/// A native service of the test binary on `port`, ready `after` its start.
fn service(name: &str, port: u16, extra: &str, after: &str) -> String {
    format!(
        "[services.{name}]\n{extra}command = [\"/usr/local/bin/titan-testsvc\", \"test-service\", \"--name\", \"{name}\", \
         \"--listen\", \"127.0.0.1:{port}\", \"--ready-after\", \"{after}\"]\n\
         health = {{ http = \"http://127.0.0.1:{port}/health\", start_interval = \"20ms\" }}\n\n"
    )
}

/// a, then b (as `nobody`: setuid under NoNewPrivileges) once a is healthy.
fn release_config(with_c: bool) -> String {
    let mut text =
        format!("[supervisor]\nproject = \"titan\"\n\n{}", service("a", 3101, "memory = \"64MiB\"\n", "0s"));
    text += &service("b", 3102, "depends_on = [\"a\"]\nuser = \"nobody\"\n", "1s");
    if with_c {
        text += &service("c", 3103, "depends_on = [\"a\"]\n", "0s");
    }
    text
}

fn install(host: &Host) {
    host.copy_in(BIN, "/usr/local/bin/titan-supervisor");
    host.copy_in(TESTSVC, "/usr/local/bin/titan-testsvc");
    let unit = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/titan-supervisor.service");
    host.copy_in(unit, &format!("/etc/systemd/system/{UNIT}"));
    host.sh_ok(&format!(
        "mkdir -p /opt/titan/releases/{RELEASE} && ln -s releases/{RELEASE} /opt/titan/current"
    ));
    host.write(&format!("/opt/titan/releases/{RELEASE}/services.toml"), &release_config(false));
    host.sh_ok("systemctl daemon-reload");
}

/// `(service, to)` of the supervisor's state entries in the journal, in order.
fn transitions(host: &Host) -> Vec<(String, String)> {
    let s = |e: &serde_json::Value, k: &str| e[k].as_str().unwrap_or_default().to_owned();
    host.entries("MESSAGE=state").iter().map(|e| (s(e, "SERVICE"), s(e, "TO"))).collect()
}

#[test]
fn the_unit_runs_the_supervisor_under_a_real_systemd() {
    let host = Host::boot();
    install(&host);

    // Type=notify: `systemctl start` returns once READY=1 came, after every service settled
    host.sh_ok(&format!("systemctl start {UNIT}"));
    assert_eq!(host.show("ActiveState"), "active");
    let status = host.sh_ok("titan-supervisor status --json");
    let status: serde_json::Value = serde_json::from_str(&status).expect("status JSON");
    let states: Vec<&str> =
        status["services"].as_array().unwrap().iter().filter_map(|s| s["state"].as_str()).collect();
    assert_eq!(states, ["healthy", "healthy"], "{status}");
    assert_eq!(host.show("StatusText"), format!("2/2 healthy, release {RELEASE}"));
    let b_pid = status["services"][1]["pid"].as_i64().expect("b's pid");
    let uid = host.sh_ok(&format!("grep ^Uid: /proc/{b_pid}/status"));
    assert!(uid.contains("65534"), "b runs as nobody under NoNewPrivileges: {uid}");

    // the journal has the supervisor's fields: one service's lines by SERVICE=
    let b = host.entries("SERVICE=b");
    assert!(b.iter().any(|e| e["TO"] == "healthy"), "journalctl SERVICE=b: {b:?}");
    assert!(b.iter().all(|e| e["SERVICE"] == "b"));

    // `systemctl reload`: SIGHUP, RELOADING=1 ... READY=1; the change is applied
    host.write(&format!("/opt/titan/releases/{RELEASE}/services.toml"), &release_config(true));
    host.sh_ok(&format!("systemctl reload {UNIT}"));
    let c_up =
        wait_for(30 * SEC, || transitions(&host).contains(&("c".into(), "healthy".into())).then_some(()));
    assert!(c_up.is_some(), "c added by the reload: {}", host.journal());
    assert_eq!(host.show("ActiveState"), "active");

    let security = host.sh_out(&format!("systemd-analyze security {UNIT} --no-pager"));
    let exposure =
        security.lines().find(|l| l.contains("Overall exposure level")).unwrap_or_default().to_owned();
    eprintln!("systemd-analyze security: {exposure}");
    let score: f64 =
        exposure.split(": ").nth(1).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(99.0);
    assert!(score <= 5.0, "the sandbox got weaker: {exposure}");

    // `systemctl stop`: SIGTERM to the daemon alone, which stops b and c before a
    host.sh_ok(&format!("systemctl stop {UNIT}"));
    assert_eq!(host.show("ActiveState"), "inactive");
    assert_eq!(host.show("Result"), "success");
    let stopped: Vec<String> =
        transitions(&host).into_iter().filter(|(_, to)| to == "stopped").map(|(s, _)| s).collect();
    assert_eq!(stopped.len(), 3, "{stopped:?}");
    assert_eq!(stopped.last().map(String::as_str), Some("a"), "dependents first: {stopped:?}");
}

#[test]
fn a_wedged_actor_is_killed_by_the_watchdog_and_restarted() {
    let host = Host::boot();
    install(&host);
    // the debug build's fault hook; a short watchdog to keep the test short
    host.sh_ok(&format!(
        "mkdir -p /etc/systemd/system/{UNIT}.d && printf '[Service]\\nEnvironment=TITAN_SUPERVISOR_FAULT=wedge-actor-after:3s\\nWatchdogSec=2s\\nTimeoutAbortSec=2s\\n' > /etc/systemd/system/{UNIT}.d/wedge.conf && systemctl daemon-reload"
    ));
    host.sh_ok(&format!("systemctl start {UNIT}"));
    let restarted = wait_for(60 * SEC, || (host.show("NRestarts").parse::<u32>().ok()? >= 1).then_some(()));
    assert!(restarted.is_some(), "{}", host.journal());
    let journal = host.sh_out(&format!("journalctl -u {UNIT} --no-pager -o cat"));
    assert!(journal.contains("fault injection: wedging the actor"), "{journal}");
    assert!(journal.contains("Failed with result 'watchdog'"), "{journal}");
}
