//! The project's claim on its dockerd: one volume, `<project>_titan-claim`, labelled with the
//! identity of the supervisor that owns the project (host, boot, pid namespace, pid and that
//! process's start time, socket, state directory). Two supervisors with one `project` on one
//! daemon would each remove the other's containers as orphans; the second finds the claim of a
//! live first and refuses. A claim whose owner is provably gone — the same host, boot and pid
//! namespace with that pid dead or another process, or an earlier boot of this host — is
//! taken over; one that cannot be checked (another host, another pid namespace) counts as
//! live. A volume's labels cannot change and its creation by name is serialized by dockerd,
//! so whoever's labels the volume carries after both created it is the owner.

use std::collections::HashMap;
use std::path::Path;

use bollard::Docker;
use bollard::models::VolumeCreateRequest;
use bollard::query_parameters::RemoveVolumeOptions;

use super::error::{DockerError, status_of};
use super::spec::LABEL_PROJECT;
use crate::runtime::procfs::start_time;

const LABEL_OWNER: &str = "titan.claim.owner";
const LABEL_HOST: &str = "titan.claim.host";
const LABEL_BOOT: &str = "titan.claim.boot";
const LABEL_PID_NS: &str = "titan.claim.pid-ns";
const LABEL_PID: &str = "titan.claim.pid";
const LABEL_STARTED: &str = "titan.claim.started";
const LABEL_SOCKET: &str = "titan.claim.socket";
const LABEL_STATE_DIR: &str = "titan.claim.state-dir";
const LABEL_SINCE: &str = "titan.claim.since";

/// The name of the claim volume of `project`.
pub(crate) fn volume_of(project: &str) -> String {
    format!("{project}_titan-claim")
}

/// Who owns (or wants) a project.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Owner {
    host: String,
    boot: String,
    pid_ns: String,
    pid: i32,
    /// The process's start time in clock ticks since boot (`/proc/PID/stat` field 22): with the
    /// pid, it tells a live owner from a later process that got its pid.
    started: u64,
    socket: String,
    state_dir: String,
    since: String,
}

/// What a claim found on the daemon means for us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Standing {
    /// Ours (this process, also after an upgrade's exec).
    Mine,
    /// Its owner is gone: take it over.
    Gone,
    /// Another supervisor that is alive, or that cannot be shown dead from here.
    Live,
}

impl Owner {
    /// This process.
    pub(crate) fn me(socket: &Path, state_dir: &Path) -> Owner {
        let pid = std::process::id() as i32;
        Owner {
            host: read_trimmed("/proc/sys/kernel/hostname"),
            boot: read_trimmed("/proc/sys/kernel/random/boot_id"),
            pid_ns: std::fs::read_link("/proc/self/ns/pid")
                .map(|l| l.display().to_string())
                .unwrap_or_default(),
            pid,
            started: start_time(pid).unwrap_or(0),
            socket: socket.display().to_string(),
            state_dir: state_dir.display().to_string(),
            since: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        }
    }

    fn labels(&self, project: &str) -> HashMap<String, String> {
        HashMap::from([
            (LABEL_PROJECT.to_owned(), project.to_owned()),
            (LABEL_OWNER.to_owned(), "titan-supervisor".to_owned()),
            (LABEL_HOST.to_owned(), self.host.clone()),
            (LABEL_BOOT.to_owned(), self.boot.clone()),
            (LABEL_PID_NS.to_owned(), self.pid_ns.clone()),
            (LABEL_PID.to_owned(), self.pid.to_string()),
            (LABEL_STARTED.to_owned(), self.started.to_string()),
            (LABEL_SOCKET.to_owned(), self.socket.clone()),
            (LABEL_STATE_DIR.to_owned(), self.state_dir.clone()),
            (LABEL_SINCE.to_owned(), self.since.clone()),
        ])
    }

    /// The owner a claim volume's labels name; `None` when they are not a claim's.
    fn of_labels(labels: &HashMap<String, String>) -> Option<Owner> {
        let get = |k: &str| labels.get(k).cloned();
        if get(LABEL_OWNER)?.as_str() != "titan-supervisor" {
            return None;
        }
        Some(Owner {
            host: get(LABEL_HOST)?,
            boot: get(LABEL_BOOT)?,
            pid_ns: get(LABEL_PID_NS)?,
            pid: get(LABEL_PID)?.parse().ok()?,
            started: get(LABEL_STARTED)?.parse().ok()?,
            socket: get(LABEL_SOCKET).unwrap_or_default(),
            state_dir: get(LABEL_STATE_DIR).unwrap_or_default(),
            since: get(LABEL_SINCE).unwrap_or_default(),
        })
    }

    /// What the claim of `self` means to `me`, judged from `me`'s host (`alive` reads the
    /// start time of a pid in `me`'s pid namespace, `None` when there is no such process).
    pub(crate) fn standing(&self, me: &Owner, alive: impl Fn(i32) -> Option<u64>) -> Standing {
        if self.host != me.host {
            return Standing::Live;
        }
        if self.boot != me.boot {
            // the same host, booted since: every process of the earlier boot is gone
            return Standing::Gone;
        }
        if self.pid_ns != me.pid_ns {
            return Standing::Live;
        }
        if self.pid == me.pid && self.started == me.started {
            return Standing::Mine;
        }
        if alive(self.pid) == Some(self.started) { Standing::Live } else { Standing::Gone }
    }

