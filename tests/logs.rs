//! The log pipeline end to end: real services writing numbered lines through the real
//! supervisor, checked by reading every file back (rotated, gzipped and current).

mod common;

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

/// A `logs -f` of `service` from the start of its log, printing into `out`; `--socket` given,
/// it reads through that daemon, else straight from the files (a socket nobody listens on).
fn follower(cfg: &str, service: &str, socket: Option<&Path>, out: &Path) -> std::process::Child {
    let mut cmd = Command::new(BIN);
    cmd.args(["logs", service, "-f", "-n", "1000000000", "--config", cfg]);
    if socket.is_none() {
        cmd.args(["--socket", "/nonexistent/titan.sock"]);
    }
    cmd.stdout(std::fs::File::create(out).unwrap()).stderr(Stdio::null()).spawn().unwrap()
}

/// The last 4 KiB of `path`, as text.
fn tail_of(path: &Path) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else { return String::new() };
    let _ = f.seek(SeekFrom::End(-4096)).or_else(|_| f.seek(SeekFrom::Start(0)));
    let mut text = String::new();
    let _ = f.read_to_string(&mut text);
    text
}

/// The sequence numbers of what a follower printed of `name`'s numbered lines (64 bytes each),
/// and every printed line that is not a whole record: a stamp, `out` and a numbered line (or
/// one that is `also`), or `err` and a note of the supervisor.
fn followed_numbers(text: &str, name: &str, also: impl Fn(&str) -> bool) -> (Vec<u64>, Vec<String>) {
    let (mut seq, mut bad) = (Vec::new(), Vec::new());
    for line in text.lines() {
        let mut parts = line.splitn(3, ' ');
        let (stamp, tag, payload) = (parts.next(), parts.next(), parts.next().unwrap_or_default());
        let stamped = stamp.is_some_and(|s| humantime::parse_rfc3339_weak(s).is_ok());
        let number = payload
            .strip_prefix(&format!("{name} out "))
            .and_then(|rest| rest.split_once(' '))
            .filter(|(n, xs)| n.len() == 10 && *xs == "x".repeat(64 - 22))
            .and_then(|(n, _)| n.parse::<u64>().ok());
        match (stamped, tag, number) {
            (true, Some("out"), Some(n)) => seq.push(n),
            (true, Some("out"), None) if also(payload) => {}
            (true, Some("err"), _) if payload.starts_with("[titan-supervisor] ") => {}
            _ => bad.push(line.to_owned()),
        }
    }
    (seq, bad)
}

/// Where `seq` first differs from `1..=n`, for a failure message.
fn first_break(seq: &[u64], n: u64) -> String {
    match seq.iter().zip(1..=n).position(|(got, want)| *got != want) {
        Some(i) => format!("at index {i}: {} where {} was due ({} lines printed)", seq[i], i + 1, seq.len()),
        None => format!("{} lines printed of {n}", seq.len()),
    }
}

