//! The switch pipeline: lock → validate → pull → disarm → swap `current` → apply only what
//! changed → verify, and — when a step after the swap fails — the way back to the last known
//! good release, verified in turn (a rollback is never rolled back). It runs as a task on the
//! control thread's runtime (a client that goes away does not stop it), asks the actor through
//! its handle, reports every step as a progress line as it ends, and leaves evidence in the
//! release and a line in `history.jsonl`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use hyper::body::Bytes;
use serde::Serialize;
use serde_json::json;
use tokio::sync::mpsc;

use super::probation::Probation;
use super::state::{self, Attempt, Holder, Layout};
use super::verify::Checker;
use crate::config::{self, Config, Exec};
use crate::supervisor::handle::Handle;
use crate::supervisor::status::{ServiceKind, StateKind};

/// Who asked, from the control socket's peer credentials.
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct Peer {
    pub(crate) uid: u32,
    pub(crate) pid: Option<i32>,
}

/// A deploy asked for.
#[derive(Clone, Debug)]
pub(crate) struct Request {
    /// The release to switch to; `None`: back to the last known good one.
    pub(crate) release: Option<String>,
    pub(crate) kind: Kind,
    pub(crate) no_disarm: bool,
    pub(crate) peer: Peer,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Kind {
    Switch,
    Rollback,
    /// The probation of the current release failed.
    Probation,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Switch => "switch",
            Kind::Rollback => "rollback",
            Kind::Probation => "probation",
        }
    }
}

/// How a deploy ended (SPEC's outcomes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Outcome {
    Verified,
    RolledBack,
    RollbackFailed,
    RollbackBlocked,
    Refused,
}

impl Outcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Verified => "verified",
            Outcome::RolledBack => "rolled_back",
            Outcome::RollbackFailed => "rollback_failed",
            Outcome::RollbackBlocked => "rollback_blocked",
            Outcome::Refused => "refused",
        }
    }
}

/// What the pipeline needs of the daemon.
#[derive(Clone)]
pub(crate) struct Deployer {
    pub(crate) settings: config::Supervisor,
    pub(crate) handle: Handle,
    pub(crate) probation: Probation,
}

/// One step as the progress lines and the evidence show it.
#[derive(Clone, Debug, Serialize)]
struct Step {
    step: &'static str,
    started: String,
    ms: u64,
    result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

/// One attempt under way: its progress, and what it has found out so far.
struct Run<'a> {
    d: &'a Deployer,
    req: Request,
    layout: Layout,
    tx: mpsc::Sender<Bytes>,
    steps: Vec<Step>,
    started: SystemTime,
    /// The release asked for, once resolved: its id and directory.
    target: Option<(String, PathBuf)>,
    /// What `current` pointed to before.
    from: Option<String>,
    reason: Option<String>,
    /// The attempt's name: `<UTC stamp>-<release>`.
    attempt: String,
    /// Whether this attempt wrote the switch journal (and so removes it at the end).
    journaled: bool,
    /// The migrations run before the swap.
    migrated: Vec<String>,
    /// A migration that ran declared that the previous release cannot run on its result.
    blocking: Option<String>,
    /// The deploy lock, held until the attempt is recorded and its journal removed: a switch
    /// that took it earlier could have its journal removed by this one.
    lock: Option<state::DeployLock>,
    /// Execution was disarmed on NATS by this attempt (and must be armed again).
    disarmed: bool,
}

/// Runs a deploy to its end, its progress lines into `tx`, the last one its outcome.
pub(crate) async fn run(d: Deployer, req: Request, tx: mpsc::Sender<Bytes>) -> Outcome {
    let layout = Layout::of(&d.settings);
    let mut r = Run {
        d: &d,
        req,
        layout,
        tx,
        steps: Vec::new(),
        started: SystemTime::now(),
        target: None,
        from: None,
        reason: None,
        attempt: String::new(),
        journaled: false,
        migrated: Vec::new(),
        blocking: None,
        lock: None,
        disarmed: false,
    };
    let outcome = match r.go().await {
        Ok(outcome) => outcome,
        Err(refusal) => {
            r.reason = Some(refusal);
            Outcome::Refused
        }
    };
    r.arm(outcome).await;
    r.finish(outcome).await;
    outcome
}

