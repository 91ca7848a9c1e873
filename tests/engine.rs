//! The supervision engine end to end: the real binary supervising real test-service processes,
//! observed through its JSON log, the services' own start logs and /proc.

mod common;

use std::time::Duration;

use common::daemon::{Daemon, alive, parent_of, port, svc, wait_for};
use nix::sys::signal::Signal;

const SEC: Duration = Duration::from_secs(1);

/// Three tiers of two services, each listening 150 ms after it starts.
fn tiers_config() -> String {
    let mut text = String::from(
        "[groups]\norder = [\"a\", \"b\", \"c\"]\n\n[defaults]\nhealth = { start_interval = \"10ms\" }\n\n",
    );
    for (group, names) in [("a", ["a1", "a2"]), ("b", ["b1", "b2"]), ("c", ["c1", "c2"])] {
        for name in names {
            let p = port();
            let args = format!("\"--listen\", \"127.0.0.1:{p}\", \"--ready-after\", \"150ms\"");
            text += &format!(
                "[services.{name}]\ngroup = \"{group}\"\n{}\nhealth = {{ http = \"http://127.0.0.1:{p}/health\" }}\n\n",
                svc(name, &args)
            );
        }
    }
    text
}

#[test]
fn a_dependent_never_starts_before_its_dependencies_are_healthy() {
    let mut d = Daemon::start(&tiers_config());
    for name in ["c1", "c2"] {
        d.wait_state(name, "healthy", 10 * SEC);
    }
    let log = d.start_log();
    let at = |name: &str, event: &str| {
        log.iter().find(|(n, e, _)| n == name && e == event).map(|(_, _, t)| *t).unwrap()
    };
    for (dependent, deps) in
        [("b1", ["a1", "a2"]), ("b2", ["a1", "a2"]), ("c1", ["b1", "b2"]), ("c2", ["b1", "b2"])]
    {
        for dep in deps {
            assert!(
                at(dependent, "start") >= at(dep, "ready"),
                "{dependent} started before {dep} was ready: {log:?}"
            );
        }
    }
    assert_eq!(d.stop(10 * SEC), Some(0));
    // stopped in reverse order: the c tier before the b tier before the a tier
    let stops: Vec<String> =
        d.changes().into_iter().filter(|c| c.to == "stopped").map(|c| c.service).collect();
    let pos = |n: &str| stops.iter().position(|s| s == n).unwrap();
    assert!(pos("c1").max(pos("c2")) < pos("b1").min(pos("b2")), "{stops:?}");
    assert!(pos("b1").max(pos("b2")) < pos("a1").min(pos("a2")), "{stops:?}");
}

#[test]
fn a_dependent_of_a_service_whose_exec_fails_never_starts() {
    // regression: with no health check, `/nonexistent/program` went pending -> healthy ->
    // failed, and its dependent started in between and kept running
    let config = format!(
        "[services.broken]\ncommand = [\"/nonexistent/program\"]\nrestart = \"never\"\n\n[services.after]\n{}\ndepends_on = [\"broken\"]\n",
        svc("after", "")
    );
    let d = Daemon::start(&config);
    let failed = d.wait_state("broken", "failed", 10 * SEC);
    assert!(failed.reason.starts_with("cannot start: exec failed in the child"), "{failed:?}");
    assert_eq!(d.states("broken"), ["starting", "failed"], "never healthy");
    let held = wait_for(5 * SEC, || {
        d.log_tail().contains("failed: its dependents will not start until it is started again").then_some(())
    });
    assert!(held.is_some(), "{}", d.log_tail());
    assert_eq!(
        d.states("after"),
        Vec::<String>::new(),
        "a dependent of a service that never ran must not start"
    );
    assert!(!d.start_log().iter().any(|(n, _, _)| n == "after"));
}

