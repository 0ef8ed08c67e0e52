//! The task loop: one thread runs a chain of operators for one subtask, fed by a source or by input channels.

use super::channel::{ChannelSender, Control, InputChannel, Message};
use super::govern;
use super::metrics::OperatorMetrics;
use crate::checkpoint::coordinator::Ack;
use crate::checkpoint::{
    Aligned, Barrier, BarrierAligner, CheckpointId, OperatorSnapshot, SourceSnapshot, SplitPosition, TaskSnapshot,
};
use crate::error::TaskError;
use crate::function::{KeySelectorFunction, TimestampAssignerFunction};
use crate::io::{Source, SourcePoll};
use crate::json::JsonPath;
use crate::keys::{key_group, subtask_of};
use crate::operator::{OpContext, Operator, Output};
use crate::time::{Clock, InputWatermarks, MAX_WATERMARK, SourceWatermarks, StatusChange};
use crossbeam_channel::{Receiver, Select, Sender};
use eddy_codec::Batch;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long to wait from `now` until processing time `at` (none: no deadline).
fn until(at: Option<i64>, now: i64) -> Option<Duration> {
    at.map(|t| Duration::from_millis(t.saturating_sub(now).max(0) as u64))
}

/// How records get their key before a keyed edge.
pub enum KeyExtractor {
    /// A JSON field of the value.
    Json(JsonPath),
    /// The key the record carries.
    Record,
    /// A Wasm key selector.
    Module(Box<dyn KeySelectorFunction>),
}

impl KeyExtractor {
    /// Sets each record's key. A record whose key cannot be read fails the call, unless `lenient`: then its index
    /// goes to `unreadable`.
    fn apply(
        &mut self,
        batch: &mut Batch,
        keys: &mut Batch,
        lenient: bool,
        unreadable: &mut Vec<usize>,
    ) -> Result<(), TaskError> {
        match self {
            KeyExtractor::Json(path) => {
                for i in 0..batch.len() {
                    match path.extract_key(batch.get(i).value) {
                        Ok(key) => batch.set_key(i, Some(&key)),
                        Err(_) if lenient => unreadable.push(i),
                        Err(e) => return Err(TaskError::user(format!("key_by: {e}"))),
                    }
                }
            }
            KeyExtractor::Record => {
                for i in 0..batch.len() {
                    if batch.get(i).key.is_some() {
                        continue;
                    }
                    if !lenient {
                        let value = crate::json::preview(batch.get(i).value);
                        return Err(TaskError::user(format!("key_by record: a record has no key: {value}")));
                    }
                    unreadable.push(i);
                }
            }
            KeyExtractor::Module(selector) => {
                keys.clear();
                selector.select_keys(batch, keys)?;
                if keys.len() != batch.len() {
                    return Err(TaskError::user(format!(
                        "a key selector must return one key per record: got {} for {}",
                        keys.len(),
                        batch.len()
                    )));
                }
                for i in 0..batch.len() {
                    let key = keys
                        .get(i)
                        .key
                        .ok_or_else(|| TaskError::user("a key selector returned a record without a key"))?;
                    batch.set_key(i, Some(key));
                }
            }
        }
        Ok(())
    }
}

/// How an edge routes batches.
pub enum Route {
    /// To the one receiver.
    Forward,
    /// Round-robin over receivers, batch by batch.
    Rebalance {
        /// The next receiver.
        next: usize,
    },
    /// By key group.
    Hash {
        /// Sets each record's key.
        key: KeyExtractor,
        /// Number of key groups.
        max_parallelism: u32,
    },
}

/// The sending side of one edge in one subtask.
pub struct EdgeWriter {
    senders: Vec<ChannelSender>,
    route: Route,
    parts: Vec<Batch>,
    keys: Batch,
    /// Whether a record whose key cannot be read is handed back rather than failing the task.
    lenient: bool,
    /// Set when the receiving operator skips records it cannot key: they are counted there and dropped.
    skipped_by: Option<Arc<OperatorMetrics>>,
    unreadable: Vec<usize>,
}

impl EdgeWriter {
    /// A writer over `senders` (one per receiving subtask, or the single forward receiver).
    pub fn new(senders: Vec<ChannelSender>, route: Route) -> EdgeWriter {
        EdgeWriter {
            senders,
            route,
            parts: Vec::new(),
            keys: Batch::new(),
            lenient: false,
            skipped_by: None,
            unreadable: Vec::new(),
        }
    }

    /// Drops records whose key cannot be read, counting them against the receiving operator (`on_error: skip`).
    pub fn skipping_unreadable(mut self, receiver: Arc<OperatorMetrics>) -> EdgeWriter {
        self.lenient = true;
        self.skipped_by = Some(receiver);
        self
    }

