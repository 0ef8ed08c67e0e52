//! Jobs: submission (parse, check, resolve modules), status, and the commands the API sends each job's
//! supervisor (`supervisor`), which owns the job's runs. `launch` turns a run plan into a running job; upgrades'
//! checks are in `upgrade`; what the API shows is in `views`.

mod journal;
mod launch;
mod supervisor;
#[cfg(test)]
mod supervisor_tests;
mod upgrade;
mod views;

pub use supervisor::MAX_CRASH_STREAK;
pub use upgrade::UpgradeRequest;
pub use views::{
    CheckpointView, EdgeView, FailureView, JobSummary, JobView, OperatorView, RestartView, SavepointView, TenantUse,
};

use crate::api::error::ApiError;
use crate::config::{Quota, ServerConfig};
use crate::modules::Modules;
use crate::storage::StorageMeter;
use crate::store::{Desired, Fence, JobRecord, OwnedJob, StartFrom, Store, UpgradeOutcome};
use axum::http::StatusCode;
use crossbeam_channel::Sender;
use eddy_engine::checkpoint::chunks::CHUNK_BYTES;
use eddy_engine::checkpoint::inspect::{KeyStateView, key_state};
use eddy_engine::checkpoint::{CheckpointStore, Restore};
use eddy_engine::graph::JobGraph;
use eddy_engine::io::{ConnectorReport, FileRoots, IngestHandle, IngestLog, OutputRate, OutputStream};
use eddy_engine::memory::MemoryReservation;
use eddy_engine::runtime::govern::CpuGovernor;
use eddy_engine::runtime::{JobHandle, JobState};
use eddy_engine::spec::{JobSpec, OperatorKind, SinkSpec, SourceSpec};
use eddy_engine::state::StateBudget;
use eddy_wasm_host::{GuestUsage, MemoryBudget};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use supervisor::{Command, Host, Phase, Reply, Run, Supervisor};
use views::shown_state;

/// A job's HTTP inputs (write-ahead logs) and outputs (streams) by operator uid, kept across its runs so that
/// clients keep their endpoints.
#[derive(Default, Clone)]
pub(crate) struct JobIo {
    inputs: HashMap<String, Arc<IngestLog>>,
    outputs: HashMap<String, Arc<OutputStream>>,
}

/// One job as the API and its supervisor share it: the supervisor writes, the API reads and sends commands.
pub(crate) struct JobCell {
    tenant: String,
    id: String,
    state: Mutex<JobShared>,
    commands: Sender<Command>,
    /// Its functions' log lines and its lifecycle, for people.
    journal: Arc<journal::Journal>,
}

/// What the supervisor keeps of a job.
pub(crate) struct JobShared {
    record: JobRecord,
    graph: Option<JobGraph>,
    /// The current run, or the last one since the server started.
    run: Option<Arc<dyn Run>>,
    io: JobIo,
    restarts: Vec<RestartView>,
    /// Restarts after failures since the server started (the list above keeps the newest only).
    restart_count: u64,
    phase: Phase,
    /// Why the restart strategy left the job failed.
    gave_up: Option<String>,
    /// An upgrade is under way.
    upgrading: bool,
    /// What the current run's counters held when they were last added to the tenant's usage.
    metered: (u64, u64),
}

/// Restarts kept in a job's status.
const RESTARTS_SHOWN: usize = 20;
/// How long an API call waits for a job's supervisor to answer (a savepoint of large state takes its time).
const ANSWER_LIMIT: Duration = Duration::from_secs(900);
/// How long a submission waits for the job's first run to start: most start in milliseconds, and their failures
/// (a function's init, a savepoint that does not fit) answer the request; a start that takes longer (a Kafka
/// broker that does not answer) is answered 201 and its outcome shows in the job's status.
const SUBMIT_WAIT: Duration = Duration::from_secs(5);
/// After the server went down, how long a job under suspicion runs (unless it completes a checkpoint sooner)
/// before the next one starts.
const SUSPECT_PROBATION: Duration = Duration::from_secs(60);

pub(crate) struct Inner {
    store: Store,
    modules: Arc<Modules>,
    config: Arc<ServerConfig>,
    cells: Mutex<HashMap<String, HashMap<String, Arc<JobCell>>>>,
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
    /// Each tenant's usage since it first ran a job, kept across deletes and restarts.
    metering: Mutex<HashMap<String, Metered>>,
    /// In a cluster, this node's id: job records are written fenced by the epoch this node owns each job at.
    node: Option<String>,
    /// The epoch this node owns each of its jobs at, by (tenant, id); only in a cluster.
    epochs: Mutex<HashMap<(String, String), u64>>,
}

/// A tenant's cumulative usage.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Metered {
    records_in: u64,
    records_out: u64,
    guest_cpu_nanos: u64,
    /// The tenant's guest CPU time (since the server started) when last added.
    #[serde(skip)]
    cpu_seen: u64,
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