#[test]
fn a_service_that_misses_its_gate_fails_and_its_dependents_are_held() {
    let p = port();
    let config = format!(
        "[services.slow]\n{}\nhealth = {{ http = \"http://127.0.0.1:{p}/health\" }}\nstartup_timeout = \"400ms\"\nstop_timeout = \"300ms\"\n\n\
         [services.after]\n{}\ndepends_on = [\"slow\"]\n",
        svc("slow", &format!("\"--listen\", \"127.0.0.1:{p}\", \"--ready-after\", \"60s\"")),
        svc("after", "")
    );
    let d = Daemon::start(&config);
    let failed = d.wait_state("slow", "failed", 10 * SEC);
    assert!(failed.reason.contains("not healthy within startup_timeout 400ms"), "{failed:?}");
    let pid = d.service_pid("slow").unwrap();
    assert!(
        wait_for(5 * SEC, || (!alive(pid)).then_some(())).is_some(),
        "the failed service's process was not stopped"
    );
    assert_eq!(d.states("after"), Vec::<String>::new(), "a dependent of a failed service must not start");
    assert!(!d.start_log().iter().any(|(n, _, _)| n == "after"));
}

#[test]
fn quick_crashes_back_off_doubling_and_a_crash_loop_ends_failed() {
    let config = format!(
        "[services.crasher]\n{}\nrestart = \"on-failure\"\nmax_restarts = 3\nrestart_window = \"60s\"\nmin_uptime = \"5s\"\nbackoff = {{ initial = \"200ms\", max = \"1s\" }}\n",
        svc("crasher", "\"--exit-after\", \"20ms\", \"--exit-code\", \"3\"")
    );
    let d = Daemon::start(&config);
    let failed = d.wait_state("crasher", "failed", 15 * SEC);
    assert!(failed.reason.contains("crash loop: 3 restarts within 1m (last: exit code 3)"), "{failed:?}");
    let starts: Vec<u128> =
        d.start_log().iter().filter(|(_, e, _)| e == "start").map(|(_, _, t)| *t).collect();
    assert_eq!(starts.len(), 4, "one start and three restarts");
    let gaps: Vec<u128> = starts.windows(2).map(|w| (w[1] - w[0]) / 1_000_000).collect();
    // each run lasts ~20 ms, then waits 200, 400, 800 ms
    for (gap, backoff) in gaps.iter().zip([200u128, 400, 800]) {
        assert!(*gap >= backoff, "gaps {gaps:?} must follow the doubling backoff");
    }
    let states = d.states("crasher");
    assert_eq!(states.iter().filter(|s| *s == "backoff").count(), 3, "{states:?}");
}

#[test]
fn a_crash_after_min_uptime_restarts_at_once() {
    let config = format!(
        "[services.steady]\n{}\nmin_uptime = \"300ms\"\nbackoff = {{ initial = \"5s\", max = \"5s\" }}\n",
        svc("steady", "\"--exit-after\", \"500ms\", \"--exit-code\", \"1\"")
    );
    let d = Daemon::start(&config);
    let again = d.wait_state_n("steady", "healthy", 2, 10 * SEC);
    assert_eq!(again.restarts, 1);
    let states = d.states("steady");
    assert_eq!(
        &states[..4],
        ["starting", "healthy", "starting", "healthy"].map(String::from),
        "no backoff in between: {states:?}"
    );
}

#[test]
fn failing_health_checks_restart_a_healthy_service() {
    let d_flag = tempfile::NamedTempFile::new().unwrap();
    let flag = d_flag.path().display().to_string();
    let config = format!(
        "[services.probed]\n{}\nhealth = {{ exec = [\"/bin/test\", \"-e\", \"{flag}\"], interval = \"100ms\", start_interval = \"10ms\" }}\nunhealthy_after = 2\n",
        svc("probed", "")
    );
    let d = Daemon::start(&config);
    d.wait_state("probed", "healthy", 10 * SEC);
    let first = d.service_pid("probed").unwrap();
    drop(d_flag); // the check starts failing
    let stopping = d.wait_state("probed", "stopping", 10 * SEC);
    assert_eq!(stopping.reason, "unhealthy: health check failing");
    assert_eq!(
        d.states("probed").iter().filter(|s| *s == "unhealthy").count(),
        1,
        "one failure first, the second restarts"
    );
    d.wait_state_n("probed", "starting", 2, 10 * SEC);
    let second =
        wait_for(5 * SEC, || d.service_pid("probed").filter(|&p| p != first)).expect("a new process");
    assert!(alive(second) && !alive(first));
}

