//! Serving the API with limits a hostile client cannot wear down: a cap on connections (in all and per address),
//! a deadline for a request's headers (an idle or slow client is dropped), an idle timeout between the frames of a
//! request body, and a bound on how many requests of one tenant hold a worker thread at once.

use super::error::ApiError;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How the HTTP server limits its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Open connections in all; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Open connections from one address.
    pub max_connections_per_address: usize,
    /// Longest a client may take to send a request's headers (also: to start its next request).
    pub header_timeout: Duration,
    /// Longest a request body may pause between two pieces.
    pub body_idle_timeout: Duration,
    /// Requests of one tenant that may wait on the engine (ingest, submit, upload, cancel) at once.
    pub tenant_concurrency: usize,
}

impl Default for HttpLimits {
    fn default() -> HttpLimits {
        HttpLimits {
            max_connections: 1024,
            max_connections_per_address: 256,
            header_timeout: Duration::from_secs(10),
            body_idle_timeout: Duration::from_secs(30),
            tenant_concurrency: 16,
        }
    }
}

/// Open connections per client address.
#[derive(Default)]
struct PerAddress {
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// A connection's place in the count; given back when the connection closes.
struct AddressSlot {
    table: Arc<PerAddress>,
    address: IpAddr,
}

impl PerAddress {
    fn take(self: &Arc<Self>, address: IpAddr, max: usize) -> Option<AddressSlot> {
        let mut open = self.open.lock();
        let count = open.entry(address).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(AddressSlot { table: Arc::clone(self), address })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock();
        if let Some(count) = open.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.address);
            }
        }
    }
}

/// Serves `app` on `listener` until `stop` resolves, then lets open requests finish (for up to `grace`).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    stop: impl std::future::Future<Output = ()>,
    grace: Duration,
) -> std::io::Result<()> {
    let app = app.layer(tower_http::timeout::RequestBodyTimeoutLayer::new(limits.body_idle_timeout));
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let per_address = Arc::new(PerAddress::default());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // HTTP/1 only: its header deadline runs from the moment a connection waits for a request, where a server that
    // also sniffs for HTTP/2 would first wait for bytes without any deadline.
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little instead of spinning.
                    tracing::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            tracing::debug!(%peer, "refusing a connection: {} are open", limits.max_connections);
            continue;
        };
        let Some(slot) = per_address.take(peer.ip(), limits.max_connections_per_address) else {
            tracing::debug!(%peer, "refusing a connection: too many from this address");
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
            drop((permit, slot));
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!("some connections were still open after {grace:?}; closing them");
    }
    Ok(())
}

/// How many requests of each tenant may wait on the engine at once, so one tenant's slow requests cannot take
/// every worker thread.
pub struct TenantSlots {
    per_tenant: usize,
    /// How long a request waits for one of its tenant's slots before it is told to come back.
    wait: Duration,
    slots: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl TenantSlots {
    /// `per_tenant` slots for each tenant; a request waits up to `wait` for one.
    pub fn new(per_tenant: usize, wait: Duration) -> TenantSlots {
        TenantSlots { per_tenant: per_tenant.max(1), wait, slots: Mutex::new(HashMap::new()) }
    }

    async fn acquire(&self, tenant: &str) -> Result<OwnedSemaphorePermit, ApiError> {
        let semaphore = Arc::clone(
            self.slots.lock().entry(tenant.to_string()).or_insert_with(|| Arc::new(Semaphore::new(self.per_tenant))),
        );
        match tokio::time::timeout(self.wait, semaphore.acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(ApiError::busy(format!(
                "{} requests of this tenant are already being served; try again in a moment",
                self.per_tenant
            ))),
        }
    }

    /// Runs `work` on a worker thread once one of `tenant`'s slots is free.
    pub async fn run<T: Send + 'static>(
        &self,
        tenant: &str,
        work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let permit = self.acquire(tenant).await?;
        let result = tokio::task::spawn_blocking(work).await.map_err(|e| ApiError::internal(e.to_string()))?;
        drop(permit);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn one_tenants_slow_requests_do_not_hold_back_another() {
        let slots = Arc::new(TenantSlots::new(1, Duration::from_millis(200)));
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let slow = tokio::spawn({
            let slots = Arc::clone(&slots);
            async move { slots.run("a", move || wait.recv().map_err(|e| ApiError::internal(e.to_string()))).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let turned_away = slots.run("a", || Ok(())).await.expect_err("a's one slot is taken");
        assert_eq!(turned_away.code, "busy");
        slots.run("b", || Ok(())).await.expect("b has slots of its own");
        release.send(()).expect("release");
        slow.await.expect("task").expect("the slow request completes");
        slots.run("a", || Ok(())).await.expect("the slot is free again");
    }
}
