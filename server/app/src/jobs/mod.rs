//! Jobs: submission (parse, check, resolve modules, deploy), status, cancellation, savepoints, and resubmission
//! of running jobs when the server starts again. Upgrades of a running job's modules are in `upgrade`.

mod upgrade;

pub use upgrade::UpgradeRequest;

use crate::api::error::ApiError;
use crate::config::{Quota, ServerConfig};
use crate::modules::Modules;
use crate::storage::StorageMeter;
use crate::store::{Desired, JobRecord, StartFrom, Store, UpgradeOutcome, UpgradeRecord};
use axum::http::StatusCode;
use eddy_engine::checkpoint::coordinator::prepare_restore;
use eddy_engine::checkpoint::inspect::{KeyStateView, key_state};
use eddy_engine::checkpoint::{CheckpointStats, CheckpointStore, Checkpointing, Restore};
use eddy_engine::graph::{JobGraph, Partitioning};
use eddy_engine::io::{ConnectorReport, IngestHandle, OutputStream};
use eddy_engine::io::{FileRoots, IngestLog, OutputRate, Retention};
use eddy_engine::runtime::govern::CpuGovernor;
use eddy_engine::runtime::restart::{Decision, RestartPolicy};
use eddy_engine::runtime::{DeployEnv, JobHandle, JobState, RunningJob, deploy};
use eddy_engine::spec::{BackendKind, JobSpec, OperatorKind, SinkSpec, SourceSpec};
use eddy_engine::state::{MemoryBackend, StateBudget};
use eddy_engine::{ErrorDomain, TaskError};
use eddy_wasm_host::{Accounts, GuestUsage, MemoryBudget, WasmFunctions};
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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

struct Entry {
    record: JobRecord,
    graph: Option<JobGraph>,
    running: Option<RunningJob>,
    /// HTTP inputs and outputs, kept across restarts so that clients keep their endpoints.
    io: JobIo,
    restarts: Vec<RestartView>,
    /// Waiting to start again after a failure.
    restarting: bool,
    /// Why the restart strategy left the job failed.
    gave_up: Option<String>,
    /// Stopping with a savepoint: its HTTP inputs take no more records.
    stopping: bool,
    /// Counts the job's runs that an upgrade replaced: the watcher of a replaced run leaves the job alone.
    generation: u64,
    /// An upgrade is under way.
    upgrading: bool,
}

impl Entry {
    fn new(record: JobRecord, graph: Option<JobGraph>) -> Entry {
        Entry {
            record,
            graph,
            running: None,
            io: JobIo::default(),
            restarts: Vec::new(),
            restarting: false,
            gave_up: None,
            stopping: false,
            generation: 0,
            upgrading: false,
        }
    }
}

/// A job's HTTP inputs (write-ahead logs) and outputs (streams) by operator uid.
#[derive(Default, Clone)]
struct JobIo {
    inputs: HashMap<String, Arc<IngestLog>>,
    outputs: HashMap<String, Arc<OutputStream>>,
}

/// Restarts kept in a job's status.
const RESTARTS_SHOWN: usize = 20;

struct Inner {
    store: Store,
    modules: Arc<Modules>,
    config: Arc<ServerConfig>,
    entries: Mutex<HashMap<String, HashMap<String, Entry>>>,
    /// Guest memory of all tenants (each tenant's budget lies inside it).
    server_memory: Arc<MemoryBudget>,
    /// What each tenant's jobs are accounted against.
    accounts: Mutex<HashMap<String, TenantAccounts>>,
    /// Serializes writes of job records.
    persisting: Mutex<()>,
    /// Shares the CPU between tenants.
    governor: Arc<CpuGovernor>,
    shutting_down: AtomicBool,
    /// Where checkpoints are kept.
    checkpoints: Arc<dyn CheckpointStore>,
    /// Each tenant's use of disk and storage.
    storage: Arc<StorageMeter>,
}

/// What one tenant's jobs are accounted against: made with its first job, kept to its current quotas.
#[derive(Clone)]
struct TenantAccounts {
    /// Guest memory of all its function instances.
    memory: Arc<MemoryBudget>,
    /// Keyed state of all its jobs.
    state: Arc<StateBudget>,
    /// CPU time of its functions.
    usage: Arc<GuestUsage>,
    /// The bucket its sinks share, with the rate it was made for (none: no limit).
    output_rate: Option<(u64, Arc<OutputRate>)>,
}

/// Starts in a row that ended with the server down after which a job is held instead of resumed.
pub const MAX_CRASH_STREAK: u32 = 3;
/// How long a job must run for its start to count as survived (the server did not go down with it), unless it
/// completes a checkpoint sooner.
const HEALTHY_AFTER: Duration = Duration::from_secs(300);

/// All jobs of all tenants.
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

fn state_name(state: JobState) -> String {
    match state {
        JobState::Running => "running",
        JobState::Finished => "finished",
        JobState::Failed => "failed",
        JobState::Canceled => "canceled",
    }
    .to_string()
}

