//! Restart policy and backoff, pure: given how a run ended, how long it lasted and the recent
//! restarts, decide whether to run again and after how long. Time comes in as an argument.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::{Restart, RestartPolicy};

/// What the policy decided about a run that ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Run again after this delay (zero: at once).
    Restart(Duration),
    /// Leave it ended: the policy does not restart this exit.
    Leave,
    /// Restarted too often within the window: stop trying.
    GiveUp { restarts: u32, window: Duration },
}

/// Restarts within the window and the run of consecutive short runs (for backoff).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct History {
    restarts: VecDeque<Instant>,
    consecutive_short: u32,
}

impl History {
    /// Forgets crash history (an operator's start after `failed`).
    pub(crate) fn reset(&mut self) {
        *self = History::default();
    }
}

/// Decides about a run that ended on its own. `failed` is whether the run counts as a failure
/// (non-zero exit, signal, OOM, unhealthy, memory); `ran_for` is its uptime.
pub(crate) fn decide(
    policy: &Restart,
    history: &mut History,
    failed: bool,
    ran_for: Duration,
    now: Instant,
) -> Decision {
    let wanted = match policy.policy {
        RestartPolicy::Always => true,
        RestartPolicy::OnFailure => failed,
        RestartPolicy::Never => false,
    };
    if !wanted {
        return Decision::Leave;
    }
    restart_after(policy, history, ran_for, now)
}

/// Records a restart that will happen and returns its delay, or gives up past `max_restarts`
/// within `restart_window`. Also used for restarts the supervisor itself decides (unhealthy,
/// memory), which count toward the limit like crashes.
pub(crate) fn restart_after(
    policy: &Restart,
    history: &mut History,
    ran_for: Duration,
    now: Instant,
) -> Decision {
    let window = policy.window.0;
    while history.restarts.front().is_some_and(|&t| now.saturating_duration_since(t) >= window) {
        history.restarts.pop_front();
    }
    if history.restarts.len() as u32 >= policy.max_restarts {
        return Decision::GiveUp { restarts: history.restarts.len() as u32, window };
    }
    history.restarts.push_back(now);
    if ran_for >= policy.min_uptime.0 {
        history.consecutive_short = 0;
        return Decision::Restart(Duration::ZERO);
    }
    history.consecutive_short += 1;
    Decision::Restart(backoff(policy, history.consecutive_short))
}

/// `initial` doubled per consecutive short run after the first, capped at `max`.
pub(crate) fn backoff(policy: &Restart, consecutive_short: u32) -> Duration {
    let doublings = consecutive_short.saturating_sub(1).min(32);
    let delay = policy.backoff_initial.0.saturating_mul(1u32 << doublings.min(31));
    delay.min(policy.backoff_max.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::units::Duration as D;

    fn policy(p: RestartPolicy) -> Restart {
        Restart {
            policy: p,
            max_restarts: 3,
            window: D::from_secs(60),
            backoff_initial: D::from_millis(100),
            backoff_max: D::from_millis(1000),
            min_uptime: D::from_secs(1),
        }
    }

    const SHORT: Duration = Duration::from_millis(10);
    const LONG: Duration = Duration::from_secs(5);

    #[test]
    fn the_policy_decides_which_exits_restart() {
        let now = Instant::now();
        let mut h = History::default();
        assert_eq!(decide(&policy(RestartPolicy::OnFailure), &mut h, false, LONG, now), Decision::Leave);
        assert_eq!(decide(&policy(RestartPolicy::Never), &mut h, true, LONG, now), Decision::Leave);
        assert_eq!(
            decide(&policy(RestartPolicy::OnFailure), &mut h, true, LONG, now),
            Decision::Restart(Duration::ZERO)
        );
        assert_eq!(
            decide(&policy(RestartPolicy::Always), &mut h, false, LONG, now),
            Decision::Restart(Duration::ZERO)
        );
    }

    #[test]
    fn short_runs_back_off_doubling_to_the_cap_and_a_long_run_resets() {
        let p = Restart { max_restarts: 100, ..policy(RestartPolicy::Always) };
        let mut h = History::default();
        let now = Instant::now();
        let delays: Vec<Decision> = (0..6).map(|_| decide(&p, &mut h, true, SHORT, now)).collect();
        let ms = |n| Decision::Restart(Duration::from_millis(n));
        assert_eq!(delays, [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]);
        assert_eq!(decide(&p, &mut h, true, LONG, now), Decision::Restart(Duration::ZERO));
        assert_eq!(decide(&p, &mut h, true, SHORT, now), ms(100));
    }

    #[test]
    fn more_than_max_restarts_within_the_window_gives_up() {
        let p = policy(RestartPolicy::Always);
        let mut h = History::default();
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(matches!(
                decide(&p, &mut h, true, LONG, t0 + Duration::from_secs(i)),
                Decision::Restart(_)
            ));
        }
        let gave_up = decide(&p, &mut h, true, LONG, t0 + Duration::from_secs(3));
        assert_eq!(gave_up, Decision::GiveUp { restarts: 3, window: Duration::from_secs(60) });
        // once the window has moved past the old restarts, restarting is allowed again
        assert!(matches!(decide(&p, &mut h, true, LONG, t0 + Duration::from_secs(61)), Decision::Restart(_)));
    }

    #[test]
    fn backoff_never_overflows() {
        let p = policy(RestartPolicy::Always);
        assert_eq!(backoff(&p, u32::MAX), Duration::from_millis(1000));
        assert_eq!(backoff(&p, 0), Duration::from_millis(100));
    }
}
