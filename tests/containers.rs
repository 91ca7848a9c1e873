//! Containers end to end: the real binary against the private dockerd and registry that
//! scripts/test.sh starts, with the test service image pushed there and pinned by digest.

mod common;

use std::time::Duration;

use common::daemon::{Daemon, port, wait_for};
use common::docker::{self, Project, csvc, docker_ok, header, inspect};

const SEC: Duration = Duration::from_secs(1);

#[test]
fn tiers_of_containers_start_in_order_through_their_gates_and_stop_in_reverse() {
    let p = Project::new("tiers");
    let config = format!(
        "{}\n{}depends_on = [\"db\"]\nmemory = \"64MiB\"\nvolumes = [\"{}-data:/data\"]\n",
        csvc("db", port(), "\"--ready-after\", \"300ms\""),
        csvc("api", port(), ""),
        p.0
    );
    let mut d = Daemon::start_with_header(&config, &header(&p));
    d.wait_state("api", "healthy", 60 * SEC);
    let changes = d.changes();
    let at = |svc: &str, to: &str| changes.iter().position(|c| c.service == svc && c.to == to).unwrap();
    assert!(at("db", "healthy") < at("api", "starting"), "{changes:#?}");

    // what compose users look for is there
    let api = format!("{}-api", p.0);
    let labels = inspect(&api, "{{json .Config.Labels}}");
    for label in [
        format!("\"titan.project\":\"{}\"", p.0),
        "\"titan.service\":\"api\"".to_owned(),
        format!("\"com.docker.compose.project\":\"{}\"", p.0),
        "\"com.docker.compose.service\":\"api\"".to_owned(),
        "\"titan.spec-hash\":\"".to_owned(),
    ] {
        assert!(labels.contains(&label), "{label} in {labels}");
    }
    assert_eq!(inspect(&api, "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}}"), "67108864 67108864");
    assert_eq!(inspect(&api, "{{.HostConfig.RestartPolicy.Name}}"), "no");
    let network = format!("{}_default", p.0);
    assert!(inspect(&api, "{{json .NetworkSettings.Networks}}").contains(&network));
    assert_eq!(
        docker_ok(&["network", "inspect", "-f", "{{index .Labels \"titan.project\"}}", &network]),
        p.0
    );
    // the named volume was created, labelled, and is mounted
    let volume = format!("{}-data", p.0);
    assert_eq!(docker_ok(&["volume", "inspect", "-f", "{{index .Labels \"titan.project\"}}", &volume]), p.0);
    assert!(inspect(&api, "{{json .Mounts}}").contains(&volume));

    assert_eq!(d.stop(30 * SEC), Some(0));
    let changes = d.changes();
    let stopped = |svc: &str| changes.iter().position(|c| c.service == svc && c.to == "stopped").unwrap();
    assert!(stopped("api") < stopped("db"), "reverse order: {changes:#?}");
    // a graceful stop: the test service exits 0 on SIGTERM
    assert_eq!(inspect(&api, "{{.State.ExitCode}}"), "0");
}

#[test]
fn a_killed_container_restarts_and_an_oom_kill_says_oom() {
    let p = Project::new("crash");
    let config = format!(
        "{}\n{}memory = \"32MiB\"\nrestart = \"never\"\n",
        csvc("api", port(), ""),
        csvc("hog", port(), "\"--alloc\", \"96\"")
    );
    let d = Daemon::start_with_header(&config, &header(&p));
    d.wait_state("api", "healthy", 60 * SEC);
    let first = inspect(&format!("{}-api", p.0), "{{.State.StartedAt}}");
    docker_ok(&["kill", &format!("{}-api", p.0)]);
    let again = d.wait_state_n("api", "healthy", 2, 30 * SEC);
    assert_eq!(again.restarts, 1);
    let second = inspect(&format!("{}-api", p.0), "{{.State.StartedAt}}");
    assert_ne!(first, second, "started again");
    assert!(d.service_log("api").contains("container ended: killed by SIGKILL"), "{}", d.service_log("api"));

    let oom = d.wait_state("hog", "failed", 60 * SEC);
    assert!(oom.reason.contains("out of memory") || oom.reason.contains("oom"), "{oom:?}");
    // not also Docker's State.OOMKilled: dockerd 20.10 leaves it false now and then (when it
    // handles the exit before the OOM), while its `oom` event always comes
    assert_eq!(inspect(&format!("{}-hog", p.0), "{{.State.ExitCode}}"), "137");
}

