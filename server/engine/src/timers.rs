//! Timers of a keyed operator: event-time and processing-time, per key and namespace.
//!
//! One timer exists per `(timestamp, key, namespace)`: registering it again changes nothing. Timers fire in
//! timestamp order (ties in key, then namespace byte order). They are part of the operator's state.

use crate::keys::KeyGroup;
use std::collections::BTreeSet;

/// A registered timer. Field order is firing order: time, then key bytes, then namespace (the key group
/// follows from the key).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timer {
    /// When it fires.
    pub timestamp: i64,
    /// The key it belongs to.
    pub key: Box<[u8]>,
    /// A namespace (a window), empty for process functions.
    pub namespace: Box<[u8]>,
    /// The key's group.
    pub group: KeyGroup,
}

/// The clock a timer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeDomain {
    /// Fires when the watermark reaches it.
    EventTime,
    /// Fires when the wall clock reaches it.
    ProcessingTime,
}

/// Event-time and processing-time timers.
#[derive(Debug, Default, Clone)]
pub struct TimerService {
    event: BTreeSet<Timer>,
    processing: BTreeSet<Timer>,
}

impl TimerService {
    fn set(&mut self, domain: TimeDomain) -> &mut BTreeSet<Timer> {
        match domain {
            TimeDomain::EventTime => &mut self.event,
            TimeDomain::ProcessingTime => &mut self.processing,
        }
    }

    /// Registers a timer; returns false if it existed already.
    pub fn register(&mut self, domain: TimeDomain, timestamp: i64, group: KeyGroup, key: &[u8], ns: &[u8]) -> bool {
        self.set(domain).insert(Timer { timestamp, group, key: key.into(), namespace: ns.into() })
    }

    /// Deletes a timer; returns whether it existed.
    pub fn delete(&mut self, domain: TimeDomain, timestamp: i64, group: KeyGroup, key: &[u8], ns: &[u8]) -> bool {
        self.set(domain).remove(&Timer { timestamp, group, key: key.into(), namespace: ns.into() })
    }

    /// Removes and returns the earliest timer of `domain` due at `time` (timestamp <= time).
    pub fn pop_due(&mut self, domain: TimeDomain, time: i64) -> Option<Timer> {
        let set = self.set(domain);
        if set.first().is_some_and(|t| t.timestamp <= time) { set.pop_first() } else { None }
    }

    /// The earliest processing-time timer.
    pub fn next_processing_time(&self) -> Option<i64> {
        self.processing.first().map(|t| t.timestamp)
    }

    /// Number of registered timers of `domain`.
    pub fn len(&self, domain: TimeDomain) -> usize {
        match domain {
            TimeDomain::EventTime => self.event.len(),
            TimeDomain::ProcessingTime => self.processing.len(),
        }
    }

    /// Whether no timer is registered.
    pub fn is_empty(&self) -> bool {
        self.event.is_empty() && self.processing.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fires_in_order_once_per_key_and_time() {
        let mut timers = TimerService::default();
        assert!(timers.register(TimeDomain::EventTime, 20, 0, b"b", b""));
        assert!(timers.register(TimeDomain::EventTime, 10, 0, b"a", b""));
        assert!(!timers.register(TimeDomain::EventTime, 10, 0, b"a", b""), "a duplicate is ignored");
        assert!(timers.register(TimeDomain::EventTime, 10, 0, b"c", b""));
        assert!(timers.register(TimeDomain::ProcessingTime, 5, 0, b"a", b""));
        assert_eq!(timers.len(TimeDomain::EventTime), 3);
        assert!(timers.delete(TimeDomain::EventTime, 10, 0, b"c", b""));
        assert!(!timers.delete(TimeDomain::EventTime, 10, 0, b"c", b""));
        assert_eq!(timers.pop_due(TimeDomain::EventTime, 9), None);
        assert_eq!(timers.pop_due(TimeDomain::EventTime, 15).map(|t| t.key), Some(b"a"[..].into()));
        assert_eq!(timers.pop_due(TimeDomain::EventTime, 15), None);
        assert_eq!(timers.next_processing_time(), Some(5));
        assert_eq!(timers.pop_due(TimeDomain::EventTime, i64::MAX).map(|t| t.timestamp), Some(20));
    }

    proptest! {
        #[test]
        fn pops_in_nondecreasing_time_and_only_live_timers(
            ops in proptest::collection::vec((any::<bool>(), 0i64..50, 0u8..4), 1..200)
        ) {
            let mut timers = TimerService::default();
            let mut model = std::collections::BTreeSet::new();
            for (add, ts, key) in ops {
                if add {
                    timers.register(TimeDomain::EventTime, ts, 0, &[key], b"");
                    model.insert((ts, key));
                } else {
                    timers.delete(TimeDomain::EventTime, ts, 0, &[key], b"");
                    model.remove(&(ts, key));
                }
            }
            let mut fired = Vec::new();
            while let Some(t) = timers.pop_due(TimeDomain::EventTime, i64::MAX) {
                fired.push((t.timestamp, t.key[0]));
            }
            prop_assert_eq!(fired, model.into_iter().collect::<Vec<_>>());
        }
    }
}