fn failure(error: &TaskError) -> FailureView {
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

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Jobs {
    /// Loads every stored job and starts again those that should run, except those that took the server down
    /// at each of their last starts: those are held, with the reason in their status.
    pub fn open(
        store: Store,
        modules: Arc<Modules>,
        config: Arc<ServerConfig>,
        checkpoints: Arc<dyn CheckpointStore>,
    ) -> Jobs {
        let server_memory = MemoryBudget::new("the server", config.guest_memory_mb << 20, None);
        let storage = StorageMeter::start(Arc::clone(&config), Arc::clone(&checkpoints), Arc::clone(modules.quotas()));
        let jobs = Jobs {
            inner: Arc::new(Inner {
                store: store.clone(),
                modules,
                config,
                entries: Mutex::new(HashMap::new()),
                server_memory,
                accounts: Mutex::new(HashMap::new()),
                persisting: Mutex::new(()),
                governor: CpuGovernor::for_this_machine(),
                shutting_down: AtomicBool::new(false),
                checkpoints,
                storage,
            }),
        };
        for tenant in store.tenants() {
            for mut record in store.jobs(&tenant) {
                let mut resume = record.desired == Desired::Running;
                for upgrade in record.upgrades.iter_mut().filter(|u| u.outcome == UpgradeOutcome::InProgress) {
                    upgrade.outcome = UpgradeOutcome::Interrupted;
                    upgrade.reason = Some(
                        "the server stopped during the upgrade; the job resumed with the modules it had then".into(),
                    );
                    upgrade.finished_at = Some(now_ms());
                }
                if resume && record.crash_streak >= MAX_CRASH_STREAK {
                    resume = false;
                    record.desired = Desired::Stopped;
                    record.state = JobState::Failed;
                    record.error = Some(format!(
                        "held: the server went down during each of this job's last {} starts, so it was not started \
                         again; look at what it does, then submit it anew",
                        record.crash_streak
                    ));
                    tracing::warn!(
                        tenant,
                        job = record.id,
                        "holding a job that took the server down {} times",
                        record.crash_streak
                    );
                    if let Err(e) = store.put_job(&tenant, &record) {
                        tracing::error!(tenant, job = record.id, "cannot save job: {e}");
                    }
                }
                let id = record.id.clone();
                jobs.inner
                    .entries
                    .lock()
                    .entry(tenant.clone())
                    .or_default()
                    .insert(id.clone(), Entry::new(record, None));
                if resume {
                    match jobs.start(&tenant, &id) {
                        Ok(()) => tracing::info!(tenant, job = id, "resumed job"),
                        Err(e) => tracing::warn!(tenant, job = id, "cannot resume job: {}", e.message),
                    }
                }
            }
        }
        jobs
    }

    /// Checks and starts a job.
    pub fn submit(&self, tenant: &str, text: &str, start_from: Option<StartFrom>) -> Result<JobView, ApiError> {
        let spec = JobSpec::parse(text).map_err(spec_error)?;
        let graph = JobGraph::build(&spec, &self.inner.modules.catalog(tenant, None)).map_err(spec_error)?;
        if let Some(from) = &start_from {
            self.savepoint_info(tenant, &from.savepoint)?;
        }
        self.check_kafka(tenant, &graph)?;
        self.inner.storage.check(tenant)?;
        let mut entries = self.inner.entries.lock();
        self.check_quota(tenant, &graph, entries.get(tenant))?;
        let record = JobRecord {
            id: uuid::Uuid::new_v4().simple().to_string(),
            name: spec.name.clone(),
            spec: text.to_string(),
            modules: graph.modules.clone(),
            submitted_at: now_ms(),
            desired: Desired::Running,
            state: JobState::Running,
            error: None,
            crash_streak: 0,
            start_from,
            upgrades: Vec::new(),
        };
        let id = record.id.clone();
        // Inserted under the same lock as the quota check, so concurrent submissions cannot both pass it.
        entries.entry(tenant.to_string()).or_default().insert(id.clone(), Entry::new(record, Some(graph)));
        drop(entries);
        if let Err(e) = self.start(tenant, &id) {
            // Nothing ran: forget the job.
            if let Some(jobs) = self.inner.entries.lock().get_mut(tenant) {
                jobs.remove(&id);
            }
            if let Err(e) = self.inner.store.remove_job(tenant, &id) {
                tracing::warn!(tenant, job = id, "cannot remove a job that did not start: {e}");
            }
            return Err(e);
        }
        self.persist(tenant, &id);
        self.status(tenant, &id)
    }

    /// Refuses a job that names a Kafka broker, topic, group or transactional id its tenant may not use.
    fn check_kafka(&self, tenant: &str, graph: &JobGraph) -> Result<(), ApiError> {
        let access = self.inner.config.tenant_kafka(tenant);
        for node in &graph.nodes {
            let (brokers, refused) = match &node.kind {
                OperatorKind::Source(s) => match &s.source {
                    SourceSpec::Kafka(kafka) => (&kafka.brokers, access.refuse_source(kafka)),
                    _ => continue,
                },
                OperatorKind::Sink(SinkSpec::Kafka(kafka)) => (&kafka.brokers, access.refuse_sink(kafka)),
                _ => continue,
            };
            if let Some(why) = self.inner.config.refuse_kafka_brokers(tenant, brokers) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "broker_not_allowed",
                    format!("operator `{}`: {why}", node.uid),
                ));
            }
            if let Some(why) = refused {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "kafka_name_not_allowed",
                    format!("operator `{}`: {why}", node.uid),
                ));
            }
        }
        Ok(())
    }

    /// Refuses a job that would take `tenant` past its quota of running jobs or subtasks.
    fn check_quota(
        &self,
        tenant: &str,
        graph: &JobGraph,
        jobs: Option<&HashMap<String, Entry>>,
    ) -> Result<(), ApiError> {
        let quota = self.inner.modules.quotas().of(tenant);
        let active: Vec<&Entry> = jobs
            .map(|jobs| jobs.values().filter(|e| e.record.desired == Desired::Running && is_active(e)).collect())
            .unwrap_or_default();
        if active.len() as u32 >= quota.jobs {
            return Err(ApiError::quota("jobs", quota.jobs.into(), active.len() as u64, "one more running job"));
        }
        let in_use: u64 = active.iter().filter_map(|e| e.graph.as_ref()).map(subtasks).sum();
        let asked = subtasks(graph);
        if in_use + asked > u64::from(quota.parallelism) {
            return Err(ApiError::quota(
                "parallelism",
                quota.parallelism.into(),
                in_use,
                format!("this job has {asked} subtasks"),
            ));
        }
        Ok(())
    }

    /// `tenant`'s accounts, made if it has none yet and set to `quota`.
    fn accounts(&self, tenant: &str, quota: &Quota) -> TenantAccounts {
        let mut all = self.inner.accounts.lock();
        let accounts = all.entry(tenant.to_string()).or_insert_with(|| TenantAccounts {
            memory: MemoryBudget::new(
                format!("tenant {tenant}"),
                quota.memory_mb << 20,
                Some(Arc::clone(&self.inner.server_memory)),
            ),
            state: StateBudget::new(format!("tenant {tenant}"), quota.state_mb << 20, None),
            usage: Arc::default(),
            output_rate: None,
        });
        // The quotas may have changed since the tenant's first job.
        accounts.memory.set_limit(quota.memory_mb << 20);
        accounts.state.set_limit(quota.state_mb << 20);
        accounts.output_rate = match (quota.output_rate, accounts.output_rate.take()) {
            (0, _) => None,
            (rate, Some((made_for, bucket))) if made_for == rate => Some((rate, bucket)),
            (rate, _) => Some((rate, OutputRate::new(rate))),
        };
        accounts.clone()
    }

    /// What `tenant` uses now and has used since the server started.
    pub fn tenant_use(&self, tenant: &str) -> TenantUse {
        let entries = self.inner.entries.lock();
        let mut usage = TenantUse {
            jobs: 0,
            parallelism: 0,
            memory_bytes: 0,
            state_bytes: 0,
            storage_bytes: self.inner.storage.used(tenant),
            guest_cpu_seconds: 0.0,
            records_in: 0,
            records_out: 0,
        };
        if let Some(accounts) = self.inner.accounts.lock().get(tenant) {
            usage.memory_bytes = accounts.memory.used() as u64;
            usage.state_bytes = accounts.state.used();
            usage.guest_cpu_seconds = accounts.usage.cpu().as_secs_f64();
        }
        for entry in entries.get(tenant).into_iter().flat_map(HashMap::values) {
            if entry.record.desired == Desired::Running && is_active(entry) {
                usage.jobs += 1;
                usage.parallelism += entry.graph.as_ref().map_or(0, subtasks);
            }
            let (Some(running), Some(graph)) = (&entry.running, &entry.graph) else { continue };
            for (uid, counters) in running.handle.operators() {
                match graph.node(&uid).map(|(_, node)| &node.kind) {
                    Some(OperatorKind::Source(_)) => usage.records_in += counters.records_out,
                    Some(OperatorKind::Sink(_)) => usage.records_out += counters.records_in,
                    _ => {}
                }
            }
        }
        usage
    }

    /// What the connectors of `tenant`'s running jobs reported last: (job, operator, one report per subtask).
    pub fn connector_reports(&self, tenant: &str) -> Vec<(String, String, Vec<ConnectorReport>)> {
        self.per_operator(tenant, JobHandle::connector_reports)
    }

    /// Counters of every operator of `tenant`'s jobs that have run since the server started: (job, operator, counters).
    pub fn operator_counters(&self, tenant: &str) -> Vec<(String, String, eddy_engine::runtime::OperatorCounters)> {
        self.per_operator(tenant, JobHandle::operators)
    }

    /// What `read` gives per operator of each of `tenant`'s running jobs, as (job, operator, value).
    fn per_operator<T>(&self, tenant: &str, read: impl Fn(&JobHandle) -> Vec<(String, T)>) -> Vec<(String, String, T)> {
        let entries = self.inner.entries.lock();
        let mut all = Vec::new();
        for (id, entry) in entries.get(tenant).into_iter().flatten() {
            if let Some(running) = &entry.running {
                all.extend(read(&running.handle).into_iter().map(|(uid, value)| (id.clone(), uid, value)));
            }
        }
        all
    }

    /// The folders a tenant's file sources and sinks may use.
    fn file_roots(&self, tenant: &str) -> FileRoots {
        let config = &self.inner.config;
        let mut roots = FileRoots::new(config.files_dir().join(tenant));
        for (name, folder) in config.file_roots_of(tenant) {
            roots = roots.with_root(&name, folder);
        }
        roots
    }

    /// Builds (if needed) and deploys a stored job. The start is counted before anything runs, so a start that
    /// takes the server down is remembered.
    fn start(&self, tenant: &str, id: &str) -> Result<(), ApiError> {
        {
            let mut entries = self.inner.entries.lock();
            let entry = entries
                .get_mut(tenant)
                .and_then(|j| j.get_mut(id))
                .ok_or_else(|| ApiError::not_found("no such job"))?;
            entry.record.crash_streak += 1;
        }
        self.persist(tenant, id);
        let result = self.deploy(tenant, id);
        let mut entries = self.inner.entries.lock();
        let Some(entry) = entries.get_mut(tenant).and_then(|j| j.get_mut(id)) else {
            return Err(ApiError::not_found("no such job"));
        };
        match result {
            Ok((graph, running)) => {
                let handle = running.handle.clone();
                entry.graph = Some(graph);
                entry.running = Some(running);
                entry.record.state = JobState::Running;
                entry.record.error = None;
                drop(entries);
                self.watch(tenant, id, handle);
                Ok(())
            }
            Err(e) => {
                entry.record.state = JobState::Failed;
                entry.record.error = Some(e.message.clone());
                entry.record.desired = Desired::Stopped;
                drop(entries);
                self.persist(tenant, id);
                Err(e)
            }
        }
    }

    /// Deploys a stored job, from its newest completed checkpoint if it takes checkpoints.
    fn deploy(&self, tenant: &str, id: &str) -> Result<(JobGraph, RunningJob), ApiError> {
        let (record, graph, io) = {
            let entries = self.inner.entries.lock();
            let entry =
                entries.get(tenant).and_then(|j| j.get(id)).ok_or_else(|| ApiError::not_found("no such job"))?;
            (entry.record.clone(), entry.graph.clone(), entry.io.clone())
        };
        let graph = match graph {
            Some(g) => g,
            None => {
                let spec = JobSpec::parse(&record.spec).map_err(spec_error)?;
                let catalog = self.inner.modules.catalog(tenant, Some(&record.modules));
                JobGraph::build(&spec, &catalog).map_err(spec_error)?
            }
        };
        for hash in graph.modules.values() {
            self.inner
                .modules
                .load(hash)
                .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "cannot_start", e.to_string()))?;
        }
        let quota = self.inner.modules.quotas().of(tenant);
        let accounts = self.accounts(tenant, &quota);
        let job_memory =
            MemoryBudget::new(format!("job {}", record.id), quota.job_memory_mb << 20, Some(accounts.memory));
        let host_memory = Arc::clone(&job_memory);
        let functions = WasmFunctions::new(
            Arc::clone(self.inner.modules.runtime()),
            self.inner.config.instance_limits(Some(&quota)),
        )
        .with_accounts(Accounts { memory: Some(job_memory), usage: Some(accounts.usage) });
        let mut env = DeployEnv::new(&record.id, tenant, Arc::new(functions));
        env.memory = Some(host_memory);
        env.disk = Some(self.inner.storage.budget(tenant));
        env.files = self.file_roots(tenant);
        self.inner.governor.set_weight(tenant, quota.cpu_weight);
        env.governor = Some(Arc::clone(&self.inner.governor));
        env.output_rate = accounts.output_rate.map(|(_, bucket)| bucket);
        env.state = match graph.state_backend.unwrap_or(self.inner.config.state_backend) {
            BackendKind::Memory => Arc::new(MemoryBackend::within(accounts.state)),
            BackendKind::Rocksdb => {
                rocksdb_backend(&self.inner.config.state_dir().join(tenant).join(id), accounts.state)?
            }
        };
        env.connectors = connectors(self.inner.config.tenant_kafka(tenant));
        let io = self.job_io(tenant, id, &graph, io)?;
        env.inputs = io.inputs.clone();
        env.outputs = io.outputs.clone();
        if let Some(spec) = &graph.checkpoints {
            let store = Arc::clone(&self.inner.checkpoints);
            let prefix = checkpoint_prefix(tenant, id);
            let cannot_start = |e: TaskError| {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "cannot_start", format!("the job cannot start: {e}"))
            };
            let (mut restore, last_id) = prepare_restore(&store, &prefix).map_err(cannot_start)?;
            // Until the job has a checkpoint of its own, it starts from the savepoint it was submitted with.
            if let (None, Some(from)) = (&restore, &record.start_from) {
                let folder = savepoint_folder(tenant, &from.savepoint);
                let what = format!("savepoint {}", from.savepoint);
                restore = Some(Restore::load_folder(&store, &folder, &what).map_err(cannot_start)?);
                env.allow_non_restored_state = from.allow_non_restored_state;
            }
            env.checkpointing = Some(Checkpointing {
                spec: spec.clone(),
                store,
                prefix,
                last_id,
                max_parallelism: graph.max_parallelism,
                disk: Some(self.inner.storage.budget(tenant)),
            });
            env.restore = restore;
        }
        let running = deploy(&graph, env).map_err(|e| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "cannot_start", format!("the job cannot start: {e}"))
                .with_details(vec![serde_json::to_value(failure(&e)).unwrap_or_default()])
        })?;
        Ok((graph, running))
    }

    /// The job's HTTP input logs and output streams, opened once and kept across its restarts.
    fn job_io(&self, tenant: &str, id: &str, graph: &JobGraph, mut io: JobIo) -> Result<JobIo, ApiError> {
        for node in &graph.nodes {
            match &node.kind {
                OperatorKind::Source(s) if s.source == SourceSpec::Http && !io.inputs.contains_key(&node.uid) => {
                    let folder = self.inner.config.inputs_dir().join(tenant).join(id).join(&node.uid);
                    let log = IngestLog::open(&folder)
                        .map_err(|e| ApiError::internal(format!("cannot open the input log of `{}`: {e}", node.uid)))?;
                    io.inputs.insert(node.uid.clone(), log);
                }
                OperatorKind::Sink(SinkSpec::Http) if !io.outputs.contains_key(&node.uid) => {
                    io.outputs.insert(node.uid.clone(), Arc::new(OutputStream::new(Retention::default())));
                }
                _ => {}
            }
        }
        if let Some(entry) = self.inner.entries.lock().get_mut(tenant).and_then(|j| j.get_mut(id)) {
            entry.io = io.clone();
        }
        Ok(io)
    }

    /// Follows a job until it ends for good: restarts it as its restart strategy says, then records the outcome.
    fn watch(&self, tenant: &str, id: &str, handle: JobHandle) {
        let jobs = self.clone();
        let (tenant, id) = (tenant.to_string(), id.to_string());
        let generation = self.generation(&tenant, &id);
        let spawned = std::thread::Builder::new().name(format!("eddy-watch-{id}")).spawn(move || {
            // The server survived this start once the job has run a while or completed a checkpoint.
            let since = std::time::Instant::now();
            while handle.wait(Duration::from_millis(100)) == JobState::Running {
                if since.elapsed() >= HEALTHY_AFTER || handle.checkpoints().completed > 0 {
                    jobs.reset_crash_streak(&tenant, &id);
                    break;
                }
            }
            let restart = jobs.graph_of(&tenant, &id).map(|g| g.restart).unwrap_or_default();
            let replaced = || jobs.generation(&tenant, &id) != generation;
            let mut policy = RestartPolicy::new(restart);
            let mut handle = handle;
            let mut started = now_ms();
            let given_up = loop {
                while handle.wait(Duration::from_secs(3600)) == JobState::Running {}
                if handle.state() != JobState::Failed || !jobs.should_run(&tenant, &id) || replaced() {
                    break None;
                }
                let cause = handle.error().unwrap_or_else(|| TaskError::internal("the job failed"));
                match jobs.restart(&tenant, &id, &mut policy, started, cause) {
                    Ok((new_handle, at)) => {
                        handle = new_handle;
                        started = at;
                    }
                    Err(why) => break why,
                }
            };
            let state = handle.state();
            let outputs = {
                let mut entries = jobs.inner.entries.lock();
                let Some(entry) = entries.get_mut(&tenant).and_then(|j| j.get_mut(&id)) else { return };
                // An upgrade replaced this run, and follows the job from here.
                if entry.generation != generation {
                    return;
                }
                entry.restarting = false;
                entry.gave_up.clone_from(&given_up);
                entry.record.state = state;
                entry.record.error = handle.error().map(|e| match &given_up {
                    Some(why) => format!("{e} (not restarted: {why})"),
                    None => e.to_string(),
                });
                entry.record.crash_streak = 0;
                // A shutdown stops jobs that should run again after the restart.
                let shutting_down = jobs.inner.shutting_down.load(Ordering::SeqCst);
                if !shutting_down {
                    entry.record.desired = Desired::Stopped;
                }
                if shutting_down { Vec::new() } else { entry.io.outputs.values().cloned().collect() }
            };
            // Readers of the job's outputs see their end once the job has ended for good.
            for stream in outputs {
                stream.close();
            }
            jobs.persist(&tenant, &id);
        });
        if let Err(e) = spawned {
            tracing::warn!("cannot watch a job: {e}");
        }
    }

    fn generation(&self, tenant: &str, id: &str) -> u64 {
        self.inner.entries.lock().get(tenant).and_then(|j| j.get(id)).map_or(0, |e| e.generation)
    }

    /// Modules as written in the spec -> the `name@version` their hash is uploaded as.
    fn module_versions(&self, tenant: &str, pins: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let uploaded = self.inner.modules.list(tenant);
        pins.iter()
            .map(|(written, hash)| {
                let version = uploaded
                    .iter()
                    .find(|m| &m.hash == hash)
                    .map_or_else(|| format!("sha256:{hash}"), |m| format!("{}@{}", m.name, m.version));
                (written.clone(), version)
            })
            .collect()
    }

    fn graph_of(&self, tenant: &str, id: &str) -> Option<JobGraph> {
        self.inner.entries.lock().get(tenant)?.get(id)?.graph.clone()
    }

    /// Whether a job is still meant to run (not cancelled, no shutdown).
    fn should_run(&self, tenant: &str, id: &str) -> bool {
        !self.inner.shutting_down.load(Ordering::SeqCst)
            && self
                .inner
                .entries
                .lock()
                .get(tenant)
                .and_then(|j| j.get(id))
                .is_some_and(|e| e.record.desired == Desired::Running)
    }

    /// Restarts a failed job as `policy` allows, from its newest completed checkpoint: returns the new run's
    /// handle and start time, or why it was not restarted (none: it was cancelled meanwhile).
    fn restart(
        &self,
        tenant: &str,
        id: &str,
        policy: &mut RestartPolicy,
        mut started: i64,
        mut cause: TaskError,
    ) -> Result<(JobHandle, i64), Option<String>> {
        loop {
            let failed_at = now_ms();
            let random = (uuid::Uuid::new_v4().as_u128() >> 75) as f64 / (1u64 << 53) as f64;
            let delay = match policy.on_failure(started, failed_at, random) {
                Decision::Restart(delay) => delay,
                Decision::GiveUp(why) => return Err(Some(why)),
            };
            tracing::warn!(tenant, job = id, "job failed, restarting in {delay:?}: {cause}");
            if let Some(entry) = self.inner.entries.lock().get_mut(tenant).and_then(|j| j.get_mut(id)) {
                entry.restarting = true;
                entry.restarts.push(RestartView {
                    failed_at,
                    cause: failure(&cause),
                    delay_ms: delay.as_millis() as u64,
                });
                let excess = entry.restarts.len().saturating_sub(RESTARTS_SHOWN);
                entry.restarts.drain(..excess);
            }
            // Waits in small steps so that a cancel during the delay is heard.
            let until = std::time::Instant::now() + delay;
            while std::time::Instant::now() < until {
                if !self.should_run(tenant, id) {
                    return Err(None);
                }
                std::thread::sleep(
                    until.saturating_duration_since(std::time::Instant::now()).min(Duration::from_millis(50)),
                );
            }
            if !self.should_run(tenant, id) {
                return Err(None);
            }
            started = now_ms();
            match self.deploy(tenant, id) {
                Ok((graph, running)) => {
                    let handle = running.handle.clone();
                    if let Some(entry) = self.inner.entries.lock().get_mut(tenant).and_then(|j| j.get_mut(id)) {
                        entry.graph = Some(graph);
                        entry.running = Some(running);
                        entry.restarting = false;
                    }
                    return Ok((handle, started));
                }
                Err(e) => cause = TaskError::external(e.message),
            }
        }
    }

    fn reset_crash_streak(&self, tenant: &str, id: &str) {
        if let Some(entry) = self.inner.entries.lock().get_mut(tenant).and_then(|j| j.get_mut(id)) {
            entry.record.crash_streak = 0;
        }
        self.persist(tenant, id);
    }

    fn persist(&self, tenant: &str, id: &str) {
        // The record is copied inside this lock, so the last write always stores the newest state.
        let _serial = self.inner.persisting.lock();
        let record = self.inner.entries.lock().get(tenant).and_then(|j| j.get(id)).map(|e| e.record.clone());
        if let Some(record) = record
            && let Err(e) = self.inner.store.put_job(tenant, &record)
        {
            tracing::error!(tenant, job = id, "cannot save job: {e}");
        }
    }

    /// A tenant's jobs, newest first.
    pub fn list(&self, tenant: &str) -> Vec<JobSummary> {
        let entries = self.inner.entries.lock();
        let mut list: Vec<JobSummary> = entries
            .get(tenant)
            .map(|jobs| {
                jobs.values()
                    .map(|e| JobSummary {
                        id: e.record.id.clone(),
                        name: e.record.name.clone(),
                        state: state_name(e.running.as_ref().map_or(e.record.state, |r| r.handle.state())),
                        submitted_at: e.record.submitted_at,
                    })
                    .collect()
            })
            .unwrap_or_default();
        list.sort_by_key(|j| std::cmp::Reverse(j.submitted_at));
        list
    }

    /// A job's status; another tenant's job is not found.
    pub fn status(&self, tenant: &str, id: &str) -> Result<JobView, ApiError> {
        let entries = self.inner.entries.lock();
        let entry =
            entries.get(tenant).and_then(|j| j.get(id)).ok_or_else(|| ApiError::not_found(format!("no job {id}")))?;
        let record = &entry.record;
        let (state, error, counters, mut reports) = match &entry.running {
            Some(running) => {
                let handle = &running.handle;
                let reports = handle.connector_reports();
                (handle.state(), handle.error().map(|e| failure(&e)), handle.operators(), reports)
            }
            None => (
                record.state,
                record.error.as_ref().map(|m| FailureView {
                    message: m.clone(),
                    operator: None,
                    domain: "user".into(),
                    logs: Vec::new(),
                }),
                Vec::new(),
                Vec::new(),
            ),
        };
        let mut view = JobView {
            id: record.id.clone(),
            name: record.name.clone(),
            state: state_name(state),
            error,
            submitted_at: record.submitted_at,
            modules: record.modules.clone(),
            operators: Vec::new(),
            edges: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            restarts: entry.restarts.clone(),
            checkpoints: None,
            running_modules: self.module_versions(tenant, &record.modules),
            upgrades: record.upgrades.clone(),
        };
        if let (Some(error), Some(why)) = (&mut view.error, &entry.gave_up) {
            error.message = format!("{} (not restarted: {why})", error.message);
        }
        if entry.restarting {
            view.state = "restarting".into();
        }
        if entry.upgrading && state != JobState::Running {
            view.state = "upgrading".into();
        }
        if let Some(graph) = &entry.graph
            && graph.checkpoints.is_some()
        {
            let stats = entry.running.as_ref().map(|r| r.handle.checkpoints()).unwrap_or_default();
            view.checkpoints = Some(stats.into());
        }
        if let Some(graph) = &entry.graph {
            for (i, node) in graph.nodes.iter().enumerate() {
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
                let _ = i;
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
        }
        Ok(view)
    }

    /// Cancels a job; it will not start again after a restart.
    pub fn cancel(&self, tenant: &str, id: &str) -> Result<JobView, ApiError> {
        let handle = {
            let mut entries = self.inner.entries.lock();
            let entry = entries
                .get_mut(tenant)
                .and_then(|j| j.get_mut(id))
                .ok_or_else(|| ApiError::not_found(format!("no job {id}")))?;
            entry.record.desired = Desired::Stopped;
            entry.running.as_ref().map(|r| r.handle.clone())
        };
        if let Some(handle) = handle {
            handle.cancel();
            handle.wait(Duration::from_secs(10));
        }
        let retain = self.graph_of(tenant, id).and_then(|g| g.checkpoints).is_some_and(|c| c.retain_on_cancel);
        if !retain {
            self.forget_checkpoints(tenant, id);
        }
        self.persist(tenant, id);
        self.status(tenant, id)
    }

    fn forget_checkpoints(&self, tenant: &str, id: &str) {
        if let Err(e) = self.inner.checkpoints.delete_prefix(&checkpoint_prefix(tenant, id)) {
            tracing::warn!(tenant, job = id, "cannot delete the job's checkpoints: {e}");
        }
    }

    /// Cancels a job if it runs, then forgets it: its definition, status and output streams are gone.
    pub fn delete(&self, tenant: &str, id: &str) -> Result<(), ApiError> {
        self.cancel(tenant, id)?;
        if let Some(jobs) = self.inner.entries.lock().get_mut(tenant) {
            jobs.remove(id);
        }
        self.forget_checkpoints(tenant, id);
        for folder in [self.inner.config.inputs_dir(), self.inner.config.state_dir()] {
            if let Err(e) = std::fs::remove_dir_all(folder.join(tenant).join(id))
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(tenant, job = id, "cannot delete the job's files: {e}");
            }
        }
        self.inner.store.remove_job(tenant, id).map_err(|e| ApiError::internal(format!("cannot delete job {id}: {e}")))
    }

    /// Takes a savepoint of a running job. With `stop`, the job reads what its inputs accepted, then nothing
    /// more, and is cancelled once the savepoint is complete; with `drain` too, its watermark first advances to
    /// the end of time, firing every event-time window and timer (for a job that stops for good).
    pub fn savepoint(&self, tenant: &str, id: &str, stop: bool, drain: bool) -> Result<SavepointView, ApiError> {
        if drain && !stop {
            return Err(ApiError::bad_request(
                "drain_without_stop",
                "`drain` applies only when the job stops (`stop`)",
            ));
        }
        self.inner.storage.check(tenant)?;
        let (handle, graph, record) = {
            let entries = self.inner.entries.lock();
            let entry = entries
                .get(tenant)
                .and_then(|j| j.get(id))
                .ok_or_else(|| ApiError::not_found(format!("no job {id}")))?;
            let running = entry
                .running
                .as_ref()
                .filter(|r| r.handle.state() == JobState::Running)
                .ok_or_else(|| ApiError::conflict(format!("job {id} is not running")))?;
            if entry.upgrading {
                return Err(ApiError::conflict(format!("job {id} is being upgraded; try again when that is done")));
            }
            (running.handle.clone(), entry.graph.clone(), entry.record.clone())
        };
        if graph.as_ref().is_none_or(|g| g.checkpoints.is_none()) {
            return Err(ApiError::conflict(
                "savepoints are taken by the job's checkpoint coordinator: add `checkpoints` to the job's spec",
            ));
        }
        if stop {
            // Nothing the inputs accepted may be left behind the savepoint: refuse more, let the job read the rest.
            let logs: Vec<Arc<IngestLog>> = self.set_stopping(tenant, id, true);
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while logs.iter().any(|log| log.unread() > 0) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            handle.suspend(drain);
        }
        let view = self.write_savepoint(tenant, id, &handle, &record).inspect_err(|_| {
            self.set_stopping(tenant, id, false);
            if stop {
                handle.resume();
            }
        })?;
        if stop {
            self.cancel(tenant, id)?;
        }
        Ok(view)
    }

    /// Takes a savepoint of a run of a job and records what it is.
    fn write_savepoint(
        &self,
        tenant: &str,
        id: &str,
        handle: &JobHandle,
        record: &JobRecord,
    ) -> Result<SavepointView, ApiError> {
        let savepoint = uuid::Uuid::new_v4().simple().to_string();
        let folder = savepoint_folder(tenant, &savepoint);
        let checkpoint = handle.savepoint(&folder, Duration::from_secs(600)).map_err(|e| {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "savepoint_failed", format!("the savepoint failed: {e}"))
        })?;
        let view = SavepointView {
            id: savepoint,
            job: id.to_string(),
            job_name: record.name.clone(),
            checkpoint,
            created_at: now_ms(),
            spec: record.spec.clone(),
        };
        let info = serde_json::to_vec_pretty(&view).map_err(|e| ApiError::internal(e.to_string()))?;
        self.inner
            .checkpoints
            .put(&format!("{folder}{SAVEPOINT_INFO}"), &info)
            .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "savepoint_failed", e.to_string()))?;
        Ok(view)
    }

    /// Marks a job as stopping (or not); returns its HTTP input logs.
    fn set_stopping(&self, tenant: &str, id: &str, stopping: bool) -> Vec<Arc<IngestLog>> {
        let mut entries = self.inner.entries.lock();
        let Some(entry) = entries.get_mut(tenant).and_then(|j| j.get_mut(id)) else { return Vec::new() };
        entry.stopping = stopping;
        entry.io.inputs.values().cloned().collect()
    }

    /// A tenant's savepoints, newest first.
    pub fn savepoints(&self, tenant: &str) -> Result<Vec<SavepointView>, ApiError> {
        let prefix = format!("{tenant}/savepoints/");
        let paths = self.inner.checkpoints.list(&prefix).map_err(|e| ApiError::internal(e.to_string()))?;
        let mut all = Vec::new();
        for path in paths.iter().filter(|p| p.ends_with(&format!("/{SAVEPOINT_INFO}"))) {
            let Some(id) = path.strip_prefix(&prefix).and_then(|p| p.split('/').next()) else { continue };
            all.push(self.savepoint_info(tenant, id)?);
        }
        all.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        Ok(all)
    }

    /// One of a tenant's savepoints; another tenant's is not found.
    pub fn savepoint_info(&self, tenant: &str, savepoint: &str) -> Result<SavepointView, ApiError> {
        if !crate::config::eddy_name_ok(savepoint) {
            return Err(ApiError::not_found(format!("no savepoint {savepoint}")));
        }
        let path = format!("{}{SAVEPOINT_INFO}", savepoint_folder(tenant, savepoint));
        let bytes = self
            .inner
            .checkpoints
            .get(&path)
            .map_err(|e| ApiError::internal(e.to_string()))?
            .ok_or_else(|| ApiError::not_found(format!("no savepoint {savepoint}")))?;
        serde_json::from_slice(&bytes).map_err(|e| ApiError::internal(format!("savepoint {savepoint}: {e}")))
    }

    /// What savepoint `savepoint` holds for `key` of operator `operator`.
    pub fn savepoint_state(
        &self,
        tenant: &str,
        savepoint: &str,
        operator: &str,
        key: &[u8],
    ) -> Result<KeyStateView, ApiError> {
        self.savepoint_info(tenant, savepoint)?;
        let folder = savepoint_folder(tenant, savepoint);
        let restore = Restore::load_folder(&self.inner.checkpoints, &folder, &format!("savepoint {savepoint}"))
            .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "storage", e.message))?;
        key_state(&restore, operator, key).ok_or_else(|| {
            ApiError::not_found(format!("savepoint {savepoint} holds no state of operator `{operator}`"))
        })
    }

    /// The objects of a savepoint: (name within the savepoint, path in the checkpoint store).
    pub fn savepoint_objects(&self, tenant: &str, savepoint: &str) -> Result<Vec<(String, String)>, ApiError> {
        self.savepoint_info(tenant, savepoint)?;
        let folder = savepoint_folder(tenant, savepoint);
        let paths = self.inner.checkpoints.list(&folder).map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(paths.into_iter().filter_map(|path| Some((path.strip_prefix(&folder)?.to_string(), path.clone()))).collect())
    }

    /// An object of the checkpoint store.
    pub fn read_object(&self, path: &str) -> Result<Vec<u8>, ApiError> {
        self.inner
            .checkpoints
            .get(path)
            .map_err(|e| ApiError::internal(e.to_string()))?
            .ok_or_else(|| ApiError::not_found(format!("{path} is gone")))
    }

    /// Deletes a savepoint.
    pub fn delete_savepoint(&self, tenant: &str, savepoint: &str) -> Result<(), ApiError> {
        self.savepoint_info(tenant, savepoint)?;
        self.inner
            .checkpoints
            .delete_prefix(&savepoint_folder(tenant, savepoint))
            .map_err(|e| ApiError::internal(e.to_string()))
    }

    /// The HTTP source `uid` of a running job.
    pub fn input(&self, tenant: &str, id: &str, uid: &str) -> Result<IngestHandle, ApiError> {
        let entries = self.inner.entries.lock();
        let entry =
            entries.get(tenant).and_then(|j| j.get(id)).ok_or_else(|| ApiError::not_found(format!("no job {id}")))?;
        // Between restarts the log takes records for the next run.
        if entry.record.desired != Desired::Running || entry.running.is_none() {
            return Err(ApiError::conflict(format!("job {id} is not running")));
        }
        if entry.stopping {
            return Err(ApiError::conflict(format!("job {id} is stopping with a savepoint and takes no more records")));
        }
        entry
            .io
            .inputs
            .get(uid)
            .map(|log| IngestHandle::new(Arc::clone(log)))
            .ok_or_else(|| ApiError::not_found(format!("job {id} has no HTTP source `{uid}`")))
    }

    /// The HTTP sink `uid` of a job (also after it ended: its retained records stay readable).
    pub fn output(&self, tenant: &str, id: &str, uid: &str) -> Result<Arc<OutputStream>, ApiError> {
        let entries = self.inner.entries.lock();
        let entry =
            entries.get(tenant).and_then(|j| j.get(id)).ok_or_else(|| ApiError::not_found(format!("no job {id}")))?;
        if entry.running.is_none() {
            return Err(ApiError::conflict(format!("job {id} has not run since the server started")));
        }
        entry
            .io
            .outputs
            .get(uid)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("job {id} has no HTTP sink `{uid}`")))
    }

    /// The running job of `tenant` that uses module `hash`, if any.
    pub fn using_module(&self, tenant: &str, hash: &str) -> Option<String> {
        let entries = self.inner.entries.lock();
        entries.get(tenant)?.values().find_map(|e| {
            let running = e.running.as_ref().is_some_and(|r| r.handle.state() == JobState::Running);
            (running && e.record.modules.values().any(|h| h == hash)).then(|| e.record.id.clone())
        })
    }

    /// Each tenant's use of disk and storage.
    pub fn storage(&self) -> &Arc<StorageMeter> {
        &self.inner.storage
    }

    /// Stops every running job for a shutdown; jobs that should run are started again on the next start.
    pub fn shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
        self.inner.storage.stop();
        let handles: Vec<_> = self
            .inner
            .entries
            .lock()
            .values()
            .flat_map(|jobs| jobs.values().filter_map(|e| e.running.as_ref().map(|r| r.handle.clone())))
            .collect();
        for handle in &handles {
            handle.cancel();
        }
        for handle in &handles {
            handle.wait(Duration::from_secs(10));
        }
        // Give watchers a moment to record the final states.
        std::thread::sleep(Duration::from_millis(50));
    }
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

