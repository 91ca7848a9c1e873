//! The private Docker environment that scripts/test.sh starts (scripts/docker-env.sh): its
//! daemon, its registry and the test images pushed there, read from the environment; the
//! Debian docker CLI pointed at that daemon only; cleanup by project label.

use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Debian's docker CLI (20.10, legacy builder): the one on PATH may be a newer CLI without
/// buildx, and must not be the one that decides which daemon is used.
pub const CLI: &str = "/usr/bin/docker";
/// The label every container and network a test creates carries, for `rm_f_project`.
pub const PROJECT_LABEL: &str = "titan.project";
/// How long one docker command may take before the test fails.
const LIMIT: Duration = Duration::from_secs(60);

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run scripts/test.sh: it starts the private dockerd and registry")
    })
}

/// `unix:///.../docker.sock` of the private daemon (`TITAN_TEST_DOCKER_HOST`).
pub fn host() -> String {
    var("TITAN_TEST_DOCKER_HOST")
}

/// `127.0.0.1:PORT` of the private registry (`TITAN_TEST_REGISTRY`).
pub fn registry() -> String {
    var("TITAN_TEST_REGISTRY")
}

/// The test service image, pinned: `127.0.0.1:PORT/titan-testsvc@sha256:...`
/// (`TITAN_TEST_IMAGE`). Its entrypoint is `titan-testsvc`: pass the service's options.
pub fn image() -> String {
    var("TITAN_TEST_IMAGE")
}

/// The supervisor as PID 1 running the demo, pinned: `127.0.0.1:PORT/titan-pid1@sha256:...`
/// (`TITAN_TEST_PID1_IMAGE`).
pub fn pid1_image() -> String {
    var("TITAN_TEST_PID1_IMAGE")
}

/// The `sha256:...` part of a pinned reference.
pub fn digest_of(reference: &str) -> &str {
    reference.rsplit_once('@').map(|(_, d)| d).unwrap_or_else(|| panic!("{reference} is not pinned"))
}

/// Runs `docker ARGS` against the private daemon; panics if it outlives a minute.
pub fn docker(args: &[&str]) -> Output {
    docker_with_input(args, None)
}

/// Runs `docker ARGS`, panics unless it succeeds, and returns its stdout, trimmed.
pub fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(out.status.success(), "docker {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn docker_with_input(args: &[&str], input: Option<&str>) -> Output {
    let mut child = Command::new(CLI)
        .args(args)
        .env("DOCKER_HOST", host())
        .env("DOCKER_BUILDKIT", "0")
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{CLI}: {e} (Debian's docker.io: scripts/test.sh installs it)"));
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes()).expect("docker stdin");
    }
    let readers = [child.stdout.take().map(drain), child.stderr.take().map(drain)];
    let status = super::wait_or_kill(&mut child, LIMIT, &format!("docker {args:?}"));
    let [stdout, stderr] = readers.map(|r| r.map(|h| h.join().expect("reader")).unwrap_or_default());
    Output { status, stdout, stderr }
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// `[supervisor]` lines for a project on the private daemon.
pub fn header(p: &Project) -> String {
    format!("project = \"{}\"\ndocker_host = \"{}\"\n", p.0, host())
}

/// A container service of the test image listening on 8080, published on `port`, gated by
/// its /health; `args` are more test-service options.
pub fn csvc(name: &str, port: u16, args: &str) -> String {
    let extra = if args.is_empty() { String::new() } else { format!(", {args}") };
    format!(
        "[services.{name}]\nimage = \"{}\"\nargs = [\"--name\", \"{name}\", \"--listen\", \"0.0.0.0:8080\"{extra}]\n\
         ports = [\"127.0.0.1:{port}:8080\"]\nhealth = {{ http = \"http://127.0.0.1:{port}/health\", start_interval = \"20ms\" }}\n",
        image()
    )
}

pub fn inspect(container: &str, format: &str) -> String {
    docker_ok(&["inspect", "-f", format, container])
}

/// Removes every container, then every network and volume, labelled `titan.project=<project>`.
pub fn rm_f_project(project: &str) {
    let filter = format!("label={PROJECT_LABEL}={project}");
    let containers = docker_ok(&["ps", "-aq", "--filter", &filter]);
    let ids: Vec<&str> = containers.split_whitespace().collect();
    if !ids.is_empty() {
        docker(&[&["rm", "-f"][..], &ids].concat());
    }
    for kind in ["network", "volume"] {
        let found = docker_ok(&[kind, "ls", "-q", "--filter", &filter]);
        let ids: Vec<&str> = found.split_whitespace().collect();
        if !ids.is_empty() {
            docker(&[&[kind, "rm"][..], &ids].concat());
        }
    }
}

/// A project name no other test in this run uses; its containers and networks are removed on
/// drop, whatever the test did.
pub struct Project(pub String);