    /// Hands records whose key cannot be read back to the caller instead of failing.
    pub fn lenient(mut self) -> EdgeWriter {
        self.lenient = true;
        self
    }

    /// Writes `batch`; records whose key cannot be read go to `rejected` (lenient writers only).
    fn write(&mut self, mut batch: Batch, cancel: &AtomicBool, rejected: &mut Batch) -> Result<Duration, TaskError> {
        let mut waited = Duration::ZERO;
        match &mut self.route {
            Route::Forward => waited += self.senders[0].send(Message::Batch(batch), cancel)?,
            Route::Rebalance { next } => {
                let target = *next % self.senders.len();
                *next = target + 1;
                waited += self.senders[target].send(Message::Batch(batch), cancel)?;
            }
            Route::Hash { key, max_parallelism } => {
                self.unreadable.clear();
                key.apply(&mut batch, &mut self.keys, self.lenient, &mut self.unreadable)?;
                if !self.unreadable.is_empty() {
                    let mut readable = Batch::with_capacity(batch.len(), 0);
                    let mut bad = self.unreadable.iter().peekable();
                    for (i, record) in batch.iter().enumerate() {
                        if bad.peek() == Some(&&i) {
                            bad.next();
                            if self.skipped_by.is_none() {
                                rejected.push_record(&record);
                            }
                        } else {
                            readable.push_record(&record);
                        }
                    }
                    if let Some(receiver) = &self.skipped_by {
                        receiver.unreadable_records.fetch_add(self.unreadable.len() as u64, Ordering::Relaxed);
                    }
                    batch = readable;
                }
                let receivers = self.senders.len() as u32;
                if receivers == 1 {
                    return self.senders[0].send(Message::Batch(batch), cancel);
                }
                self.parts.resize_with(self.senders.len(), Batch::new);
                for record in batch.iter() {
                    let group = key_group(record.key.unwrap_or_default(), *max_parallelism);
                    self.parts[subtask_of(group, *max_parallelism, receivers) as usize].push_record(&record);
                }
                for (sender, part) in self.senders.iter().zip(self.parts.iter_mut()) {
                    if !part.is_empty() {
                        waited += sender.send(Message::Batch(std::mem::take(part)), cancel)?;
                    }
                }
            }
        }
        Ok(waited)
    }

    fn broadcast(&self, message: impl Fn() -> Message, cancel: &AtomicBool) -> Result<Duration, TaskError> {
        let mut waited = Duration::ZERO;
        for sender in &self.senders {
            waited += sender.send(message(), cancel)?;
        }
        Ok(waited)
    }
}

