//! One instance of a component: its store, limits, and calls that turn traps, deadlines and memory overruns into
//! errors the user can act on.

use crate::compile::CompiledModule;
use crate::limits::{GuestUsage, InstanceLimiter, Limits, MAX_RESOURCES, MemoryLimitExceeded, thread_cpu_time};
use crate::logs::{LogBuffer, LogPipe};
use eddy_engine::UdfError;
use eddy_engine::function::FunctionScope;
use eddy_engine::memory::MemoryBudget;
use eddy_engine::operator::process::ProcessContext;
use eddy_engine::state::DeclaredState;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::component::ResourceTable;
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// How often the epoch advances: how often a running call's CPU time and its job's stop flag are checked.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// What a function instance is accounted against: its memory budget (its job's, inside its tenant's) and its
/// tenant's usage meter.
#[derive(Debug, Clone, Default)]
pub struct Accounts {
    /// Charged for every byte of memory and tables.
    pub memory: Option<Arc<MemoryBudget>>,
    /// Charged for every call's CPU time.
    pub usage: Option<Arc<GuestUsage>>,
    /// Keeps the instance's log lines for its job.
    pub journal: Option<Arc<dyn crate::logs::GuestJournal>>,
}

/// A call interrupted because its job is stopping (cancelled, failed elsewhere, or the server shutting down).
#[derive(Debug)]
struct Stopped;

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the call was interrupted because the job is stopping")
    }
}

/// A call that waited (slept, polled a timer) longer in all than its time limit.
#[derive(Debug)]
struct WaitedTooLong {
    limit: Duration,
}

impl std::fmt::Display for WaitedTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the function waited (sleep or poll) longer than its time limit of {} ms for one call",
            self.limit.as_millis()
        )
    }
}

/// The running call's clocks, read by the epoch callback and the timer functions.
struct CallClock {
    /// CPU time of the thread when the call began.
    started: Duration,
    /// Wall time when the call began: waiting is bounded by the limit too.
    started_at: std::time::Instant,
    limit: Duration,
}

/// The guest's monotonic clock: nanoseconds since the instance was created, shared with the timer functions.
#[derive(Clone, Copy)]
struct GuestMonotonicClock {
    origin: std::time::Instant,
}

impl wasmtime_wasi::HostMonotonicClock for GuestMonotonicClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }
}

/// What a store holds for its instance.
pub struct HostState {
    wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    limiter: InstanceLimiter,
    pub(crate) log: LogBuffer,
    /// The process-function context, swapped in for the duration of a call.
    pub(crate) process: ProcessContext,
    clock: CallClock,
    monotonic: GuestMonotonicClock,
    /// The job's stop flag.
    pub(crate) stop: Arc<AtomicBool>,
    /// Set when a timer of the current call was cut short at the call's waiting allowance.
    pub(crate) waited_too_long: Arc<AtomicBool>,
    /// The states the module declares; it may open only those, as declared.
    pub(crate) declared_states: Option<Arc<[DeclaredState]>>,
}

impl HostState {
    /// How much longer the current call may wait.
    pub(crate) fn waiting_allowance(&self) -> Duration {
        self.clock.limit.saturating_sub(self.clock.started_at.elapsed())
    }

    /// The guest's monotonic clock now.
    pub(crate) fn monotonic_now(&self) -> u64 {
        wasmtime_wasi::HostMonotonicClock::now(&self.monotonic)
    }
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
    timeout: Duration,
    usage: Option<Arc<GuestUsage>>,
}

impl Instance {
    /// Instantiates `module` for `scope`, accounted to `accounts`, and calls its `init` with `config`.
    pub fn new(
        module: &CompiledModule,
        limits: &Limits,
        accounts: &Accounts,
        scope: &FunctionScope,
        config: &serde_json::Value,
    ) -> Result<Instance, UdfError> {
        let mut this = Instance::bare(module, limits, accounts, scope)?;
        let lifecycle =
            module.lifecycle.load(&mut this.store, &this.instance).map_err(|e| UdfError::new(format!("{e:#}")))?;
        let config = config.to_string();
        this.call(|store| lifecycle.call_init(store, &config))
            .map_err(|e| UdfError { message: format!("init failed: {}", e.message), logs: e.logs })?;
        Ok(this)
    }

