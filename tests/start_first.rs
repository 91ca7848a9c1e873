//! `update_order = "start-first"` on the private dockerd: a changed container starts beside
//! the one running, passes its gate, and only then does the old one stop — watched from the
//! host by probing every container of the service every 10 ms.

mod common;

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::daemon::{Daemon, wait_for};
use common::docker::{self, Project, docker_ok, header};

const SEC: Duration = Duration::from_secs(1);

/// `web`: the test image on port 8080 of its own address only (no published port), gated
/// by its /health, ready 300 ms after it starts, reporting `hash` on /policy.
fn web(hash: &str, order: &str) -> String {
    web_ready_after(hash, order, "300ms")
}

fn web_ready_after(hash: &str, order: &str, ready: &str) -> String {
    format!(
        "[services.web]\nimage = \"{}\"\nupdate_order = \"{order}\"\n\
         args = [\"--name\", \"web\", \"--listen\", \"0.0.0.0:8080\", \"--policy-hash\", \"{hash}\", \"--ready-after\", \"{ready}\"]\n\
         health = {{ http = \"http://127.0.0.1:8080/health\", start_interval = \"20ms\" }}\n",
        docker::image()
    )
}

/// The addresses of the containers on the project's network, newest first, as dockerd
/// reports them.
fn addresses(project: &str) -> Vec<IpAddr> {
    let format = "{{range .Containers}}{{.IPv4Address}} {{end}}";
    let out = docker::docker(&["network", "inspect", "-f", format, &format!("{project}_default")]);
    let mut found: Vec<IpAddr> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|cidr| cidr.split('/').next()?.parse().ok())
        .collect();
    // dockerd gives addresses out in rising order (reusing them only after a wrap): the
    // highest is, as a rule, the newest container's
    found.sort_by(|a, b| b.cmp(a));
    found
}

/// `GET path` at `ip:8080`: the body of a 200 answer.
fn get(ip: IpAddr, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect_timeout(&SocketAddr::new(ip, 8080), SEC).ok()?;
    s.set_read_timeout(Some(2 * SEC)).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: t\r\n\r\n").ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    answer.starts_with("HTTP/1.1 200").then_some(answer)
}

