//! This server as a node of a cluster: its id, its lease in the control plane, and the cluster as every node sees
//! it. A single server is a cluster of one node, kept in its SQLite database; servers sharing a PostgreSQL
//! database see each other.
//!
//! A node renews its lease every third of the lease's length, describing itself (URL, version, what it runs and
//! its capacity) each time; a node whose lease lapsed is dead to the others. Leases are measured by the database's
//! clock, so the servers' clocks need not agree.

use crate::config::ServerConfig;
use crate::jobs::Jobs;
use crate::store::{NodeRecord, Store};
use axum::response::IntoResponse;
use serde::Serialize;
use std::collections::HashSet;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::watch;

/// A node as `GET /v1/cluster` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NodeView {
    /// What it said of itself when it last renewed its lease.
    #[serde(flatten)]
    pub node: NodeRecord,
    /// Milliseconds since it last renewed its lease.
    pub lease_age_ms: i64,
    /// Whether its lease holds: a node whose lease lapsed is taken for dead.
    pub alive: bool,
}

/// The cluster.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ClusterView {
    /// The node that answered.
    pub this_node: String,
    /// Where the control plane lives: `sqlite` (a single server) or `postgres`.
    pub database: String,
    /// Every node, by id.
    pub nodes: Vec<NodeView>,
}

