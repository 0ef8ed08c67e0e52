//! Job specs: what a pipeline wants, written in YAML or JSON.
//!
//! A spec is a list of operators, each with a stable `uid`, its `input`s and one kind (`source`, `map`, `filter`,
//! `flat_map`, `process`, `connect`, `union`, `window`, `sink`). [`JobSpec::parse`] reads the text and reports every
//! problem it finds at once, each with the operator's uid and the field; [`crate::graph::JobGraph::build`] then
//! checks the graph as a whole (inputs, cycles, modules).

mod duration;
mod kafka;
mod parse;

pub use duration::Millis;
pub use kafka::{
    DEFAULT_FETCH_BYTES, DEFAULT_SINK_QUEUE_KBYTES, DEFAULT_SOURCE_QUEUE_KBYTES, DEFAULT_TRANSACTION_TIMEOUT_MS,
    Delivery, Isolation, KafkaFormat, KafkaProperties, KafkaSinkSpec, KafkaSourceSpec, KafkaTimestamp,
    MAX_CLIENT_QUEUE_KBYTES, MAX_FETCH_BYTES, StartingOffsets,
};
pub use parse::{MAX_PANES_PER_WINDOW, MAX_SPEC_BYTES, MAX_WINDOWS_PER_RECORD, document};

use crate::json::JsonPath;
use serde::Deserialize;
use std::fmt;

/// A whole job spec.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// The job's name, shown in listings.
    pub name: String,
    /// Default parallelism of operators that set none.
    pub parallelism: u32,
    /// Number of key groups: the upper bound of any keyed operator's parallelism.
    pub max_parallelism: u32,
    /// Defaults for keyed state.
    pub state: StateSpec,
    /// The operators, in any order.
    pub operators: Vec<OperatorSpec>,
    /// Periodic checkpoints; none: the job keeps nothing across a failure.
    pub checkpoints: Option<CheckpointSpec>,
    /// What happens when the job fails.
    pub restart: RestartSpec,
}

/// Checkpoint settings, as Flink's `CheckpointConfig`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSpec {
    /// Time between the start of one checkpoint and the next.
    pub interval: Millis,
    /// Whether a task holds back inputs that delivered a barrier until all have (exactly-once), or not.
    #[serde(default)]
    pub mode: CheckpointMode,
    /// A checkpoint not complete after this long is aborted.
    #[serde(default = "CheckpointSpec::default_timeout")]
    pub timeout: Millis,
    /// The least time between the end of one checkpoint and the start of the next.
    #[serde(default)]
    pub min_pause: Millis,
    /// Checkpoints that may be in progress at once.
    #[serde(default = "CheckpointSpec::one")]
    pub max_concurrent: u32,
    /// Checkpoints in a row that may fail before the job fails.
    #[serde(default)]
    pub tolerable_failures: u32,
    /// Completed checkpoints kept (the newest).
    #[serde(default = "CheckpointSpec::one")]
    pub retained: u32,
    /// Whether checkpoints are kept when the job is cancelled.
    #[serde(default)]
    pub retain_on_cancel: bool,
}

impl CheckpointSpec {
    fn default_timeout() -> Millis {
        Millis(600_000)
    }

    fn one() -> u32 {
        1
    }

    /// Settings with defaults and the given interval.
    pub fn every(interval: Millis) -> CheckpointSpec {
        CheckpointSpec {
            interval,
            mode: CheckpointMode::default(),
            timeout: CheckpointSpec::default_timeout(),
            min_pause: Millis(0),
            max_concurrent: 1,
            tolerable_failures: 0,
            retained: 1,
            retain_on_cancel: false,
        }
    }
}

/// What a checkpoint guarantees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointMode {
    /// State reflects every record exactly once.
    #[default]
    ExactlyOnce,
    /// Barriers are not aligned: after a restore, some records may have been counted twice.
    AtLeastOnce,
}

