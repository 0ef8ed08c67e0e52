//! From a validated graph to running threads.

use super::chain::{Chain, Link, TaskCheckpoints, Unreadable};
use super::channel::{ChannelSender, InputChannel, channel};
use super::govern::CpuGovernor;
use super::input_task::{Gate, run_task};
use super::metrics::OperatorMetrics;
use super::route::{EdgeWriter, KeyExtractor, Route};
use super::source_task::{SourceRunner, Timestamps, restore_source, run_source};
use super::{JobHandle, RunningJob, Shared};
use crate::checkpoint::coordinator::{CoordinatedTask, Coordinator};
use crate::checkpoint::{Checkpointing, Restore};
use crate::disk::DiskBudget;
use crate::error::TaskError;
use crate::function::{FunctionFactory, FunctionScope};
use crate::graph::{JobGraph, Node, Partitioning};
use crate::io::{
    ConnectorContext, Connectors, DiscardSink, FileRoots, FileSink, FileSource, GeneratorSource, HttpSink,
    IngestHandle, IngestLog, IngestSource, OutputRate, OutputStream, RateLimited, ReportSlot, Retention, Source,
    StdoutSink,
};
use crate::memory::MemoryBudget;
use crate::operator::process::{ProcessContext, ProcessOperator};
use crate::operator::{FilterOperator, FlatMapOperator, MapOperator, Operator, UnionOperator};
use crate::spec::{
    AggregateSpec, CheckpointMode, KeySpec, OnError, OperatorKind, PreAggregate, SinkSpec, SourceSpec, TimestampSpec,
    WindowFunctionSpec,
};
use crate::state::{FetchObject, KeyedState, KeyedStateStore, MemoryBackend, StateBackend, StateError, StateFiles};
use crate::time::{Clock, SourceWatermarks, SystemClock};
use crate::window::builtin::Builtin;
use crate::window::{Incremental, ResultFormat, WindowConfig, WindowFunctions, WindowOperator};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// Builds an operator in place of the one the spec describes (benchmarks use it for instrumented sinks).
pub type OperatorOverride = Arc<dyn Fn(&OverrideContext<'_>) -> Result<Box<dyn Operator>, TaskError> + Send + Sync>;

/// What an override gets to build its operator.
pub struct OverrideContext<'a> {
    /// The node being built.
    pub node: &'a Node,
    /// The subtask index.
    pub subtask: u32,
    /// Number of key groups.
    pub max_parallelism: u32,
    /// The deployment's environment.
    pub env: &'a DeployEnv,
}

/// How the host provides for a job: functions, state, clock, limits.
pub struct DeployEnv {
    /// The job's id.
    pub job_id: String,
    /// Its tenant.
    pub tenant: String,
    /// Creates user function instances.
    pub functions: Arc<dyn FunctionFactory>,
    /// Creates state stores.
    pub state: Arc<dyn StateBackend>,
    /// Processing time.
    pub clock: Arc<dyn Clock>,
    /// Batches a channel holds before its sender blocks.
    pub channel_capacity: usize,
    /// What an HTTP output stream keeps for late clients.
    pub output_retention: Retention,
    /// The folders file sources and sinks may use.
    pub files: FileRoots,
    /// Operators built by the caller instead of from the spec, by uid.
    pub overrides: HashMap<String, OperatorOverride>,
    /// Set when the job stops; function instances watch it to interrupt a running call.
    stop: Arc<AtomicBool>,
    /// Shares CPU between tenants; none: tasks run as the operating system schedules them.
    pub governor: Option<Arc<CpuGovernor>>,
    /// Records per second the tenant's sinks may write together; none: no limit.
    pub output_rate: Option<Arc<OutputRate>>,
    /// Where and how the job takes checkpoints; none: it takes none.
    pub checkpointing: Option<Checkpointing>,
    /// The checkpoint the job starts from.
    pub restore: Option<Restore>,
    /// Input logs of HTTP sources by uid, kept by the caller across restarts; others are made in `ingest_dir`.
    pub inputs: HashMap<String, Arc<IngestLog>>,
    /// Output streams of HTTP sinks by uid, kept by the caller across restarts; others are made here.
    pub outputs: HashMap<String, Arc<OutputStream>>,
    /// Where input logs not given in `inputs` are kept; none: a temporary folder removed when the job ends.
    pub ingest_dir: Option<std::path::PathBuf>,
    /// Start even if `restore` holds state of operators the job no longer has (that state is dropped).
    pub allow_non_restored_state: bool,
    /// Builds sources and sinks the engine has no code for (Kafka); none: specs naming them fail to deploy.
    pub connectors: Option<Arc<dyn Connectors>>,
    /// The job's memory budget, charged for the buffers the host keeps for it; none: they are not counted.
    pub memory: Option<Arc<MemoryBudget>>,
    /// The tenant's storage budget, asked by file sinks before they write; none: not limited.
    pub disk: Option<Arc<dyn DiskBudget>>,
}

