//! Where services run: native processes (fork/exec in `spawn`, one reaper in `reaper`),
//! confined in cgroups (`cgroup`); containers through the Docker Engine API (`docker`).

pub mod cgroup;
pub mod credentials;
pub mod docker;
pub mod exit;
pub mod procfs;
pub mod reaper;
pub mod spawn;
