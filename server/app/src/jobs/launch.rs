//! What the server gives a job's supervisor (the [`Host`]): its control plane, and turning a run plan into a
//! running job with functions, state backend, budgets, connectors, HTTP endpoints and checkpoints as the server
//! provides them for the job's tenant.

use super::supervisor::{Host, Run, RunPlan};
use super::{Inner, JobCell, JobIo, checkpoint_prefix, run_counts, spec_error};
use crate::api::error::ApiError;
use crate::config::TenantKafka;
use crate::store::{Fence, JobRecord};
use axum::http::StatusCode;
use eddy_engine::TaskError;
use eddy_engine::checkpoint::CheckpointStore;
use eddy_engine::checkpoint::{CheckpointId, CheckpointIds, CheckpointStats, Checkpointing, Unconfirmed};
use eddy_engine::graph::JobGraph;
use eddy_engine::io::{IngestLog, OutputStream, Retention};
use eddy_engine::memory::MemoryReservation;
use eddy_engine::runtime::{DeployEnv, JobHandle, JobState, RunningJob, deploy};
use eddy_engine::spec::JobSpec;
use eddy_engine::spec::{BackendKind, OperatorKind, SinkSpec, SourceSpec};
use eddy_engine::state::{MemoryBackend, StateBudget};
use eddy_wasm_host::{Accounts, MemoryBudget, WasmFunctions};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// A run of the engine.
pub(crate) struct EngineRun {
    pub(crate) job: RunningJob,
    /// The memory its state backend holds, charged to the job while it runs.
    _backend_memory: MemoryReservation,
}

/// How long a savepoint and a commit may take.
const SAVEPOINT_TIMEOUT: Duration = Duration::from_secs(600);
const COMMIT_TIMEOUT: Duration = Duration::from_secs(120);

impl Run for EngineRun {
    fn state(&self) -> JobState {
        self.job.handle.state()
    }

    fn wait(&self, timeout: Duration) -> JobState {
        self.job.handle.wait(timeout)
    }

    fn error(&self) -> Option<TaskError> {
        self.job.handle.error()
    }

    fn cancel(&self) {
        self.job.handle.cancel();
    }

    fn suspend(&self, drain: bool) {
        self.job.handle.suspend(drain);
    }

    fn resume(&self) {
        self.job.handle.resume();
    }

    fn savepoint(&self, folder: &str) -> Result<CheckpointId, String> {
        self.job.handle.savepoint(folder, SAVEPOINT_TIMEOUT)
    }

    fn commit(&self, checkpoint: CheckpointId) -> Result<(), String> {
        self.job.handle.commit(checkpoint, COMMIT_TIMEOUT)
    }

    fn checkpoints(&self) -> CheckpointStats {
        self.job.handle.checkpoints()
    }

    fn handle(&self) -> Option<&JobHandle> {
        Some(&self.job.handle)
    }
}

/// The job's record keeps the checkpoint ids its runs reserve, so they only grow.
struct RecordIds {
    cell: Weak<JobCell>,
    inner: Weak<Inner>,
}