impl Run<'_> {
    fn send(&self, line: &impl Serialize) {
        if let Some(publisher) = crate::nats::events::publisher() {
            let mut event = serde_json::to_value(line).unwrap_or_default();
            let kind = if event.get("outcome").is_some() { "outcome" } else { "step" };
            if let Some(fields) = event.as_object_mut() {
                fields.insert("attempt".into(), self.attempt.clone().into());
                fields.insert("deploy".into(), self.req.kind.as_str().into());
                if kind == "outcome" {
                    fields.insert("disarmed".into(), self.disarmed.into());
                }
            }
            publisher.publish(crate::nats::events::DEPLOY_SUBJECT, kind, event);
        }
        let mut bytes = serde_json::to_vec(line).unwrap_or_default();
        bytes.push(b'\n');
        // a client that went away or reads slowly does not hold the deploy up
        let _ = self.tx.try_send(bytes.into());
    }

    /// Runs one step, announcing it and recording how it ended.
    async fn step<T>(
        &mut self,
        name: &'static str,
        work: impl std::future::Future<Output = Result<T, String>>,
    ) -> Result<T, String> {
        let started = stamp(SystemTime::now());
        self.send(&json!({ "step": name, "status": "started" }));
        self.tell_systemd(name);
        super::fault::at(name, &self.d.handle);
        let t0 = Instant::now();
        let result = work.await;
        let (outcome, detail) = match &result {
            Ok(_) => ("ok", None),
            Err(why) => ("failed", Some(why.clone())),
        };
        self.record(Step { step: name, started, ms: ms(t0.elapsed()), result: outcome, detail });
        result
    }

    /// systemd's STATUS= names the step under way (`switching to X: verify`).
    fn tell_systemd(&self, step: &str) {
        let verb = match self.req.kind {
            Kind::Switch => "switching to",
            Kind::Rollback | Kind::Probation => "rolling back to",
        };
        let target = self.target.as_ref().map_or("?", |(id, _)| id.as_str());
        crate::notify::deploy_status(Some(format!("{verb} {target}: {step}")));
    }

    fn skipped(&mut self, name: &'static str, why: &str) {
        let started = stamp(SystemTime::now());
        self.record(Step { step: name, started, ms: 0, result: "skipped", detail: Some(why.into()) });
    }

    fn record(&mut self, step: Step) {
        self.send(&step);
        self.steps.push(step);
    }

    /// Everything up to the outcome; `Err` is a refusal with nothing changed.
    async fn go(&mut self) -> Result<Outcome, String> {
        let (id, dir) = self.target()?;
        self.target = Some((id.clone(), dir.clone()));
        self.attempt = format!("{}-{id}", compact(self.started));
        let holder = Holder {
            pid: std::process::id(),
            uid: self.req.peer.uid,
            release: id.clone(),
            since: stamp(SystemTime::now()),
        };
        let state_dir = self.d.settings.state_dir.clone();
        let lock =
            self.step("lock", async { state::lock(&state_dir, &holder).map_err(|e| e.to_string()) }).await?;
        self.lock = Some(lock);
        self.from = self.layout.current_release().map_err(|e| e.to_string())?;
        if self.from.as_deref() == Some(id.as_str()) && self.req.kind == Kind::Switch {
            return Err(format!("{id} is the current release already"));
        }
        let settings = self.d.settings.clone();
        let cfg = self.step("validate", async { validate(&dir, &settings) }).await?;
        self.pull(&cfg).await?;
        match (self.req.no_disarm, cfg.deploy.disarm) {
            (true, _) => self.skipped("disarm", "--no-disarm"),
            (false, true) => self.disarm(&id).await?,
            (false, false) => self.skipped("disarm", "[deploy] disarm is off"),
        }
        let previous = self.d.handle.config_path().await;
        if let Err(why) = self.migrations(&cfg, previous.as_deref()).await {
            return Ok(self.nothing_moved(&id, &dir, why, previous).await);
        }
        self.journal(&id)?;
        // a new release ends the probation of the last one
        self.d.probation.cancel();
        super::journal::end_probation(&self.d.settings.state_dir);
        let layout = self.layout.clone();
        self.step("swap", async { layout.swap_current(&dir).map_err(|e| e.to_string()) }).await?;
        match self.apply_and_verify(&cfg).await {
            Ok(()) => {
                self.after_verified(&id, &cfg);
                Ok(Outcome::Verified)
            }
            Err(why) => Ok(self.roll_back(&id, &dir, why, previous).await),
        }
    }

    /// Disarms execution on NATS, acknowledged by the server, before anything changes; NATS
    /// unreachable refuses the switch (`--no-disarm` goes on without).
    async fn disarm(&mut self, id: &str) -> Result<(), String> {
        let reason = format!("titan-supervisor: deploying {id} (attempt {})", self.attempt);
        self.step("disarm", async {
            let publisher = crate::nats::events::publisher()
                .ok_or("disarm = true but this daemon runs without [nats] (read at its start); --no-disarm goes on without")?;
            let acked = publisher.link().publish_acked(crate::nats::events::DISARM_SUBJECT, reason.into_bytes().into());
            acked.await.map_err(|e| format!("{e}; --no-disarm goes on without"))
        })
        .await?;
        self.disarmed = true;
        Ok(())
    }

    /// Arms execution again once what runs is verified (the new release, or the old one
    /// after a rollback, or nothing changed); after `rollback_failed` or `rollback_blocked`
    /// it stays disarmed, and the outcome says so.
    async fn arm(&mut self, outcome: Outcome) {
        if !self.disarmed {
            return;
        }
        if matches!(outcome, Outcome::RollbackFailed | Outcome::RollbackBlocked) {
            let why = format!("execution stays disarmed: {}", outcome.as_str());
            tracing::error!(release = ?self.target.as_ref().map(|t| &t.0), "{why}");
            return self.skipped("arm", &why);
        }
        let release = self.layout.current_release().ok().flatten().unwrap_or_default();
        let reason = format!("titan-supervisor: {release} verified (attempt {})", self.attempt);
        let armed = self
            .step("arm", async {
                let publisher = crate::nats::events::publisher().ok_or("no [nats] link")?;
                publisher
                    .link()
                    .publish_acked(crate::nats::events::ARM_SUBJECT, reason.into_bytes().into())
                    .await
            })
            .await;
        match armed {
            Ok(()) => self.disarmed = false,
            Err(e) => tracing::error!("execution stays disarmed: {e}"),
        }
    }

    /// The release's new or changed oneshots, run before `current` moves.
    async fn migrations(&mut self, cfg: &Config, running: Option<&Path>) -> Result<(), String> {
        let running = running.and_then(|p| config::load(p).ok());
        let todo = super::migrate::pending(cfg, running.as_ref());
        if todo.is_empty() {
            self.skipped("migrations", "no new or changed oneshot");
            return Ok(());
        }
        let settings = self.d.settings.clone();
        let names = todo.clone();
        self.step("migrations", async move { super::migrate::run_all(&names, cfg, &settings).await }).await?;
        self.blocking =
            todo.iter().find(|n| cfg.services.get(*n).is_some_and(|s| s.breaks_previous)).cloned();
        self.migrated = todo;
        Ok(())
    }

    /// A migration failed before the swap: nothing else moved. The release is marked bad and
    /// what runs is verified again.
    async fn nothing_moved(
        &mut self,
        id: &str,
        dir: &Path,
        why: String,
        running: Option<PathBuf>,
    ) -> Outcome {
        tracing::error!(release = id, "{why}: nothing else was changed");
        self.reason = Some(why.clone());
        if let Err(e) = state::mark_bad(dir, &why) {
            tracing::error!("{e}");
        }
        let Some(cfg) = running.and_then(|p| config::load(&p).ok()) else { return Outcome::RolledBack };
        let verifying = verify(&self.d.handle, &self.d.settings, &cfg);
        match self.step("rollback verify", verifying).await {
            Ok(()) => Outcome::RolledBack,
            Err(_) => Outcome::RollbackFailed,
        }
    }

    /// The journal that lets the next daemon undo this switch if this one dies before its end.
    fn journal(&mut self, id: &str) -> Result<(), String> {
        let entry = super::journal::Switch {
            attempt: self.attempt.clone(),
            release: id.to_owned(),
            from: self.from.clone(),
            kind: self.req.kind.as_str().into(),
            started: stamp(self.started),
        };
        super::journal::begin(&self.d.settings.state_dir, &entry).map_err(|e| e.to_string())?;
        self.journaled = true;
        Ok(())
    }

    /// The release asked for, or for a rollback without one the last known good (else the
    /// newest release not marked bad).
    fn target(&self) -> Result<(String, PathBuf), String> {
        if let Some(release) = &self.req.release {
            return self.layout.resolve(release).map_err(|e| e.to_string());
        }
        let current = self.layout.current_release().map_err(|e| e.to_string())?.unwrap_or_default();
        let lkg = state::last_known_good(&self.d.settings.state_dir).map_err(|e| e.to_string())?;
        let pick = match lkg.as_ref().filter(|l| **l != current) {
            Some(l) => Some(l.clone()),
            None => state::newest_good(&self.layout, &current).map_err(|e| e.to_string())?,
        };
        let pick = pick.ok_or_else(|| match lkg {
            Some(lkg) if lkg == current => format!(
                "no release to roll back to: the last known good ({lkg}) is already current, and every other release is bad"
            ),
            _ => "no release to roll back to: no last known good, and every other release is bad".to_owned(),
        })?;
        self.layout.resolve(&pick).map_err(|e| e.to_string())
    }

    /// Every image pulled by digest and checked before anything changes.
    async fn pull(&mut self, cfg: &Config) -> Result<(), String> {
        // each image once, however many services run it
        let images: std::collections::BTreeSet<String> = cfg
            .services
            .values()
            .filter_map(|s| match &s.exec {
                Exec::Image { image, .. } => Some(image.clone()),
                Exec::Command { .. } => None,
            })
            .collect();
        if images.is_empty() {
            self.skipped("pull", "no container services");
            return Ok(());
        }
        let (host, project) = (self.d.settings.docker_host.clone(), self.d.settings.project.clone());
        self.step("pull", async move {
            let docker = crate::runtime::docker::connect(&host).await.map_err(|e| e.to_string())?;
            let engine = crate::runtime::docker::Engine::new(docker, &project);
            for image in &images {
                engine.ensure_image(image).await.map_err(|e| e.to_string())?;
            }
            Ok(())
        })
        .await
    }

    /// `current/services.toml` applied (only what differs), then verified.
    async fn apply_and_verify(&mut self, cfg: &Config) -> Result<(), String> {
        let path = self.layout.current.join("services.toml");
        let (handle, migrated) = (self.d.handle.clone(), self.migrated.clone());
        self.step("apply", async move {
            let done = handle.apply(Some(path), migrated).await.map_err(|e| e.to_string())?;
            tracing::info!(changed = ?done.changed, added = ?done.added, removed = ?done.removed, "deploy: applied");
            Ok(())
        })
        .await?;
        let verifying = verify(&self.d.handle, &self.d.settings, cfg);
        self.step("verify", verifying).await
    }

    /// Back to the last known good release (else the release or config that ran before),
    /// verified; never further back.
    async fn roll_back(
        &mut self,
        failed: &str,
        dir: &Path,
        why: String,
        previous: Option<PathBuf>,
    ) -> Outcome {
        tracing::error!(release = failed, "deploy failed, rolling back: {why}");
        self.reason = Some(why.clone());
        if let Err(e) = state::mark_bad(dir, &why) {
            tracing::error!("{e}");
        }
        if self.req.kind != Kind::Switch {
            return Outcome::RollbackFailed;
        }
        if let Some(migration) = &self.blocking {
            let blocked = format!("{why}; no rollback: migration {migration} declared breaks_previous");
            tracing::error!(release = failed, "{blocked}");
            self.reason = Some(blocked);
            return Outcome::RollbackBlocked;
        }
        let lkg = state::last_known_good(&self.d.settings.state_dir).ok().flatten();
        let back = [lkg, self.from.clone()].into_iter().flatten().find(|r| r != failed);
        let restored = match back.map(|r| self.layout.resolve(&r)) {
            Some(Ok((_, old))) => self.restore_release(&old).await,
            Some(Err(e)) => Err(e.to_string()),
            None => self.restore_config(previous.filter(|p| !p.starts_with(dir))).await,
        };
        match restored {
            Ok(()) => Outcome::RolledBack,
            Err(e) => {
                tracing::error!("rollback failed: {e}; supervising what runs now");
                Outcome::RollbackFailed
            }
        }
    }

    async fn restore_release(&mut self, old: &Path) -> Result<(), String> {
        let layout = self.layout.clone();
        self.step("rollback swap", async { layout.swap_current(old).map_err(|e| e.to_string()) }).await?;
        let cfg = config::load(&old.join("services.toml")).map_err(|e| e.to_string())?;
        let path = self.layout.current.join("services.toml");
        self.restore(Some(path), &cfg).await
    }

    /// No release ran before: `current` goes, and the plain config the daemon ran comes back,
    /// or with none (a first deploy) no services at all.
    async fn restore_config(&mut self, previous: Option<PathBuf>) -> Result<(), String> {
        let layout = self.layout.clone();
        self.step("rollback swap", async { layout.remove_current().map_err(|e| e.to_string()) }).await?;
        let cfg = match &previous {
            Some(path) => config::load(path).map_err(|e| e.to_string())?,
            None => Config::empty(self.d.settings.clone()),
        };
        self.restore(previous, &cfg).await
    }

    async fn restore(&mut self, path: Option<PathBuf>, cfg: &Config) -> Result<(), String> {
        let handle = self.d.handle.clone();
        self.step("rollback apply", async move {
            handle.apply(path, Vec::new()).await.map(drop).map_err(|e| e.to_string())
        })
        .await?;
        let verifying = verify(&self.d.handle, &self.d.settings, cfg);
        self.step("rollback verify", verifying).await
    }

    /// A verified release is on probation; it becomes the last known good once that passes.
    fn after_verified(&self, id: &str, cfg: &Config) {
        let gates = cfg.services.iter().map(|(n, s)| (n.clone(), s.startup_timeout.0)).collect();
        self.d.probation.start(self.d.clone(), id.to_owned(), cfg.deploy.probation.0, gates);
    }

    /// Evidence in the release, a line in the history, the journal removed, the last progress
    /// line; then the lock goes.
    async fn finish(&mut self, outcome: Outcome) {
        let release = self.target.as_ref().map(|(id, _)| id.clone());
        let attempt = self.attempt.clone();
        let evidence = self.target.as_ref().and_then(|(_, dir)| self.evidence(dir, &attempt, outcome));
        if let Some(release) = &release {
            let line = Attempt {
                attempt: attempt.clone(),
                release: release.clone(),
                from: self.from.clone(),
                kind: self.req.kind.as_str().into(),
                outcome: outcome.as_str().into(),
                reason: self.reason.clone(),
                started: stamp(self.started),
                ended: stamp(SystemTime::now()),
                uid: Some(self.req.peer.uid),
                pid: self.req.peer.pid,
            };
            if let Err(e) = state::append_history(&self.d.settings.state_dir, &line) {
                tracing::error!("deploy: {e}");
            }
        }
        super::fault::pause("finish").await;
        if self.journaled {
            super::journal::end(&self.d.settings.state_dir);
        }
        tracing::info!(outcome = outcome.as_str(), release = ?release, reason = ?self.reason, "deploy ended");
        crate::notify::deploy_status(None);
        self.send(&json!({
            "outcome": outcome.as_str(),
            "release": release,
            "from": self.from,
            "reason": self.reason,
            "evidence": evidence,
        }));
    }

    fn evidence(&self, dir: &Path, attempt: &str, outcome: Outcome) -> Option<PathBuf> {
        let digests = crate::release::read_digests(dir).ok();
        let env_sha = self.d.settings.env_file.as_deref().and_then(sha256_of);
        let evidence = json!({
            "attempt": attempt,
            "kind": self.req.kind,
            "release": self.target.as_ref().map(|(id, _)| id),
            "from": self.from,
            "requested_by": self.req.peer,
            "no_disarm": self.req.no_disarm,
            "migrations": self.migrated,
            "digests": digests,
            "env_file_sha256": env_sha,
            "steps": self.steps,
            "outcome": outcome.as_str(),
            "reason": self.reason,
            "started": stamp(self.started),
            "ended": stamp(SystemTime::now()),
        });
        match state::write_evidence(dir, attempt, &evidence) {
            Ok(path) => Some(path),
            Err(e) => {
                tracing::error!("deploy: {e}");
                None
            }
        }
    }
}

