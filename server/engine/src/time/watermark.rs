//! Watermarks: generated per source split, combined as the minimum over active inputs.
//!
//! Laws (checked by property tests below): an emitted watermark never decreases; an idle input does not hold the
//! combined watermark back; an input that becomes active again counts only once it has caught up with the combined
//! watermark (Flink's `StatusWatermarkValve`), so the combined watermark stays monotonic.

use crate::spec::WatermarkStrategy;

/// A change of an output's idleness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusChange {
    /// Every input is idle: downstream should ignore this output.
    BecameIdle,
    /// An input is active again.
    BecameActive,
}

#[derive(Debug, Clone)]
struct Split {
    max_timestamp: i64,
    last_record: i64,
    idle: bool,
}

/// Watermarks of one source subtask over its splits.
#[derive(Debug, Clone)]
pub struct SourceWatermarks {
    strategy: WatermarkStrategy,
    idleness: Option<i64>,
    splits: Vec<Split>,
    emitted: i64,
    idle: bool,
}

impl SourceWatermarks {
    /// Tracks `splits` splits, starting at processing time `now`.
    pub fn new(strategy: WatermarkStrategy, idleness: Option<i64>, splits: usize, now: i64) -> SourceWatermarks {
        let split = Split { max_timestamp: i64::MIN, last_record: now, idle: false };
        SourceWatermarks { strategy, idleness, splits: vec![split; splits.max(1)], emitted: i64::MIN, idle: false }
    }

    /// Notes that `split` produced records up to `max_timestamp` at processing time `now`.
    pub fn on_records(&mut self, split: usize, max_timestamp: i64, now: i64) {
        if let Some(s) = self.splits.get_mut(split) {
            s.max_timestamp = s.max_timestamp.max(max_timestamp);
            s.last_record = now;
            s.idle = false;
        }
    }

    fn split_watermark(&self, split: &Split) -> i64 {
        if split.max_timestamp == i64::MIN {
            return i64::MIN;
        }
        match self.strategy {
            WatermarkStrategy::None => i64::MIN,
            WatermarkStrategy::BoundedOutOfOrderness(bound) => {
                split.max_timestamp.saturating_sub(bound.0).saturating_sub(1)
            }
            WatermarkStrategy::Monotonous => split.max_timestamp.saturating_sub(1),
        }
    }

    /// Applies idleness at `now`; returns a new watermark to emit and a change of idleness, if any.
    pub fn poll(&mut self, now: i64) -> (Option<i64>, Option<StatusChange>) {
        if let Some(timeout) = self.idleness {
            for split in &mut self.splits {
                if !split.idle && now.saturating_sub(split.last_record) >= timeout {
                    split.idle = true;
                }
            }
        }
        let active: Vec<i64> = self.splits.iter().filter(|s| !s.idle).map(|s| self.split_watermark(s)).collect();
        let mut change = None;
        let all_idle = active.is_empty();
        if all_idle != self.idle {
            self.idle = all_idle;
            change = Some(if all_idle { StatusChange::BecameIdle } else { StatusChange::BecameActive });
        }
        let watermark = active.into_iter().min().filter(|&w| w > self.emitted);
        if let Some(w) = watermark {
            self.emitted = w;
        }
        (watermark, change)
    }

    /// The last emitted watermark.
    pub fn current(&self) -> i64 {
        self.emitted
    }

    /// Per split, the largest event time seen: with [`SourceWatermarks::current`], what a checkpoint keeps.
    pub fn max_timestamps(&self) -> Vec<i64> {
        self.splits.iter().map(|s| s.max_timestamp).collect()
    }

    /// Goes back to a checkpoint's largest event times per split and emitted watermark.
    pub fn restore(&mut self, max_timestamps: &[i64], emitted: i64) {
        for (split, &max) in self.splits.iter_mut().zip(max_timestamps) {
            split.max_timestamp = max;
        }
        self.emitted = emitted;
    }

    /// The processing time at which an active split would become idle, if idleness is on: a source task that
    /// waits for records wakes then to say so.
    pub fn next_idle_at(&self) -> Option<i64> {
        let timeout = self.idleness?;
        self.splits.iter().filter(|s| !s.idle).map(|s| s.last_record.saturating_add(timeout)).min()
    }
}

#[derive(Debug, Clone)]
struct Channel {
    watermark: i64,
    idle: bool,
    aligned: bool,
    ended: bool,
}

/// The combined watermark of a task's input channels.
#[derive(Debug, Clone)]
pub struct InputWatermarks {
    channels: Vec<Channel>,
    current: i64,
    idle: bool,
}

impl InputWatermarks {
    /// Tracks `channels` input channels.
    pub fn new(channels: usize) -> InputWatermarks {
        let channel = Channel { watermark: i64::MIN, idle: false, aligned: true, ended: false };
        InputWatermarks { channels: vec![channel; channels], current: i64::MIN, idle: false }
    }

