//! Starting and stopping a server: the data folder, the Wasm runtime, jobs resumed, the API on its address.

use crate::api::serve::{TenantSlots, serve};
use crate::api::{AppState, router};
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
    let modules = Arc::new(Modules::open(store.clone(), runtime, Arc::clone(&config), quotas));
    let checkpoints = config.checkpoint_store().map_err(anyhow::Error::msg)?;
    let (jobs_store, jobs_modules, jobs_config) = (store.clone(), Arc::clone(&modules), Arc::clone(&config));
    let jobs =
        tokio::task::spawn_blocking(move || Jobs::open(jobs_store, jobs_modules, jobs_config, checkpoints)).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let uploads = Arc::new(crate::api::UploadPermits::new(config.max_concurrent_uploads));
    let tenant_slots = Arc::new(TenantSlots::new(config.http.tenant_concurrency, Duration::from_secs(10)));
    let app = router(AppState { config: Arc::clone(&config), modules, jobs: jobs.clone(), uploads, tenant_slots });
    let (stop, stopped) = oneshot::channel::<()>();
    let stopped = async move {
        let _ = stopped.await;
    };
    let task = tokio::spawn(serve(listener, app, config.http, stopped, Duration::from_secs(10)));
    tracing::info!("Eddy listening on http://{addr} (data in {})", config.data_dir.display());
    Ok(RunningServer { addr, jobs, stop: Some(stop), task })
}