/// All jobs of all tenants.
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Waits for a supervisor's answer.
fn answer<T>(cell: &JobCell, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, ApiError> {
    let (reply, answer) = crossbeam_channel::bounded(1);
    cell.commands.send(make(reply)).map_err(|_| ApiError::not_found(format!("no job {}", cell.id)))?;
    match answer.recv_timeout(ANSWER_LIMIT) {
        Ok(result) => result,
        Err(_) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            format!("job {} did not answer within {} s; see its status", cell.id, ANSWER_LIMIT.as_secs()),
        )),
    }
}

impl Jobs {
    /// Loads every stored job and starts again those that should run. A job that was starting when the server
    /// went down (its start not yet survived: see the crash streak) is under suspicion: those start one at a
    /// time, each after the one before has run a while, so that a job that takes the server down is found and held
    /// alone; a job whose last `MAX_CRASH_STREAK` starts each ended with the server down is held, with the
    /// reason in its status.
    ///
    /// In a cluster (`node` given), only the jobs this node owns are resumed; the others are their owners', or
    /// taken over from a node that died through [`Jobs::adopt`].
    pub fn open(
        store: Store,
        modules: Arc<Modules>,
        config: Arc<ServerConfig>,
        checkpoints: Arc<dyn CheckpointStore>,
        node: Option<String>,
    ) -> Jobs {
        let server_memory = MemoryBudget::new("the server", config.guest_memory_mb << 20, None);
        let storage = StorageMeter::start(Arc::clone(&config), Arc::clone(&checkpoints), Arc::clone(modules.quotas()));
        let jobs = Jobs {
            inner: Arc::new(Inner {
                store: store.clone(),
                modules,
                config,
                cells: Mutex::new(HashMap::new()),
                server_memory,
                accounts: Mutex::new(HashMap::new()),
                persisting: Mutex::new(()),
                governor: CpuGovernor::for_this_machine(),
                shutting_down: AtomicBool::new(false),
                checkpoints,
                storage,
                metering: Mutex::new(HashMap::new()),
                node,
                epochs: Mutex::new(HashMap::new()),
            }),
        };
        let mut suspects = Vec::new();
        for tenant in store.tenants() {
            let owned = match store.owned_jobs(&tenant) {
                Ok(owned) => owned,
                Err(e) => {
                    tracing::error!(tenant, "cannot read jobs: {e}");
                    continue;
                }
            };
            for OwnedJob { mut record, owner, epoch } in owned {
                if let Some(node) = &jobs.inner.node {
                    if owner.as_ref() != Some(node) {
                        continue;
                    }
                    jobs.inner.epochs.lock().insert((tenant.clone(), record.id.clone()), epoch);
                }
                for upgrade in record.upgrades.iter_mut().filter(|u| u.outcome == UpgradeOutcome::InProgress) {
                    upgrade.outcome = UpgradeOutcome::Interrupted;
                    upgrade.reason = Some(
                        "the server stopped during the upgrade; the job resumed from where the upgrade had got to"
                            .into(),
                    );
                    upgrade.finished_at = Some(now_ms());
                }
                let wants = record.desired == Desired::Running;
                if wants && record.crash_streak >= MAX_CRASH_STREAK {
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
                }
                if !Inner::persist(&jobs.inner, &tenant, &record) {
                    tracing::warn!(tenant, job = record.id, "another node took this job over as this one started");
                    jobs.inner.epochs.lock().remove(&(tenant.clone(), record.id.clone()));
                    continue;
                }
                let suspect = record.desired == Desired::Running && record.crash_streak > 0;
                let begin = match record.desired {
                    Desired::Running if !suspect => supervisor::Begin::Start(None),
                    Desired::Running => supervisor::Begin::Queued,
                    Desired::Stopped => supervisor::Begin::Stopped,
                };
                // The job changed last (submitted or upgraded) is the likelier culprit among equally blamed ones.
                let changed = record.upgrades.iter().map(|u| u.requested_at).fold(record.submitted_at, i64::max);
                let blame = (record.crash_streak, changed);
                match jobs.add(&tenant, record, None, begin, false) {
                    Ok(cell) if suspect => suspects.push((blame, cell)),
                    Ok(_) => {}
                    Err(e) => tracing::error!(tenant, "cannot supervise a job: {e}"),
                }
            }
        }
        if !suspects.is_empty() {
            // The job blamed most often goes first (then the one changed last): if it takes the server down again,
            // the others never started.
            suspects.sort_by_key(|(blame, _)| std::cmp::Reverse(*blame));
            let cells: Vec<Arc<JobCell>> = suspects.into_iter().map(|(_, cell)| cell).collect();
            let spawned =
                std::thread::Builder::new().name("eddy-suspects".into()).spawn(move || start_one_by_one(cells));
            if let Err(e) = spawned {
                tracing::error!("cannot start the jobs under suspicion: {e}");
            }
        }
        jobs
    }

