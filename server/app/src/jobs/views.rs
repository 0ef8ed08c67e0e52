//! What the API shows of jobs: status, listings, restarts, checkpoints, savepoints and a tenant's use.

use super::JobShared;
use super::supervisor::Phase;
use crate::store::UpgradeRecord;
use eddy_engine::ErrorDomain;
use eddy_engine::TaskError;
use eddy_engine::checkpoint::CheckpointStats;
use eddy_engine::graph::Partitioning;
use eddy_engine::io::ConnectorReport;
use eddy_engine::runtime::JobState;
use eddy_engine::spec::{OperatorKind, SinkSpec, SourceSpec};
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
    /// Bytes of state files the current run downloaded to restore (none when they were on this machine).
    pub restored_bytes: u64,
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
            restored_bytes: s.restored_bytes,
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
    /// `starting`, `running`, `restarting`, `upgrading`, `queued` (waiting its turn after the server went down),
    /// `finished`, `failed` or `canceled`.
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
    /// The node that runs it, in a cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
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
    /// Its size in storage (savepoints of earlier versions: 0, not recorded).
    #[serde(default)]
    pub bytes: u64,
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

/// A job's status from what its supervisor keeps; `running_modules` names the modules' versions.
pub(crate) fn job_view(state: &JobShared, running_modules: BTreeMap<String, String>) -> JobView {
    let record = &state.record;
    let handle = state.run.as_ref().and_then(|run| run.handle().cloned());
    let (counters, mut reports) = match &handle {
        Some(handle) => (handle.operators(), handle.connector_reports()),
        None => (Vec::new(), Vec::new()),
    };
    // The last run's failure, with its operator and log lines; else what the record says (a job that did not
    // start, or one that failed before the server started).
    let run_error = state.run.as_ref().filter(|run| run.state() == JobState::Failed).and_then(|run| run.error());
    let error = match (run_error, &record.error) {
        (Some(e), _) => {
            let mut view = failure(&e);
            if let Some(why) = &state.gave_up {
                view.message = format!("{} (not restarted: {why})", view.message);
            }
            Some(view)
        }
        (None, Some(message)) => {
            Some(FailureView { message: message.clone(), operator: None, domain: "user".into(), logs: Vec::new() })
        }
        (None, None) => None,
    };
    let mut view = JobView {
        id: record.id.clone(),
        name: record.name.clone(),
        state: shown_state(state),
        error,
        submitted_at: record.submitted_at,
        modules: record.modules.clone(),
        operators: Vec::new(),
        edges: Vec::new(),
        inputs: Vec::new(),
        outputs: Vec::new(),
        restarts: state.restarts.clone(),
        checkpoints: None,
        running_modules,
        upgrades: record.upgrades.clone(),
    };
    let Some(graph) = &state.graph else { return view };
    if graph.checkpoints.is_some() {
        let stats = state.run.as_ref().map(|r| r.checkpoints()).unwrap_or_default();
        view.checkpoints = Some(stats.into());
    }
    for node in &graph.nodes {
        let counters = counters.iter().find(|(uid, _)| *uid == node.uid).map(|(_, c)| *c);
        let inputs = node
            .inputs
            .iter()
            .map(|&e| {
                let edge = &graph.edges[e];
                let from = &graph.nodes[edge.from].uid;
                edge.tag.as_ref().map_or(from.clone(), |t| format!("{from}.{t}"))
            })
            .collect();
        view.operators.push(OperatorView {
            uid: node.uid.clone(),
            kind: node.kind.name().to_string(),
            parallelism: node.parallelism,
            keyed: node.keyed,
            inputs,
            records_in: counters.map_or(0, |c| c.records_in),
            records_out: counters.map_or(0, |c| c.records_out),
            late_records_dropped: counters.map_or(0, |c| c.late_records_dropped),
            backpressured_ms: counters.map_or(0, |c| c.backpressured_ms),
            unreadable_records: counters.map_or(0, |c| c.unreadable_records),
            watermark: counters.and_then(|c| c.watermark),
            connectors: reports
                .iter_mut()
                .find(|(uid, _)| *uid == node.uid)
                .map(|(_, r)| std::mem::take(r))
                .unwrap_or_default(),
        });
        match &node.kind {
            OperatorKind::Source(s) if s.source == SourceSpec::Http => view.inputs.push(node.uid.clone()),
            OperatorKind::Sink(SinkSpec::Http) => view.outputs.push(node.uid.clone()),
            _ => {}
        }
    }
    view.edges = graph
        .edges
        .iter()
        .map(|e| EdgeView {
            from: graph.nodes[e.from].uid.clone(),
            tag: e.tag.clone(),
            to: graph.nodes[e.to].uid.clone(),
            partitioning: match e.partitioning {
                Partitioning::Forward => "forward",
                Partitioning::Rebalance => "rebalance",
                Partitioning::Hash(_) => "hash",
            }
            .to_string(),
        })
        .collect();
    view
}

/// The state a job's status shows.
pub(crate) fn shown_state(state: &JobShared) -> String {
    match state.phase {
        Phase::Queued => "queued".into(),
        Phase::Restarting => "restarting".into(),
        Phase::Switching => "upgrading".into(),
        Phase::Starting => "starting".into(),
        Phase::Running | Phase::Savepointing | Phase::Probation => "running".into(),
        Phase::Stopped => state_name(state.record.state),
    }
}
