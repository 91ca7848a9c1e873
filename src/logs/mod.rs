//! Service output: `capture` reads a service's stdout and stderr pipes line by line, `writer`
//! stamps each line and appends it to `<log_dir>/<service>/current.log`.

pub mod capture;
pub mod writer;
