//! What the API shows of jobs: status, listings, restarts, checkpoints, savepoints and a tenant's use.

use crate::store::UpgradeRecord;
use eddy_engine::ErrorDomain;
use eddy_engine::TaskError;
use eddy_engine::checkpoint::CheckpointStats;
use eddy_engine::io::ConnectorReport;
use eddy_engine::runtime::JobState;
use serde::Serialize;
use std::collections::BTreeMap;

/// One operator in a job's status.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OperatorView {
    /// The operator's uid.
    pub uid: String,
    /// Its kind (source, map, window, ...).
    pub kind: String,
    /// Parallel subtasks.
    pub parallelism: u32,
    /// Whether its input is keyed.
    pub keyed: bool,
    /// Where its input comes from (`uid` or `uid.side-output`).
    pub inputs: Vec<String>,
    /// Records in.
    pub records_in: u64,
    /// Records out.
    pub records_out: u64,
    /// Late records dropped (windows without a late side output).
    pub late_records_dropped: u64,
    /// Milliseconds spent waiting on full output channels.
    pub backpressured_ms: u64,
    /// Records a source set aside (`on_error: skip`) because their event time or key could not be read.
    pub unreadable_records: u64,
    /// Current event-time watermark.
    pub watermark: Option<i64>,
    /// What each subtask of a connector reported last: a Kafka source's partitions (current and committed offset,
    /// end, lag), an exactly-once Kafka sink's transactions (records not yet committed, the last commit, its
    /// latency).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub connectors: Vec<ConnectorReport>,
}

/// One edge in a job's status.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EdgeView {
    /// Upstream uid.
    pub from: String,
    /// Side output, if any.
    pub tag: Option<String>,
    /// Downstream uid.
    pub to: String,
    /// `forward`, `rebalance` or `hash`.
    pub partitioning: String,
}

/// Why a job failed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FailureView {
    /// What happened.
    pub message: String,
    /// The operator whose code failed.
    pub operator: Option<String>,
    /// `user`, `external` or `internal`.
    pub domain: String,
    /// The user function's last log lines.
    pub logs: Vec<String>,
}

/// A failure after which the job was restarted.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RestartView {
    /// When the job failed, milliseconds since the Unix epoch.
    pub failed_at: i64,
    /// Why.
    pub cause: FailureView,
    /// How long the job waited before starting again, in milliseconds.
    pub delay_ms: u64,
}

/// A job's checkpoints.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CheckpointView {
    /// Checkpoints completed by the current run.
    pub completed: u64,
    /// Checkpoints that failed or timed out in the current run.
    pub failed: u64,
    /// The newest completed checkpoint.
    pub latest: Option<u64>,
    /// How long it took, in milliseconds.
    pub latest_duration_ms: Option<u64>,
    /// Bytes it wrote (with RocksDB, only the state files no earlier checkpoint had).
    pub latest_bytes: Option<u64>,
    /// Bytes a restore from it reads: everything it refers to.
    pub latest_full_bytes: Option<u64>,
    /// Why the last failed checkpoint failed.
    pub last_failure: Option<String>,
    /// The checkpoint the current run started from.
    pub restored_from: Option<u64>,
}

impl From<CheckpointStats> for CheckpointView {
    fn from(s: CheckpointStats) -> CheckpointView {
        CheckpointView {
            completed: s.completed,
            failed: s.failed,
            latest: s.latest,
            latest_duration_ms: s.latest_duration_ms,
            latest_bytes: s.latest_bytes,
            latest_full_bytes: s.latest_full_bytes,
            last_failure: s.last_failure,
            restored_from: s.restored_from,
        }
    }
}

/// A job's status.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct JobView {
    /// The job's id.
    pub id: String,
    /// The spec's name.
    pub name: String,
    /// `running`, `finished`, `failed` or `canceled`.
    pub state: String,
    /// Why it failed.
    pub error: Option<FailureView>,
    /// Submission time, milliseconds since the Unix epoch.
    pub submitted_at: i64,
    /// Modules as written in the spec -> content hash.
    pub modules: BTreeMap<String, String>,
    /// The operators, in topological order.
    pub operators: Vec<OperatorView>,
    /// The edges.
    pub edges: Vec<EdgeView>,
    /// HTTP sources: POST records to `/v1/jobs/{id}/inputs/{uid}`.
    pub inputs: Vec<String>,
    /// HTTP sinks: read `/v1/jobs/{id}/outputs/{uid}`.
    pub outputs: Vec<String>,
    /// Restarts since the job was submitted or the server started, newest last (at most the last 20).
    pub restarts: Vec<RestartView>,
    /// Checkpoints, when the spec asks for them.
    pub checkpoints: Option<CheckpointView>,
    /// Modules as written in the spec -> the `name@version` running (upgrades change it).
    pub running_modules: BTreeMap<String, String>,
    /// Upgrades of its modules, oldest first.
    pub upgrades: Vec<UpgradeRecord>,
}

/// A job in a listing.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct JobSummary {
    /// The job's id.
    pub id: String,
    /// The spec's name.
    pub name: String,
    /// Its state.
    pub state: String,
    /// Submission time.
    pub submitted_at: i64,
}

/// What a tenant uses now, as its quotas count it, and what its jobs have done since the server started.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TenantUse {
    /// Running jobs.
    pub jobs: u64,
    /// Subtasks of the running jobs.
    pub parallelism: u64,
    /// Guest memory its function instances hold, in bytes.
    pub memory_bytes: u64,
    /// Keyed state its jobs hold, in bytes (counted in steps of 64 KiB per operator subtask).
    pub state_bytes: u64,
    /// Disk and storage it uses, in bytes, as last measured (every few seconds).
    pub storage_bytes: u64,
    /// CPU time its functions have used, in seconds.
    pub guest_cpu_seconds: f64,
    /// Records its jobs' sources have read.
    pub records_in: u64,
    /// Records its jobs' sinks have written.
    pub records_out: u64,
}

/// A savepoint.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct SavepointView {
    /// Its id.
    pub id: String,
    /// The job it was taken of.
    pub job: String,
    /// That job's name.
    pub job_name: String,
    /// The checkpoint number it was taken as.
    pub checkpoint: u64,
    /// When it completed, milliseconds since the Unix epoch.
    pub created_at: i64,
    /// The job's spec then: submit it (or a changed one) with `?savepoint=<id>` to go on from the savepoint.
    pub spec: String,
}

/// The name a state has in the API.
pub(crate) fn state_name(state: JobState) -> String {
    match state {
        JobState::Running => "running",
        JobState::Finished => "finished",
        JobState::Failed => "failed",
        JobState::Canceled => "canceled",
    }
    .to_string()
}

/// A task error as the API shows it.
pub(crate) fn failure(error: &TaskError) -> FailureView {
    FailureView {
        message: error.message.clone(),
        operator: error.operator.clone(),
        domain: match error.domain {
            ErrorDomain::User => "user",
            ErrorDomain::External => "external",
            ErrorDomain::Internal => "internal",
        }
        .to_string(),
        logs: error.logs.clone(),
    }
}
