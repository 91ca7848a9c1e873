//! Where services run: native processes (fork/exec in `spawn`, one reaper in `reaper`),
//! confined in cgroups (`cgroup`). Containers join here later behind the same boundary.

pub mod cgroup;
pub mod procfs;
pub mod reaper;
pub mod spawn;
