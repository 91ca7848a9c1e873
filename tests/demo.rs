//! The README's first command: `titan-supervisor demo` brings up the six tiers, shows a
//! SIGKILLed service restarting, makes two releases of its own graph and switches to them (a
//! good one verified, a bad one rolled back by itself), and stops everything in reverse order
//! on Ctrl-C.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::BIN;
use common::daemon::wait_for;

/// The line the demo prints once its deploy tour has ended, and the one if it went wrong.
const TOUR_OVER: &str = "The deploy tour is over";
const TOUR_FAILED: &str = "The deploy tour failed";

/// Ctrl-C to the demo, and its exit status (it is killed if it does not stop within 10 s).
fn ctrl_c(child: &mut Child) -> Option<std::process::ExitStatus> {
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

/// `titan-supervisor demo --dir DIR`, its stdout into `out`.
fn demo(dir: &Path, out: &Path) -> Child {
    Command::new(BIN)
        .args(["demo", "--dir"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(out).unwrap())
        .stderr(Stdio::null()) // a leftover would hold the test's own stderr open
        .spawn()
        .unwrap()
}

/// Waits until the demo's tour has ended (either way) and returns the output so far.
fn tour_ended(out: &Path) -> Option<String> {
    wait_for(Duration::from_secs(40), || {
        let text = std::fs::read_to_string(out).unwrap_or_default();
        (text.contains(TOUR_OVER) || text.contains(TOUR_FAILED)).then_some(text)
    })
}

#[test]
fn the_demo_runs_the_six_tiers_restarts_a_killed_service_and_stops_in_order() {
    let _one = ONE_DEMO.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("demo.out");
    let mut child = demo(&dir.path().join("demo"), &out_path);
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
    assert!(!text.contains(TOUR_FAILED), "{text}");
}

/// The lines of `text` from the first that starts with `from` up to the next that starts with
/// `to` (or the end).
fn section<'a>(text: &'a str, from: &str, to: &str) -> Vec<&'a str> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.iter().position(|l| l.starts_with(from)).unwrap_or_else(|| panic!("{from}:\n{text}"));
    let end =
        lines[start + 1..].iter().position(|l| l.starts_with(to)).map_or(lines.len(), |e| start + 1 + e);
    lines[start..end].to_vec()
}

/// A line of the demo's before and after: `  untouched: nats   pid 12 → 12, restarts 0 → 0`,
/// `  recreated: titan-brain   pid 13 → 20`.
#[derive(Debug)]
struct Compared<'a> {
    kind: &'a str,
    name: &'a str,
    pids: (i32, i32),
    restarts: Option<(u32, u32)>,
}

fn compared(line: &str) -> Option<Compared<'_>> {
    let (kind, rest) = line.trim().split_once(": ")?;
    let words: Vec<&str> = rest.split([' ', ',']).filter(|w| !w.is_empty()).collect();
    let [name, "pid", a, "→", b, rest @ ..] = words.as_slice() else { return None };
    let restarts = match rest {
        ["restarts", ra, "→", rb] => Some((ra.parse().ok()?, rb.parse().ok()?)),
        _ => None,
    };
    Some(Compared { kind, name, pids: (a.parse().ok()?, b.parse().ok()?), restarts })
}

/// The rows of the `releases` table, each cell cut at the header's column starts.
fn releases_table(lines: &[&str]) -> Vec<Vec<String>> {
    let header = lines.iter().position(|l| l.starts_with("RELEASE ")).expect("releases header");
    let columns: Vec<usize> = ["RELEASE", "CURRENT", "LKG", "LAST OUTCOME", "BAD"]
        .iter()
        .map(|c| lines[header].find(c).unwrap())
        .collect();
    lines[header + 1..]
        .iter()
        .take_while(|l| !l.trim().is_empty())
        .map(|row| {
            let cell = |i: usize| {
                let end = columns.get(i + 1).copied().unwrap_or(row.len()).min(row.len());
                row.get(columns[i]..end).unwrap_or("").trim().to_owned()
            };
            (0..columns.len()).map(cell).collect()
        })
        .collect()
}

