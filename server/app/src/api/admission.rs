//! Who may hold a connection. A connection is *unauthenticated* until one of its requests proves a tenant (a valid
//! token, or open mode); then it counts against that tenant's own cap instead. Unauthenticated connections share
//! a cap of their own and a cap per client address, and may idle only briefly: when a cap is reached, the oldest
//! idle unauthenticated connection of that scope is closed to make room, so idle sockets from one address (or from
//! a proxy every tenant comes through) cannot lock anyone out. Only when no such connection can be closed is a new
//! one turned away.

use super::serve::HttpLimits;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::AbortHandle;

/// Every connection's place in the caps.
pub struct Admission {
    limits: HttpLimits,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    /// Open connections in all.
    total: usize,
    /// Unauthenticated connections by id.
    unauthenticated: HashMap<u64, Unauthenticated>,
    per_address: HashMap<IpAddr, usize>,
    per_tenant: HashMap<String, usize>,
}

struct Unauthenticated {
    address: IpAddr,
    /// When it last finished a request (or was accepted).
    idle_since: Instant,
    /// Requests in flight on it.
    busy: usize,
    abort: Option<AbortHandle>,
}

/// Every connection slot a new connection could take is held by one that is busy or authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// The tenant holds as many connections as it may (this many).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantFull(pub usize);

/// One connection's place; given back when dropped (the connection closed).
pub struct ConnectionSlot {
    admission: Arc<Admission>,
    id: u64,
    tenant: Mutex<Option<String>>,
}

impl Admission {
    /// Caps from `limits`.
    pub fn new(limits: HttpLimits) -> Arc<Admission> {
        Arc::new(Admission { limits, state: Mutex::new(State::default()) })
    }

    /// Admits a new connection from `address`, closing the oldest idle unauthenticated one to make room if a cap is
    /// reached.
    pub fn admit(self: &Arc<Self>, address: IpAddr) -> Result<Arc<ConnectionSlot>, Full> {
        let mut state = self.state.lock();
        let limits = &self.limits;
        if state.total >= limits.max_connections && !state.evict_idle(None) {
            return Err(Full);
        }
        if state.unauthenticated.len() >= limits.max_unauthenticated && !state.evict_idle(None) {
            return Err(Full);
        }
        if state.per_address.get(&address).copied().unwrap_or(0) >= limits.max_connections_per_address
            && !state.evict_idle(Some(address))
        {
            return Err(Full);
        }
        let id = state.next_id;
        state.next_id += 1;
        state.total += 1;
        *state.per_address.entry(address).or_default() += 1;
        state.unauthenticated.insert(id, Unauthenticated { address, idle_since: Instant::now(), busy: 0, abort: None });
        Ok(Arc::new(ConnectionSlot { admission: Arc::clone(self), id, tenant: Mutex::new(None) }))
    }

    /// Closes unauthenticated connections idle for longer than the limit; the server calls it now and then.
    pub fn reap(&self) {
        let limit = self.limits.unauthenticated_idle_timeout;
        let mut state = self.state.lock();
        let now = Instant::now();
        let stale: Vec<u64> = state
            .unauthenticated
            .iter()
            .filter(|(_, c)| c.busy == 0 && now.duration_since(c.idle_since) >= limit)
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            if let Some(abort) = state.unauthenticated.get_mut(&id).and_then(|c| c.abort.take()) {
                abort.abort();
            }
        }
    }

    /// Connections open now: (unauthenticated, per tenant), for tests and status.
    pub fn counts(&self) -> (usize, HashMap<String, usize>) {
        let state = self.state.lock();
        (state.unauthenticated.len(), state.per_tenant.clone())
    }
}

impl State {
    /// Closes the unauthenticated connection (from `address`, if given) that has been idle longest; false if none
    /// is idle. Its slot is given back when its task ends.
    fn evict_idle(&mut self, address: Option<IpAddr>) -> bool {
        let oldest = self
            .unauthenticated
            .iter()
            .filter(|(_, c)| c.busy == 0 && c.abort.is_some() && address.is_none_or(|a| a == c.address))
            .min_by_key(|(_, c)| c.idle_since)
            .map(|(id, _)| *id);
        let Some(id) = oldest else { return false };
        if let Some(conn) = self.unauthenticated.remove(&id) {
            if let Some(abort) = conn.abort {
                abort.abort();
            }
            self.forget_address(conn.address);
            self.total -= 1;
        }
        true
    }

    fn forget_address(&mut self, address: IpAddr) {
        if let Some(count) = self.per_address.get_mut(&address) {
            *count -= 1;
            if *count == 0 {
                self.per_address.remove(&address);
            }
        }
    }
}

impl ConnectionSlot {
    /// Tells the slot how to close its connection (the task serving it).
    pub fn set_abort(&self, abort: AbortHandle) {
        if let Some(conn) = self.admission.state.lock().unauthenticated.get_mut(&self.id) {
            conn.abort = Some(abort);
        }
    }

