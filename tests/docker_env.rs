//! The private Docker environment scripts/test.sh provides: a daemon of its own (never the
//! host's), the test image pinned by the digest its registry serves, and a container from it
//! that publishes its health endpoint on a user-defined network and, as PID 1, stops on SIGTERM.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::daemon::wait_for;
use common::docker::{self, Project, digest_of, docker_ok};

/// What a plain HTTP/1.0 request to `addr` got back (status line, headers, body), if anything.
fn http(addr: &str, request: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    Some(answer)
}

/// The value of header `name` in an HTTP answer.
fn header<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    answer.lines().find_map(|l| {
        let (key, value) = l.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

#[test]
fn the_daemon_is_a_private_one_and_answers() {
    let host = docker::host();
    let socket = host.strip_prefix("unix://").expect("a unix socket");
    assert!(!socket.ends_with("/run/docker.sock"), "the tests must never use the host's daemon: {host}");
    let mut stream = std::os::unix::net::UnixStream::connect(socket).expect("connect to the private daemon");
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.write_all(b"GET /_ping HTTP/1.0\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.0 200") && answer.ends_with("OK"), "{answer}");
    let root = docker_ok(&["info", "-f", "{{.DockerRootDir}}"]);
    assert_ne!(root, "/var/lib/docker", "the host's data root");
}

#[test]
fn the_test_image_is_pinned_by_the_digest_its_registry_serves() {
    let image = docker::image();
    let digest = digest_of(&image);
    // the registry serves the manifest under exactly that digest
    let request = format!(
        "HEAD /v2/titan-testsvc/manifests/{digest} HTTP/1.0\r\nAccept: \
         application/vnd.docker.distribution.manifest.v2+json\r\n\r\n"
    );
    let answer = http(&docker::registry(), &request).expect("the registry answers");
    assert!(answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(header(&answer, "Docker-Content-Digest"), Some(digest), "{answer}");
    // pulling by digest works, and the image knows itself by that digest
    let pulled = docker_ok(&["pull", &image]);
    assert!(pulled.contains(&format!("Digest: {digest}")), "{pulled}");
    let repo_digests = docker_ok(&["image", "inspect", "-f", "{{json .RepoDigests}}", &image]);
    let repo_digests: Vec<String> = serde_json::from_str(&repo_digests).expect("RepoDigests");
    assert!(repo_digests.contains(&image), "{repo_digests:?} should hold {image}");
    // FROM scratch: one layer, a static binary, nothing else
    let layers = docker_ok(&["image", "inspect", "-f", "{{len .RootFS.Layers}} {{.Size}}", &image]);
    let (count, size) = layers.split_once(' ').unwrap();
    assert_eq!(count, "1", "layers: {layers}");
    assert!(size.parse::<u64>().unwrap() < 20 << 20, "a static test service is small: {layers}");
}

/// Starts the test service in a container of `project` on its own network, port 8080
/// published on a free 127.0.0.1 port; returns the container's name and that address.
fn run_service(project: &Project, extra: &[&str]) -> (String, String) {
    let network = project.network();
    let name = format!("{}-svc", project.0);
    let image = docker::image();
    let label = project.label();
    let mut args = vec!["run", "-d", "--name", &name, "--label", &label, "--network", &network];
    args.extend(["-p", "127.0.0.1::8080", &image, "--name", "svc", "--listen", "0.0.0.0:8080"]);
    args.extend(extra);
    docker_ok(&args);
    let published = docker_ok(&["port", &name, "8080/tcp"]);
    let addr = published.lines().next().expect("a published port").to_owned();
    (name, addr)
}

/// Stops the container with `grace` and returns how long that took and `ExitCode OOMKilled`.
fn stop(name: &str, grace: Duration) -> (Duration, String) {
    let started = Instant::now();
    docker_ok(&["stop", "-t", &grace.as_secs().to_string(), name]);
    let took = started.elapsed();
    (took, docker_ok(&["inspect", "-f", "{{.State.ExitCode}} {{.State.OOMKilled}}", name]))
}

#[test]
fn a_container_publishes_its_health_on_a_user_defined_network_and_stops_on_sigterm() {
    let project = Project::new("health");
    let (name, addr) = run_service(&project, &[]);
    let healthy = wait_for(Duration::from_secs(20), || {
        http(&addr, "GET /health HTTP/1.0\r\n\r\n").filter(|a| a.starts_with("HTTP/1.1 200"))
    });
    let logs = || docker_ok(&["logs", &name]);
    assert!(healthy.is_some(), "no 200 from /health on {addr}; logs:\n{}", logs());
    let grace = Duration::from_secs(10);
    let (took, state) = stop(&name, grace);
    // 137 would mean SIGKILL after the grace period: PID 1 ignored SIGTERM
    assert_eq!(state, "0 false", "exit code, OOM-killed; logs:\n{}", logs());
    assert!(took < grace / 2, "docker stop took {took:?} of a {grace:?} grace period");
    assert!(logs().contains("stopping on SIGTERM"), "{}", logs());
}

#[test]
fn a_service_that_ignores_sigterm_is_killed_at_the_end_of_the_grace_period() {
    // the other side of the check above: what a SIGKILL after the grace period looks like
    let project = Project::new("ignore");
    let (name, _) = run_service(&project, &["--ignore-sigterm"]);
    let started =
        wait_for(Duration::from_secs(20), || docker_ok(&["logs", &name]).contains("ready").then_some(()));
    assert!(started.is_some(), "{}", docker_ok(&["logs", &name]));
    let (took, state) = stop(&name, Duration::from_secs(1));
    assert_eq!(state, "137 false");
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert!(docker_ok(&["logs", &name]).contains("ignoring SIGTERM"));
}

#[test]
fn a_variant_image_is_the_same_service_under_another_digest() {
    let image = docker::image();
    let variant = docker::variant_image("docker-env-test");
    assert_ne!(digest_of(&variant), digest_of(&image));
    assert!(variant.starts_with(&format!("{}/titan-testsvc@sha256:", docker::registry())), "{variant}");
    let label =
        docker_ok(&["image", "inspect", "-f", "{{index .Config.Labels \"titan.variant\"}}", &variant]);
    assert_eq!(label, "docker-env-test");
    let entrypoint = |i: &str| docker_ok(&["image", "inspect", "-f", "{{json .Config.Entrypoint}}", i]);
    assert_eq!(entrypoint(&variant), entrypoint(&image));
}
