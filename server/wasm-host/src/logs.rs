//! What guests say: `log` calls and anything written to stdout or stderr. The last lines of each instance are kept
//! so that a failure can show them; lines also go to the server's log, labelled, at a bounded rate.

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

/// Lines kept per instance.
const KEPT_LINES: usize = 20;
/// Longest line kept, in bytes.
const MAX_LINE: usize = 2000;
/// Lines per second forwarded to the server's log.
const FORWARD_PER_SECOND: u32 = 100;

struct State {
    lines: VecDeque<String>,
    partial: Vec<u8>,
    window_start: Instant,
    forwarded: u32,
    suppressed: u64,
}

/// Where a job keeps its functions' log lines for people to read (`eddy job logs`), beside the server's log.
pub trait GuestJournal: Send + Sync + std::fmt::Debug {
    /// One line of `udf` (tenant/job/operator#subtask) at `level`.
    fn line(&self, udf: &str, level: &str, text: &str);
}

/// The log of one instance.
#[derive(Clone)]
pub struct LogBuffer {
    label: Arc<str>,
    state: Arc<Mutex<State>>,
    journal: Option<Arc<dyn GuestJournal>>,
}

impl LogBuffer {
    /// A log labelled `label` (job, operator, subtask), its lines also kept in `journal` when given.
    pub fn new(label: &str, journal: Option<Arc<dyn GuestJournal>>) -> LogBuffer {
        LogBuffer {
            journal,
            label: label.into(),
            state: Arc::new(Mutex::new(State {
                lines: VecDeque::new(),
                partial: Vec::new(),
                window_start: Instant::now(),
                forwarded: 0,
                suppressed: 0,
            })),
        }
    }

    /// Records one complete line.
    pub fn line(&self, level: &str, text: &str) {
        let mut text = printable(text.trim_end());
        if text.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str("...");
        }
        let mut state = self.state.lock();
        if state.window_start.elapsed().as_secs() >= 1 {
            if state.suppressed > 0 {
                tracing::warn!(target: "eddy::udf", udf = %self.label, "{} log lines not shown (rate limit)", state.suppressed);
            }
            state.window_start = Instant::now();
            state.forwarded = 0;
            state.suppressed = 0;
        }
        if state.forwarded < FORWARD_PER_SECOND {
            state.forwarded += 1;
            match level {
                "error" => tracing::error!(target: "eddy::udf", udf = %self.label, "{text}"),
                "warn" => tracing::warn!(target: "eddy::udf", udf = %self.label, "{text}"),
                "debug" | "trace" => tracing::debug!(target: "eddy::udf", udf = %self.label, "{text}"),
                _ => tracing::info!(target: "eddy::udf", udf = %self.label, "{text}"),
            }
        } else {
            state.suppressed += 1;
        }
        if state.lines.len() == KEPT_LINES {
            state.lines.pop_front();
        }
        state.lines.push_back(format!("[{level}] {text}"));
        drop(state);
        if let Some(journal) = &self.journal {
            journal.line(&self.label, level, &text);
        }
    }

    /// Takes raw output bytes (stdout/stderr), splitting them into lines.
    pub fn write(&self, stream: &str, bytes: &[u8]) {
        let complete: Vec<String> = {
            let mut state = self.state.lock();
            state.partial.extend_from_slice(bytes);
            let mut lines = Vec::new();
            while let Some(end) = state.partial.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = state.partial.drain(..=end).collect();
                lines.push(String::from_utf8_lossy(&line).into_owned());
            }
            if state.partial.len() > MAX_LINE {
                let line: Vec<u8> = std::mem::take(&mut state.partial);
                lines.push(String::from_utf8_lossy(&line).into_owned());
            }
            lines
        };
        for line in complete {
            self.line(stream, &line);
        }
    }

    /// The kept lines, oldest first, including an unfinished last line.
    pub fn recent(&self) -> Vec<String> {
        let state = self.state.lock();
        let mut lines: Vec<String> = state.lines.iter().cloned().collect();
        if !state.partial.is_empty() {
            lines.push(format!("[stderr] {}", String::from_utf8_lossy(&state.partial).trim_end()));
        }
        lines
    }
}

/// `text` with control characters escaped, so that a guest cannot start a forged line of the server's log.
fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A guest's stdout or stderr, feeding a [`LogBuffer`].
#[derive(Clone)]
pub struct LogPipe {
    stream: &'static str,
    log: LogBuffer,
}

impl LogPipe {
    /// A pipe for `stream` ("stdout" or "stderr").
    pub fn new(stream: &'static str, log: LogBuffer) -> LogPipe {
        LogPipe { stream, log }
    }
}

impl wasmtime_wasi::cli::IsTerminal for LogPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for LogPipe {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::OutputStream> {
        Box::new(self.clone())
    }
}

impl wasmtime_wasi::p2::OutputStream for LogPipe {
    fn write(&mut self, bytes: bytes::Bytes) -> Result<(), wasmtime_wasi::p2::StreamError> {
        self.log.write(self.stream, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), wasmtime_wasi::p2::StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, wasmtime_wasi::p2::StreamError> {
        Ok(64 * 1024)
    }
}

#[async_trait::async_trait]
impl wasmtime_wasi::p2::Pollable for LogPipe {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for LogPipe {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.log.write(self.stream, buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_lines_and_joins_partial_writes() {
        let log = LogBuffer::new("test", None);
        log.write("stderr", b"thread panicked at src/lib.rs:1:1:\nbo");
        log.write("stderr", b"om\n");
        for i in 0..30 {
            log.line("info", &format!("line {i}"));
        }
        log.write("stdout", b"unfinished");
        let recent = log.recent();
        assert_eq!(recent.len(), KEPT_LINES + 1);
        assert_eq!(recent[0], "[info] line 10");
        assert_eq!(recent.last().map(String::as_str), Some("[stderr] unfinished"));
        let log = LogBuffer::new("test", None);
        log.write("stderr", b"a\nb\n");
        assert_eq!(log.recent(), vec!["[stderr] a", "[stderr] b"]);
    }

    #[test]
    fn guests_cannot_forge_server_log_lines() {
        let log = LogBuffer::new("t/j/op#0", None);
        log.line("info", "fine\n2026-01-01T00:00:00Z  INFO eddy_server: admin token accepted\r\x1b[2K");
        let kept = log.recent();
        assert_eq!(kept.len(), 1);
        assert!(!kept[0].contains(['\n', '\r', '\x1b']), "{kept:?}");
        assert!(kept[0].contains("fine\\n2026"), "escaped, not dropped: {kept:?}");
    }
}
