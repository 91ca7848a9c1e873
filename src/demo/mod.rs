//! The built-in demo: Titan's six-tier graph on native processes, embedded in the binary so
//! `titan-supervisor demo` needs no files, no Docker and no setup.

use std::path::Path;

use crate::config::{self, Config, Report};

/// The demo's services.toml.
pub const CONFIG: &str = include_str!("services.toml");

/// The variable the demo config uses for the path of this binary.
pub const BIN_VAR: &str = "TITAN_SUPERVISOR_BIN";

/// Loads the embedded config with relative paths under `dir` and `${TITAN_SUPERVISOR_BIN}` set
/// to this executable.
pub fn load(dir: &Path) -> Result<Config, Report> {
    let exe = std::env::current_exe().ok().map(|p| p.display().to_string());
    let env = move |name: &str| match name {
        BIN_VAR => exe.clone().or_else(|| std::env::var(name).ok()),
        _ => std::env::var(name).ok(),
    };
    let source = config::Source { name: "demo/services.toml", text: CONFIG, base_dir: dir };
    config::parse(&source, &env)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_embedded_demo_config_is_valid() {
        let dir = std::env::temp_dir();
        let cfg = super::load(&dir).unwrap_or_else(|r| panic!("{r}"));
        assert_eq!(cfg.groups.len(), 6);
        assert!(cfg.services.len() >= 10);
        assert!(cfg.supervisor.log_dir.starts_with(&dir));
    }
}