/// A restart strategy, as Flink's.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "snake_case", tag = "strategy", deny_unknown_fields)]
pub enum RestartSpec {
    /// A failure fails the job.
    #[default]
    None,
    /// Up to `attempts` restarts, `delay` apart.
    FixedDelay {
        /// Restarts allowed.
        attempts: u32,
        /// Wait before each.
        delay: Millis,
    },
    /// Delays that grow by `multiplier` up to `max_delay`, with jitter; back to `initial_delay` after
    /// `reset_after` without a failure.
    ExponentialDelay {
        /// The first delay.
        initial_delay: Millis,
        /// The largest delay.
        max_delay: Millis,
        /// Growth per failure.
        #[serde(default = "RestartSpec::two")]
        multiplier: f64,
        /// Running this long without a failure resets the delay.
        reset_after: Millis,
        /// The fraction of a delay added or taken away at random.
        #[serde(default = "RestartSpec::tenth")]
        jitter: f64,
    },
    /// Restarts unless more than `max_failures` happen within `interval`.
    FailureRate {
        /// Failures allowed per interval.
        max_failures: u32,
        /// The window failures are counted in.
        interval: Millis,
        /// Wait before each restart.
        delay: Millis,
    },
}

impl RestartSpec {
    fn two() -> f64 {
        2.0
    }

    fn tenth() -> f64 {
        0.1
    }
}

/// Job-wide state settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSpec {
    /// Time-to-live applied to every state a function opens (a state's own setting in the spec wins).
    #[serde(default)]
    pub ttl: Option<TtlSpec>,
    /// Where keyed state is kept; none: the server's default.
    #[serde(default)]
    pub backend: Option<BackendKind>,
}

/// A state backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// In memory: fastest; state is bounded by memory, and each checkpoint copies all of it.
    Memory,
    /// RocksDB on the server's local disk: state beyond memory.
    Rocksdb,
}

/// State time-to-live, as Flink's `StateTtlConfig`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TtlSpec {
    /// How long an entry lives after it was last updated.
    pub time_to_live: Millis,
    /// When the time-to-live restarts.
    #[serde(default)]
    pub update: TtlUpdate,
    /// Whether expired entries not yet cleaned up may be read.
    #[serde(default)]
    pub visibility: TtlVisibility,
    /// How expired entries are removed.
    #[serde(default)]
    pub cleanup: TtlCleanup,
}

/// When an entry's time-to-live restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TtlUpdate {
    /// On creation and write.
    #[default]
    OnCreateAndWrite,
    /// On creation, write and read.
    OnReadAndWrite,
}

/// Whether expired entries that were not cleaned up yet may be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TtlVisibility {
    /// Never return expired entries.
    #[default]
    NeverReturnExpired,
    /// Return expired entries until cleanup removes them.
    ReturnExpiredIfNotCleanedUp,
}

/// How expired state entries are removed (besides being hidden on read).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TtlCleanup {
    /// Leave expired entries in place until read; drop them from full snapshots.
    FullSnapshot,
    /// Check `entries` further entries on every state access and remove the expired ones (also drops them from
    /// full snapshots).
    Incremental {
        /// Entries checked per access.
        entries: usize,
    },
}

impl Default for TtlCleanup {
    fn default() -> TtlCleanup {
        TtlCleanup::Incremental { entries: 5 }
    }
}

/// One operator of the job.
#[derive(Debug, Clone)]
pub struct OperatorSpec {
    /// Stable identity: checkpoints and savepoints address state by uid.
    pub uid: String,
    /// Upstream operators (or their side outputs), in input order.
    pub inputs: Vec<InputRef>,
    /// Parallel subtasks of this operator, if set.
    pub parallelism: Option<u32>,
    /// How to key the input: none, one selector for every input, or one per input.
    pub key_by: Vec<KeySpec>,
    /// What the operator does.
    pub kind: OperatorKind,
    /// What becomes of a record the operator's input cannot read: on a source, its event time or its key at the
    /// first keyed exchange; on a keyed operator, its key.
    pub on_error: OnError,
}

/// A reference to an upstream operator's main output or one of its side outputs (`uid` or `uid.tag`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InputRef {
    /// The upstream operator's uid.
    pub operator: String,
    /// The side output's tag, or none for the main output.
    pub output: Option<String>,
}

impl fmt::Display for InputRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.output {
            Some(tag) => write!(f, "{}.{tag}", self.operator),
            None => f.write_str(&self.operator),
        }
    }
}

/// What an operator does.
#[derive(Debug, Clone)]
pub enum OperatorKind {
    /// Reads records from outside the job.
    Source(SourceOperator),
    /// One record out per record in (Wasm).
    Map(UdfSpec),
    /// Keeps records a predicate accepts (Wasm).
    Filter(UdfSpec),
    /// Any number of records out per record in (Wasm).
    FlatMap(UdfSpec),
    /// A process function with state, timers and side outputs (Wasm).
    Process(UdfSpec),
    /// A co-process function over two inputs sharing keyed state (Wasm).
    Connect(UdfSpec),
    /// Merges its inputs unchanged.
    Union,
    /// Windows with a window function.
    Window(Box<WindowOperator>),
    /// Writes records out of the job.
    Sink(SinkSpec),
}

