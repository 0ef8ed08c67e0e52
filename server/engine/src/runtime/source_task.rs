//! A source task: it polls its source, stamps event time, tracks per-split watermarks with idleness, pushes
//! batches down its chain, and starts checkpoints when the coordinator asks.

use super::chain::{Chain, TaskCheckpoints};
use super::metrics::OperatorMetrics;
use super::{govern, until};
use crate::checkpoint::{SourceSnapshot, SplitPosition, TaskSnapshot};
use crate::control::{CheckpointId, Control};
use crate::error::TaskError;
use crate::function::TimestampAssignerFunction;
use crate::io::{Source, SourcePoll};
use crate::json::JsonPath;
use crate::time::{Clock, MAX_WATERMARK, SourceWatermarks, StatusChange};
use crossbeam_channel::Receiver;
use eddy_codec::Batch;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Where event timestamps come from in a source task.
pub enum Timestamps {
    /// As the source set them (arrival time for sources without event time).
    Source,
    /// A JSON field.
    Json(JsonPath),
    /// A Wasm timestamp assigner.
    Module(Box<dyn TimestampAssignerFunction>),
}

/// A source with its timestamping and watermarks.
pub struct SourceRunner {
    /// The source.
    pub source: Box<dyn Source>,
    /// Timestamp assignment.
    pub timestamps: Timestamps,
    /// Per-split watermarks.
    pub watermarks: SourceWatermarks,
    /// Records per batch.
    pub batch_size: usize,
    /// The source operator's counters.
    pub metrics: Arc<OperatorMetrics>,
    /// The subtask index.
    pub subtask: u32,
}

impl SourceRunner {
    /// Sets each record's event time. Records whose event time cannot be read fail the task, or, with `lenient`,
    /// move from `batch` to `unreadable`.
    fn stamp(
        &mut self,
        batch: &mut Batch,
        now: i64,
        scratch: &mut Vec<i64>,
        lenient: bool,
        unreadable: &mut Batch,
    ) -> Result<(), TaskError> {
        match &mut self.timestamps {
            Timestamps::Source if self.source.uses_arrival_time() => {
                for i in 0..batch.len() {
                    batch.set_timestamp(i, now);
                }
            }
            Timestamps::Source => {}
            Timestamps::Json(path) => {
                let mut bad = Vec::new();
                for i in 0..batch.len() {
                    match path.extract_i64(batch.get(i).value) {
                        Ok(ts) => batch.set_timestamp(i, ts),
                        Err(_) if lenient => bad.push(i),
                        Err(e) => return Err(TaskError::user(format!("event time: {e}"))),
                    }
                }
                if !bad.is_empty() {
                    let mut readable = Batch::with_capacity(batch.len(), 0);
                    for (i, record) in batch.iter().enumerate() {
                        if bad.binary_search(&i).is_ok() {
                            unreadable.push_record(&record);
                        } else {
                            readable.push_record(&record);
                        }
                    }
                    *batch = readable;
                }
            }
            Timestamps::Module(assigner) => {
                scratch.clear();
                assigner.timestamps(batch, scratch)?;
                if scratch.len() != batch.len() {
                    return Err(TaskError::user(format!(
                        "a timestamp assigner must return one timestamp per record: got {} for {}",
                        scratch.len(),
                        batch.len()
                    )));
                }
                for (i, ts) in scratch.iter().enumerate() {
                    batch.set_timestamp(i, *ts);
                }
            }
        }
        Ok(())
    }
}