/// This server's id: the configured one, or the one it chose at its first start, kept in the data folder so a
/// restarted server is the same node.
pub fn node_id(config: &ServerConfig) -> io::Result<String> {
    if let Some(id) = &config.cluster.node_id {
        return Ok(id.clone());
    }
    let path = config.data_dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if crate::config::eddy_name_ok(id.trim()) => return Ok(id.trim().to_string()),
        Ok(_) => return Err(io::Error::other(format!("{} does not hold a node id", path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let id = format!("node-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    write_new(&path, &id)?;
    Ok(id)
}

fn write_new(path: &Path, id: &str) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    io::Write::write_all(&mut tmp, id.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// This node: what it renews its lease with.
pub struct Node {
    /// Set once a shutdown began: the node takes no new work (`/ready` answers 503).
    draining: AtomicBool,
    /// Forwards requests to other nodes.
    http: reqwest::Client,
    /// After the control plane was out of reach, when this node may claim orphans again.
    no_claims_before: parking_lot::Mutex<std::time::Instant>,
    id: String,
    url: String,
    started_at: i64,
    config: Arc<ServerConfig>,
    store: Store,
    jobs: Jobs,
    quotas: Arc<crate::quotas::Quotas>,
}

impl Node {
    /// This server as a node, reachable at `url` unless the config advertises another.
    pub fn new(
        config: Arc<ServerConfig>,
        store: Store,
        jobs: Jobs,
        quotas: Arc<crate::quotas::Quotas>,
        id: String,
        listening: std::net::SocketAddr,
    ) -> Node {
        let url = config.cluster.advertise_url.clone().unwrap_or_else(|| format!("http://{listening}"));
        let started_at =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let http =
            reqwest::Client::builder().connect_timeout(std::time::Duration::from_secs(5)).build().unwrap_or_default();
        let no_claims_before = parking_lot::Mutex::new(std::time::Instant::now());
        Node {
            draining: AtomicBool::new(false),
            http,
            no_claims_before,
            id,
            url,
            started_at,
            config,
            store,
            jobs,
            quotas,
        }
    }

    /// Its id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether it takes new work: not once it began to shut down.
    pub fn ready(&self) -> bool {
        !self.draining.load(Ordering::SeqCst)
    }

    /// It began to shut down.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    fn record(&self) -> NodeRecord {
        let (jobs, subtasks, memory) = self.jobs.node_load();
        NodeRecord {
            node_id: self.id.clone(),
            url: self.url.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: self.started_at,
            jobs,
            subtasks,
            memory_used_mb: memory >> 20,
            memory_mb: self.config.guest_memory_mb as u64,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            lease_ms: self.config.cluster.lease().as_millis() as u64,
            draining: !self.ready(),
        }
    }

    /// Renews the lease now: the first renewal also registers the node.
    pub fn renew(&self) -> io::Result<()> {
        self.store.renew_node(&self.record(), self.config.cluster.lease())
    }

    /// Renews the lease every third of its length until `stop` changes, then leaves the cluster. Runs on a blocking
    /// thread: the store's calls block.
    pub fn keep_lease(self: Arc<Self>, mut stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        let every = self.config.cluster.lease() / 3;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    () = tokio::time::sleep(every) => {}
                }
                let node = Arc::clone(&self);
                let renewed = tokio::task::spawn_blocking(move || {
                    if let Err(e) = node.renew() {
                        // The database was out of reach, so every node's lease may have lapsed meanwhile: claim
                        // nothing until the others had a full lease to renew theirs.
                        *node.no_claims_before.lock() = std::time::Instant::now() + node.config.cluster.lease();
                        return Err(e);
                    }
                    if node.clustered() {
                        // An admin may have set a tenant's quotas through another server.
                        node.quotas.refresh();
                    }
                    node.take_over_orphans()
                });
                match renewed.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(node = self.id, "cannot renew this node's lease: {e}"),
                    Err(e) => tracing::error!(node = self.id, "renewing the lease panicked: {e}"),
                }
            }
            let node = Arc::clone(&self);
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || node.store.remove_node(&node.id)).await {
                tracing::warn!(node = self.id, "cannot leave the cluster cleanly (its lease will lapse): {e}");
            }
        })
    }

    /// Claims jobs whose owner is gone (its lease lapsed, or it left) and runs them from their newest checkpoint.
    /// Placement: a node claims while it runs no more jobs than the least loaded other live node, so orphans
    /// spread over the survivors; of nodes claiming one job at once, the epoch's compare-and-set picks one.
    fn take_over_orphans(&self) -> io::Result<()> {
        let blind = std::time::Instant::now() < *self.no_claims_before.lock();
        if self.config.cluster.database.is_none() || !self.ready() || blind {
            return Ok(());
        }
        let nodes = self.store.nodes()?;
        let alive: HashSet<&str> =
            nodes.iter().filter(|(_, expires_in)| *expires_in > 0).map(|(n, _)| n.node_id.as_str()).collect();
        let least_elsewhere = nodes
            .iter()
            .filter(|(n, expires_in)| *expires_in > 0 && n.node_id != self.id && !n.draining)
            .map(|(n, _)| n.jobs.len())
            .min()
            .unwrap_or(usize::MAX);
        let mut mine = self.jobs.node_load().0.len();
        for tenant in self.store.tenants() {
            for job in self.store.owned_jobs(&tenant)? {
                if mine > least_elsewhere {
                    return Ok(());
                }
                let orphan = match job.owner.as_deref() {
                    None => true,
                    Some(owner) if owner == self.id => !self.jobs.runs(&tenant, &job.record.id),
                    Some(owner) => !alive.contains(owner),
                };
                if !orphan {
                    continue;
                }
                let Some(fence) = self.store.claim_job(&tenant, &job.record.id, &self.id, job.epoch)? else {
                    continue;
                };
                if self.jobs.adopt(&tenant, job.record, &fence) {
                    mine += 1;
                }
            }
        }
        Ok(())
    }

    /// The cluster as the control plane knows it.
    pub fn view(&self) -> io::Result<ClusterView> {
        let nodes = self
            .store
            .nodes()?
            .into_iter()
            .map(|(node, expires_in_ms)| NodeView {
                lease_age_ms: (node.lease_ms as i64 - expires_in_ms).max(0),
                alive: expires_in_ms > 0,
                node,
            })
            .collect();
        let database = if self.config.cluster.database.is_some() { "postgres" } else { "sqlite" };
        Ok(ClusterView { this_node: self.id.clone(), database: database.to_string(), nodes })
    }
}

/// Header naming the node that forwarded a request: a forwarded request is answered where it lands, never
/// forwarded again.
pub const FORWARDED_BY: &str = "x-eddy-forwarded-by";

/// What a request's path is about, for forwarding.
#[derive(Debug, PartialEq, Eq)]
enum Target<'a> {
    /// `/v1[/tenants/{t}]/jobs/{id}[/...]`: a job, answered by the node that runs it.
    Job(&'a str),
    /// `POST /v1[/tenants/{t}]/jobs`: a new job, run by the node placement picks.
    Submit,
}

