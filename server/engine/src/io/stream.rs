//! Output streams: records a job publishes for HTTP clients. A stream keeps its most recent records, so a client
//! that connects late (or after the job finished) still sees them, then follows new ones live.

use eddy_codec::Batch;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::broadcast;

/// One published record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRecord {
    /// Position in the stream, from 0.
    pub seq: u64,
    /// Event time.
    pub timestamp: i64,
    /// Key, if any.
    pub key: Option<Vec<u8>>,
    /// Value.
    pub value: Vec<u8>,
}

impl OutputRecord {
    /// The record as `{"ts":..,"key":..,"value":..}`: a value that is JSON is embedded as JSON, anything else as a
    /// string (bytes that are not UTF-8 are replaced).
    pub fn to_json(&self) -> serde_json::Value {
        record_json(self.timestamp, self.key.as_deref(), &self.value)
    }
}

/// A record as JSON, the way output streams and golden tests show it.
pub fn record_json(timestamp: i64, key: Option<&[u8]>, value: &[u8]) -> serde_json::Value {
    let value = serde_json::from_slice::<serde_json::Value>(value)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(value).into_owned()));
    let mut out = serde_json::json!({ "ts": timestamp, "value": value });
    if let Some(key) = key {
        out["key"] = serde_json::Value::String(String::from_utf8_lossy(key).into_owned());
    }
    out
}

struct Inner {
    retained: VecDeque<Arc<OutputRecord>>,
    next_seq: u64,
    sender: Option<broadcast::Sender<Arc<OutputRecord>>>,
}

/// A job's output stream.
pub struct OutputStream {
    inner: Mutex<Inner>,
    capacity: usize,
}

impl std::fmt::Debug for OutputStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputStream").field("capacity", &self.capacity).finish()
    }
}

/// What a new client receives: the retained records, then live ones until the stream closes.
pub struct Subscription {
    /// Records published before the client connected (the most recent ones).
    pub backlog: Vec<Arc<OutputRecord>>,
    /// Records published from now on; closed when the job ends.
    pub live: broadcast::Receiver<Arc<OutputRecord>>,
}

impl OutputStream {
    /// A stream retaining the last `capacity` records.
    pub fn new(capacity: usize) -> OutputStream {
        let (sender, _) = broadcast::channel(capacity.clamp(16, 65_536));
        OutputStream {
            inner: Mutex::new(Inner { retained: VecDeque::new(), next_seq: 0, sender: Some(sender) }),
            capacity,
        }
    }

    /// Publishes records.
    pub fn publish(&self, batch: &Batch) {
        let mut inner = self.inner.lock();
        for record in batch.iter() {
            let record = Arc::new(OutputRecord {
                seq: inner.next_seq,
                timestamp: record.timestamp,
                key: record.key.map(<[u8]>::to_vec),
                value: record.value.to_vec(),
            });
            inner.next_seq += 1;
            if let Some(sender) = &inner.sender {
                // No receiver is not an error: the record is retained for later clients.
                let _ = sender.send(Arc::clone(&record));
            }
            if inner.retained.len() == self.capacity {
                inner.retained.pop_front();
            }
            inner.retained.push_back(record);
        }
    }

    /// Ends the stream: clients get the end after the records before it.
    pub fn close(&self) {
        self.inner.lock().sender = None;
    }

    /// Connects a client.
    pub fn subscribe(&self) -> Subscription {
        let inner = self.inner.lock();
        let backlog = inner.retained.iter().cloned().collect();
        let live = match &inner.sender {
            Some(sender) => sender.subscribe(),
            None => broadcast::channel(1).1,
        };
        Subscription { backlog, live }
    }

    /// Number of records published so far.
    pub fn published(&self) -> u64 {
        self.inner.lock().next_seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_clients_get_the_backlog_then_live_records() {
        let stream = OutputStream::new(2);
        let mut batch = Batch::new();
        for i in 0..3 {
            batch.push(i, None, format!("v{i}").as_bytes());
        }
        stream.publish(&batch);
        let mut sub = stream.subscribe();
        let backlog: Vec<u64> = sub.backlog.iter().map(|r| r.seq).collect();
        assert_eq!(backlog, vec![1, 2], "the last two records are retained");
        stream.publish(&batch);
        assert_eq!(sub.live.try_recv().map(|r| r.seq), Ok(3));
        stream.close();
        let mut after = stream.subscribe();
        assert_eq!(after.backlog.len(), 2);
        assert!(matches!(after.live.try_recv(), Err(broadcast::error::TryRecvError::Closed)));
        assert_eq!(stream.published(), 6);
    }
}