    /// Registers a job and starts its supervisor; with `quota`, only if the tenant's quotas allow one more job like
    /// it (checked under the lock it is registered under, so concurrent submissions cannot both pass).
    fn add(
        &self,
        tenant: &str,
        record: JobRecord,
        graph: Option<JobGraph>,
        begin: supervisor::Begin,
        quota: bool,
    ) -> Result<Arc<JobCell>, ApiError> {
        if self.inner.node.is_some() {
            // A new job is this node's from its first write on; a resumed or adopted one has its epoch already.
            self.inner.epochs.lock().entry((tenant.to_string(), record.id.clone())).or_insert(1);
        }
        let (commands, receiver) = crossbeam_channel::unbounded();
        let phase = match &begin {
            supervisor::Begin::Start(_) => Phase::Starting,
            supervisor::Begin::Queued => Phase::Queued,
            supervisor::Begin::Stopped => Phase::Stopped,
        };
        let memory = self.inner.accounts(tenant, &self.inner.modules.quotas().of(tenant)).memory;
        let cell = Arc::new(JobCell {
            journal: Arc::new(journal::Journal::new(&memory)),
            tenant: tenant.to_string(),
            id: record.id.clone(),
            state: Mutex::new(JobShared {
                record,
                graph,
                run: None,
                io: JobIo::default(),
                restarts: Vec::new(),
                restart_count: 0,
                phase,
                gave_up: None,
                upgrading: false,
                metered: (0, 0),
            }),
            commands,
        });
        {
            let mut cells = self.inner.cells.lock();
            if quota && let Some(graph) = &cell.state.lock().graph {
                self.inner.check_quota(tenant, graph, cells.get(tenant), None)?;
            }
            cells.entry(tenant.to_string()).or_default().insert(cell.id.clone(), Arc::clone(&cell));
        }
        let host: Arc<dyn Host> = Arc::new(Arc::clone(&self.inner));
        if let Err(e) = Supervisor::spawn(Arc::clone(&cell), receiver, host, begin) {
            self.inner.remove(tenant, &cell.id);
            return Err(ApiError::internal(format!("cannot supervise the job: {e}")));
        }
        Ok(cell)
    }

    fn cell(&self, tenant: &str, id: &str) -> Result<Arc<JobCell>, ApiError> {
        self.inner.cell(tenant, id).ok_or_else(|| ApiError::not_found(format!("no job {id}")))
    }