#[test]
fn a_oneshot_gates_its_dependents_on_exit_zero() {
    let config = format!(
        "[services.migrate]\nkind = \"oneshot\"\n{}\n\n[services.app]\ndepends_on = [\"migrate\"]\n{}\n\n\
         [services.bad-migrate]\nkind = \"oneshot\"\nrestart = \"never\"\n{}\n\n[services.bad-app]\ndepends_on = [\"bad-migrate\"]\n{}\n",
        svc("migrate", "\"--exit-after\", \"100ms\""),
        svc("app", ""),
        svc("bad-migrate", "\"--exit-after\", \"50ms\", \"--exit-code\", \"4\""),
        svc("bad-app", ""),
    );
    let d = Daemon::start(&config);
    d.wait_state("app", "healthy", 10 * SEC);
    assert_eq!(d.states("migrate"), ["starting", "exited"].map(String::from));
    let t = |n: &str, e: &str| d.start_log().iter().find(|(a, b, _)| a == n && b == e).map(|x| x.2);
    let app_start = wait_for(5 * SEC, || t("app", "start")).expect("app wrote its start");
    assert!(Some(app_start) > t("migrate", "start"));
    let failed = d.wait_state("bad-migrate", "failed", 10 * SEC);
    assert_eq!(failed.reason, "exit code 4");
    std::thread::sleep(Duration::from_millis(300)); // give a wrong start the chance to show
    assert!(d.states("bad-app").is_empty(), "{:?}", d.states("bad-app"));
}

#[test]
fn a_service_ignoring_sigterm_is_killed_at_stop_timeout() {
    // ready once it prints its ready line, which it does after it has set up its signals
    let config = format!(
        "[services.stubborn]\n{}\nstop_timeout = \"300ms\"\nhealth = {{ log = \"^ready$\" }}\n",
        svc("stubborn", "\"--ignore-sigterm\"")
    );
    let mut d = Daemon::start(&config);
    d.wait_state("stubborn", "healthy", 10 * SEC);
    let pid = d.service_pid("stubborn").unwrap();
    assert_eq!(d.stop(10 * SEC), Some(0));
    assert!(!alive(pid));
    assert!(d.service_log("stubborn").contains("ended: killed by SIGKILL"), "{}", d.service_log("stubborn"));
}

#[test]
fn a_second_sigterm_skips_the_grace_period() {
    let config = format!(
        "[services.stubborn]\n{}\nstop_timeout = \"60s\"\nhealth = {{ log = \"^ready$\" }}\n",
        svc("stubborn", "\"--ignore-sigterm\"")
    );
    let mut d = Daemon::start(&config);
    d.wait_state("stubborn", "healthy", 10 * SEC);
    d.signal(Signal::SIGTERM);
    d.wait_state("stubborn", "stopping", 5 * SEC);
    d.signal(Signal::SIGTERM);
    // far less than the 60 s grace period
    assert_eq!(d.wait_exit(10 * SEC), Some(0));
}

/// `orphan pid=N` and `child pid=N` lines of a service's output.
fn printed_pids(log: &str) -> Vec<i32> {
    log.lines()
        .filter_map(|l| l.split("pid=").nth(1).filter(|_| l.contains("child") || l.contains("orphan")))
        .filter_map(|p| p.trim().parse().ok())
        .collect()
}

#[test]
fn orphans_come_back_to_the_supervisor_and_none_survive_a_stop() {
    let config =
        format!("[services.forker]\n{}\n", svc("forker", "\"--fork-children\", \"2\", \"--orphans\", \"2\""));
    let mut d = Daemon::start(&config);
    d.wait_state("forker", "healthy", 10 * SEC);
    let pids = wait_for(5 * SEC, || Some(printed_pids(&d.service_log("forker"))).filter(|p| p.len() == 4))
        .expect("4 pids printed");
    let orphans: Vec<i32> = d
        .service_log("forker")
        .lines()
        .filter(|l| l.contains("orphan pid="))
        .filter_map(|l| l.split("pid=").nth(1)?.trim().parse().ok())
        .collect();
    for o in &orphans {
        assert_eq!(parent_of(*o), Some(d.pid), "orphan {o} must be reparented to the supervisor (subreaper)");
    }
    assert_eq!(d.stop(10 * SEC), Some(0));
    for pid in pids {
        assert!(wait_for(2 * SEC, || (!alive(pid)).then_some(())).is_some(), "pid {pid} survived the stop");
    }
}