impl DeployEnv {
    /// Defaults: in-memory state, the wall clock.
    pub fn new(job_id: &str, tenant: &str, functions: Arc<dyn FunctionFactory>) -> DeployEnv {
        DeployEnv {
            job_id: job_id.to_string(),
            tenant: tenant.to_string(),
            functions,
            state: Arc::new(MemoryBackend::default()),
            clock: Arc::new(SystemClock),
            channel_capacity: 16,
            output_retention: Retention::default(),
            files: FileRoots::none(),
            overrides: HashMap::new(),
            stop: Arc::new(AtomicBool::new(false)),
            governor: None,
            output_rate: None,
            checkpointing: None,
            restore: None,
            inputs: HashMap::new(),
            outputs: HashMap::new(),
            ingest_dir: None,
            allow_non_restored_state: false,
            connectors: None,
            memory: None,
            disk: None,
        }
    }

    /// What a connector gets to build subtask `subtask` of `node`.
    fn connector_context<'a>(
        &'a self,
        node: &'a Node,
        subtask: u32,
        metrics: Option<&Arc<OperatorMetrics>>,
    ) -> ConnectorContext<'a> {
        ConnectorContext {
            job_id: &self.job_id,
            uid: &node.uid,
            subtask,
            parallelism: node.parallelism,
            checkpoints: self.checkpointing.as_ref().map(|c| &c.spec),
            report: metrics.map(|m| ReportSlot::new(Arc::clone(m), subtask)).unwrap_or_default(),
            memory: self.memory.clone(),
        }
    }

    /// Who a function instance of operator `uid`, subtask `subtask`, works for.
    pub fn scope(&self, uid: &str, subtask: u32) -> FunctionScope {
        FunctionScope {
            job: self.job_id.clone(),
            tenant: self.tenant.clone(),
            operator: uid.to_string(),
            subtask,
            stop: Arc::clone(&self.stop),
        }
    }
}

/// Refuses a checkpoint or savepoint that does not fit the job: other key groups, or state of operators the job
/// no longer has (unless the caller allows dropping it).
fn check_restore(graph: &JobGraph, restore: &Restore, allow_non_restored_state: bool) -> Result<(), TaskError> {
    if let Some(taken) = restore.max_parallelism
        && taken != graph.max_parallelism
    {
        return Err(TaskError::user(format!(
            "checkpoint {} was taken with max_parallelism {taken}, and the job has {}: keyed state is split into \
             that many key groups, which cannot change",
            restore.checkpoint, graph.max_parallelism
        )));
    }
    let orphans: Vec<&str> = restore.operator_uids().into_iter().filter(|uid| graph.node(uid).is_none()).collect();
    if !orphans.is_empty() && !allow_non_restored_state {
        return Err(TaskError::user(format!(
            "checkpoint {} holds state of operators the job does not have: {}; keep their uids, or allow \
             non-restored state to drop it",
            restore.checkpoint,
            orphans.join(", ")
        )));
    }
    Ok(())
}