/// The whole release checked before anything changes: its signature first (before
/// digests.json is parsed), its config, every image pinned and equal to digests.json, and the
/// `[supervisor]` keys that cannot change in a running daemon unchanged. `running` is the
/// daemon's `[supervisor]` (its `trusted_keys` included). Public (as `validate_release`) so a
/// test can ask whether a switch would accept a release without running a daemon.
pub fn validate(dir: &Path, running: &config::Supervisor) -> Result<Config, String> {
    crate::release::verify_signature(dir, &running.trusted_keys).map_err(|e| e.to_string())?;
    let file = dir.join("services.toml");
    let cfg = config::load(&file).map_err(|e| e.to_string())?;
    cfg.graph().map_err(|e| format!("{}: {e}", file.display()))?;
    let digests = crate::release::read_digests(dir).map_err(|e| e.to_string())?;
    for (name, svc) in &cfg.services {
        let Exec::Image { image, .. } = &svc.exec else { continue };
        if let Some(problem) = crate::config::resolve::image_problem(image, true) {
            return Err(format!("{}: services.{name}.image: {problem}", file.display()));
        }
        match digests.get(name) {
            Some(d) if d == image => {}
            Some(d) => return Err(format!("services.{name}.image is {image}, digests.json says {d}")),
            None => return Err(format!("digests.json has no digest for the container service {name}")),
        }
    }
    if let Some(stray) =
        digests.keys().find(|n| !matches!(cfg.services.get(*n).map(|s| &s.exec), Some(Exec::Image { .. })))
    {
        return Err(format!("digests.json names {stray}, which is not a container service of the release"));
    }
    fixed_keys_unchanged(running, &cfg.supervisor, &file)?;
    Ok(cfg)
}

