//! A supervisor under test: `titan-supervisor run` on a config in a temp dir, its JSON log
//! parsed into state changes, its services' start logs and pid files at hand. Dropping it stops
//! the supervisor and kills anything a service left behind, whatever the test did.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use super::{BIN, TESTSVC};

/// A state change as the supervisor logged it.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub service: String,
    pub from: String,
    pub to: String,
    pub reason: String,
    pub restarts: u64,
}

pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    pub pid: i32,
}

/// A port no other test in this run uses (tests run in parallel threads and processes).
pub fn port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 20_000 + (std::process::id() % 250) as u16 * 40;
    loop {
        let p = base + NEXT.fetch_add(1, Ordering::Relaxed) % 40;
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

/// `command = [...]` running the test service with `args`, its pid file and start log in
/// `dir` (use `{dir}` in the config text; `Daemon::start` fills it in).
pub fn svc(name: &str, args: &str) -> String {
    let extra = if args.is_empty() { String::new() } else { format!(", {args}") };
    format!(
        "command = [\"{TESTSVC}\", \"test-service\", \"--name\", \"{name}\", \"--pid-file\", \"{{dir}}/pids/{name}.pid\", \"--start-log\", \"{{dir}}/start.log\"{extra}]"
    )
}

impl Daemon {
    /// Writes `config` (with `{dir}` replaced by the temp dir) and starts the supervisor.
    pub fn start(config: &str) -> Daemon {
        Self::start_with(config, &[], &[])
    }

    /// Like `start`, with `extra` lines in `[supervisor]` (replacing defaults of the same keys).
    pub fn start_with_header(config: &str, extra: &str) -> Daemon {
        Self::launch_config(config, extra, &[], &[])
    }

    pub fn start_with(config: &str, envs: &[(&str, &str)], wrapper: &[&str]) -> Daemon {
        Self::launch_config(config, "", envs, wrapper)
    }

    /// Like `start`, with `prepare` run on the temp dir first (files planted before the
    /// supervisor starts).
    pub fn start_prepared(config: &str, prepare: impl FnOnce(&Path)) -> Daemon {
        Self::launch_prepared(config, "", &[], &[], prepare)
    }

    /// `start_prepared` with `envs` set for the daemon (not for a later `respawn`).
    pub fn start_prepared_env(config: &str, envs: &[(&str, &str)], prepare: impl FnOnce(&Path)) -> Daemon {
        Self::launch_prepared(config, "", envs, &[], prepare)
    }

    fn launch_config(config: &str, extra: &str, envs: &[(&str, &str)], wrapper: &[&str]) -> Daemon {
        Self::launch_prepared(config, extra, envs, wrapper, |_| {})
    }

    fn launch_prepared(
        config: &str,
        extra: &str,
        envs: &[(&str, &str)],
        wrapper: &[&str],
        prepare: impl FnOnce(&Path),
    ) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("pids")).expect("pids dir");
        let path = dir.path().join("services.toml");
        let defaults =
            ["project = \"t{pid}\"", "log_dir = \"logs\"", "state_dir = \"state\"", "socket = \"s.sock\""];
        let overridden = |line: &str| extra.lines().any(|e| e.split('=').next() == line.split('=').next());
        let kept: Vec<&str> = defaults.into_iter().filter(|l| !overridden(l)).collect();
        let header = format!("[supervisor]\n{}\n{extra}\n", kept.join("\n"));
        let text = format!("{header}{config}").replace("{dir}", &dir.path().display().to_string());
        let text = text.replace("{pid}", &format!("{}-{}", std::process::id(), port()));
        std::fs::write(&path, text).expect("write config");
        prepare(dir.path());
        let child = launch(dir.path(), envs, wrapper);
        let pid = child.id() as i32;
        Daemon { dir, child: Some(child), pid }
    }

    /// Starts a new supervisor on the same config and directory (after the last one died);
    /// its log is appended to the same file.
    pub fn respawn(&mut self) {
        let child = launch(self.dir.path(), &[], &[]);
        self.pid = child.id() as i32;
        self.child = Some(child);
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Replaces everything after `[supervisor]` in its config with `config` (`{dir}` filled
    /// in), for a reload.
    pub fn rewrite(&self, config: &str) {
        let path = self.path("services.toml");
        let text = std::fs::read_to_string(&path).expect("read config");
        let header = &text[..text.find("\n[").map_or(text.len(), |at| at + 1)];
        let body = config.replace("{dir}", &self.dir.path().display().to_string());
        std::fs::write(&path, format!("{header}{body}")).expect("write config");
    }

    /// The CLI with `args`, talking to this daemon.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(BIN).args(args).arg("--socket").arg(self.path("s.sock")).output().expect("run the CLI")
    }

    /// `status --json` of one service (`Null` when it is not listed).
    pub fn status_of(&self, service: &str) -> serde_json::Value {
        let out = self.cli(&["status", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let found = v["services"].as_array().and_then(|a| a.iter().find(|s| s["name"] == service).cloned());
        found.unwrap_or_default()
    }

    /// The pid `status` shows for `service` once it is healthy with a pid other than `not`.
    pub fn healthy_pid(&self, service: &str, not: Option<i64>, limit: Duration) -> i64 {
        let found = wait_for(limit, || {
            let s = self.status_of(service);
            let pid = s["pid"].as_i64().filter(|p| Some(*p) != not)?;
            (s["state"] == "healthy").then_some(pid)
        });
        found.unwrap_or_else(|| {
            panic!(
                "{service} not healthy with a new pid within {limit:?}: {}\n{}",
                self.status_of(service),
                self.log_tail()
            )
        })
    }

    /// Every state change logged so far.
    pub fn changes(&self) -> Vec<Change> {
        let text = std::fs::read_to_string(self.path("supervisor.log")).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["fields"]["message"] == "state")
            .map(|v| {
                let f = &v["fields"];
                let s = |k: &str| f[k].as_str().unwrap_or_default().to_owned();
                Change {
                    service: s("service"),
                    from: s("from"),
                    to: s("to"),
                    reason: s("reason"),
                    restarts: f["restarts"].as_u64().unwrap_or(0),
                }
            })
            .collect()
    }

    /// The states `service` went through, in order.
    pub fn states(&self, service: &str) -> Vec<String> {
        self.changes().into_iter().filter(|c| c.service == service).map(|c| c.to).collect()
    }

    /// Waits until `service` has reached `state` (`n`th time), failing the test after `limit`.
    pub fn wait_state(&self, service: &str, state: &str, limit: Duration) -> Change {
        self.wait_state_n(service, state, 1, limit)
    }

    pub fn wait_state_n(&self, service: &str, state: &str, n: usize, limit: Duration) -> Change {
        let found = wait_for(limit, || {
            self.changes().into_iter().filter(|c| c.service == service && c.to == state).nth(n - 1)
        });
        found.unwrap_or_else(|| {
            panic!(
                "{service} never reached {state} (#{n}) within {limit:?}; changes: {:#?}\nlog:\n{}",
                self.changes(),
                self.log_tail()
            )
        })
    }

    /// The supervisor's own log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.path("supervisor.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// A service's current.log.
    pub fn service_log(&self, service: &str) -> String {
        std::fs::read_to_string(self.path(&format!("logs/{service}/current.log"))).unwrap_or_default()
    }

    /// `(name, event, unix nanos)` lines of the test services' start log.
    pub fn start_log(&self) -> Vec<(String, String, u128)> {
        let text = std::fs::read_to_string(self.path("start.log")).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                Some((it.next()?.to_owned(), it.next()?.to_owned(), it.next()?.parse().ok()?))
            })
            .collect()
    }

    pub fn service_pid(&self, service: &str) -> Option<i32> {
        std::fs::read_to_string(self.path(&format!("pids/{service}.pid"))).ok()?.trim().parse().ok()
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid), sig);
    }

    /// Sends SIGTERM and waits for the exit code.
    pub fn stop(&mut self, limit: Duration) -> Option<i32> {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        self.wait_exit(limit)
    }

    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let child = self.child.as_mut()?;
        let status = wait_for(limit, || child.try_wait().ok().flatten());
        let status =
            status.unwrap_or_else(|| panic!("supervisor did not exit within {limit:?}\n{}", self.log_tail()));
        self.child = None;
        status.code()
    }
}

