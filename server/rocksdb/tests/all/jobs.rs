//! Whole jobs on the RocksDB backend with incremental checkpoints: what storage holds, and restores from the
//! task's local copy or from storage alone.

use eddy_engine::checkpoint::{CheckpointStore, Checkpointing, LocalStore, Restore};
use eddy_engine::graph::JobGraph;
use eddy_engine::io::FileRoots;
use eddy_engine::runtime::{DeployEnv, JobState, RunningJob, deploy};
use eddy_engine::spec::JobSpec;
use eddy_engine::testing::TestFunctions;
use eddy_rocksdb::RocksDbBackend;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A paced keyed window job with exactly-once checkpoints every 50 ms (three retained), writing into
/// `out/<folder>`.
fn graph(folder: &str) -> JobGraph {
    let spec = graph_spec(folder).replace(", parallelism: 1 }", " }").replace("window_parallelism", "2");
    let spec = JobSpec::parse(&spec).unwrap_or_else(|e| panic!("{e}"));
    JobGraph::build(&spec, &TestFunctions).unwrap_or_else(|e| panic!("{e}"))
}

/// The same job with its window operator at `parallelism` subtasks (the source at two, the sink at one).
fn graph_at(folder: &str, parallelism: u32) -> JobGraph {
    let spec = graph_spec(folder).replace("window_parallelism", &parallelism.to_string());
    let spec = JobSpec::parse(&spec).unwrap_or_else(|e| panic!("{e}"));
    JobGraph::build(&spec, &TestFunctions).unwrap_or_else(|e| panic!("{e}"))
}

fn graph_spec(folder: &str) -> String {
    format!(
        r#"
name: incremental
parallelism: 2
checkpoints: {{ interval: 50ms, retained: 3 }}
operators:
  - {{ uid: src, source: {{ generator: {{ events: 12000, keys: 500, encoding: json, rate: 4000 }} }}, watermark: {{ out_of_orderness: 100ms }}, batch_size: 50 }}
  - {{ uid: w, input: src, key_by: {{ json: "$.key" }}, window: {{ tumbling: 50ms }}, aggregate: {{ builtin: sum, field: "$.amount" }}, parallelism: window_parallelism }}
  - {{ uid: out, sink: {{ file: {{ path: out/{folder} }} }}, input: w, parallelism: 1 }}
"#
    )
}

/// The lines of the visible part files in a file sink's folder, sorted.
fn committed_lines(folder: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(folder).expect("output folder") {
        let path = entry.expect("entry").path();
        if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("part-")) {
            lines.extend(std::fs::read_to_string(&path).expect("part").lines().map(str::to_string));
        }
    }
    lines.sort();
    lines
}

struct Setup {
    dir: tempfile::TempDir,
    store: Arc<dyn CheckpointStore>,
}

impl Setup {
    fn run(&self, graph: &JobGraph, state: &Path, restore: Option<Restore>) -> RunningJob {
        let mut env = DeployEnv::new("incremental", "test", Arc::new(TestFunctions));
        env.files = FileRoots::new(self.dir.path());
        env.state = Arc::new(RocksDbBackend::new(state, Default::default()));
        env.checkpointing = Some(
            Checkpointing::new(
                graph.checkpoints.clone().expect("checkpoints"),
                Arc::clone(&self.store),
                "job/",
                graph.max_parallelism,
            )
            .after(restore.as_ref().map_or(0, |r| r.checkpoint)),
        );
        env.restore = restore;
        deploy(graph, env).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The state files each completed checkpoint's metadata refers to.
    fn referenced(&self) -> BTreeSet<String> {
        let mut referenced = BTreeSet::new();
        for path in self.store.list("job/").expect("list").iter().filter(|p| p.ends_with("/_metadata")) {
            let bytes = self.store.get(path).expect("read").expect("metadata");
            let metadata: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
            let shared = metadata["shared"].as_array().expect("a list of shared files");
            referenced.extend(shared.iter().map(|s| format!("job/{}", s.as_str().expect("a path"))));
        }
        referenced
    }
}

fn finish(job: &RunningJob) -> JobState {
    let state = job.handle.wait(Duration::from_secs(120));
    assert_ne!(state, JobState::Running, "the job ends");
    state
}

/// Runs until at least `checkpoints` completed, then stops without warning.
fn crash_after(job: &RunningJob, checkpoints: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while job.handle.checkpoints().completed < checkpoints && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    job.handle.cancel();
    job.handle.wait(Duration::from_secs(10));
}

#[test]
fn jobs_restore_from_incremental_checkpoints_locally_or_from_storage_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn CheckpointStore> = Arc::new(LocalStore::new(dir.path().join("cp")));
    let setup = Setup { dir, store };
    let root = setup.dir.path().to_path_buf();

