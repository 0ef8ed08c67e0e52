//! Barrier alignment: when has every input of a task delivered a checkpoint's barrier?

use super::CheckpointId;
use crate::control::Barrier;
use std::collections::BTreeMap;

/// What an input event did to the checkpoints being aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aligned {
    /// Still waiting for other inputs (or the barrier was stale and ignored).
    Waiting,
    /// Every input delivered this barrier: snapshot now.
    Complete(Barrier),
}

/// Tracks, per checkpoint in progress, which input channels delivered its barrier. Pure: the task loop feeds it
/// barriers, ends and aborts, and asks which channels to hold back.
///
/// Exactly-once (`blocking`) aligns one checkpoint at a time and holds back the channels that delivered its
/// barrier; a newer barrier overtakes it. At-least-once holds nothing back and follows several checkpoints at once,
/// as Flink's barrier tracker does: each completes when its barrier came on every channel, and one completing gives
/// up the older ones still open (the coordinator does the same).
#[derive(Debug, Clone)]
pub struct BarrierAligner {
    blocking: bool,
    ended: Vec<bool>,
    /// Per checkpoint in progress, its barrier and which channels delivered it.
    pending: BTreeMap<CheckpointId, (Barrier, Vec<bool>)>,
    /// The newest checkpoint completed or given up here: its late barriers are ignored.
    done: CheckpointId,
}

impl BarrierAligner {
    /// An aligner over `channels` inputs.
    pub fn new(channels: usize, blocking: bool) -> BarrierAligner {
        BarrierAligner { blocking, ended: vec![false; channels], pending: BTreeMap::new(), done: 0 }
    }

    /// Whether `channel` must not be read now: it delivered the barrier of a checkpoint still being aligned.
    pub fn is_blocked(&self, channel: usize) -> bool {
        self.blocking && self.pending.values().any(|(_, seen)| seen.get(channel).copied().unwrap_or(false))
    }

    /// The newest checkpoint being aligned.
    pub fn pending(&self) -> Option<CheckpointId> {
        self.pending.keys().next_back().copied()
    }

    /// `barrier` arrived on `channel`. Also returns the checkpoint it overtook, if any (exactly-once): a newer
    /// barrier means the coordinator gave the older one up, which can no longer complete here.
    pub fn on_barrier(&mut self, channel: usize, barrier: Barrier) -> (Aligned, Option<CheckpointId>) {
        let id = barrier.id;
        if id <= self.done {
            return (Aligned::Waiting, None);
        }
        let mut superseded = None;
        if self.blocking {
            match self.pending.keys().next_back().copied() {
                Some(current) if current > id => return (Aligned::Waiting, None),
                Some(current) if current < id => {
                    superseded = Some(current);
                    self.pending.clear();
                }
                _ => {}
            }
        }
        let count = self.ended.len();
        let (_, seen) = self.pending.entry(id).or_insert_with(|| (barrier, vec![false; count]));
        if let Some(flag) = seen.get_mut(channel) {
            *flag = true;
        }
        (self.check(), superseded)
    }

    /// `channel` ended: it counts as having delivered every later barrier.
    pub fn on_end(&mut self, channel: usize) -> Aligned {
        if let Some(flag) = self.ended.get_mut(channel) {
            *flag = true;
        }
        self.check()
    }

    /// The coordinator gave checkpoint `id` up: stop aligning it (and older ones) and read every channel again.
    pub fn abort(&mut self, id: CheckpointId) {
        self.pending.retain(|current, _| *current > id);
        self.done = self.done.max(id);
    }