/// Runs a source task until the source finishes or the job is cancelled. While its source has nothing, the task
/// sleeps until records arrive, a timer or a split's idleness is due, or a control message comes.
pub fn run_source(
    mut runner: SourceRunner,
    chain: &mut Chain,
    clock: &dyn Clock,
    cancel: &AtomicBool,
    control: &Receiver<Control>,
    checkpoints: &TaskCheckpoints,
) -> Result<(), TaskError> {
    let uid = runner.metrics.uid.clone();
    let mut scratch = Vec::new();
    // Positions each checkpoint in progress recorded, to tell the source once it completes.
    let mut recorded: Vec<(CheckpointId, Vec<SplitPosition>)> = Vec::new();
    govern::enter();
    let finished_before = checkpoints.restored_finished();
    let mut suspended = false;
    loop {
        if finished_before {
            break;
        }
        if cancel.load(Ordering::Relaxed) {
            return Ok(());
        }
        govern::tick();
        while let Ok(message) = control.try_recv() {
            source_control(message, &mut runner, chain, checkpoints, &mut recorded, &mut suspended, clock)?;
        }
        if suspended {
            // Only control messages matter now: the savepoint's barrier, its completion, a resume or the stop.
            govern::blocking(|| {
                let mut select = crossbeam_channel::Select::new();
                select.recv(control);
                let _ = select.ready_timeout(Duration::from_millis(100));
            });
            continue;
        }
        let mut batch = Batch::with_capacity(runner.batch_size, runner.batch_size * 24);
        let poll = runner.source.poll(&mut batch, runner.batch_size).map_err(|e| e.in_operator(&uid))?;
        // Polling may have waited: records are stamped and processed at the time they arrived.
        let now = clock.now();
        if let Some((mut unreadable, why)) = runner.source.take_unreadable() {
            if !chain.sets_aside_unreadable() {
                return Err(TaskError::user(why).in_operator(&uid));
            }
            for i in 0..unreadable.len() {
                unreadable.set_timestamp(i, now);
            }
            chain.set_aside(unreadable)?;
        }
        match poll {
            SourcePoll::Records { split } if !batch.is_empty() => {
                let mut unreadable = Batch::new();
                let lenient = chain.sets_aside_unreadable();
                runner
                    .stamp(&mut batch, now, &mut scratch, lenient, &mut unreadable)
                    .map_err(|e| e.in_operator(&uid))?;
                for i in 0..unreadable.len() {
                    unreadable.set_timestamp(i, now);
                }
                chain.set_aside(unreadable)?;
                if batch.is_empty() {
                    continue;
                }
                let max_ts = batch.iter().map(|r| r.timestamp).max().unwrap_or(i64::MIN);
                runner.watermarks.on_records(split, max_ts, now);
                runner.metrics.records_out.fetch_add(batch.len() as u64, Ordering::Relaxed);
                chain.push(0, 0, batch, now)?;
            }
            SourcePoll::Records { .. } | SourcePoll::Pending => {
                let due = [chain.next_processing_timer(), runner.watermarks.next_idle_at()].into_iter().flatten().min();
                // A control message only wakes the wait; the loop's next turn acts on it.
                govern::blocking(|| runner.source.wait(control, until(due, now)));
            }
            SourcePoll::Finished => break,
        }
        let (watermark, change) = runner.watermarks.poll(now);
        if let Some(change) = change {
            chain.status(change == StatusChange::BecameIdle)?;
        }
        if let Some(w) = watermark {
            runner.metrics.set_watermark(runner.subtask, w);
            chain.watermark(w, now)?;
        }
        if chain.next_processing_timer().is_some_and(|t| t <= now) {
            chain.processing_time(now)?;
        }
    }
    let now = clock.now();
    if runner.watermarks.current() < MAX_WATERMARK {
        runner.metrics.set_watermark(runner.subtask, MAX_WATERMARK);
        chain.watermark(MAX_WATERMARK, now)?;
    }
    if !finished_before && checkpoints.acks.is_some() {
        // Everything this source will ever cause is on its way: the job's final checkpoint covers it, and only once
        // that checkpoint completed (exactly-once sinks committed) does the end of input go downstream.
        let ended = final_checkpoint(&mut runner, chain, cancel, control, checkpoints, &mut recorded, clock)?;
        if !ended {
            return Ok(());
        }
    }
    chain.finish(clock.now())?;
    let source = SourceSnapshot {
        positions: runner.source.position(),
        max_timestamps: runner.watermarks.max_timestamps(),
        watermark: MAX_WATERMARK,
    };
    let snapshot =
        TaskSnapshot { task: checkpoints.name.clone(), source: Some(source), finished: true, ..Default::default() };
    checkpoints.finished(snapshot);
    Ok(())
}

