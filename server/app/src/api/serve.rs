//! Serving the API with limits a hostile client cannot wear down: caps on connections (see [`super::admission`]:
//! unauthenticated ones in all and per address, authenticated ones per tenant), a deadline for a request's headers
//! (an idle or slow client is dropped), an idle timeout between the frames of a request body and a minimum rate
//! for the whole body, and a bound on how many requests of one tenant hold a worker thread at once.

use super::admission::{self, Admission, ConnectionSlot, REAP_EVERY};
use super::error::ApiError;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How the HTTP server limits its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Open connections in all.
    pub max_connections: usize,
    /// Open connections no request has yet authenticated.
    pub max_unauthenticated: usize,
    /// Unauthenticated connections from one address.
    pub max_connections_per_address: usize,
    /// Authenticated connections of one tenant.
    pub max_connections_per_tenant: usize,
    /// Longest an unauthenticated connection may sit idle.
    pub unauthenticated_idle_timeout: Duration,
    /// Longest a client may take to send a request's headers (also: to start its next request).
    pub header_timeout: Duration,
    /// Longest a request body may pause between two pieces.
    pub body_idle_timeout: Duration,
    /// Bytes per second a request body must arrive at, on average, once `body_rate_grace` has passed: a body
    /// that trickles in is cut off instead of holding a connection and a slot for as long as it likes.
    pub min_body_rate: u64,
    /// How long a body may take before its rate counts.
    pub body_rate_grace: Duration,
    /// Requests of one tenant that may wait on the engine (ingest, submit, upload, cancel) at once.
    pub tenant_concurrency: usize,
}

impl Default for HttpLimits {
    fn default() -> HttpLimits {
        HttpLimits {
            max_connections: 4096,
            max_unauthenticated: 1024,
            max_connections_per_address: 256,
            max_connections_per_tenant: 512,
            unauthenticated_idle_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_secs(10),
            body_idle_timeout: Duration::from_secs(30),
            min_body_rate: 16 << 10,
            body_rate_grace: Duration::from_secs(10),
            tenant_concurrency: 16,
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
    let app = app
        .layer(axum::middleware::from_fn(mark_busy))
        .layer(axum::middleware::map_request(move |request: axum::extract::Request| async move {
            request
                .map(|body| axum::body::Body::new(MinRateBody::new(body, limits.min_body_rate, limits.body_rate_grace)))
        }))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(limits.body_idle_timeout));
    let admission = Admission::new(limits);
    let reaper = tokio::spawn({
        let admission = Arc::clone(&admission);
        async move {
            loop {
                tokio::time::sleep(REAP_EVERY).await;
                admission.reap();
            }
        }
    });
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
        let slot = match admission.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(admission::Full) => {
                tracing::debug!(%peer, "refusing a connection: every slot is held by a busy or authenticated one");
                continue;
            }
        };
        let service = TowerToHyperService::new(app.clone().layer(axum::Extension(Arc::clone(&slot))));
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        let task = tokio::spawn(async move {
            let _ = connection.await;
        });
        slot.set_abort(task.abort_handle());
    }
    reaper.abort();
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!("some connections were still open after {grace:?}; closing them");
    }
    Ok(())
}

/// Marks the connection busy while one of its requests is served, so it is not closed to make room meanwhile.
async fn mark_busy(request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let _busy = request.extensions().get::<Arc<ConnectionSlot>>().map(ConnectionSlot::busy);
    next.run(request).await
}

/// A request body that must keep arriving at a minimum average rate once its grace period has passed.
struct MinRateBody {
    inner: axum::body::Body,
    started: tokio::time::Instant,
    received: u64,
    min_rate: u64,
    grace: Duration,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl MinRateBody {
    fn new(inner: axum::body::Body, min_rate: u64, grace: Duration) -> MinRateBody {
        let started = tokio::time::Instant::now();
        let deadline = Box::pin(tokio::time::sleep_until(started + grace));
        MinRateBody { inner, started, received: 0, min_rate: min_rate.max(1), grace, deadline }
    }

    /// When the bytes received so far stop being enough.
    fn due(&self) -> tokio::time::Instant {
        self.started + self.grace + Duration::from_secs_f64(self.received as f64 / self.min_rate as f64)
    }
}

/// A body that arrived too slowly.
#[derive(Debug, thiserror::Error)]
#[error("the request body arrived slower than {0} bytes per second; send it faster or in several requests")]
pub struct TooSlow(u64);

impl http_body::Body for MinRateBody {
    type Data = bytes::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, axum::BoxError>>> {
        use std::task::Poll;
        let this = &mut *self;
        match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                    let due = this.due();
                    this.deadline.as_mut().reset(due);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => Poll::Ready(other.map(|r| r.map_err(Into::into))),
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(TooSlow(this.min_rate))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
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
