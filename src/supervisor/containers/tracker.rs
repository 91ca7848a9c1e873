//! What Docker's reports mean for a container service, pure: a run's start, its death from
//! the events stream (which may overtake the start's report), an OOM kill (whose event may
//! come after the death, or not at all), the answer to an inspect, and dockerd going away and
//! coming back. Each returns a verdict the actor performs; time comes in as an argument.

use std::time::{Duration, Instant};

use crate::runtime::docker::Running;
use crate::runtime::exit::Exit;

/// How close to dockerd going away (or coming back) a container's end must be to count as
/// caused by it.
pub(crate) const DOCKERD_WINDOW: Duration = Duration::from_secs(30);

/// A container's death as Docker's events stream reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Death {
    pub(crate) id: String,
    pub(crate) at_nanos: i64,
    pub(crate) exit: Exit,
}

/// What an inspect of the run's container found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Inspected {
    Running,
    Ended {
        exit: Exit,
        oom: bool,
    },
    /// Removed altogether (while dockerd was down, or by someone else).
    Gone,
}

/// What the actor does about a report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Nothing,
    /// The run's container has ended: the state machine hears `Exited`, the run is over.
    Ended {
        exit: Exit,
        oom: bool,
    },
    /// Ask Docker about the container (an inspect): was that SIGKILL the OOM killer's?
    Inspect {
        id: String,
    },
    /// Still running after dockerd came back: make sure its output is followed.
    FollowLogs,
}

/// What Docker has said about the container of one run, from its start request on.
#[derive(Clone, Debug, Default)]
pub(crate) struct ContainerRun {
    /// Wall-clock nanoseconds when the run's start was asked for: Docker events from before
    /// belong to an earlier run.
    pub(crate) since_nanos: i64,
    /// The container, once its start is reported (or it was adopted).
    pub(crate) running: Option<Running>,
    /// A `die` that came before the start was reported.
    early_death: Option<Death>,
    /// The kernel OOM-killed something in the container (Docker's `oom` event).
    oom_killed: bool,
    /// It died by SIGKILL under a memory cap and Docker is being asked whether that was the
    /// OOM killer (the `oom` event may come after the `die`, or not at all).
    asking: bool,
    /// Whether Docker enforces a memory limit on it (an OOM kill is possible).
    capped: bool,
}

impl ContainerRun {
    pub(crate) fn new(since_nanos: i64, capped: bool) -> Self {
        ContainerRun { since_nanos, capped, ..Default::default() }
    }

    /// Whether an event stamped `at_nanos` can be about this run.
    pub(crate) fn covers(&self, at_nanos: i64) -> bool {
        at_nanos >= self.since_nanos
    }

    /// The start was reported: the container runs, unless the inspect after the start saw it
    /// ended already or a `die` for it overtook the report.
    pub(crate) fn started(&mut self, running: Running) -> Verdict {
        let ended = match running.ended {
            Some((code, oom)) => {
                self.oom_killed |= oom;
                Some(Exit::of_docker(code))
            }
            None => self
                .early_death
                .take()
                .filter(|d| d.id == running.id && d.at_nanos >= running.started_nanos)
                .map(|d| d.exit),
        };
        self.running = Some(running);
        ended.map_or(Verdict::Nothing, |exit| self.died(exit))
    }

    /// A `die` from the events stream: this run's container's death, one of an earlier
    /// container (ignored), or kept until the start that ran it is reported.
    pub(crate) fn death(&mut self, death: Death) -> Verdict {
        match &self.running {
            Some(r) if r.id == death.id && death.at_nanos >= r.started_nanos => self.died(death.exit),
            Some(_) => Verdict::Nothing,
            None => {
                self.early_death = Some(death);
                Verdict::Nothing
            }
        }
    }

    /// The container died. A SIGKILL under a memory cap with no `oom` seen waits for
    /// whichever answers first: the `oom` event, or an inspect of State.OOMKilled.
    fn died(&mut self, exit: Exit) -> Verdict {
        if self.asking {
            return Verdict::Nothing;
        }
        if self.oom_killed || exit != Exit::Signal(9) || !self.capped {
            return Verdict::Ended { exit, oom: self.oom_killed };
        }
        let Some(id) = self.running.as_ref().map(|r| r.id.clone()) else { return Verdict::Nothing };
        self.asking = true;
        Verdict::Inspect { id }
    }

    /// Docker's `oom` event for the container.
    pub(crate) fn oom(&mut self) -> Verdict {
        self.oom_killed = true;
        if self.asking { Verdict::Ended { exit: Exit::Signal(9), oom: true } } else { Verdict::Nothing }
    }

    /// The answer to an inspect: asked after a SIGKILL under a cap, or after dockerd came back.
    pub(crate) fn inspected(&mut self, found: Inspected) -> Verdict {
        match found {
            Inspected::Ended { exit, oom } => Verdict::Ended { exit, oom: oom || self.oom_killed },
            // died, yet running when inspected: started again behind our back; its death stands
            Inspected::Running if self.asking => Verdict::Ended { exit: Exit::Signal(9), oom: false },
            Inspected::Running => Verdict::FollowLogs,
            Inspected::Gone => Verdict::Ended { exit: Exit::Code(-1), oom: self.oom_killed },
        }
    }
}

/// Whether dockerd is there, as the events stream tells: when it last went away and when it
/// was last back.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Dockerd {
    lost_at: Option<Instant>,
    back_since: Option<Instant>,
}

impl Dockerd {
    pub(crate) fn lost(&mut self, now: Instant) {
        self.lost_at = Some(now);
    }

    pub(crate) fn back(&mut self, now: Instant) {
        self.back_since = Some(now);
    }

