//! Starting and stopping a server: the data folder, the Wasm runtime, jobs resumed, the API on its address.

use crate::api::serve::{TenantSlots, serve};
use crate::api::{AppState, router};
use crate::cluster::Node;
use crate::config::ServerConfig;
use crate::jobs::Jobs;
use crate::modules::Modules;
use crate::quotas::Quotas;
use crate::store::Store;
use anyhow::Context;
use eddy_wasm_host::{CompileWorker, WasmRuntime};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch};

/// A server that is running.
pub struct RunningServer {
    /// The address it listens on (useful when the config asked for port 0).
    pub addr: SocketAddr,
    jobs: Jobs,
    node: Arc<Node>,
    lease: Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// The base URL of the API.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting requests, stops running jobs (they start again on the next start) and waits.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.node.drain();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let jobs = self.jobs.clone();
        tokio::task::spawn_blocking(move || jobs.shutdown()).await?;
        // Leaves the cluster once its jobs stopped, so no other node takes one over while it still runs.
        if let Some((stop, keeping)) = self.lease.take() {
            let _ = stop.send(true);
            let _ = keeping.await;
        }
        self.task.await??;
        Ok(())
    }
}

/// Opens the data folder, resumes jobs and starts serving.
pub async fn start(config: ServerConfig) -> anyhow::Result<RunningServer> {
    let config = Arc::new(config);
    let node_id = crate::cluster::node_id(&config)
        .with_context(|| format!("cannot use data folder {}", config.data_dir.display()))?;
    let checkpoints = config.checkpoint_store().map_err(anyhow::Error::msg)?;
    let shared_blobs = config.cluster.database.is_some().then(|| Arc::clone(&checkpoints));
    let store = Store::open_with(&config.data_dir, config.cluster.database.as_deref(), shared_blobs)
        .with_context(|| format!("cannot open the control plane (data folder {})", config.data_dir.display()))?;
    let runtime =
        WasmRuntime::new(Some(store.cache_dir()), config.instance_limits(None)).map_err(anyhow::Error::msg)?;
    if let Some(program) = &config.compile_worker {
        runtime.compile_in_workers(CompileWorker {
            program: program.clone(),
            args: vec!["compile-worker".into()],
            timeout: config.compile_timeout,
            memory_bytes: config.compile_memory_mb << 20,
        });
    }
    let quotas = Arc::new(Quotas::open(Arc::clone(&config), store.clone()));
    let modules = Arc::new(Modules::open(store.clone(), runtime, Arc::clone(&config), Arc::clone(&quotas)));
    let (jobs_store, jobs_modules, jobs_config) = (store.clone(), Arc::clone(&modules), Arc::clone(&config));
    let cluster_node = config.cluster.database.is_some().then(|| node_id.clone());
    let jobs = tokio::task::spawn_blocking(move || {
        Jobs::open(jobs_store, jobs_modules, jobs_config, checkpoints, cluster_node)
    })
    .await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let node = Arc::new(Node::new(Arc::clone(&config), store.clone(), jobs.clone(), quotas, node_id, addr));
    let registering = Arc::clone(&node);
    tokio::task::spawn_blocking(move || registering.renew()).await?.context("cannot join the cluster")?;
    let (stop_lease, lease_stopped) = watch::channel(false);
    let lease = Some((stop_lease, Arc::clone(&node).keep_lease(lease_stopped)));
    let uploads = Arc::new(crate::api::UploadPermits::new(config.max_concurrent_uploads));
    let tenant_slots = Arc::new(TenantSlots::new(config.http.tenant_concurrency, Duration::from_secs(10)));
    let app = router(AppState {
        config: Arc::clone(&config),
        modules,
        jobs: jobs.clone(),
        uploads,
        tenant_slots,
        node: Arc::clone(&node),
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let stopped = async move {
        let _ = stopped.await;
    };
    let task = tokio::spawn(serve(listener, app, config.http, stopped, Duration::from_secs(10)));
    tracing::info!("Eddy node {} listening on http://{addr} (data in {})", node.id(), config.data_dir.display());
    Ok(RunningServer { addr, jobs, node, lease, stop: Some(stop), task })
}
