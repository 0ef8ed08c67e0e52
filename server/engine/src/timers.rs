//! Timers of a keyed operator: event-time and processing-time, per key and namespace.
//!
//! One timer exists per `(timestamp, key, namespace)`: registering it again changes nothing. Timers fire in
//! timestamp order, and timers of the same timestamp in key, then namespace byte order. They are part of the
//! operator's state.
//!
//! Timers are bucketed by timestamp (a window's timers share one): registering appends to the bucket, which is
//! sorted, dropping duplicates, when it becomes due.

use crate::bytes;
use crate::checkpoint::TimerEntry;
use crate::keys::KeyGroup;
use smallvec::SmallVec;
use std::cmp::Ordering;
use std::collections::{BTreeMap, VecDeque};

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

    /// Order within one timestamp: key, then namespace, then key group.
    fn firing_order(&self, other: &Timer) -> Ordering {
        self.firing_order_to(&other.as_ref())
    }

    fn firing_order_to(&self, other: &TimerRef<'_>) -> Ordering {
        bytes::cmp(self.key(), other.key)
            .then_with(|| bytes::cmp(self.namespace(), other.ns))
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

/// The clock a timer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeDomain {
    /// Fires when the watermark reaches it.
    EventTime,
    /// Fires when the wall clock reaches it.
    ProcessingTime,
}

/// Timers of one timestamp. Registering appends (a window's timers arrive by the thousand, and an append touches one
/// cache line where a hash set probes a random one); duplicates are dropped when the bucket is sorted: before it
/// fires, before a delete, and whenever the unsorted tail outgrows the sorted part, which keeps a bucket within a few
/// times its distinct timers however often the same timer is registered.
#[derive(Debug, Default, Clone)]
struct Bucket {
    timers: Vec<Timer>,
    /// `timers[..sorted]` is in firing order, without duplicates.
    sorted: usize,
}

/// The unsorted tail is sorted in once it is this many times the sorted part (and at least `MIN_TAIL` long).
const TAIL_FACTOR: usize = 4;
const MIN_TAIL: usize = 256;

impl Bucket {
    fn push(&mut self, timer: TimerRef<'_>) {
        self.timers.push(Timer::new(timer.timestamp, timer.group, timer.key, timer.ns));
        if self.timers.len() - self.sorted > (self.sorted * TAIL_FACTOR).max(MIN_TAIL) {
            self.sort();
        }
    }

    /// Sorts and deduplicates; a stable sort finds the sorted prefix and merges the tail into it instead of starting
    /// over.
    fn sort(&mut self) {
        if self.sorted < self.timers.len() {
            self.timers.sort_by(Timer::firing_order);
            self.timers.dedup_by(|a, b| a.firing_order(b).is_eq());
            self.sorted = self.timers.len();
        }
    }

    fn remove(&mut self, timer: TimerRef<'_>) -> bool {
        self.sort();
        match self.timers.binary_search_by(|t| t.firing_order_to(&timer)) {
            Ok(at) => {
                self.timers.remove(at);
                self.sorted -= 1;
                true
            }
            Err(_) => false,
        }
    }

    fn len(&mut self) -> usize {
        self.sort();
        self.timers.len()
    }
}

/// Timers of one clock.
#[derive(Debug, Default, Clone)]
struct Queue {
    buckets: BTreeMap<i64, Bucket>,
    /// The earliest bucket, sorted, while it is being fired.
    firing: VecDeque<Timer>,
}

impl Queue {
    fn register(&mut self, timer: TimerRef<'_>) {
        if self.firing.front().is_some_and(|t| t.timestamp == timer.timestamp) {
            if let Err(at) = self.firing.binary_search_by(|t| t.firing_order_to(&timer)) {
                self.firing.insert(at, Timer::new(timer.timestamp, timer.group, timer.key, timer.ns));
            }
            return;
        }
        self.buckets.entry(timer.timestamp).or_default().push(timer);
    }

