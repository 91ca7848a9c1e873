//! The log pipeline end to end: real services writing numbered lines through the real
//! supervisor, checked by reading every file back (rotated, gzipped and current).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::BIN;
use common::daemon::{Daemon, alive, svc, wait_for};
use titan_supervisor::logs::{compress, read, rotated};

const SEC: Duration = Duration::from_secs(1);

/// Every record of a service's log, in file order: (stream tag, payload).
fn records(dir: &Path, service: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for file in read::files(dir, service) {
        let bytes = compress::read_all(&file).unwrap_or_default();
        for rec in bytes.split(|&b| b == b'\n').filter(|r| !r.is_empty()) {
            let mut parts = rec.splitn(3, |&b| b == b' ');
            let (_stamp, tag, payload) = (parts.next(), parts.next(), parts.next());
            out.push((
                String::from_utf8_lossy(tag.unwrap_or_default()).into_owned(),
                payload.unwrap_or_default().to_vec(),
            ));
        }
    }
    out
}

/// Sequence numbers of the test service's numbered lines (`<name> out <seq> xxx`).
fn sequence(dir: &Path, service: &str) -> Vec<u64> {
    records(dir, service)
        .into_iter()
        .filter(|(tag, _)| tag == "out")
        .filter_map(|(_, p)| String::from_utf8_lossy(&p).split_whitespace().nth(2)?.parse().ok())
        .collect()
}

/// A supervisor on `services` (TOML) whose log_dir is `log_dir`; SIGTERMed when dropped.
struct Sup {
    child: std::process::Child,
    _cfg: tempfile::TempDir,
}