impl Project {
    pub fn new(what: &str) -> Project {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        Project(format!("t-{what}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)))
    }

    /// `--label titan.project=<name>`, for `docker run`, `create` and `network create`.
    pub fn label(&self) -> String {
        format!("{PROJECT_LABEL}={}", self.0)
    }

    /// Creates a user-defined bridge network named after the project and returns its name: the
    /// private daemon has no default bridge, so a container without one has no network at all.
    pub fn network(&self) -> String {
        docker_ok(&["network", "create", "--label", &self.label(), &self.0]);
        self.0.clone()
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        rm_f_project(&self.0);
    }
}

/// Another pinned image of the same test service, with a distinct digest: the test image plus
/// `LABEL titan.variant=<variant>`, tagged `titan-testsvc:<variant>` and pushed. For "the spec
/// changed" tests; each call builds and pushes anew, so give each test its own `variant`.
pub fn variant_image(variant: &str) -> String {
    let base = image();
    let reference = format!("{}/titan-testsvc:{variant}", registry());
    let dockerfile = format!("FROM {base}\nLABEL titan.variant={variant}\n");
    let out = docker_with_input(&["build", "-q", "-t", &reference, "-"], Some(&dockerfile));
    assert!(out.status.success(), "docker build {reference}: {}", String::from_utf8_lossy(&out.stderr));
    let pushed = docker_ok(&["push", &reference]);
    let digest = pushed
        .split_whitespace()
        .skip_while(|w| *w != "digest:")
        .nth(1)
        .unwrap_or_else(|| panic!("no digest in the output of docker push {reference}:\n{pushed}"));
    format!("{}/titan-testsvc@{digest}", registry())
}

/// A private dockerd of one test's own (scripts/docker-env.sh under a short temp dir), for
/// tests that restart the daemon and must not disturb the shared one. Stopped on drop.
pub struct OwnDaemon {
    dir: std::path::PathBuf,
}

impl OwnDaemon {
    fn script(args: &[&str]) -> Output {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/docker-env.sh");
        Command::new(script).args(args).stdin(Stdio::null()).output().expect("scripts/docker-env.sh")
    }

    pub fn start() -> OwnDaemon {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::path::PathBuf::from(format!(
            "/tmp/tsd-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let own = OwnDaemon { dir };
        let out = Self::script(&["start", &own.dir.display().to_string()]);
        assert!(out.status.success(), "docker-env.sh start: {}", String::from_utf8_lossy(&out.stderr));
        own
    }

    /// `unix://…/docker.sock`
    pub fn host(&self) -> String {
        format!("unix://{}/docker.sock", self.dir.display())
    }

    /// Stops dockerd (its containers stop with it) and starts it again.
    pub fn restart(&self) {
        let out = Self::script(&["restart-daemon", &self.dir.display().to_string()]);
        assert!(
            out.status.success(),
            "docker-env.sh restart-daemon: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// SIGKILLs dockerd (its containers keep running under their shims) and waits until it
    /// is gone.
    pub fn kill_dockerd(&self) {
        let pid: i32 = std::fs::read_to_string(self.dir.join("dockerd.pid")).unwrap().trim().parse().unwrap();
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        let gone = || (!std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(());
        super::daemon::wait_for(Duration::from_secs(10), gone);
    }

    /// The docker CLI against this daemon.
    pub fn docker(&self, args: &[&str]) -> String {
        let out = Command::new(CLI).args(args).env("DOCKER_HOST", self.host()).output().expect("docker");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for OwnDaemon {
    fn drop(&mut self) {
        let _ = Self::script(&["stop", &self.dir.display().to_string()]);
    }
}

/// A docker-registry of one test's own on a free 127.0.0.1 port, for tests that stop the
/// registry and must not disturb the shared one. Stopped on drop; `stop` and `start` keep its
/// port and storage.
pub struct OwnRegistry {
    dir: tempfile::TempDir,
    pub port: u16,
    child: Option<std::process::Child>,
}

impl OwnRegistry {
    pub fn start() -> OwnRegistry {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = super::daemon::port();
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    \
             rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        std::fs::write(dir.path().join("registry.yml"), config).expect("registry.yml");
        let mut own = OwnRegistry { dir, port, child: None };
        own.resume();
        own
    }

    /// Starts it (again) and waits until it answers /v2/.
    pub fn resume(&mut self) {
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(self.dir.path().join("registry.yml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (scripts/test.sh installs it)");
        self.child = Some(child);
        let port = self.port;
        let up = super::daemon::wait_for(Duration::from_secs(20), || {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
            s.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n").ok()?;
            let mut answer = String::new();
            s.read_to_string(&mut answer).ok()?;
            answer.starts_with("HTTP/1.0 200").then_some(())
        });
        assert!(up.is_some(), "docker-registry on 127.0.0.1:{port} did not answer");
    }

    /// Stops it (pulls from it fail with "connection refused").
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The test image pushed here and removed from dockerd: a start must pull it.
    pub fn push_test_image(&self) -> String {
        let tag = format!("127.0.0.1:{}/titan-testsvc:own", self.port);
        docker_ok(&["tag", &image(), &tag]);
        let pushed = docker_ok(&["push", &tag]);
        let digest = pushed
            .split_whitespace()
            .skip_while(|w| *w != "digest:")
            .nth(1)
            .unwrap_or_else(|| panic!("no digest in the output of docker push {tag}:\n{pushed}"))
            .to_owned();
        let pinned = format!("127.0.0.1:{}/titan-testsvc@{digest}", self.port);
        docker(&["rmi", &tag]);
        docker(&["rmi", &pinned]);
        pinned
    }
}

impl Drop for OwnRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}
