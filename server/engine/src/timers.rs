//! Timers of a keyed operator: event-time and processing-time, per key and namespace.
//!
//! One timer exists per `(timestamp, key, namespace)`: registering it again changes nothing. Timers fire in
//! timestamp order, and timers of the same timestamp in key, then namespace byte order. They are part of the
//! operator's state.
//!
//! Timers are bucketed by timestamp (a window's timers share one): registering and deleting are hash operations,
//! and a bucket is sorted once, when it becomes due.

use crate::bytes;
use crate::keys::KeyGroup;
use hashbrown::{Equivalent, HashSet};
use smallvec::SmallVec;
use std::collections::{BTreeMap, VecDeque};
use std::hash::{Hash, Hasher};

/// Key and namespace bytes held inline up to this length: an 8-byte key and a window need no allocation.
const INLINE_BYTES: usize = 24;

/// A registered timer: its time, key group, and key and namespace end to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    /// When it fires.
    pub timestamp: i64,
    /// The key's group.
    pub group: KeyGroup,
    key_len: u32,
    bytes: SmallVec<[u8; INLINE_BYTES]>,
}

impl Timer {
    fn new(timestamp: i64, group: KeyGroup, key: &[u8], ns: &[u8]) -> Timer {
        let mut bytes = SmallVec::with_capacity(key.len() + ns.len());
        bytes.extend_from_slice(key);
        bytes.extend_from_slice(ns);
        Timer { timestamp, group, key_len: key.len() as u32, bytes }
    }

    /// The key it belongs to.
    pub fn key(&self) -> &[u8] {
        &self.bytes[..self.key_len as usize]
    }

    /// Its namespace (a window), empty for process functions.
    pub fn namespace(&self) -> &[u8] {
        &self.bytes[self.key_len as usize..]
    }

    fn firing_order(&self, other: &Timer) -> std::cmp::Ordering {
        bytes::cmp(self.key(), other.key())
            .then_with(|| bytes::cmp(self.namespace(), other.namespace()))
            .then(self.group.cmp(&other.group))
    }

    fn as_ref(&self) -> TimerRef<'_> {
        TimerRef { timestamp: self.timestamp, group: self.group, key: self.key(), ns: self.namespace() }
    }
}

/// A timer described by borrowed parts: looks one up without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TimerRef<'a> {
    timestamp: i64,
    group: KeyGroup,
    key: &'a [u8],
    ns: &'a [u8],
}

impl Hash for TimerRef<'_> {
    /// Timers are hashed within their timestamp's bucket, so the timestamp is left out; so are the lengths, which
    /// only equality needs.
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u16(self.group);
        state.write(self.key);
        state.write(self.ns);
    }
}

impl Hash for Timer {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_ref().hash(state);
    }
}

impl Equivalent<Timer> for TimerRef<'_> {
    fn equivalent(&self, timer: &Timer) -> bool {
        let other = timer.as_ref();
        self.timestamp == other.timestamp
            && self.group == other.group
            && bytes::eq(self.key, other.key)
            && bytes::eq(self.ns, other.ns)
    }
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

type Bucket = HashSet<Timer, foldhash::fast::RandomState>;

/// Timers of one clock.
#[derive(Debug, Default, Clone)]
struct Queue {
    buckets: BTreeMap<i64, Bucket>,
    /// The earliest bucket, sorted, while it is being fired.
    firing: VecDeque<Timer>,
    len: usize,
}

impl Queue {
    fn register(&mut self, timer: TimerRef<'_>) -> bool {
        if self.firing.front().is_some_and(|t| t.timestamp == timer.timestamp) {
            let new = Timer::new(timer.timestamp, timer.group, timer.key, timer.ns);
            return match self.firing.binary_search_by(|t| t.firing_order(&new)) {
                Ok(_) => false,
                Err(at) => {
                    self.firing.insert(at, new);
                    self.len += 1;
                    true
                }
            };
        }
        let bucket = self.buckets.entry(timer.timestamp).or_default();
        // Registering an existing timer is common (a window's trigger and cleanup timers often coincide): one
        // hashed lookup, and a `Timer` is built only when it is new.
        let before = bucket.len();
        bucket.get_or_insert_with(&timer, |t| Timer::new(t.timestamp, t.group, t.key, t.ns));
        let added = bucket.len() > before;
        self.len += usize::from(added);
        added
    }

    fn delete(&mut self, timer: TimerRef<'_>) -> bool {
        if self.firing.front().is_some_and(|t| t.timestamp == timer.timestamp) {
            let probe = |t: &Timer| (t.key(), t.namespace(), t.group).cmp(&(timer.key, timer.ns, timer.group));
            if let Ok(at) = self.firing.binary_search_by(probe) {
                self.firing.remove(at);
                self.len -= 1;
                return true;
            }
            return false;
        }
        let Some(bucket) = self.buckets.get_mut(&timer.timestamp) else { return false };
        let removed = bucket.remove(&timer);
        if bucket.is_empty() {
            self.buckets.remove(&timer.timestamp);
        }
        self.len -= usize::from(removed);
        removed
    }

    fn next_time(&self) -> Option<i64> {
        match (self.firing.front(), self.buckets.first_key_value()) {
            (Some(t), _) => Some(t.timestamp),
            (None, Some((&time, _))) => Some(time),
            (None, None) => None,
        }
    }