impl CheckpointIds for RecordIds {
    fn reserve(&self, upto: CheckpointId) -> Result<(), String> {
        let (Some(cell), Some(inner)) = (self.cell.upgrade(), self.inner.upgrade()) else {
            return Err("the job is gone".into());
        };
        let record = {
            let mut state = cell.state.lock();
            state.record.checkpoint_id_floor = state.record.checkpoint_id_floor.max(upto);
            state.record.clone()
        };
        match inner.save(&cell.tenant, &record) {
            Ok(true) => Ok(()),
            Ok(false) => {
                inner.let_go(&cell.tenant, &cell.id);
                Err("another node took the job over".into())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    fn confirm(&self, _id: CheckpointId) -> Result<(), Unconfirmed> {
        let (Some(cell), Some(inner)) = (self.cell.upgrade(), self.inner.upgrade()) else {
            return Err(Unconfirmed::Lost("the job is gone".into()));
        };
        let Some(fence) = inner.fence(&cell.tenant, &cell.id) else {
            // One server, or a job this node already let go (which completes nothing more).
            return if inner.node.is_none() {
                Ok(())
            } else {
                Err(Unconfirmed::Lost("this node let the job go".into()))
            };
        };
        match inner.store.holds_job(&cell.tenant, &cell.id, &fence) {
            Ok(true) => Ok(()),
            Ok(false) => {
                inner.let_go(&cell.tenant, &cell.id);
                Err(Unconfirmed::Lost(taken_over(&fence)))
            }
            Err(e) => Err(Unconfirmed::Unknown(format!("cannot confirm that this node still owns the job: {e}"))),
        }
    }
}

fn taken_over(fence: &Fence) -> String {
    format!("another node took the job over (this node owned it at epoch {})", fence.epoch)
}

impl Inner {
    /// Deploys a run of `cell`'s job as `plan` says.
    pub(crate) fn deploy_run(
        self: &Arc<Inner>,
        cell: &Arc<JobCell>,
        plan: RunPlan,
        io: &JobIo,
    ) -> Result<Arc<dyn Run>, ApiError> {
        let (tenant, id) = (cell.tenant.as_str(), cell.id.as_str());
        let graph = plan.graph;
        for hash in graph.modules.values() {
            self.modules
                .load(hash)
                .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "cannot_start", e.to_string()))?;
        }
        let quota = self.modules.quotas().of(tenant);
        let accounts = self.accounts(tenant, &quota);
        let job_memory = MemoryBudget::new(format!("job {id}"), quota.job_memory_mb << 20, Some(accounts.memory));
        let functions =
            WasmFunctions::new(Arc::clone(self.modules.runtime()), self.config.instance_limits(Some(&quota)))
                .with_accounts(Accounts {
                    memory: Some(Arc::clone(&job_memory)),
                    usage: Some(accounts.usage),
                    journal: Some(Arc::clone(&cell.journal) as Arc<dyn eddy_wasm_host::GuestJournal>),
                });
        let mut env = DeployEnv::new(id, tenant, Arc::new(functions));
        env.memory = Some(Arc::clone(&job_memory));
        let mut held = MemoryReservation::default();
        env.disk = Some(self.storage.budget(tenant));
        env.files = self.file_roots(tenant);
        self.governor.set_weight(tenant, quota.cpu_weight);
        env.governor = Some(Arc::clone(&self.governor));
        env.output_rate = accounts.output_rate.map(|(_, bucket)| bucket);
        env.state = match graph.state_backend.unwrap_or(self.config.state_backend) {
            BackendKind::Memory => Arc::new(MemoryBackend::within(accounts.state)),
            BackendKind::Rocksdb => {
                let bytes = self.config.rocksdb_memory_mb << 20;
                // RocksDB's caches and memtables fill up to their size: the job holds that much from the start.
                held = job_memory.reserve(bytes).map_err(|e| {
                    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "cannot_start", format!("RocksDB state: {e}"))
                })?;
                rocksdb_backend(&self.config.state_dir().join(tenant).join(id), accounts.state, bytes)?
            }
        };
        env.connectors = connectors(self.config.tenant_kafka(tenant));
        env.inputs = io.inputs.clone();
        env.outputs = io.outputs.clone();
        if let Some(spec) = &graph.checkpoints {
            let mut checkpointing = Checkpointing::new(
                spec.clone(),
                Arc::clone(&self.checkpoints),
                checkpoint_prefix(tenant, id),
                graph.max_parallelism,
            )
            .after(plan.last_id);
            checkpointing.disk = Some(self.storage.budget(tenant));
            checkpointing.ids = Some(Arc::new(RecordIds { cell: Arc::downgrade(cell), inner: Arc::downgrade(self) }));
            env.checkpointing = Some(checkpointing);
            env.restore = plan.restore;
            env.allow_non_restored_state = plan.allow_non_restored_state;
        }
        let running = deploy(&graph, env).map_err(|e| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "cannot_start", format!("the job cannot start: {e}"))
                .with_details(vec![serde_json::to_value(super::views::failure(&e)).unwrap_or_default()])
        })?;
        Ok(Arc::new(EngineRun { job: running, _backend_memory: held }))
    }

    /// The job's HTTP input logs and output streams: those it has, and any its graph names that it has not.
    pub(crate) fn open_io(&self, cell: &JobCell, graph: &JobGraph, mut io: JobIo) -> Result<JobIo, ApiError> {
        for node in &graph.nodes {
            match &node.kind {
                OperatorKind::Source(s) if s.source == SourceSpec::Http && !io.inputs.contains_key(&node.uid) => {
                    let folder = self.config.inputs_dir().join(&cell.tenant).join(&cell.id).join(&node.uid);
                    let log = IngestLog::open(&folder)
                        .map_err(|e| ApiError::internal(format!("cannot open the input log of `{}`: {e}", node.uid)))?;
                    io.inputs.insert(node.uid.clone(), log);
                }
                OperatorKind::Sink(SinkSpec::Http) if !io.outputs.contains_key(&node.uid) => {
                    let tenant_memory = self.accounts(&cell.tenant, &self.modules.quotas().of(&cell.tenant)).memory;
                    let stream = OutputStream::new(Retention::default()).charged_to(Some(&tenant_memory));
                    io.outputs.insert(node.uid.clone(), Arc::new(stream));
                }
                _ => {}
            }
        }
        Ok(io)
    }
}

