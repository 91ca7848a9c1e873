//! Tests of the lifecycle state machine: the whole transition table (rendered into
//! docs/lifecycle.md, which must match), and scenarios that walk through it.

use std::time::{Duration, Instant};

use super::*;
use crate::config::RestartPolicy;
use crate::config::units::Duration as D;

fn spec() -> Spec {
    Spec {
        oneshot: false,
        gated: true,
        startup_timeout: Duration::from_secs(30),
        stop_timeout: Duration::from_millis(1600),
        unhealthy_after: 3,
        restart: Restart {
            policy: RestartPolicy::OnFailure,
            max_restarts: 3,
            window: D::from_secs(60),
            backoff_initial: D::from_millis(100),
            backoff_max: D::from_secs(30),
            min_uptime: D::from_secs(1),
        },
    }
}

fn at(l: State) -> Lifecycle {
    Lifecycle { state: l, ..Lifecycle::default() }
}

/// One representative of every state.
fn states(t: Instant) -> Vec<State> {
    vec![
        State::Pending,
        State::Starting { since: t, gate_until: t + Duration::from_secs(30) },
        State::Healthy { since: t },
        State::Unhealthy { since: t, failures: 1 },
        State::Backoff { until: t, reason: Reason::Exit(Exit::Code(1)) },
        State::Stopping { since: t, kill_at: Some(t), then: Then::Hold },
        State::Stopped,
        State::Exited { code: 0 },
        State::Failed { reason: Reason::Exit(Exit::Code(1)) },
    ]
}

/// One representative of every event; a crash exit.
fn events() -> Vec<Event> {
    vec![
        Event::Start,
        Event::Spawned,
        Event::SpawnFailed("ENOENT".into()),
        Event::Ready,
        Event::ProbeFailed,
        Event::GateExpired,
        Event::Exited { exit: Exit::Code(1), oom: false },
        Event::BackoffElapsed,
        Event::Stop,
        Event::Kill,
        Event::KillDue,
        Event::MemoryOver,
        Event::Restart,
        Event::Requeue,
        Event::Revive,
        Event::Completed,
        Event::Superseded,
    ]
}

fn event_name(e: &Event) -> String {
    let dbg = format!("{e:?}");
    dbg.split(['(', ' ', '{']).next().unwrap_or_default().to_owned()
}

/// The table: a row per state, a column per event, each cell the next state and actions.
fn render_table() -> String {
    let t = Instant::now() + Duration::from_secs(100);
    let events = events();
    let mut out = String::from(
        "# Service lifecycle\n\nGenerated from `supervisor::fsm::next` by its tests \
         (`UPDATE_LIFECYCLE_DOC=1 cargo test --lib fsm`); do not edit by hand.\n\
         A crash exit (code 1, ran < min_uptime, restart = on-failure, limit not reached) stands for\n\
         `Exited`; `-` means the event is ignored in that state. The service has a health check;\n\
         without one, `Spawned` (its exec succeeded, or Docker started its container) takes\n\
         `starting` to `healthy`.\n\n| state |",
    );
    for e in &events {
        out.push_str(&format!(" {} |", event_name(e)));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(events.len()));
    out.push('\n');
    for s in states(t) {
        out.push_str(&format!("| **{}** |", s.name()));
        for e in &events {
            let cell = match next(&at(s.clone()), &spec(), e.clone(), t) {
                None => "-".to_owned(),
                Some((l, actions)) if actions.is_empty() => l.state.name().to_owned(),
                Some((l, actions)) => format!(
                    "{} ({})",
                    l.state.name(),
                    actions.iter().map(|a| format!("{a:?}")).collect::<Vec<_>>().join(", ").to_lowercase()
                ),
            };
            out.push_str(&format!(" {cell} |"));
        }
        out.push('\n');
    }
    out
}

