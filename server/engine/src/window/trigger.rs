//! Window triggers with Flink's semantics: event-time, processing-time, count, continuous event-time, and purging
//! wrappers. A trigger's own state (counts, next firing time) lives in the operator's state store under the
//! window's namespace, and its timers in the operator's timer service.

use super::Window;
use crate::spec::TriggerSpec;
use crate::state::{KeyedStateStore, StateError, StateId, StateKey};
use crate::timers::{TimeDomain, TimerService};

/// What a trigger decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerResult {
    /// Nothing happens.
    Continue,
    /// Evaluate the window.
    Fire,
    /// Clear the window's contents.
    Purge,
    /// Evaluate, then clear.
    FireAndPurge,
}

impl TriggerResult {
    /// Whether the window is evaluated.
    pub fn fires(self) -> bool {
        matches!(self, TriggerResult::Fire | TriggerResult::FireAndPurge)
    }

    /// Whether the contents are cleared.
    pub fn purges(self) -> bool {
        matches!(self, TriggerResult::Purge | TriggerResult::FireAndPurge)
    }
}

/// Trigger state ids in the operator's store.
#[derive(Debug, Clone, Copy)]
pub(super) struct TriggerStates {
    pub count: StateId,
    pub next_fire: StateId,
}

/// What a trigger reaches for one key and window.
pub(super) struct TriggerContext<'a> {
    pub store: &'a mut dyn KeyedStateStore,
    pub timers: &'a mut TimerService,
    pub states: TriggerStates,
    pub key: StateKey<'a>,
    pub watermark: i64,
    pub now: i64,
    /// The timer being handled, if any: it has left the timer service already, so deleting it is a no-op.
    pub firing: Option<(TimeDomain, i64)>,
}

impl TriggerContext<'_> {
    fn register(&mut self, domain: TimeDomain, time: i64, window: &Window) {
        self.timers.register(domain, time, self.key.group, self.key.key, &window.namespace());
    }

    fn delete(&mut self, domain: TimeDomain, time: i64, window: &Window) {
        if self.firing != Some((domain, time)) {
            self.timers.delete(domain, time, self.key.group, self.key.key, &window.namespace());
        }
    }

    fn read_i64(&mut self, state: StateId, window: &Window) -> Result<Option<i64>, StateError> {
        let mut buf = Vec::with_capacity(8);
        if !self.store.get_into(state, self.key, &window.namespace(), &mut buf)? {
            return Ok(None);
        }
        Ok(buf.first_chunk::<8>().map(|b| i64::from_le_bytes(*b)))
    }

    fn write_i64(&mut self, state: StateId, window: &Window, value: i64) -> Result<(), StateError> {
        self.store.put(state, self.key, &window.namespace(), &value.to_le_bytes())
    }

    fn clear_state(&mut self, state: StateId, window: &Window) -> Result<(), StateError> {
        self.store.remove(state, self.key, &window.namespace())
    }
}

/// A window trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    spec: TriggerSpec,
}

impl Trigger {
    /// A trigger from its spec.
    pub fn new(spec: TriggerSpec) -> Trigger {
        Trigger { spec }
    }

    /// Whether calling `on_element` again for a window that already has contents can change anything besides a
    /// late firing: count triggers count every element, and a processing-time trigger registers its timer again
    /// (its timer may have fired already while the window lives on until its event-time cleanup). Event-time and
    /// continuous event-time triggers keep their timer registered until the window is late or cleared.
    pub fn needs_every_element(&self) -> bool {
        fn needs(spec: &TriggerSpec) -> bool {
            match spec {
                TriggerSpec::Count(_) | TriggerSpec::ProcessingTime => true,
                TriggerSpec::Purging(inner) => needs(inner),
                TriggerSpec::EventTime | TriggerSpec::ContinuousEventTime(_) => false,
            }
        }
        needs(&self.spec)
    }

    /// Whether any firing purges.
    pub fn purges(&self) -> bool {
        self.spec.purges()
    }

    /// Whether this is the event-time trigger, whose timer at a window's end is registered with every element
    /// that does not fire the window at once.
    pub fn is_event_time(&self) -> bool {
        self.spec == TriggerSpec::EventTime
    }

    pub(super) fn on_element(
        &self,
        timestamp: i64,
        window: &Window,
        cx: &mut TriggerContext<'_>,
    ) -> Result<TriggerResult, StateError> {
        on_element(&self.spec, timestamp, window, cx)
    }

    pub(super) fn on_time(
        &self,
        domain: TimeDomain,
        time: i64,
        window: &Window,
        cx: &mut TriggerContext<'_>,
    ) -> Result<TriggerResult, StateError> {
        on_time(&self.spec, domain, time, window, cx)
    }

    pub(super) fn on_merge(
        &self,
        window: &Window,
        merged: &[Window],
        cx: &mut TriggerContext<'_>,
    ) -> Result<(), StateError> {
        on_merge(&self.spec, window, merged, cx)
    }

    pub(super) fn clear(&self, window: &Window, cx: &mut TriggerContext<'_>) -> Result<(), StateError> {
        clear(&self.spec, window, cx)
    }
}