#[test]
fn an_image_with_a_digest_the_registry_does_not_have_fails_its_start() {
    let p = Project::new("digest");
    let (repo, _) = docker::image().rsplit_once('@').map(|(r, d)| (r.to_owned(), d.to_owned())).unwrap();
    let wrong = format!("{repo}@sha256:{}", "0".repeat(64));
    let config = format!(
        "[services.wrong]\nimage = \"{wrong}\"\nrestart = \"never\"\n\n{}\n[services.after]\n{}\ndepends_on = [\"wrong\"]\n",
        csvc("fine", port(), ""),
        common::daemon::svc("after", "")
    );
    let d = Daemon::start_with_header(&config, &header(&p));
    let failed = d.wait_state("wrong", "failed", 60 * SEC);
    assert!(
        failed.reason.starts_with("cannot start: cannot pull") && failed.reason.contains(&wrong),
        "{failed:?}"
    );
    d.wait_state("fine", "healthy", 60 * SEC);
    let status = common::run(&["status", "--json", "--socket", &d.path("s.sock").display().to_string()]);
    assert!(status.stdout.contains("held: dependency wrong is failed"), "{}", status.stdout);
    assert!(
        docker::docker(&["inspect", &format!("{}-wrong", p.0)]).status.code() != Some(0),
        "never created"
    );
}

#[test]
fn an_unpinned_image_is_refused_before_anything_starts() {
    let p = Project::new("unpinned");
    let config = format!("[services.loose]\nimage = \"{}/titan-testsvc:test\"\n", docker::registry());
    let mut d = Daemon::start_with_header(&config, &header(&p));
    assert_eq!(d.wait_exit(10 * SEC), Some(2));
    assert!(d.log_tail().contains("services.loose.image"), "{}", d.log_tail());
    assert!(docker::docker(&["inspect", &format!("{}-loose", p.0)]).status.code() != Some(0));
}

#[test]
fn an_absent_image_is_pulled_by_digest_and_verified() {
    let p = Project::new("pull");
    let image = docker::variant_image(&p.0);
    // only in the registry now
    docker_ok(&["rmi", &image, &format!("{}/titan-testsvc:{}", docker::registry(), p.0)]);
    let port = port();
    let config = csvc("pulled", port, "").replace(&docker::image(), &image);
    let d = Daemon::start_with_header(&config, &header(&p));
    d.wait_state("pulled", "healthy", 60 * SEC);
    assert!(d.log_tail().contains("pulled"), "{}", d.log_tail());
    let digests = docker_ok(&["image", "inspect", "-f", "{{json .RepoDigests}}", &image]);
    assert!(digests.contains(docker::digest_of(&image)), "{digests}");
}

#[test]
fn exec_health_checks_run_inside_the_container() {
    let p = Project::new("exec");
    // /titan-testsvc exists inside the image only: a check run on the host would fail
    let config = format!(
        "[services.inside]\nimage = \"{}\"\nargs = [\"--name\", \"inside\"]\n\
         health = {{ exec = [\"/titan-testsvc\", \"--exit-after\", \"0ms\"], start_interval = \"50ms\" }}\n\n\
         [services.failing]\nimage = \"{}\"\nargs = [\"--name\", \"failing\"]\nstartup_timeout = \"2s\"\nrestart = \"never\"\n\
         health = {{ exec = [\"/titan-testsvc\", \"--exit-after\", \"0ms\", \"--exit-code\", \"3\"], start_interval = \"50ms\" }}\n",
        docker::image(),
        docker::image()
    );
    assert!(!std::path::Path::new("/titan-testsvc").exists());
    let d = Daemon::start_with_header(&config, &header(&p));
    d.wait_state("inside", "healthy", 60 * SEC);
    let failed = d.wait_state("failing", "failed", 60 * SEC);
    assert!(failed.reason.contains("not healthy within startup_timeout 2s"), "{failed:?}");
}