/// After its source ended: asks the coordinator for a checkpoint and takes part in checkpoints (its position is the
/// end) until one begun after the end completed. False if the job stopped meanwhile.
fn final_checkpoint(
    runner: &mut SourceRunner,
    chain: &mut Chain,
    cancel: &AtomicBool,
    control: &Receiver<Control>,
    checkpoints: &TaskCheckpoints,
    recorded: &mut Vec<(CheckpointId, Vec<SplitPosition>)>,
    clock: &dyn Clock,
) -> Result<bool, TaskError> {
    checkpoints.ending();
    let mut suspended = false;
    let mut covered_by: Option<CheckpointId> = None;
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Ok(false);
        }
        let message = govern::blocking(|| control.recv_timeout(Duration::from_millis(100)));
        let Ok(message) = message else { continue };
        match message {
            Control::Checkpoint(barrier) if covered_by.is_none() => {
                covered_by = Some(barrier.id);
                source_control(
                    Control::Checkpoint(barrier),
                    runner,
                    chain,
                    checkpoints,
                    recorded,
                    &mut suspended,
                    clock,
                )?;
            }
            Control::CheckpointComplete(id) => {
                source_control(
                    Control::CheckpointComplete(id),
                    runner,
                    chain,
                    checkpoints,
                    recorded,
                    &mut suspended,
                    clock,
                )?;
                if covered_by.is_some_and(|first| id >= first) {
                    return Ok(true);
                }
            }
            Control::CheckpointAborted(id) => {
                if covered_by == Some(id) {
                    covered_by = None;
                    checkpoints.ending();
                }
                source_control(
                    Control::CheckpointAborted(id),
                    runner,
                    chain,
                    checkpoints,
                    recorded,
                    &mut suspended,
                    clock,
                )?;
            }
            other => source_control(other, runner, chain, checkpoints, recorded, &mut suspended, clock)?,
        }
    }
}

/// Takes a source task back to what a checkpoint recorded: the source's positions and the watermarks. Done when
/// the job is deployed, before anything can reach the source (an HTTP input's log must know where it stands before
/// it takes the next record).
pub fn restore_source(
    runner: &mut SourceRunner,
    chain: &mut Chain,
    restored: &SourceSnapshot,
) -> Result<(), TaskError> {
    runner.source.restore(&restored.positions).map_err(|e| e.in_operator(&runner.metrics.uid))?;
    runner.watermarks.restore(&restored.max_timestamps, restored.watermark);
    runner.metrics.set_watermark(runner.subtask, restored.watermark);
    chain.restore_watermark(restored.watermark);
    Ok(())
}

/// Acts on a control message in a source task.
fn source_control(
    message: Control,
    runner: &mut SourceRunner,
    chain: &mut Chain,
    checkpoints: &TaskCheckpoints,
    recorded: &mut Vec<(CheckpointId, Vec<SplitPosition>)>,
    suspended: &mut bool,
    clock: &dyn Clock,
) -> Result<(), TaskError> {
    match message {
        // Stopping is read from the cancel flag; the message only woke the task.
        Control::Stop => {}
        Control::Suspend { drain } => {
            *suspended = true;
            if drain && runner.watermarks.current() < MAX_WATERMARK {
                runner.watermarks.restore(&runner.watermarks.max_timestamps(), MAX_WATERMARK);
                runner.metrics.set_watermark(runner.subtask, MAX_WATERMARK);
                chain.watermark(MAX_WATERMARK, clock.now())?;
            }
        }
        Control::Resume => *suspended = false,
        Control::Checkpoint(barrier) => {
            let id = barrier.id;
            let positions = runner.source.position();
            let source = SourceSnapshot {
                positions: positions.clone(),
                max_timestamps: runner.watermarks.max_timestamps(),
                watermark: runner.watermarks.current(),
            };
            checkpoints.take(chain, barrier, TaskSnapshot { source: Some(source), ..Default::default() })?;
            chain.barrier(barrier)?;
            recorded.push((id, positions));
        }
        Control::CheckpointComplete(id) => {
            if let Some((_, positions)) = recorded.iter().find(|(c, _)| *c == id) {
                runner.source.checkpoint_complete(id, positions);
            }
            recorded.retain(|(c, _)| *c > id);
            checkpoints.complete(chain, id)?;
        }
        Control::CheckpointAborted(id) => {
            chain.checkpoint_aborted(id);
            recorded.retain(|(c, _)| *c != id);
        }
    }
    Ok(())
}
