//! Control over a Unix socket: `proto` (types shared by both ends), `socket` (its file),
//! `server` (in the daemon), `client` (in the CLI).

pub(crate) mod access;
pub(crate) mod client;
pub(crate) mod proto;
pub(crate) mod server;
pub(crate) mod socket;