fn target<'a>(method: &axum::http::Method, path: &'a str) -> Option<Target<'a>> {
    let mut parts = path.trim_start_matches('/').split('/');
    if parts.next()? != "v1" {
        return None;
    }
    let mut next = parts.next()?;
    if next == "tenants" {
        parts.next()?;
        next = parts.next()?;
    }
    if next != "jobs" {
        return None;
    }
    match parts.next() {
        None | Some("") if method == axum::http::Method::POST => Some(Target::Submit),
        Some(id) if !id.is_empty() => Some(Target::Job(id)),
        _ => None,
    }
}

impl Node {
    /// Whether this node shares its control plane with others.
    pub fn clustered(&self) -> bool {
        self.config.cluster.database.is_some()
    }

    /// The URL of the live node other than this one that owns job `id`, if there is one.
    fn owner_url(&self, id: &str) -> io::Result<Option<String>> {
        let Some(owner) = self.store.job_owner(id)? else { return Ok(None) };
        if owner == self.id {
            return Ok(None);
        }
        let nodes = self.store.nodes()?;
        Ok(nodes.into_iter().find(|(n, expires_in)| n.node_id == owner && *expires_in > 0).map(|(n, _)| n.url))
    }

    /// Where a new job goes: the live node with the most free capacity (the lowest of its CPU and memory use,
    /// then the fewest jobs); none when that is this node.
    fn placement_url(&self) -> io::Result<Option<String>> {
        let load = |n: &NodeRecord| {
            let cpu = n.subtasks as f64 / f64::from(n.cores.max(1));
            let memory = n.memory_used_mb as f64 / n.memory_mb.max(1) as f64;
            (cpu.max(memory), n.jobs.len())
        };
        let mut nodes: Vec<NodeRecord> =
            self.store.nodes()?.into_iter().filter(|(_, expires_in)| *expires_in > 0).map(|(n, _)| n).collect();
        // This node's own load as it is now, not as it last renewed.
        if let Some(me) = nodes.iter_mut().find(|n| n.node_id == self.id) {
            *me = self.record();
        }
        nodes.retain(|n| !n.draining);
        let best = nodes.into_iter().min_by(|a, b| load(a).partial_cmp(&load(b)).unwrap_or(std::cmp::Ordering::Equal));
        Ok(best.filter(|n| n.node_id != self.id).map(|n| n.url))
    }
}

/// Sends a request about a job another node runs (or a new job placement puts elsewhere) to that node, and its
/// answer back, streamed both ways (an output stream or an ingest body passes through as it comes).
pub async fn forward(
    axum::extract::State(state): axum::extract::State<crate::api::AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let node = Arc::clone(&state.node);
    if !node.clustered() || request.headers().contains_key(FORWARDED_BY) {
        return next.run(request).await;
    }
    let to = match target(request.method(), request.uri().path()) {
        Some(Target::Job(id)) if !state.jobs.supervises(id) => {
            let (node, id) = (Arc::clone(&node), id.to_string());
            tokio::task::spawn_blocking(move || node.owner_url(&id)).await
        }
        Some(Target::Submit) => {
            let node = Arc::clone(&node);
            tokio::task::spawn_blocking(move || node.placement_url()).await
        }
        _ => return next.run(request).await,
    };
    match to {
        Ok(Ok(Some(url))) => proxy(&node, &url, request).await,
        Ok(Ok(None)) => next.run(request).await,
        Ok(Err(e)) => {
            tracing::warn!("cannot tell which node should answer {}: {e}", request.uri().path());
            next.run(request).await
        }
        Err(e) => crate::api::error::ApiError::internal(e.to_string()).into_response(),
    }
}