    /// Checks and starts a job; answers once its first run started (or could not).
    pub fn submit(&self, tenant: &str, text: &str, start_from: Option<StartFrom>) -> Result<JobView, ApiError> {
        let spec = JobSpec::parse(text).map_err(spec_error)?;
        let graph = JobGraph::build(&spec, &self.inner.modules.catalog(tenant, None)).map_err(spec_error)?;
        if let Some(from) = &start_from {
            self.savepoint_info(tenant, &from.savepoint)?;
        }
        self.check_kafka(tenant, &graph)?;
        self.inner.storage.check(tenant)?;
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
            checkpoint_id_floor: 0,
        };
        let id = record.id.clone();
        let (reply, started) = crossbeam_channel::bounded(1);
        self.add(tenant, record, Some(graph), supervisor::Begin::Start(Some(reply)), true)?;
        let outcome = match started.recv_timeout(SUBMIT_WAIT) {
            Ok(outcome) => outcome,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => Ok(()),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                Err(ApiError::internal("the job's supervisor ended"))
            }
        };
        if let Err(e) = outcome {
            // Nothing ran: forget the job.
            if let Ok(cell) = self.cell(tenant, &id) {
                let _ = answer(&cell, Command::Delete);
            }
            self.inner.remove(tenant, &id);
            return Err(e);
        }
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

    /// A tenant's jobs, newest first.
    pub fn list(&self, tenant: &str) -> Vec<JobSummary> {
        let mut list: Vec<JobSummary> = self
            .inner
            .tenant_cells(tenant)
            .iter()
            .map(|cell| {
                let state = cell.state.lock();
                JobSummary {
                    id: state.record.id.clone(),
                    name: state.record.name.clone(),
                    state: shown_state(&state),
                    submitted_at: state.record.submitted_at,
                    node: self.inner.node.clone(),
                }
            })
            .collect();
        if self.inner.node.is_some() {
            // The jobs other nodes run, as they last saved them.
            let owned = self.inner.store.owned_jobs(tenant).unwrap_or_else(|e| {
                tracing::error!(tenant, "cannot list the tenant's jobs on other nodes: {e}");
                Vec::new()
            });
            let here: std::collections::HashSet<String> = list.iter().map(|l| l.id.clone()).collect();
            for job in owned.into_iter().filter(|j| !here.contains(&j.record.id)) {
                let state = serde_json::to_value(job.record.state).ok().and_then(|v| v.as_str().map(str::to_string));
                list.push(JobSummary {
                    id: job.record.id,
                    name: job.record.name,
                    state: state.unwrap_or_default(),
                    submitted_at: job.record.submitted_at,
                    node: job.owner,
                });
            }
        }
        list.sort_by_key(|j| std::cmp::Reverse(j.submitted_at));
        list
    }

    /// A job's status; another tenant's job is not found.
    pub fn status(&self, tenant: &str, id: &str) -> Result<JobView, ApiError> {
        let cell = self.cell(tenant, id)?;
        // Read outside the job's lock: in a cluster the module list comes from the shared database.
        let pinned = cell.state.lock().record.modules.clone();
        let running_modules = self.module_versions(tenant, &pinned);
        let state = cell.state.lock();
        Ok(views::job_view(&state, running_modules))
    }

    /// Cancels a job; it will not start again after a restart.
    pub fn cancel(&self, tenant: &str, id: &str) -> Result<JobView, ApiError> {
        answer(self.cell(tenant, id)?.as_ref(), Command::Cancel)?;
        self.status(tenant, id)
    }

    /// Cancels a job if it runs, then forgets it: its definition, status, checkpoints and files are gone.
    pub fn delete(&self, tenant: &str, id: &str) -> Result<(), ApiError> {
        let result = answer(self.cell(tenant, id)?.as_ref(), Command::Delete);
        self.inner.remove(tenant, id);
        result
    }

    /// Takes a savepoint of a running job. With `stop`, every record its HTTP inputs acknowledged is read, the
    /// inputs take no more, and the job stops once the savepoint is complete and what it covers committed; with
    /// `drain` too, its watermark first advances to the end of time, firing every event-time window and timer.
    pub fn savepoint(&self, tenant: &str, id: &str, stop: bool, drain: bool) -> Result<SavepointView, ApiError> {
        if drain && !stop {
            return Err(ApiError::bad_request(
                "drain_without_stop",
                "`drain` applies only when the job stops (`stop`)",
            ));
        }
        let cell = self.cell(tenant, id)?;
        self.inner.storage.check(tenant)?;
        if cell.state.lock().upgrading {
            return Err(ApiError::conflict(format!("job {id} is being upgraded; try again when that is done")));
        }
        answer(&cell, |reply| Command::Savepoint { stop, drain, reply })
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
        // A read holds a chunk and a batch of its records decoded.
        let _held = self.hold_memory(tenant, 4 * CHUNK_BYTES)?;
        let folder = savepoint_folder(tenant, savepoint);
        let storage = |e: eddy_engine::TaskError| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "storage", e.message);
        let restore = Restore::load_folder(&self.inner.checkpoints, &folder, &format!("savepoint {savepoint}"))
            .map_err(storage)?;
        key_state(&restore, operator, key).map_err(storage)?.ok_or_else(|| {
            ApiError::not_found(format!("savepoint {savepoint} holds no state of operator `{operator}`"))
        })
    }

    /// Charges `bytes` that a request holds to `tenant`'s memory budget until the reservation is dropped; past the
    /// budget, the request is refused (503: memory frees up when other requests end).
    pub fn hold_memory(&self, tenant: &str, bytes: usize) -> Result<MemoryReservation, ApiError> {
        let quota = self.inner.modules.quotas().of(tenant);
        self.inner.accounts(tenant, &quota).memory.reserve(bytes).map_err(ApiError::memory)
    }

    /// The objects of a savepoint: (name within the savepoint, path in the checkpoint store).
    pub fn savepoint_objects(&self, tenant: &str, savepoint: &str) -> Result<Vec<(String, String)>, ApiError> {
        self.savepoint_info(tenant, savepoint)?;
        let folder = savepoint_folder(tenant, savepoint);
        let paths = self.inner.checkpoints.list(&folder).map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(paths.into_iter().filter_map(|path| Some((path.strip_prefix(&folder)?.to_string(), path.clone()))).collect())
    }

    /// An object of the checkpoint store, charged to `tenant`'s memory while it is held.
    pub fn read_object(&self, tenant: &str, path: &str) -> Result<(Vec<u8>, MemoryReservation), ApiError> {
        let mut held = self.hold_memory(tenant, 0)?;
        let bytes = self.read_whole_object(path)?;
        held.resize(bytes.len()).map_err(ApiError::memory)?;
        Ok((bytes, held))
    }

    fn read_whole_object(&self, path: &str) -> Result<Vec<u8>, ApiError> {
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

    /// The HTTP source `uid` of a job that should run: it takes records while the job runs, restarts or is
    /// upgraded (they wait in its log for the next run), not once the job stopped or while it stops.
    pub fn input(&self, tenant: &str, id: &str, uid: &str) -> Result<IngestHandle, ApiError> {
        let cell = self.cell(tenant, id)?;
        let state = cell.state.lock();
        if state.record.desired != Desired::Running || state.phase == Phase::Stopped {
            return Err(ApiError::conflict(format!("job {id} is not running")));
        }
        match state.io.inputs.get(uid) {
            Some(log) => Ok(IngestHandle::new(Arc::clone(log))),
            None if state.graph.is_none() => Err(ApiError::conflict(format!("job {id} has not started yet"))),
            None => Err(ApiError::not_found(format!("job {id} has no HTTP source `{uid}`"))),
        }
    }

    /// The HTTP sink `uid` of a job (also after it ended: its retained records stay readable).
    pub fn output(&self, tenant: &str, id: &str, uid: &str) -> Result<Arc<OutputStream>, ApiError> {
        let cell = self.cell(tenant, id)?;
        let state = cell.state.lock();
        if state.io.outputs.is_empty() && state.run.is_none() {
            return Err(ApiError::conflict(format!("job {id} has not run since the server started")));
        }
        state
            .io
            .outputs
            .get(uid)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("job {id} has no HTTP sink `{uid}`")))
    }

    /// A job of `tenant` that uses module `hash` and should run (running, restarting, queued or upgrading, whose
    /// rollback would run the modules it had before), if any.
    pub fn using_module(&self, tenant: &str, hash: &str) -> Option<String> {
        self.inner.tenant_cells(tenant).iter().find_map(|cell| {
            let state = cell.state.lock();
            let record = &state.record;
            let wants = record.desired == Desired::Running || state.phase != Phase::Stopped;
            let upgrading = record.upgrades.iter().filter(|u| u.outcome == UpgradeOutcome::InProgress);
            let pins = std::iter::once(&record.modules).chain(upgrading.flat_map(|u| [&u.from, &u.to]));
            let uses = pins.flat_map(|p| p.values()).any(|h| h == hash);
            (wants && uses).then(|| record.id.clone())
        })
    }

    /// What `tenant` uses now, and what its jobs have done since it first ran one.
    pub fn tenant_use(&self, tenant: &str) -> TenantUse {
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
        let cpu_now = self.inner.accounts.lock().get(tenant).map(|accounts| {
            usage.memory_bytes = accounts.memory.used() as u64;
            usage.state_bytes = accounts.state.used();
            accounts.usage.cpu().as_nanos() as u64
        });
        let metered = self.inner.metered(tenant);
        let cpu_unmetered = cpu_now.map_or(0, |cpu| cpu.saturating_sub(metered.cpu_seen));
        usage.guest_cpu_seconds = (metered.guest_cpu_nanos + cpu_unmetered) as f64 / 1e9;
        usage.records_in = metered.records_in;
        usage.records_out = metered.records_out;
        for cell in self.inner.tenant_cells(tenant) {
            let state = cell.state.lock();
            if counts_against_quota(&state) {
                usage.jobs += 1;
                usage.parallelism += state.graph.as_ref().map_or(0, subtasks);
            }
            if let (Some(run), Some(graph)) = (&state.run, &state.graph) {
                let (records_in, records_out) = run_counts(run.as_ref(), graph);
                usage.records_in += records_in.saturating_sub(state.metered.0);
                usage.records_out += records_out.saturating_sub(state.metered.1);
            }
        }
        usage
    }

    /// What this server carries: its running jobs (`tenant/id`), their subtasks and their guest memory in bytes.
    pub fn node_load(&self) -> (Vec<String>, u64, u64) {
        let (mut jobs, mut subtasks_running) = (Vec::new(), 0);
        let cells: Vec<Arc<JobCell>> =
            self.inner.cells.lock().values().flat_map(|jobs| jobs.values().cloned()).collect();
        for cell in cells {
            let state = cell.state.lock();
            if counts_against_quota(&state) {
                jobs.push(format!("{}/{}", cell.tenant, cell.id));
                subtasks_running += state.graph.as_ref().map_or(0, subtasks);
            }
        }
        let memory = self.inner.accounts.lock().values().map(|a| a.memory.used() as u64).sum();
        (jobs, subtasks_running, memory)
    }

    /// Runs a job another node owned and this one claimed (`fence`: this node at the new epoch), from the job's
    /// newest checkpoint. False if the job is already supervised here.
    pub fn adopt(&self, tenant: &str, record: JobRecord, fence: &Fence) -> bool {
        if self.inner.cell(tenant, &record.id).is_some() || self.inner.shutting_down.load(Ordering::SeqCst) {
            return false;
        }
        self.inner.epochs.lock().insert((tenant.to_string(), record.id.clone()), fence.epoch);
        let begin = match record.desired {
            Desired::Running => supervisor::Begin::Start(None),
            Desired::Stopped => supervisor::Begin::Stopped,
        };
        let id = record.id.clone();
        match self.add(tenant, record, None, begin, false) {
            Ok(_) => {
                tracing::info!(tenant, job = id, epoch = fence.epoch, "took over a job from a node that is gone");
                true
            }
            Err(e) => {
                tracing::error!(tenant, job = id, "cannot run a job taken over: {e}");
                false
            }
        }
    }

    /// Hands every job this node runs to the other nodes of the cluster (`eddy node drain`): a running job stops
    /// with a savepoint (its HTTP inputs read to the end of what they acknowledged) and goes on from it on the node
    /// that claims it; a job without checkpoints, or not running, is handed over as it is. Answers per job, as
    /// (tenant, id, the savepoint or why it was handed over without one).
    pub fn hand_over_all(&self) -> Vec<(String, String, Result<String, String>)> {
        let cells: Vec<Arc<JobCell>> =
            self.inner.cells.lock().values().flat_map(|jobs| jobs.values().cloned()).collect();
        let mut moved = Vec::new();
        for cell in cells {
            let running = cell.state.lock().record.desired == Desired::Running;
            let savepoint = if running {
                self.savepoint(&cell.tenant, &cell.id, true, false).map(|v| v.id).map_err(|e| e.message)
            } else {
                Err("it was not running".to_string())
            };
            match self.release(&cell, running) {
                Ok(()) => moved.push((cell.tenant.clone(), cell.id.clone(), savepoint)),
                Err(e) => {
                    tracing::error!(tenant = cell.tenant, job = cell.id, "cannot hand the job over: {e}");
                    moved.push((cell.tenant.clone(), cell.id.clone(), Err(format!("not handed over: {e}"))));
                }
            }
        }
        moved
    }

    /// Gives up this node's ownership of a job, with `desired` running or not, and stops supervising it here.
    fn release(&self, cell: &Arc<JobCell>, run: bool) -> Result<(), String> {
        let fence = self.inner.fence(&cell.tenant, &cell.id).ok_or("this node does not own the job")?;
        let record = {
            let mut state = cell.state.lock();
            if run {
                state.record.desired = Desired::Running;
                state.record.state = JobState::Running;
                state.record.error = None;
            }
            state.record.clone()
        };
        // The stop below writes nothing once the job is released: its writes are fenced out.
        if !self.inner.store.release_job(&cell.tenant, &record, &fence).map_err(|e| e.to_string())? {
            return Err("another node took the job over".into());
        }
        self.inner.epochs.lock().remove(&(cell.tenant.clone(), cell.id.clone()));
        self.inner.stop_and_forget(cell);
        Ok(())
    }

    /// Follows a job's journal: its functions' log lines and its lifecycle, each a JSON line.
    pub fn logs(&self, tenant: &str, id: &str) -> Result<eddy_engine::io::Subscription, ApiError> {
        Ok(self.cell(tenant, id)?.journal.subscribe())
    }

    /// Whether this node supervises a job with this id, of any tenant.
    pub fn supervises(&self, id: &str) -> bool {
        self.inner.cells.lock().values().any(|jobs| jobs.contains_key(id))
    }

    /// Whether this node supervises `tenant`'s job `id`.
    pub fn runs(&self, tenant: &str, id: &str) -> bool {
        self.inner.cell(tenant, id).is_some()
    }

    /// Each of `tenant`'s jobs on this node: its restarts since the server started, and its current run's
    /// checkpoint counters (none when it has no run).
    pub fn job_counters(&self, tenant: &str) -> Vec<(String, u64, Option<eddy_engine::checkpoint::CheckpointStats>)> {
        let mut all = Vec::new();
        for cell in self.inner.tenant_cells(tenant) {
            let state = cell.state.lock();
            let checkpoints = state.run.as_ref().and_then(|run| run.handle()).map(JobHandle::checkpoints);
            all.push((cell.id.clone(), state.restart_count, checkpoints));
        }
        all
    }

    /// What the connectors of `tenant`'s running jobs reported last: (job, operator, one report per subtask).
    pub fn connector_reports(&self, tenant: &str) -> Vec<(String, String, Vec<ConnectorReport>)> {
        self.per_operator(tenant, JobHandle::connector_reports)
    }

    /// Counters of every operator of `tenant`'s jobs that have run since the server started: (job, operator, counters).
    pub fn operator_counters(&self, tenant: &str) -> Vec<(String, String, eddy_engine::runtime::OperatorCounters)> {
        self.per_operator(tenant, JobHandle::operators)
    }

    /// What `read` gives per operator of each of `tenant`'s runs, as (job, operator, value).
    fn per_operator<T>(&self, tenant: &str, read: impl Fn(&JobHandle) -> Vec<(String, T)>) -> Vec<(String, String, T)> {
        let mut all = Vec::new();
        for cell in self.inner.tenant_cells(tenant) {
            let state = cell.state.lock();
            if let Some(handle) = state.run.as_ref().and_then(|run| run.handle()) {
                all.extend(read(handle).into_iter().map(|(uid, value)| (cell.id.clone(), uid, value)));
            }
        }
        all
    }

    /// Each tenant's use of disk and storage.
    pub fn storage(&self) -> &Arc<StorageMeter> {
        &self.inner.storage
    }

    /// Stops every job for a shutdown, each run ended before this returns; jobs that should run start again on
    /// the next start.
    pub fn shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
        self.inner.storage.stop();
        let cells: Vec<Arc<JobCell>> =
            self.inner.cells.lock().values().flat_map(|jobs| jobs.values().cloned()).collect();
        let answers: Vec<_> = cells
            .iter()
            .filter_map(|cell| {
                let (reply, answer) = crossbeam_channel::bounded(1);
                cell.commands.send(Command::Shutdown(reply)).ok().map(|()| answer)
            })
            .collect();
        for answer in answers {
            let _ = answer.recv_timeout(ANSWER_LIMIT);
        }
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
}