/// The numbered lines `name out NNNNNNNNNN` of a service's log files, in order.
fn numbered_lines(d: &Daemon, service: &str) -> Vec<u64> {
    let out = common::run(&["logs", service, "--config", &d.path("services.toml").display().to_string()]);
    out.stdout
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace().skip(2);
            (words.next() == Some(service) && words.next() == Some("out"))
                .then(|| words.next()?.parse().ok())?
        })
        .collect()
}

#[test]
fn a_killed_supervisor_adopts_its_running_containers_and_their_logs_continue() {
    let p = Project::new("adopt");
    let config = format!(
        "{}\n{}depends_on = [\"db\"]\n",
        csvc("db", port(), ""),
        csvc("api", port(), "\"--lines\", \"0\", \"--rate\", \"200\"")
    );
    let mut d = Daemon::start_with_header(&config, &header(&p));
    d.wait_state("api", "healthy", 60 * SEC);
    let identity = |svc: &str| inspect(&format!("{}-{svc}", p.0), "{{.Id}} {{.State.StartedAt}}");
    let before = [identity("db"), identity("api")];
    d.signal(nix::sys::signal::Signal::SIGKILL);
    assert!(d.wait_exit(10 * SEC).is_none(), "killed");
    // lines written while no supervisor runs must reach the log too
    std::thread::sleep(SEC / 2);
    d.respawn();
    let adopted = d.wait_state_n("api", "healthy", 2, 30 * SEC);
    assert_eq!(adopted.restarts, 0);
    assert_eq!([identity("db"), identity("api")], before, "same containers, never restarted");
    assert!(d.log_tail().contains("adopting its running container"), "{}", d.log_tail());
    // let some lines go by, stop, and read the whole log back
    let seen = wait_for(10 * SEC, || (numbered_lines(&d, "api").len() > 400).then_some(()));
    assert!(seen.is_some());
    assert_eq!(d.stop(30 * SEC), Some(0));
    let lines = numbered_lines(&d, "api");
    let expected: Vec<u64> = (1..=lines.len() as u64).collect();
    assert_eq!(lines, expected, "every line once, in order, across the supervisor's death");
}