fn on_element(
    spec: &TriggerSpec,
    timestamp: i64,
    window: &Window,
    cx: &mut TriggerContext<'_>,
) -> Result<TriggerResult, StateError> {
    Ok(match spec {
        TriggerSpec::EventTime => {
            if window.max_timestamp() <= cx.watermark {
                TriggerResult::Fire
            } else {
                cx.register(TimeDomain::EventTime, window.max_timestamp(), window);
                TriggerResult::Continue
            }
        }
        TriggerSpec::ProcessingTime => {
            cx.register(TimeDomain::ProcessingTime, window.max_timestamp(), window);
            TriggerResult::Continue
        }
        TriggerSpec::Count(n) => {
            let count = cx.read_i64(cx.states.count, window)?.unwrap_or(0) + 1;
            if count as u64 >= *n {
                cx.clear_state(cx.states.count, window)?;
                TriggerResult::Fire
            } else {
                cx.write_i64(cx.states.count, window, count)?;
                TriggerResult::Continue
            }
        }
        TriggerSpec::ContinuousEventTime(interval) => {
            if window.max_timestamp() <= cx.watermark {
                return Ok(TriggerResult::Fire);
            }
            cx.register(TimeDomain::EventTime, window.max_timestamp(), window);
            if cx.read_i64(cx.states.next_fire, window)?.is_none() {
                // Flink aligns with Java's `%`, which truncates towards zero (as Rust's does): for a negative
                // timestamp the first firing is at the next multiple of the interval above zero, not below it.
                let start = timestamp - timestamp % interval.0;
                register_next_fire(start.saturating_add(interval.0), window, cx)?;
            }
            TriggerResult::Continue
        }
        TriggerSpec::Purging(inner) => match on_element(inner, timestamp, window, cx)? {
            TriggerResult::Fire => TriggerResult::FireAndPurge,
            other => other,
        },
    })
}

fn register_next_fire(time: i64, window: &Window, cx: &mut TriggerContext<'_>) -> Result<(), StateError> {
    let next = time.min(window.max_timestamp());
    cx.write_i64(cx.states.next_fire, window, next)?;
    cx.register(TimeDomain::EventTime, next, window);
    Ok(())
}

fn on_time(
    spec: &TriggerSpec,
    domain: TimeDomain,
    time: i64,
    window: &Window,
    cx: &mut TriggerContext<'_>,
) -> Result<TriggerResult, StateError> {
    Ok(match (spec, domain) {
        (TriggerSpec::EventTime, TimeDomain::EventTime) if time == window.max_timestamp() => TriggerResult::Fire,
        (TriggerSpec::ProcessingTime, TimeDomain::ProcessingTime) => TriggerResult::Fire,
        (TriggerSpec::ContinuousEventTime(interval), TimeDomain::EventTime) => {
            if time == window.max_timestamp() {
                return Ok(TriggerResult::Fire);
            }
            if cx.read_i64(cx.states.next_fire, window)? == Some(time) {
                cx.clear_state(cx.states.next_fire, window)?;
                register_next_fire(time.saturating_add(interval.0), window, cx)?;
                TriggerResult::Fire
            } else {
                TriggerResult::Continue
            }
        }
        (TriggerSpec::Purging(inner), _) => match on_time(inner, domain, time, window, cx)? {
            TriggerResult::Fire => TriggerResult::FireAndPurge,
            other => other,
        },
        _ => TriggerResult::Continue,
    })
}

fn on_merge(
    spec: &TriggerSpec,
    window: &Window,
    merged: &[Window],
    cx: &mut TriggerContext<'_>,
) -> Result<(), StateError> {
    match spec {
        TriggerSpec::EventTime => {
            if window.max_timestamp() > cx.watermark {
                cx.register(TimeDomain::EventTime, window.max_timestamp(), window);
            }
        }
        TriggerSpec::ProcessingTime => {
            if window.max_timestamp() > cx.now {
                cx.register(TimeDomain::ProcessingTime, window.max_timestamp(), window);
            }
        }
        TriggerSpec::Count(_) => {
            let mut total = 0;
            for m in merged {
                total += cx.read_i64(cx.states.count, m)?.unwrap_or(0);
            }
            if total > 0 {
                cx.write_i64(cx.states.count, window, total)?;
            }
        }
        TriggerSpec::ContinuousEventTime(_) => {
            let mut earliest: Option<i64> = None;
            for m in merged {
                if let Some(t) = cx.read_i64(cx.states.next_fire, m)? {
                    earliest = Some(earliest.map_or(t, |e| e.min(t)));
                }
            }
            if let Some(next) = earliest {
                cx.write_i64(cx.states.next_fire, window, next)?;
                cx.register(TimeDomain::EventTime, next, window);
            }
        }
        TriggerSpec::Purging(inner) => on_merge(inner, window, merged, cx)?,
    }
    Ok(())
}

fn clear(spec: &TriggerSpec, window: &Window, cx: &mut TriggerContext<'_>) -> Result<(), StateError> {
    match spec {
        TriggerSpec::EventTime => cx.delete(TimeDomain::EventTime, window.max_timestamp(), window),
        TriggerSpec::ProcessingTime => cx.delete(TimeDomain::ProcessingTime, window.max_timestamp(), window),
        TriggerSpec::Count(_) => cx.clear_state(cx.states.count, window)?,
        TriggerSpec::ContinuousEventTime(_) => {
            if let Some(next) = cx.read_i64(cx.states.next_fire, window)? {
                cx.delete(TimeDomain::EventTime, next, window);
                cx.clear_state(cx.states.next_fire, window)?;
            }
        }
        TriggerSpec::Purging(inner) => clear(inner, window, cx)?,
    }
    Ok(())
}