impl Inner {
    fn cell(&self, tenant: &str, id: &str) -> Option<Arc<JobCell>> {
        self.cells.lock().get(tenant)?.get(id).cloned()
    }

    fn tenant_cells(&self, tenant: &str) -> Vec<Arc<JobCell>> {
        self.cells.lock().get(tenant).map(|jobs| jobs.values().cloned().collect()).unwrap_or_default()
    }

    fn remove(&self, tenant: &str, id: &str) {
        if let Some(jobs) = self.cells.lock().get_mut(tenant) {
            jobs.remove(id);
        }
    }

    /// Saves a job's record; in a cluster, only while this node owns the job at the epoch it runs it at. False:
    /// another node took the job over (this node should stop running it).
    fn persist(&self, tenant: &str, record: &JobRecord) -> bool {
        self.save(tenant, record).unwrap_or_else(|e| {
            tracing::error!(tenant, job = record.id, "cannot save job: {e}");
            true
        })
    }

    /// Saves a job's record, fenced in a cluster: `Ok(false)` when this node no longer owns the job at its epoch
    /// (or never did), and nothing was written.
    fn save(&self, tenant: &str, record: &JobRecord) -> std::io::Result<bool> {
        let _serial = self.persisting.lock();
        if self.node.is_none() {
            return self.store.put_job(tenant, record).map(|()| true);
        }
        match self.fence(tenant, &record.id) {
            Some(fence) => self.store.put_owned_job(tenant, record, &fence),
            None => Ok(false),
        }
    }
    /// Stops running a job another node took over, without writing its record (the new owner does), and forgets
    /// it here. The stop is asked for on a thread of its own: the job's supervisor may be the caller.
    fn let_go(self: &Arc<Self>, tenant: &str, id: &str) {
        if self.epochs.lock().remove(&(tenant.to_string(), id.to_string())).is_none() {
            return;
        }
        tracing::warn!(tenant, job = id, "another node took this job over; stopping its run here");
        let Some(cell) = self.cell(tenant, id) else { return };
        let inner = Arc::clone(self);
        let spawned =
            std::thread::Builder::new().name("eddy-let-go".into()).spawn(move || inner.stop_and_forget(&cell));
        if let Err(e) = spawned {
            tracing::error!(tenant, job = id, "cannot stop a job taken over: {e}");
        }
    }