#[test]
fn logs_follow_during_fast_rotation_loses_no_file_and_prints_no_torn_line() {
    // regression: `logs -f` during fast rotation skipped a whole rotated file (105,916 lines)
    // when current.log was rotated twice between two polls, and printed a torn 4-byte
    // fragment, while the files on disk were complete
    const LINES: u64 = 150_000;
    // 64-byte lines at 50,000 a second into 4 KiB files: some 800 rotations a second, each
    // file gzipped behind the writer; the flood waits for `go`, so that a follower is ready
    let flood = format!(
        "[services.flood]\ncommand = [\"sh\", \"-c\", \"echo waiting for go; until [ -e {{dir}}/go ]; do sleep 0.01; done; exec {} --name flood --lines {LINES} --line-bytes 64 --rate 50000\"]\nlogs = {{ max_size = \"4KiB\", max_files = 100000 }}\n",
        common::TESTSVC
    );
    let d = Daemon::start(&flood);
    let cfg = d.path("services.toml");
    let cfg = cfg.to_str().unwrap();
    let current = d.path("logs/flood/current.log");
    wait_for(10 * SEC, || current.exists().then_some(())).expect("the flood's log");
    // one follower from before the flood, through the daemon
    let early_out = d.path("early.out");
    let mut early = follower(cfg, "flood", Some(&d.path("s.sock")), &early_out);
    wait_for(10 * SEC, || tail_of(&early_out).contains(" out waiting for go").then_some(()))
        .expect("the early follower prints the first line");
    std::fs::write(d.path("go"), "").unwrap();
    // one from the middle of it, reading the files: it starts on a log rotating under it
    let dir = d.path("logs/flood");
    wait_for(10 * SEC, || (rotated::list(&dir, "flood").len() >= 200).then_some(())).expect("rotations");
    let late_out = d.path("late.out");
    let mut late = follower(cfg, "flood", None, &late_out);
    let last = format!("flood out {LINES:010} ");
    let saw = |path: &Path| tail_of(path).contains(&last);
    wait_for(20 * SEC, || (saw(&early_out) && saw(&late_out)).then_some(()));
    let (early_saw, late_saw) = (saw(&early_out), saw(&late_out));
    for f in [&mut early, &mut late] {
        let _ = f.kill();
        let _ = f.wait();
    }
    let rotations = rotated::list(&dir, "flood").len();
    assert!(rotations >= 1000, "the log rotated {rotations} times");
    // what the shell and the test service say besides their numbered lines
    let chatter = |p: &str| ["waiting for go", "ready"].contains(&p) || p.starts_with("flood started pid=");
    let mut wrong = Vec::new();
    for (who, out, saw) in [("early", &early_out, early_saw), ("late", &late_out, late_saw)] {
        let text = std::fs::read_to_string(out).unwrap();
        let (seq, bad) = followed_numbers(&text, "flood", chatter);
        if !bad.is_empty() {
            wrong.push(format!("{who}: {} torn lines, the first: {:?}", bad.len(), &bad[..bad.len().min(3)]));
        }
        if !seq.iter().copied().eq(1..=LINES) {
            wrong.push(format!("{who}: a line lost or repeated {}", first_break(&seq, LINES)));
        }
        if !saw {
            wrong.push(format!("{who}: the last line never came"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A line of `len` bytes in which no two 64 KiB pieces look alike.
fn long_line(len: usize) -> String {
    let chars = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len).map(|i| char::from(chars[(i * 7 + i / 65_536) % chars.len()])).collect()
}

/// `logs SERVICE ARGS` on `d`'s config, through the daemon or else from the files (a socket
/// nobody listens on); `-f` runs until what it printed holds `until`. Killed at `deadline`.
fn logs_of(
    d: &Daemon,
    service: &str,
    args: &[&str],
    through_daemon: bool,
    until: &str,
    deadline: Instant,
) -> String {
    let socket = if through_daemon { d.path("s.sock") } else { PathBuf::from("/nonexistent/titan.sock") };
    let out_path = d.path(&format!("{service}.out"));
    let mut child = Command::new(BIN)
        .args(["logs", service])
        .args(args)
        .arg("--config")
        .arg(d.path("services.toml"))
        .arg("--socket")
        .arg(&socket)
        .stdout(std::fs::File::create(&out_path).unwrap())
        .spawn()
        .unwrap();
    let printed = || std::fs::read_to_string(&out_path).unwrap_or_default();
    if args.contains(&"-f") {
        wait_for(deadline.saturating_duration_since(Instant::now()), || {
            printed().contains(until).then_some(())
        });
        let _ = child.kill();
    }
    let limit = deadline.saturating_duration_since(Instant::now());
    let status = common::wait_or_kill(&mut child, limit, &format!("logs {service} {args:?}"));
    assert!(status.success() || args.contains(&"-f"), "logs {service} {args:?}: {status}");
    printed()
}

/// The line each printed record carries: after `<stamp> out ` in text, `line` in JSON (marked
/// when the record still says it is continued).
fn printed_lines(text: &str, json: bool) -> Vec<String> {
    let line_of = |rec: &str| -> String {
        if !json {
            return rec.splitn(3, ' ').nth(2).unwrap_or("<not a record>").to_owned();
        }
        let v: serde_json::Value = serde_json::from_str(rec).unwrap_or_default();
        let partial = if v.get("partial").is_some() { " (partial)" } else { "" };
        format!("{}{partial}", v["line"].as_str().unwrap_or("<not a record>"))
    };
    text.lines().map(line_of).collect()
}

#[test]
fn logs_n_rejoins_a_line_the_writer_split_and_counts_it_once() {
    // regression: a line longer than a record may be (64 KiB, then halved to fit max_size) is
    // stored as pieces marked continued (`out+`, `"partial": true`); `logs` printed the pieces
    // and `-n 3` counted them, printing the last three pieces of the long line
    let long = long_line(200_000);
    let service = |name: &str, format: &str| {
        format!(
            "[services.{name}]\ncommand = [\"sh\", \"-c\", \"cat {{dir}}/lines.txt; exec sleep 3600\"]\nlogs = {{ max_size = \"16KiB\", max_files = 1000, format = \"{format}\" }}\n\n"
        )
    };
    let lines = format!("before\n{long}\nafter\n");
    let d = Daemon::start_prepared(&(service("plain", "text") + &service("json", "json")), move |dir| {
        std::fs::write(dir.join("lines.txt"), lines).unwrap();
    });
    let want = ["before".to_owned(), long, "after".to_owned()];
    let deadline = Instant::now() + 40 * SEC;
    for (name, json) in [("plain", false), ("json", true)] {
        let dir = d.path(&format!("logs/{name}"));
        let stored = || {
            read::files(&dir, name)
                .iter()
                .flat_map(|f| compress::read_all(f).unwrap_or_default())
                .collect::<Vec<u8>>()
        };
        let done = wait_for(10 * SEC, || {
            let all = stored();
            String::from_utf8_lossy(&all[all.len().saturating_sub(100)..]).contains("after").then_some(())
        });
        done.unwrap_or_else(|| panic!("{name}: the service's lines reach its log"));
        let files = rotated::list(&dir, name).len();
        assert!(files >= 10, "{name}: the long line's pieces span {files} rotated files");
        for through_daemon in [true, false] {
            let how =
                format!("{name} {}", if through_daemon { "through the daemon" } else { "from the files" });
            for args in [&["-n", "3"][..], &["-f", "-n", "3"], &["--since", "1h"]] {
                let printed =
                    printed_lines(&logs_of(&d, name, args, through_daemon, "after", deadline), json);
                let shown: Vec<String> =
                    printed.iter().map(|l| format!("{:.30} ({} bytes)", l, l.len())).collect();
                let last3 = &printed[printed.len().saturating_sub(3)..];
                assert!(last3 == want, "{how}, {args:?}: the long line whole, byte for byte: {shown:?}");
                if args[0] == "-n" || args[0] == "-f" {
                    assert_eq!(printed.len(), 3, "{how}, {args:?}: three lines: {shown:?}");
                }
            }
        }
    }
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

/// A text record as the writer formats it: `<stamp> out <line>`.
fn record(t: SystemTime, line: &str) -> String {
    format!("{} out {line}\n", humantime::format_rfc3339_millis(t))
}

/// Writes `text` as a rotated file of `service` named for `rotated_at`, gzipped or not.
fn write_rotated(dir: &Path, service: &str, rotated_at: SystemTime, gz: bool, text: &[u8]) -> PathBuf {
    let plain = rotated::fresh_name(dir, service, rotated_at);
    if !gz {
        std::fs::write(&plain, text).unwrap();
        return plain;
    }
    let path = plain.with_extension("log.gz");
    let mut enc =
        flate2::write::GzEncoder::new(std::fs::File::create(&path).unwrap(), flate2::Compression::fast());
    enc.write_all(text).unwrap();
    enc.finish().unwrap();
    path
}

/// `read::print` of `service` in `dir` into a string.
fn printed(dir: &Path, service: &str, select: read::Select) -> String {
    let mut out = Vec::new();
    read::print(dir, service, select, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn a_since_filter_keeps_a_line_whose_64th_byte_is_inside_a_utf8_character() {
    // regression: the stamp was decoded from `line[..64]`, which failed when a character
    // crossed byte 64, and the line was dropped as if it had no stamp
    let root = tempfile::tempdir().unwrap();
    let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut straddling = record(t0 + 10 * SEC, "");
    straddling.pop();
    while straddling.len() < 63 {
        straddling.push('a');
    }
    straddling.push_str("é and more ü\n");
    assert!(std::str::from_utf8(&straddling.as_bytes()[..64]).is_err(), "é spans bytes 63 and 64");
    let newer = record(t0 + 11 * SEC, "newer");
    let text = format!("{}{straddling}{newer}", record(t0, "old"));
    std::fs::write(root.path().join("current.log"), text).unwrap();
    let since = read::Select { since: Some(t0 + 5 * SEC), last: None };
    assert_eq!(printed(root.path(), "api", since), format!("{straddling}{newer}"));
}

#[test]
fn a_since_filter_reads_json_stamps_and_keeps_unstamped_lines_next_to_new_records() {
    // JSON records carry `ts` after `line` (serde_json sorts the keys): the stamp is not at
    // the start of the line, and every JSON record used to count as unstamped
    let root = tempfile::tempdir().unwrap();
    let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let json = |t: SystemTime, line: &str| {
        let ts = humantime::format_rfc3339_millis(t).to_string();
        format!("{}\n", serde_json::json!({ "ts": ts, "stream": "out", "line": line }))
    };
    let (old, new1, new2) = (json(t0, "old"), json(t0 + 10 * SEC, "new"), json(t0 + 11 * SEC, "newer"));
    assert!(old.starts_with("{\"line\""), "{old}");
    // an unstamped line before an older record is older too; one after the last older record
    // is kept with the new ones, as is one among them
    let text = format!("garbage before\n{old}no stamp\n{new1}also none\n{new2}");
    std::fs::write(root.path().join("current.log"), text).unwrap();
    let since = read::Select { since: Some(t0 + 5 * SEC), last: None };
    assert_eq!(printed(root.path(), "api", since), format!("no stamp\n{new1}also none\n{new2}"));
    // nothing at or after `since`: nothing printed but what follows the last older record
    let later = read::Select { since: Some(t0 + 60 * SEC), last: None };
    assert_eq!(printed(root.path(), "api", later), "");
}

/// Lines `from..=to` as records a second apart, `line 0000000042` padded to 100 bytes.
fn numbered_lines(t0: SystemTime, from: u64, to: u64) -> String {
    (from..=to).map(|i| record(t0 + Duration::from_secs(i), &format!("line {i:010} {:>55}", "x"))).collect()
}

#[test]
fn tail_across_files_gives_exactly_the_last_n_lines_in_order() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let at = |i: u64| t0 + Duration::from_secs(i) + SEC / 2;
    write_rotated(d, "api", at(5), true, numbered_lines(t0, 1, 5).as_bytes());
    // 200 KB: the backward read crosses blocks
    write_rotated(d, "api", at(2005), false, numbered_lines(t0, 6, 2005).as_bytes());
    let unterminated = numbered_lines(t0, 2006, 2008);
    write_rotated(d, "api", at(2008), false, unterminated.trim_end().as_bytes());
    write_rotated(d, "api", at(2010), true, numbered_lines(t0, 2009, 2010).as_bytes());
    std::fs::write(d.join("current.log"), numbered_lines(t0, 2011, 2013)).unwrap();
    let all: Vec<String> = numbered_lines(t0, 1, 2013).lines().map(|l| format!("{l}\n")).collect();
    for n in [0, 1, 3, 4, 5, 6, 1500, 2008, 2009, 2013, 5000] {
        let got = printed(d, "api", read::Select { last: Some(n), since: None });
        let want: String = all[all.len().saturating_sub(n)..].concat();
        assert_eq!(got, want, "the last {n} lines");
    }
    // with `since` too: the last N of the records since then
    let since = Some(t0 + Duration::from_secs(2000));
    assert_eq!(printed(d, "api", read::Select { last: Some(20), since }), all[1999..].concat());
    assert_eq!(printed(d, "api", read::Select { last: Some(5), since }), all[2008..].concat());
    assert_eq!(printed(d, "api", read::Select { last: None, since: Some(t0 + 3 * SEC) }), all[2..].concat());
}

/// A writer that fails once it has seen `until`, to end a `follow`.
struct Until {
    out: Vec<u8>,
    until: &'static [u8],
    biggest_write: usize,
}

impl Write for Until {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.out.extend_from_slice(buf);
        self.biggest_write = self.biggest_write.max(buf.len());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.out.ends_with(self.until) { Err(std::io::ErrorKind::BrokenPipe.into()) } else { Ok(()) }
    }
}

#[test]
fn follow_reads_the_rest_of_a_rotated_file_before_the_new_one() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    let current = d.join("current.log");
    std::fs::write(&current, "printed\n").unwrap();
    let mut out = Until { out: Vec::new(), until: b"last\n", biggest_write: 0 };
    let cursor = read::print(d, "api", read::Select::default(), &mut out).unwrap();
    assert_eq!(cursor.offset(), 8);
    // appended, then rotated away before the follower looked again
    std::fs::OpenOptions::new().append(true).open(&current).unwrap().write_all(b"appended\n").unwrap();
    std::fs::rename(&current, rotated::fresh_name(d, "api", SystemTime::now())).unwrap();
    let long = "y".repeat(3 * read::BUF);
    std::fs::write(&current, format!("new\n{long}\nlast\n")).unwrap();
    let end = read::follow(d, cursor, &mut out, Duration::from_millis(5));
    assert!(matches!(end, Err(read::ReadError::Write(_))), "{end:?}");
    assert_eq!(String::from_utf8(out.out).unwrap(), format!("printed\nappended\nnew\n{long}\nlast\n"));
    assert!(out.biggest_write <= read::BUF, "{}", out.biggest_write);
}

#[test]
fn follow_reads_every_file_rotated_between_two_looks_and_never_half_a_record() {
    // regression (the fast-rotation one, step by step): the follower reopened current.log
    // after a rotation and missed the files rotated in between, and a record half written
    // when `logs -f` began was printed as two lines
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    let current = d.join("current.log");
    let append = |text: &str| {
        std::fs::OpenOptions::new().append(true).open(&current).unwrap().write_all(text.as_bytes()).unwrap()
    };
    std::fs::write(&current, "one\ntw").unwrap();
    let mut out = Until { out: Vec::new(), until: b"last\n", biggest_write: 0 };
    let cursor = read::print(d, "api", read::Select::default(), &mut out).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.out), "one\n", "the half record waits for its end");
    append("o\nthree\n");
    // rotated three times before the follower looks again; two of them already gzipped,
    // the one it holds open among them
    let t0 = SystemTime::now();
    for (i, next) in ["four\n", "five\n", "six\nlast\n"].into_iter().enumerate() {
        let rotated = rotated::fresh_name(d, "api", t0 + i as u32 * SEC);
        std::fs::rename(&current, &rotated).unwrap();
        if i != 1 {
            compress::gzip(&rotated).unwrap();
        }
        std::fs::write(&current, next).unwrap();
    }
    let end = read::follow(d, cursor, &mut out, Duration::from_millis(5));
    assert!(matches!(end, Err(read::ReadError::Write(_))), "{end:?}");
    assert_eq!(String::from_utf8(out.out).unwrap(), "one\ntwo\nthree\nfour\nfive\nsix\nlast\n");
}

#[test]
fn split_lines_are_joined_per_stream_where_their_last_piece_is() {
    // the pieces of a line are in order among their stream's records, the other stream's
    // between them, and may span a rotation; a line is printed where its last piece is
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    let t = |s: u64| UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s);
    let rec =
        |s: u64, tag: &str, line: &str| format!("{} {tag} {line}\n", humantime::format_rfc3339_millis(t(s)));
    write_rotated(
        d,
        "api",
        t(2),
        true,
        format!("{}{}", rec(1, "out+", "AAA"), rec(2, "err", "E1")).as_bytes(),
    );
    let current = [rec(3, "out", "BBB"), rec(4, "err+", "C1"), rec(5, "out", "short"), rec(6, "err", "C2")];
    std::fs::write(d.join("current.log"), format!("{}{}", current.concat(), rec(7, "out+", "DDD"))).unwrap();
    let lines = [rec(2, "err", "E1"), rec(3, "out", "AAABBB"), rec(5, "out", "short"), rec(6, "err", "C1C2")];
    for n in 0..=5 {
        let got = printed(d, "api", read::Select { last: Some(n), since: None });
        assert_eq!(got, lines[lines.len().saturating_sub(n)..].concat(), "the last {n} lines");
    }
    assert_eq!(printed(d, "api", read::Select::default()), lines.concat(), "the line still open waits");
    assert_eq!(printed(d, "api", read::Select { last: None, since: Some(t(4)) }), lines[2..].concat());
    // following joins the open line once its last piece is there
    let mut out = Until { out: Vec::new(), until: b"last\n", biggest_write: 0 };
    let cursor = read::print(d, "api", read::Select { last: Some(1), since: None }, &mut out).unwrap();
    let more = format!("{}{}", rec(8, "out", "EEE"), rec(9, "err", "last"));
    std::fs::OpenOptions::new()
        .append(true)
        .open(d.join("current.log"))
        .unwrap()
        .write_all(more.as_bytes())
        .unwrap();
    let end = read::follow(d, cursor, &mut out, Duration::from_millis(5));
    assert!(matches!(end, Err(read::ReadError::Write(_))), "{end:?}");
    let want = format!("{}{}{}", lines[3], rec(8, "out", "DDDEEE"), rec(9, "err", "last"));
    assert_eq!(String::from_utf8(out.out).unwrap(), want);
}

#[test]
fn a_split_line_longer_than_the_join_limit_is_printed_in_marked_pieces_of_it() {
    // what is held of a line stays bounded: past JOIN_MAX it is printed still marked continued
    let root = tempfile::tempdir().unwrap();
    let piece = |tag: &str, c: char, len: usize| {
        format!("2026-01-01T00:00:00.000Z {tag} {}\n", c.to_string().repeat(len))
    };
    let text = [piece("out+", 'a', 600 << 10), piece("out+", 'b', 600 << 10), piece("out", 'c', 10)].concat();
    std::fs::write(root.path().join("current.log"), text).unwrap();
    let got = printed(root.path(), "api", read::Select::default());
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(lines.len(), 2, "one line of JOIN_MAX, one with the rest");
    assert!(lines[0].starts_with("2026-01-01T00:00:00.000Z out+ aaa"), "{:.40}", lines[0]);
    assert_eq!(lines[0].len(), "2026-01-01T00:00:00.000Z out+ ".len() + read::JOIN_MAX);
    let joined: String = lines.iter().map(|l| l.splitn(3, ' ').nth(2).unwrap()).collect();
    assert_eq!(joined, format!("{}{}{}", "a".repeat(600 << 10), "b".repeat(600 << 10), "c".repeat(10)));
}

/// What `logs` printed: how many lines, whether their numbers ran on by one, the last ten.
#[derive(Debug, Default)]
struct Printed {
    lines: u64,
    first: Option<u64>,
    in_order: bool,
    last: VecDeque<String>,
}

impl Printed {
    fn of(out: impl std::io::Read) -> Printed {
        let mut p = Printed { in_order: true, ..Printed::default() };
        let mut reader = std::io::BufReader::new(out);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).unwrap() > 0 {
            let text = String::from_utf8_lossy(&line).into_owned();
            let seq: Option<u64> = text.split_whitespace().nth(3).and_then(|s| s.parse().ok());
            match (p.first, seq) {
                (None, Some(s)) => p.first = Some(s),
                (Some(first), Some(s)) => p.in_order &= s == first + p.lines,
                (_, None) => p.in_order = false,
            }
            p.lines += 1;
            if p.last.len() == 10 {
                p.last.pop_front();
            }
            p.last.push_back(text);
            line.clear();
        }
        p
    }
}