    /// The newest checkpoint every channel delivered (or ended), if any; it and the older ones stop being aligned.
    fn check(&mut self) -> Aligned {
        let complete = self
            .pending
            .iter()
            .rev()
            .find(|(_, (_, seen))| seen.iter().zip(&self.ended).all(|(seen, ended)| *seen || *ended))
            .map(|(id, (barrier, _))| (*id, *barrier));
        let Some((id, barrier)) = complete else { return Aligned::Waiting };
        self.pending.retain(|current, _| *current > id);
        self.done = id;
        Aligned::Complete(barrier)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn b(id: CheckpointId) -> Barrier {
        Barrier::checkpoint(id)
    }

    fn done(id: CheckpointId) -> Aligned {
        Aligned::Complete(b(id))
    }

    #[test]
    fn completes_when_every_open_channel_delivered_and_blocks_those_that_did() {
        let mut aligner = BarrierAligner::new(3, true);
        assert_eq!(aligner.on_barrier(0, b(1)), (Aligned::Waiting, None));
        assert!(aligner.is_blocked(0) && !aligner.is_blocked(1));
        assert_eq!(aligner.on_end(2), Aligned::Waiting, "an ended channel counts, but channel 1 is missing");
        assert_eq!(aligner.on_barrier(1, b(1)), (done(1), None));
        assert!(!aligner.is_blocked(0) && !aligner.is_blocked(1), "everything is read again");
        assert_eq!(aligner.on_barrier(0, b(1)), (Aligned::Waiting, None), "a repeated barrier is stale");
    }

    #[test]
    fn a_newer_barrier_supersedes_and_aborts_release_channels() {
        let mut aligner = BarrierAligner::new(2, true);
        aligner.on_barrier(0, b(1));
        assert_eq!(aligner.on_barrier(0, b(2)), (Aligned::Waiting, Some(1)));
        assert_eq!(aligner.pending(), Some(2));
        aligner.abort(2);
        assert!(!aligner.is_blocked(0));
        assert_eq!(aligner.on_barrier(1, b(2)), (Aligned::Waiting, None), "an aborted checkpoint's barrier is ignored");
        assert_eq!(aligner.on_barrier(1, b(3)).0, Aligned::Waiting);
        assert_eq!(aligner.on_barrier(0, b(3)).0, done(3));
    }

    #[test]
    fn at_least_once_blocks_nothing_and_follows_checkpoints_that_overlap() {
        let mut aligner = BarrierAligner::new(2, false);
        aligner.on_barrier(0, b(1));
        assert!(!aligner.is_blocked(0));
        assert_eq!(aligner.on_barrier(0, b(2)), (Aligned::Waiting, None), "checkpoint 1 is still followed");
        assert_eq!(aligner.on_barrier(1, b(1)).0, done(1), "checkpoint 1 completes, not timed out");
        assert_eq!(aligner.on_barrier(1, b(2)).0, done(2));
        aligner.on_barrier(0, b(3));
        aligner.on_barrier(0, b(4));
        assert_eq!(aligner.on_barrier(1, b(4)).0, done(4), "4 completes first");
        assert_eq!(aligner.on_barrier(1, b(3)).0, Aligned::Waiting, "3 was given up with it");
    }

    #[test]
    fn a_completed_barrier_keeps_its_savepoint_flag() {
        let mut aligner = BarrierAligner::new(2, true);
        let savepoint = Barrier { id: 5, savepoint: true };
        aligner.on_barrier(0, savepoint);
        assert_eq!(aligner.on_end(1), Aligned::Complete(savepoint));
    }

    proptest! {
        /// Whatever the interleaving of barriers and ends, checkpoint 1 completes exactly when the last channel
        /// delivers its barrier or ends, once a barrier has arrived; and a channel that delivered the barrier is
        /// held back until then.
        #[test]
        fn completes_exactly_once_at_the_last_delivery(
            events in proptest::collection::vec((0usize..4, any::<bool>()), 0..20)
        ) {
            let channels = 4;
            let mut aligner = BarrierAligner::new(channels, true);
            // Per channel: none yet, Some(true) ended, Some(false) delivered the barrier.
            let mut delivered: Vec<Option<bool>> = vec![None; channels];
            let mut barrier_seen = false;
            let mut completed = false;
            for (channel, end) in events {
                if let Some(ended) = delivered[channel] {
                    prop_assert_eq!(aligner.is_blocked(channel), !ended && !completed);
                    continue;
                }
                delivered[channel] = Some(end);
                barrier_seen |= !end;
                let result = if end { aligner.on_end(channel) } else { aligner.on_barrier(channel, b(1)).0 };
                let expect_now = barrier_seen && !completed && delivered.iter().all(Option::is_some);
                prop_assert_eq!(result, if expect_now { done(1) } else { Aligned::Waiting });
                completed |= expect_now;
            }
        }
    }
}