    fn pop_due(&mut self, time: i64) -> Option<Timer> {
        // A timer registered earlier than the bucket being fired goes first: put the bucket back.
        if let (Some(front), Some((&first, _))) = (self.firing.front(), self.buckets.first_key_value())
            && first < front.timestamp
        {
            let bucket = self.buckets.entry(front.timestamp).or_default();
            bucket.extend(self.firing.drain(..));
        }
        if self.firing.is_empty() {
            let (&first, _) = self.buckets.first_key_value()?;
            if first > time {
                return None;
            }
            let mut bucket: Vec<Timer> = self.buckets.remove(&first).unwrap_or_default().into_iter().collect();
            // A bucket holds no duplicates, so an unstable sort gives the same order, without a scratch buffer.
            bucket.sort_unstable_by(Timer::firing_order);
            self.firing = bucket.into();
        }
        let due = self.firing.front().is_some_and(|t| t.timestamp <= time);
        let timer = if due { self.firing.pop_front() } else { None };
        self.len -= usize::from(timer.is_some());
        timer
    }
}

/// Event-time and processing-time timers.
#[derive(Debug, Default, Clone)]
pub struct TimerService {
    event: Queue,
    processing: Queue,
}

impl TimerService {
    fn queue(&mut self, domain: TimeDomain) -> &mut Queue {
        match domain {
            TimeDomain::EventTime => &mut self.event,
            TimeDomain::ProcessingTime => &mut self.processing,
        }
    }

    /// Registers a timer; returns false if it existed already.
    pub fn register(&mut self, domain: TimeDomain, timestamp: i64, group: KeyGroup, key: &[u8], ns: &[u8]) -> bool {
        self.queue(domain).register(TimerRef { timestamp, group, key, ns })
    }

    /// Deletes a timer; returns whether it existed.
    pub fn delete(&mut self, domain: TimeDomain, timestamp: i64, group: KeyGroup, key: &[u8], ns: &[u8]) -> bool {
        self.queue(domain).delete(TimerRef { timestamp, group, key, ns })
    }

    /// Removes and returns the earliest timer of `domain` due at `time` (timestamp <= time).
    pub fn pop_due(&mut self, domain: TimeDomain, time: i64) -> Option<Timer> {
        self.queue(domain).pop_due(time)
    }

    /// The earliest processing-time timer.
    pub fn next_processing_time(&self) -> Option<i64> {
        self.processing.next_time()
    }

    /// Number of registered timers of `domain`.
    pub fn len(&self, domain: TimeDomain) -> usize {
        match domain {
            TimeDomain::EventTime => self.event.len,
            TimeDomain::ProcessingTime => self.processing.len,
        }
    }

    /// Whether no timer is registered.
    pub fn is_empty(&self) -> bool {
        self.event.len == 0 && self.processing.len == 0
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
        assert_eq!(timers.pop_due(TimeDomain::EventTime, 15).map(|t| t.key().to_vec()), Some(b"a".to_vec()));
        assert_eq!(timers.pop_due(TimeDomain::EventTime, 15), None);
        assert_eq!(timers.next_processing_time(), Some(5));
        assert_eq!(timers.pop_due(TimeDomain::EventTime, i64::MAX).map(|t| t.timestamp), Some(20));
        assert!(timers.pop_due(TimeDomain::ProcessingTime, 5).is_some());
        assert!(timers.is_empty());
    }

    #[test]
    fn timers_registered_or_deleted_while_a_time_fires_are_honoured() {
        let mut timers = TimerService::default();
        for key in [b"a", b"b", b"c"] {
            timers.register(TimeDomain::EventTime, 10, 0, key, b"");
        }
        assert_eq!(timers.pop_due(TimeDomain::EventTime, 10).map(|t| t.key().to_vec()), Some(b"a".to_vec()));
        assert!(timers.delete(TimeDomain::EventTime, 10, 0, b"b", b""), "deleting a timer of the firing time");
        assert!(timers.register(TimeDomain::EventTime, 10, 0, b"bb", b""), "adding one to the firing time");
        let rest: Vec<Vec<u8>> =
            std::iter::from_fn(|| timers.pop_due(TimeDomain::EventTime, 10)).map(|t| t.key().to_vec()).collect();
        assert_eq!(rest, vec![b"bb".to_vec(), b"c".to_vec()]);
    }

    proptest! {
        #[test]
        fn pops_in_order_and_only_live_timers(
            ops in proptest::collection::vec((0u8..3, 0i64..50, 0u8..4), 1..200)
        ) {
            let mut timers = TimerService::default();
            let mut model = std::collections::BTreeSet::new();
            let mut fired = Vec::new();
            let mut expected = Vec::new();
            for (op, ts, key) in ops {
                match op {
                    0 => {
                        timers.register(TimeDomain::EventTime, ts, 0, &[key], b"");
                        model.insert((ts, key));
                    }
                    1 => {
                        timers.delete(TimeDomain::EventTime, ts, 0, &[key], b"");
                        model.remove(&(ts, key));
                    }
                    _ => {
                        // Fire one timer due at `ts`, if any.
                        if let Some(t) = timers.pop_due(TimeDomain::EventTime, ts) {
                            fired.push((t.timestamp, t.key()[0]));
                        }
                        if let Some(&first) = model.iter().next().filter(|(t, _)| *t <= ts) {
                            model.remove(&first);
                            expected.push(first);
                        }
                    }
                }
                prop_assert_eq!(timers.len(TimeDomain::EventTime), model.len());
            }
            while let Some(t) = timers.pop_due(TimeDomain::EventTime, i64::MAX) {
                fired.push((t.timestamp, t.key()[0]));
            }
            expected.extend(model);
            prop_assert_eq!(fired, expected);
        }
    }
}