#[test]
fn the_documented_transition_table_matches_next() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/lifecycle.md");
    let table = render_table();
    if std::env::var_os("UPDATE_LIFECYCLE_DOC").is_some() {
        std::fs::write(&path, &table).unwrap();
    }
    let doc = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(doc, table, "docs/lifecycle.md is stale: run UPDATE_LIFECYCLE_DOC=1 cargo test --lib fsm");
}

#[test]
fn every_state_event_pair_is_decided_and_never_panics() {
    let t = Instant::now();
    let exits = [
        Event::Exited { exit: Exit::Code(0), oom: false },
        Event::Exited { exit: Exit::Code(2), oom: false },
        Event::Exited { exit: Exit::Signal(9), oom: true },
    ];
    for oneshot in [false, true] {
        for gated in [false, true] {
            let spec = Spec { oneshot, gated, ..spec() };
            for s in states(t) {
                for e in events().into_iter().chain(exits.iter().cloned()) {
                    if let Some((l, actions)) = next(&at(s.clone()), &spec, e.clone(), t) {
                        // a spawn always enters a state with a live process
                        if actions.contains(&Action::Spawn) {
                            assert!(l.state.running_since().is_some(), "{s:?} + {e:?} -> {:?}", l.state);
                        }
                        // a process-less state never sends signals
                        if s.running_since().is_none() {
                            assert!(!actions.contains(&Action::Term) && !actions.contains(&Action::Kill));
                        }
                    }
                }
            }
        }
    }
}

/// Feeds events in order, returning the final lifecycle and every action.
fn walk(spec: &Spec, start: Lifecycle, steps: &[(Event, u64)]) -> (Lifecycle, Vec<Action>) {
    let t0 = Instant::now();
    let mut l = start;
    let mut all = Vec::new();
    for (e, ms) in steps {
        let (next_l, actions) = next(&l, spec, e.clone(), t0 + Duration::from_millis(*ms))
            .unwrap_or_else(|| panic!("{e:?} ignored in {:?}", l.state));
        l = next_l;
        all.extend(actions);
    }
    (l, all)
}

const CRASH: Event = Event::Exited { exit: Exit::Code(1), oom: false };

#[test]
fn a_gated_service_starts_becomes_healthy_and_a_long_run_crash_restarts_at_once() {
    let (l, actions) =
        walk(&spec(), Lifecycle::default(), &[(Event::Start, 0), (Event::Ready, 50), (CRASH, 5_000)]);
    assert_eq!(actions, [Action::Spawn, Action::Spawn]);
    assert_eq!(l.state.name(), "starting");
    assert_eq!((l.restarts, l.last_exit), (1, Some(Exit::Code(1))));
}

#[test]
fn quick_crashes_back_off_and_a_crash_loop_fails_loudly() {
    let (l, _) = walk(&spec(), Lifecycle::default(), &[(Event::Start, 0), (CRASH, 10)]);
    let State::Backoff { until, .. } = l.state else { panic!("{:?}", l.state) };
    assert!(until > Instant::now());
    let steps = [
        (Event::BackoffElapsed, 200),
        (CRASH, 210),
        (Event::BackoffElapsed, 500),
        (CRASH, 510),
        (Event::BackoffElapsed, 900),
        (CRASH, 910),
    ];
    let (l, _) = walk(&spec(), l, &steps);
    let State::Failed { reason: Reason::CrashLoop { restarts: 3, last, .. } } = &l.state else {
        panic!("{:?}", l.state)
    };
    assert_eq!(**last, Reason::Exit(Exit::Code(1)));
    assert_eq!(l.restarts, 3);
}

