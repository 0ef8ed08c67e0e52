//! Operators: what a task runs for each batch, watermark and timer.
//!
//! An [`Operator`] has one required method, [`Operator::process`]; the rest are hooks with no-op defaults. The task
//! calls them from one thread in this order: `process` for every batch, `on_watermark` when the combined input
//! watermark advances (before the watermark is passed on), `on_processing_time` when the wall clock passes
//! [`Operator::next_processing_timer`], and `finish` once when every input has ended. Whatever an operator emits
//! into [`Output`] during a call goes downstream before the watermark that caused it.

pub mod process;
mod stateless;

pub use stateless::{FilterOperator, FlatMapOperator, MapOperator, UnionOperator};

use crate::checkpoint::{CheckpointId, ChunkReader, ChunkWriter, OperatorSnapshot};
use crate::error::TaskError;
use eddy_codec::Batch;

/// Records an operator emits during one call.
#[derive(Debug, Default)]
pub struct Output {
    main: Vec<Batch>,
    side: Vec<(String, Batch)>,
}

/// Records per batch when an operator emits record by record.
const EMIT_BATCH: usize = 1024;

impl Output {
    /// Emits a batch to the main output.
    pub fn emit(&mut self, batch: Batch) {
        if !batch.is_empty() {
            self.main.push(batch);
        }
    }

    /// Emits a batch to side output `tag`.
    pub fn emit_side(&mut self, tag: &str, batch: Batch) {
        if batch.is_empty() {
            return;
        }
        match self.side.iter_mut().find(|(t, _)| t == tag) {
            Some((_, existing)) => existing.extend_from(&batch),
            None => self.side.push((tag.to_string(), batch)),
        }
    }

    /// A batch to append main-output records to.
    pub fn records(&mut self) -> &mut Batch {
        match self.main.last() {
            // After a full batch, the next one is likely full too: size it like the last.
            Some(last) if last.len() >= EMIT_BATCH => {
                let bytes = last.data_len();
                self.main.push(Batch::with_capacity(EMIT_BATCH, bytes));
            }
            Some(_) => {}
            None => self.main.push(Batch::with_capacity(64, 4096)),
        }
        let last = self.main.len() - 1;
        &mut self.main[last]
    }

    /// A batch to append records of side output `tag` to.
    pub fn side_records(&mut self, tag: &str) -> &mut Batch {
        let index = match self.side.iter().position(|(t, _)| t == tag) {
            Some(i) => i,
            None => {
                self.side.push((tag.to_string(), Batch::new()));
                self.side.len() - 1
            }
        };
        &mut self.side[index].1
    }

    /// Takes the main-output batches emitted so far.
    pub fn take_main(&mut self) -> std::vec::Drain<'_, Batch> {
        self.main.drain(..)
    }

    /// Takes the side-output batches emitted so far.
    pub fn take_side(&mut self) -> std::vec::Drain<'_, (String, Batch)> {
        self.side.drain(..)
    }

    /// Whether nothing was emitted.
    pub fn is_empty(&self) -> bool {
        self.main.iter().all(Batch::is_empty) && self.side.iter().all(|(_, b)| b.is_empty())
    }
}

/// What an operator may use during a call.
#[derive(Debug)]
pub struct OpContext<'a> {
    /// Where emitted records go.
    pub out: &'a mut Output,
    /// The operator's current event-time watermark.
    pub watermark: i64,
    /// The current processing time.
    pub now: i64,
}

/// A step of a pipeline running in one subtask.
pub trait Operator: Send {
    /// Processes a batch from input `input` (0, or 1 for the second input of a two-input operator).
    fn process(&mut self, input: usize, batch: Batch, ctx: &mut OpContext<'_>) -> Result<(), TaskError>;

    /// The combined input watermark advanced to `ctx.watermark`: fire event-time timers.
    fn on_watermark(&mut self, _ctx: &mut OpContext<'_>) -> Result<(), TaskError> {
        Ok(())
    }

    /// The wall clock reached `ctx.now`: fire processing-time timers.
    fn on_processing_time(&mut self, _ctx: &mut OpContext<'_>) -> Result<(), TaskError> {
        Ok(())
    }

    /// When the operator next needs [`Operator::on_processing_time`], if ever.
    fn next_processing_timer(&self) -> Option<i64> {
        None
    }

    /// Every input has ended (after the final watermark); flush anything held back.
    fn finish(&mut self, _ctx: &mut OpContext<'_>) -> Result<(), TaskError> {
        Ok(())
    }

    /// Records this operator dropped because they were late and no side output takes them.
    fn late_records_dropped(&self) -> u64 {
        0
    }

    /// Copies the operator's state for checkpoint `checkpoint`, between two calls. What it holds must be enough
    /// to go on from exactly this point; the copy is written out while the task goes on. Keyed state entries and
    /// timers go to `chunks`, the rest into the returned snapshot.
    fn snapshot(
        &mut self,
        _checkpoint: CheckpointId,
        _chunks: &mut ChunkWriter,
    ) -> Result<OperatorSnapshot, TaskError> {
        Ok(OperatorSnapshot::default())
    }

    /// Copies the operator's state for savepoint `checkpoint`: as [`Operator::snapshot`], but keyed state is held
    /// as entries (the canonical format), never as a state backend's own files, so that it restores into any
    /// backend and needs no file of the job's checkpoints.
    fn savepoint(&mut self, checkpoint: CheckpointId, chunks: &mut ChunkWriter) -> Result<OperatorSnapshot, TaskError> {
        self.snapshot(checkpoint, chunks)
    }

    /// Takes back the state of a snapshot, before the first call; its chunks are read through `chunks`, which
    /// keeps only the key groups this subtask owns. Called only when the checkpoint has one for this operator and
    /// subtask.
    fn restore(&mut self, _snapshot: OperatorSnapshot, _chunks: &ChunkReader) -> Result<(), TaskError> {
        Ok(())
    }

    /// Checkpoint `checkpoint` completed: whatever it covers may become visible outside (committed output).
    fn checkpoint_complete(&mut self, _checkpoint: CheckpointId) -> Result<(), TaskError> {
        Ok(())
    }

    /// Checkpoint `checkpoint` was given up; its output stays pending until a later one completes.
    fn checkpoint_aborted(&mut self, _checkpoint: CheckpointId) {}
}
