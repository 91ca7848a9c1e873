//! titan-supervisor as PID 1 of a container (docker/pid1.Dockerfile, FROM scratch): it runs
//! the built-in demo's native services as its own children, brings every one up healthy,
//! restarts the one the demo SIGKILLs (reaping it as PID 1), and on `docker stop` stops them all
//! in reverse dependency order and exits 0 well within the grace period.

mod common;

use std::time::{Duration, Instant};

use common::daemon::wait_for;
use common::docker::{self, Project, docker_ok};

/// The demo's long-running services (its oneshot exits on its own), from the embedded config.
fn demo_services() -> Vec<String> {
    let config: toml::Table = titan_supervisor::demo::CONFIG.parse().expect("demo config");
    let services = config["services"].as_table().expect("[services]");
    let oneshot = |s: &toml::Value| s.get("kind").and_then(|k| k.as_str()) == Some("oneshot");
    services.iter().filter(|(_, s)| !oneshot(s)).map(|(name, _)| name.clone()).collect()
}

/// Whether one of the demo's event lines shows `service` going `starting -> healthy`.
fn became_healthy(lines: &[&str], service: &str) -> bool {
    lines.iter().any(|l| {
        let words: Vec<&str> = l.split_whitespace().collect();
        words.windows(4).any(|w| w[0] == service && w[1..] == ["starting", "->", "healthy"])
    })
}

/// `NSpid:` of a host process: its pid in every pid namespace it is in, outermost first.
fn ns_pids(pid: &str) -> Vec<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    let line = status.lines().find_map(|l| l.strip_prefix("NSpid:")).expect("NSpid");
    line.split_whitespace().map(str::to_owned).collect()
}

#[test]
fn the_supervisor_runs_the_demo_as_pid_1_and_stops_it_in_reverse_order_on_docker_stop() {
    let project = Project::new("pid1");
    let network = project.network();
    let name = format!("{}-demo", project.0);
    let (image, label) = (docker::pid1_image(), project.label());
    docker_ok(&["run", "-d", "--name", &name, "--label", &label, "--network", &network, &image]);
    let logs = || docker_ok(&["logs", &name]);

    // every service healthy, then the SIGKILLed one reaped and back
    let services = demo_services();
    let restarted = wait_for(Duration::from_secs(30), || {
        let text = logs();
        let lines: Vec<&str> = text.lines().collect();
        let all = services.iter().all(|s| became_healthy(&lines, s));
        let killed = lines.iter().position(|l| l.contains("titan-hunter") && l.contains("restart #1"))?;
        (all && became_healthy(&lines[killed..], "titan-hunter")).then_some(())
    });
    assert!(restarted.is_some(), "not every service healthy, or no restart:\n{}", logs());

    // the supervisor is PID 1 in the container, and every service is its child
    let pid = docker_ok(&["inspect", "-f", "{{.State.Pid}}", &name]);
    assert_eq!(ns_pids(&pid).last().map(String::as_str), Some("1"), "host pid {pid}");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(cmdline.starts_with(b"/usr/local/bin/titan-supervisor\0demo\0"), "{cmdline:?}");
    let top = docker_ok(&["top", &name, "-o", "pid,ppid,args"]);
    let children: Vec<&str> = top.lines().filter(|l| l.contains("titan-testsvc")).collect();
    assert_eq!(children.len(), services.len(), "one process per service:\n{top}");
    for child in &children {
        assert_eq!(child.split_whitespace().nth(1), Some(pid.as_str()), "not a child of PID 1:\n{top}");
    }

    // docker stop: SIGTERM to PID 1, which stops everything in order and exits 0
    let grace = Duration::from_secs(20);
    let started = Instant::now();
    docker_ok(&["stop", "-t", &grace.as_secs().to_string(), &name]);
    let took = started.elapsed();
    let text = logs();
    let state = docker_ok(&["inspect", "-f", "{{.State.ExitCode}} {{.State.OOMKilled}}", &name]);
    assert_eq!(
        state, "0 false",
        "exit code, OOM-killed (137: SIGKILLed at the end of the grace period):\n{text}"
    );
    assert!(took < grace / 4, "docker stop took {took:?} of a {grace:?} grace period:\n{text}");
    let order = text
        .lines()
        .find_map(|l| l.strip_prefix("Stopped in reverse dependency order: "))
        .unwrap_or_else(|| panic!("no stop summary:\n{text}"));
    let order: Vec<&str> = order.split(", ").collect();
    assert_eq!(order.len(), services.len(), "every service stopped: {order:?}");
    let pos = |n: &str| order.iter().position(|s| *s == n).unwrap_or_else(|| panic!("{n} not in {order:?}"));
    assert!(pos("titan-console") < pos("titan-brain") && pos("titan-brain") < pos("titan-security"));
    assert!(pos("titan-security") < pos("postgres") && pos("titan-execution") < pos("titan-brain"));
}