/// Splits the graph into chains of nodes that share a task.
fn chains(graph: &JobGraph) -> Vec<Vec<usize>> {
    let mut chains: Vec<Vec<usize>> = Vec::new();
    let mut chain_of = vec![usize::MAX; graph.nodes.len()];
    for (i, node) in graph.nodes.iter().enumerate() {
        let upstream = match node.inputs.as_slice() {
            [edge] => {
                let e = &graph.edges[*edge];
                let from = &graph.nodes[e.from];
                let main_consumers = from.outputs.iter().filter(|o| graph.edges[**o].tag.is_none()).count();
                let chainable = e.tag.is_none()
                    && e.partitioning == Partitioning::Forward
                    && main_consumers == 1
                    && from.parallelism == node.parallelism;
                chainable.then_some(e.from)
            }
            _ => None,
        };
        match upstream {
            Some(from) => {
                let c = chain_of[from];
                chains[c].push(i);
                chain_of[i] = c;
            }
            None => {
                chain_of[i] = chains.len();
                chains.push(vec![i]);
            }
        }
    }
    chains
}

fn key_extractor(key: &KeySpec, env: &DeployEnv, uid: &str, subtask: u32) -> Result<KeyExtractor, TaskError> {
    Ok(match key {
        KeySpec::Json(path) => KeyExtractor::Json(path.clone()),
        KeySpec::Record => KeyExtractor::Record,
        KeySpec::Module(udf) => KeyExtractor::Module(env.functions.key_selector(udf, &env.scope(uid, subtask))?),
    })
}

/// State files a restored operator's store starts from (see [`StateBackend::restore_store`]).
#[derive(Default)]
struct RestoredFiles<'a> {
    parts: &'a [StateFiles],
    fetch: Option<FetchObject<'a>>,
    /// Set once a store took them: files nobody took mean state the operator no longer keeps.
    taken: std::cell::Cell<bool>,
}

