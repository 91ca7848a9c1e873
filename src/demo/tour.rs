//! The demo's deploy tour, once the killed service is back: two releases of the demo's own
//! config, made with `release create` and switched to with the CLI's own `switch` (each step
//! printed as it ends), then the `releases` table. The good release moves titan-brain and
//! titan-execution to policy v2: those two are recreated, every other service keeps its pid and
//! restart count. The bad one moves titan-execution alone to v3: the parity check of the two
//! policy hashes fails and the daemon rolls it back by itself.
//!
//! The commands run in this process, on a thread of their own (the CLI's calls block), not as
//! child processes: the supervisor's reaper would collect a child before its waiter could.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use toml_edit::DocumentMut;

use crate::cli::{ReleasesArgs, SwitchArgs};
use crate::commands::{Exit, deploy};
use crate::config;
use crate::deploy::state::{self, Layout, StateError};
use crate::release;
use crate::supervisor::Handle;

/// The services whose policy hashes the parity check compares, and the releases change.
const BRAIN: &str = "titan-brain";
const EXECUTION: &str = "titan-execution";

/// How long after its probation the good release may take to be recorded as the last known good.
const PROBATION_SLACK: Duration = Duration::from_secs(5);

/// What the demo and its tour tell each other.
#[derive(Default)]
pub(crate) struct Shared {
    /// Ctrl-C: the supervisor is stopping, and the tour says no more.
    interrupted: AtomicBool,
    /// The tour did not go as it should: the demo exits 1.
    failed: AtomicBool,
}

impl Shared {
    pub(crate) fn interrupt(&self) {
        self.interrupted.store(true, Ordering::SeqCst);
    }

    pub(crate) fn interrupted(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst)
    }

    pub(crate) fn failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }
}

/// The tour, ready to start.
pub(crate) struct Tour {
    pub(crate) handle: Handle,
    /// The demo's directory: the daemon's config, `source/` (what CI would build releases
    /// from), releases, state, logs.
    pub(crate) dir: PathBuf,
    pub(crate) settings: config::Supervisor,
    /// `[deploy] probation`: how long a verified release is watched before it is the last
    /// known good.
    pub(crate) probation: Duration,
    pub(crate) shared: Arc<Shared>,
}