#[test]
fn the_environment_is_exactly_the_config_plus_basics() {
    let config = format!(
        "[services.env]\n{}\nenv = {{ MODE = \"paper\", PORT = 3000 }}\n",
        svc("env", "\"--print-env\"")
    );
    let d = Daemon::start_with(&config, &[("LEAKY_SECRET", "should-not-pass")], &[]);
    d.wait_state("env", "healthy", 10 * SEC);
    let log = wait_for(5 * SEC, || Some(d.service_log("env")).filter(|l| l.contains("--- env end"))).unwrap();
    let keys: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split(" out ").nth(1))
        .filter_map(|kv| kv.split_once('=').map(|(k, _)| k).filter(|k| !k.contains(' ')))
        .collect();
    assert_eq!(keys, ["HOME", "MODE", "PATH", "PORT"], "{log}");
    assert!(log.contains("MODE=paper") && log.contains("PORT=3000"));
}

#[test]
fn output_is_captured_line_by_line_with_time_and_stream() {
    let config = format!(
        "[services.talker]\n{}\n",
        svc("talker", "\"--lines\", \"200\", \"--line-bytes\", \"80\", \"--stream\", \"both\"")
    );
    let d = Daemon::start(&config);
    let log = wait_for(10 * SEC, || {
        Some(d.service_log("talker")).filter(|l| l.lines().filter(|x| x.contains(" talker ")).count() >= 200)
    })
    .expect("200 lines");
    let numbered: Vec<&str> =
        log.lines().filter(|l| l.contains("talker out ") || l.contains("talker err ")).collect();
    assert_eq!(numbered.len(), 200);
    for line in &numbered {
        let (stamp, rest) = line.split_once(' ').unwrap();
        assert!(stamp.len() == 24 && stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T', "{line}");
        assert!(rest.starts_with("out talker out ") || rest.starts_with("err talker err "), "{line}");
    }
    assert_eq!(numbered.iter().filter(|l| l.contains(" err talker err ")).count(), 100);
}

#[test]
fn notify_readiness_needs_no_polling() {
    let config = format!(
        "[services.announcer]\n{}\nhealth = {{ notify = true }}\n\n[services.silent]\n{}\nhealth = {{ notify = true }}\nstartup_timeout = \"500ms\"\n",
        svc("announcer", "\"--notify\", \"--ready-after\", \"100ms\""),
        svc("silent", ""),
    );
    let d = Daemon::start(&config);
    d.wait_state("announcer", "healthy", 10 * SEC);
    let failed = d.wait_state("silent", "failed", 10 * SEC);
    assert!(failed.reason.contains("not healthy within"));
}

#[test]
fn a_log_line_marks_a_service_ready() {
    let config = format!(
        "[services.talker]\n{}\nhealth = {{ log = \"^armed and ready$\" }}\n",
        svc("talker", "\"--ready-after\", \"100ms\", \"--ready-line\", \"armed and ready\"")
    );
    let d = Daemon::start(&config);
    d.wait_state("talker", "healthy", 10 * SEC);
    assert_eq!(d.states("talker"), ["starting", "healthy"].map(String::from));
}

#[test]
fn a_user_runs_the_service_without_root_privileges() {
    let config = format!("[services.plain]\n{}\nuser = \"nobody\"\n", svc("plain", "\"--print-env\""));
    let config = config
        .replace("\"--pid-file\", \"{dir}/pids/plain.pid\", \"--start-log\", \"{dir}/start.log\", ", "");
    let d = Daemon::start(&config);
    d.wait_state("plain", "healthy", 10 * SEC);
    let log =
        wait_for(5 * SEC, || Some(d.service_log("plain")).filter(|l| l.contains("--- env end"))).unwrap();
    assert!(log.contains("USER=nobody"), "{log}");
    let pid: i32 =
        log.lines().find_map(|l| l.split("started pid=").nth(1)).and_then(|p| p.trim().parse().ok()).unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(uid_line.split_whitespace().skip(1).all(|u| u == "65534"), "{uid_line}");
}

#[test]
fn a_hard_memory_cap_kills_with_reason_oom() {
    let config = format!(
        "[services.hog]\n{}\nmemory = \"32MiB\"\nbackoff = {{ initial = \"5s\", max = \"5s\" }}\n",
        svc("hog", "\"--alloc\", \"48\", \"--ready-after\", \"0ms\"")
    );
    let d = Daemon::start(&config);
    let change = d.wait_state("hog", "backoff", 15 * SEC);
    assert_eq!(change.reason, "oom: killed at its memory cap", "{:?}", d.changes());
}

#[test]
fn rss_above_memory_restart_restarts_gracefully_with_reason_memory() {
    let config = format!(
        "[services.grower]\n{}\nmemory_restart = \"40MiB\"\n",
        svc("grower", "\"--alloc\", \"64\", \"--alloc-step\", \"16\", \"--alloc-interval\", \"200ms\"")
    );
    let d = Daemon::start(&config);
    let change = d.wait_state("grower", "stopping", 15 * SEC);
    assert_eq!(change.reason, "memory: above memory_restart");
    let again = d.wait_state_n("grower", "healthy", 2, 10 * SEC);
    assert_eq!(again.restarts, 1);
    assert!(d.service_log("grower").contains("above memory_restart 40MiB: restarting"));
}

#[test]
fn as_pid_1_it_reaps_every_orphan_and_stops_in_order_on_sigterm() {
    if !std::path::Path::new("/usr/bin/unshare").exists() {
        panic!("unshare (util-linux) is needed for the PID 1 test");
    }
    let config = format!(
        "[services.base]\n{}\n\n[services.top]\ndepends_on = [\"base\"]\n{}\n",
        svc("base", "\"--orphans\", \"3\""),
        svc("top", "")
    );
    let d = Daemon::start_with(
        &config,
        &[("TITAN_SUPERVISOR_LOG", "debug")],
        &["unshare", "--pid", "--fork", "--mount-proc"],
    );
    d.wait_state("top", "healthy", 10 * SEC);
    // the supervisor is the child of `unshare`; inside its namespace it is PID 1
    let supervisor =
        wait_for(5 * SEC, || children_of(d.pid).first().copied()).expect("supervisor under unshare");
    let ns_pid = std::fs::read_to_string(format!("/proc/{supervisor}/status")).unwrap();
    assert!(ns_pid.lines().any(|l| l.starts_with("NSpid:") && l.trim_end().ends_with("\t1")), "{ns_pid}");
    // the intermediate children of the double forks were reaped: no zombies under PID 1
    let zombies = wait_for(5 * SEC, || {
        Some(children_of(supervisor).into_iter().filter(|&p| !alive(p)).count()).filter(|&z| z == 0)
    });
    assert_eq!(zombies, Some(0));
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(supervisor), Signal::SIGTERM);
    let mut d = d;
    assert_eq!(d.wait_exit(10 * SEC), Some(0));
    let stops: Vec<String> =
        d.changes().into_iter().filter(|c| c.to == "stopped").map(|c| c.service).collect();
    assert_eq!(stops, ["top", "base"].map(String::from));
}

