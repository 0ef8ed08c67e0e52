//! What a job tells its tasks beside their data: checkpoint barriers, and control messages that reach a task
//! however idle or blocked its inputs are. The runtime, the checkpoint coordinator and sources all speak these, so
//! they live below all three.

/// A checkpoint's number: 1, 2, 3, ... for one job, across restarts.
pub type CheckpointId = u64;

/// A checkpoint as its barriers carry it to every task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Barrier {
    /// Which checkpoint.
    pub id: CheckpointId,
    /// A savepoint holds state only in the canonical format (entries), never as a backend's own files: it must
    /// restore into any backend and outlive the checkpoints whose files it would otherwise share.
    pub savepoint: bool,
}

impl Barrier {
    /// A checkpoint's barrier.
    pub fn checkpoint(id: CheckpointId) -> Barrier {
        Barrier { id, savepoint: false }
    }
}

/// What a job tells its tasks outside the data stream. A task waits on its control receiver together with its
/// inputs, so it hears a control message however idle or blocked its inputs are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// The job is stopping: leave the task loop.
    Stop,
    /// (Sources only.) Snapshot now and send the checkpoint's barrier downstream.
    Checkpoint(Barrier),
    /// The checkpoint completed: commit what it covers.
    CheckpointComplete(CheckpointId),
    /// The checkpoint was given up.
    CheckpointAborted(CheckpointId),
    /// (Sources only.) Read nothing more until `Resume`, so that a savepoint taken next is the job's last word:
    /// nothing follows its barrier. With `drain`, first advance the watermark to the end of time, which fires
    /// every event-time window and timer.
    Suspend {
        /// Advance the watermark to the end first.
        drain: bool,
    },
    /// (Sources only.) Read again after a `Suspend`.
    Resume,
}