#[test]
fn a_changed_service_is_recreated_and_an_orphan_removed() {
    let p = Project::new("change");
    let (kept, changed, dropped) = (port(), port(), port());
    let config = format!(
        "{}\n{}\n{}",
        csvc("kept", kept, ""),
        csvc("changed", changed, ""),
        csvc("dropped", dropped, "")
    );
    let mut d = Daemon::start_with_header(&config, &header(&p));
    for svc in ["kept", "changed", "dropped"] {
        d.wait_state(svc, "healthy", 60 * SEC);
    }
    let id = |svc: &str| inspect(&format!("{}-{svc}", p.0), "{{.Id}}");
    let (kept_id, changed_id) = (id("kept"), id("changed"));
    d.signal(nix::sys::signal::Signal::SIGKILL);
    d.wait_exit(10 * SEC);
    // a new definition: `changed` gets an env var, `dropped` is gone
    let path = d.path("services.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replace(&csvc("dropped", dropped, ""), "");
    let text = text.replace(
        &csvc("changed", changed, ""),
        &format!("{}env = {{ NEW = \"1\" }}\n", csvc("changed", changed, "")),
    );
    std::fs::write(&path, text).unwrap();
    d.respawn();
    d.wait_state_n("changed", "healthy", 2, 60 * SEC);
    d.wait_state_n("kept", "healthy", 2, 60 * SEC);
    assert_eq!(id("kept"), kept_id, "untouched: adopted");
    assert_ne!(id("changed"), changed_id, "recreated");
    let gone = wait_for(20 * SEC, || {
        (docker::docker(&["inspect", &format!("{}-dropped", p.0)]).status.code() != Some(0)).then_some(())
    });
    assert!(gone.is_some(), "the orphan is removed");
    assert!(d.log_tail().contains("not in the config: stopping and removing it"), "{}", d.log_tail());
}

#[test]
fn dockerd_restarted_under_a_running_supervisor_brings_the_services_back_through_the_restart_policy() {
    let own = docker::OwnDaemon::start();
    let p = Project::new("dockerd");
    let header = format!("project = \"{}\"\ndocker_host = \"{}\"\n", p.0, own.host());
    // the image is pulled from the shared registry into this daemon
    let config = format!("{}\n{}max_restarts = 0\n", csvc("api", port(), ""), csvc("spent", port(), ""));
    let d = Daemon::start_with_header(&config, &header);
    d.wait_state("api", "healthy", 60 * SEC);
    d.wait_state("spent", "healthy", 60 * SEC);
    let before = own.docker(&["inspect", "-f", "{{.Id}}", &format!("{}-api", p.0)]);
    own.restart();
    let again = d.wait_state_n("api", "healthy", 2, 60 * SEC);
    assert!(common::daemon::alive(d.pid), "the supervisor lives on");
    assert!(d.log_tail().contains("dockerd is back"), "{}", d.log_tail());
    let after = own.docker(&["inspect", "-f", "{{.Id}} {{.State.Running}}", &format!("{}-api", p.0)]);
    assert_eq!(after, format!("{before} true"), "the same container, running again");
    // regression: the restart went around the policy; it counts toward max_restarts
    assert_eq!(again.restarts, 1, "{:?}", d.states("api"));
    let spent = d.wait_state("spent", "failed", 60 * SEC);
    assert!(spent.reason.starts_with("crash loop: 0 restarts within 1m"), "{spent:?}");
    assert!(spent.reason.ends_with("(last: its container stopped with dockerd)"), "{spent:?}");
}

#[test]
fn upgrade_re_executes_the_daemon_and_keeps_every_container_and_native_service_running() {
    let p = Project::new("upgrade");
    let config = format!(
        "{}\n[services.native]\n{}\ndepends_on = [\"api\"]\n",
        csvc("api", port(), ""),
        common::daemon::svc("native", "")
    );
    let mut d = Daemon::start_with_header(&config, &header(&p));
    d.wait_state("native", "healthy", 60 * SEC);
    let container = inspect(&format!("{}-api", p.0), "{{.Id}} {{.State.StartedAt}}");
    let native = d.service_pid("native").unwrap();
    let socket = d.path("s.sock").display().to_string();
    let upgrade = common::run(&["upgrade", "--socket", &socket]);
    assert_eq!(upgrade.code, Some(0), "{upgrade:?}");
    assert!(common::daemon::alive(d.pid), "the same process, its binary executed again");
    assert!(d.log_tail().contains("adopting its running container"), "{}", d.log_tail());
    assert_eq!(
        inspect(&format!("{}-api", p.0), "{{.Id}} {{.State.StartedAt}}"),
        container,
        "never restarted"
    );
    // native services are taken up by the new image, never stopped
    assert!(d.log_tail().contains("taken up across the upgrade"), "{}", d.log_tail());
    let status = common::run(&["status", "--json", "--socket", &socket]);
    let v: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let s = v["services"].as_array().unwrap().iter().find(|s| s["name"] == "native").unwrap().clone();
    assert_eq!(
        (s["state"].as_str(), s["pid"].as_i64(), s["restarts"].as_u64()),
        (Some("healthy"), Some(i64::from(native)), Some(0)),
        "{s}"
    );
    assert!(common::daemon::alive(native));
    assert_eq!(d.states("native"), ["starting", "healthy"], "no stop, no start");
    assert_eq!(d.stop(30 * SEC), Some(0));
}

#[test]
fn a_container_above_memory_restart_is_restarted_with_reason_memory() {
    let p = Project::new("soft");
    let config = format!(
        "{}memory_restart = \"48MiB\"\n",
        csvc(
            "grower",
            port(),
            "\"--alloc\", \"128\", \"--alloc-step\", \"16\", \"--alloc-interval\", \"100ms\""
        )
    );
    let d = Daemon::start_with_header(&config, &header(&p));
    let restart = d.wait_state("grower", "stopping", 60 * SEC);
    assert!(restart.reason.starts_with("memory"), "{restart:?}");
    d.wait_state_n("grower", "starting", 2, 30 * SEC);
}

#[test]
fn a_log_health_check_watches_the_container_output() {
    let p = Project::new("logcheck");
    let config = format!(
        "[services.talker]\nimage = \"{}\"\nargs = [\"--name\", \"talker\", \"--ready-after\", \"300ms\", \"--ready-line\", \"listening now\"]\n\
         health = {{ log = \"listening now\" }}\n",
        docker::image()
    );
    let d = Daemon::start_with_header(&config, &header(&p));
    d.wait_state("talker", "healthy", 60 * SEC);
    assert!(d.service_log("talker").contains(" out listening now"), "{}", d.service_log("talker"));
}

#[test]
fn reload_recreates_a_changed_container_and_leaves_the_others_running() {
    let p = Project::new("reload");
    let (kept, changed) = (port(), port());
    let config = format!("{}\n{}", csvc("kept", kept, ""), csvc("changed", changed, ""));
    let d = Daemon::start_with_header(&config, &header(&p));
    d.wait_state("kept", "healthy", 60 * SEC);
    d.wait_state("changed", "healthy", 60 * SEC);
    let id = |svc: &str| inspect(&format!("{}-{svc}", p.0), "{{.Id}} {{.State.StartedAt}}");
    let (kept_before, changed_before) = (id("kept"), id("changed"));
    let path = d.path("services.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        &csvc("changed", changed, ""),
        &format!("{}env = {{ NEW = \"1\" }}\n", csvc("changed", changed, "")),
    );
    std::fs::write(&path, text).unwrap();
    let reload = common::run(&["reload", "--socket", &d.path("s.sock").display().to_string()]);
    assert_eq!(reload.code, Some(0), "{reload:?}");
    assert!(reload.stdout.contains("changed [changed]"), "{}", reload.stdout);
    d.wait_state_n("changed", "healthy", 2, 60 * SEC);
    assert_eq!(id("kept"), kept_before, "untouched");
    assert_ne!(id("changed"), changed_before, "recreated");
    assert!(inspect(&format!("{}-changed", p.0), "{{json .Config.Env}}").contains("NEW=1"));
}

#[test]
fn a_container_of_the_same_name_that_is_not_ours_is_left_alone() {
    let p = Project::new("foreign");
    let name = format!("{}-api", p.0);
    let foreign = docker_ok(&["create", "--name", &name, &docker::image()]);
    // (a failed start is retried like a crash: "never" fails it at the first)
    let d =
        Daemon::start_with_header(&format!("{}restart = \"never\"\n", csvc("api", port(), "")), &header(&p));
    let failed = d.wait_state("api", "failed", 60 * SEC);
    assert!(failed.reason.contains("exists and was not created by this project's supervisor"), "{failed:?}");
    assert_eq!(inspect(&name, "{{.Id}}"), foreign, "untouched");
    drop(d);
    docker_ok(&["rm", "-f", &name]);
}

#[test]
fn a_supervisor_started_before_dockerd_waits_for_it_and_runs_its_native_services_meanwhile() {
    let own = docker::OwnDaemon::start();
    own.kill_dockerd();
    let p = Project::new("late");
    let header = format!("project = \"{}\"\ndocker_host = \"{}\"\n", p.0, own.host());
    let config =
        format!("{}\n[services.native]\n{}\n", csvc("api", port(), ""), common::daemon::svc("native", ""));
    let d = Daemon::start_with_header(&config, &header);
    d.wait_state("native", "healthy", 30 * SEC);
    // its pid file is written once it runs: a moment after it counts as healthy
    let native = wait_for(10 * SEC, || d.service_pid("native")).expect("the native service's pid file");
    let retrying = || {
        let log = d.log_tail();
        (log.contains(&format!("cannot reach dockerd at {}", own.host())) && log.contains("retrying in"))
            .then_some(())
    };
    assert!(wait_for(30 * SEC, retrying).is_some(), "{}", d.log_tail());
    let status = common::run(&["status", "--json", "--socket", &d.path("s.sock").display().to_string()]);
    assert!(status.stdout.contains("waiting for dockerd"), "{}", status.stdout);

    own.restart();
    d.wait_state("api", "healthy", 60 * SEC);
    assert!(common::daemon::alive(d.pid));
    assert_eq!(d.service_pid("native"), Some(native), "never disturbed");
    assert_eq!(d.states("native"), ["starting", "healthy"]);
}

#[test]
fn a_stop_completes_even_when_dockerd_is_gone() {
    let own = docker::OwnDaemon::start();
    let p = Project::new("gone");
    let header = format!("project = \"{}\"\ndocker_host = \"{}\"\n", p.0, own.host());
    let mut d =
        Daemon::start_with_header(&format!("{}stop_timeout = \"500ms\"\n", csvc("api", port(), "")), &header);
    d.wait_state("api", "healthy", 60 * SEC);
    own.kill_dockerd();
    assert_eq!(d.stop(30 * SEC), Some(0), "{}", d.log_tail());
    assert!(d.log_tail().contains("dockerd unreachable, leaving the container as it is"), "{}", d.log_tail());
}

#[test]
fn services_on_one_network_reach_each_other_by_service_name() {
    let p = Project::new("names");
    // db publishes nothing: only its network reaches it; api's health check, run inside api,
    // asks for it by its service name
    let config = format!(
        "[services.db]\nimage = \"{image}\"\nargs = [\"--name\", \"db\", \"--listen\", \"0.0.0.0:8080\"]\n\n\
         [services.api]\nimage = \"{image}\"\nargs = [\"--name\", \"api\"]\nstartup_timeout = \"20s\"\n\
         health = {{ exec = [\"/titan-testsvc\", \"--check-http\", \"http://db:8080/health\"], start_interval = \"50ms\" }}\n",
        image = docker::image()
    );
    let d = Daemon::start_with_header(&config, &header(&p));
    d.wait_state("api", "healthy", 60 * SEC);
}

#[test]
fn a_container_service_added_by_reload_starts_when_none_was_there_before() {
    // regression: dockerd was connected to only when a container service existed at boot, so
    // one added by a reload waited for dockerd forever
    let p = Project::new("added");
    let native = format!("[services.native]\n{}\n", common::daemon::svc("native", ""));
    let d = Daemon::start_with_header(&native, &header(&p));
    d.wait_state("native", "healthy", 10 * SEC);
    d.rewrite(&format!("{native}\n{}", csvc("api", port(), "")));
    let out = d.cli(&["reload"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    d.wait_state("api", "healthy", 60 * SEC);
    assert!(d.log_tail().contains("connected to dockerd"), "{}", d.log_tail());
    assert_eq!(d.states("native"), ["starting", "healthy"], "untouched");
}