    fn delete(&mut self, timer: TimerRef<'_>) -> bool {
        if self.firing.front().is_some_and(|t| t.timestamp == timer.timestamp) {
            if let Ok(at) = self.firing.binary_search_by(|t| t.firing_order_to(&timer)) {
                self.firing.remove(at);
                return true;
            }
            return false;
        }
        let Some(bucket) = self.buckets.get_mut(&timer.timestamp) else { return false };
        let removed = bucket.remove(timer);
        if bucket.timers.is_empty() {
            self.buckets.remove(&timer.timestamp);
        }
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
        // A timer registered earlier than the bucket being fired goes first: put the bucket back. Its time has no
        // bucket (registrations for it went into `firing`), and `firing` is sorted.
        if let (Some(front), Some((&first, _))) = (self.firing.front(), self.buckets.first_key_value())
            && first < front.timestamp
        {
            let at = front.timestamp;
            let timers: Vec<Timer> = self.firing.drain(..).collect();
            let sorted = timers.len();
            self.buckets.insert(at, Bucket { timers, sorted });
        }
        if self.firing.is_empty() {
            let (&first, _) = self.buckets.first_key_value()?;
            if first > time {
                return None;
            }
            let mut bucket = self.buckets.remove(&first).unwrap_or_default();
            bucket.sort();
            self.firing = bucket.timers.into();
        }
        let due = self.firing.front().is_some_and(|t| t.timestamp <= time);
        if due { self.firing.pop_front() } else { None }
    }

    fn len(&mut self) -> usize {
        self.firing.len() + self.buckets.values_mut().map(Bucket::len).sum::<usize>()
    }

