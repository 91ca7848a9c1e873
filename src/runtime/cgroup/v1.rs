//! cgroup v1 service cgroups: one directory in the memory hierarchy (limit, swap limit,
//! process list) and, when a pids cap is asked for, one in the pids hierarchy.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::fsio::{self, Undo};
use super::{CgroupError, Flavor, Limits, ServiceCgroup};

/// What the kernel reads as "no limit" in v1 limit files.
const UNLIMITED: &str = "-1";

pub(super) fn create(
    controllers: &BTreeMap<String, PathBuf>,
    name: &str,
    limits: &Limits,
) -> Result<ServiceCgroup, CgroupError> {
    let memory_own = own(controllers, "memory")?;
    let pids_own = match limits.pids_max {
        Some(max) => Some((own(controllers, "pids")?, max)),
        None => None,
    };
    let mut undo = Undo::new();
    let memory = memory_own.join(name);
    undo.make_dir(memory.clone())?;
    set_memory(&memory, limits.memory_max)?;
    if let Some((pids_own, max)) = pids_own {
        let dir = pids_own.join(name);
        undo.make_dir(dir.clone())?;
        fsio::set_exact(&dir.join("pids.max"), &max.to_string())?;
    }
    ServiceCgroup::new(Flavor::V1, undo.keep())
}

/// The directories of an existing service cgroup: memory first, then pids if it is there.
pub(super) fn existing(
    controllers: &BTreeMap<String, PathBuf>,
    name: &str,
) -> Result<Vec<PathBuf>, CgroupError> {
    let mut dirs = vec![own(controllers, "memory")?.join(name)];
    if let Some(pids) = controllers.get("pids").map(|own| own.join(name)) {
        if pids.is_dir() {
            dirs.push(pids);
        }
    }
    Ok(dirs)
}

/// Our own cgroup in `controller`'s hierarchy.
fn own<'a>(
    controllers: &'a BTreeMap<String, PathBuf>,
    controller: &str,
) -> Result<&'a Path, CgroupError> {
    controllers
        .get(controller)
        .map(PathBuf::as_path)
        .ok_or_else(|| CgroupError::NoController {
            controller: controller.to_string(),
            hint: "no mounted cgroup v1 hierarchy carries it for this process \
                   (see /proc/self/cgroup and /proc/self/mountinfo)"
                .into(),
        })
}

/// `memory.limit_in_bytes`, and `memory.memsw.limit_in_bytes` (memory + swap) when the kernel
/// accounts swap. memsw may never be below the memory limit, so it is lifted first.
fn set_memory(dir: &Path, max: Option<u64>) -> Result<(), CgroupError> {
    let memsw = dir.join("memory.memsw.limit_in_bytes");
    let has_memsw = memsw.exists();
    if has_memsw {
        fsio::write(&memsw, UNLIMITED)?;
    }
    fsio::set_memory(&dir.join("memory.limit_in_bytes"), max, UNLIMITED)?;
    if has_memsw {
        fsio::set_memory(&memsw, max, UNLIMITED)?;
    }
    Ok(())
}
