//! Fair CPU shares between tenants. Each task runs on its own thread, and the operating system shares cores per
//! thread, so a tenant with eight busy subtasks would get eight times the CPU of a tenant with one. The governor
//! shares cores per *tenant* instead: a task holds one of its tenant's run slots while it processes a message and
//! gives it back whenever it waits (for input, for a full output channel, for its source). A tenant may hold
//! `cores × weight / Σ weights` slots (at least one), where the sum runs over the tenants that want to run right
//! now, so an idle tenant's share goes to the others and a tenant alone has every core.
//!
//! Tasks reach the governor through a thread-local binding ([`bind`]): the task loop calls [`enter`] and
//! [`leave`] around its work, and code that blocks on a task thread wraps the wait in [`blocking`]. Threads that
//! are not bound (the API's, benchmarks without a governor) pass straight through.

use parking_lot::{Condvar, Mutex};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One tenant's slots.
#[derive(Debug)]
struct TenantSlots {
    weight: u32,
    running: usize,
    waiting: usize,
    /// Where the tenant's tasks wait for a slot: a freed slot wakes one of them, not every waiting task.
    wake: Arc<Condvar>,
}

impl TenantSlots {
    fn new() -> TenantSlots {
        TenantSlots { weight: 1, running: 0, waiting: 0, wake: Arc::new(Condvar::new()) }
    }
}

/// Shares the machine's cores between tenants by weight.
#[derive(Debug)]
pub struct CpuGovernor {
    cores: usize,
    tenants: Mutex<HashMap<Arc<str>, TenantSlots>>,
}

/// How many slots a tenant of `weight` may hold when the tenants that want to run have `total_weight` together.
pub fn slots_for(cores: usize, weight: u32, total_weight: u64) -> usize {
    if total_weight == 0 {
        return cores.max(1);
    }
    ((cores as u64 * u64::from(weight.max(1))) / total_weight).max(1) as usize
}

impl CpuGovernor {
    /// A governor over `cores` cores.
    pub fn new(cores: usize) -> Arc<CpuGovernor> {
        Arc::new(CpuGovernor { cores: cores.max(1), tenants: Mutex::new(HashMap::new()) })
    }

    /// A governor over this machine's cores.
    pub fn for_this_machine() -> Arc<CpuGovernor> {
        CpuGovernor::new(std::thread::available_parallelism().map_or(1, usize::from))
    }

    /// Sets a tenant's weight (its share relative to the others'; 1 unless set).
    pub fn set_weight(&self, tenant: &str, weight: u32) {
        let mut tenants = self.tenants.lock();
        tenants.entry(Arc::from(tenant)).or_insert_with(TenantSlots::new).weight = weight.max(1);
        for slots in tenants.values() {
            slots.wake.notify_all();
        }
    }

    fn limit(&self, tenants: &HashMap<Arc<str>, TenantSlots>, tenant: &str) -> usize {
        let total: u64 =
            tenants.values().filter(|t| t.running + t.waiting > 0).map(|t| u64::from(t.weight.max(1))).sum();
        let weight = tenants.get(tenant).map_or(1, |t| t.weight);
        slots_for(self.cores, weight, total)
    }

    fn acquire(&self, tenant: &Arc<str>) {
        let mut tenants = self.tenants.lock();
        let wake = {
            let slots = tenants.entry(Arc::clone(tenant)).or_insert_with(TenantSlots::new);
            slots.waiting += 1;
            Arc::clone(&slots.wake)
        };
        loop {
            let limit = self.limit(&tenants, tenant);
            let Some(slots) = tenants.get_mut(tenant) else { return };
            if slots.running < limit {
                slots.waiting -= 1;
                slots.running += 1;
                return;
            }
            wake.wait(&mut tenants);
        }
    }

    fn release(&self, tenant: &str) {
        let mut tenants = self.tenants.lock();
        let Some(slots) = tenants.get_mut(tenant) else { return };
        slots.running = slots.running.saturating_sub(1);
        if slots.running + slots.waiting == 0 {
            // The tenant stopped wanting to run: the others' shares grow, so their waiting tasks look again.
            for other in tenants.values() {
                other.wake.notify_all();
            }
        } else {
            slots.wake.notify_one();
        }
    }

    /// Whether a task of `tenant` that holds a slot should hand it on: a sibling waits for one, or the tenant
    /// holds more than its share now that others want to run.
    fn should_yield(&self, tenant: &str) -> bool {
        let tenants = self.tenants.lock();
        let limit = self.limit(&tenants, tenant);
        tenants.get(tenant).is_some_and(|t| t.waiting > 0 || t.running > limit)
    }

    /// Slots each tenant holds now, for tests and status.
    pub fn running(&self, tenant: &str) -> usize {
        self.tenants.lock().get(tenant).map_or(0, |t| t.running)
    }
}

struct Binding {
    governor: Arc<CpuGovernor>,
    tenant: Arc<str>,
    holding: bool,
    since: Instant,
}

/// How long a task keeps a run slot while others of its tenant wait for one: tasks that never wait (a generator
/// feeding a chain) still take turns.
const QUANTUM: Duration = Duration::from_millis(10);

thread_local! {
    static BINDING: RefCell<Option<Binding>> = const { RefCell::new(None) };
}

/// Binds this thread to `tenant`'s share of `governor` until the thread ends.
pub fn bind(governor: Arc<CpuGovernor>, tenant: &str) {
    let binding = Binding { governor, tenant: Arc::from(tenant), holding: false, since: Instant::now() };
    BINDING.with(|b| *b.borrow_mut() = Some(binding));
}