/// Sends a batch over several edges: copies for all but the last, which gets the batch itself. Records a lenient
/// writer cannot key go to `rejected`.
fn fan_out(
    writers: &mut [EdgeWriter],
    batch: Batch,
    cancel: &AtomicBool,
    rejected: &mut Batch,
) -> Result<Duration, TaskError> {
    let mut waited = Duration::ZERO;
    let mut batch = Some(batch);
    let count = writers.len();
    for (i, writer) in writers.iter_mut().enumerate() {
        let part = if i + 1 == count { batch.take().unwrap_or_default() } else { batch.clone().unwrap_or_default() };
        waited += writer.write(part, cancel, rejected)?;
    }
    Ok(waited)
}

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
        let link = &mut self.links[at];
        link.metrics.records_in.fetch_add(batch.len() as u64, Ordering::Relaxed);
        let mut out = std::mem::take(&mut link.out);
        let watermark = link.watermark;
        let result = link.op.process(input, batch, &mut OpContext { out: &mut out, watermark, now });
        let uid = link.metrics.uid.clone();
        result.map_err(|e| e.in_operator(&uid))?;
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
            let mut out = std::mem::take(&mut link.out);
            let result = link.op.on_watermark(&mut OpContext { out: &mut out, watermark, now });
            let uid = link.metrics.uid.clone();
            result.map_err(|e| e.in_operator(&uid))?;
            self.route(at, &mut out, now)?;
            self.links[at].out = out;
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
            let link = &mut self.links[at];
            let mut out = std::mem::take(&mut link.out);
            let watermark = link.watermark;
            let result = link.op.on_processing_time(&mut OpContext { out: &mut out, watermark, now });
            let uid = link.metrics.uid.clone();
            result.map_err(|e| e.in_operator(&uid))?;
            self.route(at, &mut out, now)?;
            self.links[at].out = out;
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

    /// Snapshots every link, in chain order.
    pub fn snapshot(&mut self, barrier: Barrier) -> Result<Vec<(String, u32, OperatorSnapshot)>, TaskError> {
        let mut snapshots = Vec::with_capacity(self.links.len());
        for link in &mut self.links {
            let uid = &link.metrics.uid;
            let snapshot = if barrier.savepoint { link.op.savepoint(barrier.id) } else { link.op.snapshot(barrier.id) };
            let snapshot = snapshot.map_err(|e| e.in_operator(uid))?;
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
            let link = &mut self.links[at];
            let mut out = std::mem::take(&mut link.out);
            let watermark = link.watermark;
            let result = link.op.finish(&mut OpContext { out: &mut out, watermark, now });
            let uid = link.metrics.uid.clone();
            result.map_err(|e| e.in_operator(&uid))?;
            self.route(at, &mut out, now)?;
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
}

impl TaskCheckpoints {
    fn ack(&self, snapshot: TaskSnapshot, checkpoint: Option<CheckpointId>) {
        let Some(acks) = &self.acks else { return };
        let ack = match checkpoint {
            Some(checkpoint) => Ack::Snapshot { checkpoint, task: self.index, snapshot },
            None => Ack::Finished { task: self.index, snapshot },
        };
        // The coordinator is gone only when the job stops.
        let _ = acks.send(ack);
    }

    fn restored_finished(&self) -> bool {
        self.restored.as_ref().is_some_and(|r| r.finished)
    }
}

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
    chain.finish(now)?;
    let source = SourceSnapshot {
        positions: runner.source.position(),
        max_timestamps: runner.watermarks.max_timestamps(),
        watermark: MAX_WATERMARK,
    };
    let snapshot =
        TaskSnapshot { task: checkpoints.name.clone(), source: Some(source), finished: true, ..Default::default() };
    checkpoints.ack(snapshot, None);
    Ok(())
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
            let operators = chain.snapshot(barrier)?;
            let snapshot =
                TaskSnapshot { task: checkpoints.name.clone(), operators, source: Some(source), ..Default::default() };
            checkpoints.ack(snapshot, Some(id));
            chain.barrier(barrier)?;
            recorded.push((id, positions));
        }
        Control::CheckpointComplete(id) => {
            chain.checkpoint_complete(id)?;
            if let Some((_, positions)) = recorded.iter().find(|(c, _)| *c == id) {
                runner.source.checkpoint_complete(id, positions);
            }
            recorded.retain(|(c, _)| *c > id);
        }
        Control::CheckpointAborted(id) => {
            chain.checkpoint_aborted(id);
            recorded.retain(|(c, _)| *c != id);
        }
    }
    Ok(())
}

/// The input side of a task.
pub struct Gate {
    channels: Vec<InputChannel>,
    open: Vec<bool>,
    watermarks: InputWatermarks,
    aligner: BarrierAligner,
}

/// What the gate received.
enum Received {
    /// A message of an input channel.
    Message(usize, Message),
    /// A control message.
    Control(Control),
    /// Nothing before the timeout.
    Nothing,
}

impl Gate {
    /// A gate over `channels`; `align` holds back inputs that delivered a barrier until all have (exactly-once).
    pub fn new(channels: Vec<InputChannel>, align: bool) -> Gate {
        let count = channels.len();
        Gate {
            channels,
            open: vec![true; count],
            watermarks: InputWatermarks::new(count),
            aligner: BarrierAligner::new(count, align),
        }
    }

    /// The next message of an open input that is not held back, or a control message, waiting up to `timeout`
    /// (none: until one comes).
    fn recv(
        &mut self,
        timeout: Option<Duration>,
        cancel: &AtomicBool,
        control: &Receiver<Control>,
    ) -> Result<Received, TaskError> {
        let open: Vec<usize> =
            (0..self.channels.len()).filter(|&i| self.open[i] && !self.aligner.is_blocked(i)).collect();
        let disconnected = || {
            if cancel.load(Ordering::Relaxed) {
                TaskError::internal("cancelled")
            } else {
                TaskError::internal("an upstream task stopped without finishing")
            }
        };
        let mut select = Select::new();
        for &i in &open {
            select.recv(&self.channels[i].rx);
        }
        let control_index = select.recv(control);
        // Selecting reserves the chosen message in its channel, and its senders spin until it is read: so it is
        // read at once, never held while this task waits for a run slot (which a spinning sender may hold). A task
        // with input waiting keeps its run slot; one that must wait gives it back meanwhile and reads what woke it
        // before it asks for a slot again.
        let received = match select.try_select() {
            Ok(operation) => Some(self.complete(operation, control_index, &open, control)),
            Err(_) => govern::blocking(|| {
                let operation = match timeout {
                    Some(timeout) => select.select_timeout(timeout).ok()?,
                    None => select.select(),
                };
                Some(self.complete(operation, control_index, &open, control))
            }),
        };
        match received {
            None | Some(Ok(None)) => Ok(Received::Nothing),
            Some(Ok(Some(received))) => Ok(received),
            Some(Err(())) => Err(disconnected()),
        }
    }

