//! Eddy's stream-processing core: records, job graphs, time, windows, state and the task runtime. It knows nothing
//! of WebAssembly, Kafka, RocksDB or HTTP; those plug in through the traits it defines ([`function::FunctionFactory`],
//! [`state::StateBackend`], [`io::Source`], [`operator::Operator`]).
//!
//! # A tour
//!
//! 1. A [`spec::JobSpec`] is parsed from YAML or JSON and checked into a [`graph::JobGraph`]: operators in
//!    topological order, edges that say how records are partitioned (forward, rebalance, or by key group).
//! 2. [`runtime::deploy`] chains operators joined by forward edges into tasks, creates every function instance,
//!    connects tasks with bounded channels (backpressure), and starts one thread per task.
//! 3. A source task polls its [`io::Source`], stamps event time, tracks a watermark per split
//!    ([`time::SourceWatermarks`]) and pushes batches through its chain.
//! 4. Other tasks receive [`runtime`] messages in order: batches, watermarks, idleness, end of input. The
//!    combined watermark is the minimum over active inputs ([`time::InputWatermarks`]); when it advances each
//!    operator fires its event-time timers before the watermark moves on.
//! 5. Keyed operators keep state in a [`state::KeyedStateStore`] addressed by key group, key and namespace, and
//!    timers in a [`timers::TimerService`]; windows ([`window`]) and process functions ([`operator::process`]) are
//!    built on both.
//!
//! Records travel in [`Batch`]es, never one at a time; see `eddy_codec` for their layout.

pub mod bytes;
pub mod checkpoint;
pub mod control;
pub mod disk;
pub mod error;
pub mod function;
pub mod graph;
pub mod io;
pub mod json;
pub mod keys;
pub mod memory;
pub mod operator;
pub mod runtime;
pub mod spec;
pub mod state;
pub mod testing;
pub mod time;
pub mod timers;
pub mod window;

pub use eddy_codec::{Batch, Headers, Record};
pub use error::{ErrorDomain, TaskError, UdfError};
