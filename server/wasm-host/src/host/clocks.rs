//! `wasi:clocks/monotonic-clock`'s timers, replaced: a guest that sleeps or polls a timer is woken at once when its
//! job stops, and a call may not wait longer in all than its time limit (waiting uses no CPU time, so the CPU
//! deadline alone would never end it). The rest of WASI is wasmtime's own.

use crate::instance::HostState;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};

/// The interface whose timer functions are replaced, as wasmtime-wasi names it (guests of any 0.2.x match it).
const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// How often a waiting timer looks at its job's stop flag.
const STOP_CHECK: Duration = Duration::from_millis(10);

/// A timer that ends early when the job stops, or at the end of the call's waiting allowance.
struct Timer {
    until: tokio::time::Instant,
    stop: Arc<AtomicBool>,
    /// Set if the timer ended at the allowance rather than where the guest asked.
    cut_short: Option<Arc<AtomicBool>>,
}

#[async_trait::async_trait]
impl Pollable for Timer {
    async fn ready(&mut self) {
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            let now = tokio::time::Instant::now();
            if now >= self.until {
                if let Some(flag) = &self.cut_short {
                    flag.store(true, Ordering::Relaxed);
                }
                return;
            }
            tokio::time::sleep((self.until - now).min(STOP_CHECK)).await;
        }
    }
}

fn timer(state: &mut HostState, wait: Duration) -> wasmtime::Result<Resource<DynPollable>> {
    let now = tokio::time::Instant::now();
    let allowance = state.waiting_allowance();
    let (until, cut_short) =
        if wait > allowance { (now + allowance, Some(Arc::clone(&state.waited_too_long))) } else { (now + wait, None) };
    let stop = Arc::clone(&state.stop);
    let timer = state.table.push(Timer { until, stop, cut_short })?;
    subscribe(&mut state.table, timer)
}

/// Replaces `subscribe-duration` and `subscribe-instant` in `linker` (after WASI was added to it).
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut clock = linker.instance(MONOTONIC_CLOCK)?;
    clock.func_wrap("subscribe-duration", |mut store, (nanos,): (u64,)| {
        Ok((timer(store.data_mut(), Duration::from_nanos(nanos))?,))
    })?;
    clock.func_wrap("subscribe-instant", |mut store, (when,): (u64,)| {
        let state: &mut HostState = store.data_mut();
        let now = state.monotonic_now();
        Ok((timer(state, Duration::from_nanos(when.saturating_sub(now)))?,))
    })?;
    linker.allow_shadowing(false);
    Ok(())
}
