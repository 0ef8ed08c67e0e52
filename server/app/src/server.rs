//! Starting and stopping a server: the data folder, the Wasm runtime, jobs resumed, the API on its address.

use crate::api::{AppState, router};
use crate::config::ServerConfig;
use crate::jobs::Jobs;
use crate::modules::Modules;
use crate::store::Store;
use anyhow::Context;
use eddy_wasm_host::{Limits, WasmRuntime};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::oneshot;

/// A server that is running.
pub struct RunningServer {
    /// The address it listens on (useful when the config asked for port 0).
    pub addr: SocketAddr,
    jobs: Jobs,
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
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let jobs = self.jobs.clone();
        tokio::task::spawn_blocking(move || jobs.shutdown()).await?;
        self.task.await??;
        Ok(())
    }
}

/// Opens the data folder, resumes jobs and starts serving.
pub async fn start(config: ServerConfig) -> anyhow::Result<RunningServer> {
    let config = Arc::new(config);
    let store = Store::open(&config.data_dir)
        .with_context(|| format!("cannot use data folder {}", config.data_dir.display()))?;
    let runtime = WasmRuntime::new(Some(store.cache_dir())).map_err(anyhow::Error::msg)?;
    let modules = Arc::new(Modules::open(store.clone(), runtime, config.max_module_bytes));
    let limits = Limits { memory_bytes: config.instance_memory_mb << 20, call_timeout: config.call_timeout };
    let (jobs_store, jobs_modules) = (store.clone(), Arc::clone(&modules));
    let jobs = tokio::task::spawn_blocking(move || Jobs::open(jobs_store, jobs_modules, limits)).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let app = router(AppState { config: Arc::clone(&config), modules, jobs: jobs.clone() });
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
    });
    tracing::info!("Eddy listening on http://{addr} (data in {})", config.data_dir.display());
    Ok(RunningServer { addr, jobs, stop: Some(stop), task })
}