impl OperatorKind {
    /// The kind's name as written in specs.
    pub fn name(&self) -> &'static str {
        match self {
            OperatorKind::Source(_) => "source",
            OperatorKind::Map(_) => "map",
            OperatorKind::Filter(_) => "filter",
            OperatorKind::FlatMap(_) => "flat_map",
            OperatorKind::Process(_) => "process",
            OperatorKind::Connect(_) => "connect",
            OperatorKind::Union => "union",
            OperatorKind::Window(_) => "window",
            OperatorKind::Sink(_) => "sink",
        }
    }
}

/// A reference to an uploaded module and the config its `init` receives.
#[derive(Debug, Clone, PartialEq)]
pub struct UdfSpec {
    /// `name`, `name@version` or `sha256:<hex>`.
    pub module: ModuleRef,
    /// Passed to the function's `init` as JSON text.
    pub config: serde_json::Value,
}

/// Which module a UDF runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ModuleRef {
    /// By name, optionally at a version (the newest when none is given).
    Named {
        /// The module's name.
        name: String,
        /// Its version.
        version: Option<String>,
    },
    /// By content hash (`sha256:<hex>`).
    Hash(String),
}

impl ModuleRef {
    /// Parses `name`, `name@version` or `sha256:<hex>`.
    pub fn parse(text: &str) -> Result<ModuleRef, String> {
        let text = text.trim();
        if let Some(hex) = text.strip_prefix("sha256:") {
            if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Ok(ModuleRef::Hash(hex.to_ascii_lowercase()));
            }
            return Err(format!("`{text}` is not a sha256 hash (64 hex digits)"));
        }
        let (name, version) = match text.split_once('@') {
            Some((name, version)) => (name, Some(version.to_string())),
            None => (text, None),
        };
        if name.is_empty() || version.as_deref() == Some("") {
            return Err(format!("`{text}` is not a module reference (name, name@version or sha256:<hex>)"));
        }
        Ok(ModuleRef::Named { name: name.to_string(), version })
    }
}

impl fmt::Display for ModuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModuleRef::Named { name, version: Some(v) } => write!(f, "{name}@{v}"),
            ModuleRef::Named { name, version: None } => f.write_str(name),
            ModuleRef::Hash(hash) => write!(f, "sha256:{hash}"),
        }
    }
}

/// How to key a stream.
#[derive(Debug, Clone, PartialEq)]
pub enum KeySpec {
    /// A field of the JSON value.
    Json(JsonPath),
    /// A Wasm key selector.
    Module(UdfSpec),
    /// The key the record already carries.
    Record,
}

/// A source operator's settings.
#[derive(Debug, Clone)]
pub struct SourceOperator {
    /// Where records come from.
    pub source: SourceSpec,
    /// Event time and watermarks.
    pub watermark: WatermarkSpec,
    /// Records per batch the source emits.
    pub batch_size: usize,
}

/// What an operator does with a record it cannot read (its event time or its key is missing or malformed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum OnError {
    /// Fail the job, naming the record (the default).
    #[default]
    Fail,
    /// Drop the record and count it (`unreadable_records` in the operator's status).
    Skip,
    /// Send the record, as it came, to this side output of the source (`input: <source>.<tag>`); sources only.
    SideOutput(String),
}

/// Where a source reads.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceSpec {
    /// Deterministic generated events.
    Generator(GeneratorSpec),
    /// A file of JSON lines, one record per line, in one of the tenant's file folders.
    File(FileLocation),
    /// Records POSTed to `/v1/jobs/{id}/inputs/{uid}` while the job runs.
    Http,
    /// Partitions of Kafka topics (run by the server's connectors).
    Kafka(Box<KafkaSourceSpec>),
}

/// A file of a tenant's: a path relative to one of its file folders (its own, or a root the server's admin gave
/// it). The path is checked here for its form; the folder confines it when the file is opened.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLocation {
    /// Path inside the folder: relative, without `..`.
    pub path: RelativePath,
    /// The named root to read or write in; the tenant's own folder when omitted.
    #[serde(default)]
    pub root: Option<String>,
}

