//! Eddy's WebAssembly host: validates uploaded components, compiles them once (cached on disk by content hash),
//! and runs them as the engine's user functions with a memory limit and a CPU deadline per call.
//!
//! - [`WasmRuntime`] owns the wasmtime engine, the linker and the compile cache.
//! - [`WasmFunctions`] implements the engine's `FunctionFactory`: one instance per subtask and function.
//! - `host/` implements the imports guests see: `log`, `keyed-state` and `context`. Guests get WASI 0.2 without
//!   a filesystem (no preopened folders) or network (every address denied).

mod bindings;
mod compile;
mod functions;
mod host;
mod instance;
mod limits;
mod logs;
mod worker;

pub use compile::{CompiledModule, ModuleError, WasmRuntime, interface_name};
pub use eddy_engine::memory::MemoryBudget;
pub use functions::WasmFunctions;
pub use instance::Accounts;
pub use limits::{GuestUsage, Limits};
pub use logs::GuestJournal;
pub use worker::{CompileWorker, run_worker};