fn build_operator(
    graph: &JobGraph,
    index: usize,
    subtask: u32,
    env: &DeployEnv,
    outputs: &mut HashMap<String, Arc<OutputStream>>,
    files: &RestoredFiles<'_>,
    metrics: Option<&Arc<OperatorMetrics>>,
) -> Result<Box<dyn Operator>, TaskError> {
    let node = &graph.nodes[index];
    if let Some(build) = env.overrides.get(&node.uid) {
        let cx = OverrideContext { node, subtask, max_parallelism: graph.max_parallelism, env };
        return build(&cx);
    }
    let scope = env.scope(&node.uid, subtask);
    let key_groups = crate::keys::key_groups_of(subtask, node.parallelism, graph.max_parallelism);
    let store = || -> Result<Box<dyn KeyedStateStore>, TaskError> {
        let store = if files.parts.is_empty() {
            env.state.create_store(&node.uid, subtask, key_groups.clone())
        } else {
            files.taken.set(true);
            let fetch = files.fetch.ok_or_else(|| TaskError::internal("no checkpoint to read state files from"))?;
            env.state.restore_store(&node.uid, subtask, key_groups.clone(), files.parts, fetch)
        };
        store.map_err(|e| TaskError::internal(e.0))
    };
    Ok(match &node.kind {
        OperatorKind::Map(udf) => Box::new(MapOperator::new(env.functions.map(udf, &scope)?)),
        OperatorKind::Filter(udf) => Box::new(FilterOperator::new(env.functions.filter(udf, &scope)?)),
        OperatorKind::FlatMap(udf) => Box::new(FlatMapOperator::new(env.functions.flat_map(udf, &scope)?)),
        OperatorKind::Process(udf) | OperatorKind::Connect(udf) => {
            let state = if node.keyed { Some(KeyedState::new(store()?, graph.state_ttl)) } else { None };
            let ctx = ProcessContext::new(state, graph.max_parallelism);
            Box::new(ProcessOperator::new(env.functions.process(udf, &scope)?, ctx))
        }
        OperatorKind::Union => Box::new(UnionOperator),
        OperatorKind::Window(window) => {
            let aggregate = |spec: &AggregateSpec| -> Result<(Incremental, ResultFormat), TaskError> {
                Ok(match spec {
                    AggregateSpec::Builtin { kind, field } => (
                        Incremental::Aggregate(Box::new(Builtin::new(*kind, field.clone()))),
                        ResultFormat::Json { name: kind.name().to_string() },
                    ),
                    AggregateSpec::Module(udf) => {
                        (Incremental::Aggregate(env.functions.aggregate(udf, &scope)?), ResultFormat::Raw)
                    }
                })
            };
            let (incremental, process, format) = match &window.function {
                WindowFunctionSpec::Aggregate(spec) => {
                    let (inc, format) = aggregate(spec)?;
                    (Some(inc), None, format)
                }
                WindowFunctionSpec::Reduce(udf) => {
                    (Some(Incremental::Reduce(env.functions.reduce(udf, &scope)?)), None, ResultFormat::Raw)
                }
                WindowFunctionSpec::Process { pre, function } => {
                    let incremental = match pre {
                        Some(PreAggregate::Aggregate(spec)) => Some(aggregate(spec)?.0),
                        Some(PreAggregate::Reduce(udf)) => {
                            Some(Incremental::Reduce(env.functions.reduce(udf, &scope)?))
                        }
                        None => None,
                    };
                    (incremental, Some(env.functions.process_window(function, &scope)?), ResultFormat::Raw)
                }
            };
            let config = WindowConfig::new(window, format, node.keyed, graph.max_parallelism);
            Box::new(WindowOperator::new(config, WindowFunctions { incremental, process }, store()?)?)
        }
        OperatorKind::Sink(sink) => {
            let sink: Box<dyn Operator> = match sink {
                SinkSpec::Stdout => Box::new(StdoutSink),
                SinkSpec::File(location) => {
                    let sink = FileSink::create(&env.files, location, subtask, env.checkpointing.is_some())?;
                    Box::new(sink.within(env.disk.clone()))
                }
                SinkSpec::Discard => Box::new(DiscardSink::new()),
                SinkSpec::Kafka(_) => env
                    .connectors
                    .as_ref()
                    .and_then(|c| c.sink(&env.connector_context(node, subtask, metrics), sink))
                    .unwrap_or_else(|| Err(crate::io::missing_connector("Kafka sink")))?,
                SinkSpec::Http => {
                    let stream = outputs
                        .entry(node.uid.clone())
                        .or_insert_with(|| Arc::new(OutputStream::new(env.output_retention)));
                    Box::new(HttpSink::new(Arc::clone(stream)))
                }
            };
            match &env.output_rate {
                Some(rate) => Box::new(RateLimited::new(sink, Arc::clone(rate), Arc::clone(&env.stop))),
                None => sink,
            }
        }
        OperatorKind::Source(_) => return Err(TaskError::internal("a source cannot be chained after an operator")),
    })
}

