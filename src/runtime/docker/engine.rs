//! One project's containers on one daemon: images ensured (pulled by digest and verified),
//! networks and volumes created and labelled when missing, containers prepared ahead (adopted
//! when running with the same spec hash, recreated when it changed, created when absent) so
//! that a start is only `docker start`, and signals delivered.

use std::collections::HashMap;

use bollard::Docker;
use bollard::errors::Error as ApiError;
use bollard::models::{NetworkConnectRequest, NetworkCreateRequest, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, KillContainerOptions, ListContainersOptions,
    RemoveContainerOptions, RenameContainerOptions, StopContainerOptions, WaitContainerOptions,
};
use futures_util::StreamExt;

use super::error::{DockerError, status_of};
use super::spec::{self, ContainerSpec};

/// A running container as the supervisor tracks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Running {
    pub(crate) id: String,
    /// Its main process as the host sees it (for memory readings).
    pub(crate) pid: Option<i32>,
    /// `State.StartedAt` in nanoseconds: a `die` event from before it belongs to an earlier run.
    pub(crate) started_nanos: i64,
    /// Its address on its network: probes go there rather than through docker-proxy, which
    /// accepts before the container listens and then holds the connection for a second.
    pub(crate) ip: Option<std::net::IpAddr>,
    /// Exit code and OOM kill when it had already ended by the time it was inspected (a
    /// container can die before the start that ran it is reported).
    pub(crate) ended: Option<(i64, bool)>,
}

impl Running {
    fn of(found: bollard::models::ContainerInspectResponse) -> Running {
        let state = found.state.unwrap_or_default();
        let ip = found
            .network_settings
            .and_then(|n| n.networks)
            .and_then(|nets| nets.into_values().find_map(|e| e.ip_address.filter(|ip| !ip.is_empty())))
            .and_then(|ip| ip.parse().ok());
        Running {
            id: found.id.unwrap_or_default(),
            pid: state.pid.filter(|&p| p > 0).map(|p| p as i32),
            started_nanos: state.started_at.as_deref().and_then(super::nanos_of).unwrap_or(0),
            ip,
            ended: (state.running != Some(true))
                .then(|| (state.exit_code.unwrap_or(-1), state.oom_killed == Some(true))),
        }
    }
}

/// What `prepare` left in place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Prepared {
    /// Created (or found stopped with the same spec): a start runs it.
    Created,
    /// Already running with the same spec: adopted, no restart.
    Adopted(Running),
}

#[derive(Clone)]
pub(crate) struct Engine {
    docker: Docker,
    project: String,
    /// Held while networks and volumes are looked up and created: Docker accepts two
    /// networks of one name, so two services preparing at once must not both create it.
    creating: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// A few preparations at a time, taken in the order asked (services in start order): the
    /// first tier's containers are created first instead of competing with all the others.
    preparing: std::sync::Arc<tokio::sync::Semaphore>,
}

/// How many containers are prepared at once.
const PREPARING: usize = 3;

fn not_found(e: &ApiError) -> bool {
    status_of(e) == Some(404)
}

fn labels(project: &str) -> HashMap<String, String> {
    HashMap::from([
        (spec::LABEL_PROJECT.to_owned(), project.to_owned()),
        (spec::COMPOSE_PROJECT.to_owned(), project.to_owned()),
    ])
}

impl Engine {
    pub(crate) fn new(docker: Docker, project: &str) -> Self {
        Engine {
            docker,
            project: project.to_owned(),
            creating: Default::default(),
            preparing: std::sync::Arc::new(tokio::sync::Semaphore::new(PREPARING)),
        }
    }

    pub(crate) fn docker(&self) -> &Docker {
        &self.docker
    }