fn logs_with_peak_rss(cfg: &Path, args: &[&str]) -> (Printed, u64) {
    logs_of_with_peak_rss(cfg, "svc", args)
}

/// Runs `logs SERVICE <args>` on `cfg`, reading what it prints as it prints it; that, and the
/// process's peak RSS in KiB (from `wait4`).
#[allow(clippy::zombie_processes)] // reaped by `wait4`, which std's `wait` cannot stand in for
fn logs_of_with_peak_rss(cfg: &Path, service: &str, args: &[&str]) -> (Printed, u64) {
    let mut child = Command::new(BIN)
        .args(["logs", service])
        .args(args)
        .arg("--config")
        .arg(cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || Printed::of(stdout));
    let pid = child.id() as nix::libc::pid_t;
    let deadline = Instant::now() + 120 * SEC;
    // anonymous memory only, sampled: the peak RSS counts the pages of the 190 MB debug binary
    // that happen to be mapped, which depends on what the page cache holds (a loaded CI run saw
    // 39 MiB where a quiet one sees 20)
    let mut peak_anon = 0;
    loop {
        let mut status = 0;
        // SAFETY: rusage is plain data, for which all zeroes is a valid value.
        let mut usage: nix::libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: waits (without blocking) for our own child, writing into the two locals.
        let got = unsafe { nix::libc::wait4(pid, &mut status, nix::libc::WNOHANG, &mut usage) };
        if got == pid {
            assert!(
                nix::libc::WIFEXITED(status) && nix::libc::WEXITSTATUS(status) == 0,
                "logs {args:?}: {status}"
            );
            break;
        }
        assert_eq!(got, 0, "wait4: {}", std::io::Error::last_os_error());
        peak_anon = peak_anon.max(rss_anon(pid).unwrap_or(0));
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("logs {args:?} did not finish within two minutes");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    (reader.join().unwrap(), peak_anon)
}

/// `RssAnon:` of a process, KiB.
fn rss_anon(pid: nix::libc::pid_t) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("RssAnon:"))?;
    line.trim().trim_end_matches("kB").trim().parse().ok()
}

