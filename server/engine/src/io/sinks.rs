//! Sinks: standard output, HTTP output streams, and a discarding sink that counts.

use super::OutputStream;
use crate::checkpoint::{CheckpointId, ChunkReader, ChunkWriter, OperatorSnapshot};
use crate::error::TaskError;
use crate::operator::{OpContext, Operator};
use eddy_codec::Batch;
use std::io::Write;
use std::sync::Arc;

/// Prints each record's value as a line on the server's standard output.
#[derive(Debug, Default)]
pub struct StdoutSink;

impl Operator for StdoutSink {
    fn process(&mut self, _: usize, batch: Batch, _: &mut OpContext<'_>) -> Result<(), TaskError> {
        let mut out = std::io::stdout().lock();
        for record in batch.iter() {
            let written = out.write_all(record.value).and_then(|()| out.write_all(b"\n"));
            written.map_err(|e| TaskError::external(format!("cannot write to standard output: {e}")))?;
        }
        out.flush().map_err(|e| TaskError::external(format!("cannot write to standard output: {e}")))
    }
}

/// Publishes records to an [`OutputStream`] that HTTP clients read.
pub struct HttpSink {
    stream: Arc<OutputStream>,
}

impl HttpSink {
    /// A sink writing to `stream`.
    pub fn new(stream: Arc<OutputStream>) -> HttpSink {
        HttpSink { stream }
    }
}

impl Operator for HttpSink {
    fn process(&mut self, _: usize, batch: Batch, _: &mut OpContext<'_>) -> Result<(), TaskError> {
        self.stream.publish(&batch).map_err(|e| {
            TaskError::user(format!("the HTTP sink cannot keep its newest record for the clients that read it: {e}"))
        })
    }
}

/// Drops records; an optional inspector sees each batch first (benchmarks count and fingerprint there).
pub struct DiscardSink {
    inspector: Option<Box<dyn FnMut(&Batch) + Send>>,
}

impl DiscardSink {
    /// A sink that only counts (the operator's records-in counter).
    pub fn new() -> DiscardSink {
        DiscardSink { inspector: None }
    }

    /// A sink that shows every batch to `inspector`.
    pub fn inspecting(inspector: Box<dyn FnMut(&Batch) + Send>) -> DiscardSink {
        DiscardSink { inspector: Some(inspector) }
    }
}

impl Default for DiscardSink {
    fn default() -> Self {
        DiscardSink::new()
    }
}

impl Operator for DiscardSink {
    fn process(&mut self, _: usize, batch: Batch, _: &mut OpContext<'_>) -> Result<(), TaskError> {
        if let Some(inspect) = &mut self.inspector {
            inspect(&batch);
        }
        Ok(())
    }
}

/// Records per second a tenant's sinks may write together: a token bucket that holds up to one second's worth.
/// A sink that finds it empty waits (its task backpressures upstream), so nothing is lost.
#[derive(Debug)]
pub struct OutputRate {
    per_second: f64,
    bucket: parking_lot::Mutex<(f64, std::time::Instant)>,
}

impl OutputRate {
    /// A bucket refilled at `per_second` records per second, full at the start.
    pub fn new(per_second: u64) -> Arc<OutputRate> {
        let per_second = per_second.max(1) as f64;
        Arc::new(OutputRate { per_second, bucket: parking_lot::Mutex::new((per_second, std::time::Instant::now())) })
    }

    /// Takes `records` tokens as of `now`; returns how long the writer must wait before writing them (the tokens
    /// may go into debt, so a batch larger than the bucket waits its whole share).
    pub fn take_at(&self, records: usize, now: std::time::Instant) -> std::time::Duration {
        let mut bucket = self.bucket.lock();
        let (tokens, last) = *bucket;
        let refilled =
            (tokens + now.saturating_duration_since(last).as_secs_f64() * self.per_second).min(self.per_second);
        let left = refilled - records as f64;
        *bucket = (left, now);
        if left >= 0.0 {
            std::time::Duration::ZERO
        } else {
            std::time::Duration::from_secs_f64(-left / self.per_second)
        }
    }
}

/// A sink whose writes are held to its tenant's output rate.
pub struct RateLimited {
    inner: Box<dyn Operator>,
    rate: Arc<OutputRate>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl RateLimited {
    /// `inner`, writing no faster than `rate` allows; waits end early when `stop` is raised.
    pub fn new(
        inner: Box<dyn Operator>,
        rate: Arc<OutputRate>,
        stop: Arc<std::sync::atomic::AtomicBool>,
    ) -> RateLimited {
        RateLimited { inner, rate, stop }
    }
}

impl Operator for RateLimited {
    fn process(&mut self, input: usize, batch: Batch, ctx: &mut OpContext<'_>) -> Result<(), TaskError> {
        let wait = self.rate.take_at(batch.len(), std::time::Instant::now());
        if !wait.is_zero() {
            let until = std::time::Instant::now() + wait;
            crate::runtime::govern::blocking(|| {
                while !self.stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let left = until.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    std::thread::sleep(left.min(std::time::Duration::from_millis(50)));
                }
            });
        }
        self.inner.process(input, batch, ctx)
    }

    fn on_watermark(&mut self, ctx: &mut OpContext<'_>) -> Result<(), TaskError> {
        self.inner.on_watermark(ctx)
    }

    fn on_processing_time(&mut self, ctx: &mut OpContext<'_>) -> Result<(), TaskError> {
        self.inner.on_processing_time(ctx)
    }

    fn next_processing_timer(&self) -> Option<i64> {
        self.inner.next_processing_timer()
    }

    fn finish(&mut self, ctx: &mut OpContext<'_>) -> Result<(), TaskError> {
        self.inner.finish(ctx)
    }

    fn snapshot(&mut self, checkpoint: CheckpointId, chunks: &mut ChunkWriter) -> Result<OperatorSnapshot, TaskError> {
        self.inner.snapshot(checkpoint, chunks)
    }

    fn savepoint(&mut self, checkpoint: CheckpointId, chunks: &mut ChunkWriter) -> Result<OperatorSnapshot, TaskError> {
        self.inner.savepoint(checkpoint, chunks)
    }

    fn restore(&mut self, snapshot: OperatorSnapshot, chunks: &ChunkReader) -> Result<(), TaskError> {
        self.inner.restore(snapshot, chunks)
    }

    fn checkpoint_complete(&mut self, checkpoint: CheckpointId) -> Result<(), TaskError> {
        self.inner.checkpoint_complete(checkpoint)
    }

    fn checkpoint_aborted(&mut self, checkpoint: CheckpointId) {
        self.inner.checkpoint_aborted(checkpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn the_output_rate_allows_a_second_of_burst_then_paces() {
        let rate = OutputRate::new(100);
        let start = Instant::now();
        assert_eq!(rate.take_at(100, start), Duration::ZERO, "a full second's worth at once");
        assert_eq!(rate.take_at(50, start), Duration::from_millis(500), "then half a second for 50 more");
        // A second later the bucket has refilled 100 tokens, 50 of which pay the debt.
        assert_eq!(rate.take_at(50, start + Duration::from_secs(1)), Duration::ZERO);
        assert_eq!(rate.take_at(1, start + Duration::from_secs(1)), Duration::from_millis(10));
        // Idle time refills no more than one second's worth.
        assert_eq!(rate.take_at(101, start + Duration::from_secs(60)), Duration::from_millis(10));
    }
}
