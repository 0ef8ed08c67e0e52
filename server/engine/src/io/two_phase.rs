//! Two-phase commit for exactly-once sinks, as Flink's `TwoPhaseCommitSinkFunction`: what a sink wrote since the
//! last barrier is *pre-committed* at the next barrier under that checkpoint's id (a file part closed and synced, a
//! Kafka transaction's records), and *committed* (renamed into place, the transaction committed) in checkpoint
//! order once a checkpoint at or after it completes. A checkpoint keeps the pre-committed items, so a restored sink
//! commits them again: every commit must be idempotent. At the end of the input the final checkpoint (taken once
//! every source ended) covers the rest. The file sink and the Kafka sink both keep their pending work here.

use crate::checkpoint::CheckpointId;
use std::collections::VecDeque;

/// Items pre-committed at checkpoints' barriers, oldest first, each waiting for a checkpoint that covers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreCommits<T> {
    waiting: VecDeque<(CheckpointId, T)>,
}

impl<T> Default for PreCommits<T> {
    fn default() -> PreCommits<T> {
        PreCommits { waiting: VecDeque::new() }
    }
}

impl<T> PreCommits<T> {
    /// Items a restored checkpoint kept (they are committed again).
    pub fn restored(items: Vec<(CheckpointId, T)>) -> PreCommits<T> {
        let mut waiting: VecDeque<_> = items.into();
        waiting.make_contiguous().sort_by_key(|(checkpoint, _)| *checkpoint);
        PreCommits { waiting }
    }

    /// At `checkpoint`'s barrier: `item`, what was written since the last barrier, waits for a checkpoint that
    /// covers it.
    pub fn pre_commit(&mut self, checkpoint: CheckpointId, item: T) {
        self.waiting.push_back((checkpoint, item));
    }

    /// The oldest item that a completed checkpoint `completed` covers (pre-committed at it or before), taken out
    /// to be committed; none once the oldest waiting item is newer.
    pub fn take_due(&mut self, completed: CheckpointId) -> Option<(CheckpointId, T)> {
        if self.waiting.front().is_some_and(|(checkpoint, _)| *checkpoint <= completed) {
            self.waiting.pop_front()
        } else {
            None
        }
    }

    /// The oldest waiting item: the one to commit next.
    pub fn front_mut(&mut self) -> Option<&mut T> {
        self.waiting.front_mut().map(|(_, item)| item)
    }

    /// The waiting items, oldest first: what a checkpoint keeps.
    pub fn iter(&self) -> impl Iterator<Item = &(CheckpointId, T)> {
        self.waiting.iter()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_commit_in_checkpoint_order_once_a_checkpoint_covers_them() {
        let mut pending = PreCommits::default();
        pending.pre_commit(3, "a");
        pending.pre_commit(4, "b");
        pending.pre_commit(6, "c");
        assert_eq!(pending.take_due(2), None, "no checkpoint covers them yet");
        // Checkpoint 5 completing covers 3 and 4 (4's completion notice may have been lost), not 6.
        assert_eq!(std::iter::from_fn(|| pending.take_due(5)).collect::<Vec<_>>(), vec![(3, "a"), (4, "b")]);
        assert_eq!(pending.iter().collect::<Vec<_>>(), vec![&(6, "c")]);
        assert_eq!(pending.take_due(CheckpointId::MAX), Some((6, "c")));
        assert!(pending.is_empty());
    }

    #[test]
    fn restored_items_wait_in_checkpoint_order() {
        let mut pending = PreCommits::restored(vec![(9, 'z'), (7, 'x')]);
        assert_eq!(pending.front_mut(), Some(&mut 'x'));
        assert_eq!(pending.take_due(8), Some((7, 'x')));
        assert_eq!(pending.take_due(8), None);
    }
}
