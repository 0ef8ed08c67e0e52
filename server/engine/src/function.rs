//! User functions as the engine sees them: batch-at-a-time traits that the Wasm host implements (and that native
//! code implements directly, for built-ins and benchmarks).
//!
//! Every call takes a whole batch. Functions never see other subtasks' records, and keyed functions reach state
//! only through the [`ProcessContext`] the operator hands them.

use crate::error::{TaskError, UdfError};
use crate::operator::process::{FiredTimer, ProcessContext};
use crate::spec::UdfSpec;
use crate::window::Window;
use eddy_codec::Batch;

/// The kinds of user function, one per WIT world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UdfKind {
    /// One record out per record in.
    Map,
    /// Keeps or drops records.
    Filter,
    /// Any number of records out per record in.
    FlatMap,
    /// Chooses the key for `key_by`.
    KeySelector,
    /// Reads event time from records.
    TimestampAssigner,
    /// Process and co-process functions.
    Process,
    /// Incremental window aggregation.
    Aggregate,
    /// Window reduction.
    Reduce,
    /// Process-window functions.
    ProcessWindow,
}

impl UdfKind {
    /// Every kind.
    pub const ALL: [UdfKind; 9] = [
        UdfKind::Map,
        UdfKind::Filter,
        UdfKind::FlatMap,
        UdfKind::KeySelector,
        UdfKind::TimestampAssigner,
        UdfKind::Process,
        UdfKind::Aggregate,
        UdfKind::Reduce,
        UdfKind::ProcessWindow,
    ];

    /// The kind's name in messages and APIs.
    pub fn name(self) -> &'static str {
        match self {
            UdfKind::Map => "map",
            UdfKind::Filter => "filter",
            UdfKind::FlatMap => "flat_map",
            UdfKind::KeySelector => "key_selector",
            UdfKind::TimestampAssigner => "timestamp_assigner",
            UdfKind::Process => "process",
            UdfKind::Aggregate => "aggregate",
            UdfKind::Reduce => "reduce",
            UdfKind::ProcessWindow => "process_window",
        }
    }
}

/// A one-to-one function.
pub trait MapFunction: Send {
    /// Returns one record per input record, in order.
    fn map(&mut self, input: &Batch) -> Result<Batch, UdfError>;
}

/// A predicate.
pub trait FilterFunction: Send {
    /// Fills `keep` with one flag per input record.
    fn filter(&mut self, input: &Batch, keep: &mut Vec<bool>) -> Result<(), UdfError>;
}

/// A one-to-many function.
pub trait FlatMapFunction: Send {
    /// Returns the records for the whole input batch.
    fn flat_map(&mut self, input: &Batch) -> Result<Batch, UdfError>;
}

/// A key selector.
pub trait KeySelectorFunction: Send {
    /// Fills `keys` with one key per input record.
    fn select_keys(&mut self, input: &Batch, keys: &mut Batch) -> Result<(), UdfError>;
}

/// A timestamp assigner.
pub trait TimestampAssignerFunction: Send {
    /// Fills `timestamps` with one event timestamp per input record.
    fn timestamps(&mut self, input: &Batch, timestamps: &mut Vec<i64>) -> Result<(), UdfError>;
}

/// A process or co-process function. State, timers, the current key and output all go through `ctx`.
pub trait ProcessFunction: Send {
    /// Processes records from input `input`. Before touching state or timers for record `i`, the function calls
    /// [`ProcessContext::enter`]`(i)`.
    fn process(&mut self, input: usize, records: &Batch, ctx: &mut ProcessContext) -> Result<(), UdfError>;
    /// Handles fired timers, in timestamp order; `enter(i)` makes timer `i`'s key current.
    fn on_timers(&mut self, timers: &[FiredTimer], ctx: &mut ProcessContext) -> Result<(), UdfError>;
}

/// An incremental aggregation over opaque accumulators (values of a batch).
pub trait AggregateFunction: Send {
    /// A fresh accumulator.
    fn create_accumulator(&mut self) -> Result<Vec<u8>, UdfError>;
    /// Adds `inputs[i]` to accumulator `targets[i]`, in order; returns every accumulator.
    fn add(&mut self, accumulators: &Batch, inputs: &Batch, targets: &[u32]) -> Result<Batch, UdfError>;
    /// Merges `others[i]` into accumulator `targets[i]`; returns every accumulator.
    fn merge(&mut self, accumulators: &Batch, others: &Batch, targets: &[u32]) -> Result<Batch, UdfError>;
    /// One result value per accumulator.
    fn get_result(&mut self, accumulators: &Batch) -> Result<Batch, UdfError>;

    /// What its accumulators hold, as part of a window's state layout: a restore refuses accumulators written by
    /// a function with another. A user function's accumulators are its own business (`udf`); a built-in names
    /// itself.
    fn accumulator_layout(&self) -> String {
        "udf".into()
    }
}

