//! `eddy bench recover`: what checkpoints of a job with state for `--keys` keys cost, and how long the job takes
//! to run again from one. The job counts events per key in a window that never fires, so its state only grows; a
//! second branch passes events straight to a sink, whose first record after the restore marks the job as running.
//! A first checkpoint holds everything; a second follows after a tenth as many events again, which RocksDB's
//! incremental checkpoints write only the changed files of. Then a savepoint: how long it takes, its size, and the
//! most memory the process held while it was written (its peak resident set, reset just before).

use super::native::NativeFunctions;
use anyhow::{Context, bail};
use eddy_engine::checkpoint::{CheckpointStats, CheckpointStore, Checkpointing, LocalStore, Restore};
use eddy_engine::graph::{JobGraph, ModuleCatalog};
use eddy_engine::io::DiscardSink;
use eddy_engine::operator::Operator;
use eddy_engine::runtime::{DeployEnv, OverrideContext, RunningJob, deploy};
use eddy_engine::spec::{JobSpec, ModuleRef};
use eddy_engine::{Batch, TaskError};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A catalog for a job without modules.
struct NoModules;

impl ModuleCatalog for NoModules {
    fn resolve(&self, module: &ModuleRef, _: eddy_engine::function::UdfKind) -> Result<String, String> {
        Err(format!("the recovery benchmark uses no module, not `{module}`"))
    }
}

fn spec(keys: u64) -> String {
    format!(
        "name: recover
checkpoints: {{ interval: 1d }}
operators:
  - {{ uid: src, source: {{ generator: {{ keys: {keys}, encoding: binary }} }}, batch_size: 1024 }}
  - {{ uid: counts, input: src, key_by: record, window: {{ global: {{}}, trigger: {{ count: 1000000000 }} }}, aggregate: {{ builtin: count }} }}
  - {{ uid: out, sink: discard, input: counts }}
  - {{ uid: first, sink: discard, input: src }}
"
    )
}

/// Runs the benchmark for state over `keys` keys on `backend` (memory or rocksdb) and returns its line.
pub fn run(keys: u64, backend: &str) -> anyhow::Result<String> {
    if keys == 0 {
        bail!("--keys must be at least 1");
    }
    if backend != "memory" && backend != "rocksdb" {
        bail!("unknown --backend `{backend}`: use memory or rocksdb");
    }
    let spec = JobSpec::parse(&spec(keys)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let graph = JobGraph::build(&spec, &NoModules).map_err(|e| anyhow::anyhow!("{e}"))?;
    let folder = tempfile::tempdir()?;
    let store: Arc<dyn CheckpointStore> = Arc::new(LocalStore::new(folder.path().join("checkpoints")));
    let state_folder = folder.path().join("state");
    let first_output: Arc<Mutex<Option<Instant>>> = Arc::default();
    let start = |restore: Option<Restore>| -> anyhow::Result<RunningJob> {
        let mut env = DeployEnv::new("recover", "bench", Arc::new(NativeFunctions));
        if backend == "rocksdb" {
            env.state = super::rocksdb_backend(&state_folder)?;
        }
        env.checkpointing = Some(
            Checkpointing::new(
                graph.checkpoints.clone().context("the spec has checkpoints")?,
                Arc::clone(&store),
                "recover/",
                graph.max_parallelism,
            )
            .after(restore.as_ref().map_or(0, |r| r.checkpoint)),
        );
        env.restore = restore;
        let seen = Arc::clone(&first_output);
        env.overrides.insert(
            "first".into(),
            Arc::new(move |_: &OverrideContext<'_>| -> Result<Box<dyn Operator>, TaskError> {
                let seen = Arc::clone(&seen);
                let inspect = move |_: &Batch| {
                    seen.lock().get_or_insert_with(Instant::now);
                };
                Ok(Box::new(DiscardSink::inspecting(Box::new(inspect))))
            }),
        );
        deploy(&graph, env).map_err(|e| anyhow::anyhow!("the benchmark job cannot start: {e}"))
    };
    let events = |job: &RunningJob| job.handle.operators()[0].1.records_out;
    let checkpoint = |job: &RunningJob| -> anyhow::Result<(u64, CheckpointStats)> {
        let id = job.handle.checkpoint_now(Duration::from_secs(3600)).map_err(anyhow::Error::msg)?;
        Ok((id, job.handle.checkpoints()))
    };

    // Enough events that nearly every key has state (2 per key on average: 86 % of the keys).
    let job = start(None)?;
    while events(&job) < 2 * keys {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (_, first) = checkpoint(&job)?;
    // A tenth as many events again: the state changes a little, and a second checkpoint follows.
    let target = events(&job) + keys / 10;
    while events(&job) < target {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (id, second) = checkpoint(&job)?;
    let resident_before = super::status_mb("VmRSS");
    super::reset_peak_rss("self");
    let saving = Instant::now();
    job.handle.savepoint(SAVEPOINT, Duration::from_secs(3600)).map_err(anyhow::Error::msg)?;
    let savepoint_ms = saving.elapsed().as_millis();
    let savepoint_peak = super::status_mb("VmHWM");
    let savepoint_bytes = bytes_under(&folder.path().join("checkpoints").join(SAVEPOINT));
    job.handle.cancel();
    job.handle.wait(Duration::from_secs(60));

    // Started again from the second checkpoint: on the same machine (RocksDB finds its local copy), then with
    // the local state folder wiped (everything comes from checkpoint storage).
    let mut restarts = Vec::new();
    for wipe in [false, true] {
        if wipe {
            match std::fs::remove_dir_all(&state_folder) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).context("cannot wipe the state folder"),
            }
        }
        *first_output.lock() = None;
        let restarting = Instant::now();
        let restore = Restore::load(&store, "recover/", id).map_err(|e| anyhow::anyhow!("{e}"))?;
        let job = start(Some(restore))?;
        let running = loop {
            if let Some(at) = *first_output.lock() {
                break at.duration_since(restarting);
            }
            if restarting.elapsed() > Duration::from_secs(3600) {
                bail!("the restored job produced nothing within an hour");
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        job.handle.cancel();
        job.handle.wait(Duration::from_secs(60));
        restarts.push(running.as_millis());
    }
    Ok(format!(
        "eddy recover keys={keys} backend={backend} first_checkpoint_ms={} first_checkpoint_bytes={} \
         second_checkpoint_ms={} second_checkpoint_bytes={} restore_bytes={} restart_local_ms={} \
         restart_from_storage_ms={} savepoint_ms={savepoint_ms} savepoint_bytes={savepoint_bytes} \
         rss_before_savepoint_mib={resident_before} savepoint_peak_rss_mib={savepoint_peak}",
        first.latest_duration_ms.unwrap_or(0),
        first.latest_bytes.unwrap_or(0),
        second.latest_duration_ms.unwrap_or(0),
        second.latest_bytes.unwrap_or(0),
        second.latest_full_bytes.unwrap_or(0),
        restarts[0],
        restarts[1],
    ))
}

/// Where the benchmark's savepoint goes in its checkpoint store.
const SAVEPOINT: &str = "savepoints/bench/";

/// Bytes of the files under `dir`.
fn bytes_under(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => bytes_under(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}
