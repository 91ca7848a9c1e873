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
