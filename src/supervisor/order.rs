//! The dependency-driven choices, pure: which services may start now, which to stop next
//! during a shutdown (reverse dependency order), why a service is held or still waiting, and
//! whether everything has settled. The actor asks; it performs what these return.

use super::fsm::{Event, State};

/// What the choices need to know of the services, by index.
pub(crate) trait Nodes {
    fn count(&self) -> usize;
    fn name(&self, i: usize) -> &str;
    fn state(&self, i: usize) -> &State;
    /// Direct dependencies (of the current config).
    fn deps(&self, i: usize) -> &[usize];
    fn dependents(&self, i: usize) -> &[usize];
    /// Removed by a reload: no longer part of the graph (it is being, or has been, stopped).
    fn retired(&self, i: usize) -> bool;
    /// Why it cannot start yet for a reason of its own (its container is not prepared).
    fn blocker(&self, i: usize) -> Option<String>;
    /// Left running through this shutdown (containers, when the daemon stops to upgrade).
    fn kept(&self, i: usize) -> bool;
}

/// How the supervisor is stopping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shutdown {
    No,
    /// Dependents first, each through its stop signal and grace period.
    Graceful,
    /// Everything killed at once (a second SIGTERM).
    Fast,
}

fn deps_ready(n: &impl Nodes, i: usize) -> bool {
    n.deps(i).iter().all(|&d| n.state(d).is_ready())
}

/// Pending services whose dependencies are all ready and that nothing else blocks.
pub(crate) fn startable(n: &impl Nodes) -> Vec<usize> {
    (0..n.count())
        .filter(|&i| !n.retired(i) && matches!(n.state(i), State::Pending))
        .filter(|&i| deps_ready(n, i) && n.blocker(i).is_none())
        .collect()
}

/// Whether an operator's start of `i` may go ahead; else why not.
pub(crate) fn may_start(n: &impl Nodes, i: usize) -> Result<(), String> {
    if deps_ready(n, i) {
        return Ok(());
    }
    Err(waiting_on(n, i, &holds(n)).unwrap_or_else(|| "its dependencies are not ready".into()))
}

/// For every service, the failed or stopped dependency — direct, or further down through
/// pending ones — that keeps it from starting. One pass with memory: dense tiers would make a
/// plain recursion exponential.
pub(crate) fn holds(n: &impl Nodes) -> Vec<Option<usize>> {
    let mut memo = vec![None; n.count()];
    for i in 0..n.count() {
        hold_of(n, i, &mut memo);
    }
    memo.into_iter().map(Option::flatten).collect()
}

fn hold_of(n: &impl Nodes, i: usize, memo: &mut [Option<Option<usize>>]) -> Option<usize> {
    if let Some(known) = memo[i] {
        return known;
    }
    let mut hold = None;
    for &d in n.deps(i) {
        hold = match n.state(d) {
            State::Failed { .. } | State::Stopped => Some(d),
            State::Pending => hold_of(n, d, memo),
            _ => None,
        };
        if hold.is_some() {
            break;
        }
    }
    memo[i] = Some(hold);
    hold
}

/// How many of the dependencies a waiting service names.
const NAMED: usize = 3;

/// Why `i` has not started: a failed or stopped dependency holding it (`holds`), else the
/// dependencies it still waits for (the first few named), else what blocks it.
pub(crate) fn waiting_on(n: &impl Nodes, i: usize, holds: &[Option<usize>]) -> Option<String> {
    if let Some(dep) = holds[i] {
        return Some(format!("held: dependency {} is {}", n.name(dep), n.state(dep).name()));
    }
    let mut waiting = n.deps(i).iter().copied().filter(|&d| !n.state(d).is_ready());
    let named: Vec<&str> = waiting.by_ref().take(NAMED).map(|d| n.name(d)).collect();
    if named.is_empty() {
        return n.blocker(i);
    }
    let more = waiting.count();
    let tail = if more > 0 { format!(" and {more} more") } else { String::new() };
    Some(format!("waiting for {}{tail}", named.join(", ")))
}

/// Whether service `i` needs nothing more before the supervisor may exit.
pub(crate) fn done_with(n: &impl Nodes, i: usize) -> bool {
    n.state(i).is_at_rest() || n.kept(i)
}