    /// Makes sure `image` is present: pulled when absent (progress in the supervisor's log),
    /// and a `name@sha256:…` reference must then be among the image's RepoDigests exactly.
    pub(crate) async fn ensure_image(&self, image: &str) -> Result<(), DockerError> {
        let present = match self.docker.inspect_image(image).await {
            Ok(_) => true,
            Err(e) if not_found(&e) => false,
            Err(e) => return Err(DockerError::api("inspect image", image)(e)),
        };
        if !present {
            self.pull(image).await?;
        }
        let Some((_, digest)) = image.split_once('@') else { return Ok(()) };
        let inspected =
            self.docker.inspect_image(image).await.map_err(DockerError::api("inspect image", image))?;
        let found = inspected.repo_digests.unwrap_or_default();
        if found.iter().any(|d| d.rsplit_once('@').is_some_and(|(_, d)| d == digest)) {
            Ok(())
        } else {
            Err(DockerError::Digest { image: image.to_owned(), found, digest: digest.to_owned() })
        }
    }

    async fn pull(&self, image: &str) -> Result<(), DockerError> {
        tracing::info!(image, "pulling");
        let options = CreateImageOptions { from_image: Some(image.to_owned()), ..Default::default() };
        let mut progress = self.docker.create_image(Some(options), None, None);
        let mut last = String::new();
        while let Some(step) = progress.next().await {
            let step = step.map_err(DockerError::api("pull", image))?;
            if let Some(detail) = step.error_detail.and_then(|d| d.message) {
                return Err(DockerError::Pull { image: image.to_owned(), detail });
            }
            let status = step.status.unwrap_or_default();
            if status != last {
                tracing::info!(image, layer = step.id.as_deref().unwrap_or(""), "pull: {status}");
                last = status;
            }
        }
        tracing::info!(image, "pulled");
        Ok(())
    }

    /// Creates the network, labelled with the project, unless it exists; its id.
    pub(crate) async fn ensure_network(&self, name: &str) -> Result<String, DockerError> {
        let _one_at_a_time = self.creating.lock().await;
        match self.docker.inspect_network(name, None).await {
            Ok(found) => return Ok(found.id.unwrap_or_default()),
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(DockerError::api("inspect network", name)(e)),
        }
        let mut labels = labels(&self.project);
        labels.insert("com.docker.compose.network".into(), name.to_owned());
        let request = NetworkCreateRequest {
            name: name.to_owned(),
            driver: Some("bridge".into()),
            labels: Some(labels),
            ..Default::default()
        };
        tracing::info!(network = name, "creating the network");
        match self.docker.create_network(request).await {
            Ok(created) => Ok(created.id),
            // created meanwhile from outside
            Err(e) if status_of(&e) == Some(409) => match self.docker.inspect_network(name, None).await {
                Ok(found) => Ok(found.id.unwrap_or_default()),
                Err(e) => Err(DockerError::api("inspect network", name)(e)),
            },
            Err(e) => Err(DockerError::api("create network", name)(e)),
        }
    }

    /// Creates the named volume, labelled with the project, unless it exists.
    pub(crate) async fn ensure_volume(&self, name: &str) -> Result<(), DockerError> {
        let _one_at_a_time = self.creating.lock().await;
        match self.docker.inspect_volume(name).await {
            Ok(_) => return Ok(()),
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(DockerError::api("inspect volume", name)(e)),
        }
        let mut labels = labels(&self.project);
        labels.insert("com.docker.compose.volume".into(), name.to_owned());
        let request =
            VolumeCreateRequest { name: Some(name.to_owned()), labels: Some(labels), ..Default::default() };
        self.docker.create_volume(request).await.map(drop).map_err(DockerError::api("create volume", name))
    }