    /// In a cluster, the jobs of `tenant` that other nodes run (or should: their owner may be gone and the job not
    /// yet taken over), and their subtasks: a tenant's quotas count its jobs on every node.
    /// `here` are the tenant's jobs on this node (the caller holds the lock on them).
    fn elsewhere(
        &self,
        tenant: &str,
        here: Option<&HashMap<String, Arc<JobCell>>>,
        except: Option<&str>,
    ) -> (u64, u64) {
        let Some(node) = &self.node else { return (0, 0) };
        let owned = self.store.owned_jobs(tenant).unwrap_or_else(|e| {
            tracing::error!(tenant, "cannot count the tenant's jobs on other nodes: {e}");
            Vec::new()
        });
        let (mut jobs, mut in_use) = (0, 0);
        for job in owned {
            let local = job.owner.as_ref() == Some(node) || here.is_some_and(|h| h.contains_key(&job.record.id));
            if local || job.record.desired != Desired::Running || Some(job.record.id.as_str()) == except {
                continue;
            }
            jobs += 1;
            let graph = JobSpec::parse(&job.record.spec)
                .ok()
                .and_then(|spec| JobGraph::build(&spec, &self.modules.catalog(tenant, Some(&job.record.modules))).ok());
            in_use += graph.as_ref().map_or(0, subtasks);
        }
        (jobs, in_use)
    }

