//! `eddy bench`: the standard workloads of `BENCHMARKS.md`, run in-process, one line of figures per run.
//!
//! Each workload is an ordinary job spec; its user logic is either native (built-in Rust) or the example UDFs of
//! `udfs/` in Rust, Python or JavaScript. The sink counts records (`out`), sums a field (`sum`) and adds up an
//! order-independent fingerprint (`fp`), so runs of one workload must print the same three figures at every
//! parallelism and in every form.

mod attacks;
mod fair;
mod idle;
#[cfg(feature = "kafka")]
mod k1;
mod native;
mod recover;
mod takeover;
mod upgrade;

use crate::examples::{Examples, Language};
use anyhow::{Context, bail};
use eddy_codec::Batch;
use eddy_engine::TaskError;
use eddy_engine::function::{FunctionFactory, UdfKind};
use eddy_engine::graph::{JobGraph, ModuleCatalog};
use eddy_engine::io::DiscardSink;
use eddy_engine::keys::mix64;
use eddy_engine::operator::Operator;
use eddy_engine::runtime::{DeployEnv, JobState, OverrideContext, deploy};
use eddy_engine::spec::{AggregateSpec, JobSpec, ModuleRef, OperatorKind, WindowFunctionSpec};
use eddy_engine::window::{Incremental, ResultFormat, WindowConfig, WindowFunctions, WindowOperator};
use eddy_wasm_host::{Limits, WasmFunctions, WasmRuntime};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options of `eddy bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// The workload: W1, W2, W2CP, W3, W4 or W5; K1 (W1 through Kafka); `idle`, what idle jobs cost; `fair`, CPU
    /// shares between tenants; `recover`, a checkpoint and a savepoint of `--keys` keys' state and the time to run
    /// again from the checkpoint; `upgrade`, the output gap of `--upgrades` upgrades of a running job's module;
    /// `attacks`, the server's peak memory under a tenant's memory attacks and another tenant's throughput then;
    /// `takeover`, how long a job waits when the server running it is killed, in a cluster of three.
    pub workload: String,
    /// Jobs to deploy (`idle` only).
    #[arg(long, default_value_t = 1000)]
    pub jobs: u32,
    /// Keys with state (`recover` only).
    #[arg(long, default_value_t = 1_000_000)]
    pub keys: u64,
    /// Upgrades to time (`upgrade` only).
    #[arg(long, default_value_t = 20)]
    pub upgrades: u32,
    /// The PostgreSQL database the cluster's servers share, a `postgres://` URL (`takeover` only;
    /// `tests/services/postgres.sh start DIR PORT` starts one).
    #[arg(long)]
    pub database: Option<String>,
    /// Times the job's server is killed (`takeover` only).
    #[arg(long, default_value_t = 20)]
    pub kills: u32,
    /// The servers' lease, in milliseconds (`takeover` only).
    #[arg(long, default_value_t = 10_000)]
    pub lease_ms: u64,
    /// The Kafka broker, `host:port` (`K1` only).
    #[arg(long)]
    pub bootstrap: Option<String>,
    /// `exactly-once` or `at-least-once` (`K1` only).
    #[arg(long, default_value = "exactly-once")]
    pub guarantee: String,
    /// Events per second, produced live for latencies (`K1` only; all are produced first when omitted).
    #[arg(long)]
    pub rate: Option<u64>,
    /// Subtasks per operator.
    #[arg(long, default_value_t = 1)]
    pub parallelism: u32,
    /// State backend: memory or rocksdb.
    #[arg(long, default_value = "memory")]
    pub backend: String,
    /// Where the user logic runs: native, rust, python or js.
    #[arg(long, default_value = "native")]
    pub udf: String,
    /// Events to generate (a default per workload when omitted).
    #[arg(long)]
    pub events: Option<u64>,
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
const COUNT_MIX: u64 = 0xC2B2_AE3D_27D4_EB4F;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workload {
    W1,
    W2,
    /// W2 with exactly-once checkpoints every second to a local folder.
    W2CP,
    W3,
    W4,
    W5,
}

impl Workload {
    fn parse(name: &str) -> anyhow::Result<Workload> {
        Ok(match name.to_ascii_uppercase().as_str() {
            "W1" => Workload::W1,
            "W2" => Workload::W2,
            "W3" => Workload::W3,
            "W4" => Workload::W4,
            "W5" => Workload::W5,
            "W2CP" => Workload::W2CP,
            other => bail!("unknown workload `{other}`: use W1, W2, W2CP, W3, W4 or W5"),
        })
    }

    fn default_events(self) -> u64 {
        match self {
            Workload::W1 => 20_000_000,
            Workload::W2 | Workload::W2CP | Workload::W5 => 5_000_000,
            Workload::W3 | Workload::W4 => 1_000_000,
        }
    }

