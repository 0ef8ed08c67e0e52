//! Output streams: records a job publishes for HTTP clients. A stream keeps its most recent records, bounded in
//! count and in bytes, so a client that connects late (or after the job finished) still sees them, then follows
//! new ones live. The records are kept once, however many clients read: each client holds only a cursor (the next
//! sequence number it wants), so a client that never reads costs nothing but that number. A client that falls
//! behind what is kept is told how many records it missed. A record is rendered for clients (as a server-sent
//! event) once, however many read it at the same time, and the rendering lives only while a client holds it.

use crate::memory::{MemoryBudget, MemoryReservation};
use eddy_codec::Batch;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use tokio::sync::watch;

/// One published record.
#[derive(Debug)]
pub struct OutputRecord {
    /// Position in the stream, from 0.
    pub seq: u64,
    /// Event time.
    pub timestamp: i64,
    /// Key, if any.
    pub key: Option<Vec<u8>>,
    /// Value.
    pub value: Vec<u8>,
    /// Its server-sent event in each [`EventFormat`], while some client holds it.
    events: [Mutex<Option<Weak<[u8]>>>; 2],
}

/// How a record is sent to a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventFormat {
    /// `{"ts":..,"key":..,"value":..}` (see [`OutputRecord::to_json`]).
    Json,
    /// The value's bytes as text.
    Raw,
}

impl OutputRecord {
    fn new(seq: u64, timestamp: i64, key: Option<Vec<u8>>, value: Vec<u8>) -> OutputRecord {
        OutputRecord { seq, timestamp, key, value, events: Default::default() }
    }

    /// The record as a server-sent event (`id`, `event: record`, its data), rendered once for every client that
    /// reads it while another holds it.
    pub fn sse_event(&self, format: EventFormat) -> Arc<[u8]> {
        let mut cached = self.events[format as usize].lock();
        if let Some(event) = cached.as_ref().and_then(Weak::upgrade) {
            return event;
        }
        let mut event = format!("id: {}\nevent: record\n", self.seq).into_bytes();
        match format {
            EventFormat::Json => {
                event.extend_from_slice(b"data: ");
                self.write_json(&mut event);
                event.push(b'\n');
            }
            EventFormat::Raw => {
                // A data field ends at a line break of any kind: each line of the value is a field of its own.
                let text = String::from_utf8_lossy(&self.value);
                for line in text.split("\r\n").flat_map(|l| l.split(['\r', '\n'])) {
                    event.extend_from_slice(b"data: ");
                    event.extend_from_slice(line.as_bytes());
                    event.push(b'\n');
                }
            }
        }
        event.push(b'\n');
        let event: Arc<[u8]> = event.into();
        *cached = Some(Arc::downgrade(&event));
        event
    }

    /// Writes what [`OutputRecord::to_json`] returns, on one line, without building it: a value that is JSON is
    /// copied as it is (its line breaks, whitespace outside strings, become spaces).
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(format!("{{\"ts\":{},\"value\":", self.timestamp).as_bytes());
        if serde_json::from_slice::<serde::de::IgnoredAny>(&self.value).is_ok() {
            out.extend(self.value.iter().map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }));
        } else {
            // Writing a string into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, &String::from_utf8_lossy(&self.value));
        }
        if let Some(key) = &self.key {
            out.extend_from_slice(b",\"key\":");
            let _ = serde_json::to_writer(&mut *out, &String::from_utf8_lossy(key));
        }
        out.push(b'}');
    }

    /// The record as `{"ts":..,"key":..,"value":..}`: a value that is JSON is embedded as JSON, anything else as a
    /// string (bytes that are not UTF-8 are replaced).
    pub fn to_json(&self) -> serde_json::Value {
        record_json(self.timestamp, self.key.as_deref(), &self.value)
    }

    /// Bytes the record holds, as counted against a stream's byte budget.
    fn weight(&self) -> usize {
        weight_of(self.key.as_deref(), &self.value)
    }
}

/// Bytes a record holds, as counted against a stream's byte budget.
fn weight_of(key: Option<&[u8]>, value: &[u8]) -> usize {
    value.len() + key.map_or(0, <[u8]>::len) + 64
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

/// How much of its output a stream keeps for clients: whichever bound is reached first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Most records kept.
    pub records: usize,
    /// Most bytes kept (values, keys and a fixed overhead per record). The newest record is kept even if it alone
    /// is larger.
    pub bytes: usize,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention { records: 10_000, bytes: 16 << 20 }
    }
}