    /// The combined watermark.
    pub fn current(&self) -> i64 {
        self.current
    }

    /// Each channel's watermark and the combined one: what a checkpoint keeps.
    pub fn snapshot(&self) -> (Vec<i64>, i64) {
        (self.channels.iter().map(|c| c.watermark).collect(), self.current)
    }

    /// Goes back to a checkpoint's channel watermarks and combined watermark. Idleness is not kept: an idle input
    /// says so again.
    pub fn restore(&mut self, channels: &[i64], current: i64) {
        for (ch, &w) in self.channels.iter_mut().zip(channels) {
            ch.watermark = w;
            ch.aligned = w >= current;
        }
        self.current = current;
    }

    /// Whether every open input is idle.
    pub fn is_idle(&self) -> bool {
        self.idle
    }

    /// A watermark arrived on `channel`; returns the new combined watermark if it advanced.
    pub fn on_watermark(&mut self, channel: usize, watermark: i64) -> Option<i64> {
        let ch = self.channels.get_mut(channel)?;
        if watermark > ch.watermark {
            ch.watermark = watermark;
        }
        if ch.watermark >= self.current {
            ch.aligned = true;
        }
        self.recompute()
    }

    /// `channel` became idle or active; returns a new watermark and a change of this task's idleness.
    pub fn on_status(&mut self, channel: usize, idle: bool) -> (Option<i64>, Option<StatusChange>) {
        let mut was_minimum = false;
        if let Some(ch) = self.channels.get_mut(channel) {
            was_minimum = idle && !ch.idle && ch.watermark == self.current;
            ch.idle = idle;
            if !idle {
                ch.aligned = ch.watermark >= self.current;
            }
        }
        let mut watermark = self.recompute();
        if was_minimum && watermark.is_none() {
            watermark = self.flush_when_all_idle();
        }
        (watermark, self.status_change())
    }

    /// When the channel that held the watermark back goes idle last, no channel will move the watermark any more:
    /// like Flink's `StatusWatermarkValve`, emit the largest watermark any open channel reached.
    fn flush_when_all_idle(&mut self) -> Option<i64> {
        let open: Vec<&Channel> = self.channels.iter().filter(|c| !c.ended).collect();
        if open.is_empty() || open.iter().any(|c| !c.idle) {
            return None;
        }
        let max = open.iter().map(|c| c.watermark).max().filter(|&w| w > self.current)?;
        self.current = max;
        for ch in &mut self.channels {
            if ch.watermark >= max {
                ch.aligned = true;
            }
        }
        Some(max)
    }

    /// `channel` ended (after its final watermark); returns a new combined watermark if it advanced.
    pub fn on_end(&mut self, channel: usize) -> Option<i64> {
        if let Some(ch) = self.channels.get_mut(channel) {
            ch.ended = true;
        }
        self.recompute()
    }

    /// Whether every channel ended.
    pub fn all_ended(&self) -> bool {
        self.channels.iter().all(|c| c.ended)
    }

    fn status_change(&mut self) -> Option<StatusChange> {
        let open: Vec<&Channel> = self.channels.iter().filter(|c| !c.ended).collect();
        let idle = !open.is_empty() && open.iter().all(|c| c.idle);
        if idle == self.idle {
            return None;
        }
        self.idle = idle;
        Some(if idle { StatusChange::BecameIdle } else { StatusChange::BecameActive })
    }

