//! Memory shared by many holders: a job's, a tenant's, the server's. Function instances charge their linear
//! memory here as it grows, and the host charges the buffers it keeps for a job or a request (Kafka clients' queues,
//! output streams, request bodies) so that no tenant can hold memory that no budget counts. Charges go up the chain
//! of parents, so a charge that fits a job's budget can still be refused by its tenant's or the server's.

use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A budget of bytes, inside a parent budget if it has one.
#[derive(Debug)]
pub struct MemoryBudget {
    name: String,
    limit: AtomicUsize,
    used: AtomicUsize,
    parent: Option<Arc<MemoryBudget>>,
    /// Serializes charges so a check and its increment up the chain are one step.
    charging: Mutex<()>,
}

impl MemoryBudget {
    /// A budget of `limit` bytes, called `name` in errors (e.g. "tenant acme"), inside `parent` if given.
    pub fn new(name: impl Into<String>, limit: usize, parent: Option<Arc<MemoryBudget>>) -> Arc<MemoryBudget> {
        let limit = AtomicUsize::new(limit);
        Arc::new(MemoryBudget { name: name.into(), limit, used: AtomicUsize::new(0), parent, charging: Mutex::new(()) })
    }

    /// Bytes charged now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// The limit in bytes.
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Changes the limit; memory held beyond it stays, but no more is granted until use falls below it.
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// Charges `bytes` to this budget and every parent, or to none of them if one would pass its limit; the error
    /// names the budget that refused.
    pub fn try_charge(&self, bytes: usize) -> Result<(), String> {
        let _serial = self.charging.lock();
        let used = self.used();
        let limit = self.limit();
        if used.saturating_add(bytes) > limit {
            return Err(format!(
                "{}'s memory budget of {} MiB is used up ({} MiB in use, {} MiB more asked)",
                self.name,
                limit >> 20,
                used >> 20,
                bytes.div_ceil(1 << 20)
            ));
        }
        if let Some(parent) = &self.parent {
            parent.try_charge(bytes)?;
        }
        self.used.fetch_add(bytes, Ordering::Relaxed);
        Ok(())
    }

    /// Gives back `bytes` charged before.
    pub fn release(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
        if let Some(parent) = &self.parent {
            parent.release(bytes);
        }
    }

    /// Charges `bytes` for as long as the returned reservation lives.
    pub fn reserve(self: &Arc<Self>, bytes: usize) -> Result<MemoryReservation, String> {
        self.try_charge(bytes)?;
        Ok(MemoryReservation { budget: Some(Arc::clone(self)), bytes })
    }
}

/// Bytes charged to a budget until dropped. A reservation of no budget charges nothing (servers and tests that
/// count nothing).
#[derive(Debug, Default)]
pub struct MemoryReservation {
    budget: Option<Arc<MemoryBudget>>,
    bytes: usize,
}

impl MemoryReservation {
    /// Charges `bytes` to `budget`, if there is one.
    pub fn take(budget: Option<&Arc<MemoryBudget>>, bytes: usize) -> Result<MemoryReservation, String> {
        match budget {
            Some(budget) => budget.reserve(bytes),
            None => Ok(MemoryReservation { budget: None, bytes }),
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Changes the bytes held to `bytes`, growing only if the budget allows it (shrinking always succeeds).
    pub fn resize(&mut self, bytes: usize) -> Result<(), String> {
        let Some(budget) = &self.budget else {
            self.bytes = bytes;
            return Ok(());
        };
        if bytes > self.bytes {
            budget.try_charge(bytes - self.bytes)?;
        } else {
            budget.release(self.bytes - bytes);
        }
        self.bytes = bytes;
        Ok(())
    }
}

impl Drop for MemoryReservation {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            budget.release(self.bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_go_up_the_chain_and_a_refusal_leaves_nothing_behind() {
        let tenant = MemoryBudget::new("tenant acme", 3 << 20, None);
        let job = MemoryBudget::new("job j", 2 << 20, Some(Arc::clone(&tenant)));
        let other = MemoryBudget::new("job k", 2 << 20, Some(Arc::clone(&tenant)));
        let a = job.reserve(2 << 20).expect("fits the job");
        let refused = job.reserve(1).expect_err("the job's budget is full");
        assert!(refused.contains("job j's memory budget of 2 MiB"), "{refused}");
        let mut b = other.reserve(1 << 20).expect("fits");
        let refused = b.resize(2 << 20).expect_err("the tenant's budget is full");
        assert!(refused.contains("tenant acme"), "{refused}");
        assert_eq!((other.used(), tenant.used()), (1 << 20, 3 << 20), "a refused growth leaves nothing behind");
        drop(a);
        assert_eq!((job.used(), tenant.used()), (0, 1 << 20));
        b.resize(0).expect("shrinking");
        assert_eq!(tenant.used(), 0);
        let free = MemoryReservation::take(None, 1 << 40).expect("no budget counts nothing");
        assert_eq!(free.bytes(), 1 << 40);
    }
}