struct Inner {
    retained: VecDeque<Arc<OutputRecord>>,
    bytes: usize,
    next_seq: u64,
    /// What the retained records are charged to.
    charged: MemoryReservation,
}

/// A job's output stream.
pub struct OutputStream {
    inner: Mutex<Inner>,
    retention: Retention,
    /// The next sequence number to be published, and whether the stream has ended.
    progress: watch::Sender<(u64, bool)>,
}

impl std::fmt::Debug for OutputStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputStream").field("retention", &self.retention).finish()
    }
}

/// What a client gets from one read.
#[derive(Debug)]
pub enum Chunk {
    /// Records in order; `skipped` records before them were dropped from the stream before this client read them.
    Records {
        /// Records no longer kept that this client did not see.
        skipped: u64,
        /// The records, oldest first.
        records: Vec<Arc<OutputRecord>>,
    },
    /// Nothing new yet: wait with [`Subscription::changed`].
    Pending,
    /// The stream has ended and this client has seen all of it.
    Ended,
}

/// A client's position in a stream: the oldest kept record when it connected, then onwards.
pub struct Subscription {
    stream: Arc<OutputStream>,
    next: u64,
    progress: watch::Receiver<(u64, bool)>,
}

impl Subscription {
    /// Up to `max` records from the client's position on.
    pub fn read(&mut self, max: usize) -> Chunk {
        let (chunk, next) = self.stream.read_from(self.next, max);
        self.next = next;
        chunk
    }

    /// Waits until something is published or the stream ends.
    pub async fn changed(&mut self) {
        // An error means the stream is gone, which `read` then reports as ended.
        let _ = self.progress.changed().await;
    }
}

impl Inner {
    fn drop_oldest(&mut self) {
        if let Some(old) = self.retained.pop_front() {
            self.bytes -= old.weight();
        }
    }

    fn charge(&mut self) -> Result<(), String> {
        self.charged.resize(self.bytes)
    }
}

impl OutputStream {
    /// A stream keeping what `retention` allows.
    pub fn new(retention: Retention) -> OutputStream {
        let (progress, _) = watch::channel((0, false));
        OutputStream {
            inner: Mutex::new(Inner {
                retained: VecDeque::new(),
                bytes: 0,
                next_seq: 0,
                charged: MemoryReservation::default(),
            }),
            retention,
            progress,
        }
    }

    /// The same stream, with the records it keeps charged to `budget` (a tenant's: the stream outlives a job's
    /// runs).
    pub fn charged_to(self, budget: Option<&Arc<MemoryBudget>>) -> OutputStream {
        // A reservation of nothing cannot be refused.
        if let Ok(charged) = MemoryReservation::take(budget, 0) {
            self.inner.lock().charged = charged;
        }
        self
    }

    /// Publishes records. When the budget the stream is charged to cannot hold a record even with every older one
    /// dropped, the record is not kept (clients following the stream miss it, and are told so) and the error names
    /// the budget.
    pub fn publish(&self, batch: &Batch) -> Result<(), String> {
        let mut refused = None;
        let mut inner = self.inner.lock();
        for record in batch.iter() {
            let seq = inner.next_seq;
            inner.next_seq += 1;
            // Room is made and charged before the record is copied, so one that does not fit is never held.
            let weight = weight_of(record.key, record.value);
            inner.bytes += weight;
            while !inner.retained.is_empty()
                && (inner.retained.len() >= self.retention.records || inner.bytes > self.retention.bytes)
            {
                inner.drop_oldest();
            }
            let mut fits = true;
            while let Err(e) = inner.charge() {
                if inner.retained.is_empty() {
                    inner.bytes -= weight;
                    (fits, refused) = (false, Some(e));
                    // Charging less cannot fail: what the dropped records held goes back.
                    let _ = inner.charge();
                    break;
                }
                inner.drop_oldest();
            }
            if fits {
                let (key, value) = (record.key.map(<[u8]>::to_vec), record.value.to_vec());
                inner.retained.push_back(Arc::new(OutputRecord::new(seq, record.timestamp, key, value)));
            }
        }
        let next = inner.next_seq;
        drop(inner);
        self.progress.send_modify(|p| p.0 = next);
        refused.map_or(Ok(()), Err)
    }