    fn recompute(&mut self) -> Option<i64> {
        let min = self.channels.iter().filter(|c| !c.ended && !c.idle && c.aligned).map(|c| c.watermark).min();
        let combined = match min {
            Some(w) => w,
            // Every channel ended: all of them sent their final watermark.
            None if self.channels.iter().all(|c| c.ended) => {
                self.channels.iter().map(|c| c.watermark).max().unwrap_or(i64::MIN)
            }
            None => return None,
        };
        if combined > self.current {
            self.current = combined;
            for ch in &mut self.channels {
                if ch.watermark >= combined {
                    ch.aligned = true;
                }
            }
            Some(combined)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Millis;
    use proptest::prelude::*;

    #[test]
    fn bounded_out_of_orderness_lags_by_the_bound() {
        let mut wm = SourceWatermarks::new(WatermarkStrategy::BoundedOutOfOrderness(Millis(5)), None, 1, 0);
        assert_eq!(wm.poll(0), (None, None), "no records, no watermark");
        wm.on_records(0, 100, 0);
        assert_eq!(wm.poll(0).0, Some(94), "100 - 5 - 1");
        wm.on_records(0, 90, 0);
        assert_eq!(wm.poll(0).0, None, "an older record does not move it back");
        let mut mono = SourceWatermarks::new(WatermarkStrategy::Monotonous, None, 1, 0);
        mono.on_records(0, 100, 0);
        assert_eq!(mono.poll(0).0, Some(99));
        let mut none = SourceWatermarks::new(WatermarkStrategy::None, None, 1, 0);
        none.on_records(0, 100, 0);
        assert_eq!(none.poll(0).0, None);
    }

    #[test]
    fn an_idle_split_stops_holding_back_and_rejoins() {
        let mut wm = SourceWatermarks::new(WatermarkStrategy::Monotonous, Some(1_000), 2, 0);
        wm.on_records(0, 100, 0);
        wm.on_records(1, 10, 0);
        assert_eq!(wm.poll(0).0, Some(9), "the slow split holds the watermark back");
        wm.on_records(0, 200, 1_500);
        assert_eq!(wm.poll(1_500), (Some(199), None), "split 1 is idle after 1s without records");
        wm.on_records(1, 50, 1_600);
        assert_eq!(wm.poll(1_600).0, None, "split 1 rejoins but the watermark never goes back");
        wm.on_records(1, 300, 1_700);
        wm.on_records(0, 400, 1_700);
        assert_eq!(wm.poll(1_700).0, Some(299));
        assert_eq!(wm.poll(5_000), (None, Some(StatusChange::BecameIdle)), "all splits idle");
        wm.on_records(0, 500, 5_001);
        assert_eq!(wm.poll(5_001).1, Some(StatusChange::BecameActive));
    }

    #[test]
    fn combines_the_minimum_of_active_channels() {
        let mut input = InputWatermarks::new(2);
        assert_eq!(input.on_watermark(0, 10), None, "channel 1 has no watermark yet");
        assert_eq!(input.on_watermark(1, 5), Some(5));
        assert_eq!(input.on_watermark(1, 20), Some(10));
        let (wm, change) = input.on_status(0, true);
        assert_eq!((wm, change), (Some(20), None), "an idle channel stops holding back");
        assert_eq!(input.on_status(1, true).1, Some(StatusChange::BecameIdle));
        let (wm, change) = input.on_status(0, false);
        assert_eq!((wm, change), (None, Some(StatusChange::BecameActive)), "behind: not aligned yet");
        assert_eq!(input.on_watermark(0, 15), None, "still behind the combined 20");
        assert_eq!(input.on_watermark(0, 25), Some(25), "caught up: counts again");
        assert_eq!(input.on_end(0), None);
        assert_eq!(input.on_watermark(1, i64::MAX), None, "channel 1 is idle");
    }

    #[test]
    fn when_every_channel_went_idle_the_largest_watermark_is_flushed() {
        let mut input = InputWatermarks::new(2);
        assert_eq!(input.on_watermark(0, 1_499), None, "channel 1 has no watermark yet");
        assert_eq!(input.on_status(0, true), (None, None), "channel 1 still holds the watermark back");
        let (wm, change) = input.on_status(1, true);
        assert_eq!((wm, change), (Some(1_499), Some(StatusChange::BecameIdle)), "nothing holds it back any more");
        let (wm, change) = input.on_status(1, false);
        assert_eq!((wm, change), (None, Some(StatusChange::BecameActive)), "channel 1 must catch up first");
        assert_eq!(input.on_watermark(1, 2_000), Some(2_000));
    }

    proptest! {
        #[test]
        fn the_combined_watermark_never_decreases_nor_passes_every_channel(
            events in proptest::collection::vec((0usize..3, 0u8..3, -50i64..50), 1..200)
        ) {
            let mut input = InputWatermarks::new(3);
            let mut last = i64::MIN;
            let mut highest = i64::MIN;
            for (channel, kind, value) in events {
                let emitted = match kind {
                    0 => {
                        highest = highest.max(value);
                        input.on_watermark(channel, value)
                    }
                    1 => input.on_status(channel, true).0,
                    _ => input.on_status(channel, false).0,
                };
                if let Some(w) = emitted {
                    prop_assert!(w > last, "strictly increasing when emitted");
                    last = w;
                }
                prop_assert_eq!(input.current(), last);
                prop_assert!(last <= highest, "never ahead of what any channel reported");
            }
        }

        #[test]
        fn with_no_idleness_the_combined_watermark_is_the_minimum(
            events in proptest::collection::vec((0usize..3, -50i64..50), 1..100)
        ) {
            let mut input = InputWatermarks::new(3);
            let mut marks = [i64::MIN; 3];
            for (channel, value) in events {
                marks[channel] = marks[channel].max(value);
                input.on_watermark(channel, value);
                prop_assert_eq!(input.current(), *marks.iter().min().unwrap_or(&i64::MIN));
            }
        }
    }
}