    fn is_empty(&self) -> bool {
        // A bucket is removed when its last timer is: one that exists holds a timer.
        self.firing.is_empty() && self.buckets.is_empty()
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

    /// Registers a timer; registering one that exists changes nothing.
    pub fn register(&mut self, domain: TimeDomain, timestamp: i64, group: KeyGroup, key: &[u8], ns: &[u8]) {
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
    pub fn len(&mut self, domain: TimeDomain) -> usize {
        self.queue(domain).len()
    }

    /// Whether no timer is registered.
    pub fn is_empty(&self) -> bool {
        self.event.is_empty() && self.processing.is_empty()
    }

    /// Hands every registered timer to `out`, by key group (then clock, time and firing order): what a
    /// checkpoint keeps, in the order its chunks index.
    pub fn snapshot_each(&mut self, out: &mut dyn FnMut(crate::checkpoint::chunks::TimerRef<'_>)) {
        let mut timers: Vec<(TimeDomain, &Timer)> = Vec::new();
        for (domain, queue) in
            [(TimeDomain::EventTime, &mut self.event), (TimeDomain::ProcessingTime, &mut self.processing)]
        {
            let buckets = queue.buckets.values_mut().flat_map(|b| {
                b.sort();
                b.timers.iter()
            });
            timers.extend(queue.firing.iter().chain(buckets).map(|t| (domain, t)));
        }
        timers.sort_by(|(a_domain, a), (b_domain, b)| {
            (a.group, *a_domain as u8, a.timestamp)
                .cmp(&(b.group, *b_domain as u8, b.timestamp))
                .then_with(|| a.firing_order(b))
        });
        for (domain, t) in timers {
            out(crate::checkpoint::chunks::TimerRef {
                domain,
                timestamp: t.timestamp,
                group: t.group,
                key: t.key(),
                namespace: t.namespace(),
            });
        }
    }

    /// [`TimerService::snapshot_each`]'s timers, collected (tests).
    pub fn snapshot(&mut self) -> Vec<TimerEntry> {
        let mut entries = Vec::new();
        self.snapshot_each(&mut |t| {
            entries.push(TimerEntry {
                domain: t.domain,
                timestamp: t.timestamp,
                group: t.group,
                key: t.key.to_vec(),
                namespace: t.namespace.to_vec(),
            })
        });
        entries
    }

    /// Registers the timers of a snapshot.
    pub fn restore(&mut self, entries: &[TimerEntry]) {
        for t in entries {
            self.register(t.domain, t.timestamp, t.group, &t.key, &t.namespace);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fires_in_order_once_per_key_and_time() {
        let mut timers = TimerService::default();
        timers.register(TimeDomain::EventTime, 20, 0, b"b", b"");
        timers.register(TimeDomain::EventTime, 10, 0, b"a", b"");
        timers.register(TimeDomain::EventTime, 10, 0, b"a", b"");
        timers.register(TimeDomain::EventTime, 10, 0, b"c", b"");
        timers.register(TimeDomain::ProcessingTime, 5, 0, b"a", b"");
        assert_eq!(timers.len(TimeDomain::EventTime), 3, "a duplicate is ignored");
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
        timers.register(TimeDomain::EventTime, 10, 0, b"bb", b"");
        timers.register(TimeDomain::EventTime, 10, 0, b"bb", b"");
        assert_eq!(timers.len(TimeDomain::EventTime), 2, "one added to the firing time, once");
        let rest: Vec<Vec<u8>> =
            std::iter::from_fn(|| timers.pop_due(TimeDomain::EventTime, 10)).map(|t| t.key().to_vec()).collect();
        assert_eq!(rest, vec![b"bb".to_vec(), b"c".to_vec()]);
    }

    #[test]
    fn registering_one_timer_over_and_over_keeps_one() {
        let mut timers = TimerService::default();
        for _ in 0..100_000 {
            timers.register(TimeDomain::EventTime, 10, 3, b"key", b"window");
        }
        let bucket = &timers.event.buckets[&10];
        assert!(bucket.timers.len() <= MIN_TAIL + 1, "duplicates are dropped as they pile up: {}", bucket.timers.len());
        assert_eq!(timers.len(TimeDomain::EventTime), 1);
        let fired = timers.pop_due(TimeDomain::EventTime, 10).expect("due");
        assert_eq!((fired.group, fired.key(), fired.namespace()), (3, &b"key"[..], &b"window"[..]));
        assert!(timers.is_empty());
    }

    #[test]
    fn a_snapshot_restores_the_same_timers_in_the_same_order() {
        let mut timers = TimerService::default();
        for (ts, key) in [(20, b"b"), (10, b"c"), (10, b"a"), (10, b"a")] {
            timers.register(TimeDomain::EventTime, ts, 1, key, b"w");
        }
        timers.register(TimeDomain::ProcessingTime, 5, 2, b"p", b"");
        // One timer of time 10 is firing: the rest of its bucket must be kept too.
        assert_eq!(timers.pop_due(TimeDomain::EventTime, 10).map(|t| t.key().to_vec()), Some(b"a".to_vec()));
        let snapshot = timers.snapshot();
        assert_eq!(snapshot.len(), 3);
        let mut restored = TimerService::default();
        restored.restore(&snapshot);
        assert_eq!(restored.snapshot(), snapshot);
        let order: Vec<(i64, Vec<u8>)> = std::iter::from_fn(|| restored.pop_due(TimeDomain::EventTime, i64::MAX))
            .map(|t| (t.timestamp, t.key().to_vec()))
            .collect();
        assert_eq!(order, [(10, b"c".to_vec()), (20, b"b".to_vec())]);
        assert_eq!(restored.next_processing_time(), Some(5));
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
            }
            // Counting sorts every bucket: only at the end, so that firing and deleting meet unsorted ones.
            prop_assert_eq!(timers.len(TimeDomain::EventTime), model.len());
            while let Some(t) = timers.pop_due(TimeDomain::EventTime, i64::MAX) {
                fired.push((t.timestamp, t.key()[0]));
            }
            expected.extend(model);
            prop_assert_eq!(fired, expected);
        }
    }
}
