//! Deploys that fail or are refused, end to end: verify checks that do not pass, parity sources
//! that give no answer, signatures the host does not trust, two switches at once, the daemon
//! killed at each step of a switch, and container releases (what changes is recreated, the
//! rest keeps its containers; an unpinned image is refused). A refusal must leave everything
//! as it was; a failure must end back on the old release, verified again.

mod common;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::daemon::{port, wait_for};
use common::host::{Host, digests, migration, parity, release, services};

const SEC: Duration = Duration::from_secs(1);
/// The release every host here starts on (`Host::start` writes it).
const FIRST: &str = "20261202T000000Z-aaaaaaa";

/// The only evidence file of release `id` (one attempt on it), parsed.
fn evidence(h: &Host, id: &str) -> serde_json::Value {
    let dir = h.dir().join("releases").join(id).join("evidence");
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    assert_eq!(files.len(), 1, "one attempt, one evidence file: {files:?}");
    serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap()
}

/// The step `name` of an evidence (the last one of that name).
fn step<'a>(evidence: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    let steps = evidence["steps"].as_array().unwrap_or_else(|| panic!("no steps in {evidence}"));
    steps.iter().rev().find(|s| s["step"] == name).unwrap_or_else(|| panic!("no step {name} in {evidence}"))
}

/// What a refused deploy must leave as it found it: `current`, a's and b's pids and restarts.
#[derive(Debug, PartialEq)]
struct Untouched {
    current: String,
    pids: (i64, i64),
    restarts: (serde_json::Value, serde_json::Value),
}

impl Untouched {
    fn of(h: &Host) -> Untouched {
        let (a, b) = (h.d.status_of("a"), h.d.status_of("b"));
        Untouched {
            current: h.current(),
            pids: (a["pid"].as_i64().unwrap_or(-1), b["pid"].as_i64().unwrap_or(-1)),
            restarts: (a["restarts"].clone(), b["restarts"].clone()),
        }
    }

    /// Nothing moved, `id` is not marked bad and no switch is left under way.
    fn check(&self, h: &Host, id: &str, out: &str) {
        assert_eq!(&Untouched::of(h), self, "nothing touched: {out}\n{}", h.d.log_tail());
        assert!(
            !h.dir().join("releases").join(id).join("BAD").exists(),
            "a refusal marks nothing bad: {out}"
        );
        assert!(!h.dir().join("state/switch.json").exists(), "no switch left under way: {out}");
    }
}

/// `[[verify.http]]`: b's /policy answers 200 with `policy_hash` equal to `want`.
fn policy_check(port: u16, want: &str) -> String {
    format!(
        "\n[[verify.http]]\nurl = \"http://127.0.0.1:{port}/policy\"\nstatus = 200\nfield = \"policy_hash\"\nequals = \"{want}\"\n"
    )
}