    /// Stops `cell`'s supervisor (its run ends; a job no longer this node's writes nothing) and forgets the job here,
    /// unless a new cell took its place meanwhile.
    fn stop_and_forget(&self, cell: &Arc<JobCell>) {
        let (reply, answer) = crossbeam_channel::bounded(1);
        if cell.commands.send(Command::Shutdown(reply)).is_ok() {
            let _ = answer.recv_timeout(ANSWER_LIMIT);
        }
        let mut cells = self.cells.lock();
        if let Some(jobs) = cells.get_mut(&cell.tenant)
            && jobs.get(&cell.id).is_some_and(|c| Arc::ptr_eq(c, cell))
        {
            jobs.remove(&cell.id);
        }
    }

    /// The fence this node writes `tenant`'s job `id` with, if it owns the job in a cluster.
    fn fence(&self, tenant: &str, id: &str) -> Option<Fence> {
        let node = self.node.as_ref()?;
        let epoch = *self.epochs.lock().get(&(tenant.to_string(), id.to_string()))?;
        Some(Fence { node: node.clone(), epoch })
    }

    /// Refuses one more job like `graph` (or another start of job `except`) that would take `tenant` past its
    /// quota of jobs or subtasks. Every job that should run counts: running, restarting, queued or upgrading.
    fn check_quota(
        &self,
        tenant: &str,
        graph: &JobGraph,
        jobs: Option<&HashMap<String, Arc<JobCell>>>,
        except: Option<&str>,
    ) -> Result<(), ApiError> {
        let quota = self.modules.quotas().of(tenant);
        let (mut active, mut in_use) = self.elsewhere(tenant, jobs, except);
        for cell in jobs.into_iter().flat_map(HashMap::values) {
            if Some(cell.id.as_str()) == except {
                continue;
            }
            let state = cell.state.lock();
            if counts_against_quota(&state) {
                active += 1;
                in_use += state.graph.as_ref().map_or(0, subtasks);
            }
        }
        if active >= u64::from(quota.jobs) {
            return Err(ApiError::quota("jobs", quota.jobs.into(), active, "one more running job"));
        }
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
        let mut all = self.accounts.lock();
        let accounts = all.entry(tenant.to_string()).or_insert_with(|| TenantAccounts {
            memory: MemoryBudget::new(
                format!("tenant {tenant}"),
                quota.memory_mb << 20,
                Some(Arc::clone(&self.server_memory)),
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

    /// The folders a tenant's file sources and sinks may use.
    fn file_roots(&self, tenant: &str) -> FileRoots {
        let config = &self.config;
        let mut roots = FileRoots::new(config.files_dir().join(tenant));
        for (name, folder) in config.file_roots_of(tenant) {
            roots = roots.with_root(&name, folder);
        }
        roots
    }

    /// `tenant`'s cumulative usage, loaded once from the control plane.
    fn metered(&self, tenant: &str) -> Metered {
        *self.metering.lock().entry(tenant.to_string()).or_insert_with(|| {
            self.store.usage(tenant).and_then(|json| serde_json::from_str(&json).ok()).unwrap_or_default()
        })
    }
}

/// Starts the jobs under suspicion after the server went down, one at a time: each once the one before has
/// completed a checkpoint, run for `SUSPECT_PROBATION`, or ended.
fn start_one_by_one(cells: Vec<Arc<JobCell>>) {
    for cell in cells {
        if let Err(e) = answer(&cell, Command::Start) {
            tracing::warn!(tenant = cell.tenant, job = cell.id, "cannot resume job: {}", e.message);
            continue;
        }
        let since = Instant::now();
        while since.elapsed() < SUSPECT_PROBATION {
            let settled = {
                let state = cell.state.lock();
                match &state.run {
                    Some(run) => run.state() != JobState::Running || run.checkpoints().completed > 0,
                    None => state.phase != Phase::Starting,
                }
            };
            if settled {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Whether a job holds its tenant's quota: it should run, whatever it is doing now.
fn counts_against_quota(state: &JobShared) -> bool {
    state.record.desired == Desired::Running && state.phase != Phase::Stopped
}

/// Records a run's sources read and its sinks wrote.
fn run_counts(run: &dyn Run, graph: &JobGraph) -> (u64, u64) {
    let Some(handle) = run.handle() else { return (0, 0) };
    let (mut records_in, mut records_out) = (0, 0);
    for (uid, counters) in handle.operators() {
        match graph.node(&uid).map(|(_, node)| &node.kind) {
            Some(OperatorKind::Source(_)) => records_in += counters.records_out,
            Some(OperatorKind::Sink(_)) => records_out += counters.records_in,
            _ => {}
        }
    }
    (records_in, records_out)
}

/// Where a tenant's savepoint lives in the checkpoint store.
fn savepoint_folder(tenant: &str, savepoint: &str) -> String {
    format!("{tenant}/savepoints/{savepoint}/")
}

/// What a savepoint is, kept beside it.
const SAVEPOINT_INFO: &str = "_savepoint";

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
