//! Deploys end to end on native services: the real daemon run from `<current>/services.toml`,
//! releases written as directories, `switch` and `rollback` through the CLI, and what they
//! leave behind (the `current` symlink, pids, evidence, history, BAD marks, the last known
//! good release).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::daemon::{Daemon, port, wait_for};
use common::host::{Host, crash_looping, digests, header, migration, parity, release, services};

const SEC: Duration = Duration::from_secs(1);

#[test]
fn a_good_switch_recreates_only_what_changed_and_is_verified() {
    let ports = (port(), port());
    let h = Host::start(|dir| services(dir, ports, "h1", ""));
    let (a, b) = (h.d.healthy_pid("a", None, 30 * SEC), h.d.healthy_pid("b", None, 30 * SEC));
    let id = "20261202T000100Z-bbbbbbb";
    release(h.dir(), id, &services(h.dir(), ports, "h2", ""));

    let (code, out) = h.deploy(&["switch", id]);
    assert_eq!(code, Some(0), "{out}");
    for step in ["lock", "validate", "pull", "disarm", "swap", "apply", "verify"] {
        assert!(out.contains(&format!("  {step} ")), "{step} in {out}");
    }
    assert!(out.contains(&format!("verified {id}")), "{out}");
    assert_eq!(h.current(), id);
    assert_eq!(h.pid("a"), a, "a is untouched");
    assert_ne!(h.pid("b"), b, "b was recreated");
    assert_eq!(h.d.status_of("a")["restarts"], 0);

    // evidence and history
    let evidence: Vec<PathBuf> = std::fs::read_dir(h.dir().join("releases").join(id).join("evidence"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(evidence.len(), 1);
    let e: serde_json::Value = serde_json::from_slice(&std::fs::read(&evidence[0]).unwrap()).unwrap();
    assert_eq!(e["outcome"], "verified");
    assert_eq!(e["from"], "20261202T000000Z-aaaaaaa");
    assert!(e["steps"].as_array().unwrap().len() >= 7, "{e}");
    assert_eq!(e["requested_by"]["uid"], nix::unistd::getuid().as_raw());
    let history = std::fs::read_to_string(h.dir().join("state/history.jsonl")).unwrap();
    assert!(history.contains("\"outcome\":\"verified\""), "{history}");
    // the probation passes: the last known good
    let lkg = wait_for(30 * SEC, || std::fs::read_to_string(h.dir().join("state/last_known_good.json")).ok());
    assert!(lkg.is_some_and(|l| l.contains(id)));
    let (code, listing) = h.deploy(&["releases"]);
    assert_eq!(code, Some(0));
    assert!(listing.contains(id) && listing.contains("verified"), "{listing}");
}

#[test]
fn a_release_whose_policy_hashes_differ_is_rolled_back_by_itself() {
    let ports = (port(), port());
    let h = Host::start(|dir| services(dir, ports, "h1", &parity(ports)));
    let a = h.d.healthy_pid("a", None, 30 * SEC);
    h.d.healthy_pid("b", None, 30 * SEC);
    let bad = "20261202T000200Z-ccccccc";
    release(h.dir(), bad, &services(h.dir(), ports, "h2", &parity(ports)));

    let (code, out) = h.deploy(&["switch", bad]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("rolled_back"), "{out}");
    assert!(out.contains("differs"), "both hashes named: {out}");
    assert_eq!(h.current(), "20261202T000000Z-aaaaaaa", "current is back");
    assert_eq!(h.pid("a"), a, "a is untouched throughout");
    assert_eq!(h.d.status_of("b")["state"], "healthy");
    assert!(h.dir().join("releases").join(bad).join("BAD").exists(), "marked bad");
    let history = std::fs::read_to_string(h.dir().join("state/history.jsonl")).unwrap();
    assert!(history.contains("\"outcome\":\"rolled_back\""), "{history}");
    // a rollback without a release never picks the bad one
    let (code, out) = h.deploy(&["rollback"]);
    assert_ne!(code, Some(0), "{out}");
    assert!(!out.contains(&format!("{bad} ")), "{out}");
}

#[test]
fn a_rollback_with_the_last_known_good_already_current_says_so() {
    // it used to say "no last known good", while there was one: the current release
    let ports = (port(), port());
    let h = Host::start(|dir| services(dir, ports, "h1", ""));
    h.d.healthy_pid("a", None, 30 * SEC);
    let lkg = r#"{"release":"20261202T000000Z-aaaaaaa","since":"2026-12-02T00:00:00Z"}"#;
    std::fs::write(h.dir().join("state/last_known_good.json"), lkg).unwrap();

    let (code, out) = h.deploy(&["rollback"]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("the last known good (20261202T000000Z-aaaaaaa) is already current"), "{out}");
    assert_eq!(h.current(), "20261202T000000Z-aaaaaaa", "nothing moved");
}

#[test]
fn a_release_that_changes_a_daemon_key_is_refused_with_nothing_touched() {
    let ports = (port(), port());
    let h = Host::start(|dir| services(dir, ports, "h1", ""));
    let (a, b) = (h.d.healthy_pid("a", None, 30 * SEC), h.d.healthy_pid("b", None, 30 * SEC));
    let id = "20261202T000300Z-ddddddd";
    let at = release(h.dir(), id, &services(h.dir(), ports, "h2", ""));
    let text = std::fs::read_to_string(at.join("services.toml")).unwrap().replace("/s.sock", "/other.sock");
    std::fs::write(at.join("services.toml"), text).unwrap();

    let (code, out) = h.deploy(&["switch", id]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("socket cannot change"), "{out}");
    assert_eq!(h.current(), "20261202T000000Z-aaaaaaa");
    assert_eq!((h.pid("a"), h.pid("b")), (a, b));
    let (code, out) = h.deploy(&["switch", "no-such-release"]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("no-such-release"), "{out}");
}

#[test]
fn a_release_whose_service_never_gets_healthy_is_rolled_back_within_the_verify_timeout() {
    let ports = (port(), port());
    let h = Host::start(|dir| services(dir, ports, "h1", ""));
    let b = h.d.healthy_pid("b", None, 30 * SEC);
    let id = "20261202T000400Z-eeeeeee";
    // b's new definition exits at once, again and again: a crash loop
    release(h.dir(), id, &crash_looping(h.dir(), ports));
    let (code, out) = h.deploy(&["switch", id]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("rolled_back"), "{out}");
    assert_eq!(h.current(), "20261202T000000Z-aaaaaaa");
    assert_ne!(h.d.healthy_pid("b", Some(b), 30 * SEC), b, "the old b runs again");
}

#[test]
fn a_switch_while_another_holds_the_deploy_lock_is_refused_naming_the_holder() {
    use std::os::fd::AsRawFd;
    let ports = (port(), port());
    let h = Host::start(|dir| services(dir, ports, "h1", ""));
    h.d.healthy_pid("b", None, 30 * SEC);
    let id = "20261202T000500Z-fffffff";
    release(h.dir(), id, &services(h.dir(), ports, "h2", ""));
    // another deploy holds it: its holder in the file, the flock taken
    let holder = "{\"pid\":4242,\"uid\":0,\"release\":\"other\",\"since\":\"2026-12-02T00:00:00Z\"}";
    std::fs::create_dir_all(h.dir().join("state")).unwrap();
    std::fs::write(h.dir().join("state/deploy.lock"), holder).unwrap();
    let file = std::fs::File::open(h.dir().join("state/deploy.lock")).unwrap();
    assert_eq!(unsafe { nix::libc::flock(file.as_raw_fd(), nix::libc::LOCK_EX) }, 0);

    let (code, out) = h.deploy(&["switch", id]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("pid 4242") && out.contains("other"), "the holder is named: {out}");
    assert_eq!(h.current(), "20261202T000000Z-aaaaaaa");
    drop(file);
    let (code, out) = h.deploy(&["switch", id]);
    assert_eq!(code, Some(0), "free again: {out}");
}

/// The daemon killed as each step begins: after its restart it is on the old release, and a
/// release whose switch had reached the swap is marked BAD.
#[test]
fn a_daemon_killed_during_a_switch_is_back_on_the_old_release_after_its_restart() {
    for (step, reached_swap) in [("validate", false), ("swap", true), ("apply", true), ("verify", true)] {
        let ports = (port(), port());
        let fault = format!("switch:{step}");
        let mut h =
            Host::start_env(|dir| services(dir, ports, "h1", ""), &[("TITAN_SUPERVISOR_FAULT", &fault)]);
        h.d.healthy_pid("b", None, 30 * SEC);
        let id = "20261202T000600Z-1111111";
        release(h.dir(), id, &services(h.dir(), ports, "h2", ""));
        let (code, out) = h.deploy(&["switch", id]);
        assert_ne!(code, Some(0), "{step}: {out}");
        h.d.wait_exit(10 * SEC);

        h.d.respawn();
        let up = wait_for(30 * SEC, || (h.d.status_of("b")["state"] == "healthy").then_some(()));
        assert!(up.is_some(), "{step}: {}\n{}", h.d.service_log("b"), h.d.log_tail());
        assert_eq!(h.current(), "20261202T000000Z-aaaaaaa", "{step}: on the old release");
        assert_eq!(h.dir().join("releases").join(id).join("BAD").exists(), reached_swap, "{step}");
        if reached_swap {
            let history = std::fs::read_to_string(h.dir().join("state/history.jsonl")).unwrap();
            assert!(history.contains("the daemon stopped during its switch"), "{step}: {history}");
        }
        assert!(!h.dir().join("state/switch.json").exists());
        // b runs the old definition
        let policy = common::http_get(ports.1, "/policy");
        assert!(policy.contains("h1"), "{step}: {policy}");
    }
}

#[test]
fn a_crash_loop_during_probation_rolls_the_release_back_by_itself() {
    let ports = (port(), port());
    let h = Host::start(|dir| services(dir, ports, "h1", ""));
    h.d.healthy_pid("b", None, 30 * SEC);
    let id = "20261202T001300Z-8888888";
    // healthy at first (verified), then it exits every 1.5 s: a crash loop on probation
    let flaky = services(h.dir(), ports, "h2", "").replace(
        "\"--policy-hash\", \"h2\"",
        "\"--policy-hash\", \"h2\", \"--exit-after\", \"1500ms\", \"--exit-code\", \"3\"",
    );
    let at = release(h.dir(), id, &(flaky + "max_restarts = 1\n"));
    let text = std::fs::read_to_string(at.join("services.toml")).unwrap();
    std::fs::write(at.join("services.toml"), text.replace("probation = \"1s\"", "probation = \"60s\""))
        .unwrap();
    let (code, out) = h.deploy(&["switch", id]);
    assert_eq!(code, Some(0), "verified first: {out}");
    let back = wait_for(60 * SEC, || (h.current() == "20261202T000000Z-aaaaaaa").then_some(()));
    assert!(back.is_some(), "rolled back on probation: {}", h.d.log_tail());
    assert!(h.dir().join("releases").join(id).join("BAD").exists());
    let history = wait_for(30 * SEC, || {
        let h = std::fs::read_to_string(h.dir().join("state/history.jsonl")).ok()?;
        h.contains("\"kind\":\"probation\"").then_some(h)
    });
    assert!(
        history.is_some_and(|h| h.contains("\"outcome\":\"verified\"")),
        "the old release verified again"
    );
    assert!(
        !h.dir().join("state/last_known_good.json").exists()
            || !std::fs::read_to_string(h.dir().join("state/last_known_good.json")).unwrap().contains(id)
    );
    let up = wait_for(30 * SEC, || (h.d.status_of("b")["state"] == "healthy").then_some(()));
    assert!(up.is_some(), "{:?}", h.d.status_of("b"));
}

#[test]
fn a_container_switch_recreates_only_the_changed_container_and_refuses_what_it_cannot_pull() {
    use common::docker::{self, Project, csvc, inspect};
    let p = Project::new("deploy");
    let extra = format!("project = \"{}\"\ndocker_host = \"{}\"\n", p.0, docker::host());
    let (api_port, web_port) = (port(), port());
    let body = |web_image: &str| {
        format!("{}\n{}", csvc("api", api_port, ""), csvc("web", web_port, "")).replacen(
            &format!("[services.web]\nimage = \"{}\"", docker::image()),
            &format!("[services.web]\nimage = \"{web_image}\""),
            1,
        )
    };
    let image = docker::image();
    let h = Host::start_with(|_| body(&image), &[], &extra);
    // the first release's digests.json (written after its services.toml by `start`)
    digests(&h.dir().join("releases/20261202T000000Z-aaaaaaa"), &[("api", &image), ("web", &image)]);
    h.d.wait_state("web", "healthy", 60 * SEC);
    let ids = || [format!("{}-api", p.0), format!("{}-web", p.0)].map(|c| inspect(&c, "{{.Id}}"));
    let before = ids();

    // an image the registry does not have: refused at pull, nothing touched
    let (repo, _) = image.rsplit_once('@').unwrap();
    let missing = format!("{repo}@sha256:{}", "0".repeat(64));
    let at = release(h.dir(), "20261202T000700Z-2222222", &body(&missing));
    digests(&at, &[("api", &image), ("web", &missing)]);
    let (code, out) = h.deploy(&["switch", "20261202T000700Z-2222222"]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("pull") && out.contains("failed"), "{out}");
    assert_eq!(h.current(), "20261202T000000Z-aaaaaaa");
    assert_eq!(ids(), before);

    // a pin that differs from digests.json: refused at validate
    let variant = docker::variant_image("deploy-web");
    let at = release(h.dir(), "20261202T000800Z-3333333", &body(&variant));
    digests(&at, &[("api", &image), ("web", &image)]);
    let (code, out) = h.deploy(&["switch", "20261202T000800Z-3333333"]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("digests.json says"), "{out}");
    assert_eq!(ids(), before);

    // the good one: only web is recreated
    let at = release(h.dir(), "20261202T000900Z-4444444", &body(&variant));
    digests(&at, &[("api", &image), ("web", &variant)]);
    let (code, out) = h.deploy(&["switch", "20261202T000900Z-4444444"]);
    assert_eq!(code, Some(0), "{out}");
    let after = ids();
    assert_eq!(after[0], before[0], "api keeps its container");
    assert_ne!(after[1], before[1], "web is recreated");
    assert_eq!(inspect(&format!("{}-web", p.0), "{{.Config.Image}}"), variant);
}

#[test]
fn with_trusted_keys_an_unsigned_release_is_refused_and_a_signed_one_switches() {
    let ports = (port(), port());
    let keys = tempfile::tempdir().unwrap();
    let minisign = |args: &[&str]| {
        let out = std::process::Command::new("/usr/bin/minisign")
            .args(args)
            .current_dir(keys.path())
            .stdin(std::process::Stdio::null())
            .output()
            .expect("/usr/bin/minisign (scripts/test.sh installs it)");
        assert!(out.status.success(), "minisign {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    minisign(&["-G", "-W", "-p", "ci.pub", "-s", "ci.key"]);
    let extra = format!("trusted_keys = [\"{}\"]\n", keys.path().join("ci.pub").display());
    let first = "20261202T000000Z-aaaaaaa";
    let h = Host::start_with(|dir| services(dir, ports, "h1", ""), &[], &extra);
    h.d.healthy_pid("b", None, 30 * SEC);
    let id = "20261202T001000Z-5555555";
    let at = release(h.dir(), id, &services(h.dir(), ports, "h2", ""));

    let (code, out) = h.deploy(&["switch", id]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("minisig"), "the missing signature is named: {out}");
    assert_eq!(h.current(), first);

    let digests = at.join("digests.json").display().to_string();
    minisign(&["-S", "-s", "ci.key", "-m", &digests]);
    let (code, out) = h.deploy(&["switch", id]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(h.current(), id);
}

#[test]
fn a_first_deploy_on_a_host_without_current_leaves_nothing_when_it_fails_and_starts_when_good() {
    let ports = (port(), port());
    // the daemon runs a config of [supervisor] only: no services yet, no `current`
    let d = Daemon::start_prepared("", |dir| std::fs::write(dir.join("services.toml"), header(dir)).unwrap());
    let h = Host { d };
    let up = wait_for(30 * SEC, || h.d.cli(&["status", "--json"]).status.success().then_some(()));
    assert!(up.is_some(), "{}", h.d.log_tail());
    let bad = "20261202T001100Z-6666666";
    release(h.dir(), bad, &crash_looping(h.dir(), ports));
    let (code, out) = h.deploy(&["switch", bad]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("rolled_back"), "{out}");
    assert!(std::fs::symlink_metadata(h.dir().join("current")).is_err(), "no current is left");
    let gone = wait_for(30 * SEC, || h.d.status_of("a").is_null().then_some(()));
    assert!(gone.is_some(), "its services are stopped: {:?}", h.d.status_of("a"));

    let good = "20261202T001200Z-7777777";
    release(h.dir(), good, &services(h.dir(), ports, "h1", ""));
    let (code, out) = h.deploy(&["switch", good]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(h.current(), good);
    assert_eq!(h.d.status_of("b")["state"], "healthy");
}

#[test]
fn a_migration_runs_once_before_current_moves_and_one_that_fails_changes_nothing() {
    let ports = (port(), port());
    let h = Host::start(|dir| services(dir, ports, "h1", ""));
    h.d.healthy_pid("b", None, 30 * SEC);
    let log = h.dir().join("migrations.log");
    let record = format!("readlink {}/current >> {}", h.dir().display(), log.display());
    let id = "20261202T001400Z-9999999";
    release(h.dir(), id, &(services(h.dir(), ports, "h2", "") + &migration(&record, "")));
    let (code, out) = h.deploy(&["switch", id]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("  migrations "), "{out}");
    let ran = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        ran.lines().collect::<Vec<_>>(),
        ["releases/20261202T000000Z-aaaaaaa"],
        "once, before the swap"
    );
    assert_eq!(h.d.status_of("migrate")["state"], "exited", "installed as done");
    let (a, b) = (h.pid("a"), h.pid("b"));

    // a migration that fails: nothing else moves
    let failing = "20261202T001500Z-aaaaaab";
    release(h.dir(), failing, &(services(h.dir(), ports, "h3", "") + &migration("exit 3", "")));
    let (code, out) = h.deploy(&["switch", failing]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("migration migrate: exit 3"), "{out}");
    assert_eq!(h.current(), id, "current did not move");
    assert_eq!((h.pid("a"), h.pid("b")), (a, b), "no service was touched");
    assert!(h.dir().join("releases").join(failing).join("BAD").exists());
}

#[test]
fn a_failure_after_a_migration_that_breaks_the_previous_release_is_rollback_blocked() {
    let ports = (port(), port());
    let parity = parity(ports);
    let h = Host::start(|dir| services(dir, ports, "h1", &parity));
    h.d.healthy_pid("b", None, 30 * SEC);
    let id = "20261202T001600Z-bbbbbbc";
    let body = services(h.dir(), ports, "h2", &parity) + &migration("true", "breaks_previous = true\n");
    release(h.dir(), id, &body);
    let (code, out) = h.deploy(&["switch", id]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("rollback_blocked") && out.contains("breaks_previous"), "{out}");
    assert_eq!(h.current(), id, "the new release stays");
}

/// `titan-supervisor run` with no config at all, on SPEC's default paths: in a mount namespace
/// of its own `/opt` and `/run` are `dir/opt` and `dir/run`, and its working directory holds
/// no services.toml.
fn run_without_config(dir: &Path) -> std::process::Child {
    for sub in ["opt/titan/releases", "run", "work", "pids"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("supervisor.log")).unwrap();
    let script = "mount --bind \"$1/opt\" /opt && mount --bind \"$1/run\" /run && cd \"$1/work\" \
                  && exec \"$2\" run --log-format json";
    std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c", script, "sh"])
        .arg(dir)
        .arg(common::BIN)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("unshare (util-linux)")
}

#[test]
fn a_host_with_no_config_at_all_waits_for_its_first_switch_and_keeps_it_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let child = run_without_config(dir.path());
    let pid = child.id() as i32;
    let mut d = Daemon { dir, child: Some(child), pid };
    let socket = d.path("run/titan/supervisor.sock");
    let cli = |args: &[&str]| {
        let out =
            std::process::Command::new(common::BIN).args(args).arg("--socket").arg(&socket).output().unwrap();
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.code(), text)
    };
    let up = wait_for(30 * SEC, || (cli(&["status", "--json"]).0 == Some(0)).then_some(()));
    assert!(up.is_some(), "the control socket answers at SPEC's default path: {}", d.log_tail());
    assert!(cli(&["status", "--json"]).1.contains("\"services\":[]"), "no services yet");
    let (code, out) = cli(&["reload"]);
    assert_ne!(code, Some(0), "nothing to reload: {out}");
    assert!(out.contains("waits for a first switch"), "{out}");

    // releases as on a real host: SPEC's default [supervisor], under /opt/titan/releases
    let ports = (port(), port());
    let host = d.dir.path().to_owned();
    let write = |id: &str, body: String| {
        let at = host.join("opt/titan/releases").join(id);
        std::fs::create_dir_all(&at).unwrap();
        let deploy = "[deploy]\nverify_timeout = \"30s\"\nprobation = \"1s\"\n\n";
        std::fs::write(at.join("services.toml"), format!("{deploy}{body}")).unwrap();
        std::fs::write(at.join("digests.json"), "{}\n").unwrap();
    };
    let bad = "20261202T002000Z-0000001";
    write(bad, crash_looping(&host, ports));
    let (code, out) = cli(&["switch", bad]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("rolled_back"), "{out}");
    assert!(std::fs::symlink_metadata(host.join("opt/titan/current")).is_err(), "no current is left");
    assert!(cli(&["status", "--json"]).1.contains("\"services\":[]"), "its services are stopped");

    let good = "20261202T002100Z-0000002";
    write(good, services(&host, ports, "h1", ""));
    let (code, out) = cli(&["switch", good]);
    assert_eq!(code, Some(0), "{out}");
    let target = std::fs::read_link(host.join("opt/titan/current")).unwrap();
    assert_eq!(target, Path::new("releases").join(good));

    // a restart with no --config runs <current>/services.toml, SPEC's default
    assert_eq!(d.stop(30 * SEC), Some(0));
    let child = run_without_config(&host);
    d.pid = child.id() as i32;
    d.child = Some(child);
    let healthy = wait_for(30 * SEC, || {
        let (_, status) = cli(&["status", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&status).ok()?;
        let states: Vec<_> = v["services"].as_array()?.iter().map(|s| s["state"].clone()).collect();
        (states == ["healthy", "healthy"] && v["release"] == good).then_some(())
    });
    assert!(healthy.is_some(), "{}\n{}", cli(&["status", "--json"]).1, d.log_tail());
}