#[test]
fn consecutive_failed_probes_restart_a_healthy_service_and_one_success_forgives() {
    let steps = [
        (Event::Start, 0),
        (Event::Ready, 10),
        (Event::ProbeFailed, 2000),
        (Event::ProbeFailed, 3000),
        (Event::Ready, 4000),
    ];
    let (l, _) = walk(&spec(), Lifecycle::default(), &steps);
    assert_eq!(l.state.name(), "healthy");
    let steps = [(Event::ProbeFailed, 5000), (Event::ProbeFailed, 6000), (Event::ProbeFailed, 7000)];
    let (l, actions) = walk(&spec(), l, &steps);
    assert_eq!(actions, [Action::Term]);
    assert!(matches!(l.state, State::Stopping { then: Then::Restart(Reason::Unhealthy), .. }));
    let (l, actions) = walk(&spec(), l, &[(Event::Exited { exit: Exit::Signal(15), oom: false }, 7100)]);
    assert_eq!((actions, l.state.name(), l.restarts), (vec![Action::Spawn], "starting", 1));
}

#[test]
fn a_gate_timeout_stops_the_process_and_fails_with_the_reason() {
    let (l, actions) = walk(
        &spec(),
        Lifecycle::default(),
        &[(Event::Start, 0), (Event::GateExpired, 30_000), (Event::KillDue, 31_600)],
    );
    assert_eq!(actions, [Action::Spawn, Action::Term, Action::Kill]);
    let (l, _) = walk(&spec(), l, &[(Event::Exited { exit: Exit::Signal(9), oom: false }, 31_601)]);
    assert_eq!(l.state, State::Failed { reason: Reason::GateTimeout(Duration::from_secs(30)) });
    assert_eq!(l.state.deadline(), None);
}

#[test]
fn a_oneshot_is_exited_on_success_and_retried_on_failure() {
    let oneshot = Spec { oneshot: true, ..spec() };
    let (l, _) = walk(
        &oneshot,
        Lifecycle::default(),
        &[(Event::Start, 0), (Event::Exited { exit: Exit::Code(0), oom: false }, 100)],
    );
    assert_eq!(l.state, State::Exited { code: 0 });
    assert!(l.state.is_ready());
    let never = Spec { restart: Restart { policy: RestartPolicy::Never, ..spec().restart }, ..oneshot };
    let (l, _) = walk(&never, Lifecycle::default(), &[(Event::Start, 0), (CRASH, 100)]);
    assert_eq!(l.state, State::Failed { reason: Reason::Exit(Exit::Code(1)) });
    assert!(!l.state.is_ready());
}

#[test]
fn an_oom_kill_is_a_crash_with_reason_oom() {
    let (l, _) = walk(
        &spec(),
        Lifecycle::default(),
        &[(Event::Start, 0), (Event::Ready, 5), (Event::Exited { exit: Exit::Signal(9), oom: true }, 50)],
    );
    assert!(matches!(l.state, State::Backoff { reason: Reason::Oom, .. }), "{:?}", l.state);
}

#[test]
fn a_stop_holds_the_service_and_a_second_signal_kills_at_once() {
    let (l, actions) = walk(
        &spec(),
        Lifecycle::default(),
        &[(Event::Start, 0), (Event::Ready, 5), (Event::Stop, 100), (Event::Kill, 150)],
    );
    assert_eq!(actions, [Action::Spawn, Action::Term, Action::Kill]);
    let (l, _) = walk(&spec(), l, &[(Event::Exited { exit: Exit::Signal(9), oom: false }, 151)]);
    assert_eq!(l.state, State::Stopped);
    assert_eq!(l.restarts, 0, "a requested stop is not a crash");
}

#[test]
fn memory_over_the_soft_cap_restarts_gracefully() {
    let (l, actions) = walk(
        &spec(),
        Lifecycle::default(),
        &[
            (Event::Start, 0),
            (Event::Ready, 5),
            (Event::MemoryOver, 5000),
            (Event::Exited { exit: Exit::Code(0), oom: false }, 5100),
        ],
    );
    assert_eq!(actions, [Action::Spawn, Action::Term, Action::Spawn]);
    assert_eq!(l.restarts, 1);
}