#[test]
fn the_demo_switches_to_a_good_release_and_rolls_a_bad_one_back_by_itself() {
    let _one = ONE_DEMO.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("demo.out");
    let started = std::time::Instant::now();
    let mut child = demo(&dir.path().join("demo"), &out_path);
    let ended = tour_ended(&out_path);
    let took = started.elapsed();
    let status = ctrl_c(&mut child);
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    assert!(ended.is_some_and(|t| t.contains(TOUR_OVER)), "the tour did not end well:\n{text}");
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{text}");
    eprintln!("the demo's tour ended {:.1} s after its start", took.as_secs_f64());

    // two releases made, two switches
    let made: Vec<&str> =
        text.lines().filter(|l| l.starts_with("$ titan-supervisor release create --config ")).collect();
    assert_eq!(made.len(), 2, "{text}");
    let switched: Vec<&str> =
        text.lines().filter_map(|l| l.strip_prefix("$ titan-supervisor switch ")).collect();
    let [good, bad] = switched[..] else { panic!("two switches:\n{text}") };
    let releases = dir.path().join("demo/releases");
    assert!(releases.join(good).join("release.json").is_file() && releases.join(bad).is_dir());

    // the good one: every step, verified, only titan-brain and titan-execution recreated
    let first = section(&text, &format!("$ titan-supervisor switch {good}"), "Release 2 ");
    for step in ["lock", "validate", "pull", "disarm", "swap", "apply", "verify"] {
        assert!(first.iter().any(|l| l.starts_with(&format!("  {step} "))), "{step}:\n{}", first.join("\n"));
    }
    assert!(first.iter().any(|l| l.starts_with("  verify ") && l.contains(" ok ")), "{}", first.join("\n"));
    assert!(first.contains(&format!("verified {good}").as_str()), "{}", first.join("\n"));
    let compared: Vec<Compared> = first.iter().filter_map(|l| compared(l)).collect();
    let recreated: Vec<&Compared> = compared.iter().filter(|c| c.kind == "recreated").collect();
    let names: Vec<&str> = recreated.iter().map(|c| c.name).collect();
    assert_eq!(names, ["titan-brain", "titan-execution"], "{}", first.join("\n"));
    for c in recreated {
        assert_ne!(c.pids.0, c.pids.1, "{} was recreated: a new pid", c.name);
    }
    let untouched: Vec<&Compared> = compared.iter().filter(|c| c.kind == "untouched").collect();
    assert_eq!(untouched.len(), 8, "every other long-running service: {}", first.join("\n"));
    for c in untouched {
        assert_eq!(c.pids.0, c.pids.1, "{} kept its pid", c.name);
        let (before, after) = c.restarts.expect("restart counts shown");
        assert_eq!(before, after, "{} kept its restart count", c.name);
        assert_eq!(
            after,
            u32::from(c.name == "titan-hunter"),
            "{}: only the killed service restarted",
            c.name
        );
    }
    assert!(text.contains(&format!("Passed: {good} is the last known good release.")), "{text}");

    // the bad one: its policy hash differs, verification fails, rolled back by itself
    let second = section(&text, &format!("$ titan-supervisor switch {bad}"), "$ titan-supervisor releases");
    let shown = second.join("\n");
    for step in ["lock", "validate", "swap", "apply", "rollback swap", "rollback apply", "rollback verify"] {
        assert!(second.iter().any(|l| l.starts_with(&format!("  {step} "))), "{step}:\n{shown}");
    }
    let verify = second.iter().find(|l| l.starts_with("  verify ")).expect(&shown);
    assert!(verify.contains(" failed ") && verify.contains("differs: a=v2 b=v3"), "both hashes: {verify}");
    assert!(second.iter().any(|l| l.starts_with(&format!("rolled_back {bad}: "))), "{shown}");
    assert!(second.iter().any(|l| l.starts_with("  rollback verify ") && l.contains(" ok ")), "{shown}");

    // the releases table, last: the bad one BAD, the good one current and last known good
    let listing = section(&text, "$ titan-supervisor releases", TOUR_OVER);
    let rows = releases_table(&listing);
    let row = |id: &str| rows.iter().find(|r| r[0] == id).unwrap_or_else(|| panic!("{id}: {rows:?}")).clone();
    assert_eq!(row(good)[1..4], ["*", "*", "verified"], "{rows:?}");
    assert_eq!(row(bad)[1..4], ["", "", "rolled_back"], "{rows:?}");
    assert!(row(bad)[4].contains("differs: a=v2 b=v3"), "marked BAD with the reason: {rows:?}");
    assert!(releases.join(bad).join("BAD").is_file());
    assert_eq!(std::fs::read_link(dir.path().join("demo/current")).unwrap().file_name().unwrap(), good);
}

#[test]
fn ctrl_c_during_the_demos_first_switch_still_stops_everything_and_exits_0() {
    let _one = ONE_DEMO.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("demo.out");
    let mut child = demo(&dir.path().join("demo"), &out_path);
    let switching = wait_for(Duration::from_secs(30), || {
        let text = std::fs::read_to_string(&out_path).unwrap_or_default();
        text.contains("$ titan-supervisor switch ").then_some(())
    });
    let status = ctrl_c(&mut child);
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    assert!(switching.is_some(), "{text}");
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{text}");
    assert!(text.contains("Stopped in reverse dependency order: "), "{text}");
    assert!(!text.contains(TOUR_OVER) && !text.contains(TOUR_FAILED), "the tour went quiet: {text}");
}

#[test]
fn the_demo_works_for_an_unprivileged_user_without_cgroups() {
    let _one = ONE_DEMO.lock().unwrap_or_else(|p| p.into_inner());
    // `nobody` cannot write cgroups, and the demo needs none: it uses soft caps only. Its tour
    // talks to the control socket as `nobody` too.
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
    let ended = tour_ended(&out_path);
    let status = ctrl_c(&mut child);
    let _ = std::fs::remove_dir_all(&demo_dir);
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    assert!(text.contains("All services are up"), "{text}");
    assert!(ended.is_some_and(|t| t.contains(TOUR_OVER)), "the tour did not end well:\n{text}");
    assert!(text.contains("\nverified ") && text.contains("\nrolled_back "), "{text}");
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{text}");
    assert!(text.contains("Stopped in reverse dependency order: "), "{text}");
}
