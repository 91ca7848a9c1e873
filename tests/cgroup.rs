//! Service cgroups on the real machine (whatever hierarchy it has): real children join before
//! exec, get measured, OOM-killed, fork-capped and killed as a group. Needs root; skipped with
//! a printed reason otherwise. Every cgroup is removed by a guard, every wait has a deadline.

use std::io::{self, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use titan_supervisor::runtime::cgroup::{
    CgroupError, Cgroups, Limits, ServiceCgroup, join_current,
};

const MIB: u64 = 1 << 20;
const DEADLINE: Duration = Duration::from_secs(20);

/// A service cgroup and the children started in it; killed, reaped and removed on drop.
struct Guard {
    cgroup: ServiceCgroup,
    children: Vec<Child>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let killed = self.cgroup.kill_all();
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let removed = self.cgroup.remove();
        if !std::thread::panicking() {
            killed.expect("kill_all in cleanup");
            removed.expect("remove in cleanup");
        }
    }
}

fn prefix() -> String {
    format!("titan-it-{}", std::process::id())
}

/// The machine's cgroups, or `None` (with the reason printed) when not root.
fn cgroups(test: &str) -> Option<Cgroups> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipping {test}: needs root to create cgroups");
        return None;
    }
    Some(Cgroups::detect().expect("detect this machine's cgroups"))
}

fn create(cgroups: &Cgroups, service: &str, limits: Limits) -> Guard {
    let cgroup = cgroups
        .create(&prefix(), service, &limits)
        .expect("create the cgroup");
    Guard {
        cgroup,
        children: Vec::new(),
    }
}

impl Guard {
    /// Starts `sh -c script` inside the cgroup (joined between fork and exec); returns its pid.
    fn spawn(&mut self, script: &str) -> i32 {
        let files = self.cgroup.join_files().to_vec();
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        cmd.stderr(Stdio::piped());
        // SAFETY: the closure only calls join_current, which is async-signal-safe (raw
        // open/write/close, no allocation, no lock), and builds an io::Error from an errno,
        // which does not allocate.
        unsafe {
            cmd.pre_exec(move || join_current(&files).map_err(io::Error::from_raw_os_error));
        }
        let child = cmd.spawn().expect("spawn sh");
        let pid = i32::try_from(child.id()).expect("pid fits i32");
        self.children.push(child);
        pid
    }

    /// Waits for the child started `index`-th to exit; returns its status and stderr.
    fn wait(&mut self, index: usize) -> (ExitStatus, String) {
        let child = &mut self.children[index];
        let status = wait_for("the child to exit", || child.try_wait().expect("try_wait"));
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            pipe.read_to_string(&mut stderr).expect("read stderr");
        }
        (status, stderr)
    }
}

/// Polls `probe` until it yields a value, failing the test after [`DEADLINE`].
fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn pids_in(procs: &Path) -> Vec<i32> {
    let text = std::fs::read_to_string(procs).expect("read cgroup.procs");
    text.lines().map(|l| l.parse().expect("a pid")).collect()
}

#[test]
fn a_child_joins_before_exec_is_measured_killed_with_its_children_and_removed() {
    let Some(cgroups) = cgroups("join/measure/kill/remove") else {
        return;
    };
    let limits = Limits {
        memory_max: Some(32 * MIB),
        pids_max: Some(16),
    };
    let mut guard = create(&cgroups, "basic", limits);
    let pid = guard.spawn("sleep 30 & sleep 30 & wait");
    let cg = &guard.cgroup;
    wait_for("sh and its two sleeps inside", || {
        let pids = cg.pids().expect("pids");
        (pids.contains(&pid) && pids.len() == 3).then_some(())
    });
    for dir in cg.dirs() {
        let inside = pids_in(&dir.join("cgroup.procs"));
        assert!(
            inside.contains(&pid),
            "{pid} not in {}: {inside:?}",
            dir.display()
        );
    }
    let usage = wait_for("memory to be charged", || {
        Some(cg.memory_current().expect("memory_current")).filter(|b| *b > 0)
    });
    assert!(usage < 32 * MIB, "usage {usage}");
    assert_eq!(cg.kill_all().expect("kill_all"), 3, "sh and both sleeps");
    assert!(
        cg.pids().expect("pids").is_empty(),
        "zombies are not listed"
    );
    let (status, _) = guard.wait(0);
    assert_eq!(status.signal(), Some(9), "{status:?}");
    guard.cgroup.remove().expect("remove");
    for dir in guard.cgroup.dirs() {
        assert!(!dir.exists(), "{} still there", dir.display());
    }
}