fn build_source(
    graph: &JobGraph,
    index: usize,
    subtask: u32,
    env: &DeployEnv,
    inputs: &mut HashMap<String, IngestHandle>,
    metrics: Arc<OperatorMetrics>,
) -> Result<SourceRunner, TaskError> {
    let node = &graph.nodes[index];
    let OperatorKind::Source(spec) = &node.kind else {
        return Err(TaskError::internal("not a source"));
    };
    let source: Box<dyn Source> = match &spec.source {
        SourceSpec::Generator(g) => Box::new(GeneratorSource::new(g.clone(), subtask, node.parallelism)),
        SourceSpec::File(location) => {
            Box::new(FileSource::open(&env.files, location).map_err(|e| e.in_operator(&node.uid))?)
        }
        SourceSpec::Http => {
            if node.parallelism > 1 {
                return Err(TaskError::user("an HTTP source reads one input log: its parallelism must be 1"));
            }
            let log = match env.inputs.get(&node.uid) {
                Some(log) => Arc::clone(log),
                None => {
                    let folder = match &env.ingest_dir {
                        Some(dir) => dir.join(&node.uid),
                        None => std::env::temp_dir()
                            .join(format!("eddy-ingest-{}", crate::io::unique_name()))
                            .join(&node.uid),
                    };
                    IngestLog::open(&folder).map_err(|e| {
                        TaskError::external(format!("cannot open the input log {}: {e}", folder.display()))
                    })?
                }
            };
            inputs.insert(node.uid.clone(), IngestHandle::new(Arc::clone(&log)));
            Box::new(IngestSource::new(log))
        }
        SourceSpec::Kafka(_) => env
            .connectors
            .as_ref()
            .and_then(|c| c.source(&env.connector_context(node, subtask, Some(&metrics)), &spec.source))
            .unwrap_or_else(|| Err(crate::io::missing_connector("Kafka source")))
            .map_err(|e| e.in_operator(&node.uid))?,
    };
    let timestamps = match &spec.watermark.timestamp {
        TimestampSpec::Source => Timestamps::Source,
        TimestampSpec::Json(path) => Timestamps::Json(path.clone()),
        TimestampSpec::Module(udf) => {
            Timestamps::Module(env.functions.timestamp_assigner(udf, &env.scope(&node.uid, subtask))?)
        }
    };
    let watermarks = SourceWatermarks::new(
        spec.watermark.strategy,
        spec.watermark.idleness.map(|m| m.0),
        source.split_count(),
        env.clock.now(),
    );
    Ok(SourceRunner { source, timestamps, watermarks, batch_size: spec.batch_size, metrics, subtask })
}

/// Builds subtask `subtask` of operator `uid` alone, outside any task (for operator tests).
pub fn build_single_operator(
    graph: &JobGraph,
    uid: &str,
    subtask: u32,
    env: &DeployEnv,
) -> Result<Box<dyn Operator>, TaskError> {
    let (index, _) = graph.node(uid).ok_or_else(|| TaskError::internal(format!("no operator `{uid}`")))?;
    build_operator(graph, index, subtask, env, &mut HashMap::new(), &RestoredFiles::default(), None)
}

/// Builds subtask `subtask` of operator `uid` alone, outside any task, with its keyed state restored from a
/// checkpoint's state files `files` (for operator tests).
pub fn build_single_operator_from(
    graph: &JobGraph,
    uid: &str,
    subtask: u32,
    env: &DeployEnv,
    files: &[StateFiles],
    fetch: FetchObject<'_>,
) -> Result<Box<dyn Operator>, TaskError> {
    let (index, _) = graph.node(uid).ok_or_else(|| TaskError::internal(format!("no operator `{uid}`")))?;
    let files = RestoredFiles { parts: files, fetch: Some(fetch), taken: std::cell::Cell::new(false) };
    build_operator(graph, index, subtask, env, &mut HashMap::new(), &files, None)
}

enum TaskBody {
    Source(SourceRunner),
    Channels(Gate),
}

