//! Barrier alignment: when has every input of a task delivered a checkpoint's barrier?

use super::CheckpointId;

/// What an input event did to the checkpoint being aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aligned {
    /// Still waiting for other inputs (or the barrier was stale and ignored).
    Waiting,
    /// Every input delivered the barrier of this checkpoint: snapshot now.
    Complete(CheckpointId),
}

/// Tracks, for the checkpoint in progress, which input channels delivered its barrier. Pure: the task loop feeds it
/// barriers, ends and aborts, and asks which channels to hold back.
#[derive(Debug, Clone)]
pub struct BarrierAligner {
    /// Hold back channels that delivered the barrier (exactly-once) or not (at-least-once).
    blocking: bool,
    ended: Vec<bool>,
    pending: Option<(CheckpointId, Vec<bool>)>,
    /// The newest checkpoint completed or given up here: its late barriers are ignored.
    done: CheckpointId,
}

impl BarrierAligner {
    /// An aligner over `channels` inputs.
    pub fn new(channels: usize, blocking: bool) -> BarrierAligner {
        BarrierAligner { blocking, ended: vec![false; channels], pending: None, done: 0 }
    }

    /// Whether `channel` must not be read now: it delivered the barrier of a checkpoint still being aligned.
    pub fn is_blocked(&self, channel: usize) -> bool {
        self.blocking && self.pending.as_ref().is_some_and(|(_, seen)| seen.get(channel).copied().unwrap_or(false))
    }

    /// The checkpoint being aligned.
    pub fn pending(&self) -> Option<CheckpointId> {
        self.pending.as_ref().map(|(id, _)| *id)
    }

    /// A barrier of checkpoint `id` arrived on `channel`. Also returns the checkpoint it overtook, if any: a
    /// newer barrier means the coordinator gave the older one up, which can no longer complete here.
    pub fn on_barrier(&mut self, channel: usize, id: CheckpointId) -> (Aligned, Option<CheckpointId>) {
        if id <= self.done {
            return (Aligned::Waiting, None);
        }
        let mut superseded = None;
        match &mut self.pending {
            Some((current, _)) if *current > id => return (Aligned::Waiting, None),
            Some((current, _)) if *current < id => {
                superseded = Some(*current);
                self.pending = None;
            }
            _ => {}
        }
        let count = self.ended.len();
        let (_, seen) = self.pending.get_or_insert_with(|| (id, vec![false; count]));
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

    /// The coordinator gave checkpoint `id` up: stop aligning it and read every channel again.
    pub fn abort(&mut self, id: CheckpointId) {
        if self.pending.as_ref().is_some_and(|(current, _)| *current <= id) {
            self.pending = None;
        }
        self.done = self.done.max(id);
    }

    fn check(&mut self) -> Aligned {
        let Some((id, seen)) = &self.pending else { return Aligned::Waiting };
        if seen.iter().zip(&self.ended).all(|(seen, ended)| *seen || *ended) {
            let id = *id;
            self.pending = None;
            self.done = id;
            return Aligned::Complete(id);
        }
        Aligned::Waiting
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn completes_when_every_open_channel_delivered_and_blocks_those_that_did() {
        let mut aligner = BarrierAligner::new(3, true);
        assert_eq!(aligner.on_barrier(0, 1), (Aligned::Waiting, None));
        assert!(aligner.is_blocked(0) && !aligner.is_blocked(1));
        assert_eq!(aligner.on_end(2), Aligned::Waiting, "an ended channel counts, but channel 1 is missing");
        assert_eq!(aligner.on_barrier(1, 1), (Aligned::Complete(1), None));
        assert!(!aligner.is_blocked(0) && !aligner.is_blocked(1), "everything is read again");
        assert_eq!(aligner.on_barrier(0, 1), (Aligned::Waiting, None), "a repeated barrier is stale");
    }

    #[test]
    fn a_newer_barrier_supersedes_and_aborts_release_channels() {
        let mut aligner = BarrierAligner::new(2, true);
        aligner.on_barrier(0, 1);
        assert_eq!(aligner.on_barrier(0, 2), (Aligned::Waiting, Some(1)));
        assert_eq!(aligner.pending(), Some(2));
        aligner.abort(2);
        assert!(!aligner.is_blocked(0));
        assert_eq!(aligner.on_barrier(1, 2), (Aligned::Waiting, None), "an aborted checkpoint's barrier is ignored");
        assert_eq!(aligner.on_barrier(1, 3).0, Aligned::Waiting);
        assert_eq!(aligner.on_barrier(0, 3).0, Aligned::Complete(3));
    }

    #[test]
    fn at_least_once_blocks_nothing() {
        let mut aligner = BarrierAligner::new(2, false);
        aligner.on_barrier(0, 1);
        assert!(!aligner.is_blocked(0));
        assert_eq!(aligner.on_barrier(1, 1).0, Aligned::Complete(1));
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
                let result = if end { aligner.on_end(channel) } else { aligner.on_barrier(channel, 1).0 };
                let expect_now = barrier_seen && !completed && delivered.iter().all(Option::is_some);
                prop_assert_eq!(result, if expect_now { Aligned::Complete(1) } else { Aligned::Waiting });
                completed |= expect_now;
            }
        }
    }
}
