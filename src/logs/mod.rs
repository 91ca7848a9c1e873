//! Service output: `capture` reads a service's stdout and stderr pipes line by line on the log
//! thread (`pipeline`), `writer` stamps each line into `<log_dir>/<service>/current.log` and
//! rotates by rename, `compress` gzips rotated files in the background, `rotated` names them
//! and applies retention, `read` reads them back for `titan-supervisor logs`.

pub(crate) mod capture;
pub mod compress;
pub(crate) mod pipeline;
pub mod read;
pub mod rotated;
pub(crate) mod writer;