/// Takes a run slot (waiting for one if the tenant holds its share) unless the thread holds one already.
pub fn enter() {
    BINDING.with(|b| {
        if let Some(binding) = b.borrow_mut().as_mut()
            && !binding.holding
        {
            binding.governor.acquire(&binding.tenant);
            binding.holding = true;
            binding.since = Instant::now();
        }
    });
}

/// At a point where the task could pause: after a quantum with its slot, hands it to a waiting task of the same
/// tenant, or gives it up if the tenant holds more than its share.
pub fn tick() {
    let turn_over = BINDING.with(|b| {
        b.borrow().as_ref().is_some_and(|binding| {
            binding.holding && binding.since.elapsed() >= QUANTUM && binding.governor.should_yield(&binding.tenant)
        })
    });
    if turn_over {
        leave();
        std::thread::yield_now();
        enter();
    }
}

/// Gives the thread's run slot back, if it holds one.
pub fn leave() {
    BINDING.with(|b| {
        if let Some(binding) = b.borrow_mut().as_mut()
            && binding.holding
        {
            binding.governor.release(&binding.tenant);
            binding.holding = false;
        }
    });
}

/// Runs `wait` (something that blocks) without holding a run slot, and takes one again afterwards if the thread
/// held one before.
pub fn blocking<R>(wait: impl FnOnce() -> R) -> R {
    let held = BINDING.with(|b| b.borrow().as_ref().is_some_and(|binding| binding.holding));
    if held {
        leave();
    }
    let result = wait();
    if held {
        enter();
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn shares_follow_weights_among_the_tenants_that_want_to_run() {
        assert_eq!(slots_for(2, 1, 0), 2, "a tenant alone has every core");
        assert_eq!(slots_for(2, 1, 1), 2);
        assert_eq!(slots_for(2, 1, 2), 1, "two equal tenants get a core each");
        assert_eq!(slots_for(8, 3, 4), 6, "weight 3 against weight 1: three quarters");
        assert_eq!(slots_for(2, 1, 5), 1, "never less than one slot");
    }

    #[test]
    fn a_busy_tenant_holds_only_its_share_while_another_wants_to_run() {
        let governor = CpuGovernor::new(2);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let most_a = Arc::new(AtomicUsize::new(0));
        // Tenant a's threads take turns; tenant b's one thread is busy throughout, as a task that never waits.
        let spawn = |tenant: &'static str, most: Option<Arc<AtomicUsize>>| {
            let (governor, stop) = (Arc::clone(&governor), Arc::clone(&stop));
            std::thread::spawn(move || {
                bind(Arc::clone(&governor), tenant);
                enter();
                while !stop.load(Ordering::Relaxed) {
                    if let Some(most) = &most {
                        most.fetch_max(governor.running(tenant), Ordering::Relaxed);
                        blocking(|| std::thread::sleep(Duration::from_micros(200)));
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                leave();
            })
        };
        // Tenant a alone: its eight threads may use both cores.
        let a: Vec<_> = (0..8).map(|_| spawn("a", Some(Arc::clone(&most_a)))).collect();
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(most_a.load(Ordering::Relaxed), 2, "alone, a used both slots");
        // Tenant b wants to run too: from then on a holds one slot at most.
        let b = spawn("b", None);
        std::thread::sleep(Duration::from_millis(100));
        most_a.store(0, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(most_a.load(Ordering::Relaxed), 1, "beside b, a held one slot");
        stop.store(true, Ordering::Relaxed);
        for thread in a.into_iter().chain([b]) {
            thread.join().expect("thread");
        }
    }

    #[test]
    fn tasks_that_never_wait_still_take_turns() {
        let governor = CpuGovernor::new(1);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let progress: Vec<Arc<AtomicUsize>> = (0..3).map(|_| Arc::new(AtomicUsize::new(0))).collect();
        let threads: Vec<_> = progress
            .iter()
            .map(|count| {
                let (governor, stop, count) = (Arc::clone(&governor), Arc::clone(&stop), Arc::clone(count));
                std::thread::spawn(move || {
                    bind(governor, "a");
                    enter();
                    while !stop.load(Ordering::Relaxed) {
                        tick();
                        count.fetch_add(1, Ordering::Relaxed);
                        std::hint::spin_loop();
                    }
                    leave();
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        for thread in threads {
            thread.join().expect("thread");
        }
        assert!(progress.iter().all(|c| c.load(Ordering::Relaxed) > 0), "every task ran");
    }

    #[test]
    fn a_tenant_over_its_share_gives_slots_back_at_its_next_tick() {
        let governor = CpuGovernor::new(2);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // Two busy tasks of a, alone: both hold slots; neither ever waits.
        let a: Vec<_> = (0..2)
            .map(|_| {
                let (governor, stop) = (Arc::clone(&governor), Arc::clone(&stop));
                std::thread::spawn(move || {
                    bind(governor, "a");
                    enter();
                    while !stop.load(Ordering::Relaxed) {
                        tick();
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    leave();
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(governor.running("a"), 2);
        // b arrives and takes its slot; within a few quanta a is down to its share of one.
        let b_governor = Arc::clone(&governor);
        let b = std::thread::spawn(move || {
            bind(b_governor, "b");
            enter();
            std::thread::sleep(Duration::from_millis(300));
            leave();
        });
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(governor.running("a"), 1, "a gave back the slot over its share");
        assert_eq!(governor.running("b"), 1);
        b.join().expect("b");
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(governor.running("a"), 2, "once b is gone, a has both cores again");
        stop.store(true, Ordering::Relaxed);
        for thread in a {
            thread.join().expect("thread");
        }
    }

    #[test]
    fn unbound_threads_pass_straight_through() {
        enter();
        assert_eq!(blocking(|| 7), 7);
        leave();
    }
}