#[test]
fn the_limits_read_back_from_the_kernel() {
    let Some(cgroups) = cgroups("limits read back") else {
        return;
    };
    let limits = Limits {
        memory_max: Some(32 * MIB + 1000), // not a page multiple: the kernel rounds it down
        pids_max: Some(16),
    };
    let guard = create(&cgroups, "limits", limits);
    let dirs = guard.cgroup.dirs();
    let read = |dir: &Path, file: &str| std::fs::read_to_string(dir.join(file)).expect(file);
    match cgroups.version() {
        1 => {
            assert_eq!(read(&dirs[0], "memory.limit_in_bytes").trim(), "33554432");
            assert_eq!(read(&dirs[1], "pids.max").trim(), "16");
        }
        _ => {
            assert_eq!(read(&dirs[0], "memory.max").trim(), "33554432");
            assert_eq!(read(&dirs[0], "pids.max").trim(), "16");
        }
    }
}

#[test]
fn a_child_over_the_memory_cap_is_oom_killed_and_counted() {
    let Some(cgroups) = cgroups("OOM kill") else {
        return;
    };
    let limits = Limits {
        memory_max: Some(32 * MIB),
        pids_max: None,
    };
    let mut guard = create(&cgroups, "oom", limits);
    let before = guard.cgroup.oom_kills().expect("oom_kills");
    // The shell holds the whole 100 MB command substitution in memory.
    guard.spawn("x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived >&2");
    let (status, stderr) = guard.wait(0);
    assert_eq!(status.signal(), Some(9), "{status:?}, stderr {stderr:?}");
    let kills = guard.cgroup.oom_kills().expect("oom_kills");
    assert!(kills > before, "oom_kill went {before} -> {kills}");
}

#[test]
fn the_pids_cap_stops_a_fork_bomb() {
    let Some(cgroups) = cgroups("pids cap") else {
        return;
    };
    let limits = Limits {
        memory_max: Some(64 * MIB),
        pids_max: Some(16),
    };
    let mut guard = create(&cgroups, "forks", limits);
    // The sleeps must not hold the stderr pipe, or reading it would wait for them.
    let script = "i=0; while [ $i -lt 40 ]; do sleep 30 2>/dev/null & i=$((i+1)); done; \
                  echo all forked >&2";
    guard.spawn(script);
    let (status, stderr) = guard.wait(0);
    assert!(
        !stderr.contains("all forked"),
        "40 forks under a cap of 16: {stderr:?}"
    );
    assert!(
        stderr.to_lowercase().contains("fork"),
        "{status:?}: {stderr:?}"
    );
    let left = guard.cgroup.pids().expect("pids");
    assert!(
        !left.is_empty() && left.len() <= 16,
        "{} processes left",
        left.len()
    );
    if cgroups.version() == 1 {
        let events = std::fs::read_to_string(guard.cgroup.dirs()[1].join("pids.events"));
        let refused = events
            .expect("pids.events")
            .trim()
            .strip_prefix("max ")
            .map(str::to_owned);
        assert!(
            refused.is_some_and(|n| n != "0"),
            "pids.events counts the refused fork"
        );
    }
    assert!(guard.cgroup.kill_all().expect("kill_all") >= left.len());
}

#[test]
fn a_cgroup_still_holding_processes_is_not_reused() {
    let Some(cgroups) = cgroups("no reuse while busy") else {
        return;
    };
    let mut guard = create(&cgroups, "busy", Limits::default());
    let pid = guard.spawn("exec sleep 30");
    let cg = &guard.cgroup;
    wait_for("the child inside", || {
        cg.pids().expect("pids").contains(&pid).then_some(())
    });
    let err = cgroups
        .create(&prefix(), "busy", &Limits::default())
        .unwrap_err();
    assert!(
        matches!(&err, CgroupError::NotEmpty { pids, .. } if pids.contains(&pid)),
        "{err}"
    );
    let existing = cgroups.existing(&prefix(), "busy").expect("existing");
    assert_eq!(
        existing.map(|e| e.dirs().to_vec()),
        Some(cg.dirs().to_vec())
    );
}