/// Whether a job holds resources: running, or about to start.
fn is_active(entry: &Entry) -> bool {
    entry.running.as_ref().map_or(entry.record.state == JobState::Running, |r| r.handle.state() == JobState::Running)
}

/// The connectors this build has (Kafka when built with the `kafka` feature).
#[cfg(feature = "kafka")]
fn connectors(access: crate::config::TenantKafka) -> Option<Arc<dyn eddy_engine::io::Connectors>> {
    let access = eddy_kafka::KafkaAccess {
        settings: access.properties,
        topic_prefix: access.topic_prefix,
        group_prefix: access.group_prefix,
    };
    Some(Arc::new(eddy_kafka::KafkaConnectors { access }))
}

#[cfg(not(feature = "kafka"))]
fn connectors(_: crate::config::TenantKafka) -> Option<Arc<dyn eddy_engine::io::Connectors>> {
    None
}

/// A RocksDB backend keeping a job's working state in `folder` (checkpoints restore it: a run starts afresh).
#[cfg(feature = "rocksdb")]
fn rocksdb_backend(
    folder: &std::path::Path,
    budget: Arc<StateBudget>,
) -> Result<Arc<dyn eddy_engine::state::StateBackend>, ApiError> {
    let backend = eddy_rocksdb::RocksDbBackend::new(folder, eddy_rocksdb::RocksDbConfig::default());
    Ok(Arc::new(backend.within(budget)))
}

