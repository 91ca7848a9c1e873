//! How services run on this host: native processes confined in cgroups (more runtimes to come).

pub mod cgroup;