/// Records per file of the large history, 100 bytes each: 7 MB a file.
const PER_FILE: u64 = 70_000;

/// The record numbered `seq` (0-based) of the large history.
fn large_record(base: SystemTime, seq: u64) -> String {
    let (file, i) = (seq / PER_FILE, seq % PER_FILE);
    // file k holds hour 10k on; file 4 has a four-hour gap in its middle, where `since` cuts
    let gap = if file == 4 && i >= PER_FILE / 2 { 4 * 3600 * SEC } else { Duration::ZERO };
    let t = base + file as u32 * 36_000 * SEC + gap + i as u32 * Duration::from_millis(10);
    record(t, &format!("svc {seq:010} {:>55}", "x"))
}

#[test]
fn a_log_read_over_a_large_history_keeps_memory_flat() {
    // regression: a read held the whole history in memory (`read_all` of every file, then
    // every line copied into one Vec): 100 MiB of history took a daemon from 9 to 190 MB
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("logs/svc");
    std::fs::create_dir_all(&dir).unwrap();
    let now = SystemTime::now();
    let base = now - 100 * 3600 * SEC;
    // eight rotated files, gzipped and plain in turn, then current.log: 63 MB in all
    for file in 0..9u64 {
        let text: String = (file * PER_FILE..(file + 1) * PER_FILE).map(|s| large_record(base, s)).collect();
        assert_eq!(text.len() as u64, PER_FILE * 100);
        if file == 8 {
            std::fs::write(dir.join("current.log"), text).unwrap();
        } else {
            let rotated_at = base + (file as u32 * 10 + 6) * 3600 * SEC;
            write_rotated(&dir, "svc", rotated_at, file % 2 == 0, text.as_bytes());
        }
    }
    let total = 9 * PER_FILE;
    let cfg = common::write(
        root.path(),
        "services.toml",
        "[supervisor]\nproject = \"flat\"\nlog_dir = \"logs\"\nstate_dir = \"state\"\nsocket = \"s.sock\"\n\n[services.svc]\ncommand = [\"true\"]\n\n[services.empty]\ncommand = [\"true\"]\n",
    );
    // what the CLI itself takes, reading an empty log, in this run: machines differ by MiBs
    std::fs::create_dir_all(root.path().join("logs/empty")).unwrap();
    std::fs::write(root.path().join("logs/empty/current.log"), "").unwrap();
    let (_, baseline) = logs_of_with_peak_rss(&cfg, "empty", &[]);
    // KiB over that: the old read of this history took +17.6 (-n 10) to +90 MiB
    let limit = baseline + 10 * 1024;

    let (tail, peak_tail) = logs_with_peak_rss(&cfg, &["-n", "10"]);
    let want: Vec<String> = (total - 10..total).map(|s| large_record(base, s)).collect();
    assert_eq!(tail.last, want, "the last 10 lines exactly");
    assert_eq!(tail.lines, 10);

    let (all, peak_all) = logs_with_peak_rss(&cfg, &[]);
    assert_eq!((all.lines, all.first, all.in_order), (total, Some(0), true), "every line once, in order");

    // since cuts in the gap of file 4 (gzipped): the files before it are skipped by name
    let since = format!("{}s", now.elapsed().unwrap().as_secs() + 58 * 3600);
    let (recent, peak_since) = logs_with_peak_rss(&cfg, &["--since", &since]);
    let first = 4 * PER_FILE + PER_FILE / 2;
    assert_eq!((recent.lines, recent.first, recent.in_order), (total - first, Some(first), true));

    let (both, peak_both) = logs_with_peak_rss(&cfg, &["--since", &since, "-n", "500000"]);
    assert_eq!((both.lines, both.first, both.in_order), (total - first, Some(first), true));

    let peaks = [peak_tail, peak_all, peak_since, peak_both];
    eprintln!(
        "peak anonymous RSS (KiB) of logs -n 10, all, --since, --since -n: {peaks:?}, empty log: {baseline}"
    );
    assert!(
        peaks.iter().all(|&p| p < limit),
        "peak RSS {peaks:?} KiB, over {limit} KiB (empty log: {baseline})"
    );
}