impl Sup {
    fn start(log_dir: &Path, services: &str) -> Sup {
        let cfg = tempfile::tempdir().unwrap();
        let text = format!(
            "[supervisor]\nproject = \"logs{}\"\nlog_dir = \"{}\"\nstate_dir = \"state\"\n\n{services}",
            std::process::id(),
            log_dir.display()
        );
        let path = common::write(cfg.path(), "services.toml", &text);
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Sup { child, _cfg: cfg }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for Sup {
    fn drop(&mut self) {
        let _ =
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), nix::sys::signal::Signal::SIGTERM);
        if wait_for(10 * SEC, || self.child.try_wait().ok().flatten()).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A test service printing numbered lines, as a service table.
fn numbered(name: &str, args: &str, logs: &str) -> String {
    format!(
        "[services.{name}]\ncommand = [\"{}\", \"--name\", \"{name}\", {args}]\nlogs = {{ {logs} }}\n",
        common::TESTSVC
    )
}

fn file_sizes(dir: &Path) -> BTreeMap<PathBuf, u64> {
    std::fs::read_dir(dir).unwrap().flatten().map(|e| (e.path(), e.metadata().unwrap().len())).collect()
}

#[test]
fn four_services_writing_flat_out_through_many_rotations_lose_and_repeat_nothing() {
    const LINES: u64 = 20_000;
    let mut config = String::from("[defaults]\nlogs = { max_size = \"256KiB\", max_files = 1000 }\n\n");
    for name in ["w1", "w2", "w3", "w4"] {
        let args = format!("\"--lines\", \"{LINES}\", \"--line-bytes\", \"200\", \"--lines-exit\"");
        config += &format!("[services.{name}]\n{}\n\n", svc(name, &args));
    }
    let d = Daemon::start(&config);
    for name in ["w1", "w2", "w3", "w4"] {
        d.wait_state(name, "exited", 60 * SEC);
    }
    for name in ["w1", "w2", "w3", "w4"] {
        let dir = d.path(&format!("logs/{name}"));
        // compression finishes in the background: wait until no plain rotated file is left
        let done =
            wait_for(60 * SEC, || rotated::list(&dir, name).iter().all(|r| r.compressed).then_some(()));
        assert!(done.is_some(), "{name}: rotated files left uncompressed: {:?}", rotated::list(&dir, name));
        let seq = sequence(&dir, name);
        assert_eq!(seq.len() as u64, LINES, "{name}: every line exactly once");
        assert!(seq.iter().copied().eq(1..=LINES), "{name}: in order, none lost or repeated");
        let files = rotated::list(&dir, name);
        assert!(files.len() >= 15, "{name}: {} rotations", files.len());
        for (path, size) in file_sizes(&dir) {
            assert!(size <= 256 * 1024, "{} has {size} bytes", path.display());
            assert!(!path.to_string_lossy().ends_with(".tmp"), "{} left behind", path.display());
        }
    }
}

#[test]
fn compression_a_crash_interrupted_is_finished_at_the_next_start() {
    // The state a SIGKILL can leave: a rotated file not yet compressed, a half-written
    // .gz.tmp, and a plain file whose .gz was already complete.
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("logs/app");
    std::fs::create_dir_all(&dir).unwrap();
    let lines = |from: u64, to: u64| -> String {
        (from..=to).map(|i| format!("2026-01-01T00:00:00.000Z out app out {i:010} x\n")).collect()
    };
    let pending = dir.join("app-20260101T000000.000Z.log");
    std::fs::write(&pending, lines(1, 100)).unwrap();
    std::fs::write(pending.with_extension("log.gz.tmp"), b"\x1f\x8b truncated").unwrap();
    let done = dir.join("app-20260101T000001.000Z.log");
    std::fs::write(&done, lines(101, 200)).unwrap();
    compress::gzip(&done).unwrap();
    std::fs::write(&done, lines(101, 200)).unwrap(); // the unlink never happened
    let sup = Sup::start(
        &root.path().join("logs"),
        &numbered("app", "\"--lines\", \"5\", \"--lines-exit\"", "max_files = 100"),
    );
    let finished = wait_for(20 * SEC, || {
        let r = rotated::list(&dir, "app");
        (r.len() == 2 && r.iter().all(|f| f.compressed) && !pending.with_extension("log.gz.tmp").exists())
            .then_some(r)
    });
    drop(sup);
    assert!(
        finished.is_some(),
        "{:?}",
        std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).collect::<Vec<_>>()
    );
    let seq = sequence(&dir, "app");
    assert!(
        seq[..200].iter().copied().eq(1..=200),
        "the prepared lines survive recovery exactly once: {seq:?}"
    );
}

#[test]
fn retention_deletes_by_age_and_by_count_but_never_the_current_log() {
    let d_dir = tempfile::tempdir().unwrap();
    let dir = d_dir.path().join("logs/app");
    std::fs::create_dir_all(&dir).unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(40 * 86_400);
    let mut made = Vec::new();
    for i in 0..6 {
        let path = dir.join(format!("app-2026010{i}T000000.000Z.log.gz"));
        let mut gz =
            flate2::write::GzEncoder::new(std::fs::File::create(&path).unwrap(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, b"2026-01-01T00:00:00.000Z out old\n").unwrap();
        let file = gz.finish().unwrap();
        // the two oldest are 40 days old, past `retain = 30d`
        if i < 2 {
            file.set_modified(old).unwrap();
        }
        made.push(path);
    }
    let args = "\"--lines\", \"200\", \"--line-bytes\", \"100\", \"--lines-exit\"";
    let sup = Sup::start(
        &d_dir.path().join("logs"),
        &numbered("app", args, "max_size = \"8KiB\", retain = \"30d\", max_files = 3"),
    );
    let kept = wait_for(20 * SEC, || {
        let r = rotated::list(&dir, "app");
        (made.iter().all(|m| !r.iter().any(|f| &f.path == m)) && r.len() == 3).then_some(r)
    });
    drop(sup);
    let kept = kept.unwrap_or_else(|| panic!("{:?}", rotated::list(&dir, "app")));
    assert_eq!(kept.len(), 3, "max_files");
    assert!(dir.join("current.log").exists());
}

/// A small tmpfs, unmounted when dropped.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status();
        assert!(ok.is_ok_and(|s| s.success()), "mounting a tmpfs needs root");
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

#[test]
fn a_full_disk_costs_lines_with_a_counted_marker_and_writing_resumes() {
    let fs = Tmpfs::mount("2M");
    let logs = fs.0.path().join("logs");
    let args = "\"--lines\", \"0\", \"--line-bytes\", \"100\", \"--rate\", \"2000\"";
    let sup = Sup::start(
        &logs,
        &numbered("chatty", args, "max_size = \"64KiB\", max_files = 100, compress = false"),
    );
    let dir = logs.join("chatty");
    wait_for(10 * SEC, || dir.join("current.log").exists().then_some(())).expect("logging started");
    // fill the disk, let lines arrive and find no room, then make room again
    let filler = fs.0.path().join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=64k", "count=64"])
        .arg(format!("of={}", filler.display()))
        .stderr(Stdio::null())
        .status();
    let full = wait_for(10 * SEC, || {
        let stat = nix::sys::statvfs::statvfs(fs.0.path()).ok()?;
        (stat.blocks_available() == 0).then_some(())
    });
    std::thread::sleep(Duration::from_millis(300)); // the service keeps writing into a full disk
    std::fs::remove_file(&filler).unwrap();
    let marker_at = |recs: &[(String, Vec<u8>)]| {
        recs.iter().position(|(_, p)| p.starts_with(b"[titan-supervisor] dropped "))
    };
    let resumed = wait_for(10 * SEC, || {
        let recs = records(&dir, "chatty");
        let at = marker_at(&recs)?;
        (recs.len() > at + 10).then(|| String::from_utf8_lossy(&recs[at].1).into_owned())
    });
    assert!(full.is_some(), "the tmpfs filled up");
    assert!(alive(sup.pid()), "the supervisor survives a full disk");
    let marker = resumed.expect("a marker counting the lost lines, then more lines");
    assert!(marker.ends_with(" lines: ENOSPC"), "{marker}");
}

#[test]
fn logs_prints_the_last_lines_and_follows_across_rotations() {
    let config = format!(
        "[services.ticker]\n{}\nlogs = {{ max_size = \"4KiB\", max_files = 1000 }}\n",
        svc(
            "ticker",
            "\"--lines\", \"300\", \"--line-bytes\", \"80\", \"--rate\", \"150\", \"--lines-exit\""
        )
    );
    let d = Daemon::start(&config);
    let cfg = d.path("services.toml");
    let cfg = cfg.to_str().unwrap();
    // follow from the start, while the service is still writing and rotating
    wait_for(5 * SEC, || d.path("logs/ticker/current.log").exists().then_some(())).unwrap();
    let out_path = d.path("follow.out");
    let mut follower = Command::new(BIN)
        .args(["logs", "ticker", "-f", "-n", "100000", "--config", cfg])
        .stdout(std::fs::File::create(&out_path).unwrap())
        .spawn()
        .unwrap();
    d.wait_state("ticker", "exited", 30 * SEC);
    let followed = wait_for(10 * SEC, || {
        let text = std::fs::read_to_string(&out_path).unwrap_or_default();
        text.contains("ticker out 0000000300").then_some(text)
    });
    let _ = follower.kill();
    let _ = follower.wait();
    let followed = followed.expect("the follower saw the last line");
    let seq: Vec<u64> = followed
        .lines()
        .filter(|l| l.contains(" out ticker out "))
        .filter_map(|l| l.split_whitespace().nth(4)?.parse().ok())
        .collect();
    assert!(
        seq.iter().copied().eq(1..=300),
        "every line once, in order, across rotations: {seq:?}\n{followed}"
    );
    assert!(rotated::list(&d.path("logs/ticker"), "ticker").len() >= 5);

    let last = Command::new(BIN).args(["logs", "ticker", "-n", "3", "--config", cfg]).output().unwrap();
    let text = String::from_utf8_lossy(&last.stdout);
    let tail: Vec<&str> = text.lines().collect();
    assert_eq!(tail.len(), 3, "{text}");
    assert!(tail[1].contains("ticker out 0000000300"), "{text}");
    assert!(tail[2].contains("[titan-supervisor] pid"), "{text}");

    let none =
        Command::new(BIN).args(["logs", "ticker", "--since", "1ms", "--config", cfg]).output().unwrap();
    assert!(none.stdout.is_empty() || String::from_utf8_lossy(&none.stdout).lines().count() <= 1);
    let unknown = Command::new(BIN).args(["logs", "nope", "--config", cfg]).output().unwrap();
    assert_eq!(unknown.status.code(), Some(2));
}

#[test]
fn a_service_flooding_its_output_starves_neither_other_logs_nor_supervision() {
    // `flood` writes as fast as it can for the whole test; `steady` writes 100 lines a second
    // and is killed halfway, so the actor has a restart to handle under the flood.
    let config = format!(
        "[defaults]\nlogs = {{ max_size = \"1MiB\", max_files = 5 }}\n\n[services.flood]\n{}\n\n[services.steady]\n{}\nhealth = {{ log = \"^ready$\" }}\n",
        svc("flood", "\"--lines\", \"0\", \"--line-bytes\", \"1000\""),
        svc("steady", "\"--lines\", \"0\", \"--line-bytes\", \"60\", \"--rate\", \"100\""),
    );
    let d = Daemon::start(&config);
    d.wait_state("steady", "healthy", 10 * SEC);
    let dir = d.path("logs/steady");
    let steady_lines = || sequence(&dir, "steady").len();
    // steady's lines keep arriving while flood rotates its files over and over
    wait_for(10 * SEC, || (steady_lines() >= 100).then_some(())).expect("steady's log grows under the flood");
    let pid = d.service_pid("steady").unwrap();
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    let back = d.wait_state_n("steady", "healthy", 2, 10 * SEC);
    assert_eq!(back.restarts, 1);
    let before = steady_lines();
    wait_for(10 * SEC, || (steady_lines() >= before + 100).then_some(())).expect("and after its restart");
    let flood_files = rotated::list(&d.path("logs/flood"), "flood").len();
    assert!(flood_files >= 2, "the flood really flooded ({flood_files} rotated files)");
    // each of steady's runs numbers its lines from 1, in order, with nothing lost in between
    let seq = sequence(&dir, "steady");
    let restart_at = seq.windows(2).position(|w| w[1] <= w[0]).expect("a second run") + 1;
    assert!(seq[..restart_at].iter().copied().eq(1..=restart_at as u64));
    assert!(seq[restart_at..].iter().copied().eq(1..=(seq.len() - restart_at) as u64));
}
