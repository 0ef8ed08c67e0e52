//! Sinks: standard output, HTTP output streams, and a discarding sink that counts.

use super::OutputStream;
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
        self.stream.publish(&batch);
        Ok(())
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
