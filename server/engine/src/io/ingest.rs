//! Records POSTed into a running job over HTTP.

use super::{Source, SourcePoll, Wake};
use crate::error::TaskError;
use crossbeam_channel::{Receiver, Select, SendTimeoutError, Sender, TryRecvError};
use eddy_codec::Batch;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

enum Ingest {
    Records(Batch),
    Close,
}

/// Why records were not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// The job no longer reads this input.
    #[error("the job is not running, or its input was closed")]
    Closed,
    /// The job did not take the records in time (it is backpressured).
    #[error("the job is busy; retry later")]
    Busy,
}

/// The writing end of an HTTP source, held by the API.
#[derive(Clone)]
pub struct IngestHandle {
    tx: Sender<Ingest>,
    closed: Arc<AtomicBool>,
}

impl std::fmt::Debug for IngestHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestHandle").field("closed", &self.closed.load(Ordering::Relaxed)).finish()
    }
}

/// How long a POST waits for a backpressured job.
const INGEST_WAIT: Duration = Duration::from_secs(30);

impl IngestHandle {
    /// Hands records to the job, waiting while it is backpressured.
    pub fn push(&self, batch: Batch) -> Result<(), IngestError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(IngestError::Closed);
        }
        match self.tx.send_timeout(Ingest::Records(batch), INGEST_WAIT) {
            Ok(()) => Ok(()),
            Err(SendTimeoutError::Timeout(_)) => Err(IngestError::Busy),
            Err(SendTimeoutError::Disconnected(_)) => Err(IngestError::Closed),
        }
    }

    /// Ends the input: the source finishes once earlier records are read, and event time reaches its end.
    pub fn close(&self) -> Result<(), IngestError> {
        if self.closed.swap(true, Ordering::SeqCst) {
            return Err(IngestError::Closed);
        }
        self.tx.send_timeout(Ingest::Close, INGEST_WAIT).map_err(|_| IngestError::Closed)
    }
}

/// The reading end, run by the source task.
pub struct IngestSource {
    rx: Receiver<Ingest>,
}

impl IngestSource {
    /// A connected handle and source.
    pub fn new() -> (IngestHandle, IngestSource) {
        let (tx, rx) = crossbeam_channel::bounded(64);
        (IngestHandle { tx, closed: Arc::new(AtomicBool::new(false)) }, IngestSource { rx })
    }
}

impl Source for IngestSource {
    fn uses_arrival_time(&self) -> bool {
        true
    }

    fn poll(&mut self, batch: &mut Batch, _max: usize) -> Result<SourcePoll, TaskError> {
        match self.rx.try_recv() {
            Ok(Ingest::Records(records)) => {
                batch.extend_from(&records);
                Ok(SourcePoll::Records { split: 0 })
            }
            Ok(Ingest::Close) | Err(TryRecvError::Disconnected) => Ok(SourcePoll::Finished),
            Err(TryRecvError::Empty) => Ok(SourcePoll::Pending),
        }
    }

    fn wait(&mut self, wake: &Receiver<Wake>, timeout: Option<Duration>) {
        // Sleeps until a POST arrives (or the task is woken): an idle HTTP source costs nothing.
        let mut select = Select::new();
        select.recv(&self.rx);
        select.recv(wake);
        let _ = match timeout {
            Some(timeout) => select.ready_timeout(timeout).ok(),
            None => Some(select.ready()),
        };
    }
}
