//! Containers against the outside world, on the private dockerd and registry of
//! scripts/test.sh: a second supervisor of the same project, containers and networks removed
//! or paused with the docker CLI, transient Docker errors, Docker's own copy of the logs, and
//! what status says while dockerd is away. One test per promise of RELIABILITY.md.

mod common;

use std::time::Duration;

use common::daemon::{Daemon, port};
use common::docker::{self, Project, csvc, docker_ok, header, inspect};

const SEC: Duration = Duration::from_secs(1);

fn claim_exists(p: &Project) -> bool {
    docker::docker(&["volume", "inspect", &format!("{}_titan-claim", p.0)]).status.success()
}

#[test]
fn a_second_supervisor_of_the_same_project_refuses_to_start_and_removes_nothing() {
    let p = Project::new("claim");
    // a container merely labelled with the project, made by someone else
    let stray = format!("{}-stray", p.0);
    docker_ok(&["create", "--name", &stray, "--label", &p.label(), &docker::image()]);
    let mut first = Daemon::start_with_header(&csvc("a", port(), ""), &header(&p));
    first.wait_state("a", "healthy", 60 * SEC);
    let a = format!("{}-a", p.0);
    let before = inspect(&a, "{{.Id}} {{.State.StartedAt}}");
    assert!(claim_exists(&p), "the project is claimed on dockerd");
    assert!(first.log_tail().contains("was not created by a supervisor of this project: leaving it alone"));
    assert_eq!(inspect(&stray, "{{.State.Status}}"), "created", "the stray container is left alone");

    // another socket and state dir, the same project, and a config without `a`
    let mut second = Daemon::start_with_header(&csvc("b", port(), ""), &header(&p));
    assert_eq!(second.wait_exit(30 * SEC), Some(2), "{}", second.log_tail());
    let said = second.log_tail();
    assert!(said.contains(&format!("project {} is claimed", p.0)), "{said}");
    assert!(said.contains(&format!("pid {} on", first.pid)), "the owner is named: {said}");
    assert!(!said.contains("not in the config"), "{said}");
    assert_eq!(inspect(&a, "{{.Id}} {{.State.StartedAt}}"), before, "untouched");
    assert!(docker::docker(&["inspect", &format!("{}-b", p.0)]).status.code() != Some(0), "nothing created");
    assert_eq!(first.status_of("a")["state"], "healthy");

    // a clean stop gives the claim up, and the next supervisor of the project may start
    assert_eq!(first.stop(30 * SEC), Some(0));
    assert!(!claim_exists(&p), "released");
    second.respawn();
    second.wait_state("b", "healthy", 60 * SEC);
    assert!(claim_exists(&p));
}

#[test]
fn a_claim_left_by_a_killed_supervisor_is_taken_over_by_the_next() {
    let p = Project::new("stale");
    let mut d = Daemon::start_with_header(&csvc("a", port(), ""), &header(&p));
    d.wait_state("a", "healthy", 60 * SEC);
    let id = inspect(&format!("{}-a", p.0), "{{.Id}}");
    d.signal(nix::sys::signal::Signal::SIGKILL);
    d.wait_exit(10 * SEC);
    assert!(claim_exists(&p), "a SIGKILL leaves the claim behind");
    d.respawn();
    d.wait_state_n("a", "healthy", 2, 60 * SEC);
    assert!(d.log_tail().contains("taking over the claim of a supervisor that is gone"), "{}", d.log_tail());
    assert_eq!(inspect(&format!("{}-a", p.0), "{{.Id}}"), id, "adopted");
}

#[test]
fn a_dependency_paused_while_the_supervisor_was_down_is_unpaused_and_every_container_adopted() {
    let p = Project::new("paused");
    let config = format!("{}\n{}depends_on = [\"db\"]\n", csvc("db", port(), ""), csvc("api", port(), ""));
    let mut d = Daemon::start_with_header(&config, &header(&p));
    d.wait_state("api", "healthy", 60 * SEC);
    let (db, api) = (format!("{}-db", p.0), format!("{}-api", p.0));
    let before = [&db, &api].map(|c| inspect(c, "{{.Id}} {{.State.StartedAt}}"));
    d.signal(nix::sys::signal::Signal::SIGKILL);
    d.wait_exit(10 * SEC);
    docker_ok(&["pause", &db]);

    d.respawn();
    d.wait_state_n("api", "healthy", 2, 60 * SEC);
    assert!(d.log_tail().contains("found paused: unpausing it"), "{}", d.log_tail());
    assert_eq!(inspect(&db, "{{.State.Paused}}"), "false");
    assert_eq!([&db, &api].map(|c| inspect(c, "{{.Id}} {{.State.StartedAt}}")), before, "both adopted");
    for service in ["db", "api"] {
        let shown = d.status_of(service);
        assert!(shown["container_id"].as_str().is_some_and(|id| !id.is_empty()), "{shown}");
    }
    // what it adopted it stops
    assert_eq!(d.stop(30 * SEC), Some(0));
    assert_eq!([&db, &api].map(|c| inspect(c, "{{.State.Running}}")), ["false", "false"]);
}

