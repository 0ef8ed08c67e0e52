//! A chain: the operators of one task, each link's main output feeding the next without a channel, and the one
//! place where an operator is called and what it emitted is routed on.

use super::channel::Message;
use super::metrics::OperatorMetrics;
use super::route::{EdgeWriter, fan_out};
use crate::checkpoint::coordinator::{Ack, SavepointTargets};
use crate::checkpoint::{ChunkWriter, OperatorSnapshot, TaskSnapshot};
use crate::control::{Barrier, CheckpointId};
use crate::error::TaskError;
use crate::operator::{OpContext, Operator, Output};
use crossbeam_channel::Sender;
use eddy_codec::Batch;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Where a source task sends records it cannot read, as its `on_error` says.
pub enum Unreadable {
    /// Count and drop them.
    Skip,
    /// Send them to the source's side output.
    SideOutput(Vec<EdgeWriter>),
}

/// One operator of a chain with where its outputs go.
pub struct Link {
    op: Box<dyn Operator>,
    metrics: Arc<OperatorMetrics>,
    /// Network edges per side-output tag.
    side: Vec<(String, Vec<EdgeWriter>)>,
    late_reported: u64,
    out: Output,
    /// The watermark this link has seen: a link downstream in a chain receives what an upstream link emits for a
    /// watermark before it sees that watermark itself, as it would across a channel.
    watermark: i64,
}

impl Link {
    /// A link for `op`.
    pub fn new(op: Box<dyn Operator>, metrics: Arc<OperatorMetrics>, side: Vec<(String, Vec<EdgeWriter>)>) -> Link {
        Link { op, metrics, side, late_reported: 0, out: Output::default(), watermark: i64::MIN }
    }
}

/// Operators chained in one task: each link's main output feeds the next without a channel.
pub struct Chain {
    links: Vec<Link>,
    /// Network edges of the last link's main output (or of the source, for a source with nothing chained).
    main: Vec<EdgeWriter>,
    /// Counts what leaves the chain head when it is a source.
    source_metrics: Option<Arc<OperatorMetrics>>,
    /// Where records the source's task cannot read go (none: they fail the task).
    unreadable: Option<Unreadable>,
    subtask: u32,
    cancel: Arc<AtomicBool>,
}

impl Chain {
    /// A chain of `links` whose last main output goes to `main`.
    pub fn new(links: Vec<Link>, main: Vec<EdgeWriter>, subtask: u32, cancel: Arc<AtomicBool>) -> Chain {
        Chain { links, main, source_metrics: None, unreadable: None, subtask, cancel }
    }

    /// Records of the source that cannot be read (event time, or a key on the way out) go where `unreadable` says
    /// instead of failing the task.
    pub fn with_unreadable(mut self, unreadable: Unreadable) -> Chain {
        for writer in std::mem::take(&mut self.main) {
            self.main.push(writer.lenient());
        }
        self.unreadable = Some(unreadable);
        self
    }

    /// Whether records that cannot be read are set aside rather than failing the task.
    pub fn sets_aside_unreadable(&self) -> bool {
        self.unreadable.is_some()
    }

    /// Sets aside records the source's task could not read.
    pub fn set_aside(&mut self, records: Batch) -> Result<(), TaskError> {
        if records.is_empty() {
            return Ok(());
        }
        let Some(metrics) = &self.source_metrics else { return Ok(()) };
        match &mut self.unreadable {
            None => Ok(()),
            Some(Unreadable::Skip) => {
                metrics.unreadable_records.fetch_add(records.len() as u64, Ordering::Relaxed);
                Ok(())
            }
            Some(Unreadable::SideOutput(writers)) => {
                metrics.records_out.fetch_add(records.len() as u64, Ordering::Relaxed);
                let waited = fan_out(writers, records, &self.cancel, &mut Batch::new())?;
                self.backpressured(0, waited);
                Ok(())
            }
        }
    }

    /// Counts records entering the chain against the source that produced them.
    pub fn with_source_metrics(mut self, metrics: Arc<OperatorMetrics>) -> Chain {
        self.source_metrics = Some(metrics);
        self
    }

    /// Every edge leaving the task: watermarks, idleness and the end go to all of them.
    fn network_writers(&self) -> impl Iterator<Item = &EdgeWriter> {
        let set_aside = match &self.unreadable {
            Some(Unreadable::SideOutput(writers)) => writers.as_slice(),
            _ => &[],
        };
        self.main
            .iter()
            .chain(self.links.iter().flat_map(|l| l.side.iter().flat_map(|(_, w)| w.iter())))
            .chain(set_aside)
    }