#[test]
fn logs_since_before_the_epoch_is_refused_not_a_panic() {
    // regression: `logs --since 500000000000y` panicked subtracting from now
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("services.toml");
    std::fs::write(
        &cfg,
        "[supervisor]\nlog_dir = \"logs\"\nsocket = \"none.sock\"\n\n[services.svc]\ncommand = [\"x\"]\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("logs/svc")).unwrap();
    let out = Command::new(BIN)
        .args(["logs", "svc", "--since", "500000000000y", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("reaches back before 1970"), "{out:?}");
}

/// Runs `sh -c script` as nobody (the service's user, planting things).
fn as_nobody(script: &str) -> std::process::Output {
    Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--", "sh", "-c", script])
        .output()
        .expect("setpriv (util-linux)")
}

fn nobody_app() -> String {
    format!(
        "[services.app]\n{}\nuser = \"nobody\"\nhealth = {{ log = \"^ready$\" }}\n",
        common::daemon::svc("app", "")
            .replace(", \"--pid-file\", \"{dir}/pids/app.pid\", \"--start-log\", \"{dir}/start.log\"", "")
    )
}

#[test]
fn a_service_user_cannot_plant_links_in_the_log_dir_of_a_root_daemon() {
    // regression: as nobody, a link planted as current.log (or a rotated file, or a .gz.tmp)
    // made root append to, copy or overwrite a file of the planter's choosing
    let d = common::daemon::Daemon::start(&nobody_app());
    d.wait_state("app", "healthy", 10 * SEC);
    let dir = d.path("logs/app");
    for name in ["current.log", "app-20260101T000000.000Z.log", "app-20260101T000000.000Z.log.gz.tmp"] {
        let planted = as_nobody(&format!("ln -sf /etc/shadow {}/{name}", dir.display()));
        assert!(!planted.status.success(), "nobody planted {name}");
        assert!(String::from_utf8_lossy(&planted.stderr).contains("Permission denied"), "{planted:?}");
    }
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&dir).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o750));
}