    /// Ends the stream: clients get the end after the records before it.
    pub fn close(&self) {
        self.progress.send_modify(|p| p.1 = true);
    }

    /// Connects a client at the oldest record kept.
    pub fn subscribe(self: &Arc<Self>) -> Subscription {
        let next = {
            let inner = self.inner.lock();
            inner.retained.front().map_or(inner.next_seq, |r| r.seq)
        };
        Subscription { stream: Arc::clone(self), next, progress: self.progress.subscribe() }
    }

    /// The records kept now, oldest first.
    pub fn retained(&self) -> Vec<Arc<OutputRecord>> {
        self.inner.lock().retained.iter().cloned().collect()
    }

    /// Number of records published so far.
    pub fn published(&self) -> u64 {
        self.inner.lock().next_seq
    }

    fn read_from(&self, next: u64, max: usize) -> (Chunk, u64) {
        // Read `closed` before the records: a record published before the close is then always seen first.
        let closed = self.progress.borrow().1;
        let inner = self.inner.lock();
        let oldest = inner.retained.front().map_or(inner.next_seq, |r| r.seq);
        let start = next.max(oldest);
        if start >= inner.next_seq {
            return (if closed { Chunk::Ended } else { Chunk::Pending }, start);
        }
        let skip = (start - oldest) as usize;
        let records: Vec<Arc<OutputRecord>> = inner.retained.iter().skip(skip).take(max.max(1)).cloned().collect();
        let after = records.last().map_or(start, |r| r.seq + 1);
        (Chunk::Records { skipped: start - next, records }, after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(values: &[&str]) -> Batch {
        let mut batch = Batch::new();
        for (i, v) in values.iter().enumerate() {
            batch.push(i as i64, None, v.as_bytes());
        }
        batch
    }

    fn seqs(chunk: Chunk) -> (u64, Vec<u64>) {
        match chunk {
            Chunk::Records { skipped, records } => (skipped, records.iter().map(|r| r.seq).collect()),
            other => panic!("expected records, got {other:?}"),
        }
    }

    #[test]
    fn late_clients_get_the_backlog_then_live_records() {
        let stream = Arc::new(OutputStream::new(Retention { records: 2, bytes: 1 << 20 }));
        stream.publish_ok(&batch(&["v0", "v1", "v2"]));
        let mut client = stream.subscribe();
        assert_eq!(seqs(client.read(10)), (0, vec![1, 2]), "the last two records are retained");
        assert!(matches!(client.read(10), Chunk::Pending));
        stream.publish_ok(&batch(&["v3", "v4", "v5"]));
        assert_eq!(seqs(client.read(1)), (1, vec![4]), "record 3 is no longer kept; reads are bounded by `max`");
        stream.close();
        assert_eq!(seqs(client.read(10)), (0, vec![5]), "records before the end come first");
        assert!(matches!(client.read(10), Chunk::Ended));
        let mut after = stream.subscribe();
        assert_eq!(seqs(after.read(10)), (0, vec![4, 5]));
        assert!(matches!(after.read(10), Chunk::Ended));
        assert_eq!(stream.published(), 6);
    }

    #[test]
    fn retention_is_bounded_in_bytes_and_slow_clients_learn_what_they_missed() {
        let big = "x".repeat(1000);
        let stream = Arc::new(OutputStream::new(Retention { records: 1_000_000, bytes: 10_000 }));
        let mut slow = stream.subscribe();
        for _ in 0..100 {
            stream.publish_ok(&batch(&[big.as_str()]));
        }
        let kept = stream.retained();
        let bytes: usize = kept.iter().map(|r| r.weight()).sum();
        assert!(bytes <= 10_000 && kept.len() == 9, "kept {} records, {bytes} bytes", kept.len());
        let (skipped, records) = seqs(slow.read(100));
        assert_eq!(skipped, 91, "the client is told how many records it missed");
        assert_eq!(records.first(), Some(&91));
        // One record larger than the whole budget is still delivered.
        let huge = "y".repeat(20_000);
        stream.publish_ok(&batch(&[huge.as_str()]));
        assert_eq!(stream.retained().len(), 1);
    }

    #[test]
    fn clients_hold_no_copies() {
        let stream = Arc::new(OutputStream::new(Retention::default()));
        stream.publish_ok(&batch(&["a", "b"]));
        let idle: Vec<Subscription> = (0..1000).map(|_| stream.subscribe()).collect();
        let record = stream.retained().remove(0);
        // The stream's copy, the one just taken: a thousand idle clients add none.
        assert_eq!(Arc::strong_count(&record), 2);
        drop(idle);
    }

    #[tokio::test]
    async fn a_waiting_client_wakes_on_publish_and_on_close() {
        let stream = Arc::new(OutputStream::new(Retention::default()));
        let mut client = stream.subscribe();
        assert!(matches!(client.read(10), Chunk::Pending));
        let publisher = Arc::clone(&stream);
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            loop {
                match client.read(10) {
                    Chunk::Records { records, .. } => seen.extend(records.iter().map(|r| r.seq)),
                    Chunk::Pending => client.changed().await,
                    Chunk::Ended => return seen,
                }
            }
        });
        publisher.publish_ok(&batch(&["a"]));
        publisher.publish_ok(&batch(&["b", "c"]));
        publisher.close();
        assert_eq!(task.await.expect("reader"), vec![0, 1, 2]);
    }

