//! Sources and sinks that live outside the engine (Kafka, in the `eddy-kafka` crate): the engine knows their
//! settings from the spec and asks the host's [`Connectors`] to build them, so it never links their clients.

use super::Source;
use crate::error::TaskError;
use crate::operator::Operator;
use crate::spec::{CheckpointSpec, SinkSpec, SourceSpec};

/// What a connector gets to build one subtask.
#[derive(Debug, Clone)]
pub struct ConnectorContext<'a> {
    /// The job's id (stable across restarts of the job).
    pub job_id: &'a str,
    /// The operator's uid.
    pub uid: &'a str,
    /// The subtask index.
    pub subtask: u32,
    /// The operator's parallelism.
    pub parallelism: u32,
    /// The job's checkpoint settings; none: it takes no checkpoints.
    pub checkpoints: Option<&'a CheckpointSpec>,
    /// Where the subtask reports what it knows of the system it talks to.
    pub report: ReportSlot,
    /// The job's memory budget, charged for what the connector's client buffers; none: not counted.
    pub memory: Option<std::sync::Arc<crate::memory::MemoryBudget>>,
}

/// What a connector subtask knows of the system it talks to (a Kafka source's partitions, a Kafka sink's
/// transactions), for the job's status and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ConnectorReport {
    /// The subtask that reported it.
    pub subtask: u32,
    /// A source's partitions: where it reads, what is committed, how far behind it is.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<PartitionReport>,
    /// An exactly-once sink's transactions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transactions: Option<TransactionReport>,
}

/// Where a source subtask stands in one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PartitionReport {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The next offset the source reads; none before it knows.
    pub current_offset: Option<u64>,
    /// The offset committed to the broker with the newest completed checkpoint.
    pub committed_offset: Option<u64>,
    /// The partition's end (high watermark), as last fetched.
    pub end_offset: Option<u64>,
    /// Records between the current offset and the end.
    pub lag: Option<u64>,
}

/// An exactly-once sink subtask's transactions.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TransactionReport {
    /// Its transactional id.
    pub transactional_id: String,
    /// Records written in transactions not yet committed (waiting for their checkpoint to complete).
    pub uncommitted_records: u64,
    /// The checkpoint whose completion committed the newest transaction.
    pub last_committed_checkpoint: Option<u64>,
    /// When that commit finished, in milliseconds since the Unix epoch.
    pub last_commit_at_ms: Option<i64>,
    /// How long it took, from the checkpoint's completion reaching the sink to the broker's answer.
    pub last_commit_ms: Option<u64>,
    /// Transactions committed by this run.
    pub commits: u64,
    /// A completed checkpoint whose transaction is being committed right now.
    pub committing_checkpoint: Option<u64>,
    /// Epochs this run wrote again at its restore: their checkpoint had completed, but the crash came before their
    /// transaction committed.
    pub rewritten_epochs: u64,
}

/// Where a connector subtask publishes its [`ConnectorReport`]; the newest one published is the one shown.
#[derive(Debug, Clone, Default)]
pub struct ReportSlot {
    metrics: Option<std::sync::Arc<crate::runtime::OperatorMetrics>>,
    subtask: u32,
}

impl ReportSlot {
    /// The slot of subtask `subtask` in `metrics`.
    pub fn new(metrics: std::sync::Arc<crate::runtime::OperatorMetrics>, subtask: u32) -> ReportSlot {
        ReportSlot { metrics: Some(metrics), subtask }
    }

    /// Replaces the subtask's report.
    pub fn publish(&self, report: ConnectorReport) {
        if let Some(metrics) = &self.metrics {
            metrics.set_report(self.subtask, ConnectorReport { subtask: self.subtask, ..report });
        }
    }
}

/// Builds the sources and sinks the engine does not have itself. A method returns `None` for a spec it does not
/// handle, and the deployment then fails with an error naming the connector.
pub trait Connectors: Send + Sync {
    /// A source subtask for `spec`.
    fn source(&self, cx: &ConnectorContext<'_>, spec: &SourceSpec) -> Option<Result<Box<dyn Source>, TaskError>>;

    /// A sink subtask for `spec`.
    fn sink(&self, cx: &ConnectorContext<'_>, spec: &SinkSpec) -> Option<Result<Box<dyn Operator>, TaskError>>;
}

/// The error of a deployment whose host has no connector for `what`.
pub(crate) fn missing(what: &str) -> TaskError {
    TaskError::user(format!(
        "this server has no {what} connector: it was built without Kafka (build Eddy with `--features kafka`)"
    ))
}