    /// Everything a start needs, done ahead: image, network, volumes, and the container itself
    /// — adopted when it runs with this spec, recreated when its spec changed.
    pub(crate) async fn prepare(&self, spec: &ContainerSpec) -> Result<Prepared, DockerError> {
        // the semaphore is never closed: a permit always comes
        let _turn = self.preparing.acquire().await.ok();
        self.ensure_image(&spec.image).await?;
        let network = self.ensure_network(&spec.network).await?;
        for volume in &spec.volumes {
            self.ensure_volume(volume).await?;
        }
        match self.docker.inspect_container(&spec.name, None).await {
            Ok(found) => {
                let labels = found.config.as_ref().and_then(|c| c.labels.clone()).unwrap_or_default();
                if self.service_of(&spec.name, &labels) != Some(spec.service.as_str()) {
                    return Err(DockerError::NotOurs {
                        name: spec.name.clone(),
                        label: spec::LABEL_PROJECT,
                        project: self.project.clone(),
                    });
                }
                if labels.get(spec::LABEL_HASH) != Some(&spec.hash) {
                    tracing::info!(container = %spec.name, "its definition changed: recreating");
                    self.remove(spec).await?;
                } else if let Some(prepared) = self.take_as_found(spec, &network, found).await? {
                    return Ok(prepared);
                }
            }
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(DockerError::api("inspect container", &spec.name)(e)),
        }
        let options = CreateContainerOptions { name: Some(spec.name.clone()), ..Default::default() };
        self.docker
            .create_container(Some(options), spec.body.clone())
            .await
            .map_err(DockerError::api("create container", &spec.name))?;
        Ok(Prepared::Created)
    }

    /// A container of this spec found in place: adopted when it runs (unpaused first: paused
    /// from outside, it would hold up every dependent; joined to its network again when it
    /// was taken off it), started by the next start when it does not. `None`: its network was
    /// removed and made anew, so it is recreated (a container keeps the id of a network).
    async fn take_as_found(
        &self,
        spec: &ContainerSpec,
        network: &str,
        found: bollard::models::ContainerInspectResponse,
    ) -> Result<Option<Prepared>, DockerError> {
        let state = found.state.clone().unwrap_or_default();
        let joined = found
            .network_settings
            .as_ref()
            .and_then(|n| n.networks.as_ref())
            .and_then(|nets| nets.get(&spec.network))
            .and_then(|e| e.network_id.as_deref())
            == Some(network);
        if state.running != Some(true) {
            if joined {
                return Ok(Some(Prepared::Created));
            }
            tracing::warn!(container = %spec.name, network = %spec.network, "its network was removed: recreating it");
            self.delete(&spec.name).await?;
            return Ok(None);
        }
        if state.paused == Some(true) {
            tracing::warn!(container = %spec.name, "found paused: unpausing it");
            self.docker
                .unpause_container(&spec.name)
                .await
                .map_err(DockerError::api("unpause container", &spec.name))?;
        }
        if !joined {
            tracing::warn!(container = %spec.name, network = %spec.network, "found off its network: connecting it again");
            self.connect(spec).await?;
            let again = self
                .docker
                .inspect_container(&spec.name, None)
                .await
                .map_err(DockerError::api("inspect container", &spec.name))?;
            return Ok(Some(Prepared::Adopted(Running::of(again))));
        }
        Ok(Some(Prepared::Adopted(Running::of(found))))
    }

    /// Joins the running container to its network under its service's alias.
    async fn connect(&self, spec: &ContainerSpec) -> Result<(), DockerError> {
        let endpoint = spec
            .body
            .networking_config
            .as_ref()
            .and_then(|n| n.endpoints_config.as_ref())
            .and_then(|e| e.get(&spec.network))
            .cloned()
            .unwrap_or_default();
        let request = NetworkConnectRequest { container: spec.name.clone(), endpoint_config: Some(endpoint) };
        self.docker
            .connect_network(&spec.network, request)
            .await
            .map_err(DockerError::api("connect to network", &spec.network))
    }