async fn proxy(node: &Node, base: &str, request: axum::extract::Request) -> axum::response::Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let mut headers = parts.headers.clone();
    for hop in [axum::http::header::HOST, axum::http::header::CONNECTION, axum::http::header::TRANSFER_ENCODING] {
        headers.remove(hop);
    }
    if let Ok(me) = axum::http::HeaderValue::from_str(&node.id) {
        headers.insert(FORWARDED_BY, me);
    }
    let sent = node
        .http
        .request(parts.method, &url)
        .headers(headers)
        .body(reqwest::Body::wrap_stream(body.into_data_stream()))
        .send()
        .await;
    let answer = match sent {
        Ok(answer) => answer,
        Err(e) => {
            return crate::api::error::ApiError::new(
                axum::http::StatusCode::BAD_GATEWAY,
                "owner_unreachable",
                format!("the node that runs this job does not answer ({base}): {e}; try again once it is taken over"),
            )
            .into_response();
        }
    };
    let mut response = axum::response::Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if name != axum::http::header::TRANSFER_ENCODING && name != axum::http::header::CONNECTION {
            response = response.header(name, value);
        }
    }
    response
        .body(axum::body::Body::from_stream(answer.bytes_stream()))
        .unwrap_or_else(|e| crate::api::error::ApiError::internal(e.to_string()).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    #[test]
    fn finds_the_job_a_path_is_about() {
        assert_eq!(target(&Method::GET, "/v1/jobs/j1"), Some(Target::Job("j1")));
        assert_eq!(target(&Method::POST, "/v1/jobs/j1/inputs/src"), Some(Target::Job("j1")));
        assert_eq!(target(&Method::GET, "/v1/tenants/acme/jobs/j1/outputs/out"), Some(Target::Job("j1")));
        assert_eq!(target(&Method::POST, "/v1/jobs"), Some(Target::Submit));
        assert_eq!(target(&Method::POST, "/v1/tenants/acme/jobs"), Some(Target::Submit));
        assert_eq!(target(&Method::GET, "/v1/jobs"), None, "the list is answered by any node");
        assert_eq!(target(&Method::GET, "/v1/modules"), None);
        assert_eq!(target(&Method::GET, "/v1/tenants/acme"), None);
        assert_eq!(target(&Method::GET, "/health"), None);
    }
}

/// What `eddy node drain` did with one job.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HandedOver {
    /// The job's tenant.
    pub tenant: String,
    /// The job.
    pub job: String,
    /// The savepoint it goes on from elsewhere, when it was running with checkpoints.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub savepoint: Option<String>,
    /// Why it moved without a savepoint (or did not move).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Hands a node's jobs to the other nodes (admin token only): each running job stops with a savepoint, having read
/// every record its HTTP inputs acknowledged, and goes on from it on the node that claims it. The node then takes
/// no new work (`/ready` answers 503) until it is restarted.
#[utoipa::path(
    post,
    path = "/v1/cluster/nodes/{node}/drain",
    params(("node" = String, Path, description = "The node's id")),
    responses(
        (status = 200, body = Vec<HandedOver>),
        (status = 403, description = "Not the admin token", body = crate::api::error::ErrorBody),
        (status = 404, description = "No live node has this id", body = crate::api::error::ErrorBody),
    )
)]
pub async fn drain(
    axum::extract::State(state): axum::extract::State<crate::api::AppState>,
    axum::extract::Path(node_id): axum::extract::Path<String>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use crate::api::error::ApiError;
    let token = crate::api::bearer(request.headers());
    if !state.config.open_mode() && !crate::api::is_admin(&state.config, token) {
        return ApiError::new(axum::http::StatusCode::FORBIDDEN, "forbidden", "only the admin token drains nodes")
            .into_response();
    }
    let node = Arc::clone(&state.node);
    if node_id != node.id {
        let lookup = Arc::clone(&node);
        let url = tokio::task::spawn_blocking(move || {
            let nodes = lookup.store.nodes().ok()?;
            nodes.into_iter().find(|(n, expires_in)| n.node_id == node_id && *expires_in > 0).map(|(n, _)| n.url)
        })
        .await
        .ok()
        .flatten();
        return match url {
            Some(url) if !request.headers().contains_key(FORWARDED_BY) => proxy(&node, &url, request).await,
            _ => ApiError::not_found("no live node has this id (see eddy cluster status)").into_response(),
        };
    }
    node.drain();
    let jobs = state.jobs.clone();
    let moved = match tokio::task::spawn_blocking(move || jobs.hand_over_all()).await {
        Ok(moved) => moved,
        Err(e) => return ApiError::internal(e.to_string()).into_response(),
    };
    let view: Vec<HandedOver> = moved
        .into_iter()
        .map(|(tenant, job, result)| {
            let (savepoint, note) = match result {
                Ok(savepoint) => (Some(savepoint), None),
                Err(note) => (None, Some(note)),
            };
            HandedOver { tenant, job, savepoint, note }
        })
        .collect();
    axum::Json(view).into_response()
}
