//! Restart timing: exponential backoff between restarts, reset after a stable run, and
//! crash-loop detection. Pure: the caller passes the clock in, so the sequences are tested
//! without sleeping.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How restarts are spaced and when a service counts as crash-looping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// Delay before the first restart.
    pub initial: Duration,
    /// The delay doubles up to this cap; a crash-looping service is retried at the cap.
    pub max: Duration,
    /// A service that ran this long is stable: its delay and exit history are reset.
    pub reset_after: Duration,
    /// This many exits within `crash_loop_window` make a crash loop.
    pub crash_loop_exits: usize,
    pub crash_loop_window: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
            reset_after: Duration::from_secs(60),
            crash_loop_exits: 5,
            crash_loop_window: Duration::from_secs(60),
        }
    }
}

/// What to do after an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartDecision {
    /// Wait this long before starting the service again.
    pub delay: Duration,
    /// The service exits too often: it is reported `crash-loop`.
    pub crash_loop: bool,
}

/// One service's restart history.
#[derive(Debug, Clone)]
pub struct RestartTracker {
    policy: BackoffPolicy,
    next_delay: Duration,
    exits: VecDeque<Instant>,
}

impl RestartTracker {
    pub fn new(policy: BackoffPolicy) -> RestartTracker {
        RestartTracker {
            next_delay: policy.initial,
            policy,
            exits: VecDeque::new(),
        }
    }

    /// The service ran stably: forget its exits and start again from the initial delay.
    pub fn reset(&mut self) {
        self.next_delay = self.policy.initial;
        self.exits.clear();
    }

    /// Records an exit at `now` of a run that began at `started`.
    pub fn on_exit(&mut self, started: Instant, now: Instant) -> RestartDecision {
        if now.saturating_duration_since(started) >= self.policy.reset_after {
            self.reset();
        }
        self.exits.push_back(now);
        while let Some(first) = self.exits.front() {
            if now.saturating_duration_since(*first) > self.policy.crash_loop_window {
                self.exits.pop_front();
            } else {
                break;
            }
        }
        let crash_loop = self.exits.len() >= self.policy.crash_loop_exits;
        let delay = if crash_loop {
            self.policy.max
        } else {
            self.next_delay
        };
        self.next_delay = (self.next_delay * 2).min(self.policy.max);
        RestartDecision { delay, crash_loop }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn policy() -> BackoffPolicy {
        BackoffPolicy {
            initial: ms(100),
            max: ms(1000),
            reset_after: ms(5000),
            crash_loop_exits: 100,
            crash_loop_window: ms(60_000),
        }
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let mut tracker = RestartTracker::new(policy());
        let t0 = Instant::now();
        let delays: Vec<u64> = (0..7)
            .map(|i| {
                let at = t0 + ms(10 * i);
                tracker.on_exit(at, at).delay.as_millis() as u64
            })
            .collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000, 1000]);
    }

    #[test]
    fn a_stable_run_resets_the_delay() {
        let mut tracker = RestartTracker::new(policy());
        let t0 = Instant::now();
        for _ in 0..4 {
            tracker.on_exit(t0, t0);
        }
        assert_eq!(tracker.on_exit(t0, t0).delay, ms(1000));
        // Ran 4.9 s: not yet stable, the delay stays at the cap.
        assert_eq!(tracker.on_exit(t0, t0 + ms(4900)).delay, ms(1000));
        // Ran 5 s: stable, back to the initial delay, then doubling again.
        let started = t0 + ms(5000);
        assert_eq!(tracker.on_exit(started, started + ms(5000)).delay, ms(100));
        let again = started + ms(5001);
        assert_eq!(tracker.on_exit(again, again).delay, ms(200));
    }

    #[test]
    fn five_exits_within_the_window_are_a_crash_loop_retried_at_the_cap() {
        let mut tracker = RestartTracker::new(BackoffPolicy {
            crash_loop_exits: 5,
            crash_loop_window: ms(10_000),
            ..policy()
        });
        let t0 = Instant::now();
        let decisions: Vec<RestartDecision> = (0..6)
            .map(|i| {
                let at = t0 + ms(100 * i);
                tracker.on_exit(at, at)
            })
            .collect();
        assert!(decisions[..4].iter().all(|d| !d.crash_loop));
        assert!(decisions[4].crash_loop && decisions[5].crash_loop);
        assert_eq!(decisions[4].delay, ms(1000));
    }

    #[test]
    fn exits_spread_wider_than_the_window_are_not_a_crash_loop() {
        let mut tracker = RestartTracker::new(BackoffPolicy {
            crash_loop_exits: 3,
            crash_loop_window: ms(1000),
            ..policy()
        });
        let t0 = Instant::now();
        for i in 0..10 {
            let at = t0 + ms(600 * i);
            assert!(!tracker.on_exit(at, at).crash_loop, "exit {i}");
        }
    }

    #[test]
    fn reset_clears_the_crash_loop_history() {
        let mut tracker = RestartTracker::new(BackoffPolicy {
            crash_loop_exits: 2,
            ..policy()
        });
        let t0 = Instant::now();
        tracker.on_exit(t0, t0);
        assert!(tracker.on_exit(t0, t0).crash_loop);
        tracker.reset();
        let decision = tracker.on_exit(t0, t0);
        assert!(!decision.crash_loop);
        assert_eq!(decision.delay, ms(100));
    }
}