    /// Instantiates `module` without calling `init`.
    pub fn bare(
        module: &CompiledModule,
        limits: &Limits,
        accounts: &Accounts,
        scope: &FunctionScope,
    ) -> Result<Instance, UdfError> {
        let label = format!("{}/{}/{}#{}", scope.tenant, scope.job, scope.operator, scope.subtask);
        let log = LogBuffer::new(&label, accounts.journal.clone());
        // No preopened folders and no network: guests see WASI, but it leads nowhere.
        let monotonic = GuestMonotonicClock { origin: std::time::Instant::now() };
        let wasi = WasiCtx::builder()
            .monotonic_clock(monotonic)
            .stdout(LogPipe::new("stdout", log.clone()))
            .stderr(LogPipe::new("stderr", log.clone()))
            .allow_ip_name_lookup(false)
            .allow_tcp(false)
            .allow_udp(false)
            .build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        let state = HostState {
            wasi,
            table,
            limiter: InstanceLimiter::new(limits, accounts.memory.clone()),
            log,
            process: ProcessContext::default(),
            clock: CallClock {
                started: thread_cpu_time(),
                started_at: std::time::Instant::now(),
                limit: limits.call_timeout,
            },
            monotonic,
            stop: Arc::clone(&scope.stop),
            waited_too_long: Arc::new(AtomicBool::new(false)),
            declared_states: module.declared_states.clone(),
        };
        let mut store = Store::new(module.engine(), state);
        store.limiter(|s| &mut s.limiter);
        // At every tick: stop at once if the job is stopping, and only when the call has used its CPU time (a
        // call that waits for the CPU while other work runs is not charged for the wait).
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|context| {
            let state = context.data();
            if state.stop.load(Ordering::Relaxed) {
                return Err(wasmtime::Error::msg(Stopped));
            }
            if state.waited_too_long.load(Ordering::Relaxed) {
                return Err(wasmtime::Error::msg(WaitedTooLong { limit: state.clock.limit }));
            }
            let clock = &state.clock;
            if thread_cpu_time().saturating_sub(clock.started) >= clock.limit {
                return Ok(UpdateDeadline::Interrupt);
            }
            Ok(UpdateDeadline::Continue(1))
        });
        let instance = module.pre().instantiate(&mut store);
        let instance = instance.map_err(|e| UdfError {
            message: format!("cannot start the module: {e:#}"),
            logs: store.data().log.recent(),
        })?;
        Ok(Instance { instance, store, timeout: limits.call_timeout, usage: accounts.usage.clone() })
    }

    /// Calls into the guest with a fresh CPU deadline; maps every failure to a [`UdfError`] with the last logs.
    pub fn call<R>(
        &mut self,
        call: impl FnOnce(&mut Store<HostState>) -> wasmtime::Result<Result<R, String>>,
    ) -> Result<R, UdfError> {
        let started = thread_cpu_time();
        let state = self.store.data_mut();
        state.clock.started = started;
        state.clock.started_at = std::time::Instant::now();
        state.waited_too_long.store(false, Ordering::Relaxed);
        self.store.set_epoch_deadline(1);
        let outcome = call(&mut self.store);
        if let Some(usage) = &self.usage {
            usage.add_cpu(thread_cpu_time().saturating_sub(started));
        }
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
            _ if error.downcast_ref::<Stopped>().is_some() => Stopped.to_string(),
            _ if error.downcast_ref::<WaitedTooLong>().is_some() => WaitedTooLong { limit: self.timeout }.to_string(),
            Some(trap) => format!("the function trapped: {trap}"),
            None if error.downcast_ref::<MemoryLimitExceeded>().is_some() || detail.contains("memory budget") => {
                match error.downcast_ref::<MemoryLimitExceeded>() {
                    Some(exceeded) => exceeded.to_string(),
                    None => format!("the function could not grow its memory: {detail}"),
                }
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