    /// The job spec; modules are named after the example UDFs.
    fn spec(self, parallelism: u32, events: u64) -> String {
        let keys = if self == Workload::W4 { 100_000 } else { 10_000 };
        let source = format!(
            "  - {{ uid: src, source: {{ generator: {{ events: {events}, keys: {keys}, encoding: binary }} }}, \
             batch_size: 256, watermark: {{ out_of_orderness: 100ms }} }}\n"
        );
        let logic = match self {
            Workload::W1 => "  - { uid: map, map: bench-w1-map, input: src }\n  - { uid: logic, filter: bench-w1-filter, input: map }\n".to_string(),
            Workload::W2 | Workload::W2CP => window("tumbling: 1s", "bench-count"),
            Workload::W3 => window("sliding: { size: 10s, slide: 1s }", "bench-avg"),
            Workload::W4 => window("session: 5m", "bench-count"),
            Workload::W5 => "  - { uid: logic, key_by: record, process: bench-w5, input: src }\n".to_string(),
        };
        let checkpoints = if self == Workload::W2CP { "checkpoints: { interval: 1s }\n" } else { "" };
        format!(
            "name: bench\nparallelism: {parallelism}\n{checkpoints}operators:\n{source}{logic}  - {{ uid: sink, sink: discard, input: logic }}\n"
        )
    }

    fn modules(self) -> &'static [(&'static str, UdfKind)] {
        match self {
            Workload::W1 => &[("bench-w1-map", UdfKind::Map), ("bench-w1-filter", UdfKind::Filter)],
            Workload::W2 | Workload::W2CP | Workload::W4 => &[("bench-count", UdfKind::Aggregate)],
            Workload::W3 => &[("bench-avg", UdfKind::Aggregate)],
            Workload::W5 => &[("bench-w5", UdfKind::Process)],
        }
    }
}

fn window(assigner: &str, module: &str) -> String {
    format!(
        "  - {{ uid: logic, key_by: record, window: {{ {assigner} }}, aggregate: {{ module: {module} }}, input: src }}\n"
    )
}

/// Modules of a benchmark run: name -> (hash, kind).
struct Catalog(HashMap<String, (String, UdfKind)>);

impl ModuleCatalog for Catalog {
    fn resolve(&self, module: &ModuleRef, kind: UdfKind) -> Result<String, String> {
        match self.0.get(&module.to_string()) {
            Some((hash, k)) if *k == kind => Ok(hash.clone()),
            Some(_) => Err(format!("`{module}` is not a {} function", kind.name())),
            None => Err(format!("unknown benchmark module `{module}`")),
        }
    }
}

/// What the sink saw.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    out: u64,
    sum: u64,
    fp: u64,
    last: Option<Instant>,
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    bytes.get(at..at + 8).and_then(|b| b.first_chunk::<8>()).map_or(0, |b| u64::from_le_bytes(*b))
}

impl Tally {
    fn count(&mut self, workload: Workload, batch: &Batch) {
        for record in batch.iter() {
            let key = record.key.map_or(0, |k| u64_at(k, 0));
            self.out += 1;
            match workload {
                Workload::W1 => {
                    let amount = u64_at(record.value, 0);
                    self.sum = self.sum.wrapping_add(amount);
                    let mixed = mix64(key.wrapping_mul(GOLDEN).wrapping_add(record.timestamp as u64)) ^ amount;
                    self.fp = self.fp.wrapping_add(mixed);
                }
                // Windows: start, end, count, value; W5 alerts: previous ts, this ts, 1, amount.
                _ => {
                    let v = record.value;
                    let (start, end, count, value) = (u64_at(v, 0), u64_at(v, 8), u64_at(v, 16), u64_at(v, 24));
                    self.sum = self.sum.wrapping_add(count);
                    let a = mix64(key.wrapping_mul(GOLDEN).wrapping_add(end));
                    let b =
                        mix64(count.wrapping_mul(COUNT_MIX).wrapping_add(value).wrapping_add(start.wrapping_mul(31)));
                    self.fp = self.fp.wrapping_add(a ^ b);
                }
            }
        }
        self.last = Some(Instant::now());
    }
}

/// A memory figure of this process from `/proc/self/status` (`VmHWM` peak, `VmRSS` now), in MiB.
fn status_mb(field: &str) -> u64 {
    status_mb_of("self", field)
}

/// A memory figure from `/proc/<process>/status` (`self` or a pid), in MiB; 0 where there is none.
fn status_mb_of(process: &str, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{process}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

/// Sets the peak resident set of `process` (`self` or a pid) back to its current one (Linux), so a later
/// `VmHWM` is the peak since.
fn reset_peak_rss(process: &str) {
    // Where this cannot be written, the peak stays the process's so far: the figure is then an upper bound.
    let _ = std::fs::write(format!("/proc/{process}/clear_refs"), "5");
}

/// The nearest-rank percentile `p` of `values` (sorted in place).
fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * values.len() as f64).ceil().max(1.0) as usize;
    values.get(rank - 1).copied().unwrap_or(0.0)
}