fn children_of(pid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| parent_of(p) == Some(pid))
        .collect()
}

#[test]
fn a_container_service_waits_for_an_unreachable_dockerd_while_native_services_run() {
    let digest = "0".repeat(64);
    let config = format!(
        "[services.nats]\nimage = \"nats@sha256:{digest}\"\n\n[services.native]\n{}\n",
        svc("native", "")
    );
    let d = Daemon::start_with_header(&config, "docker_host = \"unix:///nonexistent/docker.sock\"\n");
    d.wait_state("native", "healthy", 10 * SEC);
    let said = wait_for(10 * SEC, || {
        let log = d.log_tail();
        (log.contains("cannot reach dockerd at unix:///nonexistent/docker.sock")
            && log.contains("retrying in"))
        .then_some(())
    });
    assert!(said.is_some(), "{}", d.log_tail());
    let status = std::process::Command::new(common::BIN)
        .args(["status", "--json", "--socket"])
        .arg(d.path("s.sock"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("\"state\":\"pending\"") && text.contains("waiting for dockerd"), "{text}");
}

#[test]
fn an_invalid_config_is_refused_before_anything_starts() {
    let mut d = Daemon::start("[services.a]\ncommand = [\"a\"]\ndepends_on = [\"b\"]\n");
    assert_eq!(d.wait_exit(10 * SEC), Some(2));
    assert!(
        d.log_tail().contains("services.toml:9:15: services.a.depends_on: unknown service \"b\""),
        "{}",
        d.log_tail()
    );
}

#[test]
fn a_new_supervisor_kills_what_a_killed_one_left_running() {
    let p = port();
    let config = format!(
        "[services.web]\n{}\nhealth = {{ http = \"http://127.0.0.1:{p}/health\" }}\n",
        svc("web", &format!("\"--listen\", \"127.0.0.1:{p}\""))
    );
    let mut d = Daemon::start(&config);
    d.wait_state("web", "healthy", 10 * SEC);
    let old = d.service_pid("web").unwrap();
    d.signal(Signal::SIGKILL);
    d.wait_exit(5 * SEC);
    assert!(alive(old), "a native service outlives a SIGKILLed supervisor");
    d.respawn();
    // the new run gets the port: the leftover holding it was killed
    let web = d.wait_state_n("web", "healthy", 2, 10 * SEC);
    assert_eq!(web.restarts, 0);
    assert!(wait_for(5 * SEC, || (!alive(old)).then_some(())).is_some());
    assert!(d.log_tail().contains("killed a process left running by an earlier supervisor"));
}

#[test]
fn a_leftover_slow_to_exit_frees_its_port_before_the_new_run_starts() {
    // regression: the leftover was sent SIGKILL and the new run spawned at once; a process
    // holding much memory unmaps it before its sockets close, so the new run found its port
    // taken, failed its first start and was counted a restart
    let p = port();
    let config = format!(
        "[services.web]\n{}\nhealth = {{ http = \"http://127.0.0.1:{p}/health\" }}\n",
        svc("web", &format!("\"--listen\", \"127.0.0.1:{p}\", \"--alloc\", \"1536\""))
    );
    let mut d = Daemon::start(&config);
    d.wait_state("web", "healthy", 10 * SEC);
    let held = wait_for(30 * SEC, || d.service_log("web").contains("allocated 1536 MiB").then_some(()));
    assert!(held.is_some(), "{}", d.service_log("web"));
    let old = d.service_pid("web").unwrap();
    d.signal(Signal::SIGKILL);
    d.wait_exit(5 * SEC);
    d.respawn();
    let web = d.wait_state_n("web", "healthy", 2, 30 * SEC);
    assert_eq!(web.restarts, 0, "{}\n{}", d.log_tail(), d.service_log("web"));
    assert!(!alive(old));
}

/// The pids a test service printed for its children (`child pid=N`).
fn printed_children(d: &Daemon, service: &str) -> Vec<i32> {
    d.service_log(service).lines().filter_map(|l| l.split("child pid=").nth(1)?.trim().parse().ok()).collect()
}

#[test]
fn a_new_supervisor_kills_the_children_of_a_service_that_died_while_none_ran() {
    // regression: only a recorded main process still alive was killed; its children and
    // orphans kept running beside the new instance
    let config = format!(
        "[services.parent]\n{}\nhealth = {{ log = \"^ready$\" }}\n",
        svc("parent", "\"--fork-children\", \"2\"")
    );
    let mut d = Daemon::start(&config);
    d.wait_state("parent", "healthy", 10 * SEC);
    let children = wait_for(5 * SEC, || Some(printed_children(&d, "parent")).filter(|c| c.len() == 2))
        .expect("two children");
    let main = d.service_pid("parent").unwrap();
    // the test is the subreaper (as systemd is on a host): the main process, reparented to it
    // when the supervisor dies, is reaped at once instead of lingering as a zombie
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    d.signal(Signal::SIGKILL);
    d.wait_exit(5 * SEC);
    let main_pid = nix::unistd::Pid::from_raw(main);
    let _ = nix::sys::signal::kill(main_pid, Signal::SIGKILL);
    assert!(nix::sys::wait::waitpid(main_pid, None).is_ok(), "the main process is gone for good");
    assert!(children.iter().all(|&c| alive(c)), "the children outlive their parent and the supervisor");
    d.respawn();
    d.wait_state_n("parent", "healthy", 2, 10 * SEC);
    let gone = wait_for(5 * SEC, || children.iter().all(|&c| !alive(c)).then_some(()));
    assert!(gone.is_some(), "leftover children {children:?} still run");
}

#[test]
fn a_new_supervisor_stops_what_a_service_removed_meanwhile_left_running() {
    // regression: a service removed from the config while no supervisor ran stayed running
    // forever, holding its port
    let keep = format!("[services.keep]\n{}\nhealth = {{ log = \"^ready$\" }}\n", svc("keep", ""));
    let config =
        format!("{keep}\n[services.removed]\n{}\nhealth = {{ log = \"^ready$\" }}\n", svc("removed", ""));
    let mut d = Daemon::start(&config);
    d.wait_state("removed", "healthy", 10 * SEC);
    let removed = d.service_pid("removed").unwrap();
    d.signal(Signal::SIGKILL);
    d.wait_exit(5 * SEC);
    d.rewrite(&keep);
    d.respawn();
    d.wait_state_n("keep", "healthy", 2, 10 * SEC);
    assert!(wait_for(5 * SEC, || (!alive(removed)).then_some(())).is_some(), "{removed} still runs");
    assert!(d.log_tail().contains("\"service\":\"removed\""), "{}", d.log_tail());
}

#[test]
fn sighup_does_not_kill_the_daemon_and_an_unchanged_config_changes_nothing() {
    let d = Daemon::start(&format!("[services.web]\n{}\nhealth = {{ log = \"^ready$\" }}\n", svc("web", "")));
    d.wait_state("web", "healthy", 10 * SEC);
    d.signal(Signal::SIGHUP);
    let warned = wait_for(5 * SEC, || d.log_tail().contains("SIGHUP").then_some(()));
    assert!(warned.is_some(), "{}", d.log_tail());
    assert!(alive(d.pid));
    assert_eq!(d.states("web"), ["starting", "healthy"].map(String::from), "services untouched");
}

/// Regression: a probe still in flight when its run ended was never marked done (its result
/// is dropped as stale), so the next run was never probed and failed at its startup timeout.
/// Seen when the demo's SIGKILL landed while titan-hunter's periodic probe was in flight.
#[test]
fn a_probe_in_flight_when_the_service_dies_does_not_stall_the_next_runs_probes() {
    use std::io::{Read, Write};
    // the health endpoint is ours: it holds the first request until told, answers 200 after
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let mut incoming = listener.incoming().flatten();
        let first = incoming.next();
        let _ = held_tx.send(());
        let _ = release_rx.recv(); // then `first` closes: the probe in flight fails
        drop(first);
        for mut stream in incoming {
            let _ = stream.read(&mut [0; 1024]);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let config = format!(
        "[services.probed]\n{}\nrestart = \"always\"\nstartup_timeout = \"3s\"\n\
         backoff = {{ initial = \"50ms\", max = \"50ms\" }}\n\
         health = {{ http = \"http://{addr}/health\", timeout = \"5s\", start_interval = \"10ms\" }}\n",
        svc("probed", "")
    );
    let d = Daemon::start(&config);
    held_rx.recv_timeout(10 * SEC).expect("a first probe");
    let first = wait_for(5 * SEC, || d.service_pid("probed")).expect("a pid");
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(first), Signal::SIGKILL);
    d.wait_state_n("probed", "starting", 2, 10 * SEC);
    release_tx.send(()).unwrap();
    let healthy = d.wait_state("probed", "healthy", 10 * SEC);
    assert_eq!(healthy.restarts, 1, "{:?}", d.states("probed"));
}

#[test]
fn a_spawn_that_fails_for_lack_of_descriptors_is_retried_and_recovers() {
    // regression: out of descriptors, restarts failed with "cannot create pipes: Too many open
    // files" and the service stayed failed for good, even with restart = "always"
    let config = format!(
        "[services.flaky]\n{}\nrestart = \"always\"\nmax_restarts = 1000\nmin_uptime = \"100ms\"\nbackoff = {{ initial = \"50ms\", max = \"200ms\" }}\n\n[services.steady]\n{}\n",
        svc("flaky", "\"--exit-after\", \"300ms\", \"--exit-code\", \"1\""),
        svc("steady", "")
    );
    // started with a low soft limit, as a shell or a unit without LimitNOFILE= would
    let d = Daemon::start_with(&config, &[], &["prlimit", "--nofile=256:4096", "--"]);
    d.wait_state("flaky", "healthy", 10 * SEC);
    d.wait_state("steady", "healthy", 10 * SEC);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", d.pid)).unwrap();
    let nofile: Vec<&str> =
        limits.lines().find(|l| l.starts_with("Max open files")).unwrap().split_whitespace().collect();
    assert_eq!(
        (nofile[3], nofile[4]),
        ("4096", "4096"),
        "the soft limit is raised to the hard one: {limits}"
    );
    // ... for the supervisor only: its services get the limit it was started with
    // healthy once its exec succeeded: its pid file may come a moment later
    let steady = wait_for(10 * SEC, || d.service_pid("steady")).expect("steady writes its pid file");
    let theirs = std::fs::read_to_string(format!("/proc/{steady}/limits")).unwrap();
    let soft_of_theirs =
        theirs.lines().find(|l| l.starts_with("Max open files")).and_then(|l| l.split_whitespace().nth(3));
    assert_eq!(soft_of_theirs, Some("256"), "{theirs}");
    let soft = |n: usize| {
        let set = std::process::Command::new("prlimit")
            .args(["--pid", &d.pid.to_string(), &format!("--nofile={n}:")])
            .status();
        assert!(set.unwrap().success());
    };
    let open = std::fs::read_dir(format!("/proc/{}/fd", d.pid)).unwrap().count();
    soft(open);
    let starved = wait_for(10 * SEC, || {
        d.changes()
            .into_iter()
            .find(|c| c.service == "flaky" && c.to == "backoff" && c.reason.contains("Too many open files"))
    });
    assert!(starved.is_some(), "{:#?}\n{}", d.changes(), d.log_tail());
    soft(4096);
    let before = d.changes().len();
    let back = wait_for(10 * SEC, || {
        d.changes()[before..].iter().find(|c| c.service == "flaky" && c.to == "healthy").cloned()
    });
    assert!(back.is_some(), "{:#?}", d.changes());
    assert!(!d.states("flaky").contains(&"failed".to_owned()), "never failed for good");
}

#[test]
fn a_secret_used_as_the_program_never_appears_in_any_output() {
    // regression: `command = ["${SECRET}"]` said `program "hunter2-SECRET" not found in PATH`
    // in status, events and the log
    let secrets = tempfile::tempdir().unwrap();
    let env = common::write_env_file(secrets.path(), "secrets.env", "SECRET=hunter2-SECRET\n");
    let config = "[services.leaky]\ncommand = [\"${SECRET}\", \"--flag\"]\nrestart = \"never\"\n";
    let d = Daemon::start_with_header(config, &format!("env_file = \"{}\"\n", env.display()));
    let failed = d.wait_state("leaky", "failed", 10 * SEC);
    assert_eq!(failed.reason, "cannot start: program \"***\" not found in PATH");
    let status = d.cli(&["status", "--json"]);
    let table = d.cli(&["status"]);
    let outputs = [
        ("status --json", String::from_utf8_lossy(&status.stdout).into_owned()),
        ("status", String::from_utf8_lossy(&table.stdout).into_owned()),
        ("the supervisor's log", std::fs::read_to_string(d.path("supervisor.log")).unwrap()),
        ("the service's log", d.service_log("leaky")),
    ];
    for (what, text) in outputs {
        assert!(!text.contains("hunter2"), "{what} shows the secret:\n{text}");
    }
    assert!(String::from_utf8_lossy(&status.stdout).contains("program \\\"***\\\" not found"));
}

#[test]
fn services_run_on_a_kernel_without_close_range() {
    // regression: every native spawn failed before Linux 5.11 (no close_range fallback); the
    // test hook makes the daemon take the fallback path on this kernel
    let d = Daemon::start_with(
        "[services.plain]\ncommand = [\"sleep\", \"1000\"]\n",
        &[("TITAN_SPAWN_NO_CLOSE_RANGE", "1")],
        &[],
    );
    let pid = d.healthy_pid("plain", None, 10 * SEC);
    let fds: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let mut fds = fds;
    fds.sort_unstable();
    assert_eq!(fds, [0, 1, 2], "the service inherited nothing of the supervisor's");
}
