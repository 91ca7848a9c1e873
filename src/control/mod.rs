//! Control over a Unix socket: `proto` (types shared by both ends), `server` (in the daemon),
//! `client` (in the CLI).

pub mod client;
pub mod proto;
pub mod server;