/// Peak resident memory of this process, in MiB.
fn peak_rss_mb() -> u64 {
    status_mb("VmHWM")
}

/// Runs one benchmark and returns its line.
pub fn run(args: &BenchArgs) -> anyhow::Result<String> {
    if args.workload.eq_ignore_ascii_case("idle") {
        return idle::run(args.jobs);
    }
    if args.workload.eq_ignore_ascii_case("attacks") {
        return attacks::run();
    }
    if args.workload.eq_ignore_ascii_case("recover") {
        return recover::run(args.keys, &args.backend);
    }
    if args.workload.eq_ignore_ascii_case("upgrade") {
        return upgrade::run(args.upgrades);
    }
    if args.workload.eq_ignore_ascii_case("takeover") {
        let database = args.database.as_deref().context("takeover needs --database postgres://…")?;
        return takeover::run(database, args.kills, args.lease_ms);
    }
    if args.workload.eq_ignore_ascii_case("K1") {
        return kafka_bench(args);
    }
    if args.workload.eq_ignore_ascii_case("fair") {
        return fair::run(args.parallelism, args.events.unwrap_or(200_000_000), args.udf != "off");
    }
    let workload = Workload::parse(&args.workload)?;
    if args.backend != "memory" && args.backend != "rocksdb" {
        bail!("unknown --backend `{}`: use memory or rocksdb", args.backend);
    }
    if args.parallelism == 0 || args.parallelism > 128 {
        bail!("--parallelism must be between 1 and 128");
    }
    let events = args.events.unwrap_or(workload.default_events());
    let (functions, catalog): (Arc<dyn FunctionFactory>, Catalog) = match args.udf.as_str() {
        "native" => {
            let names = workload.modules().iter().map(|(n, k)| (n.to_string(), (format!("native-{n}"), *k))).collect();
            (Arc::new(native::NativeFunctions), Catalog(names))
        }
        language @ ("rust" | "python" | "js") => wasm_functions(workload, language)?,
        other => bail!("unknown --udf `{other}`: use native, rust, python or js"),
    };
    let spec = JobSpec::parse(&workload.spec(args.parallelism, events)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let graph = JobGraph::build(&spec, &catalog).map_err(|e| anyhow::anyhow!("{e}"))?;

    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut env = DeployEnv::new("bench", "bench", functions);
    let sink_tally = Arc::clone(&tally);
    env.overrides.insert(
        "sink".to_string(),
        Arc::new(move |_: &OverrideContext<'_>| -> Result<Box<dyn Operator>, TaskError> {
            let tally = Arc::clone(&sink_tally);
            let inspect = move |batch: &Batch| tally.lock().count(workload, batch);
            Ok(Box::new(DiscardSink::inspecting(Box::new(inspect))))
        }),
    );
    if workload != Workload::W1 && workload != Workload::W5 {
        env.overrides.insert("logic".to_string(), Arc::new(windowed_results));
    }
    // Checkpoints and RocksDB's working state go to folders that live as long as the run.
    let checkpoint_dir = tempfile::tempdir()?;
    let state_dir = tempfile::tempdir()?;
    if args.backend == "rocksdb" {
        env.state = rocksdb_backend(state_dir.path())?;
    }
    if let Some(spec) = &graph.checkpoints {
        env.checkpointing = Some(eddy_engine::checkpoint::Checkpointing::new(
            spec.clone(),
            Arc::new(eddy_engine::checkpoint::LocalStore::new(checkpoint_dir.path())),
            "bench/",
            graph.max_parallelism,
        ));
    }
    let started = Instant::now();
    let running = deploy(&graph, env).map_err(|e| anyhow::anyhow!("the benchmark job cannot start: {e}"))?;
    let state = loop {
        let state = running.handle.wait(Duration::from_secs(3600));
        if state != JobState::Running {
            break state;
        }
    };
    if state != JobState::Finished {
        let error = running.handle.error().map(|e| e.to_string()).unwrap_or_default();
        bail!("the benchmark job ended {state:?}: {error}");
    }
    let tally = *tally.lock();
    let secs = tally.last.map_or(started.elapsed(), |t| t.duration_since(started)).as_secs_f64().max(1e-9);
    let checkpoints = match workload {
        Workload::W2CP => format!(" checkpoints={}", running.handle.checkpoints().completed),
        _ => String::new(),
    };
    Ok(format!(
        "eddy {workload:?} p={} backend={} udf={} events={events} secs={secs:.3} eps={:.0} rss_mb={} out={} sum={} fp={:016x} enc=binary{checkpoints}",
        args.parallelism,
        args.backend,
        args.udf,
        events as f64 / secs,
        peak_rss_mb(),
        tally.out,
        tally.sum,
        tally.fp
    ))
}