/// The connectors this build has (Kafka when built with the `kafka` feature).
#[cfg(feature = "kafka")]
fn connectors(access: TenantKafka) -> Option<Arc<dyn eddy_engine::io::Connectors>> {
    let access = eddy_kafka::KafkaAccess {
        settings: access.properties,
        topic_prefix: access.topic_prefix,
        group_prefix: access.group_prefix,
    };
    Some(Arc::new(eddy_kafka::KafkaConnectors { access }))
}

#[cfg(not(feature = "kafka"))]
fn connectors(_: TenantKafka) -> Option<Arc<dyn eddy_engine::io::Connectors>> {
    None
}

/// A RocksDB backend keeping a job's working state in `folder` (checkpoints restore it: a run starts afresh).
#[cfg(feature = "rocksdb")]
fn rocksdb_backend(
    folder: &std::path::Path,
    budget: Arc<StateBudget>,
    memory: usize,
) -> Result<Arc<dyn eddy_engine::state::StateBackend>, ApiError> {
    let backend = eddy_rocksdb::RocksDbBackend::new(folder, eddy_rocksdb::RocksDbConfig::within(memory));
    Ok(Arc::new(backend.within(budget)))
}

#[cfg(not(feature = "rocksdb"))]
fn rocksdb_backend(
    _: &std::path::Path,
    _: Arc<StateBudget>,
    _: usize,
) -> Result<Arc<dyn eddy_engine::state::StateBackend>, ApiError> {
    Err(ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "cannot_start",
        "this build of Eddy has no RocksDB backend: build it with `--features rocksdb`, or use `state: { backend: memory }`",
    ))
}

impl Host for Arc<Inner> {
    fn persist(&self, tenant: &str, record: &JobRecord) {
        if !Inner::persist(self, tenant, record) {
            self.let_go(tenant, &record.id);
        }
    }

    fn graph(&self, tenant: &str, record: &JobRecord) -> Result<JobGraph, ApiError> {
        let spec = JobSpec::parse(&record.spec).map_err(spec_error)?;
        JobGraph::build(&spec, &self.modules.catalog(tenant, Some(&record.modules))).map_err(spec_error)
    }

    fn admit(&self, cell: &JobCell, graph: &JobGraph) -> Result<(), ApiError> {
        let cells = self.cells.lock();
        self.check_quota(&cell.tenant, graph, cells.get(&cell.tenant), Some(&cell.id))?;
        drop(cells);
        self.storage.check(&cell.tenant)
    }

    fn io(&self, cell: &JobCell, graph: &JobGraph, io: JobIo) -> Result<JobIo, ApiError> {
        self.open_io(cell, graph, io)
    }

    fn launch(&self, cell: &Arc<JobCell>, plan: RunPlan, io: &JobIo) -> Result<Arc<dyn Run>, ApiError> {
        let run = self.deploy_run(cell, plan, io)?;
        cell.state.lock().metered = (0, 0);
        Ok(run)
    }

    fn store(&self) -> &Arc<dyn CheckpointStore> {
        &self.checkpoints
    }

    fn forget(&self, tenant: &str, id: &str) -> Result<(), ApiError> {
        for folder in [self.config.inputs_dir(), self.config.state_dir()] {
            if let Err(e) = std::fs::remove_dir_all(folder.join(tenant).join(id))
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(tenant, job = id, "cannot delete the job's files: {e}");
            }
        }
        self.store.remove_job(tenant, id).map_err(|e| ApiError::internal(format!("cannot delete job {id}: {e}")))
    }

    fn meter(&self, cell: &JobCell, run: &dyn Run) {
        let (delta_in, delta_out) = {
            let mut state = cell.state.lock();
            let Some(graph) = &state.graph else { return };
            let (records_in, records_out) = run_counts(run, graph);
            let delta = (records_in.saturating_sub(state.metered.0), records_out.saturating_sub(state.metered.1));
            // A new run's counters start from zero again (see `launch`).
            state.metered = (records_in, records_out);
            delta
        };
        let cpu = self.accounts.lock().get(&cell.tenant).map(|a| a.usage.cpu().as_nanos() as u64);
        let mut totals = self.metered(&cell.tenant);
        let cpu_delta = cpu.map_or(0, |cpu| cpu.saturating_sub(totals.cpu_seen));
        if delta_in == 0 && delta_out == 0 && cpu_delta == 0 {
            return;
        }
        totals.records_in += delta_in;
        totals.records_out += delta_out;
        totals.guest_cpu_nanos += cpu_delta;
        if let Some(cpu) = cpu {
            totals.cpu_seen = cpu;
        }
        self.metering.lock().insert(cell.tenant.clone(), totals);
        match serde_json::to_string(&totals) {
            Ok(json) => {
                if let Err(e) = self.store.put_usage(&cell.tenant, &json) {
                    tracing::warn!(tenant = cell.tenant, "cannot save usage: {e}");
                }
            }
            Err(e) => tracing::warn!(tenant = cell.tenant, "cannot save usage: {e}"),
        }
    }
}
