//! cgroup v2 service cgroups: enabling controllers in our own `cgroup.subtree_control` (moving
//! our processes into a leaf first, as the "no internal processes" rule requires), then one
//! directory per service with `memory.max`, `memory.swap.max` and `pids.max`.

use std::io;
use std::path::Path;

use nix::libc;

use super::fsio::{self, Undo};
use super::{CgroupError, Flavor, Limits, ServiceCgroup};

/// The leaf under our own cgroup that our own processes move into, so that our own cgroup may
/// distribute controllers to the services' cgroups.
pub const SUPERVISOR_LEAF: &str = "supervisor";

/// What the kernel reads as "no limit" in v2 limit files.
const UNLIMITED: &str = "max";

pub(super) fn create(
    own: &Path,
    name: &str,
    limits: &Limits,
) -> Result<ServiceCgroup, CgroupError> {
    let mut wanted = vec!["memory"];
    if limits.pids_max.is_some() {
        wanted.push("pids");
    }
    enable_controllers(own, &wanted)?;
    let mut undo = Undo::new();
    let dir = own.join(name);
    undo.make_dir(dir.clone())?;
    set_limits(&dir, limits)?;
    ServiceCgroup::new(Flavor::V2, undo.keep())
}

/// Makes sure every `wanted` controller is delegated to us and enabled for our children.
fn enable_controllers(own: &Path, wanted: &[&str]) -> Result<(), CgroupError> {
    let available = fsio::read(&own.join("cgroup.controllers"))?;
    if let Some(absent) = wanted.iter().find(|c| !has_word(&available, c)) {
        return Err(CgroupError::NoController {
            controller: absent.to_string(),
            hint: format!(
                "{} does not list it: the parent cgroup must delegate it to the supervisor \
                 (systemd: Delegate=yes on its unit)",
                own.join("cgroup.controllers").display()
            ),
        });
    }
    let control = own.join("cgroup.subtree_control");
    let enabled = fsio::read(&control)?;
    let missing: Vec<String> = wanted
        .iter()
        .filter(|c| !has_word(&enabled, c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    move_processes_to_leaf(own)?;
    let value = missing.join(" ");
    match fsio::write(&control, &value) {
        Err(CgroupError::Write { path, source, .. })
            if source.raw_os_error() == Some(libc::EBUSY) =>
        {
            Err(CgroupError::SubtreeBusy {
                path,
                controllers: value,
                source,
            })
        }
        other => other,
    }
}

/// Moves every process of our own cgroup into [`SUPERVISOR_LEAF`], unless this is the root
/// cgroup (which has no `cgroup.type` and is exempt from the rule).
fn move_processes_to_leaf(own: &Path) -> Result<(), CgroupError> {
    if !own.join("cgroup.type").exists() {
        return Ok(());
    }
    let procs = own.join("cgroup.procs");
    let pids = fsio::read_pids(&procs).map_err(|source| CgroupError::Read {
        path: procs,
        source,
    })?;
    if pids.is_empty() {
        return Ok(());
    }
    let leaf = own.join(SUPERVISOR_LEAF);
    match std::fs::create_dir(&leaf) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
            return Err(CgroupError::Create {
                path: leaf,
                source: e,
            });
        }
        _ => {}
    }
    let target = leaf.join("cgroup.procs");
    for pid in pids.into_iter().filter(|p| *p > 0) {
        match fsio::write(&target, &pid.to_string()) {
            // The process exited meanwhile.
            Err(CgroupError::Write { source, .. })
                if source.raw_os_error() == Some(libc::ESRCH) => {}
            other => other?,
        }
    }
    Ok(())
}

/// `memory.max`; `memory.swap.max` 0 under a memory cap (when swap is accounted); `pids.max`
/// (reset to `max` on a reused cgroup that has the file when no cap is asked for).
fn set_limits(dir: &Path, limits: &Limits) -> Result<(), CgroupError> {
    fsio::set_memory(&dir.join("memory.max"), limits.memory_max, UNLIMITED)?;
    let swap = dir.join("memory.swap.max");
    if swap.exists() {
        let value = if limits.memory_max.is_some() {
            "0"
        } else {
            UNLIMITED
        };
        fsio::set_exact(&swap, value)?;
    }
    let pids = dir.join("pids.max");
    match limits.pids_max {
        Some(max) => fsio::set_exact(&pids, &max.to_string())?,
        None if pids.exists() => fsio::set_exact(&pids, UNLIMITED)?,
        None => {}
    }
    Ok(())
}

/// Whether the space-separated list `text` (`cgroup.controllers`, `cgroup.subtree_control`)
/// holds `word`.
fn has_word(text: &str, word: &str) -> bool {
    text.split_whitespace().any(|w| w == word)
}