/// Probes every container of the project every 10 ms: a round fails when none answers its
/// /health with 200. The addresses are learned from dockerd meanwhile.
struct Watch {
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Watch {
    fn start(p: &Project) -> Watch {
        let stop: Arc<AtomicBool> = Arc::default();
        let (rounds, failed): (Arc<AtomicUsize>, Arc<AtomicUsize>) = (Arc::default(), Arc::default());
        let known = Arc::new(Mutex::new(addresses(&p.0)));
        let learner = {
            let (stop, known, project) = (Arc::clone(&stop), Arc::clone(&known), p.0.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let found = addresses(&project);
                    *known.lock().unwrap() = found;
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        let prober = {
            let (stop, rounds, failed) = (Arc::clone(&stop), Arc::clone(&rounds), Arc::clone(&failed));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let ips = known.lock().unwrap().clone();
                    // newest first: the one that answers longest
                    if !ips.iter().any(|&ip| get(ip, "/health").is_some()) {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    rounds.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        };
        Watch { stop, rounds, failed, threads: vec![learner, prober] }
    }

    /// Stops watching: (rounds probed, rounds without any answer).
    fn finish(mut self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        (self.rounds.load(Ordering::Relaxed), self.failed.load(Ordering::Relaxed))
    }
}

/// Rewrites web's definition, reloads, and waits until its only container reports `hash`.
/// The new one is ready 1.5 s after it starts: the watch learns its address well before.
fn update(d: &Daemon, p: &Project, hash: &str, order: &str) -> String {
    d.rewrite(&web_ready_after(hash, order, "1500ms"));
    let out = d.cli(&["reload"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let only = wait_for(60 * SEC, || match addresses(&p.0)[..] {
        [ip] => get(ip, "/policy").filter(|b| b.contains(hash)).map(|_| ()),
        _ => None,
    });
    assert!(only.is_some(), "web never ran {hash} alone: {:?}\n{}", addresses(&p.0), d.log_tail());
    docker_ok(&["inspect", "-f", "{{.Id}}", &format!("{}-web", p.0)])
}

#[test]
fn a_start_first_update_leaves_no_moment_without_a_ready_container() {
    let p = Project::new("start-first");
    let d = Daemon::start_with_header(&web("h1", "stop-first"), &header(&p));
    d.wait_state("web", "healthy", 60 * SEC);
    let first = docker_ok(&["inspect", "-f", "{{.Id}}", &format!("{}-web", p.0)]);

    // stop-first, the default: the watch sees the gap (it can see one)
    let watch = Watch::start(&p);
    let second = update(&d, &p, "h2", "stop-first");
    let (rounds, failed) = watch.finish();
    assert!(failed > 0, "a stop-first update leaves a gap: {failed} of {rounds} rounds");
    assert_ne!(first, second);

    // start-first: the new container is ready before the old one stops
    d.wait_state("web", "healthy", 60 * SEC);
    let watch = Watch::start(&p);
    let third = update(&d, &p, "h3", "start-first");
    let (rounds, failed) = watch.finish();
    assert!(rounds > 20, "{rounds} rounds");
    assert_eq!(failed, 0, "no round without a ready container: {failed} of {rounds}\n{}", d.log_tail());
    assert_ne!(second, third, "recreated");
    let status = d.status_of("web");
    assert_eq!(status["state"], "healthy", "{status}");
    assert_eq!(status["restarts"], 0, "an update is no restart: {status}");
    assert!(d.log_tail().contains("its predecessor stopped and removed"), "{}", d.log_tail());
    assert_eq!(addresses(&p.0).len(), 1, "the old container is gone");
}

/// The names of the project's containers, running or not.
fn names(project: &str) -> Vec<String> {
    let filter = format!("label={}={project}", docker::PROJECT_LABEL);
    let out = docker_ok(&["ps", "-a", "--filter", &filter, "--format", "{{.Names}}"]);
    let mut names: Vec<String> = out.lines().map(str::to_owned).collect();
    names.sort();
    names
}

#[test]
fn a_supervisor_killed_during_a_start_first_update_removes_the_retired_container_next_time() {
    let p = Project::new("start-first-kill");
    let mut d = Daemon::start_with_header(&web("h1", "start-first"), &header(&p));
    d.wait_state("web", "healthy", 60 * SEC);
    // the successor takes its time: the supervisor dies while both run
    d.rewrite(&web("h2", "start-first").replace("\"300ms\"", "\"5s\""));
    assert!(d.cli(&["reload"]).status.success());
    let both = wait_for(30 * SEC, || (names(&p.0).len() == 2).then_some(()));
    assert!(both.is_some(), "{:?}\n{}", names(&p.0), d.log_tail());
    assert!(names(&p.0).iter().any(|n| n.starts_with(&format!("{}-web.retired-", p.0))), "{:?}", names(&p.0));
    d.signal(nix::sys::signal::Signal::SIGKILL);
    d.wait_exit(10 * SEC);

    d.respawn();
    let alone = wait_for(60 * SEC, || (names(&p.0) == [format!("{}-web", p.0)]).then_some(()));
    assert!(alone.is_some(), "{:?}\n{}", names(&p.0), d.log_tail());
    d.wait_state_n("web", "healthy", 2, 60 * SEC);
    assert!(
        d.log_tail().contains("a container an update retired: stopping and removing it"),
        "{}",
        d.log_tail()
    );
}

#[test]
fn a_start_first_successor_that_never_gets_ready_leaves_the_old_one_serving_until_given_up() {
    let p = Project::new("start-first-fail");
    let d = Daemon::start_with_header(&web("h1", "start-first"), &header(&p));
    d.wait_state("web", "healthy", 60 * SEC);
    let broken = web("h2", "start-first")
        .replace("\"--ready-after\"", "\"--exit-after\", \"0ms\", \"--exit-code\", \"3\", \"--ready-after\"");
    d.rewrite(&format!("{broken}max_restarts = 2\n"));
    assert!(d.cli(&["reload"]).status.success());
    // while its successor crashes and is retried, the old container answers
    let retried = wait_for(60 * SEC, || (d.status_of("web")["restarts"].as_u64() >= Some(1)).then_some(()));
    assert!(retried.is_some(), "{}", d.log_tail());
    let retired = names(&p.0).into_iter().find(|n| n.contains(".retired-"));
    assert!(retired.is_some(), "the old container is still there: {:?}", names(&p.0));
    let old = docker::inspect(
        &retired.unwrap_or_default(),
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
    );
    let answer = old.parse().ok().and_then(|ip| get(ip, "/policy"));
    assert!(answer.is_some_and(|a| a.contains("h1")), "the old container serves h1");

    d.wait_state("web", "failed", 60 * SEC);
    let gone = wait_for(30 * SEC, || names(&p.0).iter().all(|n| !n.contains(".retired-")).then_some(()));
    assert!(gone.is_some(), "given up: the old container goes too: {:?}", names(&p.0));
}
