//! The built-in demo: Titan's six-tier graph on native processes, embedded in the binary so
//! `titan-supervisor demo` needs no files, no Docker and no setup.

use std::path::Path;

use crate::config::{self, Config, Report};

/// The demo's services.toml.
pub const CONFIG: &str = include_str!("services.toml");

/// The variable the demo config uses for the program of the test service.
pub const TEST_SERVICE_VAR: &str = "TITAN_TEST_SERVICE";

/// The test service program: `titan-testsvc` beside this executable (it starts faster), else
/// this executable itself (`titan-supervisor test-service`).
pub fn test_service_program() -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    let small = exe.with_file_name("titan-testsvc");
    let program = if small.is_file() { small } else { exe };
    Some(program.display().to_string())
}

/// Loads the embedded config with relative paths under `dir` and `${TITAN_TEST_SERVICE}` set
/// to the test service program.
pub fn load(dir: &Path) -> Result<Config, Report> {
    let program = test_service_program();
    let env = move |name: &str| match name {
        TEST_SERVICE_VAR => program.clone().or_else(|| std::env::var(name).ok()),
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