/// A relative path that stays inside the folder it is resolved against: not absolute, no `..`, no empty or
/// `.` components, no NUL, at most 1024 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelativePath(pub(crate) String);

impl RelativePath {
    /// Checks `text`'s form.
    pub fn new(text: &str) -> Result<RelativePath, String> {
        if text.is_empty() || text.len() > 1024 || text.contains('\0') {
            return Err("must be a path of 1 to 1024 bytes".into());
        }
        if text.starts_with('/') || text.contains('\\') {
            return Err(format!(
                "`{text}` must be relative to the tenant's file folder (no leading `/`, no backslashes)"
            ));
        }
        if text.split('/').any(|part| part.is_empty() || part == "." || part == "..") {
            return Err(format!("`{text}` may not contain `..`, `.` or empty components"));
        }
        Ok(RelativePath(text.to_string()))
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for RelativePath {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<RelativePath, D::Error> {
        let text = String::deserialize(deserializer)?;
        RelativePath::new(&text).map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for RelativePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The built-in generator of `BENCHMARKS.md`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorSpec {
    /// Events to generate in total (over all subtasks); none for an endless stream.
    #[serde(default)]
    pub events: Option<u64>,
    /// Number of distinct keys.
    #[serde(default = "default_keys")]
    pub keys: u64,
    /// How each event's value is encoded.
    #[serde(default)]
    pub encoding: EventEncoding,
    /// Events per second per subtask, to pace an endless demo stream; unpaced when unset.
    #[serde(default)]
    pub rate: Option<u64>,
}

fn default_keys() -> u64 {
    10_000
}

/// Encoding of generated events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventEncoding {
    /// `{"key":..,"ts":..,"amount":..}` with the key also set as the record key.
    #[default]
    Json,
    /// Key and amount as little-endian u64s: key in the record key, amount as the 8-byte value.
    Binary,
}

/// Event time and watermarks of a source (per split, as Flink's `WatermarkStrategy`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WatermarkSpec {
    /// How watermarks follow timestamps.
    pub strategy: WatermarkStrategy,
    /// After this long without records a split stops holding back the watermark.
    pub idleness: Option<Millis>,
    /// Where event timestamps come from.
    pub timestamp: TimestampSpec,
}

/// How watermarks follow the timestamps seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WatermarkStrategy {
    /// No watermarks: event-time windows fire only when a bounded input ends.
    #[default]
    None,
    /// Watermark = highest timestamp seen - bound - 1 ms.
    BoundedOutOfOrderness(Millis),
    /// Timestamps only grow: watermark = highest timestamp seen - 1 ms.
    Monotonous,
}

/// Where event timestamps come from.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum TimestampSpec {
    /// The source's own timestamp (the generator's event time; arrival time for files and HTTP).
    #[default]
    Source,
    /// A numeric field of the JSON value, in milliseconds.
    Json(JsonPath),
    /// A Wasm timestamp assigner.
    Module(UdfSpec),
}

/// A window operator: assigner, trigger, evictor, lateness and the function.
#[derive(Debug, Clone)]
pub struct WindowOperator {
    /// Which windows a record belongs to.
    pub assigner: AssignerSpec,
    /// Event time or processing time.
    pub time: TimeDomain,
    /// When windows fire; the assigner's default when none.
    pub trigger: Option<TriggerSpec>,
    /// Which records are removed before or after the function.
    pub evictor: Option<EvictorSpec>,
    /// How long after the watermark passes a window's end late records still update it.
    pub allowed_lateness: Millis,
    /// Side output tag for records too late for any window; counted and dropped when none.
    pub late_output: Option<String>,
    /// The window function.
    pub function: WindowFunctionSpec,
}

/// Window assigners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssignerSpec {
    /// Fixed, non-overlapping windows.
    Tumbling {
        /// Window length.
        size: Millis,
        /// Shift of window starts from the epoch.
        offset: Millis,
    },
    /// Fixed windows that overlap.
    Sliding {
        /// Window length.
        size: Millis,
        /// Distance between window starts.
        slide: Millis,
        /// Shift of window starts from the epoch.
        offset: Millis,
    },
    /// Windows that grow while records arrive less than `gap` apart.
    Session {
        /// Inactivity gap that closes a session.
        gap: Millis,
    },
    /// One window per key, fired only by a custom trigger.
    Global,
}

/// The clock windows follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeDomain {
    /// Record timestamps and watermarks.
    #[default]
    Event,
    /// The server's wall clock.
    Processing,
}

