//! One instance of a component: its store, limits, and calls that turn traps, deadlines and memory overruns into
//! errors the user can act on.

use crate::compile::CompiledModule;
use crate::logs::{LogBuffer, LogPipe};
use eddy_engine::UdfError;
use eddy_engine::function::FunctionScope;
use eddy_engine::operator::process::ProcessContext;
use std::time::Duration;
use wasmtime::component::ResourceTable;
use wasmtime::{Store, StoreLimits, StoreLimitsBuilder, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// How often the epoch advances: the granularity of CPU deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Resource limits of each instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest linear memory an instance may grow to.
    pub memory_bytes: usize,
    /// Longest a single call may run.
    pub call_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { memory_bytes: 256 << 20, call_timeout: Duration::from_secs(10) }
    }
}

/// What a store holds for its instance.
pub struct HostState {
    wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    limits: StoreLimits,
    pub(crate) log: LogBuffer,
    /// The process-function context, swapped in for the duration of a call.
    pub(crate) process: ProcessContext,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// A running instance.
pub struct Instance {
    pub(crate) store: Store<HostState>,
    pub(crate) instance: wasmtime::component::Instance,
    deadline_ticks: u64,
    memory_bytes: usize,
    timeout: Duration,
}

impl Instance {
    /// Instantiates `module` for `scope` and calls its `init` with `config`.
    pub fn new(
        module: &CompiledModule,
        limits: &Limits,
        scope: &FunctionScope,
        config: &serde_json::Value,
    ) -> Result<Instance, UdfError> {
        let mut this = Instance::bare(module, limits, scope)?;
        let lifecycle =
            module.lifecycle.load(&mut this.store, &this.instance).map_err(|e| UdfError::new(format!("{e:#}")))?;
        let config = config.to_string();
        this.call(|store| lifecycle.call_init(store, &config))
            .map_err(|e| UdfError { message: format!("init failed: {}", e.message), logs: e.logs })?;
        Ok(this)
    }

    /// Instantiates `module` without calling `init`.
    pub fn bare(module: &CompiledModule, limits: &Limits, scope: &FunctionScope) -> Result<Instance, UdfError> {
        let label = format!("{}/{}/{}#{}", scope.tenant, scope.job, scope.operator, scope.subtask);
        let log = LogBuffer::new(&label);
        // No preopened folders and no network: guests see WASI, but it leads nowhere.
        let wasi = WasiCtx::builder()
            .stdout(LogPipe::new("stdout", log.clone()))
            .stderr(LogPipe::new("stderr", log.clone()))
            .allow_ip_name_lookup(false)
            .allow_tcp(false)
            .allow_udp(false)
            .build();
        let store_limits = StoreLimitsBuilder::new()
            .memory_size(limits.memory_bytes)
            .trap_on_grow_failure(true)
            .instances(64)
            .tables(64)
            .memories(16)
            .build();
        let state = HostState {
            wasi,
            table: ResourceTable::new(),
            limits: store_limits,
            log,
            process: ProcessContext::default(),
        };
        let mut store = Store::new(module.engine(), state);
        store.limiter(|s| &mut s.limits);
        let ticks = (limits.call_timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64;
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();
        let instance = module.pre().instantiate(&mut store);
        let instance = instance.map_err(|e| UdfError {
            message: format!("cannot start the module: {e:#}"),
            logs: store.data().log.recent(),
        })?;
        Ok(Instance {
            instance,
            store,
            deadline_ticks: ticks,
            memory_bytes: limits.memory_bytes,
            timeout: limits.call_timeout,
        })
    }

    /// Calls into the guest with a fresh CPU deadline; maps every failure to a [`UdfError`] with the last logs.
    pub fn call<R>(
        &mut self,
        call: impl FnOnce(&mut Store<HostState>) -> wasmtime::Result<Result<R, String>>,
    ) -> Result<R, UdfError> {
        self.store.set_epoch_deadline(self.deadline_ticks);
        let outcome = call(&mut self.store);
        let logs = || self.store.data().log.recent();
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(message)) => {
                Err(UdfError { message: format!("the function returned an error: {message}"), logs: logs() })
            }
            Err(error) => Err(UdfError { message: self.describe(&error), logs: logs() }),
        }
    }

    /// Explains a trap in terms of the limits and the guest's own last words.
    fn describe(&self, error: &wasmtime::Error) -> String {
        let detail = format!("{error:#}");
        let what = match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => format!(
                "the function ran longer than its CPU time limit of {} ms for one call (an endless loop?)",
                self.timeout.as_millis()
            ),
            Some(Trap::UnreachableCodeReached) => "the function trapped (it panicked or aborted)".to_string(),
            Some(trap) => format!("the function trapped: {trap}"),
            None if detail.contains("forcing trap when growing memory") => {
                format!("the function exceeded its memory limit of {} MiB", self.memory_bytes >> 20)
            }
            None => format!("the function failed: {detail}"),
        };
        match panic_message(&self.store.data().log.recent()) {
            Some(panic) => format!("{what}: {panic}"),
            None => what,
        }
    }
}

/// The panic message in a guest's last log lines (Rust's panic hook prints `panicked at <file>:<line>:<col>:`
/// followed by the message).
fn panic_message(lines: &[String]) -> Option<String> {
    let at = lines.iter().rposition(|l| l.contains("panicked at"))?;
    let header = &lines[at];
    let after_colon = header.split("panicked at").nth(1).unwrap_or_default();
    // The message follows the location on the same line (SDK hook) or on the next line (std's hook).
    let inline = after_colon.splitn(4, ':').nth(3).map(str::trim).filter(|s| !s.is_empty());
    let message = match inline {
        Some(m) => m.to_string(),
        None => lines.get(at + 1).map(|l| strip_level(l).to_string()).unwrap_or_default(),
    };
    let location = after_colon.trim().trim_end_matches(':');
    let location = location.split(':').take(3).collect::<Vec<_>>().join(":");
    Some(if message.is_empty() {
        format!("panicked at {location}")
    } else {
        format!("panicked at {location}: {message}")
    })
}

fn strip_level(line: &str) -> &str {
    match line.split_once("] ") {
        Some((level, rest)) if level.starts_with('[') => rest,
        _ => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_panic_messages_in_both_formats() {
        let std_hook = vec![
            "[stderr] thread '<unnamed>' panicked at src/lib.rs:12:5:".to_string(),
            "[stderr] amount must be positive".to_string(),
            "[stderr] note: run with `RUST_BACKTRACE=1`".to_string(),
        ];
        assert_eq!(panic_message(&std_hook).as_deref(), Some("panicked at src/lib.rs:12:5: amount must be positive"));
        let sdk_hook = vec!["[error] panicked at src/lib.rs:3:9: boom".to_string()];
        assert_eq!(panic_message(&sdk_hook).as_deref(), Some("panicked at src/lib.rs:3:9: boom"));
        assert_eq!(panic_message(&["[info] fine".to_string()]), None);
    }
}
