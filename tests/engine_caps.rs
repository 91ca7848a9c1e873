//! A hard cap that cannot be applied fails the service's start with a clear reason — it never
//! runs uncapped — while services without caps are unaffected. The cgroup root is injected (a
//! host where no hierarchy can be used), the rest is real: the actor, processes, signals.

mod common;

use std::time::Duration;

use common::BIN;
use titan_supervisor::config;
use titan_supervisor::supervisor::Supervisor;
use titan_supervisor::supervisor::fsm::StateKind;

#[test]
fn a_memory_cap_that_cannot_be_applied_fails_the_start_and_nothing_runs_uncapped() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[supervisor]\nproject = \"caps{pid}\"\nlog_dir = \"logs\"\nstate_dir = \"state\"\n\n\
         [services.capped]\ncommand = [\"{BIN}\", \"test-service\", \"--name\", \"capped\"]\nmemory = \"64MiB\"\nrestart = \"never\"\n\n\
         [services.plain]\ncommand = [\"{BIN}\", \"test-service\", \"--name\", \"plain\"]\n",
        pid = std::process::id()
    );
    let path = common::write(dir.path(), "services.toml", &text);
    let cfg = config::load(&path).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (summary, seen) = rt.block_on(async {
        let sup = Supervisor::with_cgroups(cfg, Err("no cgroup hierarchy is mounted".into())).unwrap();
        let handle = sup.handle();
        let watch = async {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            let mut seen = Vec::new();
            while tokio::time::Instant::now() < deadline {
                seen = handle.status().to_vec();
                let state = |n: &str| seen.iter().find(|s| s.name == n).map(|s| s.state);
                if state("capped") == Some(StateKind::Failed) && state("plain") == Some(StateKind::Healthy) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            handle.shutdown();
            seen
        };
        tokio::join!(sup.run(), watch)
    });
    let capped = seen.iter().find(|s| s.name == "capped").unwrap();
    assert_eq!(capped.state, StateKind::Failed, "{seen:?}");
    assert_eq!(
        capped.reason.as_deref(),
        Some(
            "cannot start: cannot apply memory/pids caps: cgroups unavailable: no cgroup hierarchy is mounted"
        )
    );
    assert_eq!(capped.pid, None, "it never ran");
    assert_eq!(seen.iter().find(|s| s.name == "plain").unwrap().state, StateKind::Healthy);
    assert!(summary.unwrap().stop_order.contains(&"plain".to_owned()));
}
