//! A host with releases for the deploy tests: `releases/<id>/` written as directories, the
//! `current` symlink, and the daemon run from `<current>/services.toml`; the release bodies the
//! deploy tests share (two native services `a` and `b`, their policy-hash parity, a crash loop,
//! a migration).

use std::path::{Path, PathBuf};

use super::daemon::Daemon;

/// A host with releases: `releases/<id>/`, `current`, and the daemon's config a symlink into
/// `current` (as on a real host, where `run` reads `<current>/services.toml`).
pub struct Host {
    pub d: Daemon,
}

/// The `[supervisor]` of every release of the host at `dir` (absolute paths: a release's
/// directory is not the daemon's), with the lines of `dir/supervisor-extra` when a test wrote
/// one (a project and docker_host for containers, trusted_keys).
pub fn header(dir: &Path) -> String {
    let d = dir.display();
    let extra = std::fs::read_to_string(dir.join("supervisor-extra")).unwrap_or_default();
    let project = if extra.contains("project =") {
        String::new()
    } else {
        format!("project = \"t-deploy-{}\"\n", std::process::id())
    };
    format!(
        "[supervisor]\n{project}{extra}socket = \"{d}/s.sock\"\nstate_dir = \"{d}/state\"\n\
         log_dir = \"{d}/logs\"\nreleases_dir = \"{d}/releases\"\ncurrent = \"{d}/current\"\n\n\
         [deploy]\nverify_timeout = \"30s\"\nprobation = \"1s\"\n\n"
    )
}

/// Services `a` (untouched by every release here) and `b` (its policy hash per release),
/// each gated by its /health.
pub fn services(dir: &Path, ports: (u16, u16), b_hash: &str, extra: &str) -> String {
    let svc = |name: &str, port: u16, hash: &str| {
        format!(
            "[services.{name}]\n{}\nhealth = {{ http = \"http://127.0.0.1:{port}/health\", start_interval = \"20ms\" }}\n",
            super::daemon::svc(
                name,
                &format!("\"--listen\", \"127.0.0.1:{port}\", \"--policy-hash\", \"{hash}\"")
            )
        )
    };
    let text =
        format!("{}\n{}depends_on = [\"a\"]\n{extra}", svc("a", ports.0, "h1"), svc("b", ports.1, b_hash));
    text.replace("{dir}", &dir.display().to_string())
}

/// `[[verify.parity]]` of a's and b's policy hashes.
pub fn parity(ports: (u16, u16)) -> String {
    format!(
        "\n[[verify.parity]]\nname = \"policy_hash\"\na = {{ http = \"http://127.0.0.1:{}/policy\", field = \"policy_hash\" }}\n\
         b = {{ http = \"http://127.0.0.1:{}/policy\", field = \"policy_hash\" }}\n",
        ports.0, ports.1
    )
}

/// `services` with a b that exits at once, again and again: a crash loop.
pub fn crash_looping(dir: &Path, ports: (u16, u16)) -> String {
    let broken = services(dir, ports, "h2", "")
        .replace("\"--policy-hash\", \"h2\"", "\"--exit-after\", \"0ms\", \"--exit-code\", \"3\"");
    broken + "max_restarts = 1\n"
}

/// Writes release `id` with `body` after the host's `[supervisor]`.
pub fn release(dir: &Path, id: &str, body: &str) -> PathBuf {
    let at = dir.join("releases").join(id);
    std::fs::create_dir_all(&at).unwrap();
    std::fs::write(at.join("services.toml"), format!("{}{body}", header(dir))).unwrap();
    std::fs::write(at.join("digests.json"), "{}\n").unwrap();
    std::fs::write(
        at.join("release.json"),
        format!("{{\"id\":\"{id}\",\"sha\":\"0123456\",\"created\":\"2026-12-02T00:00:00Z\"}}\n"),
    )
    .unwrap();
    at
}

impl Host {
    /// The daemon on release `first`.
    pub fn start(first: impl Fn(&Path) -> String) -> Host {
        Self::start_env(first, &[])
    }

    pub fn start_env(first: impl Fn(&Path) -> String, envs: &[(&str, &str)]) -> Host {
        Self::start_with(first, envs, "")
    }

    /// With `extra` lines in every release's `[supervisor]`.
    pub fn start_with(first: impl Fn(&Path) -> String, envs: &[(&str, &str)], extra: &str) -> Host {
        let d = Daemon::start_prepared_env("", envs, |dir| {
            std::fs::write(dir.join("supervisor-extra"), extra).unwrap();
            release(dir, "20261202T000000Z-aaaaaaa", &first(dir));
            std::os::unix::fs::symlink("releases/20261202T000000Z-aaaaaaa", dir.join("current")).unwrap();
            let config = dir.join("services.toml");
            std::fs::remove_file(&config).unwrap();
            std::os::unix::fs::symlink(dir.join("current/services.toml"), &config).unwrap();
        });
        Host { d }
    }

    pub fn dir(&self) -> &Path {
        self.d.dir.path()
    }

    pub fn current(&self) -> String {
        let target = std::fs::read_link(self.dir().join("current")).unwrap();
        target.file_name().unwrap().to_string_lossy().into_owned()
    }

    /// `titan-supervisor switch ID` (or another deploy command): exit code and stdout.
    pub fn deploy(&self, args: &[&str]) -> (Option<i32>, String) {
        let out = self.d.cli(args);
        (
            out.status.code(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    }

    pub fn pid(&self, service: &str) -> i64 {
        self.d.status_of(service)["pid"].as_i64().unwrap_or(-1)
    }
}

/// Writes `digests` as the release's digests.json.
pub fn digests(at: &Path, digests: &[(&str, &str)]) {
    let map: serde_json::Map<String, serde_json::Value> =
        digests.iter().map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v))).collect();
    std::fs::write(at.join("digests.json"), serde_json::Value::Object(map).to_string()).unwrap();
}

/// A oneshot `migrate` that runs `script` with /bin/sh.
pub fn migration(script: &str, extra: &str) -> String {
    format!(
        "\n[services.migrate]\nkind = \"oneshot\"\ncommand = [\"/bin/sh\", \"-c\", \"{script}\"]\n{extra}"
    )
}
