//! Where services run: native processes (fork/exec in `spawn`, one reaper in `reaper`),
//! confined in cgroups (`cgroup`); containers through the Docker Engine API (`docker`).

pub mod cgroup;
pub mod credentials;
pub(crate) mod docker;
pub(crate) mod exit;
pub(crate) mod files;
pub(crate) mod procfs;
pub(crate) mod reaper;
pub(crate) mod rlimit;
pub(crate) mod spawn;