/// What to stop now: services with no process at once, running ones when every dependent is
/// done (reverse dependency order), everything killed on `Fast`.
pub(crate) fn shutdown_steps(n: &impl Nodes, how: Shutdown) -> Vec<(usize, Event)> {
    let fast = how == Shutdown::Fast;
    let mut steps = Vec::new();
    for i in (0..n.count()).filter(|&i| !n.kept(i)) {
        let dependents_done = n.dependents(i).iter().all(|&d| done_with(n, d));
        let event = match n.state(i) {
            State::Pending | State::Backoff { .. } => Event::Stop,
            State::Stopping { kill_at: Some(_), .. } if fast => Event::Kill,
            State::Starting { .. } | State::Healthy { .. } | State::Unhealthy { .. } if fast => Event::Kill,
            State::Starting { .. } | State::Healthy { .. } | State::Unhealthy { .. } if dependents_done => {
                Event::Stop
            }
            _ => continue,
        };
        steps.push((i, event));
    }
    steps
}

/// Whether no service is on its way up any more: each is ready, or has failed, or is held
/// behind one that has (systemd's READY=1 waits for this).
pub(crate) fn settled(n: &impl Nodes) -> bool {
    let moving = |i: usize| matches!(n.state(i), State::Starting { .. } | State::Backoff { .. });
    if (0..n.count()).any(moving) {
        return false; // the common case while services come up: no need to work out holds
    }
    let holds = holds(n);
    !(0..n.count()).any(|i| !n.retired(i) && matches!(n.state(i), State::Pending) && holds[i].is_none())
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::supervisor::fsm::Reason;

    /// Services by name with their dependencies, all pending unless set.
    struct Fixture {
        names: Vec<&'static str>,
        states: Vec<State>,
        deps: Vec<Vec<usize>>,
        dependents: Vec<Vec<usize>>,
        retired: Vec<bool>,
        blocked: Vec<Option<String>>,
        kept: Vec<bool>,
    }

    impl Fixture {
        fn new(graph: &[(&'static str, &[&'static str])]) -> Fixture {
            let names: Vec<&'static str> = graph.iter().map(|(n, _)| *n).collect();
            let index = |name: &str| names.iter().position(|n| *n == name).unwrap();
            let deps: Vec<Vec<usize>> =
                graph.iter().map(|(_, ds)| ds.iter().map(|d| index(d)).collect()).collect();
            let mut dependents = vec![Vec::new(); names.len()];
            for (i, ds) in deps.iter().enumerate() {
                for &d in ds {
                    dependents[d].push(i);
                }
            }
            let len = names.len();
            Fixture {
                names,
                states: vec![State::Pending; len],
                deps,
                dependents,
                retired: vec![false; len],
                blocked: vec![None; len],
                kept: vec![false; len],
            }
        }

        fn at(mut self, name: &str, state: State) -> Fixture {
            let i = self.names.iter().position(|n| *n == name).unwrap();
            self.states[i] = state;
            self
        }

        fn names(&self, of: &[usize]) -> Vec<&'static str> {
            of.iter().map(|&i| self.names[i]).collect()
        }
    }

    impl Nodes for Fixture {
        fn count(&self) -> usize {
            self.names.len()
        }
        fn name(&self, i: usize) -> &str {
            self.names[i]
        }
        fn state(&self, i: usize) -> &State {
            &self.states[i]
        }
        fn deps(&self, i: usize) -> &[usize] {
            &self.deps[i]
        }
        fn dependents(&self, i: usize) -> &[usize] {
            &self.dependents[i]
        }
        fn retired(&self, i: usize) -> bool {
            self.retired[i]
        }
        fn blocker(&self, i: usize) -> Option<String> {
            self.blocked[i].clone()
        }
        fn kept(&self, i: usize) -> bool {
            self.kept[i]
        }
    }

    fn healthy() -> State {
        State::Healthy { since: Instant::now() }
    }

    fn failed() -> State {
        State::Failed { reason: Reason::Oom }
    }

    /// nats and redis (shared) ← brain ← execution ← two phases
    fn titan() -> Fixture {
        Fixture::new(&[
            ("nats", &[]),
            ("redis", &[]),
            ("brain", &["nats", "redis"]),
            ("execution", &["brain"]),
            ("hunter", &["execution"]),
            ("sentinel", &["execution"]),
        ])
    }

    #[test]
    fn services_start_the_moment_their_own_dependencies_are_ready() {
        let f = titan();
        assert_eq!(f.names(&startable(&f)), ["nats", "redis"]);
        let f = titan().at("nats", healthy());
        assert_eq!(f.names(&startable(&f)), ["redis"], "brain waits for redis too");
        let f = titan().at("nats", healthy()).at("redis", State::Exited { code: 0 });
        assert_eq!(f.names(&startable(&f)), ["brain"], "a oneshot that exited 0 is ready");
        let f = titan().at("nats", healthy()).at("redis", State::Exited { code: 1 });
        assert!(f.names(&startable(&f)).is_empty());
    }

    #[test]
    fn a_blocked_or_retired_service_does_not_start() {
        let mut f = titan();
        f.blocked[0] = Some("waiting for dockerd".into());
        f.retired[1] = true;
        assert!(startable(&f).is_empty());
        assert_eq!(waiting_on(&f, 0, &holds(&f)).as_deref(), Some("waiting for dockerd"));
    }

    #[test]
    fn a_failed_dependency_holds_everything_behind_it_and_says_so() {
        let f = titan().at("nats", failed()).at("redis", healthy());
        let holds = holds(&f);
        assert_eq!(
            f.names(&holds.iter().flatten().copied().collect::<Vec<_>>()),
            ["nats", "nats", "nats", "nats"]
        );
        assert_eq!(waiting_on(&f, 5, &holds).as_deref(), Some("held: dependency nats is failed"));
        assert_eq!(may_start(&f, 2), Err("held: dependency nats is failed".into()));
        assert!(settled(&f), "nothing more will happen by itself");
        let f = titan().at("nats", healthy());
        assert_eq!(waiting_on(&f, 2, &self::holds(&f)).as_deref(), Some("waiting for redis"));
        assert!(!settled(&f));
    }

    #[test]
    fn a_waiting_service_names_the_first_three_it_waits_for() {
        let f = Fixture::new(&[
            ("a", &[]),
            ("b", &[]),
            ("c", &[]),
            ("d", &[]),
            ("e", &[]),
            ("x", &["a", "b", "c", "d", "e"]),
        ]);
        assert_eq!(waiting_on(&f, 5, &holds(&f)).as_deref(), Some("waiting for a, b, c and 2 more"));
    }

    #[test]
    fn holds_stay_linear_on_dense_tiers() {
        // 12 tiers of 8, each service depending on every one of the tier before: a plain
        // recursion would walk 8^12 paths
        let names: Vec<String> = (0..96).map(|i| format!("s{i}")).collect();
        let leaked: Vec<&'static str> = names.into_iter().map(|n| &*Box::leak(n.into_boxed_str())).collect();
        let graph: Vec<(&'static str, Vec<&'static str>)> = (0..96)
            .map(|i| {
                (
                    leaked[i],
                    if i < 8 { vec![] } else { (0..8).map(|j| leaked[(i / 8 - 1) * 8 + j]).collect() },
                )
            })
            .collect();
        let refs: Vec<(&'static str, &[&'static str])> =
            graph.iter().map(|(n, d)| (*n, d.as_slice())).collect();
        let f = Fixture::new(&refs).at("s0", failed());
        let holds = holds(&f);
        assert_eq!(holds.iter().filter(|h| h.is_some()).count(), 88);
    }

    #[test]
    fn a_graceful_shutdown_stops_dependents_first() {
        let all_up = || {
            ["nats", "redis", "brain", "execution", "hunter", "sentinel"]
                .into_iter()
                .fold(titan(), |f, n| f.at(n, healthy()))
        };
        let f = all_up();
        let steps = shutdown_steps(&f, Shutdown::Graceful);
        assert_eq!(f.names(&steps.iter().map(|s| s.0).collect::<Vec<_>>()), ["hunter", "sentinel"]);
        assert!(steps.iter().all(|s| s.1 == Event::Stop));
        let f = all_up().at("hunter", State::Stopped).at("sentinel", State::Stopped);
        let steps = shutdown_steps(&f, Shutdown::Graceful);
        assert_eq!(f.names(&steps.iter().map(|s| s.0).collect::<Vec<_>>()), ["execution"]);
        // pending services have nothing to wait for, and nobody waits for them
        let f = titan().at("nats", healthy());
        let steps = shutdown_steps(&f, Shutdown::Graceful);
        assert_eq!(
            f.names(&steps.iter().map(|s| s.0).collect::<Vec<_>>()),
            ["nats", "redis", "brain", "execution", "hunter", "sentinel"]
        );
    }

    #[test]
    fn a_fast_shutdown_kills_everything_and_kept_containers_are_left_alone() {
        let mut f = ["nats", "redis", "brain", "execution", "hunter", "sentinel"]
            .into_iter()
            .fold(titan(), |f, n| f.at(n, healthy()));
        let steps = shutdown_steps(&f, Shutdown::Fast);
        assert_eq!(steps.len(), 6);
        assert!(steps.iter().all(|s| s.1 == Event::Kill));
        // an upgrade keeps containers running: their dependencies need not wait for them
        f.kept[5] = true;
        f.kept[4] = true;
        let steps = shutdown_steps(&f, Shutdown::Graceful);
        assert_eq!(f.names(&steps.iter().map(|s| s.0).collect::<Vec<_>>()), ["execution"]);
    }
}
