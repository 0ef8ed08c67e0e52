//! What one instance, one job and one tenant may take. An instance's linear memories and tables together count
//! against its own limit (a guest with sixteen memories gets no more than one with one), and every byte an
//! instance holds is also charged to budgets shared by many instances — its job's and its tenant's — so that many
//! instances each within their own limit cannot together exhaust the server.

use eddy_engine::memory::MemoryBudget;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Resource limits of each instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes an instance's linear memories and tables may take together.
    pub memory_bytes: usize,
    /// Most CPU time a single call may use.
    pub call_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { memory_bytes: 256 << 20, call_timeout: Duration::from_secs(10) }
    }
}

/// CPU time the calling thread has used so far. Guests' deadlines count this, not wall time, so a server busy with
/// other tenants' work does not make a healthy function miss its limit.
pub(crate) fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid timespec for clock_gettime to fill; CLOCK_THREAD_CPUTIME_ID needs no other argument.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    if status != 0 {
        return Duration::ZERO;
    }
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// What the guests of one tenant have used, for metering.
#[derive(Debug, Default)]
pub struct GuestUsage {
    cpu_nanos: AtomicU64,
}

impl GuestUsage {
    /// CPU time spent in guest calls.
    pub fn cpu(&self) -> Duration {
        Duration::from_nanos(self.cpu_nanos.load(Ordering::Relaxed))
    }

    pub(crate) fn add_cpu(&self, used: Duration) {
        self.cpu_nanos.fetch_add(used.as_nanos() as u64, Ordering::Relaxed);
    }
}

/// Bytes a table element is charged (a function reference and its type, rounded up).
const TABLE_ELEMENT_BYTES: usize = 16;
/// Most resources (state handles, WASI streams) one instance may hold open at once.
pub(crate) const MAX_RESOURCES: usize = 10_000;

/// The limiter of one instance's store.
pub(crate) struct InstanceLimiter {
    limit: usize,
    held: usize,
    budget: Option<Arc<MemoryBudget>>,
}

impl InstanceLimiter {
    pub(crate) fn new(limits: &Limits, budget: Option<Arc<MemoryBudget>>) -> InstanceLimiter {
        InstanceLimiter { limit: limits.memory_bytes, held: 0, budget }
    }

    fn grow(&mut self, bytes: usize) -> wasmtime::Result<bool> {
        if self.held.saturating_add(bytes) > self.limit {
            return Err(wasmtime::Error::msg(MemoryLimitExceeded { limit: self.limit }));
        }
        if let Some(budget) = &self.budget {
            budget.try_charge(bytes).map_err(wasmtime::Error::msg)?;
        }
        self.held += bytes;
        Ok(true)
    }
}

impl Drop for InstanceLimiter {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            budget.release(self.held);
        }
    }
}

/// The error of a growth past an instance's own limit, recognised when a trap is explained.
#[derive(Debug)]
pub(crate) struct MemoryLimitExceeded {
    pub(crate) limit: usize,
}

impl std::fmt::Display for MemoryLimitExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the function exceeded its memory limit of {} MiB (memories and tables together)", self.limit >> 20)
    }
}

impl wasmtime::ResourceLimiter for InstanceLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.grow(desired.saturating_sub(current))
    }

    fn table_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.grow(desired.saturating_sub(current).saturating_mul(TABLE_ELEMENT_BYTES))
    }

    fn instances(&self) -> usize {
        64
    }

    fn tables(&self) -> usize {
        64
    }

    fn memories(&self) -> usize {
        16
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn memories_and_tables_share_the_instance_limit() {
        let mut limiter = InstanceLimiter::new(&Limits { memory_bytes: 1 << 20, ..Limits::default() }, None);
        assert!(limiter.memory_growing(0, 512 << 10, None).is_ok());
        assert!(limiter.memory_growing(0, 512 << 10, None).is_ok(), "a second memory takes the rest");
        assert!(limiter.memory_growing(0, 64 << 10, None).is_err(), "a third finds nothing left");
        assert!(limiter.table_growing(0, 1, None).is_err(), "tables count too");
    }

    #[test]
    fn budgets_are_charged_up_the_chain_and_released_on_drop() {
        let tenant = MemoryBudget::new("tenant acme", 3 << 20, None);
        let job = MemoryBudget::new("job j", 2 << 20, Some(Arc::clone(&tenant)));
        let other_job = MemoryBudget::new("job k", 2 << 20, Some(Arc::clone(&tenant)));
        let limits = Limits { memory_bytes: 1 << 20, ..Limits::default() };
        let mut a = InstanceLimiter::new(&limits, Some(Arc::clone(&job)));
        let mut b = InstanceLimiter::new(&limits, Some(Arc::clone(&job)));
        let mut c = InstanceLimiter::new(&limits, Some(Arc::clone(&job)));
        assert!(a.memory_growing(0, 1 << 20, None).is_ok());
        assert!(b.memory_growing(0, 1 << 20, None).is_ok());
        let refused = c.memory_growing(0, 1 << 20, None).expect_err("the job's budget is full").to_string();
        assert!(refused.contains("job j's memory budget of 2 MiB"), "{refused}");
        let mut d = InstanceLimiter::new(&limits, Some(Arc::clone(&other_job)));
        assert!(d.memory_growing(0, 1 << 20, None).is_ok());
        let mut e = InstanceLimiter::new(&limits, Some(Arc::clone(&other_job)));
        let refused = e.memory_growing(0, 1 << 20, None).expect_err("the tenant's budget is full").to_string();
        assert!(refused.contains("tenant acme"), "{refused}");
        assert_eq!(other_job.used(), 1 << 20, "a refused charge leaves nothing behind");
        drop((a, b));
        assert_eq!((job.used(), tenant.used()), (0, 1 << 20));
        assert!(e.memory_growing(0, 1 << 20, None).is_ok(), "released memory can be used again");
    }
}