    /// Runs `spec` once as a container of its own called `name` (a switch's migration) and
    /// returns its exit code; the container is removed afterwards. It joins the service's
    /// network without the service's alias (it must not answer for the service).
    pub(crate) async fn run_once(&self, spec: &ContainerSpec, name: &str) -> Result<i64, DockerError> {
        self.ensure_image(&spec.image).await?;
        self.ensure_network(&spec.network).await?;
        for volume in &spec.volumes {
            self.ensure_volume(volume).await?;
        }
        self.delete(name).await?;
        let mut body = spec.body.clone();
        if let Some(endpoints) = body.networking_config.as_mut().and_then(|n| n.endpoints_config.as_mut()) {
            endpoints.values_mut().for_each(|e| e.aliases = None);
        }
        let options = CreateContainerOptions { name: Some(name.to_owned()), ..Default::default() };
        self.docker
            .create_container(Some(options), body)
            .await
            .map_err(DockerError::api("create container", name))?;
        let ran = match self.docker.start_container(name, None).await {
            Ok(()) => self.exit_code(name).await,
            Err(e) => Err(DockerError::api("start container", name)(e)),
        };
        self.discard(name).await;
        ran
    }

    /// Waits for the container to stop and reads its exit code.
    async fn exit_code(&self, name: &str) -> Result<i64, DockerError> {
        let options = WaitContainerOptions { condition: "not-running".into() };
        // bollard reports a non-zero exit as an error item: the inspect after it tells
        let _ = self.docker.wait_container(name, Some(options)).next().await;
        Ok(self.exit_of(name).await?.map_or(-1, |(code, _)| code))
    }

    /// Removes a container of ours that served its purpose, saying so when it cannot.
    pub(crate) async fn discard(&self, name: &str) {
        if let Err(e) = self.delete(name).await {
            tracing::warn!("{e}");
        }
    }

    /// Starts the prepared container and reads back its main pid and start time.
    pub(crate) async fn start(&self, name: &str) -> Result<Running, DockerError> {
        self.docker.start_container(name, None).await.map_err(DockerError::api("start container", name))?;
        let found = self
            .docker
            .inspect_container(name, None)
            .await
            .map_err(DockerError::api("inspect container", name))?;
        Ok(Running::of(found))
    }

    /// Sends `signal` to the container's main process; one that is not running is no error.
    pub(crate) async fn signal(&self, name: &str, signal: &str) -> Result<(), DockerError> {
        let options = KillContainerOptions { signal: signal.to_owned() };
        match self.docker.kill_container(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if matches!(status_of(&e), Some(404 | 409)) => Ok(()),
            Err(e) => Err(DockerError::api("signal container", name)(e)),
        }
    }

    /// Exit code and OOM kill of a container that stopped; `None` while it runs.
    pub(crate) async fn exit_of(&self, name: &str) -> Result<Option<(i64, bool)>, DockerError> {
        let found = self
            .docker
            .inspect_container(name, None)
            .await
            .map_err(DockerError::api("inspect container", name))?;
        Ok(Running::of(found).ended)
    }

    /// Stops a service's container as the supervisor stops a service: its stop signal, the
    /// configured grace to the millisecond (Docker's own StopTimeout is whole seconds), then
    /// SIGKILL.
    pub(crate) async fn stop(&self, spec: &ContainerSpec) -> Result<(), DockerError> {
        self.stop_named(&spec.name, spec).await
    }

    /// `stop` of the container called `name`, by `spec`'s stop signal and grace (a container
    /// retired under another name still stops as its service does).
    async fn stop_named(&self, name: &str, spec: &ContainerSpec) -> Result<(), DockerError> {
        let signal = spec.body.stop_signal.as_deref().unwrap_or("SIGTERM");
        self.signal(name, signal).await?;
        if !self.ended_within(name, spec.grace).await {
            self.signal(name, "SIGKILL").await?;
            self.ended_within(name, std::time::Duration::from_secs(10)).await;
        }
        Ok(())
    }

    /// Renames the running container of `spec` to `to`, out of the way of its successor (an
    /// update that starts first); it keeps running, and its network alias.
    pub(crate) async fn retire(&self, spec: &ContainerSpec, to: &str) -> Result<(), DockerError> {
        let options = RenameContainerOptions { name: to.to_owned() };
        self.docker
            .rename_container(&spec.name, options)
            .await
            .map_err(DockerError::api("rename container", &spec.name))
    }

