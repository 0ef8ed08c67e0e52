//! Counters a running job exposes per operator.

use crate::io::ConnectorReport;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Live counters of one operator, summed over its subtasks.
#[derive(Debug)]
pub struct OperatorMetrics {
    /// The operator's uid.
    pub uid: String,
    /// Records that entered the operator.
    pub records_in: AtomicU64,
    /// Records the operator emitted (main and side outputs).
    pub records_out: AtomicU64,
    /// Late records dropped without a side output.
    pub late_records_dropped: AtomicU64,
    /// Time the operator's task waited on full output channels, in microseconds.
    pub backpressured_us: AtomicU64,
    /// Records a source skipped because their event time or key could not be read.
    pub unreadable_records: AtomicU64,
    /// The operator's input watermark per subtask.
    watermarks: Vec<AtomicI64>,
    /// What each subtask of a connector reported last.
    reports: parking_lot::Mutex<Vec<Option<ConnectorReport>>>,
}

impl OperatorMetrics {
    /// Counters for an operator with `parallelism` subtasks.
    pub fn new(uid: &str, parallelism: u32) -> OperatorMetrics {
        OperatorMetrics {
            uid: uid.to_string(),
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            late_records_dropped: AtomicU64::new(0),
            backpressured_us: AtomicU64::new(0),
            unreadable_records: AtomicU64::new(0),
            watermarks: (0..parallelism).map(|_| AtomicI64::new(i64::MIN)).collect(),
            reports: parking_lot::Mutex::new(vec![None; parallelism as usize]),
        }
    }

    /// Replaces subtask `subtask`'s connector report.
    pub fn set_report(&self, subtask: u32, report: ConnectorReport) {
        if let Some(slot) = self.reports.lock().get_mut(subtask as usize) {
            *slot = Some(report);
        }
    }

    /// The connector reports of the subtasks that made one, by subtask.
    pub fn reports(&self) -> Vec<ConnectorReport> {
        self.reports.lock().iter().flatten().cloned().collect()
    }

    /// Records subtask `subtask`'s watermark.
    pub fn set_watermark(&self, subtask: u32, watermark: i64) {
        if let Some(w) = self.watermarks.get(subtask as usize) {
            w.store(watermark, Ordering::Relaxed);
        }
    }

    /// The operator's watermark: the minimum over its subtasks, none before the first.
    pub fn watermark(&self) -> Option<i64> {
        let min = self.watermarks.iter().map(|w| w.load(Ordering::Relaxed)).min()?;
        (min != i64::MIN).then_some(min)
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> OperatorCounters {
        OperatorCounters {
            records_in: self.records_in.load(Ordering::Relaxed),
            records_out: self.records_out.load(Ordering::Relaxed),
            late_records_dropped: self.late_records_dropped.load(Ordering::Relaxed),
            backpressured_ms: self.backpressured_us.load(Ordering::Relaxed) / 1000,
            unreadable_records: self.unreadable_records.load(Ordering::Relaxed),
            watermark: self.watermark(),
        }
    }
}

/// A copy of an operator's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct OperatorCounters {
    /// Records in.
    pub records_in: u64,
    /// Records a source skipped because their event time or key could not be read.
    pub unreadable_records: u64,
    /// Records out.
    pub records_out: u64,
    /// Late records dropped.
    pub late_records_dropped: u64,
    /// Milliseconds spent waiting on full output channels.
    pub backpressured_ms: u64,
    /// Current watermark.
    pub watermark: Option<i64>,
}