    /// A request started on the connection; the guard marks its end.
    pub fn busy(self: &Arc<Self>) -> BusyGuard {
        if let Some(conn) = self.admission.state.lock().unauthenticated.get_mut(&self.id) {
            conn.busy += 1;
        }
        BusyGuard { slot: Arc::clone(self) }
    }

    /// A request on the connection proved `tenant`: from now on the connection counts against that tenant's cap
    /// and is never closed to make room. Refused when the tenant holds its cap already (the connection stays
    /// unauthenticated).
    pub fn authenticate(&self, tenant: &str) -> Result<(), TenantFull> {
        let mut current = self.tenant.lock();
        if current.as_deref() == Some(tenant) {
            return Ok(());
        }
        let admission = &self.admission;
        let mut state = admission.state.lock();
        let cap = admission.limits.max_connections_per_tenant;
        if state.per_tenant.get(tenant).copied().unwrap_or(0) >= cap {
            return Err(TenantFull(cap));
        }
        *state.per_tenant.entry(tenant.to_string()).or_default() += 1;
        match current.replace(tenant.to_string()) {
            // One connection may carry requests of several tenants (a proxy): it counts against the newest.
            Some(before) => state.release_tenant(&before),
            None => {
                if let Some(conn) = state.unauthenticated.remove(&self.id) {
                    state.forget_address(conn.address);
                }
            }
        }
        Ok(())
    }
}

impl State {
    fn release_tenant(&mut self, tenant: &str) {
        if let Some(count) = self.per_tenant.get_mut(tenant) {
            *count -= 1;
            if *count == 0 {
                self.per_tenant.remove(tenant);
            }
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut state = self.admission.state.lock();
        match self.tenant.lock().take() {
            Some(tenant) => {
                state.release_tenant(&tenant);
                state.total -= 1;
            }
            None => {
                // An evicted connection was taken out of the counts already.
                if let Some(conn) = state.unauthenticated.remove(&self.id) {
                    state.forget_address(conn.address);
                    state.total -= 1;
                }
            }
        }
    }
}

/// Marks a request in flight on a connection; its end when dropped.
pub struct BusyGuard {
    slot: Arc<ConnectionSlot>,
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        if let Some(conn) = self.slot.admission.state.lock().unauthenticated.get_mut(&self.slot.id) {
            conn.busy = conn.busy.saturating_sub(1);
            conn.idle_since = Instant::now();
        }
    }
}

/// How often idle unauthenticated connections are looked for.
pub const REAP_EVERY: Duration = Duration::from_millis(250);

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> HttpLimits {
        HttpLimits {
            max_connections: 4,
            max_unauthenticated: 3,
            max_connections_per_address: 2,
            max_connections_per_tenant: 1,
            ..HttpLimits::default()
        }
    }

    fn address(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    /// An abort handle of a task that does nothing, as a connection's would be.
    fn task() -> AbortHandle {
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let _entered = runtime.enter();
        runtime.spawn(std::future::pending::<()>()).abort_handle()
    }

    #[test]
    fn idle_unauthenticated_connections_make_room_and_busy_ones_do_not() {
        let admission = Admission::new(limits());
        let a = admission.admit(address(1)).expect("first");
        a.set_abort(task());
        let b = admission.admit(address(1)).expect("second");
        b.set_abort(task());
        let _busy = b.busy();
        // A third from the same address: the idle one (a) is closed to make room, not the busy one.
        let c = admission.admit(address(1)).expect("room is made");
        c.set_abort(task());
        assert_eq!(admission.counts().0, 2);
        let _busy_c = c.busy();
        assert_eq!(admission.admit(address(1)).err(), Some(Full), "both of the address's are busy");
        // Another address is not held back by the first's.
        let d = admission.admit(address(2)).expect("another address");
        drop((a, d));
    }

    #[test]
    fn authenticated_connections_count_per_tenant_and_are_never_closed_for_room() {
        let admission = Admission::new(limits());
        let a = admission.admit(address(1)).expect("admit");
        a.set_abort(task());
        a.authenticate("acme").expect("acme's first");
        let b = admission.admit(address(1)).expect("admit");
        b.set_abort(task());
        assert_eq!(b.authenticate("acme"), Err(TenantFull(1)), "acme holds its cap");
        b.authenticate("globex").expect("another tenant has its own");
        assert_eq!(admission.counts(), (0, HashMap::from([("acme".into(), 1), ("globex".into(), 1)])));
        // Two unauthenticated fill the total of 4; a fifth finds nothing idle and unauthenticated to close.
        let c = admission.admit(address(2)).expect("third");
        let d = admission.admit(address(3)).expect("fourth");
        assert_eq!(admission.admit(address(4)).err(), Some(Full));
        drop((c, d, b));
        assert_eq!(admission.counts(), (0, HashMap::from([("acme".into(), 1)])));
        drop(a);
        assert_eq!(admission.counts(), (0, HashMap::new()));
    }
}