#[test]
fn an_ungated_service_is_healthy_once_its_start_succeeded() {
    let plain = Spec { gated: false, ..spec() };
    let (l, actions) = walk(&plain, Lifecycle::default(), &[(Event::Start, 0)]);
    assert_eq!((l.state.name(), actions), ("starting", vec![Action::Spawn]));
    assert!(!l.state.is_ready(), "nothing may start beside it before its exec succeeded");
    let (l, _) = walk(&plain, l, &[(Event::Spawned, 1)]);
    assert_eq!(l.state.name(), "healthy");
    // a gated service waits for its check instead
    let (l, _) = walk(&spec(), Lifecycle::default(), &[(Event::Start, 0)]);
    assert_eq!(next(&l, &spec(), Event::Spawned, Instant::now()), None);
}

#[test]
fn a_service_whose_exec_fails_is_never_ready() {
    // regression: `command = ["/nonexistent/program"]` went pending -> healthy -> failed, and
    // its dependent started in between
    let never =
        Spec { gated: false, restart: Restart { policy: RestartPolicy::Never, ..spec().restart }, ..spec() };
    let (l, _) =
        walk(&never, Lifecycle::default(), &[(Event::Start, 0), (Event::SpawnFailed("ENOENT".into()), 0)]);
    assert!(matches!(l.state, State::Failed { reason: Reason::Spawn(_) }), "{:?}", l.state);
}

#[test]
fn a_failed_spawn_is_retried_with_backoff_like_a_crash() {
    // regression: "cannot create pipes: Too many open files" left a restart = "always"
    // service failed for good
    let (l, actions) =
        walk(&spec(), Lifecycle::default(), &[(Event::Start, 0), (Event::SpawnFailed("EMFILE".into()), 0)]);
    assert_eq!(actions, [Action::Spawn]);
    assert!(
        matches!(&l.state, State::Backoff { reason: Reason::Spawn(e), .. } if e == "EMFILE"),
        "{:?}",
        l.state
    );
    assert_eq!(l.restarts, 1);
    let (l, actions) = walk(&spec(), l, &[(Event::BackoffElapsed, 200)]);
    assert_eq!((l.state.name(), actions), ("starting", vec![Action::Spawn]));
    // and it counts toward max_restarts like any crash
    let failing = [
        (Event::SpawnFailed("EMFILE".into()), 210),
        (Event::BackoffElapsed, 600),
        (Event::SpawnFailed("EMFILE".into()), 610),
        (Event::BackoffElapsed, 1500),
        (Event::SpawnFailed("EMFILE".into()), 1510),
    ];
    let (l, _) = walk(&spec(), l, &failing);
    assert!(matches!(l.state, State::Failed { reason: Reason::CrashLoop { .. } }), "{:?}", l.state);
}

#[test]
fn a_container_started_after_its_stop_was_asked_gets_the_signal_again() {
    let stopping =
        at(State::Stopping { since: Instant::now(), kill_at: Some(Instant::now()), then: Then::Hold });
    let (l, actions) = walk(&spec(), stopping, &[(Event::Spawned, 0)]);
    assert_eq!((l.state.name(), actions), ("stopping", vec![Action::Term]));
}

#[test]
fn a_container_dockerd_took_down_goes_through_the_restart_policy() {
    let exited = at(State::Exited { code: 0 });
    let (l, actions) = walk(&spec(), exited.clone(), &[(Event::Revive, 0)]);
    assert_eq!((l.state.name(), actions, l.restarts), ("starting", vec![Action::Spawn], 1));
    // it counts toward max_restarts: with none left, it fails as a crash loop
    let none_left = Spec { restart: Restart { max_restarts: 0, ..spec().restart }, ..spec() };
    let (l, _) = walk(&none_left, exited.clone(), &[(Event::Revive, 0)]);
    let State::Failed { reason: Reason::CrashLoop { last, .. } } = &l.state else { panic!("{:?}", l.state) };
    assert_eq!(**last, Reason::Dockerd);
    // restart = "never" leaves it as it was; a oneshot that completed stays completed
    let never = Spec { restart: Restart { policy: RestartPolicy::Never, ..spec().restart }, ..spec() };
    assert_eq!(next(&exited, &never, Event::Revive, Instant::now()), None);
    let oneshot = Spec { oneshot: true, ..spec() };
    assert_eq!(next(&exited, &oneshot, Event::Revive, Instant::now()), None);
}