    fn backpressured(&self, at: usize, waited: Duration) {
        if waited.is_zero() {
            return;
        }
        let metrics = match at.checked_sub(1).and_then(|i| self.links.get(i)) {
            Some(link) => &link.metrics,
            None => match &self.source_metrics {
                Some(m) => m,
                None => return,
            },
        };
        metrics.backpressured_us.fetch_add(waited.as_micros() as u64, Ordering::Relaxed);
    }

    /// Feeds `batch` to link `at` (or to the network when `at` is past the last link).
    pub fn push(&mut self, at: usize, input: usize, batch: Batch, now: i64) -> Result<(), TaskError> {
        if at >= self.links.len() {
            let mut rejected = Batch::new();
            let waited = fan_out(&mut self.main, batch, &self.cancel, &mut rejected)?;
            self.backpressured(at, waited);
            return self.set_aside(rejected);
        }
        self.links[at].metrics.records_in.fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.call(at, now, |op, cx| op.process(input, batch, cx))
    }

    /// Calls link `at`'s operator with its output buffer, then routes what it emitted onward: the one place where
    /// a chain calls an operator.
    fn call(
        &mut self,
        at: usize,
        now: i64,
        call: impl FnOnce(&mut dyn Operator, &mut OpContext<'_>) -> Result<(), TaskError>,
    ) -> Result<(), TaskError> {
        let link = &mut self.links[at];
        let mut out = std::mem::take(&mut link.out);
        let result = call(link.op.as_mut(), &mut OpContext { out: &mut out, watermark: link.watermark, now });
        result.map_err(|e| e.in_operator(&link.metrics.uid))?;
        self.route(at, &mut out, now)?;
        self.links[at].out = out;
        Ok(())
    }

    /// Sends what link `at` emitted onward.
    fn route(&mut self, at: usize, out: &mut Output, now: i64) -> Result<(), TaskError> {
        let link = &mut self.links[at];
        let late = link.op.late_records_dropped();
        if late > link.late_reported {
            link.metrics.late_records_dropped.fetch_add(late - link.late_reported, Ordering::Relaxed);
            link.late_reported = late;
        }
        let mut waited = Duration::ZERO;
        for (tag, batch) in out.take_side() {
            link.metrics.records_out.fetch_add(batch.len() as u64, Ordering::Relaxed);
            if let Some((_, writers)) = link.side.iter_mut().find(|(t, _)| *t == tag) {
                waited += fan_out(writers, batch, &self.cancel, &mut Batch::new())?;
            }
        }
        self.backpressured(at + 1, waited);
        let main: Vec<Batch> = out.take_main().collect();
        for batch in main {
            self.links[at].metrics.records_out.fetch_add(batch.len() as u64, Ordering::Relaxed);
            self.push(at + 1, 0, batch, now)?;
        }
        Ok(())
    }

    /// Advances event time: each link in turn sees the watermark and fires its timers, then the watermark goes
    /// downstream.
    pub fn watermark(&mut self, watermark: i64, now: i64) -> Result<(), TaskError> {
        for at in 0..self.links.len() {
            let link = &mut self.links[at];
            link.watermark = watermark;
            link.metrics.set_watermark(self.subtask, watermark);
            self.call(at, now, |op, cx| op.on_watermark(cx))?;
        }
        let mut waited = Duration::ZERO;
        for writer in self.network_writers() {
            waited += writer.broadcast(|| Message::Watermark(watermark), &self.cancel)?;
        }
        self.backpressured(self.links.len(), waited);
        Ok(())
    }

    /// The earliest processing-time timer of any link.
    pub fn next_processing_timer(&self) -> Option<i64> {
        self.links.iter().filter_map(|l| l.op.next_processing_timer()).min()
    }

    /// Fires processing-time timers due at `now`.
    pub fn processing_time(&mut self, now: i64) -> Result<(), TaskError> {
        for at in 0..self.links.len() {
            if self.links[at].op.next_processing_timer().is_none_or(|t| t > now) {
                continue;
            }
            self.call(at, now, |op, cx| op.on_processing_time(cx))?;
        }
        Ok(())
    }

    /// Tells downstream that this task became idle or active.
    pub fn status(&mut self, idle: bool) -> Result<(), TaskError> {
        for writer in self.network_writers() {
            writer.broadcast(|| Message::Idle(idle), &self.cancel)?;
        }
        Ok(())
    }

    /// Sets every link's watermark, as a restored checkpoint recorded it.
    pub fn restore_watermark(&mut self, watermark: i64) {
        for link in &mut self.links {
            link.watermark = watermark;
            link.metrics.set_watermark(self.subtask, watermark);
        }
    }

    /// Snapshots every link, in chain order; keyed state and timers go to `chunks`.
    pub fn snapshot(
        &mut self,
        barrier: Barrier,
        chunks: &mut ChunkWriter,
    ) -> Result<Vec<(String, u32, OperatorSnapshot)>, TaskError> {
        let mut snapshots = Vec::with_capacity(self.links.len());
        for link in &mut self.links {
            let uid = &link.metrics.uid;
            chunks.begin(uid, self.subtask);
            let snapshot = if barrier.savepoint {
                link.op.savepoint(barrier.id, chunks)
            } else {
                link.op.snapshot(barrier.id, chunks)
            };
            let mut snapshot = snapshot.map_err(|e| e.in_operator(uid))?;
            snapshot.chunks = chunks.end();
            snapshots.push((uid.clone(), self.subtask, snapshot));
        }
        Ok(snapshots)
    }

    /// Sends checkpoint `checkpoint`'s barrier down every output.
    pub fn barrier(&mut self, barrier: Barrier) -> Result<(), TaskError> {
        let mut waited = Duration::ZERO;
        for writer in self.network_writers() {
            waited += writer.broadcast(|| Message::Barrier(barrier), &self.cancel)?;
        }
        self.backpressured(self.links.len(), waited);
        Ok(())
    }

    /// Tells every link that a checkpoint completed.
    pub fn checkpoint_complete(&mut self, checkpoint: CheckpointId) -> Result<(), TaskError> {
        for link in &mut self.links {
            link.op.checkpoint_complete(checkpoint).map_err(|e| e.in_operator(&link.metrics.uid))?;
        }
        Ok(())
    }

    /// Tells every link that a checkpoint was given up.
    pub fn checkpoint_aborted(&mut self, checkpoint: CheckpointId) {
        for link in &mut self.links {
            link.op.checkpoint_aborted(checkpoint);
        }
    }

    /// Every input ended (after the final watermark): flush each link in order, then end every output.
    pub fn finish(&mut self, now: i64) -> Result<(), TaskError> {
        for at in 0..self.links.len() {
            self.call(at, now, |op, cx| op.finish(cx))?;
        }
        for writer in self.network_writers() {
            writer.broadcast(|| Message::End, &self.cancel)?;
        }
        Ok(())
    }
}

/// A task's part in checkpoints.
pub struct TaskCheckpoints {
    /// The task's index among the job's tasks.
    pub index: usize,
    /// `<head uid>-<subtask>`.
    pub name: String,
    /// Where snapshots go; none: the job takes no checkpoints.
    pub acks: Option<Sender<Ack>>,
    /// The task's own part of the checkpoint it starts from.
    pub restored: Option<TaskSnapshot>,
    /// Where savepoints are written as the task takes them; none: snapshots are handed to the coordinator whole.
    pub savepoints: Option<Arc<SavepointTargets>>,
    /// Where the task tells that it acted on a checkpoint's completion.
    pub commits: Arc<super::commits::Commits>,
}

impl TaskCheckpoints {
    /// Snapshots the chain for `barrier` and acknowledges with `snapshot` (the task's own part) and the chain's.
    pub(super) fn take(
        &self,
        chain: &mut Chain,
        barrier: Barrier,
        mut snapshot: TaskSnapshot,
    ) -> Result<(), TaskError> {
        let folder = self.savepoints.as_ref().filter(|_| barrier.savepoint).and_then(|s| s.target(barrier.id));
        let mut chunks = match folder {
            Some((store, folder)) => ChunkWriter::direct(store, folder),
            None => ChunkWriter::held(),
        };
        snapshot.task.clone_from(&self.name);
        snapshot.operators = chain.snapshot(barrier, &mut chunks)?;
        let chunks = match chunks.failure() {
            Some(why) => Err(why.to_string()),
            None => Ok(chunks.take_held()),
        };
        if let Some(acks) = &self.acks {
            // The coordinator is gone only when the job stops.
            let _ = acks.send(Ack::Snapshot { checkpoint: barrier.id, task: self.index, snapshot, chunks });
        }
        Ok(())
    }

    /// Tells the coordinator that the task finished: `snapshot` stands in for it in later checkpoints.
    pub(super) fn finished(&self, snapshot: TaskSnapshot) {
        if let Some(acks) = &self.acks {
            let _ = acks.send(Ack::Finished { task: self.index, snapshot });
        }
    }

    /// Tells the coordinator that this source task's input ended: a checkpoint is wanted that covers it.
    pub(super) fn ending(&self) {
        if let Some(acks) = &self.acks {
            let _ = acks.send(Ack::Ending { task: self.index });
        }
    }

    /// Tells the chain that `checkpoint` completed, and the job's handle that this task acted on it.
    pub(super) fn complete(&self, chain: &mut Chain, checkpoint: CheckpointId) -> Result<(), TaskError> {
        chain.checkpoint_complete(checkpoint)?;
        self.commits.committed(self.index, checkpoint);
        Ok(())
    }

    pub(super) fn restored_finished(&self) -> bool {
        self.restored.as_ref().is_some_and(|r| r.finished)
    }
}
