//! The sending side of a task: how a batch leaving a chain reaches the channels of the next tasks (forward,
//! round robin, or by key group), and backpressure measured as the time spent waiting on full channels.

use super::channel::{ChannelSender, Message};
use super::metrics::OperatorMetrics;
use crate::error::TaskError;
use crate::function::KeySelectorFunction;
use crate::json::JsonPath;
use crate::keys::{key_group, subtask_of};
use eddy_codec::Batch;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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
    pub(super) fn write(
        &mut self,
        mut batch: Batch,
        cancel: &AtomicBool,
        rejected: &mut Batch,
    ) -> Result<Duration, TaskError> {
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

    pub(super) fn broadcast(&self, message: impl Fn() -> Message, cancel: &AtomicBool) -> Result<Duration, TaskError> {
        let mut waited = Duration::ZERO;
        for sender in &self.senders {
            waited += sender.send(message(), cancel)?;
        }
        Ok(waited)
    }
}

/// Sends a batch over several edges: copies for all but the last, which gets the batch itself. Records a lenient
/// writer cannot key go to `rejected`.
pub(super) fn fan_out(
    writers: &mut [EdgeWriter],
    batch: Batch,
    cancel: &AtomicBool,
    rejected: &mut Batch,
) -> Result<Duration, TaskError> {
    let mut waited = Duration::ZERO;
    let mut batch = Some(batch);
    let count = writers.len();
    for (i, writer) in writers.iter_mut().enumerate() {
        // Every output but the last gets a copy sharing the batch's bytes: a fan-out holds them once.
        let part = match &mut batch {
            Some(whole) if i + 1 < count => whole.share(),
            _ => batch.take().unwrap_or_default(),
        };
        waited += writer.write(part, cancel, rejected)?;
    }
    Ok(waited)
}