#[cfg(feature = "kafka")]
fn kafka_bench(args: &BenchArgs) -> anyhow::Result<String> {
    let bootstrap =
        args.bootstrap.clone().context("K1 needs --bootstrap HOST:PORT (tests/services/kafka.sh starts a broker)")?;
    if args.parallelism == 0 || args.parallelism > 128 {
        bail!("--parallelism must be between 1 and 128");
    }
    k1::run(&k1::K1Args {
        bootstrap,
        guarantee: args.guarantee.clone(),
        parallelism: args.parallelism,
        events: args.events.unwrap_or(5_000_000),
        rate: args.rate,
    })
}

#[cfg(not(feature = "kafka"))]
fn kafka_bench(_: &BenchArgs) -> anyhow::Result<String> {
    bail!("this build of Eddy has no Kafka connectors: build it with `--features kafka`")
}

#[cfg(feature = "rocksdb")]
fn rocksdb_backend(folder: &std::path::Path) -> anyhow::Result<Arc<dyn eddy_engine::state::StateBackend>> {
    Ok(Arc::new(eddy_rocksdb::RocksDbBackend::new(folder, eddy_rocksdb::RocksDbConfig::default())))
}

#[cfg(not(feature = "rocksdb"))]
fn rocksdb_backend(_: &std::path::Path) -> anyhow::Result<Arc<dyn eddy_engine::state::StateBackend>> {
    bail!("this build of Eddy has no RocksDB backend: build it with `--features rocksdb`")
}

/// The window operator of W2-W4, emitting window bounds with each result (as `BENCHMARKS.md` fingerprints them).
fn windowed_results(cx: &OverrideContext<'_>) -> Result<Box<dyn Operator>, TaskError> {
    let OperatorKind::Window(window) = &cx.node.kind else {
        return Err(TaskError::internal("the benchmark's `logic` operator is not a window"));
    };
    let WindowFunctionSpec::Aggregate(AggregateSpec::Module(udf)) = &window.function else {
        return Err(TaskError::internal("the benchmark window needs an aggregate module"));
    };
    let aggregate = cx.env.functions.aggregate(udf, &cx.env.scope(&cx.node.uid, cx.subtask))?;
    let config = WindowConfig::new(window, ResultFormat::Windowed, cx.node.keyed, cx.max_parallelism);
    let key_groups = eddy_engine::keys::key_groups_of(cx.subtask, cx.node.parallelism, cx.max_parallelism);
    let store =
        cx.env.state.create_store(&cx.node.uid, cx.subtask, key_groups).map_err(|e| TaskError::internal(e.0))?;
    let functions = WindowFunctions { incremental: Some(Incremental::Aggregate(aggregate)), process: None };
    Ok(Box::new(WindowOperator::new(config, functions, store)?))
}

fn wasm_functions(workload: Workload, language: &str) -> anyhow::Result<(Arc<dyn FunctionFactory>, Catalog)> {
    let lang = match language {
        "rust" => Language::Rust,
        "python" => Language::Python,
        _ => Language::Js,
    };
    if lang != Language::Rust && !matches!(workload, Workload::W1 | Workload::W5) {
        bail!("{workload:?} has no {language} form (BENCHMARKS.md runs W1 and W5 in Python and JavaScript)");
    }
    let examples = Examples::locate()?;
    let limits = Limits { memory_bytes: 1 << 30, call_timeout: Duration::from_secs(60) };
    let compiled = crate::examples::cache_dir().join("bench-compiled");
    let runtime = WasmRuntime::new(Some(compiled.clone()), limits).map_err(anyhow::Error::msg)?;
    let mut names = HashMap::new();
    for (name, kind) in workload.modules() {
        let bytes = examples.bytes(lang, name)?;
        // The benchmark's own record of what it compiled, so that a later run loads it instead of compiling again.
        let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        let digest_file = compiled.join(format!("{hash}.digest"));
        let recorded = std::fs::read_to_string(&digest_file).ok();
        let module = runtime
            .load(&hash, recorded.as_deref(), || Some(bytes))
            .with_context(|| format!("compiling {language} {name}"))?;
        if let Some(digest) = &module.artifact
            && recorded.as_deref() != Some(digest.as_str())
        {
            let _ = std::fs::write(&digest_file, digest);
        }
        names.insert(name.to_string(), (module.hash.clone(), *kind));
    }
    let functions = WasmFunctions::new(runtime, limits);
    Ok((Arc::new(functions), Catalog(names)))
}