#[derive(Debug, thiserror::Error)]
enum TourError {
    #[error("stopped by Ctrl-C")]
    Interrupted,
    #[error("{}: cannot {what}: {source}", path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("the demo's config: {0}")]
    Toml(#[from] toml_edit::TomlError),
    #[error("the demo's config has no --policy-hash argument for {service}")]
    NoPolicyArg { service: &'static str },
    #[error("release create: {0}")]
    Create(#[source] Box<dyn std::error::Error>),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("the switch to {release} ended {got}, not {want}")]
    Outcome { release: String, want: &'static str, got: String },
    #[error("the switch to {release} recreated {}, not just {BRAIN} and {EXECUTION}", .recreated.join(", "))]
    Recreated { release: String, recreated: Vec<String> },
    #[error("{release} was not the last known good release within {limit:?}")]
    Probation { release: String, limit: Duration },
    #[error(
        "after the rollback `current` is {current:?} (want {want}), the bad release marked BAD: {marked}"
    )]
    NotBack { current: Option<String>, want: String, marked: bool },
    #[error("`releases` ended {exit:?}")]
    Releases { exit: Exit },
}

impl Tour {
    /// Starts the tour on a thread of its own.
    pub(crate) fn spawn(self) {
        let shared = Arc::clone(&self.shared);
        let spawned = std::thread::Builder::new().name("titan-demo-tour".into()).spawn(move || self.run());
        if let Err(e) = spawned {
            shared.failed.store(true, Ordering::SeqCst);
            let _ = writeln!(std::io::stdout(), "\nThe deploy tour failed: cannot start its thread: {e}");
        }
    }

    fn run(&self) {
        match self.tour() {
            Ok(()) => self.say(format_args!(
                "\nThe deploy tour is over; the daemon goes on supervising (in another terminal: \
                 titan-supervisor --socket {} status). Ctrl-C stops everything in reverse order.",
                self.settings.socket.display()
            )),
            Err(_) if self.shared.interrupted() => {}
            Err(e) => {
                self.shared.failed.store(true, Ordering::SeqCst);
                self.say(format_args!("\nThe deploy tour failed: {e}"));
            }
        }
    }

    fn tour(&self) -> Result<(), TourError> {
        let running = self.dir.join(super::CONFIG_FILE);
        let source = std::fs::read_to_string(&running).map_err(io_at(&running, "read"))?;
        self.say("\nNow two releases of this graph, made with `release create` and switched to live.");

        let good_text = with_policy_hash(&with_policy_hash(&source, BRAIN, "v2")?, EXECUTION, "v2")?;
        self.say(format_args!("\nRelease 1 moves {BRAIN} and {EXECUTION} to policy v2:"));
        let good = self.create(&good_text)?;
        let before = self.pids();
        self.switch(&good, "verified")?;
        self.compare(&good, &before)?;
        self.probation(&good)?;

        let bad_text = with_policy_hash(&good_text, EXECUTION, "v3")?;
        self.say(format_args!(
            "\nRelease 2 moves {EXECUTION} alone to policy v3, so it no longer runs the policy of {BRAIN}:"
        ));
        let bad = self.create(&bad_text)?;
        self.switch(&bad, "rolled_back")?;
        let current = Layout::of(&self.settings).current_release()?;
        let marked = state::is_bad(&self.settings.releases_dir.join(&bad));
        if current.as_deref() != Some(good.as_str()) || !marked {
            return Err(TourError::NotBack { current, want: good, marked });
        }
        self.say(format_args!("The daemon put {good} back by itself and marked {bad} BAD."));

        self.go_on()?;
        self.say("\n$ titan-supervisor releases");
        match deploy::releases(Some(&self.settings.socket), &ReleasesArgs { json: false }) {
            Exit::Ok => Ok(()),
            exit => Err(TourError::Releases { exit }),
        }
    }

    /// `release create` of `text` as the source (digests.json `{}`: no container services);
    /// returns the release's id.
    fn create(&self, text: &str) -> Result<String, TourError> {
        self.go_on()?;
        let source = self.dir.join("source");
        let (config, digests) = (source.join("services.toml"), source.join("digests.json"));
        std::fs::create_dir_all(&source).map_err(io_at(&source, "create"))?;
        std::fs::write(&config, text).map_err(io_at(&config, "write"))?;
        std::fs::write(&digests, "{}\n").map_err(io_at(&digests, "write"))?;
        let sha = sha7(text);
        self.say(format_args!(
            "$ titan-supervisor release create --config {} --digests {} --sha {sha}",
            config.display(),
            digests.display()
        ));
        let request = release::Request {
            config: &config,
            digests: &digests,
            sha: &sha,
            sign: None,
            password: None,
            out: None,
            now: SystemTime::now(),
            env: &|name| std::env::var(name).ok(),
        };
        let made = release::create(&request).map_err(|e| TourError::Create(Box::new(e)))?;
        self.say(made.display());
        Ok(made.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default())
    }

    /// `switch release`, its steps printed as they end; `want` is the outcome it must have.
    fn switch(&self, release: &str, want: &'static str) -> Result<(), TourError> {
        self.go_on()?;
        self.say(format_args!("$ titan-supervisor switch {release}"));
        let args = SwitchArgs { release: release.to_owned(), json: false, no_disarm: false };
        // the exit code says verified or not; the history tells a rollback from a failed one
        let _ = deploy::switch(Some(&self.settings.socket), &args);
        self.go_on()?;
        let history = state::read_history(&self.settings.state_dir)?;
        let got = history.iter().rev().find(|a| a.release == release).map(|a| a.outcome.clone());
        match got {
            Some(got) if got == want => Ok(()),
            got => Err(TourError::Outcome {
                release: release.to_owned(),
                want,
                got: got.unwrap_or_else(|| "without an outcome".into()),
            }),
        }
    }

    /// Every running service: its name, pid and restart count, in the status table's order.
    fn pids(&self) -> Vec<(String, i32, u32)> {
        let board = self.handle.status();
        board.iter().filter_map(|s| s.pid.map(|pid| (s.name.clone(), pid, s.restarts))).collect()
    }

    /// Shows what the switch to `release` recreated and what it left alone, by pid.
    fn compare(&self, release: &str, before: &[(String, i32, u32)]) -> Result<(), TourError> {
        let after = self.pids();
        self.say("Only what changed was recreated:");
        let mut recreated = Vec::new();
        for (name, pid, restarts) in before {
            let Some((_, now, restarts_now)) = after.iter().find(|(n, _, _)| n == name) else { continue };
            if now == pid {
                self.say(format_args!(
                    "  untouched: {name:<16} pid {pid} → {now}, restarts {restarts} → {restarts_now}"
                ));
            } else {
                self.say(format_args!("  recreated: {name:<16} pid {pid} → {now}"));
                recreated.push(name.clone());
            }
        }
        if recreated != [BRAIN, EXECUTION] {
            return Err(TourError::Recreated { release: release.to_owned(), recreated });
        }
        Ok(())
    }

    /// Waits until the verified `release` has passed its probation and is the last known good.
    fn probation(&self, release: &str) -> Result<(), TourError> {
        self.say(format_args!(
            "On probation for {}: a service that fails now rolls it back.",
            humantime::format_duration(self.probation)
        ));
        let limit = self.probation + PROBATION_SLACK;
        let deadline = Instant::now() + limit;
        // the probation's end shows only on disk: looked at every 50 ms, within a deadline
        loop {
            self.go_on()?;
            if state::last_known_good(&self.settings.state_dir)?.as_deref() == Some(release) {
                self.say(format_args!("Passed: {release} is the last known good release."));
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(TourError::Probation { release: release.to_owned(), limit });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `Err(Interrupted)` once Ctrl-C has been pressed.
    fn go_on(&self) -> Result<(), TourError> {
        if self.shared.interrupted() { Err(TourError::Interrupted) } else { Ok(()) }
    }

    /// Prints a line, unless Ctrl-C has been pressed; a closed stdout is no error.
    fn say(&self, text: impl std::fmt::Display) {
        if !self.shared.interrupted() {
            let _ = writeln!(std::io::stdout(), "{text}");
        }
    }
}

/// `text` with the argument after `--policy-hash` in `service`'s command set to `hash`.
fn with_policy_hash(text: &str, service: &'static str, hash: &str) -> Result<String, TourError> {
    let mut doc: DocumentMut = text.parse()?;
    let command = doc
        .get_mut("services")
        .and_then(|s| s.get_mut(service))
        .and_then(|s| s.get_mut("command"))
        .and_then(|c| c.as_array_mut())
        .ok_or(TourError::NoPolicyArg { service })?;
    let at = command.iter().position(|v| v.as_str() == Some("--policy-hash"));
    match at.map(|at| at + 1).filter(|&value| value < command.len()) {
        Some(value) => command.replace(value, hash),
        None => return Err(TourError::NoPolicyArg { service }),
    };
    Ok(doc.to_string())
}

/// A commit sha for the release of `text`: the first 7 hex digits of its sha256.
fn sha7(text: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes()).iter().take(4).map(|b| format!("{b:02x}")).collect::<String>()[..7]
        .to_owned()
}

fn io_at(path: &Path, what: &'static str) -> impl FnOnce(std::io::Error) -> TourError {
    let path = path.to_owned();
    move |source| TourError::Io { path, what, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_hash_changes_in_one_service_only() {
        let text = super::super::CONFIG;
        let changed = with_policy_hash(text, EXECUTION, "v3").unwrap();
        let cfg = |t: &str| {
            let source = config::Source { name: "t", text: t, base_dir: Path::new("/tmp") };
            config::parse(&source, &|_| Some("x".into())).unwrap_or_else(|r| panic!("{r}"))
        };
        let (before, after) = (cfg(text), cfg(&changed));
        let args = |c: &config::Config, s: &str| format!("{:?}", c.services[s].exec);
        assert!(args(&after, EXECUTION).contains("\"v3\""), "{}", args(&after, EXECUTION));
        assert_eq!(args(&before, BRAIN), args(&after, BRAIN));
        assert_eq!(changed.lines().count(), text.lines().count(), "nothing else rewritten");
        assert!(matches!(with_policy_hash(text, "titan-console", "v2"), Err(TourError::NoPolicyArg { .. })));
    }

    #[test]
    fn a_release_sha_is_seven_hex_digits_of_the_content() {
        let (a, b) = (sha7("a"), sha7("b"));
        assert_eq!(a.len(), 7);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
