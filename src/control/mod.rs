//! Control over a Unix socket: `proto` (types shared by both ends), `server` (in the daemon),
//! `client` (in the CLI).

pub(crate) mod client;
pub(crate) mod proto;
pub(crate) mod server;