    let whole = setup.run(&graph("whole"), &root.join("state-whole"), None);
    assert_eq!(finish(&whole), JobState::Finished, "{:?}", whole.handle.error());
    let expected = committed_lines(&root.join("out/whole"));
    assert!(expected.len() > 500, "{} results", expected.len());
    setup.store.delete_prefix("job/").expect("clean");

    for wipe in [false, true] {
        let folder = if wipe { "from-storage" } else { "from-local-copy" };
        let graph = graph(folder);
        let state = root.join(format!("state-{folder}"));
        let first = setup.run(&graph, &state, None);
        crash_after(&first, 6);
        let stats = first.handle.checkpoints();
        let written = stats.latest_bytes.expect("bytes written");
        let full = stats.latest_full_bytes.expect("bytes referred to");
        assert!(written <= full, "{stats:?}");

        // Storage holds exactly the state files the retained checkpoints refer to: those of older checkpoints
        // and of checkpoints given up when the job stopped are gone.
        let referenced = setup.referenced();
        assert!(!referenced.is_empty(), "RocksDB checkpoints refer to state files");
        let held: BTreeSet<String> = setup.store.list("job/shared/").expect("list").into_iter().collect();
        let completed = setup.store.list("job/").expect("list").iter().filter(|p| p.ends_with("_metadata")).count();
        assert!(completed <= 3, "three checkpoints are retained, not {completed}");
        assert_eq!(held, referenced, "shared state files");
        let restore = Restore::latest(&setup.store, "job/").expect("read").expect("a completed checkpoint");
        if wipe {
            std::fs::remove_dir_all(&state).expect("wipe the local disk");
        } else {
            let copies = std::fs::read_dir(&state)
                .expect("the state folder outlives the job")
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.ends_with(".checkpoints"))
                .count();
            assert!(copies > 0, "local copies of the newest checkpoint are kept for a restart here");
        }
        let second = setup.run(&graph, &state, Some(restore));
        assert_eq!(finish(&second), JobState::Finished, "{:?}", second.handle.error());
        assert_eq!(committed_lines(&root.join("out").join(folder)), expected, "restored from {folder}");
        let held: BTreeSet<String> = setup.store.list("job/shared/").expect("list").into_iter().collect();
        assert_eq!(held, setup.referenced(), "shared state files after the restored run");
        setup.store.delete_prefix("job/").expect("clean");
    }
}

/// The window operator goes from 4 to 5 subtasks, restored from storage alone: each new subtask downloads only the
/// stores that held key groups it now owns (at most two here), not every old subtask's; the results are the same.
#[test]
fn a_rescale_downloads_only_the_stores_that_held_its_key_groups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn CheckpointStore> = Arc::new(LocalStore::new(dir.path().join("cp")));
    let setup = Setup { dir, store };
    let root = setup.dir.path().to_path_buf();
    let whole = setup.run(&graph_at("whole", 4), &root.join("state-whole"), None);
    assert_eq!(finish(&whole), JobState::Finished, "{:?}", whole.handle.error());
    let expected = committed_lines(&root.join("out/whole"));
    setup.store.delete_prefix("job/").expect("clean");

    let state = root.join("state-rescaled");
    let first = setup.run(&graph_at("rescaled", 4), &state, None);
    crash_after(&first, 4);
    let restore = Restore::latest(&setup.store, "job/").expect("read").expect("a completed checkpoint");
    // What the checkpoint refers to: each old store's files (and the tasks' snapshots).
    let full = first.handle.checkpoints().latest_full_bytes.expect("the checkpoint's size");
    std::fs::remove_dir_all(&state).expect("wipe the local disk");
    let second = setup.run(&graph_at("rescaled", 5), &state, Some(restore));
    let downloaded = second.handle.checkpoints().restored_bytes;
    assert_eq!(finish(&second), JobState::Finished, "{:?}", second.handle.error());
    assert_eq!(committed_lines(&root.join("out/rescaled")), expected, "the same results at the new parallelism");
    assert!(downloaded > 0, "the state came from storage");
    // Every old store is read by the new subtasks whose key groups it held: at most twice over in all (4 -> 5),
    // where reading every store into every new subtask would be five times over.
    assert!(downloaded <= 2 * full, "downloaded {downloaded} bytes of {full} stored");
}