/// A reduction of records into one record.
pub trait ReduceFunction: Send {
    /// Folds `inputs[i]` into record `accumulators[targets[i]]`, in order; returns every accumulator.
    fn reduce(&mut self, accumulators: &Batch, inputs: &Batch, targets: &[u32]) -> Result<Batch, UdfError>;
}

/// The contents of a window that fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowContents {
    /// The key (none for a window over the whole stream).
    pub key: Option<Vec<u8>>,
    /// The window.
    pub window: Window,
    /// Its records, or the single pre-aggregated result.
    pub elements: Batch,
}

/// Records a function emits to its main and side outputs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outputs {
    /// Main output.
    pub main: Batch,
    /// Side outputs by tag.
    pub side: Vec<(String, Batch)>,
}

/// A process-window function.
pub trait ProcessWindowFunction: Send {
    /// Evaluates windows that fired, in firing order.
    fn process_windows(&mut self, windows: &[WindowContents], out: &mut Outputs) -> Result<(), UdfError>;
}

/// Where a function instance runs, for log labels and error messages.
#[derive(Debug, Clone)]
pub struct FunctionScope {
    /// The job's id.
    pub job: String,
    /// The tenant that owns the job.
    pub tenant: String,
    /// The operator's uid.
    pub operator: String,
    /// The subtask index.
    pub subtask: u32,
    /// Set when the job stops (cancelled, failed, or the server shutting down): a running call is interrupted.
    pub stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// Creates function instances for a job's subtasks (one instance per subtask and function).
pub trait FunctionFactory: Send + Sync {
    /// A map function.
    fn map(&self, udf: &UdfSpec, scope: &FunctionScope) -> Result<Box<dyn MapFunction>, TaskError>;
    /// A filter.
    fn filter(&self, udf: &UdfSpec, scope: &FunctionScope) -> Result<Box<dyn FilterFunction>, TaskError>;
    /// A flat-map function.
    fn flat_map(&self, udf: &UdfSpec, scope: &FunctionScope) -> Result<Box<dyn FlatMapFunction>, TaskError>;
    /// A key selector.
    fn key_selector(&self, udf: &UdfSpec, scope: &FunctionScope) -> Result<Box<dyn KeySelectorFunction>, TaskError>;
    /// A timestamp assigner.
    fn timestamp_assigner(
        &self,
        udf: &UdfSpec,
        scope: &FunctionScope,
    ) -> Result<Box<dyn TimestampAssignerFunction>, TaskError>;
    /// A process function.
    fn process(&self, udf: &UdfSpec, scope: &FunctionScope) -> Result<Box<dyn ProcessFunction>, TaskError>;
    /// An aggregate function.
    fn aggregate(&self, udf: &UdfSpec, scope: &FunctionScope) -> Result<Box<dyn AggregateFunction>, TaskError>;
    /// A reduce function.
    fn reduce(&self, udf: &UdfSpec, scope: &FunctionScope) -> Result<Box<dyn ReduceFunction>, TaskError>;
    /// A process-window function.
    fn process_window(&self, udf: &UdfSpec, scope: &FunctionScope)
    -> Result<Box<dyn ProcessWindowFunction>, TaskError>;
}

/// A factory that has no functions, for jobs made of built-ins only.
#[derive(Debug, Default)]
pub struct NoFunctions;

fn none<T>(udf: &UdfSpec) -> Result<T, TaskError> {
    Err(TaskError::internal(format!("no function runtime is configured for module `{}`", udf.module)))
}

impl FunctionFactory for NoFunctions {
    fn map(&self, udf: &UdfSpec, _: &FunctionScope) -> Result<Box<dyn MapFunction>, TaskError> {
        none(udf)
    }
    fn filter(&self, udf: &UdfSpec, _: &FunctionScope) -> Result<Box<dyn FilterFunction>, TaskError> {
        none(udf)
    }
    fn flat_map(&self, udf: &UdfSpec, _: &FunctionScope) -> Result<Box<dyn FlatMapFunction>, TaskError> {
        none(udf)
    }
    fn key_selector(&self, udf: &UdfSpec, _: &FunctionScope) -> Result<Box<dyn KeySelectorFunction>, TaskError> {
        none(udf)
    }
    fn timestamp_assigner(
        &self,
        udf: &UdfSpec,
        _: &FunctionScope,
    ) -> Result<Box<dyn TimestampAssignerFunction>, TaskError> {
        none(udf)
    }
    fn process(&self, udf: &UdfSpec, _: &FunctionScope) -> Result<Box<dyn ProcessFunction>, TaskError> {
        none(udf)
    }
    fn aggregate(&self, udf: &UdfSpec, _: &FunctionScope) -> Result<Box<dyn AggregateFunction>, TaskError> {
        none(udf)
    }
    fn reduce(&self, udf: &UdfSpec, _: &FunctionScope) -> Result<Box<dyn ReduceFunction>, TaskError> {
        none(udf)
    }
    fn process_window(&self, udf: &UdfSpec, _: &FunctionScope) -> Result<Box<dyn ProcessWindowFunction>, TaskError> {
        none(udf)
    }
}
