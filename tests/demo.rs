//! The README's first command: `titan-supervisor demo` brings up the six tiers, shows a
//! SIGKILLed service restarting, and stops everything in reverse order on Ctrl-C.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::BIN;
use common::daemon::wait_for;

/// Ctrl-C to the demo, and its exit status (it is killed if it does not stop within 10 s).
fn ctrl_c(child: &mut std::process::Child) -> Option<std::process::ExitStatus> {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
    let status = wait_for(Duration::from_secs(10), || child.try_wait().ok().flatten());
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    status
}

/// The demo listens on fixed ports: one demo at a time.
static ONE_DEMO: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn the_demo_runs_the_six_tiers_restarts_a_killed_service_and_stops_in_order() {
    let _one = ONE_DEMO.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("demo.out");
    let out = std::fs::File::create(&out_path).unwrap();
    let mut child = Command::new(BIN)
        .args(["demo", "--dir"])
        .arg(dir.path().join("demo"))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::null()) // a leftover would hold the test's own stderr open
        .spawn()
        .unwrap();
    let output = || std::fs::read_to_string(&out_path).unwrap_or_default();
    let restarted = wait_for(Duration::from_secs(20), || {
        let text = output();
        let lines: Vec<&str> = text.lines().collect();
        let killed = lines.iter().position(|l| l.contains("titan-hunter") && l.contains("restart #1"))?;
        let back =
            lines[killed..].iter().any(|l| l.contains("titan-hunter") && l.contains("starting -> healthy"));
        back.then_some(text)
    });
    let status = ctrl_c(&mut child);
    let text = output();
    assert!(restarted.is_some(), "no restart shown:\n{text}");
    assert!(text.contains("(killed by SIGKILL)  restart #1"), "{text}");
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{text}");
    let order =
        text.lines().find_map(|l| l.strip_prefix("Stopped in reverse dependency order: ")).expect("summary");
    let order: Vec<&str> = order.split(", ").collect();
    assert_eq!(order.len(), 10, "every long-running service stopped: {order:?}");
    let pos = |n: &str| order.iter().position(|s| *s == n).unwrap();
    assert!(pos("titan-console") < pos("titan-brain") && pos("titan-brain") < pos("titan-security"));
    assert!(pos("titan-security") < pos("postgres") && pos("titan-execution") < pos("titan-brain"));
    assert!(text.contains("Restarts: titan-hunter ×1"));
}

#[test]
fn the_demo_works_for_an_unprivileged_user_without_cgroups() {
    let _one = ONE_DEMO.lock().unwrap_or_else(|p| p.into_inner());
    // `nobody` cannot write cgroups, and the demo needs none: it uses soft caps only.
    let dir = tempfile::tempdir().unwrap();
    let demo_dir = format!("/tmp/titan-demo-nobody-{}", std::process::id());
    let out_path = dir.path().join("demo.out");
    // setpriv execs the demo in place, so signals reach it directly
    let mut child = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--", BIN, "demo", "--dir", &demo_dir])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(Stdio::null()) // a leftover would hold the test's own stderr open
        .spawn()
        .expect("setpriv (util-linux)");
    let output = || std::fs::read_to_string(&out_path).unwrap_or_default();
    let up = wait_for(Duration::from_secs(20), || output().contains("All services are up").then_some(()));
    let status = ctrl_c(&mut child);
    let _ = std::fs::remove_dir_all(&demo_dir);
    let text = output();
    assert!(up.is_some(), "{text}");
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{text}");
    assert!(text.contains("Stopped in reverse dependency order: "), "{text}");
}
