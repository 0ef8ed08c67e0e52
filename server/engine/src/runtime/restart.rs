//! Restart strategies, as Flink's: when a job fails, whether and after how long it starts again from its newest
//! completed checkpoint. Pure: the caller gives the times and the random draw for jitter.

use crate::spec::RestartSpec;
use std::collections::VecDeque;
use std::time::Duration;

/// What to do about a failure.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Start the job again after this long.
    Restart(Duration),
    /// Leave the job failed, for this reason.
    GiveUp(String),
}

/// The state of a job's restart strategy across its failures.
#[derive(Debug, Clone)]
pub struct RestartPolicy {
    spec: RestartSpec,
    restarts: u32,
    /// Failure times within the failure-rate interval (milliseconds).
    recent: VecDeque<i64>,
    /// The exponential strategy's last delay (milliseconds), if it has one.
    backoff: Option<f64>,
}

impl RestartPolicy {
    /// A policy following `spec`.
    pub fn new(spec: RestartSpec) -> RestartPolicy {
        RestartPolicy { spec, restarts: 0, recent: VecDeque::new(), backoff: None }
    }

    /// Restarts granted so far.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// A run that started at `started` failed at `now` (milliseconds); `random` is a draw from [0, 1) for jitter.
    pub fn on_failure(&mut self, started: i64, now: i64, random: f64) -> Decision {
        let decision = match &self.spec {
            RestartSpec::None => Decision::GiveUp("the job has no restart strategy".into()),
            RestartSpec::FixedDelay { attempts, delay } => {
                if self.restarts < *attempts {
                    Decision::Restart(millis(delay.0 as f64))
                } else {
                    Decision::GiveUp(format!(
                        "it failed after {attempts} restart(s), all the fixed-delay strategy allows"
                    ))
                }
            }
            RestartSpec::ExponentialDelay { initial_delay, max_delay, multiplier, reset_after, jitter } => {
                let (initial, max) = (initial_delay.0 as f64, max_delay.0 as f64);
                let ran_long = now.saturating_sub(started) >= reset_after.0;
                let next = match self.backoff {
                    Some(last) if !ran_long => (last * multiplier).min(max),
                    _ => initial,
                };
                self.backoff = Some(next);
                let spread = next * jitter * (2.0 * random.clamp(0.0, 1.0) - 1.0);
                Decision::Restart(millis((next + spread).clamp(0.0, max)))
            }
            RestartSpec::FailureRate { max_failures, interval, delay } => {
                self.recent.push_back(now);
                while self.recent.front().is_some_and(|&t| t <= now.saturating_sub(interval.0)) {
                    self.recent.pop_front();
                }
                if self.recent.len() as u64 > u64::from(*max_failures) {
                    Decision::GiveUp(format!(
                        "it failed {} times within {} ms, more than the failure-rate strategy's {max_failures}",
                        self.recent.len(),
                        interval.0
                    ))
                } else {
                    Decision::Restart(millis(delay.0 as f64))
                }
            }
        };
        if matches!(decision, Decision::Restart(_)) {
            self.restarts += 1;
        }
        decision
    }
}

fn millis(ms: f64) -> Duration {
    Duration::from_millis(ms.max(0.0).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Millis;

    fn delays(policy: &mut RestartPolicy, failures: &[(i64, i64)], random: f64) -> Vec<Decision> {
        failures.iter().map(|&(started, now)| policy.on_failure(started, now, random)).collect()
    }

    #[test]
    fn no_strategy_gives_up_at_once() {
        let mut policy = RestartPolicy::new(RestartSpec::None);
        assert!(matches!(policy.on_failure(0, 10, 0.5), Decision::GiveUp(_)));
        assert_eq!(policy.restarts(), 0);
    }

    #[test]
    fn fixed_delay_restarts_the_given_number_of_times() {
        let mut policy = RestartPolicy::new(RestartSpec::FixedDelay { attempts: 2, delay: Millis(250) });
        let got = delays(&mut policy, &[(0, 10), (20, 30), (40, 50)], 0.5);
        let fixed = Decision::Restart(Duration::from_millis(250));
        assert_eq!(got[..2], [fixed.clone(), fixed]);
        assert!(matches!(&got[2], Decision::GiveUp(why) if why.contains("2 restart")), "{got:?}");
        assert_eq!(policy.restarts(), 2);
    }

    #[test]
    fn exponential_delay_grows_to_its_cap_jitters_and_resets_after_a_long_run() {
        let spec = RestartSpec::ExponentialDelay {
            initial_delay: Millis(100),
            max_delay: Millis(1000),
            multiplier: 2.0,
            reset_after: Millis(60_000),
            jitter: 0.1,
        };
        let mut policy = RestartPolicy::new(spec.clone());
        // Short runs: 100, 200, 400, 800, 1000 (capped), 1000.
        let short: Vec<(i64, i64)> = (0..6).map(|i| (i * 10, i * 10 + 5)).collect();
        let got = delays(&mut policy, &short, 0.5);
        let ms: Vec<u128> = got
            .iter()
            .map(|d| match d {
                Decision::Restart(d) => d.as_millis(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(ms, [100, 200, 400, 800, 1000, 1000]);
        // A run longer than reset_after starts over at the initial delay.
        assert_eq!(policy.on_failure(0, 60_000, 0.5), Decision::Restart(Duration::from_millis(100)));
        // Jitter moves a delay by at most its fraction, both ways.
        let mut low = RestartPolicy::new(spec.clone());
        let mut high = RestartPolicy::new(spec);
        assert_eq!(low.on_failure(0, 1, 0.0), Decision::Restart(Duration::from_millis(90)));
        assert_eq!(high.on_failure(0, 1, 0.999_999), Decision::Restart(Duration::from_millis(110)));
    }

    #[test]
    fn failure_rate_gives_up_when_too_many_failures_fall_within_the_interval() {
        let spec = RestartSpec::FailureRate { max_failures: 2, interval: Millis(1000), delay: Millis(10) };
        let mut policy = RestartPolicy::new(spec);
        let got = delays(&mut policy, &[(0, 100), (0, 500), (0, 1200), (0, 1400)], 0.5);
        // By 1200 the failure at 100 has left the one-second window; at 1400, 500, 1200 and 1400 are within it.
        let fixed = Decision::Restart(Duration::from_millis(10));
        assert_eq!(got[..3], [fixed.clone(), fixed.clone(), fixed]);
        assert!(matches!(&got[3], Decision::GiveUp(why) if why.contains("3 times within 1000 ms")), "{got:?}");
    }
}