#[test]
fn a_container_removed_from_outside_is_created_again_every_time() {
    let p = Project::new("rmf");
    let d = Daemon::start_with_header(&csvc("api", port(), ""), &header(&p));
    d.wait_state("api", "healthy", 60 * SEC);
    let api = format!("{}-api", p.0);
    let mut seen = vec![inspect(&api, "{{.Id}}")];
    for round in 1..=3 {
        docker_ok(&["rm", "-f", &api]);
        let again = d.wait_state_n("api", "healthy", round + 1, 60 * SEC);
        assert_eq!(again.restarts, round as u64, "{:?}", d.states("api"));
        let id = inspect(&api, "{{.Id}}");
        assert!(!seen.contains(&id), "a new container in round {round}");
        seen.push(id);
    }
}

#[test]
fn a_network_removed_while_the_supervisor_was_down_is_made_again_and_its_containers_recreated() {
    let p = Project::new("netrm");
    let mut d = Daemon::start_with_header(&csvc("api", port(), ""), &header(&p));
    d.wait_state("api", "healthy", 60 * SEC);
    assert_eq!(d.stop(30 * SEC), Some(0));
    let network = format!("{}_default", p.0);
    let old = docker_ok(&["network", "inspect", "-f", "{{.Id}}", &network]);
    docker_ok(&["network", "rm", &network]);

    d.respawn();
    d.wait_state_n("api", "healthy", 2, 60 * SEC);
    assert!(d.log_tail().contains("its network was removed: recreating it"), "{}", d.log_tail());
    let new = docker_ok(&["network", "inspect", "-f", "{{.Id}}", &network]);
    assert_ne!(new, old);
    let joined = inspect(&format!("{}-api", p.0), "{{json .NetworkSettings.Networks}}");
    assert!(joined.contains(&new), "{joined}");
}

#[test]
fn a_pull_from_a_registry_that_is_down_is_retried_until_it_is_back() {
    let mut registry = docker::OwnRegistry::start();
    let image = registry.push_test_image();
    registry.stop();
    let p = Project::new("pull");
    let config = csvc("api", port(), "").replace(&docker::image(), &image)
        + "max_restarts = 1000\nbackoff = { initial = \"100ms\", max = \"500ms\" }\n";
    let d = Daemon::start_with_header(&config, &header(&p));
    let waiting = d.wait_state("api", "backoff", 60 * SEC);
    assert!(waiting.reason.contains("cannot pull"), "the cause is named: {waiting:?}");
    registry.resume();
    d.wait_state("api", "healthy", 60 * SEC);
    assert!(docker::docker(&["image", "inspect", &image]).status.success(), "pulled by digest");
}

#[test]
fn a_published_port_already_allocated_is_retried_like_a_crash() {
    let host_port = port();
    let taken = std::net::TcpListener::bind(("127.0.0.1", host_port)).expect("bind the port first");
    let p = Project::new("port");
    let config = csvc("api", host_port, "")
        + "max_restarts = 1000\nbackoff = { initial = \"100ms\", max = \"500ms\" }\n";
    let d = Daemon::start_with_header(&config, &header(&p));
    let waiting = d.wait_state("api", "backoff", 60 * SEC);
    assert!(waiting.reason.contains("cannot start container"), "{waiting:?}");
    drop(taken);
    let up = d.wait_state("api", "healthy", 60 * SEC);
    assert!(up.restarts >= 1, "{up:?}");
}