fn fixed_keys_unchanged(
    running: &config::Supervisor,
    new: &config::Supervisor,
    file: &Path,
) -> Result<(), String> {
    let fixed = [
        ("socket", running.socket.display().to_string(), new.socket.display().to_string()),
        ("state_dir", running.state_dir.display().to_string(), new.state_dir.display().to_string()),
        ("log_dir", running.log_dir.display().to_string(), new.log_dir.display().to_string()),
        ("project", running.project.clone(), new.project.clone()),
        ("metrics_listen", listen(&running.metrics_listen), listen(&new.metrics_listen)),
    ];
    match fixed.iter().find(|(_, a, b)| a != b) {
        Some((key, a, b)) => Err(format!(
            "{}: [supervisor] {key} cannot change in a switch (the daemon runs with {a:?}, the release has {b:?}); restart the daemon with it instead",
            file.display()
        )),
        None => Ok(()),
    }
}

/// `metrics_listen` as the refusal shows it: bound at boot, so a switch cannot add, move or
/// remove it either.
fn listen(addr: &Option<config::units::ListenAddr>) -> String {
    addr.map_or_else(|| "(not set)".to_owned(), |a| a.to_string())
}

/// Every service ready (healthy, a oneshot done) within `[deploy] verify_timeout`, then the
/// `[verify]` checks, all of them.
async fn verify(handle: &Handle, settings: &config::Supervisor, cfg: &Config) -> Result<(), String> {
    let limit = cfg.deploy.verify_timeout.0;
    let deadline = Instant::now() + limit;
    all_ready(handle, limit).await?;
    let containers: HashMap<String, String> = cfg
        .services
        .iter()
        .filter(|(_, s)| matches!(s.exec, Exec::Image { .. }))
        .map(|(n, _)| (n.clone(), format!("{}-{n}", settings.project)))
        .collect();
    let docker = match containers.is_empty() {
        true => None,
        false => crate::runtime::docker::connect(&settings.docker_host).await.ok(),
    };
    let timeout = deadline
        .saturating_duration_since(Instant::now())
        .clamp(Duration::from_secs(1), Duration::from_secs(10));
    let checker = Checker { docker, containers, timeout };
    let failed: Vec<String> = checker
        .run(&cfg.verify)
        .await
        .into_iter()
        .filter(|r| !r.passed)
        .map(|r| format!("{} {}: {}", r.kind, r.name, r.detail))
        .collect();
    if failed.is_empty() { Ok(()) } else { Err(failed.join("; ")) }
}