#[test]
fn a_log_dir_handed_to_a_service_user_is_refused_at_start_naming_owner_and_mode() {
    let mut d = common::daemon::Daemon::start_prepared(&nobody_app(), |dir| {
        std::fs::create_dir_all(dir.join("logs/app")).unwrap();
        std::os::unix::fs::chown(dir.join("logs/app"), Some(65534), Some(65534)).unwrap();
    });
    assert_eq!(d.wait_exit(10 * SEC), Some(2), "{}", d.log_tail());
    let log = std::fs::read_to_string(d.path("supervisor.log")).unwrap();
    assert!(
        log.contains("logs/app is owned by uid 65534 (mode 0755), not by the supervisor's uid 0"),
        "{log}"
    );
}

#[test]
fn links_planted_in_a_log_dir_are_never_followed() {
    // defense in depth, planted as root before the daemon starts: a rotated file that is a link
    // to a root-only file is never read back, and a .gz.tmp link never overwrites its target
    let secrets = tempfile::tempdir().unwrap();
    let secret = secrets.path().join("secret");
    std::fs::write(&secret, "TOP SECRET\n").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let victim = secrets.path().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let (secret_at, victim_at) = (secret.clone(), victim.clone());
    let d = common::daemon::Daemon::start_prepared(&nobody_app(), move |dir| {
        let app = dir.join("logs/app");
        std::fs::create_dir_all(&app).unwrap();
        std::os::unix::fs::symlink(&secret_at, app.join("app-20200101T000000.000Z.log")).unwrap();
        std::fs::write(app.join("app-20200102T000000.000Z.log"), "2020-01-02T00:00:00.000Z out old line\n")
            .unwrap();
        std::os::unix::fs::symlink(&victim_at, app.join("app-20200102T000000.000Z.log.gz.tmp")).unwrap();
    });
    d.wait_state("app", "healthy", 10 * SEC);
    let socket = d.path("s.sock");
    let out = Command::new(BIN).args(["logs", "app", "--socket"]).arg(&socket).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("old line"), "the real rotated file is read: {text}");
    assert!(!text.contains("TOP SECRET"), "a link was read back:\n{text}");
    let gz = d.path("logs/app/app-20200102T000000.000Z.log.gz");
    assert!(
        wait_for(10 * SEC, || gz.exists().then_some(())).is_some(),
        "the plain rotated file is compressed"
    );
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "precious\n",
        "the .gz.tmp link's target is untouched"
    );
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "TOP SECRET\n");
}
