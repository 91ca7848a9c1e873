//! The README's first command: `titan-supervisor demo` brings up the six tiers, shows a
//! SIGKILLed service restarting, and stops everything in reverse order on Ctrl-C.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::BIN;
use common::daemon::wait_for;

#[test]
fn the_demo_runs_the_six_tiers_restarts_a_killed_service_and_stops_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("demo.out");
    let out = std::fs::File::create(&out_path).unwrap();
    let mut child = Command::new(BIN)
        .args(["demo", "--dir"])
        .arg(dir.path().join("demo"))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let output = || std::fs::read_to_string(&out_path).unwrap_or_default();
    let restarted = wait_for(Duration::from_secs(20), || {
        let text = output();
        let lines: Vec<&str> = text.lines().collect();
        let killed = lines
            .iter()
            .position(|l| l.contains("titan-hunter") && l.contains("restart #1"))?;
        let back = lines[killed..]
            .iter()
            .any(|l| l.contains("titan-hunter") && l.contains("starting -> healthy"));
        back.then_some(text)
    });
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    );
    let status = wait_for(Duration::from_secs(10), || child.try_wait().ok().flatten());
    if status.is_none() {
        let _ = child.kill();
    }
    let text = output();
    assert!(restarted.is_some(), "no restart shown:\n{text}");
    assert!(text.contains("(killed by SIGKILL)  restart #1"), "{text}");
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{text}");
    let order = text
        .lines()
        .find_map(|l| l.strip_prefix("Stopped in reverse dependency order: "))
        .expect("summary");
    let order: Vec<&str> = order.split(", ").collect();
    assert_eq!(
        order.len(),
        10,
        "every long-running service stopped: {order:?}"
    );
    let pos = |n: &str| order.iter().position(|s| *s == n).unwrap();
    assert!(
        pos("titan-console") < pos("titan-brain") && pos("titan-brain") < pos("titan-security")
    );
    assert!(pos("titan-security") < pos("postgres") && pos("titan-execution") < pos("titan-brain"));
    assert!(text.contains("Restarts: titan-hunter ×1"));
}
