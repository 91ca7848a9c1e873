//! Where services run: native processes (fork/exec in `spawn`, one reaper in `reaper`).
//! Containers join here later behind the same boundary.

pub mod reaper;
pub mod spawn;