    /// Stops (as `spec`'s service stops) and removes the container retired as `name`.
    pub(crate) async fn remove_retired(&self, name: &str, spec: &ContainerSpec) -> Result<(), DockerError> {
        self.stop_named(name, spec).await?;
        self.delete(name).await
    }

    /// Whether the container is not running (or not there) within `limit`.
    async fn ended_within(&self, name: &str, limit: std::time::Duration) -> bool {
        let options = WaitContainerOptions { condition: "not-running".into() };
        let mut wait = self.docker.wait_container(name, Some(options));
        tokio::time::timeout(limit, wait.next()).await.is_ok()
    }

    /// Stops and removes a service's container.
    pub(crate) async fn remove(&self, spec: &ContainerSpec) -> Result<(), DockerError> {
        self.stop(spec).await?;
        self.delete(&spec.name).await
    }

    /// Removes a container, stopped or not.
    async fn delete(&self, name: &str) -> Result<(), DockerError> {
        let options = RemoveContainerOptions { force: true, ..Default::default() };
        match self.docker.remove_container(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(DockerError::api("remove container", name)(e)),
        }
    }

    /// Stops a container of no service (by its own stop signal and timeout) and removes it.
    async fn remove_orphan(&self, name: &str) -> Result<(), DockerError> {
        match self.docker.stop_container(name, None::<StopContainerOptions>).await {
            Ok(()) => {}
            Err(e) if matches!(status_of(&e), Some(304 | 404)) => {}
            Err(e) => return Err(DockerError::api("stop container", name)(e)),
        }
        self.delete(name).await
    }

    /// The service a container of this project was created for, by its labels and its name
    /// (`<project>-<service>`); `None` for one only labelled like ours.
    fn service_of<'a>(&self, name: &str, labels: &'a HashMap<String, String>) -> Option<&'a str> {
        let service = labels.get(spec::LABEL_SERVICE)?;
        let ours = labels.get(spec::LABEL_PROJECT) == Some(&self.project)
            && labels.contains_key(spec::LABEL_HASH)
            && name.strip_prefix(self.project.as_str()).and_then(|r| r.strip_prefix('-'))
                == Some(service.as_str());
        ours.then_some(service.as_str())
    }

    /// Whether `name` is a container of ours retired by an update (`<project>-<service>` +
    /// `RETIRED`...: a service name has no dot, so no service's own container is called so).
    fn retired_of(&self, name: &str, labels: &HashMap<String, String>) -> bool {
        let Some((own, _)) = name.split_once(spec::RETIRED) else { return false };
        self.service_of(own, labels).is_some()
    }

    /// Stops and removes the project's containers whose service is not in `keep`, and every
    /// container an unfinished update retired.
    pub(crate) async fn remove_orphans(&self, keep: &[String]) -> Result<Vec<String>, DockerError> {
        let filter = format!("{}={}", spec::LABEL_PROJECT, self.project);
        let options = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([("label".to_owned(), vec![filter])])),
            ..Default::default()
        };
        let found = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(DockerError::api("list containers of project", &self.project))?;
        let mut removed = Vec::new();
        for c in found {
            let labels = c.labels.unwrap_or_default();
            let name = c.names.and_then(|n| n.into_iter().next()).unwrap_or_default();
            let name = name.trim_start_matches('/').to_owned();
            if self.retired_of(&name, &labels) {
                // an update that started first and never finished (the supervisor was killed)
                tracing::info!(container = %name, "a container an update retired: stopping and removing it");
                self.remove_orphan(&name).await?;
                removed.push(name);
                continue;
            }
            let Some(service) = self.service_of(&name, &labels) else {
                tracing::error!(
                    container = %name,
                    "carries {}={} but was not created by a supervisor of this project: leaving it alone",
                    spec::LABEL_PROJECT,
                    self.project
                );
                continue;
            };
            if keep.iter().any(|k| k == service) {
                continue;
            }
            tracing::info!(container = %name, service = %service, "not in the config: stopping and removing it");
            self.remove_orphan(&name).await?;
            removed.push(name);
        }
        Ok(removed)
    }
}