/// Deploys `graph` and starts its tasks. Every function instance is created before any thread starts, so a
/// module whose `init` fails stops the deployment with nothing running.
pub fn deploy(graph: &JobGraph, mut env: DeployEnv) -> Result<RunningJob, TaskError> {
    let mut restore = env.restore.take();
    let restored_from = restore.as_ref().map(|r| r.checkpoint);
    if let Some(restore) = &restore {
        check_restore(graph, restore, env.allow_non_restored_state)?;
    }
    let (ack_tx, ack_rx) = crossbeam_channel::unbounded();
    let align = env.checkpointing.as_ref().is_some_and(|c| c.spec.mode == CheckpointMode::ExactlyOnce);
    let chains = chains(graph);
    let mut chain_of = vec![(0, 0); graph.nodes.len()];
    for (c, chain) in chains.iter().enumerate() {
        for (pos, &node) in chain.iter().enumerate() {
            chain_of[node] = (c, pos);
        }
    }
    let metrics: Vec<Arc<OperatorMetrics>> =
        graph.nodes.iter().map(|n| Arc::new(OperatorMetrics::new(&n.uid, n.parallelism))).collect();

    // Channels of every edge that is not inside a chain: senders per (edge, upstream subtask), receivers per
    // (receiving chain, subtask).
    let mut senders: HashMap<(usize, u32), Vec<ChannelSender>> = HashMap::new();
    let mut receivers: HashMap<(usize, u32), Vec<InputChannel>> = HashMap::new();
    for (e, edge) in graph.edges.iter().enumerate() {
        let (to_chain, to_pos) = chain_of[edge.to];
        if to_pos > 0 {
            continue; // chained: no channel
        }
        let (p_from, p_to) = (graph.nodes[edge.from].parallelism, graph.nodes[edge.to].parallelism);
        for up in 0..p_from {
            let targets: Vec<u32> = match edge.partitioning {
                Partitioning::Forward => vec![up],
                _ => (0..p_to).collect(),
            };
            for down in targets {
                let (tx, rx) = channel(env.channel_capacity, edge.input);
                senders.entry((e, up)).or_default().push(tx);
                receivers.entry((to_chain, down)).or_default().push(rx);
            }
        }
    }

    let shared = Arc::new(Shared::new(Arc::clone(&env.stop)));
    let mut inputs = HashMap::new();
    let mut outputs = env.outputs.clone();
    let mut tasks: Vec<(TaskCheckpoints, TaskBody, Chain)> = Vec::new();
    for (c, chain) in chains.iter().enumerate() {
        let head = &graph.nodes[chain[0]];
        for subtask in 0..head.parallelism {
            let writers_for = |node: usize,
                               tag: Option<&str>,
                               senders: &mut HashMap<(usize, u32), Vec<ChannelSender>>|
             -> Result<Vec<EdgeWriter>, TaskError> {
                let mut writers = Vec::new();
                for &e in &graph.nodes[node].outputs {
                    let edge = &graph.edges[e];
                    if edge.tag.as_deref() != tag || chain_of[edge.to].1 > 0 {
                        continue;
                    }
                    let route = match &edge.partitioning {
                        Partitioning::Forward => Route::Forward,
                        Partitioning::Rebalance => Route::Rebalance { next: subtask as usize },
                        Partitioning::Hash(key) => Route::Hash {
                            key: key_extractor(key, &env, &graph.nodes[edge.to].uid, subtask)?,
                            max_parallelism: graph.max_parallelism,
                        },
                    };
                    let mut writer = EdgeWriter::new(senders.remove(&(e, subtask)).unwrap_or_default(), route);
                    if matches!(edge.partitioning, Partitioning::Hash(_))
                        && graph.nodes[edge.to].on_error == OnError::Skip
                    {
                        writer = writer.skipping_unreadable(Arc::clone(&metrics[edge.to]));
                    }
                    writers.push(writer);
                }
                Ok(writers)
            };
            let is_source = matches!(head.kind, OperatorKind::Source(_));
            let mut links = Vec::new();
            for &n in chain.iter().skip(usize::from(is_source)) {
                let uid = &graph.nodes[n].uid;
                let parallelism = graph.nodes[n].parallelism;
                let snapshot =
                    restore.as_mut().and_then(|r| r.operator(uid, subtask, parallelism, graph.max_parallelism));
                let parts = snapshot.as_ref().map(|(s, _)| s.files.clone()).unwrap_or_default();
                let fetch = |object: &str| match restore.as_ref() {
                    Some(restore) => restore.fetch(object),
                    None => Err(StateError("no checkpoint to read state files from".into())),
                };
                let files = RestoredFiles { parts: &parts, fetch: Some(&fetch), taken: std::cell::Cell::new(false) };
                let mut op = build_operator(graph, n, subtask, &env, &mut outputs, &files, Some(&metrics[n]))
                    .map_err(|e| e.in_operator(uid))?;
                if !files.parts.is_empty() && !files.taken.get() {
                    return Err(TaskError::user(format!(
                        "the checkpoint holds keyed state of operator `{uid}`, which keeps none now"
                    )));
                }
                if let Some((snapshot, chunks)) = snapshot {
                    op.restore(snapshot, &chunks).map_err(|e| e.in_operator(uid))?;
                }
                let mut side = Vec::new();
                let mut tags: Vec<&str> =
                    graph.nodes[n].outputs.iter().filter_map(|&e| graph.edges[e].tag.as_deref()).collect();
                tags.sort_unstable();
                tags.dedup();
                for tag in tags {
                    side.push((tag.to_string(), writers_for(n, Some(tag), &mut senders)?));
                }
                links.push(Link::new(op, Arc::clone(&metrics[n]), side));
            }
            let last = *chain.last().unwrap_or(&chain[0]);
            let main = writers_for(last, None, &mut senders)?;
            let mut task_chain = Chain::new(links, main, subtask, Arc::clone(&shared.cancel));
            let body = if is_source {
                task_chain = task_chain.with_source_metrics(Arc::clone(&metrics[chain[0]]));
                match &head.on_error {
                    OnError::Fail => {}
                    OnError::Skip => task_chain = task_chain.with_unreadable(Unreadable::Skip),
                    OnError::SideOutput(tag) => {
                        let writers = writers_for(chain[0], Some(tag.as_str()), &mut senders)?;
                        task_chain = task_chain.with_unreadable(Unreadable::SideOutput(writers));
                    }
                }
                TaskBody::Source(build_source(
                    graph,
                    chain[0],
                    subtask,
                    &env,
                    &mut inputs,
                    Arc::clone(&metrics[chain[0]]),
                )?)
            } else {
                TaskBody::Channels(Gate::new(receivers.remove(&(c, subtask)).unwrap_or_default(), align))
            };
            let name = format!("{}-{subtask}", head.uid);
            let restored = restore.as_ref().and_then(|r| r.task(&head.uid, subtask, head.parallelism));
            let mut body = body;
            if let (TaskBody::Source(runner), Some(source)) =
                (&mut body, restored.as_ref().and_then(|r| r.source.as_ref()))
            {
                restore_source(runner, &mut task_chain, source)?;
            }
            let checkpoints = TaskCheckpoints {
                index: tasks.len(),
                restored,
                name,
                acks: env.checkpointing.as_ref().map(|_| ack_tx.clone()),
                savepoints: env.checkpointing.as_ref().map(|c| Arc::clone(&c.savepoints)),
                commits: Arc::clone(&shared.commits),
            };
            tasks.push((checkpoints, body, task_chain));
        }
    }

    drop(ack_tx);
    shared.commits.set_tasks(tasks.len());
    {
        let mut stats = shared.checkpoints.lock();
        stats.restored_from = restored_from;
        stats.restored_bytes = restore.as_ref().map_or(0, |r| r.fetched_bytes());
    }
    let mut threads = Vec::new();
    let mut coordinated = Vec::new();
    for (checkpoints, body, chain) in tasks {
        let task_shared = Arc::clone(&shared);
        let clock = Arc::clone(&env.clock);
        let governor = env.governor.clone().map(|g| (g, env.tenant.clone()));
        let (control_tx, control) = super::channel::control();
        shared.controls.lock().push(control_tx.clone());
        let name = checkpoints.name.clone();
        coordinated.push(CoordinatedTask {
            name: name.clone(),
            is_source: matches!(body, TaskBody::Source(_)),
            control: control_tx,
        });
        let spawned = std::thread::Builder::new().name(format!("eddy-{name}")).spawn(move || {
            if let Some((governor, tenant)) = governor {
                super::govern::bind(governor, &tenant);
            }
            let cancel = Arc::clone(&task_shared.cancel);
            let mut chain = chain;
            let mut gate = None;
            // A panic is caught here, where its message is known, and fails the job before this task's channels
            // close: a neighbour that finds them closed first would otherwise fail it with "an upstream task
            // stopped" instead of the cause.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match body {
                TaskBody::Source(runner) => {
                    run_source(runner, &mut chain, clock.as_ref(), &cancel, &control, &checkpoints)
                }
                TaskBody::Channels(g) => {
                    run_task(gate.insert(g), &mut chain, clock.as_ref(), &cancel, &control, &checkpoints)
                }
            }))
            .unwrap_or_else(|panic| {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic without a message".into());
                Err(TaskError::internal(format!("task {name} panicked: {message}")))
            });
            super::govern::leave();
            if let Err(error) = result {
                task_shared.fail(error);
            }
            checkpoints.commits.ended(checkpoints.index);
            drop((gate, chain));
        });
        match spawned {
            Ok(handle) => threads.push(handle),
            Err(e) => {
                shared.fail(TaskError::external(format!("cannot start a task thread: {e}")));
                break;
            }
        }
    }
    let mut coordinator_thread = None;
    if let Some(checkpointing) = env.checkpointing.clone() {
        let (trigger_tx, trigger_rx) = crossbeam_channel::unbounded();
        *shared.trigger.lock() = Some(trigger_tx);
        let failing = Arc::clone(&shared);
        let coordinator = Coordinator {
            checkpointing,
            tasks: coordinated,
            acks: ack_rx,
            requests: trigger_rx,
            stats: Arc::clone(&shared.checkpoints),
            stop: Arc::clone(&shared.cancel),
            fail: Box::new(move |error| failing.fail(error)),
        };
        let spawned = std::thread::Builder::new()
            .name(format!("eddy-checkpoints-{}", env.job_id))
            .spawn(move || coordinator.run());
        match spawned {
            Ok(thread) => coordinator_thread = Some(thread),
            Err(e) => {
                // The tasks are running already: they are stopped, and the run ends with this failure.
                shared.fail(TaskError::external(format!("cannot start the checkpoint coordinator: {e}")));
            }
        }
    }
    let supervisor_shared = Arc::clone(&shared);
    // What the caller gave is the caller's to close; what was made here ends with this run.
    let streams: Vec<Arc<OutputStream>> =
        outputs.iter().filter(|(uid, _)| !env.outputs.contains_key(*uid)).map(|(_, s)| Arc::clone(s)).collect();
    let ingest: Vec<IngestHandle> =
        inputs.iter().filter(|(uid, _)| !env.inputs.contains_key(*uid)).map(|(_, h)| h.clone()).collect();
    let temporary_logs = env.ingest_dir.is_none();
    std::thread::Builder::new()
        .name(format!("eddy-job-{}", env.job_id))
        .spawn(move || {
            for thread in threads {
                if thread.join().is_err() {
                    supervisor_shared.fail(TaskError::internal("a task thread panicked"));
                }
            }
            // The job has ended only once its coordinator has: nothing of this run may be written to the checkpoint
            // store after that, where a later run (or a cleanup) could find it.
            if let Some(coordinator) = coordinator_thread
                && coordinator.join().is_err()
            {
                supervisor_shared.fail(TaskError::internal("the checkpoint coordinator panicked"));
            }
            for handle in ingest {
                let _ = handle.close();
                if temporary_logs && let Some(folder) = handle.log().dir().parent() {
                    let _ = std::fs::remove_dir_all(folder);
                }
            }
            for stream in streams {
                stream.close();
            }
            supervisor_shared.complete();
        })
        .map_err(|e| TaskError::external(format!("cannot start the job supervisor: {e}")))?;
    Ok(RunningJob { handle: JobHandle { shared, metrics: Arc::new(metrics) }, inputs, outputs })
}
