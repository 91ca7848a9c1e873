//! Reload applies a service's whole new definition, key family by key family — user, notify,
//! logs, memory caps, env, health — to the run it starts; services removed and added back, a
//! removed service asked to start, and a reload refused before it changed anything.

mod common;

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use common::TESTSVC;
use common::daemon::{Daemon, alive, port, svc, wait_for};

const SEC: Duration = Duration::from_secs(1);

/// `Uid:` of a process (real, effective, saved, fs).
fn uids_of(pid: i64) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn cmdline_of(pid: i64) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|&b| b == 0)
        .map(String::from_utf8_lossy)
        .collect::<Vec<_>>()
        .join(" ")
        .trim()
        .to_owned()
}

fn environ_of(pid: i64) -> Vec<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    env.split(|&b| b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

fn nobody_uid() -> u32 {
    nix::unistd::User::from_name("nobody").unwrap().unwrap().uid.as_raw()
}

fn reload(d: &Daemon) -> String {
    let out = d.cli(&["reload"]);
    assert_eq!(out.status.code(), Some(0), "reload: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn a_reload_that_sets_a_user_runs_the_new_pid_as_that_user() {
    // regression: the new pid ran `sleep 1001` as root
    let d = Daemon::start("[services.who]\ncommand = [\"sleep\", \"1000\"]\n");
    let before = d.healthy_pid("who", None, 10 * SEC);
    assert_eq!(uids_of(before), "0 0 0 0");
    d.rewrite("[services.who]\ncommand = [\"sleep\", \"1001\"]\nuser = \"nobody\"\n");
    assert_eq!(reload(&d), "reloaded: added [], removed [], changed [who], 0 unchanged");
    let after = d.healthy_pid("who", Some(before), 10 * SEC);
    let nobody = nobody_uid();
    assert_eq!(uids_of(after), format!("{nobody} {nobody} {nobody} {nobody}"));
    assert_eq!(cmdline_of(after), "sleep 1001");
}

/// A test service that sends READY=1 after 100 ms, runs as `user` when given.
fn notifier(name: &str, user: Option<&str>) -> String {
    let user = user.map(|u| format!("user = \"{u}\"\n")).unwrap_or_default();
    format!(
        "[services.{name}]\ncommand = [\"{TESTSVC}\", \"test-service\", \"--name\", \"{name}\", \"--notify\", \"--ready-after\", \"100ms\"]\n\
         {user}health = {{ notify = true }}\nstartup_timeout = \"10s\"\n"
    )
}

#[test]
fn a_notify_service_added_by_reload_and_one_running_as_nobody_pass_their_gates() {
    // regression: one added by reload got no NOTIFY_SOCKET; one running as nobody got EACCES
    let d = Daemon::start(&notifier("boot", Some("nobody")));
    d.wait_state("boot", "healthy", 10 * SEC);
    d.rewrite(&format!(
        "{}\n{}\n{}",
        notifier("boot", Some("nobody")),
        notifier("added", None),
        notifier("added-nobody", Some("nobody"))
    ));
    assert_eq!(reload(&d), "reloaded: added [added, added-nobody], removed [], changed [], 1 unchanged");
    d.wait_state("added", "healthy", 10 * SEC);
    d.wait_state("added-nobody", "healthy", 10 * SEC);
    let pid = d.healthy_pid("added-nobody", None, SEC);
    let socket =
        environ_of(pid).into_iter().find_map(|v| v.strip_prefix("NOTIFY_SOCKET=").map(str::to_owned));
    assert!(socket.is_some_and(|s| s.starts_with("@titan-supervisor/")), "{:?}", environ_of(pid));
}

#[test]
fn a_ready_sent_by_another_user_is_not_believed() {
    // the service never notifies by itself; others try to pass its gate for it
    let config = "[services.gated]\ncommand = [\"sleep\", \"1000\"]\nuser = \"nobody\"\nhealth = { notify = true }\nstartup_timeout = \"30s\"\n";
    let d = Daemon::start(config);
    d.wait_state("gated", "starting", 10 * SEC);
    let pid = wait_for(5 * SEC, || d.status_of("gated")["pid"].as_i64()).expect("a pid");
    let socket = environ_of(pid)
        .into_iter()
        .find_map(|v| v.strip_prefix("NOTIFY_SOCKET=").map(str::to_owned))
        .expect("NOTIFY_SOCKET");
    let send_as = |uid: u32| {
        let status = Command::new(TESTSVC)
            .args(["test-service", "--name", "impostor", "--notify", "--exit-after", "50ms"])
            .env("NOTIFY_SOCKET", &socket)
            .uid(uid)
            .gid(uid)
            .output()
            .expect("run the sender");
        assert!(status.status.success(), "{status:?}");
    };
    send_as(1); // daemon: neither the service's user nor root
    assert!(
        wait_for(SEC, || d.log_tail().contains("a datagram from another user").then_some(())).is_some(),
        "{}",
        d.log_tail()
    );
    assert_eq!(d.states("gated"), ["starting"], "not believed");
    send_as(nobody_uid());
    d.wait_state("gated", "healthy", 5 * SEC);
}

#[test]
fn a_reload_that_changes_logs_max_size_rotates_at_the_new_size() {
    let ticker = |logs: &str| {
        format!(
            "[services.ticker]\n{}\nlogs = {{ {logs} }}\n",
            svc("ticker", "\"--lines\", \"100000\", \"--line-bytes\", \"100\", \"--rate\", \"400\"")
        )
    };
    let d = Daemon::start(&ticker("max_size = \"10MiB\", compress = false"));
    d.wait_state("ticker", "healthy", 10 * SEC);
    d.rewrite(&ticker("max_size = \"4KiB\", compress = false, max_files = 1000"));
    reload(&d);
    d.wait_state_n("ticker", "healthy", 2, 10 * SEC);
    let dir = d.path("logs/ticker");
    let rotated = || {
        let files: Vec<_> =
            std::fs::read_dir(&dir).unwrap().flatten().filter(|e| e.file_name() != "current.log").collect();
        (files.len() >= 3).then_some(files)
    };
    let files = wait_for(20 * SEC, rotated).expect("rotations at the new size");
    for f in files {
        let name = f.file_name().to_string_lossy().into_owned();
        assert!(name.ends_with(".log"), "compress = false applies too: {name}");
        assert!(f.metadata().unwrap().len() <= 4096, "{name} is {} bytes", f.metadata().unwrap().len());
    }
}

/// The memory cap of the cgroup `pid` is in (cgroup v1 or v2), in bytes.
fn memory_cap_of(pid: i64) -> Option<u64> {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let file = match controllers {
            "" => format!("/sys/fs/cgroup{path}/memory.max"),
            c if c.split(',').any(|c| c == "memory") => {
                format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes")
            }
            _ => continue,
        };
        if let Ok(text) = std::fs::read_to_string(file) {
            return text.trim().parse().ok();
        }
    }
    None
}

#[test]
fn a_reload_that_changes_memory_caps_confines_the_new_run_at_the_new_cap() {
    let two = |a: &str, b: &str| {
        format!(
            "[services.uncapped]\ncommand = [\"sleep\", \"1000\"]\n{a}\n\n[services.capped]\ncommand = [\"sleep\", \"1000\"]\n{b}\n"
        )
    };
    let d = Daemon::start(&two("", "memory = \"64MiB\""));
    let (a, b) = (d.healthy_pid("uncapped", None, 10 * SEC), d.healthy_pid("capped", None, 10 * SEC));
    assert_eq!(memory_cap_of(b), Some(64 << 20));
    d.rewrite(&two("memory = \"48MiB\"", "memory = \"96MiB\""));
    reload(&d);
    let (a2, b2) = (d.healthy_pid("uncapped", Some(a), 10 * SEC), d.healthy_pid("capped", Some(b), 10 * SEC));
    assert_eq!(memory_cap_of(a2), Some(48 << 20), "a cap that was not there");
    assert_eq!(memory_cap_of(b2), Some(96 << 20), "a cap that changed");
}

#[test]
fn a_reload_that_changes_env_gives_the_new_run_the_new_environment() {
    let with = |mode: &str| {
        format!("[services.api]\ncommand = [\"sleep\", \"1000\"]\nenv = {{ MODE = \"{mode}\" }}\n")
    };
    let d = Daemon::start(&with("blue"));
    let before = d.healthy_pid("api", None, 10 * SEC);
    assert!(environ_of(before).contains(&"MODE=blue".to_owned()));
    d.rewrite(&with("green"));
    reload(&d);
    let after = d.healthy_pid("api", Some(before), 10 * SEC);
    assert!(environ_of(after).contains(&"MODE=green".to_owned()), "{:?}", environ_of(after));
}

#[test]
fn a_reload_that_changes_the_health_check_gates_the_new_run_on_it() {
    let p = port();
    let d = Daemon::start(&format!("[services.web]\n{}\n", svc("web", "")));
    d.wait_state("web", "healthy", 10 * SEC);
    assert_eq!(d.status_of("web")["health"], "none");
    // the new run listens only after 300 ms: its gate is the http check, not "it runs"
    d.rewrite(&format!(
        "[services.web]\n{}\nhealth = {{ http = \"http://127.0.0.1:{p}/health\" }}\n",
        svc("web", &format!("\"--listen\", \"127.0.0.1:{p}\", \"--ready-after\", \"300ms\""))
    ));
    reload(&d);
    d.wait_state_n("web", "healthy", 2, 10 * SEC);
    let s = d.status_of("web");
    assert_eq!(s["health"], "http");
    assert!(s["ready_after_ms"].as_u64().is_some_and(|ms| ms >= 300), "{s}");
}

#[test]
fn a_service_removed_and_added_back_runs_with_its_new_definition_and_a_removed_one_cannot_be_started() {
    let keep = "[services.keep]\ncommand = [\"sleep\", \"1000\"]\n";
    let d = Daemon::start(&format!("{keep}\n[services.x]\ncommand = [\"sleep\", \"1000\"]\n"));
    let first = d.healthy_pid("x", None, 10 * SEC);
    d.rewrite(keep);
    assert_eq!(reload(&d), "reloaded: added [], removed [x], changed [], 1 unchanged");
    d.wait_state("x", "stopped", 10 * SEC);
    // regression: a removed service could be started and then ran invisibly
    let start = d.cli(&["start", "x"]);
    assert_eq!(start.status.code(), Some(2), "{start:?}");
    assert!(String::from_utf8_lossy(&start.stderr).contains("unknown service \"x\""), "{start:?}");
    assert!(d.status_of("x").is_null());
    // regression: added back, it stayed stopped
    d.rewrite(&format!("{keep}\n[services.x]\ncommand = [\"sleep\", \"1002\"]\n"));
    assert_eq!(reload(&d), "reloaded: added [x], removed [], changed [], 1 unchanged");
    let again = d.healthy_pid("x", Some(first), 10 * SEC);
    assert_eq!(cmdline_of(again), "sleep 1002");
}

#[test]
fn a_reload_refused_for_an_unknown_uid_changes_nothing_at_all() {
    // regression: `worker` was stopped and dropped, then the reload answered "refused,
    // nothing changed"
    let d = Daemon::start(
        "[services.worker]\ncommand = [\"sleep\", \"1000\"]\n\n[services.keep]\ncommand = [\"sleep\", \"1000\"]\n",
    );
    let (worker, keep) = (d.healthy_pid("worker", None, 10 * SEC), d.healthy_pid("keep", None, 10 * SEC));
    d.rewrite("[services.keep]\ncommand = [\"sleep\", \"1000\"]\n\n[services.ghost]\ncommand = [\"sleep\", \"1000\"]\nuser = \"4242424\"\n");
    let out = d.cli(&["reload"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("services.ghost.user: user \"4242424\" does not exist on this host"), "{err}");
    assert!(err.contains("nothing changed"), "{err}");
    assert!(alive(worker as i32) && alive(keep as i32));
    assert_eq!(d.status_of("worker")["pid"].as_i64(), Some(worker));
    assert_eq!(d.status_of("keep")["pid"].as_i64(), Some(keep));
    assert!(d.status_of("ghost").is_null());
    // and `validate` says the same as the daemon
    let validate = common::run(&["validate", &d.path("services.toml").display().to_string()]);
    assert_eq!(validate.code, Some(2), "{validate:?}");
}

#[test]
fn durations_too_long_for_the_clock_are_refused_at_boot_and_on_sighup() {
    // regression: "500000000000y" passed validate, then panicked the daemon (exit 101) at boot,
    // or on SIGHUP, leaving its services running orphaned
    let too_long = "[services.api]\ncommand = [\"sleep\", \"1000\"]\nstartup_timeout = \"500000000000y\"\n";
    let mut booting = Daemon::start(too_long);
    assert_eq!(booting.wait_exit(10 * SEC), Some(2), "{}", booting.log_tail());
    let d = Daemon::start("[services.api]\ncommand = [\"sleep\", \"1000\"]\n");
    let pid = d.healthy_pid("api", None, 10 * SEC);
    d.rewrite(too_long);
    d.signal(nix::sys::signal::Signal::SIGHUP);
    let refused =
        wait_for(5 * SEC, || d.log_tail().contains("reload refused, nothing changed").then_some(()));
    assert!(refused.is_some(), "{}", d.log_tail());
    assert!(d.log_tail().contains("longer than 100 years"), "{}", d.log_tail());
    assert!(alive(d.pid) && alive(pid as i32));
    assert_eq!(d.status_of("api")["pid"].as_i64(), Some(pid));
}

#[test]
fn a_large_reload_is_read_while_supervision_goes_on() {
    // regression: a reload parsed a huge services.toml on the actor's thread, and supervision
    // froze for as long (29 s for 50 MB)
    let d = Daemon::start("[services.victim]\ncommand = [\"sleep\", \"1000\"]\nrestart = \"always\"\n");
    let pid = d.healthy_pid("victim", None, 10 * SEC);
    // 3.9 MB of array (the size bound is 4 MiB), invalid at its end: refused after ~1.5 s of
    // parsing in this debug build
    let items: Vec<String> = (0..400_000).map(|i| format!("\"x{i}\"")).collect();
    d.rewrite(&format!(
        "[services.victim]\ncommand = [\"sleep\", \"1000\"]\nargs = [{}]\nfrobnicate = 1\n",
        items.join(",")
    ));
    d.signal(nix::sys::signal::Signal::SIGHUP);
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
    let log = || std::fs::read_to_string(d.path("supervisor.log")).unwrap_or_default();
    let refused = wait_for(30 * SEC, || log().lines().position(|l| l.contains("reload refused")));
    let refused = refused.expect("the reload is refused");
    let restarted = log().lines().position(|l| {
        l.contains("\"victim\"") && l.contains("\"to\":\"healthy\"") && l.contains("\"restarts\":1")
    });
    assert!(restarted.is_some_and(|at| at < refused), "the restart waited for the reload:\n{}", d.log_tail());
}

#[test]
fn a_services_toml_too_large_to_be_one_is_refused_before_it_is_parsed() {
    let dir = tempfile::tempdir().unwrap();
    let path = common::write(dir.path(), "services.toml", &format!("# {}\n", "x".repeat(5 << 20)));
    let out = common::run(&["validate", &path.display().to_string()]);
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("larger than 4 MiB: not a services.toml"), "{}", out.stderr);
}