#[test]
fn a_release_whose_http_verify_fails_is_rolled_back_and_the_old_release_verified() {
    let ports = (port(), port());
    // both releases check that b reports h1: the first one's b does, the second one's does not
    let check = policy_check(ports.1, "h1");
    let h = Host::start(|dir| services(dir, ports, "h1", &check));
    let a = h.d.healthy_pid("a", None, 30 * SEC);
    let b = h.d.healthy_pid("b", None, 30 * SEC);
    let id = "20261202T010000Z-1000001";
    let missing = format!("\n[[verify.http]]\nurl = \"http://127.0.0.1:{}/no-such-page\"\n", ports.0);
    release(h.dir(), id, &services(h.dir(), ports, "h2", &format!("{check}{missing}")));

    let (code, out) = h.deploy(&["switch", id]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(&format!("rolled_back {id}")), "{out}");
    assert!(out.contains("policy_hash = h2, want h1"), "the field and both values named: {out}");
    assert!(out.contains("status 404, want 200"), "the 404 named: {out}");
    assert_eq!(h.current(), FIRST, "current is back: {out}");
    assert_eq!(h.pid("a"), a, "a is untouched throughout");
    let bad = std::fs::read_to_string(h.dir().join("releases").join(id).join("BAD"));
    assert!(bad.as_deref().is_ok_and(|r| r.contains("want h1")), "BAD with the reason: {bad:?}");

    let e = evidence(&h, id);
    assert_eq!(e["outcome"], "rolled_back", "{e}");
    assert!(e["reason"].as_str().is_some_and(|r| r.contains("want h1")), "{e}");
    let verify = step(&e, "verify");
    assert_eq!(verify["result"], "failed", "{e}");
    let detail = verify["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("want h1") && detail.contains("no-such-page"), "every failed check: {e}");
    for back in ["rollback swap", "rollback apply", "rollback verify"] {
        assert_eq!(step(&e, back)["result"], "ok", "{back}: {e}");
    }
    assert!(out.contains("  rollback verify  ok"), "{out}");
    // the old b runs again, and is what the old release's check accepted
    h.d.healthy_pid("b", Some(b), 30 * SEC);
    let policy = common::http_get(ports.1, "/policy");
    assert!(policy.contains("\"h1\""), "{policy}");
}

#[test]
fn a_parity_check_without_an_answer_fails_the_switch_and_rolls_back() {
    let ports = (port(), port());
    let h = Host::start(|dir| services(dir, ports, "h1", &parity(ports)));
    let a = h.d.healthy_pid("a", None, 30 * SEC);
    h.d.healthy_pid("b", None, 30 * SEC);
    let id = "20261202T010100Z-1000002";
    // b's side asks port 1, where nothing listens; a second parity asks a for a page it lacks
    let dead = parity(ports).replace(&format!("127.0.0.1:{}/policy", ports.1), "127.0.0.1:1/policy");
    let missing = format!(
        "\n[[verify.parity]]\nname = \"missing_page\"\na = {{ http = \"http://127.0.0.1:{}/no-such-page\", field = \"policy_hash\" }}\n\
         b = {{ http = \"http://127.0.0.1:{}/policy\", field = \"policy_hash\" }}\n",
        ports.0, ports.1
    );
    release(h.dir(), id, &services(h.dir(), ports, "h2", &format!("{dead}{missing}")));

    let (code, out) = h.deploy(&["switch", id]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(&format!("rolled_back {id}")), "{out}");
    assert!(
        out.contains(
            "parity policy_hash: no answer from b (http://127.0.0.1:1/policy): cannot connect to 127.0.0.1:1"
        ),
        "the silent side and its source named: {out}"
    );
    let page = format!("no answer from a (http://127.0.0.1:{}/no-such-page): HTTP status 404", ports.0);
    assert!(out.contains(&page), "{out}");
    assert!(!out.contains("differs"), "no answer is not a difference: {out}");
    assert_eq!(h.current(), FIRST);
    assert_eq!(h.pid("a"), a);
    assert!(h.dir().join("releases").join(id).join("BAD").exists(), "marked bad");
    let e = evidence(&h, id);
    assert_eq!(step(&e, "rollback verify")["result"], "ok", "the old release's parity holds: {e}");
    let up = wait_for(30 * SEC, || (h.d.status_of("b")["state"] == "healthy").then_some(()));
    assert!(up.is_some(), "{:?}\n{}", h.d.status_of("b"), h.d.log_tail());
    let policy = common::http_get(ports.1, "/policy");
    assert!(policy.contains("\"h1\""), "{policy}");
}

/// `/usr/bin/minisign ARGS` in `dir`, which must succeed.
fn minisign(dir: &Path, args: &[&str]) {
    let out = Command::new("/usr/bin/minisign")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("/usr/bin/minisign (scripts/test.sh installs it)");
    assert!(out.status.success(), "minisign {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A host trusting the key `ci.pub` of `keys` (made here with `ci.key`, and an untrusted
/// `rogue.key`), on its first release; and a second release written, not signed.
fn signed_host(keys: &Path, ports: (u16, u16), id: &str) -> (Host, PathBuf) {
    minisign(keys, &["-G", "-W", "-p", "ci.pub", "-s", "ci.key"]);
    minisign(keys, &["-G", "-W", "-p", "rogue.pub", "-s", "rogue.key"]);
    let extra = format!("trusted_keys = [\"{}\"]\n", keys.join("ci.pub").display());
    let h = Host::start_with(|dir| services(dir, ports, "h1", ""), &[], &extra);
    h.d.healthy_pid("a", None, 30 * SEC);
    h.d.healthy_pid("b", None, 30 * SEC);
    let at = release(h.dir(), id, &services(h.dir(), ports, "h2", ""));
    (h, at)
}

#[test]
fn a_release_signed_by_an_untrusted_key_is_refused_with_nothing_touched() {
    let keys = tempfile::tempdir().unwrap();
    let id = "20261202T010200Z-1000003";
    let (h, at) = signed_host(keys.path(), (port(), port()), id);
    let before = Untouched::of(&h);
    minisign(keys.path(), &["-S", "-s", "rogue.key", "-m", &at.join("digests.json").display().to_string()]);

    let (code, out) = h.deploy(&["switch", id]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains(&format!("refused {id}")), "{out}");
    assert!(out.contains("none of the trusted keys") && out.contains("ci.pub"), "the keys named: {out}");
    before.check(&h, id, &out);
    assert_eq!(evidence(&h, id)["outcome"], "refused");
}

#[test]
fn a_digests_json_changed_after_signing_is_refused() {
    let keys = tempfile::tempdir().unwrap();
    let id = "20261202T010300Z-1000004";
    let (h, at) = signed_host(keys.path(), (port(), port()), id);
    let before = Untouched::of(&h);
    let digests = at.join("digests.json").display().to_string();
    minisign(keys.path(), &["-S", "-s", "ci.key", "-m", &digests]);
    // still a valid digests.json for this release: only the signature can tell
    std::fs::write(&digests, "{ }\n").unwrap();

    let (code, out) = h.deploy(&["switch", id]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains(&format!("refused {id}")), "{out}");
    assert!(out.contains("changed after signing"), "{out}");
    before.check(&h, id, &out);
    // signed again as it is now, the same release switches: it was the change that was refused
    minisign(keys.path(), &["-S", "-s", "ci.key", "-m", &digests]);
    let (code, out) = h.deploy(&["switch", id]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(h.current(), id);
}

/// `switch ID` as a child process, its stdout piped and read line by line into a channel.
fn spawn_switch(h: &Host, id: &str) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(common::BIN)
        .args(["switch", id, "--socket"])
        .arg(h.d.path("s.sock"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the CLI");
    let (tx, rx) = std::sync::mpsc::channel();
    let (stdout, stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    for pipe in [Box::new(stdout) as Box<dyn std::io::Read + Send>, Box::new(stderr)] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    (child, rx)
}

/// Waits for `child` to end (at most a minute), then returns its code and every line it printed.
fn finish(
    mut child: std::process::Child,
    lines: &std::sync::mpsc::Receiver<String>,
) -> (Option<i32>, String) {
    let status = common::wait_or_kill(&mut child, 60 * SEC, "switch");
    // the readers end with the pipes; what they read is in the channel by then
    let mut out = Vec::new();
    while let Ok(line) = lines.recv_timeout(SEC) {
        out.push(line);
    }
    (status.code(), out.join("\n"))
}

#[test]
fn two_switches_at_once_one_is_refused_naming_the_other() {
    let ports = (port(), port());
    let h = Host::start(|dir| services(dir, ports, "h1", ""));
    h.d.healthy_pid("a", None, 30 * SEC);
    h.d.healthy_pid("b", None, 30 * SEC);
    // the first switch's b takes a second to get ready: its verify (waiting for every service
    // to be healthy) holds the lock that long after the lock line is printed
    let (slow, other) = ("20261202T010400Z-1000005", "20261202T010500Z-1000006");
    let slow_b = services(h.dir(), ports, "h2", "")
        .replace("\"--policy-hash\", \"h2\"", "\"--policy-hash\", \"h2\", \"--ready-after\", \"1s\"");
    release(h.dir(), slow, &slow_b);
    release(h.dir(), other, &services(h.dir(), ports, "h3", ""));

    let (first, first_lines) = spawn_switch(&h, slow);
    let mut seen = Vec::new();
    let locked = wait_for(30 * SEC, || {
        let line = first_lines.try_recv().ok()?;
        seen.push(line.clone());
        line.trim_start().starts_with("lock ").then_some(())
    });
    assert!(locked.is_some(), "the first switch took the lock: {seen:?}\n{}", h.d.log_tail());
    let (second, second_lines) = spawn_switch(&h, other);
    let (second_code, second_out) = finish(second, &second_lines);
    let (first_code, first_out) = finish(first, &first_lines);
    let first_out = format!("{}\n{first_out}", seen.join("\n"));

    assert_eq!(first_code, Some(0), "the first one is verified: {first_out}\n---\n{second_out}");
    assert!(first_out.contains(&format!("verified {slow}")), "{first_out}");
    assert_eq!(second_code, Some(2), "the second one is refused: {second_out}\n---\n{first_out}");
    let holder = format!("another deploy is running: pid {} (uid", h.d.pid);
    assert!(
        second_out.contains(&holder) && second_out.contains(&format!("switching to {slow}")),
        "the holder named, with the release it switches to: {second_out}"
    );
    assert_eq!(h.current(), slow);
    assert!(!h.dir().join("releases").join(other).join("BAD").exists(), "a refusal marks nothing bad");
    assert_eq!(h.d.status_of("b")["state"], "healthy", "{}", h.d.log_tail());
    assert!(common::http_get(ports.1, "/policy").contains("\"h2\""));
    // the refused one left the lock free: it switches now
    let (code, out) = h.deploy(&["switch", other]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(h.current(), other);
}

#[test]
fn a_switch_recording_its_outcome_still_holds_the_lock() {
    // regression: the lock was let go when the pipeline ended, before the attempt was recorded
    // and its journal removed; a second switch taking it in between had its own journal
    // removed by the first, so a crash during it would not have been undone
    let ports = (port(), port());
    let h =
        Host::start_env(|dir| services(dir, ports, "h1", ""), &[("TITAN_SUPERVISOR_FAULT", "pause:finish")]);
    h.d.healthy_pid("b", None, 30 * SEC);
    let (first, second) = ("20261202T010600Z-1000007", "20261202T010700Z-1000008");
    release(h.dir(), first, &services(h.dir(), ports, "h2", ""));
    release(h.dir(), second, &services(h.dir(), ports, "h3", ""));

    let (child, lines) = spawn_switch(&h, first);
    // the first switch has written its history line and pauses before it removes its journal
    let recorded = wait_for(30 * SEC, || {
        let history = std::fs::read_to_string(h.dir().join("state/history.jsonl")).ok()?;
        history.contains(first).then_some(())
    });
    assert!(recorded.is_some(), "{}", h.d.log_tail());
    let (code, out) = h.deploy(&["switch", second]);
    assert_eq!(code, Some(2), "refused while the first one finishes: {out}");
    assert!(out.contains(&format!("switching to {first}")), "{out}");
    let (code, out) = finish(child, &lines);
    assert_eq!(code, Some(0), "{out}");
    assert!(!h.dir().join("state/switch.json").exists());
    let (code, out) = h.deploy(&["switch", second]);
    assert_eq!(code, Some(0), "{out}");
}

/// The release a crash test switches to: a good one, one with a migration, one whose
/// migration fails, one whose parity fails.
#[derive(Clone, Copy)]
enum Next {
    Good,
    Migrating,
    FailingMigration,
    FailingParity,
}

/// A daemon on a release with a policy-hash parity is killed as `step` of a switch to `next`
/// begins; restarted, it is back on its release, healthy and serving it, with `next` marked
/// BAD when the switch had got that far (`bad`), nothing left under way, and it deploys again.
fn killed_at(step: &str, next: Next, bad: bool) {
    let ports = (port(), port());
    let fault = format!("switch:{step}");
    let first = |dir: &Path| services(dir, ports, "h1", &parity(ports));
    let mut h = Host::start_env(first, &[("TITAN_SUPERVISOR_FAULT", &fault)]);
    h.d.healthy_pid("a", None, 30 * SEC);
    h.d.healthy_pid("b", None, 30 * SEC);
    let id = "20261202T020000Z-2000001";
    let record = format!("echo ran >> {}/migrated", h.dir().display());
    let body = match next {
        Next::Good => services(h.dir(), ports, "h1", &parity(ports)),
        Next::Migrating => services(h.dir(), ports, "h1", &parity(ports)) + &migration(&record, ""),
        Next::FailingMigration => services(h.dir(), ports, "h1", &parity(ports)) + &migration("exit 3", ""),
        Next::FailingParity => services(h.dir(), ports, "h2", &parity(ports)),
    };
    // b changes in every one of them: the switch has a service to recreate
    let body = body.replace("\"--name\", \"b\"", "\"--name\", \"b\", \"--ready-line\", \"next\"");
    release(h.dir(), id, &body);

    let (code, out) = h.deploy(&["switch", id]);
    assert_ne!(code, Some(0), "{step}: {out}");
    assert_eq!(h.d.wait_exit(10 * SEC), None, "{step}: killed by a signal: {out}\n{}", h.d.log_tail());
    let log = std::fs::read_to_string(h.d.path("supervisor.log")).unwrap_or_default();
    let fault_line = format!("\"step\":\"{step}\"");
    assert!(
        log.lines().any(|l| l.contains("fault injection") && l.contains(&fault_line)),
        "{step}: killed at that step: {out}\n{}",
        h.d.log_tail()
    );

    h.d.respawn();
    let up = wait_for(30 * SEC, || {
        let healthy = |s: &str| h.d.status_of(s)["state"] == "healthy";
        (healthy("a") && healthy("b")).then_some(())
    });
    assert!(up.is_some(), "{step}: {}\n{}", h.d.service_log("b"), h.d.log_tail());
    assert_eq!(h.current(), FIRST, "{step}: on the old release: {out}");
    let marked = h.dir().join("releases").join(id).join("BAD").exists();
    assert_eq!(marked, bad, "{step}: BAD: {out}\n{}", h.d.log_tail());
    assert!(!h.dir().join("state/switch.json").exists(), "{step}: no switch under way");
    let policy = common::http_get(ports.1, "/policy");
    assert!(policy.contains("\"h1\""), "{step}: b runs the old definition: {policy}");
    let status: serde_json::Value =
        serde_json::from_slice(&h.d.cli(&["status", "--json"]).stdout).unwrap_or_default();
    assert_eq!(status["release"], FIRST, "{step}: {status}");

    // and it deploys again: no lock held, no journal in the way
    let again = "20261202T020100Z-2000002";
    release(h.dir(), again, &services(h.dir(), ports, "h3", ""));
    let (code, out) = h.deploy(&["switch", again]);
    assert_eq!(code, Some(0), "{step}: a later switch: {out}\n{}", h.d.log_tail());
    assert_eq!(h.current(), again);
}

// tests/deploy.rs covers validate, swap, apply and verify; the pull of a container release is
// `a_daemon_killed_as_a_container_pull_begins_comes_back_on_the_old_release` below. disarm has
// no fault point (it is always skipped: NATS disarm is not built), nor the journal write, nor
// the end of a verified switch.

#[test]
fn a_daemon_killed_as_a_switch_takes_the_lock_comes_back_consistent() {
    killed_at("lock", Next::Good, false);
}

#[test]
fn a_daemon_killed_as_the_migrations_begin_comes_back_consistent() {
    killed_at("migrations", Next::Migrating, false);
}

#[test]
fn a_daemon_killed_as_a_failed_switch_swaps_back_comes_back_consistent() {
    killed_at("rollback swap", Next::FailingParity, true);
}

#[test]
fn a_daemon_killed_as_a_failed_switch_restores_the_old_services_comes_back_consistent() {
    killed_at("rollback apply", Next::FailingParity, true);
}

#[test]
fn a_daemon_killed_as_a_failed_switch_verifies_the_old_release_comes_back_consistent() {
    killed_at("rollback verify", Next::FailingParity, true);
}

#[test]
fn a_daemon_killed_while_verifying_what_runs_after_a_failed_migration_comes_back_consistent() {
    killed_at("rollback verify", Next::FailingMigration, true);
}

#[test]
fn an_unpinned_image_in_a_release_is_refused_at_validate() {
    let ports = (port(), port());
    let h = Host::start(|dir| services(dir, ports, "h1", ""));
    h.d.healthy_pid("a", None, 30 * SEC);
    h.d.healthy_pid("b", None, 30 * SEC);
    let before = Untouched::of(&h);
    let id = "20261202T010600Z-1000007";
    let image = "registry.invalid/titan-testsvc:1.0";
    let at = release(
        h.dir(),
        id,
        &(services(h.dir(), ports, "h2", "") + &format!("\n[services.c]\nimage = \"{image}\"\n")),
    );
    digests(&at, &[("c", image)]);

    let (code, out) = h.deploy(&["switch", id]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains(&format!("refused {id}")), "{out}");
    assert!(out.contains("services.c.image") && out.contains("not pinned"), "the image named: {out}");
    let e = evidence(&h, id);
    assert_eq!(step(&e, "validate")["result"], "failed", "refused at validate: {e}");
    assert!(e["steps"].as_array().unwrap().iter().all(|s| s["step"] != "pull"), "nothing pulled: {e}");
    before.check(&h, id, &out);
}

/// Container services `s00`..`s15` in four tiers of four, each depending on the whole tier
/// before it; `changed` ones get `env = { REV = "2" }` and `images` their own image.
fn sixteen(ports: &[u16], changed: &[&str], images: &[(&str, &str)]) -> String {
    let mut text = String::new();
    for (i, port) in ports.iter().enumerate() {
        let name = format!("s{i:02}");
        let mut svc = common::docker::csvc(&name, *port, "");
        if let Some((_, image)) = images.iter().find(|(n, _)| *n == name) {
            svc = svc.replacen(&common::docker::image(), image, 1);
        }
        text.push_str(&svc);
        if i >= 4 {
            let tier = i / 4 - 1;
            let deps: Vec<String> = (tier * 4..tier * 4 + 4).map(|d| format!("\"s{d:02}\"")).collect();
            text.push_str(&format!("depends_on = [{}]\n", deps.join(", ")));
        }
        if changed.contains(&name.as_str()) {
            text.push_str("env = { REV = \"2\" }\n");
        }
        text.push('\n');
    }
    text
}

#[test]
fn a_switch_changing_3_of_16_containers_keeps_the_13_others_and_their_restarts() {
    use common::docker::{self, Project, inspect};
    let p = Project::new("deploy16");
    let extra = format!("project = \"{}\"\ndocker_host = \"{}\"\n", p.0, docker::host());
    let ports: Vec<u16> = (0..16).map(|_| port()).collect();
    let image = docker::image();
    let names: Vec<String> = (0..16).map(|i| format!("s{i:02}")).collect();
    let pins = |images: &[(&str, &str)]| -> Vec<(String, String)> {
        let pinned =
            |n: &str| images.iter().find(|(m, _)| *m == n).map_or(image.clone(), |(_, i)| i.to_string());
        names.iter().map(|n| (n.clone(), pinned(n))).collect()
    };
    let write_digests = |at: &Path, images: &[(&str, &str)]| {
        let pins = pins(images);
        let pairs: Vec<(&str, &str)> = pins.iter().map(|(n, i)| (n.as_str(), i.as_str())).collect();
        digests(at, &pairs);
    };
    let h = Host::start_with(|_| sixteen(&ports, &[], &[]), &[], &extra);
    write_digests(&h.dir().join("releases").join(FIRST), &[]);
    for n in &names {
        h.d.wait_state(n, "healthy", 60 * SEC);
    }
    let look = || -> Vec<(String, serde_json::Value)> {
        names
            .iter()
            .map(|n| (inspect(&format!("{}-{n}", p.0), "{{.Id}}"), h.d.status_of(n)["restarts"].clone()))
            .collect()
    };
    let before = look();
    assert!(before.iter().all(|(_, r)| r.is_u64()), "restarts shown for all: {before:?}");

    // one change per tier below the first: a new image in tier 1, a new env in tiers 2 and 3
    let variant = docker::variant_image("deploy16-s05");
    let images = [("s05", variant.as_str())];
    let changed = ["s05", "s09", "s13"];
    let id = "20261202T030000Z-3000001";
    let at = release(h.dir(), id, &sixteen(&ports, &changed[1..], &images));
    write_digests(&at, &images);
    let (code, out) = h.deploy(&["switch", id]);
    assert_eq!(code, Some(0), "{out}\n{}", h.d.log_tail());
    assert_eq!(h.current(), id);

    let after = look();
    for (i, n) in names.iter().enumerate() {
        if changed.contains(&n.as_str()) {
            assert_ne!(after[i].0, before[i].0, "{n} is recreated");
        } else {
            assert_eq!(after[i], before[i], "{n} keeps its container and its restarts");
        }
        assert_eq!(h.d.status_of(n)["state"], "healthy", "{n}: {}", h.d.log_tail());
    }
    assert_eq!(inspect(&format!("{}-s05", p.0), "{{.Config.Image}}"), variant);
    for n in ["s09", "s13"] {
        let env = inspect(&format!("{}-{n}", p.0), "{{.Config.Env}}");
        assert!(env.contains("REV=2"), "{n}: {env}");
    }
}

#[test]
fn a_daemon_killed_as_a_container_pull_begins_comes_back_on_the_old_release() {
    use common::docker::{self, Project, csvc, inspect};
    let p = Project::new("deploypull");
    let extra = format!("project = \"{}\"\ndocker_host = \"{}\"\n", p.0, docker::host());
    let api = port();
    let image = docker::image();
    let mut h =
        Host::start_with(|_| csvc("api", api, ""), &[("TITAN_SUPERVISOR_FAULT", "switch:pull")], &extra);
    digests(&h.dir().join("releases").join(FIRST), &[("api", &image)]);
    h.d.wait_state("api", "healthy", 60 * SEC);
    let id = "20261202T030100Z-3000002";
    let at = release(h.dir(), id, &format!("{}env = {{ REV = \"2\" }}\n", csvc("api", api, "")));
    digests(&at, &[("api", &image)]);

    let (code, out) = h.deploy(&["switch", id]);
    assert_ne!(code, Some(0), "{out}");
    assert_eq!(h.d.wait_exit(10 * SEC), None, "killed by a signal: {out}\n{}", h.d.log_tail());
    h.d.respawn();
    let up = wait_for(60 * SEC, || (h.d.status_of("api")["state"] == "healthy").then_some(()));
    assert!(up.is_some(), "{:?}\n{}", h.d.status_of("api"), h.d.log_tail());
    assert_eq!(h.current(), FIRST, "{out}");
    assert!(!h.dir().join("releases").join(id).join("BAD").exists(), "the switch had not begun: {out}");
    assert!(!h.dir().join("state/switch.json").exists());
    let env = inspect(&format!("{}-api", p.0), "{{.Config.Env}}");
    assert!(!env.contains("REV=2"), "api runs the old definition: {env}");
}