#[cfg(not(feature = "rocksdb"))]
fn rocksdb_backend(
    _: &std::path::Path,
    _: Arc<StateBudget>,
) -> Result<Arc<dyn eddy_engine::state::StateBackend>, ApiError> {
    Err(ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "cannot_start",
        "this build of Eddy has no RocksDB backend: build it with `--features rocksdb`, or use `state: { backend: memory }`",
    ))
}

/// Where a tenant's savepoint lives in the checkpoint store.
fn savepoint_folder(tenant: &str, savepoint: &str) -> String {
    format!("{tenant}/savepoints/{savepoint}/")
}

/// What a savepoint is, kept beside it.
const SAVEPOINT_INFO: &str = "_savepoint";

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

/// Where a job's checkpoints live in the store.
fn checkpoint_prefix(tenant: &str, id: &str) -> String {
    format!("{tenant}/{id}/")
}

/// Subtasks a job runs: each operator's parallelism.
fn subtasks(graph: &JobGraph) -> u64 {
    graph.nodes.iter().map(|n| u64::from(n.parallelism)).sum()
}

fn spec_error(errors: eddy_engine::spec::SpecErrors) -> ApiError {
    let details = errors.0.iter().map(|e| serde_json::to_value(e).unwrap_or_default()).collect();
    ApiError::bad_request("invalid_spec", errors.to_string()).with_details(details)
}