#[test]
fn dockers_copy_of_a_million_line_container_stays_a_small_bounded_buffer() {
    let p = Project::new("dlog");
    let config = format!(
        "[services.flood]\nimage = \"{}\"\nargs = [\"--name\", \"flood\", \"--lines\", \"1000000\", \
         \"--line-bytes\", \"100\", \"--lines-exit\"]\nrestart = \"never\"\n\
         logs = {{ max_size = \"4MiB\", max_files = 2 }}\n",
        docker::image()
    );
    let d = Daemon::start_with_header(&config, &header(&p));
    d.wait_state("flood", "exited", 120 * SEC);
    let flood = format!("{}-flood", p.0);
    assert_eq!(inspect(&flood, "{{.HostConfig.LogConfig.Type}}"), "local");
    let root = docker_ok(&["info", "-f", "{{.DockerRootDir}}"]);
    let dir = std::path::Path::new(&root).join("containers").join(inspect(&flood, "{{.Id}}"));
    let bytes = du(&dir);
    // 1M lines of 100 bytes is 100 MB; json-file kept 128 MB of it
    assert!(bytes < 40 << 20, "{} holds {bytes} bytes", dir.display());
    // and the supervisor's own log got the last line (a loaded machine takes its time over a
    // million lines: the deadline is generous, the condition exact)
    let last = common::daemon::wait_for(180 * SEC, || {
        let out = d.cli(&["logs", "flood", "-n", "1"]);
        String::from_utf8_lossy(&out.stdout).contains(" 0001000000 ").then_some(())
    });
    assert!(last.is_some(), "{:?}\n{}", d.cli(&["logs", "flood", "-n", "3"]), d.log_tail());
}

/// Bytes of the files under `dir`.
fn du(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).flatten() {
        let meta = entry.metadata().expect("metadata");
        total += if meta.is_dir() { du(&entry.path()) } else { meta.len() };
    }
    total
}

fn scrape(socket: &std::path::Path) -> String {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).expect("control socket");
    write!(s, "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").expect("request");
    let mut reply = String::new();
    s.read_to_string(&mut reply).expect("reply");
    reply
}

#[test]
fn while_dockerd_is_unreachable_status_and_metrics_say_so_and_a_dead_published_port_is_not_healthy() {
    let own = docker::OwnDaemon::start();
    let p = Project::new("away");
    let header = format!("project = \"{}\"\ndocker_host = \"{}\"\n", p.0, own.host());
    let config = csvc("api", port(), "").replace(
        "start_interval = \"20ms\"",
        "start_interval = \"20ms\", interval = \"200ms\", timeout = \"500ms\"",
    );
    let d = Daemon::start_with_header(&config, &header);
    d.wait_state("api", "healthy", 60 * SEC);
    assert_eq!(d.status_of("api")["dockerd"], "connected");
    let whole = |d: &Daemon| -> serde_json::Value {
        serde_json::from_slice(&d.cli(&["status", "--json"]).stdout).unwrap_or_default()
    };
    assert_eq!(whole(&d)["dockerd"], "connected");

    // SIGKILLed: its containers run on under their shims, docker-proxy is gone
    own.kill_dockerd();
    let said = common::daemon::wait_for(30 * SEC, || {
        let shown = d.status_of("api");
        (shown["dockerd"] == "unreachable").then_some(shown)
    });
    let shown = said.expect("status says dockerd is unreachable");
    assert!(shown["reason"].as_str().is_some_and(|r| r.contains("dockerd is unreachable")), "{shown}");
    assert_eq!(whole(&d)["dockerd"], "unreachable");
    let metrics = scrape(&d.path("s.sock"));
    assert!(metrics.contains("titan_supervisor_dockerd_up{} 0"), "{metrics}");
    assert!(metrics.contains("titan_service_dockerd_reachable{service=\"api\"} 0"), "{metrics}");
    // its published port refuses: it is not shown healthy
    d.wait_state("api", "unhealthy", 30 * SEC);

    own.restart();
    let back = common::daemon::wait_for(60 * SEC, || {
        let shown = d.status_of("api");
        (shown["dockerd"] == "connected" && shown["state"] == "healthy").then_some(())
    });
    assert!(back.is_some(), "{:?}\n{}", d.status_of("api"), d.log_tail());
}

#[test]
fn a_docker_stop_from_outside_is_named_as_the_reason_and_init_runs_dockers_init() {
    let p = Project::new("ostop");
    let config = csvc("api", port(), "") + "init = true\n";
    let d = Daemon::start_with_header(&config, &header(&p));
    d.wait_state("api", "healthy", 60 * SEC);
    let api = format!("{}-api", p.0);
    assert_eq!(inspect(&api, "{{.HostConfig.Init}}"), "true");
    docker_ok(&["stop", &api]);
    let stopped = common::daemon::wait_for(30 * SEC, || {
        let shown = d.status_of("api");
        (shown["state"] == "exited").then_some(shown)
    });
    let shown = stopped.expect("exited");
    let reason = shown["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("stopped from outside the supervisor") && reason.contains("signal"), "{shown}");
    assert!(d.service_log("api").contains("stopped from outside the supervisor"));
}
