//! Jobs: submission (parse, check, resolve modules, deploy), status, cancellation, and resubmission of running
//! jobs when the server starts again.

use crate::api::error::ApiError;
use crate::modules::Modules;
use crate::store::{Desired, JobRecord, Store};
use axum::http::StatusCode;
use eddy_engine::graph::{JobGraph, Partitioning};
use eddy_engine::io::{IngestHandle, OutputStream};
use eddy_engine::runtime::{DeployEnv, JobState, RunningJob, deploy};
use eddy_engine::spec::{JobSpec, OperatorKind, SinkSpec, SourceSpec};
use eddy_engine::{ErrorDomain, TaskError};
use eddy_wasm_host::{Limits, WasmFunctions};
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
    /// Current event-time watermark.
    pub watermark: Option<i64>,
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
}

struct Inner {
    store: Store,
    modules: Arc<Modules>,
    limits: Limits,
    entries: Mutex<HashMap<String, HashMap<String, Entry>>>,
    shutting_down: AtomicBool,
}

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
    /// Loads every stored job and starts again those that should run.
    pub fn open(store: Store, modules: Arc<Modules>, limits: Limits) -> Jobs {
        let jobs = Jobs {
            inner: Arc::new(Inner {
                store: store.clone(),
                modules,
                limits,
                entries: Mutex::new(HashMap::new()),
                shutting_down: AtomicBool::new(false),
            }),
        };
        for tenant in store.tenants() {
            for record in store.jobs(&tenant) {
                let resume = record.desired == Desired::Running;
                let id = record.id.clone();
                jobs.inner
                    .entries
                    .lock()
                    .entry(tenant.clone())
                    .or_default()
                    .insert(id.clone(), Entry { record, graph: None, running: None });
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
    pub fn submit(&self, tenant: &str, text: &str) -> Result<JobView, ApiError> {
        let spec = JobSpec::parse(text).map_err(spec_error)?;
        let graph = JobGraph::build(&spec, &self.inner.modules.catalog(tenant, None)).map_err(spec_error)?;
        let record = JobRecord {
            id: uuid::Uuid::new_v4().simple().to_string(),
            name: spec.name.clone(),
            spec: text.to_string(),
            modules: graph.modules.clone(),
            submitted_at: now_ms(),
            desired: Desired::Running,
            state: JobState::Running,
            error: None,
        };
        let id = record.id.clone();
        self.inner
            .entries
            .lock()
            .entry(tenant.to_string())
            .or_default()
            .insert(id.clone(), Entry { record, graph: Some(graph), running: None });
        if let Err(e) = self.start(tenant, &id) {
            // Nothing ran: forget the job.
            if let Some(jobs) = self.inner.entries.lock().get_mut(tenant) {
                jobs.remove(&id);
            }
            return Err(e);
        }
        self.persist(tenant, &id);
        self.status(tenant, &id)
    }

    /// Builds (if needed) and deploys a stored job.
    fn start(&self, tenant: &str, id: &str) -> Result<(), ApiError> {
        let (graph, record) = {
            let entries = self.inner.entries.lock();
            let entry =
                entries.get(tenant).and_then(|j| j.get(id)).ok_or_else(|| ApiError::not_found("no such job"))?;
            (entry.graph.clone(), entry.record.clone())
        };
        let result = self.deploy(tenant, &record, graph);
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

    fn deploy(
        &self,
        tenant: &str,
        record: &JobRecord,
        graph: Option<JobGraph>,
    ) -> Result<(JobGraph, RunningJob), ApiError> {
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
        let functions = Arc::new(WasmFunctions::new(Arc::clone(self.inner.modules.runtime()), self.inner.limits));
        let env = DeployEnv::new(&record.id, tenant, functions);
        let running = deploy(&graph, env).map_err(|e| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "cannot_start", format!("the job cannot start: {e}"))
                .with_details(vec![serde_json::to_value(failure(&e)).unwrap_or_default()])
        })?;
        Ok((graph, running))
    }

    /// Records the outcome when a job ends on its own.
    fn watch(&self, tenant: &str, id: &str, handle: eddy_engine::runtime::JobHandle) {
        let jobs = self.clone();
        let (tenant, id) = (tenant.to_string(), id.to_string());
        let spawned = std::thread::Builder::new().name(format!("eddy-watch-{id}")).spawn(move || {
            while handle.wait(Duration::from_secs(3600)) == JobState::Running {}
            let state = handle.state();
            {
                let mut entries = jobs.inner.entries.lock();
                let Some(entry) = entries.get_mut(&tenant).and_then(|j| j.get_mut(&id)) else { return };
                entry.record.state = state;
                entry.record.error = handle.error().map(|e| e.to_string());
                // A shutdown stops jobs that should run again after the restart.
                if !jobs.inner.shutting_down.load(Ordering::SeqCst) {
                    entry.record.desired = Desired::Stopped;
                }
            }
            jobs.persist(&tenant, &id);
        });
        if let Err(e) = spawned {
            tracing::warn!("cannot watch a job: {e}");
        }
    }

    fn persist(&self, tenant: &str, id: &str) {
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
        let (state, error, counters) = match &entry.running {
            Some(running) => {
                let handle = &running.handle;
                (handle.state(), handle.error().map(|e| failure(&e)), handle.operators())
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
        };
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
                    watermark: counters.and_then(|c| c.watermark),
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
        self.persist(tenant, id);
        self.status(tenant, id)
    }

    /// The HTTP source `uid` of a running job.
    pub fn input(&self, tenant: &str, id: &str, uid: &str) -> Result<IngestHandle, ApiError> {
        let entries = self.inner.entries.lock();
        let entry =
            entries.get(tenant).and_then(|j| j.get(id)).ok_or_else(|| ApiError::not_found(format!("no job {id}")))?;
        let running = entry.running.as_ref().ok_or_else(|| ApiError::conflict(format!("job {id} is not running")))?;
        running
            .inputs
            .get(uid)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("job {id} has no HTTP source `{uid}`")))
    }

    /// The HTTP sink `uid` of a job (also after it ended: its retained records stay readable).
    pub fn output(&self, tenant: &str, id: &str, uid: &str) -> Result<Arc<OutputStream>, ApiError> {
        let entries = self.inner.entries.lock();
        let entry =
            entries.get(tenant).and_then(|j| j.get(id)).ok_or_else(|| ApiError::not_found(format!("no job {id}")))?;
        let running = entry
            .running
            .as_ref()
            .ok_or_else(|| ApiError::conflict(format!("job {id} has not run since the server started")))?;
        running
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

    /// Stops every running job for a shutdown; jobs that should run are started again on the next start.
    pub fn shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
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

fn spec_error(errors: eddy_engine::spec::SpecErrors) -> ApiError {
    let details = errors.0.iter().map(|e| serde_json::to_value(e).unwrap_or_default()).collect();
    ApiError::bad_request("invalid_spec", errors.to_string()).with_details(details)
}
