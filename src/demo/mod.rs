//! The built-in demo: Titan's six-tier graph on native processes, embedded in the binary so
//! `titan-supervisor demo` needs no files, no Docker and no setup. `write_config` writes it into
//! the demo's directory as the daemon's config; `tour` is the deploy tour that follows the
//! restart (two releases of that config, switched to live).

pub(crate) mod tour;

use std::path::{Path, PathBuf};

use toml_edit::DocumentMut;

use crate::config::{self, Config, Report};

/// The demo's services.toml.
pub const CONFIG: &str = include_str!("services.toml");

/// The variable the demo config uses for the program of the test service.
pub const TEST_SERVICE_VAR: &str = "TITAN_TEST_SERVICE";

/// How the demo config names the program of the test service.
const TEST_SERVICE_PROGRAM: &str = "${TITAN_TEST_SERVICE:-titan-supervisor}";

/// The file under the demo's directory that the daemon runs.
pub const CONFIG_FILE: &str = "services.toml";

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

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{0}")]
    Invalid(Report),
    #[error("demo/services.toml: {0}")]
    Toml(#[from] toml_edit::TomlError),
    #[error("{}: cannot write: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The embedded config as the demo's directory `dir` (absolute) holds it: `[supervisor]`'s
/// paths absolute under `dir` — a release's services.toml sits in a directory of its own, and
/// a switch needs every release to name the same paths —, the user running the demo allowed
/// on the control socket, and the test service's program written in, so that the file means
/// the same in any process that reads it. Comments, order and spacing are kept.
pub fn config_text(dir: &Path) -> Result<String, SetupError> {
    let cfg = load(dir).map_err(SetupError::Invalid)?;
    let mut doc: DocumentMut = CONFIG.parse()?;
    let sup = &cfg.supervisor;
    for (key, path) in [
        ("state_dir", &sup.state_dir),
        ("log_dir", &sup.log_dir),
        ("releases_dir", &sup.releases_dir),
        ("current", &sup.current),
        ("socket", &sup.socket),
    ] {
        doc["supervisor"][key] = toml_edit::value(path.display().to_string());
    }
    // the control socket answers root and these users only: the demo's tour and the CLI in
    // another terminal are the user running the demo
    let me = i64::from(nix::unistd::geteuid().as_raw());
    doc["supervisor"]["allow_uids"] = toml_edit::value(toml_edit::Array::from_iter([me]));
    if let Some(program) = test_service_program() {
        // the program is a command argument, so interpolated: a `$` in its path stays a `$`
        let program = program.replace('$', "$$");
        let services = doc.get_mut("services").and_then(|s| s.as_table_like_mut());
        for (_, service) in services.into_iter().flat_map(|s| s.iter_mut()) {
            let command = service.get_mut("command").and_then(|c| c.as_array_mut());
            if let Some(command) =
                command.filter(|c| c.get(0).and_then(|v| v.as_str()) == Some(TEST_SERVICE_PROGRAM))
            {
                command.replace(0, program.as_str());
            }
        }
    }
    Ok(doc.to_string())
}

/// Writes `config_text(dir)` to `dir/services.toml` (creating `dir`) and returns its path.
pub fn write_config(dir: &Path) -> Result<PathBuf, SetupError> {
    let text = config_text(dir)?;
    let path = dir.join(CONFIG_FILE);
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&path, text))
        .map_err(|source| SetupError::Write { path: path.clone(), source })?;
    Ok(path)
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

    #[test]
    fn the_written_config_names_absolute_paths_and_reads_the_same_from_anywhere() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let path = super::write_config(&dir).unwrap_or_else(|e| panic!("{e}"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("${"), "no variable left: {text}");
        assert!(text.contains("# the policy hash invariant"), "comments kept");
        // a copy in another directory (a release) has the same [supervisor] and services
        let other = dir.join("releases/x");
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join("services.toml"), &text).unwrap();
        let here = crate::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let there = crate::config::load(&other.join("services.toml")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(here.supervisor.state_dir, dir.join("state"));
        assert_eq!(here.supervisor.socket, there.supervisor.socket);
        assert_eq!(here.supervisor.log_dir, there.supervisor.log_dir);
        assert_eq!(here.verify.parity.len(), 1);
    }
}