    /// Whether it went away and has not come back since.
    pub(crate) fn is_away(&self) -> bool {
        self.lost_at.is_some_and(|lost| self.back_since.is_none_or(|back| back < lost))
    }

    /// Whether a container that ended at `ended_at`, before dockerd was last back, went down
    /// with it: it ended within the window before dockerd went away (the `die` events of a
    /// stopping daemon come before its stream breaks) or while it was away.
    pub(crate) fn went_down_with(&self, ended_at: Instant) -> bool {
        let before_return = self.back_since.is_none_or(|back| ended_at <= back);
        before_return && self.lost_at.is_some_and(|lost| ended_at + DOCKERD_WINDOW > lost)
    }

    /// Whether dockerd came back within the window (an end found now is its doing).
    pub(crate) fn just_back(&self, now: Instant) -> bool {
        self.back_since.is_some_and(|back| now < back + DOCKERD_WINDOW)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(id: &str, started_nanos: i64) -> Running {
        Running { id: id.into(), pid: Some(42), started_nanos, ip: None, ended: None }
    }

    fn death(id: &str, at_nanos: i64, exit: Exit) -> Death {
        Death { id: id.into(), at_nanos, exit }
    }

    #[test]
    fn a_death_ends_the_run_once() {
        let mut run = ContainerRun::new(100, false);
        assert_eq!(run.started(running("c1", 200)), Verdict::Nothing);
        assert_eq!(
            run.death(death("c1", 300, Exit::Code(3))),
            Verdict::Ended { exit: Exit::Code(3), oom: false }
        );
    }

    #[test]
    fn a_death_that_overtakes_the_start_report_is_kept_for_it() {
        let mut run = ContainerRun::new(100, false);
        assert_eq!(run.death(death("c1", 250, Exit::Code(1))), Verdict::Nothing);
        assert_eq!(run.started(running("c1", 200)), Verdict::Ended { exit: Exit::Code(1), oom: false });
        // a death of an earlier container of the same name is not this one's
        let mut run = ContainerRun::new(100, false);
        run.death(death("c0", 150, Exit::Code(1)));
        assert_eq!(run.started(running("c1", 200)), Verdict::Nothing);
        assert_eq!(run.death(death("c0", 400, Exit::Code(1))), Verdict::Nothing);
    }

    #[test]
    fn a_container_the_inspect_after_its_start_saw_ended_ends_at_once() {
        let mut run = ContainerRun::new(100, true);
        let ended = Running { ended: Some((137, true)), ..running("c1", 200) };
        assert_eq!(run.started(ended), Verdict::Ended { exit: Exit::Signal(9), oom: true });
    }

    #[test]
    fn a_sigkill_under_a_cap_is_an_oom_when_either_the_event_or_the_inspect_says_so() {
        // the oom event before the die: at once
        let mut run = ContainerRun::new(0, true);
        run.started(running("c1", 1));
        assert_eq!(run.oom(), Verdict::Nothing);
        assert_eq!(
            run.death(death("c1", 5, Exit::Signal(9))),
            Verdict::Ended { exit: Exit::Signal(9), oom: true }
        );
        // the die first: ask Docker; the oom event answers first
        let mut run = ContainerRun::new(0, true);
        run.started(running("c1", 1));
        assert_eq!(run.death(death("c1", 5, Exit::Signal(9))), Verdict::Inspect { id: "c1".into() });
        assert_eq!(run.death(death("c1", 6, Exit::Signal(9))), Verdict::Nothing, "asked once");
        assert_eq!(run.oom(), Verdict::Ended { exit: Exit::Signal(9), oom: true });
        // ... or the inspect does
        let mut run = ContainerRun::new(0, true);
        run.started(running("c1", 1));
        run.death(death("c1", 5, Exit::Signal(9)));
        let found = Inspected::Ended { exit: Exit::Signal(9), oom: false };
        assert_eq!(run.inspected(found), Verdict::Ended { exit: Exit::Signal(9), oom: false });
        // uncapped, a SIGKILL is a plain kill
        let mut run = ContainerRun::new(0, false);
        run.started(running("c1", 1));
        assert_eq!(
            run.death(death("c1", 5, Exit::Signal(9))),
            Verdict::Ended { exit: Exit::Signal(9), oom: false }
        );
    }

    #[test]
    fn after_dockerd_came_back_a_live_container_is_followed_and_a_missing_one_ended() {
        let mut run = ContainerRun::new(0, false);
        run.started(running("c1", 1));
        assert_eq!(run.inspected(Inspected::Running), Verdict::FollowLogs);
        assert_eq!(run.inspected(Inspected::Gone), Verdict::Ended { exit: Exit::Code(-1), oom: false });
    }

    #[test]
    fn a_container_that_ended_as_dockerd_went_or_came_back_went_down_with_it() {
        let t = Instant::now();
        let s = Duration::from_secs;
        let mut dockerd = Dockerd::default();
        assert!(!dockerd.went_down_with(t), "dockerd never went away");
        assert!(!dockerd.just_back(t));
        // its container dies at t+40 (dockerd stopping it), the stream breaks at t+41
        dockerd.lost(t + s(41));
        dockerd.back(t + s(50));
        assert!(dockerd.went_down_with(t + s(40)));
        assert!(dockerd.went_down_with(t + s(45)), "ended while dockerd was away");
        assert!(!dockerd.went_down_with(t + s(5)), "ended on its own long before");
        assert!(!dockerd.went_down_with(t + s(60)), "ended after dockerd was back");
        // found dead by the inspect right after the return
        assert!(dockerd.just_back(t + s(51)));
        assert!(!dockerd.just_back(t + s(100)), "long after, a death is the container's own");
    }
}
