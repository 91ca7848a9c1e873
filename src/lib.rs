//! titan-supervisor: a single-host service supervisor. The library target holds everything the
//! binary does, so integration tests and benchmarks can reach the pure parts directly.

pub mod cli;
pub mod commands;
pub mod config;
pub(crate) mod control;
pub mod demo;
pub(crate) mod deploy;
pub mod graph;
pub mod health;
pub(crate) mod httpd;
pub(crate) mod import;
pub(crate) mod journal;
pub mod logs;
pub(crate) mod metrics;
pub(crate) mod metrics_listen;
pub(crate) mod nats;
pub(crate) mod notify;
pub(crate) mod release;
pub mod runtime;
pub mod supervisor;
pub mod testsvc;

/// The checks a switch runs on a release directory before it changes anything: the signature
/// against `trusted_keys`, the pinned config, its images against digests.json.
pub use deploy::switch::validate as validate_release;