    /// Reads the message a select chose: a control message, a channel's message, or (`Err`) the channel's end.
    fn complete(
        &self,
        operation: crossbeam_channel::SelectedOperation<'_>,
        control_index: usize,
        open: &[usize],
        control: &Receiver<Control>,
    ) -> Result<Option<Received>, ()> {
        if operation.index() == control_index {
            return Ok(operation.recv(control).ok().map(Received::Control));
        }
        let channel = open[operation.index()];
        match operation.recv(&self.channels[channel].rx) {
            Ok(message) => Ok(Some(Received::Message(channel, message))),
            Err(_) => Err(()),
        }
    }
}

/// Snapshots a task with inputs once a checkpoint's barriers are aligned, and passes the barrier on.
fn aligned(barrier: Barrier, gate: &Gate, chain: &mut Chain, checkpoints: &TaskCheckpoints) -> Result<(), TaskError> {
    let operators = chain.snapshot(barrier)?;
    let (input_watermarks, watermark) = gate.watermarks.snapshot();
    let snapshot =
        TaskSnapshot { task: checkpoints.name.clone(), operators, input_watermarks, watermark, ..Default::default() };
    checkpoints.ack(snapshot, Some(barrier.id));
    chain.barrier(barrier)
}

/// Runs a task fed by channels until every input ends or the job is cancelled. It sleeps until a message, a
/// processing-time timer or a control message wakes it.
pub fn run_task(
    gate: &mut Gate,
    chain: &mut Chain,
    clock: &dyn Clock,
    cancel: &AtomicBool,
    control: &Receiver<Control>,
    checkpoints: &TaskCheckpoints,
) -> Result<(), TaskError> {
    if let Some(restored) = &checkpoints.restored {
        gate.watermarks.restore(&restored.input_watermarks, restored.watermark);
        chain.restore_watermark(restored.watermark);
    }
    govern::enter();
    // The newest barrier seen: alignment completes only the checkpoint of the newest barrier (older ones are
    // overtaken), and this says whether it is a savepoint.
    let mut newest = Barrier::checkpoint(0);
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Ok(());
        }
        govern::tick();
        let now = clock.now();
        let message = gate.recv(until(chain.next_processing_timer(), now), cancel, control)?;
        // The wait may have been long: operators see the time the message arrived.
        let now = clock.now();
        match message {
            Received::Message(channel, Message::Batch(batch)) => {
                let input = gate.channels[channel].input;
                chain.push(0, input, batch, now)?;
            }
            Received::Message(channel, Message::Barrier(barrier)) => {
                newest = barrier;
                let (result, overtaken) = gate.aligner.on_barrier(channel, barrier.id);
                if let Some(old) = overtaken {
                    chain.checkpoint_aborted(old);
                }
                if let Aligned::Complete(id) = result {
                    aligned(Barrier { id, savepoint: newest.savepoint }, gate, chain, checkpoints)?;
                }
            }
            Received::Message(channel, Message::Watermark(w)) => {
                if let Some(advanced) = gate.watermarks.on_watermark(channel, w) {
                    chain.watermark(advanced, now)?;
                }
            }
            Received::Message(channel, Message::Idle(idle)) => {
                let (advanced, change) = gate.watermarks.on_status(channel, idle);
                if let Some(w) = advanced {
                    chain.watermark(w, now)?;
                }
                if let Some(change) = change {
                    chain.status(change == StatusChange::BecameIdle)?;
                }
            }
            Received::Message(channel, Message::End) => {
                gate.open[channel] = false;
                if let Some(w) = gate.watermarks.on_end(channel) {
                    chain.watermark(w, now)?;
                }
                if let Aligned::Complete(id) = gate.aligner.on_end(channel) {
                    aligned(Barrier { id, savepoint: newest.savepoint }, gate, chain, checkpoints)?;
                }
                if gate.watermarks.all_ended() {
                    if gate.watermarks.current() < MAX_WATERMARK {
                        chain.watermark(MAX_WATERMARK, now)?;
                    }
                    chain.finish(now)?;
                    let snapshot =
                        TaskSnapshot { task: checkpoints.name.clone(), finished: true, ..Default::default() };
                    checkpoints.ack(snapshot, None);
                    return Ok(());
                }
            }
            Received::Control(Control::CheckpointComplete(id)) => chain.checkpoint_complete(id)?,
            Received::Control(Control::CheckpointAborted(id)) => {
                gate.aligner.abort(id);
                chain.checkpoint_aborted(id);
            }
            // Stopping is read from the cancel flag; checkpoints start at sources only.
            Received::Control(Control::Stop | Control::Checkpoint(_) | Control::Suspend { .. } | Control::Resume)
            | Received::Nothing => {}
        }
        let now = clock.now();
        if chain.next_processing_timer().is_some_and(|t| t <= now) {
            chain.processing_time(now)?;
        }
    }
}
