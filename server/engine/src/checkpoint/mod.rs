//! Checkpoints: consistent snapshots of a running job, taken while it runs (Chandy-Lamport with aligned barriers,
//! as Flink's).
//!
//! 1. The [`coordinator`] asks every source task for checkpoint *n*. A source task records its position (per split)
//!    and its chain's state between two polls, then sends `Barrier(n)` down every output channel.
//! 2. A task with inputs waits until each input delivered `Barrier(n)` ([`align::BarrierAligner`]; an input that has
//!    ended counts as delivered). In exactly-once mode it reads nothing more from an input that did meanwhile, so
//!    its snapshot holds the effect of exactly the records before the barrier. It snapshots its chain and passes
//!    the barrier on.
//! 3. Each task acknowledges with its [`TaskSnapshot`]. Keyed state and timers go into [`chunks`]: bounded
//!    objects beside the task's snapshot, indexed by key-group range. For a checkpoint the task hands the chunks
//!    over and goes on processing while the coordinator writes them to the [`store`]; for a savepoint it writes
//!    each chunk as it fills, so a savepoint of any size holds one chunk in memory. A store that keeps state in
//!    files (RocksDB) hands over a list of its files instead of entries at checkpoints, and the coordinator
//!    uploads only those no completed checkpoint has, into `shared/`, where checkpoints share them; a file no
//!    retained checkpoint refers to any more is deleted. When every task has acknowledged, the coordinator writes
//!    the checkpoint's metadata, last, so a checkpoint without metadata is never restored, and tells every task it
//!    completed: sinks make the output the checkpoint covers visible then.
//!
//! The snapshot formats are documented in `docs/state-format.md`; they are the savepoint format too, except that
//! a savepoint ([`Barrier::savepoint`]) always holds entries, never a backend's files.

pub mod align;
pub mod chunks;
pub mod coordinator;
pub mod format;
pub mod inspect;
pub mod store;

pub use align::{Aligned, BarrierAligner};
pub use chunks::{ChunkReader, ChunkWriter, EntryRef, StateChunk};
pub use coordinator::{CheckpointIds, CheckpointStats, Checkpointing, Restore, Unconfirmed};
pub use format::{OperatorSnapshot, SourceSnapshot, SplitPosition, TaskSnapshot, TimerEntry};
pub use store::{CheckpointStore, LocalStore, StoreError};

pub use crate::control::{Barrier, CheckpointId};
