//! Migrations: the oneshots of a release that are new or changed against the config running
//! now, run to exit 0 with the release's definitions before `current` moves, so that one that
//! fails leaves every service as it was. A native one runs as a child of the project's spawner
//! with its service's environment, directory and user (its exit comes back through a pipe, as
//! for exec checks: the actor's reaper owns waitpid); a container one as a container of its
//! own, `<project>-<service>-migration`, removed afterwards. The apply that follows installs
//! their definitions as done instead of running them again.

use std::time::Duration;

use crate::config::{self, Config, Exec, Kind};
use crate::runtime::docker::{ContainerSpec, Engine};

/// The oneshots to run: in `new`, and new or changed against `running`.
pub(crate) fn pending(new: &Config, running: Option<&Config>) -> Vec<String> {
    new.services
        .iter()
        .filter(|(_, s)| s.kind == Kind::Oneshot)
        .filter(|(name, s)| running.and_then(|r| r.services.get(*name)) != Some(*s))
        .map(|(name, _)| name.clone())
        .collect()
}

/// Runs the migrations `names` of `cfg` one after the other, in the config's order; `Err`
/// names the first that failed and how.
pub(crate) async fn run_all(
    names: &[String],
    cfg: &Config,
    settings: &config::Supervisor,
) -> Result<(), String> {
    for name in names {
        let Some(svc) = cfg.services.get(name) else { continue };
        let limit = svc.startup_timeout.0;
        let result = match &svc.exec {
            Exec::Command { .. } => native(settings, svc, limit).await,
            Exec::Image { .. } => container(settings, svc, limit).await,
        };
        result.map_err(|why| format!("migration {name}: {why}"))?;
        tracing::info!(service = %name, "migration done");
    }
    Ok(())
}

async fn native(settings: &config::Supervisor, svc: &config::Service, limit: Duration) -> Result<(), String> {
    let def = crate::supervisor::definition::Definition::build(settings, svc).map_err(|e| e.to_string())?;
    let native = def.native().ok_or("not a native service")?;
    let env = native.environment(None);
    let host = super::verify::exec::Host {
        argv: &native.argv,
        env: &env,
        cwd: native.cwd.as_deref(),
        credentials: native.credentials.as_ref(),
    };
    match super::verify::exec::run(&host, limit).await {
        (true, _) => Ok(()),
        (false, detail) => Err(detail),
    }
}

async fn container(
    settings: &config::Supervisor,
    svc: &config::Service,
    limit: Duration,
) -> Result<(), String> {
    let spec = ContainerSpec::of(&settings.project, svc).ok_or("not a container service")?;
    let docker = crate::runtime::docker::connect(&settings.docker_host).await.map_err(|e| e.to_string())?;
    let engine = Engine::new(docker, &settings.project);
    let name = format!("{}-migration", spec.name);
    match tokio::time::timeout(limit, engine.run_once(&spec, &name)).await {
        Ok(Ok(0)) => Ok(()),
        Ok(Ok(code)) => Err(format!("exit {code}")),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => {
            engine.discard(&name).await;
            Err(format!("timed out after {limit:?}"))
        }
    }
}