#[test]
fn operator_verbs_are_decided_by_the_table() {
    let t = Instant::now();
    let healthy = State::Healthy { since: t };
    let stopping = |then| State::Stopping { since: t, kill_at: Some(t), then };
    assert_eq!(operator(&healthy, Verb::Stop), Operator::Apply(Event::Stop));
    assert_eq!(operator(&healthy, Verb::Start), Operator::Already);
    assert_eq!(operator(&healthy, Verb::Restart), Operator::Apply(Event::Restart));
    assert_eq!(operator(&State::Stopped, Verb::Stop), Operator::Already);
    assert_eq!(operator(&stopping(Then::Hold), Verb::Stop), Operator::Already);
    // a stop wins over the restart that was to follow
    assert_eq!(
        operator(&stopping(Then::Restart(Reason::Unhealthy)), Verb::Stop),
        Operator::Apply(Event::Stop)
    );
    assert!(matches!(operator(&stopping(Then::Hold), Verb::Start), Operator::Refused(_)));
    for rest in
        [State::Pending, State::Stopped, State::Exited { code: 0 }, State::Failed { reason: Reason::Oom }]
    {
        assert_eq!(operator(&rest, Verb::Start), Operator::StartWhenReady(Event::Start), "{rest:?}");
        assert_eq!(operator(&rest, Verb::Restart), Operator::StartWhenReady(Event::Start), "{rest:?}");
    }
    // every verb in every state is decided, and an applied event is one the machine takes
    for s in states(t) {
        for verb in [Verb::Start, Verb::Stop, Verb::Restart] {
            if let Operator::Apply(e) | Operator::StartWhenReady(e) = operator(&s, verb) {
                assert!(next(&at(s.clone()), &spec(), e.clone(), t).is_some(), "{s:?} {verb:?} -> {e:?}");
            }
        }
    }
}

#[test]
fn starting_a_failed_service_forgets_its_crash_history() {
    let failed =
        Lifecycle { state: State::Failed { reason: Reason::Oom }, restarts: 7, ..Lifecycle::default() };
    let (l, actions) = walk(&spec(), failed, &[(Event::Start, 0)]);
    assert_eq!((l.state.name(), actions, l.history), ("starting", vec![Action::Spawn], Default::default()));
}

#[test]
fn a_oneshot_a_switch_ran_before_its_swap_is_completed_without_running_again() {
    let oneshot = Spec { oneshot: true, gated: false, ..spec() };
    let now = Instant::now();
    for from in [State::Pending, State::Stopped, State::Exited { code: 0 }] {
        let (l, actions) = next(&at(from), &oneshot, Event::Completed, now).unwrap();
        assert_eq!((l.state, actions, l.last_exit), (State::Exited { code: 0 }, vec![], Some(Exit::Code(0))));
    }
    assert!(
        next(&at(State::Starting { since: now, gate_until: now }), &oneshot, Event::Completed, now).is_none()
    );
    assert!(next(&at(State::Pending), &spec(), Event::Completed, now).is_none(), "only a oneshot");
}

#[test]
fn a_ready_service_superseded_by_a_start_first_update_goes_pending_with_no_stop() {
    let now = Instant::now();
    for from in [State::Healthy { since: now }, State::Unhealthy { since: now, failures: 1 }] {
        let mut running = at(from);
        running.restarts = 2;
        let (l, actions) = next(&running, &spec(), Event::Superseded, now).unwrap();
        assert_eq!((l.state, actions, l.restarts), (State::Pending, vec![], 2), "no signal, no restart");
    }
    // only a ready run is superseded: one still starting is replaced the plain way
    assert!(
        next(&at(State::Starting { since: now, gate_until: now }), &spec(), Event::Superseded, now).is_none()
    );
    assert!(next(&at(State::Stopped), &spec(), Event::Superseded, now).is_none());
}