/// `titan-supervisor run` on `<dir>/services.toml`, stderr appended to `<dir>/supervisor.log`.
fn launch(dir: &Path, envs: &[(&str, &str)], wrapper: &[&str]) -> Child {
    let log = dir.join("supervisor.log");
    let stderr = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log file");
    let (program, mut args): (&str, Vec<String>) = match wrapper.split_first() {
        Some((first, rest)) => (first, rest.iter().map(|s| s.to_string()).chain([BIN.to_owned()]).collect()),
        None => (BIN, Vec::new()),
    };
    args.extend(["run", "--log-format", "json", "--config"].map(String::from));
    args.push(dir.join("services.toml").display().to_string());
    Command::new(program)
        .args(&args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn titan-supervisor")
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid),
                nix::sys::signal::Signal::SIGTERM,
            );
            if wait_for(Duration::from_secs(5), || child.try_wait().ok().flatten()).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        for pid in pids_in(&self.path("pids")) {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(-pid), nix::sys::signal::Signal::SIGKILL);
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

fn pids_in(dir: &Path) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let mut s = String::new();
            std::fs::File::open(e.path()).ok()?.read_to_string(&mut s).ok()?;
            s.trim().parse().ok()
        })
        .collect()
}

/// Polls `f` every few milliseconds until it gives a value or `limit` passes.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Whether a process exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        let state = s.rsplit(')').next().and_then(|r| r.split_whitespace().next());
        state != Some("Z")
    })
}

/// `PPid:` of a process.
pub fn parent_of(pid: i32) -> Option<i32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("PPid:")).and_then(|v| v.trim().parse().ok())
}