/// Window triggers, as Flink's.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TriggerSpec {
    /// Fires when the watermark passes the window's end (and again for each late record within lateness).
    EventTime,
    /// Fires when the wall clock passes the window's end.
    ProcessingTime,
    /// Fires every `n` records.
    Count(u64),
    /// Fires every `interval` of event time while the window is open, and at its end.
    ContinuousEventTime(Millis),
    /// The inner trigger, but every firing also purges the window's contents.
    Purging(Box<TriggerSpec>),
}

impl TriggerSpec {
    /// Whether a firing clears the window's contents.
    pub fn purges(&self) -> bool {
        matches!(self, TriggerSpec::Purging(_))
    }
}

/// Evictors, as Flink's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvictorSpec {
    /// What to evict.
    pub kind: EvictorKind,
    /// Evict after the function instead of before.
    pub after: bool,
}

/// What an evictor removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvictorKind {
    /// Keeps the last `n` records.
    Count(u64),
    /// Keeps records within `span` of the newest record's timestamp.
    Time(Millis),
}

/// The function of a window operator.
#[derive(Debug, Clone, PartialEq)]
pub enum WindowFunctionSpec {
    /// Incremental aggregation.
    Aggregate(AggregateSpec),
    /// Incremental reduction (Wasm).
    Reduce(UdfSpec),
    /// A process-window function (Wasm) over all records, or over the result of `pre`.
    Process {
        /// Runs incrementally before the process-window function.
        pre: Option<PreAggregate>,
        /// The process-window function.
        function: UdfSpec,
    },
}

/// An incremental function before a process-window function.
#[derive(Debug, Clone, PartialEq)]
pub enum PreAggregate {
    /// Aggregate first.
    Aggregate(AggregateSpec),
    /// Reduce first.
    Reduce(UdfSpec),
}

/// An aggregate function.
#[derive(Debug, Clone, PartialEq)]
pub enum AggregateSpec {
    /// A built-in aggregate.
    Builtin {
        /// Which one.
        kind: BuiltinAggregate,
        /// The numeric field it reads (all but `count`).
        field: Option<JsonPath>,
    },
    /// A Wasm aggregator.
    Module(UdfSpec),
}

/// Built-in aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuiltinAggregate {
    /// Number of records.
    Count,
    /// Sum of a field.
    Sum,
    /// Smallest value of a field.
    Min,
    /// Largest value of a field.
    Max,
    /// Mean of a field.
    Avg,
}

impl BuiltinAggregate {
    /// The name used in specs and in results.
    pub fn name(self) -> &'static str {
        match self {
            BuiltinAggregate::Count => "count",
            BuiltinAggregate::Sum => "sum",
            BuiltinAggregate::Min => "min",
            BuiltinAggregate::Max => "max",
            BuiltinAggregate::Avg => "avg",
        }
    }
}

/// Where a sink writes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkSpec {
    /// The server's standard output, one value per line.
    Stdout,
    /// A file in one of the tenant's file folders, one value per line.
    File(FileLocation),
    /// A stream clients read at `/v1/jobs/{id}/outputs/{uid}` (server-sent events).
    Http,
    /// Counts and drops records.
    Discard,
    /// A Kafka topic (run by the server's connectors).
    Kafka(Box<KafkaSinkSpec>),
}

/// One problem in a spec.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SpecError {
    /// The operator's uid (or its position when it has none), if the problem belongs to one.
    pub operator: Option<String>,
    /// The field, as a dotted path.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.operator {
            Some(op) => write!(f, "operator `{op}`, field `{}`: {}", self.field, self.message),
            None => write!(f, "field `{}`: {}", self.field, self.message),
        }
    }
}

/// Every problem found in a spec.
#[derive(Debug, Clone, PartialEq, Eq, Default, thiserror::Error)]
pub struct SpecErrors(pub Vec<SpecError>);

impl SpecErrors {
    pub(crate) fn push(&mut self, operator: Option<&str>, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(SpecError { operator: operator.map(str::to_string), field: field.into(), message: message.into() });
    }

    /// Whether no problem was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the job spec has {} problem(s):", self.0.len())?;
        for error in &self.0 {
            write!(f, "\n  - {error}")?;
        }
        Ok(())
    }
}

impl JobSpec {
    /// Parses a spec from YAML or JSON, reporting every problem at once.
    pub fn parse(text: &str) -> Result<JobSpec, SpecErrors> {
        parse::parse(text)
    }
}