/// Waits until every service shown is ready; a failed one, or the time running out, fails it.
pub(crate) async fn all_ready(handle: &Handle, limit: Duration) -> Result<(), String> {
    let mut board = handle.board();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let waiting = {
            let services = board.borrow_and_update();
            if let Some(f) = services.iter().find(|s| s.state == StateKind::Failed) {
                return Err(format!("{} failed: {}", f.name, f.reason.as_deref().unwrap_or("")));
            }
            services
                .iter()
                .filter(|s| !ready(s.state, s.kind))
                .map(|s| format!("{} ({})", s.name, s.state))
                .collect::<Vec<_>>()
        };
        if waiting.is_empty() {
            return Ok(());
        }
        if tokio::time::timeout_at(deadline, board.changed()).await.is_err() {
            return Err(format!("not ready within {limit:?}: {}", waiting.join(", ")));
        }
    }
}

fn ready(state: StateKind, kind: ServiceKind) -> bool {
    state == StateKind::Healthy || (state == StateKind::Exited && kind == ServiceKind::Oneshot)
}

fn sha256_of(path: &Path) -> Option<String> {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).ok()?;
    Some(Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect())
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// RFC 3339 with milliseconds.
pub(crate) fn stamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// `20261202T013000Z`, for attempt names.
fn compact(t: SystemTime) -> String {
    let s = humantime::format_rfc3339_seconds(t).to_string();
    s.replace(['-', ':'], "")
}