    fn describe(&self) -> String {
        format!(
            "pid {} on {} (socket {}, state dir {}, since {})",
            self.pid, self.host, self.socket, self.state_dir, self.since
        )
    }
}

/// Takes the claim of `project` for `me`, or refuses (`DockerError::Claimed`) when another
/// live supervisor holds it. Nothing of the project is touched either way.
pub(crate) async fn take(docker: &Docker, project: &str, me: &Owner) -> Result<(), DockerError> {
    let volume = volume_of(project);
    let api = |op| DockerError::api(op, &volume);
    // three rounds: created, then read back; at most one stale claim removed on the way
    for _ in 0..3 {
        match docker.inspect_volume(&volume).await {
            Ok(found) => {
                let Some(owner) = Owner::of_labels(&found.labels) else {
                    return Err(claimed(
                        project,
                        &volume,
                        "a volume of that name not made by titan-supervisor",
                    ));
                };
                match owner.standing(me, start_time) {
                    Standing::Mine => return Ok(()),
                    Standing::Live => return Err(claimed(project, &volume, &owner.describe())),
                    Standing::Gone => {
                        tracing::warn!(
                            project,
                            "taking over the claim of a supervisor that is gone: {}",
                            owner.describe()
                        );
                        match docker.remove_volume(&volume, None::<RemoveVolumeOptions>).await {
                            Ok(()) => {}
                            Err(e) if status_of(&e) == Some(404) => {}
                            Err(e) => return Err(api("remove stale claim volume")(e)),
                        }
                    }
                }
            }
            Err(e) if status_of(&e) == Some(404) => {
                let request = VolumeCreateRequest {
                    name: Some(volume.clone()),
                    labels: Some(me.labels(project)),
                    ..Default::default()
                };
                docker.create_volume(request).await.map_err(api("create claim volume"))?;
            }
            Err(e) => return Err(api("inspect claim volume")(e)),
        }
    }
    Err(claimed(project, &volume, "another supervisor taking it at the same moment"))
}

/// Gives the claim up (a clean stop): removed only while it is still ours.
pub(crate) async fn release(docker: &Docker, project: &str, me: &Owner) {
    let volume = volume_of(project);
    let Ok(found) = docker.inspect_volume(&volume).await else { return };
    if Owner::of_labels(&found.labels).is_some_and(|o| o.standing(me, start_time) == Standing::Mine)
        && let Err(e) = docker.remove_volume(&volume, None::<RemoveVolumeOptions>).await
    {
        tracing::warn!(project, "cannot remove the claim volume {volume}: {e}");
    }
}

fn claimed(project: &str, volume: &str, owner: &str) -> DockerError {
    DockerError::Claimed { project: project.to_owned(), volume: volume.to_owned(), owner: owner.to_owned() }
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_owned()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Owner {
        Owner::me(Path::new("/run/t.sock"), Path::new("/var/lib/t"))
    }

    #[test]
    fn a_claim_reads_back_from_its_labels() {
        let me = me();
        assert_eq!(Owner::of_labels(&me.labels("p")), Some(me.clone()));
        assert!(me.started > 0, "{me:?}");
        assert_eq!(me.standing(&me, start_time), Standing::Mine);
        let mut labels = me.labels("p");
        labels.remove(LABEL_PID);
        assert_eq!(Owner::of_labels(&labels), None, "not a claim: refused, never taken over");
    }

    #[test]
    fn an_owner_is_gone_only_when_this_host_can_prove_it() {
        let me = me();
        let other = |f: &dyn Fn(&mut Owner)| {
            let mut o = me.clone();
            f(&mut o);
            o
        };
        let alive = |pid| (pid == 4242).then_some(77);
        assert_eq!(other(&|o| o.host = "elsewhere".into()).standing(&me, alive), Standing::Live);
        assert_eq!(other(&|o| o.pid_ns = "pid:[1]".into()).standing(&me, alive), Standing::Live);
        assert_eq!(other(&|o| o.boot = "earlier".into()).standing(&me, alive), Standing::Gone);
        let live = other(&|o| (o.pid, o.started) = (4242, 77));
        assert_eq!(live.standing(&me, alive), Standing::Live);
        let reused = other(&|o| (o.pid, o.started) = (4242, 76));
        assert_eq!(reused.standing(&me, alive), Standing::Gone, "its pid belongs to a later process");
        assert_eq!(other(&|o| o.pid = 999_999).standing(&me, alive), Standing::Gone);
    }

    #[test]
    fn a_start_time_is_read_past_a_name_with_parentheses() {
        assert_eq!(start_time(std::process::id() as i32), start_time(std::process::id() as i32));
        assert!(start_time(std::process::id() as i32).is_some());
        assert_eq!(start_time(-5), None);
    }
}
