//! Built-in sources and sinks that need nothing installed: the benchmark generator, JSON-lines files, records
//! POSTed over HTTP, standard output, and output streams that HTTP clients read; and the two-phase commit that
//! exactly-once sinks share.

mod connectors;
mod file;
mod generator;
mod ingest;
mod sinks;
mod stream;
mod two_phase;

pub(crate) use connectors::missing as missing_connector;
pub use connectors::{ConnectorContext, ConnectorReport, Connectors, PartitionReport, ReportSlot, TransactionReport};
pub use file::{FileRoots, FileSink, FileSource};
pub use generator::{BENCH_BASE_TS, GeneratedEvent, GeneratorSource, generate};
pub use ingest::{IngestError, IngestHandle, IngestLog, IngestSource, RecordSink, ValueSink};
pub use sinks::{DiscardSink, HttpSink, OutputRate, RateLimited, StdoutSink};
pub use stream::{Chunk, EventFormat, OutputRecord, OutputStream, Retention, Subscription, record_json};
pub use two_phase::PreCommits;

use crate::checkpoint::{CheckpointId, SplitPosition};
use crate::error::TaskError;
use eddy_codec::Batch;

/// What a source produced in one poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourcePoll {
    /// Records of `split` were appended.
    Records {
        /// The split they came from (watermarks are tracked per split).
        split: usize,
    },
    /// Nothing available right now.
    Pending,
    /// The source has no more records, ever.
    Finished,
}

/// A source subtask.
pub trait Source: Send {
    /// Number of splits this subtask reads.
    fn split_count(&self) -> usize {
        1
    }

    /// Whether records carry no event time of their own, so arrival time is used unless the spec says otherwise.
    fn uses_arrival_time(&self) -> bool {
        false
    }

    /// Where each split has read to, by stable split id: what a checkpoint records.
    fn position(&self) -> Vec<SplitPosition> {
        Vec::new()
    }

    /// Goes back to positions a checkpoint recorded, before the first poll. Splits it does not name start
    /// from the beginning.
    fn restore(&mut self, _positions: &[SplitPosition]) -> Result<(), TaskError> {
        Ok(())
    }

    /// Checkpoint `checkpoint`, which recorded `positions`, completed: input before them is no longer needed.
    fn checkpoint_complete(&mut self, _checkpoint: CheckpointId, _positions: &[SplitPosition]) {}

    /// Appends up to `max` records of one split to `batch`, without waiting.
    fn poll(&mut self, batch: &mut Batch, max: usize) -> Result<SourcePoll, TaskError>;

    /// Records the last poll read but could not make sense of (not JSON, no event time), as they came, with why
    /// the first one was refused. The task sets them aside as the source's `on_error` says, or fails with the
    /// reason if it says `fail`. Their positions are behind the source: they are never read again.
    fn take_unreadable(&mut self) -> Option<(Batch, String)> {
        None
    }

    /// After a `Pending` poll: waits until records may be there, `timeout` passes (none: no limit) or `wake` becomes
    /// ready (it is not received from). Sources whose records arrive from elsewhere wait on that; the default,
    /// for sources that are pending only briefly (a paced generator), naps for at most a few milliseconds.
    fn wait(&mut self, wake: &crossbeam_channel::Receiver<Wake>, timeout: Option<std::time::Duration>) {
        let nap = std::time::Duration::from_millis(5);
        let mut select = crossbeam_channel::Select::new();
        select.recv(wake);
        let _ = select.ready_timeout(timeout.map_or(nap, |t| t.min(nap)));
    }
}

/// A name no other call in this process (or another process now) returns, for temporary files and folders.
pub(crate) fn unique_name() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}-{nanos}-{n}", std::process::id())
}

/// What wakes a waiting source besides its own records: the task's control messages.
pub type Wake = crate::control::Control;