    impl OutputStream {
        fn publish_ok(&self, batch: &Batch) {
            self.publish(batch).expect("no budget to refuse");
        }
    }

    #[test]
    fn kept_records_are_charged_and_one_past_the_budget_is_refused() {
        let budget = MemoryBudget::new("tenant acme", 3_000, None);
        let stream = OutputStream::new(Retention::default()).charged_to(Some(&budget));
        let record = "x".repeat(1_000);
        stream.publish_ok(&batch(&[record.as_str(), record.as_str()]));
        assert_eq!(budget.used(), 2 * 1_064);
        // A third record does not fit beside the two: the oldest goes.
        stream.publish_ok(&batch(&[record.as_str()]));
        assert_eq!((stream.retained().len(), budget.used()), (2, 2 * 1_064));
        let huge = "y".repeat(5_000);
        let refused = stream.publish(&batch(&[huge.as_str()])).expect_err("past the budget");
        assert!(refused.contains("tenant acme"), "{refused}");
        assert_eq!((stream.retained().len(), budget.used(), stream.published()), (0, 0, 4));
        drop(stream);
        assert_eq!(budget.used(), 0);
    }

    fn data_of(event: &[u8]) -> String {
        let text = std::str::from_utf8(event).expect("UTF-8");
        text.lines().filter_map(|l| l.strip_prefix("data: ")).collect::<Vec<_>>().join("\n")
    }

    #[test]
    fn events_carry_what_to_json_shows_on_one_line() {
        let stream = OutputStream::new(Retention::default());
        let mut values = Batch::new();
        values.push(5, Some(b"k"), b"{\"a\":\n [1, \"x\\ny\"]}");
        values.push(6, None, b"not json\n\"quoted\"");
        values.push(7, None, &[0xff, b'a']);
        stream.publish_ok(&values);
        for record in stream.retained() {
            let event = record.sse_event(EventFormat::Json);
            let text = std::str::from_utf8(&event).expect("UTF-8");
            assert!(text.starts_with(&format!("id: {}\nevent: record\ndata: ", record.seq)), "{text}");
            assert!(text.ends_with("\n\n") && text.matches('\n').count() == 4, "one data line: {text:?}");
            let shown: serde_json::Value = serde_json::from_str(&data_of(&event)).expect("JSON");
            assert_eq!(shown, record.to_json());
        }
    }

    #[test]
    fn raw_events_give_each_line_its_own_field() {
        let stream = OutputStream::new(Retention::default());
        stream.publish_ok(&batch(&["one\r\ntwo\rthree\nfour"]));
        let event = stream.retained()[0].sse_event(EventFormat::Raw);
        assert_eq!(data_of(&event), "one\ntwo\nthree\nfour");
    }

    #[test]
    fn clients_reading_at_once_share_one_rendering_that_ends_with_them() {
        let stream = OutputStream::new(Retention::default());
        stream.publish_ok(&batch(&["{\"big\":1}"]));
        let record = stream.retained().remove(0);
        let first = record.sse_event(EventFormat::Json);
        let second = record.sse_event(EventFormat::Json);
        assert!(Arc::ptr_eq(&first, &second), "rendered once while held");
        let weak = Arc::downgrade(&first);
        drop((first, second));
        assert!(weak.upgrade().is_none(), "the record keeps no rendering nobody holds");
        assert_eq!(data_of(&record.sse_event(EventFormat::Json)), "{\"ts\":0,\"value\":{\"big\":1}}");
    }
}
