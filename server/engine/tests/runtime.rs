//! The task runtime end to end, without Wasm: sources, partitioning, chaining, backpressure, cancellation and
//! failures, with built-in operators and the native test functions.

use eddy_engine::graph::JobGraph;
use eddy_engine::io::FileRoots;
use eddy_engine::operator::Operator;
use eddy_engine::runtime::{DeployEnv, JobState, OverrideContext, RunningJob, deploy};
use eddy_engine::spec::JobSpec;
use eddy_engine::testing::TestFunctions;
use eddy_engine::{Batch, TaskError};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

fn start(spec: &str, env: impl FnOnce(&mut DeployEnv)) -> RunningJob {
    let spec = JobSpec::parse(spec).unwrap_or_else(|e| panic!("{e}"));
    let graph = JobGraph::build(&spec, &TestFunctions).unwrap_or_else(|e| panic!("{e}"));
    let mut deploy_env = DeployEnv::new("test", "test", Arc::new(TestFunctions));
    env(&mut deploy_env);
    deploy(&graph, deploy_env).unwrap_or_else(|e| panic!("{e}"))
}

fn finish(job: &RunningJob) -> JobState {
    let state = job.handle.wait(Duration::from_secs(60));
    assert_ne!(state, JobState::Running, "the job ends");
    state
}

/// Every value an HTTP sink published, as JSON.
fn published(job: &RunningJob, sink: &str) -> Vec<Value> {
    let stream = job.outputs.get(sink).expect("http sink");
    stream.retained().iter().map(|r| serde_json::from_slice(&r.value).expect("JSON value")).collect()
}

#[test]
fn a_file_flows_through_a_keyed_window_into_a_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.jsonl");
    let output = dir.path().join("out/counts");
    let lines = [
        r#"{"page":"home","ts":1000}"#,
        r#"{"page":"about","ts":1500}"#,
        r#"{"page":"home","ts":4000}"#,
        "",
        r#"{"page":"home","ts":6000}"#,
    ];
    std::fs::write(&input, lines.join("\n")).expect("write input");
    let spec = r#"
name: files
operators:
  - { uid: src, source: { file: { path: in.jsonl } }, watermark: { out_of_orderness: 1s, timestamp: { json: "$.ts" } } }
  - { uid: w, input: src, key_by: { json: "$.page" }, window: { tumbling: 5s }, aggregate: { builtin: count } }
  - { uid: out, sink: { file: { path: out/counts } }, input: w }
"#;
    let job = start(spec, |env| env.files = FileRoots::new(dir.path()));
    assert_eq!(finish(&job), JobState::Finished);
    let mut results: Vec<Value> =
        committed_lines(&output).iter().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    results.sort_by_key(|r| (r["window_start"].as_i64(), r["key"].as_str().map(str::to_string)));
    let summary: Vec<(String, i64, i64)> = results
        .iter()
        .map(|r| {
            (
                r["key"].as_str().unwrap_or_default().to_string(),
                r["window_start"].as_i64().unwrap_or(-1),
                r["count"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(summary, vec![("about".into(), 0, 1), ("home".into(), 0, 2), ("home".into(), 5000, 1)]);
    let counters = job.handle.operators();
    assert_eq!(counters[0].1.records_out, 4, "the empty line is skipped");
}

/// The lines of the visible part files in a file sink's folder, sorted; in-progress parts are hidden files.
fn committed_lines(folder: &std::path::Path) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(folder).expect("output folder") {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        if name.starts_with("part-") {
            lines.extend(std::fs::read_to_string(&path).expect("part").lines().map(str::to_string));
        }
    }
    lines.sort();
    lines
}

/// A paced keyed window job with exactly-once checkpoints every 50 ms, writing into `out/<folder>`.
fn checkpointed_spec(folder: &str) -> String {
    format!(
        r#"
name: checkpointed
parallelism: 2
checkpoints: {{ interval: 50ms }}
operators:
  - {{ uid: src, source: {{ generator: {{ events: 12000, keys: 20, encoding: json, rate: 4000 }} }}, watermark: {{ out_of_orderness: 100ms }}, batch_size: 50 }}
  - {{ uid: w, input: src, key_by: {{ json: "$.key" }}, window: {{ tumbling: 10ms }}, aggregate: {{ builtin: sum, field: "$.amount" }} }}
  - {{ uid: out, sink: {{ file: {{ path: out/{folder} }} }}, input: w }}
"#
    )
}

#[test]
fn a_job_restored_from_a_checkpoint_commits_each_result_exactly_once() {
    use eddy_engine::checkpoint::{Checkpointing, LocalStore, Restore};
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn eddy_engine::checkpoint::CheckpointStore> = Arc::new(LocalStore::new(dir.path().join("cp")));
    let parse = |folder: &str| {
        let spec = JobSpec::parse(&checkpointed_spec(folder)).unwrap_or_else(|e| panic!("{e}"));
        JobGraph::build(&spec, &TestFunctions).unwrap_or_else(|e| panic!("{e}"))
    };
    let run = |graph: &JobGraph, restore: Option<Restore>| {
        let mut env = DeployEnv::new("cp", "test", Arc::new(TestFunctions));
        env.files = FileRoots::new(dir.path());
        env.checkpointing = Some(
            Checkpointing::new(
                graph.checkpoints.clone().expect("checkpoints"),
                Arc::clone(&store),
                "job/",
                graph.max_parallelism,
            )
            .after(restore.as_ref().map_or(0, |r| r.checkpoint)),
        );
        env.restore = restore;
        deploy(graph, env).unwrap_or_else(|e| panic!("{e}"))
    };
    // Uninterrupted.
    let whole = run(&parse("whole"), None);
    assert_eq!(finish(&whole), JobState::Finished);
    assert!(whole.handle.checkpoints().completed >= 1, "{:?}", whole.handle.checkpoints());
    let expected = committed_lines(&dir.path().join("out/whole"));
    assert!(expected.len() > 100, "{} results", expected.len());
    store.delete_prefix("job/").expect("clean");

    // Stopped without warning after a few checkpoints, then restored from the newest.
    let graph = parse("crashed");
    let first = run(&graph, None);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while first.handle.checkpoints().completed < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    first.handle.cancel();
    first.handle.wait(Duration::from_secs(10));
    let before = committed_lines(&dir.path().join("out/crashed"));
    assert!(before.len() < expected.len(), "the crash came before the end");
    let restore = Restore::latest(&store, "job/").expect("read").expect("a completed checkpoint");
    assert!(restore.checkpoint >= 3);
    let second = run(&graph, Some(restore));
    assert_eq!(finish(&second), JobState::Finished, "{:?}", second.handle.error());
    assert_eq!(committed_lines(&dir.path().join("out/crashed")), expected);
    let hidden: Vec<String> = std::fs::read_dir(dir.path().join("out/crashed"))
        .expect("list")
        .filter_map(|e| e.ok()?.file_name().to_str().map(str::to_string))
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(hidden.is_empty(), "no in-progress part is left: {hidden:?}");
}

/// A keyed window job fed over HTTP at `parallelism`, writing into `out/<folder>`.
fn rescalable_graph(parallelism: u32, folder: &str) -> JobGraph {
    let spec = format!(
        r#"
name: rescale
parallelism: {parallelism}
checkpoints: {{ interval: 1h }}
operators:
  - {{ uid: src, parallelism: 1, source: {{ http: {{}} }}, watermark: {{ out_of_orderness: 50ms, timestamp: {{ json: "$.ts" }} }} }}
  - {{ uid: w, input: src, key_by: {{ json: "$.key" }}, window: {{ tumbling: 100ms }}, aggregate: {{ builtin: sum, field: "$.amount" }} }}
  - {{ uid: out, sink: {{ file: {{ path: out/{folder} }} }}, input: w }}
"#
    );
    let spec = JobSpec::parse(&spec).unwrap_or_else(|e| panic!("{e}"));
    JobGraph::build(&spec, &TestFunctions).unwrap_or_else(|e| panic!("{e}"))
}

fn ledger_batch(n: u64) -> Batch {
    let mut batch = Batch::new();
    for i in 0..50 {
        let seq = n * 50 + i;
        let value = format!(r#"{{"key":"k{}","ts":{},"amount":{}}}"#, seq % 11, seq * 3, seq % 17);
        batch.push(0, None, value.as_bytes());
    }
    batch
}

#[test]
fn a_savepoint_restores_at_another_parallelism_with_the_same_results() {
    use eddy_engine::checkpoint::{CheckpointStore, Checkpointing, LocalStore, Restore};
    use eddy_engine::io::IngestLog;
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn CheckpointStore> = Arc::new(LocalStore::new(dir.path().join("cp")));
    let run = |graph: &JobGraph, log: &Arc<IngestLog>, restore: Option<Restore>| {
        let mut env = DeployEnv::new("rescale", "test", Arc::new(TestFunctions));
        env.files = FileRoots::new(dir.path());
        env.inputs.insert("src".into(), Arc::clone(log));
        env.checkpointing = Some(
            Checkpointing::new(
                graph.checkpoints.clone().expect("checkpoints"),
                Arc::clone(&store),
                "job/",
                graph.max_parallelism,
            )
            .after(restore.as_ref().map_or(0, |r| r.checkpoint)),
        );
        env.restore = restore;
        deploy(graph, env).unwrap_or_else(|e| panic!("{e}"))
    };
    let feed = |job: &RunningJob, batches: std::ops::Range<u64>| {
        for n in batches {
            job.inputs["src"].push(&ledger_batch(n)).expect("push");
        }
    };
    let whole_log = IngestLog::open(dir.path().join("log-whole")).expect("log");
    let whole = run(&rescalable_graph(2, "whole"), &whole_log, None);
    feed(&whole, 0..40);
    whole.inputs["src"].close().expect("close");
    assert_eq!(finish(&whole), JobState::Finished);
    let expected = committed_lines(&dir.path().join("out/whole"));
    assert!(expected.len() > 100, "{} results", expected.len());

    for (name, before, after) in [("two-to-three", 2, 3), ("three-to-one", 3, 1)] {
        let log = IngestLog::open(dir.path().join(format!("log-{name}"))).expect("log");
        let first = run(&rescalable_graph(before, name), &log, None);
        feed(&first, 0..20);
        // Everything fed is read before the savepoint's barrier is injected only if the source got to it.
        while first.handle.operators()[0].1.records_out < 20 * 50 {
            std::thread::sleep(Duration::from_millis(5));
        }
        let folder = format!("savepoints/{name}/");
        let id = first.handle.savepoint(&folder, Duration::from_secs(30)).expect("savepoint");
        first.handle.cancel();
        first.handle.wait(Duration::from_secs(10));
        let restore = Restore::load_folder(&store, &folder, "the savepoint").expect("load");
        assert_eq!(restore.checkpoint, id);
        let second = run(&rescalable_graph(after, name), &log, Some(restore));
        feed(&second, 20..40);
        second.inputs["src"].close().expect("close");
        assert_eq!(finish(&second), JobState::Finished, "{:?}", second.handle.error());
        assert_eq!(committed_lines(&dir.path().join(format!("out/{name}"))), expected, "{name}");
    }
}

#[test]
fn a_savepoint_with_state_of_a_removed_operator_needs_permission() {
    use eddy_engine::checkpoint::{CheckpointStore, Checkpointing, LocalStore, Restore};
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn CheckpointStore> = Arc::new(LocalStore::new(dir.path().join("cp")));
    let graph = rescalable_graph(1, "before");
    let mut env = DeployEnv::new("orphan", "test", Arc::new(TestFunctions));
    env.files = FileRoots::new(dir.path());
    env.checkpointing = Some(Checkpointing::new(
        graph.checkpoints.clone().expect("checkpoints"),
        Arc::clone(&store),
        "job/",
        graph.max_parallelism,
    ));
    let job = deploy(&graph, env).unwrap_or_else(|e| panic!("{e}"));
    job.inputs["src"].push(&ledger_batch(0)).expect("push");
    while job.handle.operators()[1].1.records_in < 50 {
        std::thread::sleep(Duration::from_millis(5));
    }
    job.handle.savepoint("sp/", Duration::from_secs(30)).expect("savepoint");
    job.handle.cancel();
    job.handle.wait(Duration::from_secs(10));
    // The window's uid changes: its state would be lost.
    let spec = "name: renamed\noperators:\n  - { uid: src, source: { http: {} } }\n  - { uid: w2, input: src, key_by: { json: \"$.key\" }, window: { tumbling: 100ms }, aggregate: { builtin: count } }\n  - { uid: out, sink: discard, input: w2 }\n";
    let renamed = JobGraph::build(&JobSpec::parse(spec).expect("spec"), &TestFunctions).expect("graph");
    let attempt = |allow: bool| {
        let mut env = DeployEnv::new("orphan", "test", Arc::new(TestFunctions));
        env.restore = Some(Restore::load_folder(&store, "sp/", "the savepoint").expect("load"));
        env.allow_non_restored_state = allow;
        deploy(&renamed, env)
    };
    let refused = attempt(false).expect_err("state of `w` would be lost").message;
    assert!(refused.contains("operators the job does not have: w") && refused.contains("non-restored"), "{refused}");
    let started = attempt(true).expect("allowed");
    started.handle.cancel();
    // Another number of key groups cannot read keyed state.
    let spec = spec.replace("name: renamed\n", "name: renamed\nmax_parallelism: 64\n").replace("w2", "w");
    let regrouped = JobGraph::build(&JobSpec::parse(&spec).expect("spec"), &TestFunctions).expect("graph");
    let mut env = DeployEnv::new("orphan", "test", Arc::new(TestFunctions));
    env.restore = Some(Restore::load_folder(&store, "sp/", "the savepoint").expect("load"));
    let refused = deploy(&regrouped, env).expect_err("key groups differ").message;
    assert!(refused.contains("max_parallelism 128") && refused.contains("cannot change"), "{refused}");
}

/// A window chained behind another whose windows end where its own do: the upstream window's results for a
/// watermark reach the downstream window before that watermark does (Flink's order), so none of them is late.
#[test]
fn a_window_chained_behind_a_window_sees_its_results_before_the_watermark_that_fired_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut lines = Vec::new();
    for i in 0..400 {
        lines.push(format!(r#"{{"key":"k{}","ts":{}}}"#, i % 3, i * 10));
    }
    std::fs::write(dir.path().join("in.jsonl"), lines.join("\n")).expect("write input");
    let spec = r#"
name: chained
operators:
  - { uid: src, source: { file: { path: in.jsonl } }, watermark: { out_of_orderness: 0ms, timestamp: { json: "$.ts" } }, batch_size: 7 }
  - { uid: per-second, input: src, key_by: { json: "$.key" }, window: { tumbling: 1s }, aggregate: { builtin: count } }
  - { uid: per-two, input: per-second, window: { tumbling: 2s }, aggregate: { builtin: sum, field: "$.count" } }
  - { uid: out, sink: http, input: per-two }
"#;
    let job = start(spec, |env| env.files = FileRoots::new(dir.path()));
    assert_eq!(finish(&job), JobState::Finished);
    let counters = job.handle.operators();
    let late: u64 = counters.iter().map(|(_, c)| c.late_records_dropped).sum();
    assert_eq!(late, 0, "no result of the first window is late for the second");
    let mut sums: Vec<(i64, i64)> = published(&job, "out")
        .iter()
        .map(|r| (r["window_start"].as_i64().unwrap_or(-1), r["sum"].as_i64().unwrap_or(-1)))
        .collect();
    sums.sort();
    assert_eq!(sums, [(0, 200), (2000, 200)], "every record is counted once, in its two-second window");
}

/// A process function chained behind a window sees, with each window result, the watermark from before the one
/// that fired the window, as it would across a channel.
#[test]
fn a_process_function_chained_behind_a_window_sees_the_watermark_before_the_firing_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lines: Vec<String> = (0..300).map(|i| format!(r#"{{"key":"k{}","ts":{}}}"#, i % 2, i * 10)).collect();
    std::fs::write(dir.path().join("in.jsonl"), lines.join("\n")).expect("write input");
    let spec = r#"
name: chained-process
operators:
  - { uid: src, source: { file: { path: in.jsonl } }, watermark: { out_of_orderness: 0ms, timestamp: { json: "$.ts" } }, batch_size: 5 }
  - { uid: per-second, input: src, window: { tumbling: 1s }, aggregate: { builtin: count } }
  - { uid: seen, input: per-second, process: seen-watermark }
  - { uid: out, sink: http, input: seen }
"#;
    let job = start(spec, |env| env.files = FileRoots::new(dir.path()));
    assert_eq!(finish(&job), JobState::Finished);
    let seen = published(&job, "out");
    assert_eq!(seen.len(), 3, "{seen:?}");
    for result in &seen {
        let (ts, watermark) = (result["ts"].as_i64().unwrap_or(0), result["watermark"].as_i64().unwrap_or(i64::MAX));
        assert!(watermark < ts, "a result at {ts} arrived with watermark {watermark}: {seen:?}");
    }
}

fn counts_at(parallelism: u32) -> Vec<(String, i64, i64)> {
    let spec = format!(
        r#"
name: parallel
parallelism: {parallelism}
operators:
  - {{ uid: src, source: {{ generator: {{ events: 20000, keys: 50 }} }}, watermark: {{ out_of_orderness: 100ms }}, batch_size: 64 }}
  - {{ uid: w, input: src, key_by: {{ json: "$.key" }}, window: {{ tumbling: 1s }}, aggregate: {{ builtin: count }}, parallelism: {} }}
  - {{ uid: out, sink: http, input: w }}
"#,
        parallelism + 1
    );
    let job =
        start(&spec, |env| env.output_retention = eddy_engine::io::Retention { records: 100_000, bytes: 1 << 30 });
    assert_eq!(finish(&job), JobState::Finished);
    let mut counts: Vec<(String, i64, i64)> = published(&job, "out")
        .iter()
        .map(|r| {
            (
                r["key"].as_str().unwrap_or_default().to_string(),
                r["window_start"].as_i64().unwrap_or(0),
                r["count"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    counts.sort();
    counts
}

#[test]
fn results_do_not_depend_on_parallelism() {
    let one = counts_at(1);
    assert_eq!(one.iter().map(|c| c.2).sum::<i64>(), 20_000, "every event is counted once");
    assert_eq!(counts_at(2), one, "2 sources, 3 windows: same counts");
    assert_eq!(counts_at(3), one, "3 sources, 4 windows: same counts");
}

/// A sink that takes its time, to make the source wait.
struct SlowSink(Arc<AtomicU64>);

impl Operator for SlowSink {
    fn process(
        &mut self,
        _: usize,
        batch: Batch,
        _: &mut eddy_engine::operator::OpContext<'_>,
    ) -> Result<(), TaskError> {
        std::thread::sleep(Duration::from_millis(5));
        self.0.fetch_add(batch.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

#[test]
fn a_slow_sink_backpressures_the_source_and_loses_nothing() {
    let seen = Arc::new(AtomicU64::new(0));
    let sink_seen = Arc::clone(&seen);
    let job = start(
        r#"
name: slow
operators:
  - { uid: src, source: { generator: { events: 6400 } }, batch_size: 64 }
  - { uid: out, sink: discard, input: src, parallelism: 2 }
"#,
        move |env| {
            env.channel_capacity = 1;
            env.overrides.insert(
                "out".into(),
                Arc::new(move |_: &OverrideContext<'_>| -> Result<Box<dyn Operator>, TaskError> {
                    Ok(Box::new(SlowSink(Arc::clone(&sink_seen))))
                }),
            );
        },
    );
    assert_eq!(finish(&job), JobState::Finished);
    assert_eq!(seen.load(Ordering::Relaxed), 6400, "every record arrived");
    let source = job.handle.operators()[0].1;
    assert!(source.backpressured_ms > 0, "the source waited on full channels: {source:?}");
}

#[test]
fn cancelling_stops_an_endless_job() {
    let job = start(
        "name: endless\noperators:\n  - { uid: src, source: { generator: {} } }\n  - { uid: out, sink: discard, input: src }\n",
        |_| {},
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(job.handle.state(), JobState::Running);
    job.handle.cancel();
    assert_eq!(finish(&job), JobState::Canceled);
    assert!(job.handle.operators()[1].1.records_in > 0, "it ran before it was cancelled");
}

#[test]
fn a_record_without_the_key_field_fails_the_job_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "{\"user\":\"a\"}\n{\"name\":\"no user here\"}\n").expect("write");
    let spec = "name: bad\noperators:\n  - { uid: src, source: { file: { path: in.jsonl } } }\n  - { uid: p, input: src, key_by: { json: \"$.user\" }, process: echo }\n  - { uid: out, sink: discard, input: p }\n";
    let job = start(spec, |env| env.files = FileRoots::new(dir.path()));
    assert_eq!(finish(&job), JobState::Failed);
    let error = job.handle.error().expect("an error").to_string();
    assert!(error.contains("key_by") && error.contains("no $.user"), "{error}");
    assert!(error.contains("no user here"), "the error shows the record: {error}");
}

#[test]
fn unions_and_side_outputs_route_records() {
    let job = start(
        r#"
name: routes
operators:
  - { uid: a, source: { http: {} } }
  - { uid: b, source: { http: {} } }
  - { uid: both, union: {}, input: [a, b] }
  - { uid: p, input: both, process: echo }
  - { uid: main, sink: http, input: p }
  - { uid: late, sink: http, input: p.late }
"#,
        |_| {},
    );
    let push = |uid: &str, values: &[&str]| {
        let mut batch = Batch::new();
        for v in values {
            batch.push(0, None, v.as_bytes());
        }
        job.inputs[uid].push(&batch).expect("push");
        job.inputs[uid].close().expect("close");
    };
    push("a", &["1", "\"late\""]);
    push("b", &["2"]);
    assert_eq!(finish(&job), JobState::Finished);
    let mut main = published(&job, "main");
    main.sort_by_key(|v| v.as_i64());
    assert_eq!(main, vec![serde_json::json!(1), serde_json::json!(2)]);
    assert_eq!(published(&job, "late"), vec![serde_json::json!("late")], "the side output has its own sink");
}

#[test]
fn unreadable_records_are_skipped_or_set_aside_as_the_source_says() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lines = [
        "{\"user\":\"a\",\"ts\":1}",
        "not json at all",
        "{\"user\":\"b\",\"ts\":2}",
        "{\"name\":\"no user\",\"ts\":3}",
        "{\"user\":\"a\"}",
    ];
    std::fs::write(dir.path().join("in.jsonl"), lines.join("\n")).expect("write");
    let spec = |on_error: &str| {
        format!(
            "name: e\noperators:\n  - {{ uid: src, source: {{ file: {{ path: in.jsonl }} }}, on_error: {on_error}, watermark: {{ out_of_orderness: 1s, timestamp: {{ json: \"$.ts\" }} }} }}\n  - {{ uid: p, input: src, key_by: {{ json: \"$.user\" }}, process: echo }}\n  - {{ uid: out, sink: http, input: p }}\n  - {{ uid: bad, sink: http, input: src.unreadable }}\n"
        )
    };
    // Skip: the three readable records go on; the job finishes; the source counts what it dropped.
    let skip = spec("skip").replace("  - { uid: bad, sink: http, input: src.unreadable }\n", "");
    let job = start(&skip, |env| env.files = FileRoots::new(dir.path()));
    assert_eq!(finish(&job), JobState::Finished, "{:?}", job.handle.error());
    assert_eq!(published(&job, "out").len(), 2);
    let source = job.handle.operators().into_iter().find(|(uid, _)| uid == "src").expect("src").1;
    assert_eq!(source.unreadable_records, 3, "no key, not JSON, no event time");
    // A side output: the unreadable records arrive there as they came.
    let job = start(&spec("unreadable"), |env| env.files = FileRoots::new(dir.path()));
    assert_eq!(finish(&job), JobState::Finished, "{:?}", job.handle.error());
    assert_eq!(published(&job, "out").len(), 2);
    let stream = job.outputs.get("bad").expect("bad sink");
    let mut set_aside: Vec<String> =
        stream.retained().iter().map(|r| String::from_utf8_lossy(&r.value).into_owned()).collect();
    set_aside.sort();
    assert_eq!(set_aside, vec!["not json at all", "{\"name\":\"no user\",\"ts\":3}", "{\"user\":\"a\"}"]);
    // Fail, the default: the first unreadable record fails the job, naming it.
    let job = start(&spec("fail").replace("  - { uid: bad, sink: http, input: src.unreadable }\n", ""), |env| {
        env.files = FileRoots::new(dir.path())
    });
    assert_eq!(finish(&job), JobState::Failed);
}

#[test]
fn a_keyed_operator_down_the_job_skips_records_it_cannot_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lines = ["{\"user\":\"a\",\"region\":\"eu\"}", "{\"user\":\"b\"}", "{\"user\":\"c\",\"region\":\"us\"}"];
    std::fs::write(dir.path().join("in.jsonl"), lines.join("\n")).expect("write");
    let spec = "name: k\noperators:\n  - { uid: src, source: { file: { path: in.jsonl } } }\n  - { uid: by-user, input: src, key_by: { json: \"$.user\" }, process: echo }\n  - { uid: by-region, input: by-user, key_by: { json: \"$.region\" }, process: echo, on_error: skip }\n  - { uid: out, sink: http, input: by-region }\n";
    let job = start(spec, |env| env.files = FileRoots::new(dir.path()));
    assert_eq!(finish(&job), JobState::Finished, "{:?}", job.handle.error());
    assert_eq!(published(&job, "out").len(), 2);
    let region = job.handle.operators().into_iter().find(|(uid, _)| uid == "by-region").expect("operator").1;
    assert_eq!(region.unreadable_records, 1, "the record without a region was skipped and counted");
}

/// A small bounded job whose source fans out to more window tasks than its tenant has run slots, with one-batch
/// channels so that every send can find its channel full: it must finish, with every window's results complete.
/// (A task that waited for a run slot while it held the next message of a channel reserved used to freeze the
/// senders spinning on that channel, with the slots in their hands.)
#[test]
fn fan_out_wider_than_the_run_slots_finishes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lines: Vec<String> =
        (0..400).map(|i| format!(r#"{{"user":"u{}","ts":{}}}"#, i % 7, i * 37 % 1000 + i * 3)).collect();
    std::fs::write(dir.path().join("in.jsonl"), lines.join("\n")).expect("write input");
    let windows = [
        "{ session: 50, trigger: { purging: event_time }, late: late }",
        "{ session: 20, allowed_lateness: 100, late: late }",
        "{ tumbling: 100, late: late }",
        "{ sliding: { size: 200, slide: 50 }, late: late }",
        "{ session: 300, trigger: { purging: { count: 3 } }, late: late }",
        "{ tumbling: 250, allowed_lateness: 50 }",
    ];
    let mut spec = String::from(
        "name: fan-out\noperators:\n  - { uid: src, source: { file: { path: in.jsonl } }, batch_size: 4, \
         watermark: { out_of_orderness: 20ms, timestamp: { json: \"$.ts\" } } }\n",
    );
    for (i, window) in windows.iter().enumerate() {
        spec.push_str(&format!(
            "  - {{ uid: w{i}, input: src, key_by: {{ json: \"$.user\" }}, window: {window}, aggregate: {{ builtin: count }} }}\n  - {{ uid: out{i}, sink: http, input: w{i} }}\n"
        ));
        if window.contains("late: late") {
            spec.push_str(&format!("  - {{ uid: late{i}, sink: http, input: w{i}.late }}\n"));
        }
    }
    let sinks: Vec<String> = spec
        .lines()
        .filter_map(|l| l.split("uid: ").nth(1)?.split(',').next())
        .filter(|uid| uid.starts_with("out") || uid.starts_with("late"))
        .map(str::to_string)
        .collect();
    let run = |governor: Option<usize>| {
        let job = start(&spec, |env| {
            env.files = FileRoots::new(dir.path());
            env.channel_capacity = 1;
            env.governor = governor.map(eddy_engine::runtime::govern::CpuGovernor::new);
        });
        assert_eq!(finish(&job), JobState::Finished, "with {governor:?} run slot(s)");
        let outputs: Vec<Vec<String>> = sinks
            .iter()
            .map(|sink| {
                let mut values: Vec<String> = published(&job, sink).iter().map(Value::to_string).collect();
                values.sort();
                values
            })
            .collect();
        outputs
    };
    let reference = run(None);
    for (sink, values) in sinks.iter().zip(&reference) {
        assert!(sink.starts_with("late") || values.len() > 10, "window sink {sink} emitted results: {values:?}");
    }
    for cores in [1, 2] {
        assert_eq!(run(Some(cores)), reference, "the same results with {cores} run slot(s)");
    }
}

/// Two jobs of one tenant, each with many senders on one-batch channels into keyed windows, all sharing one run
/// slot: both finish, with the results they have when nothing governs them.
#[test]
fn many_senders_sharing_one_run_slot_finish() {
    let spec = r#"
name: senders
operators:
  - { uid: src, source: { generator: { events: 20000, keys: 50 } }, watermark: { out_of_orderness: 100ms }, batch_size: 16, parallelism: 4 }
  - { uid: w, input: src, key_by: { json: "$.key" }, window: { tumbling: 1s }, aggregate: { builtin: count }, parallelism: 3 }
  - { uid: out, sink: http, input: w, parallelism: 2 }
"#;
    let counts = |job: &RunningJob| {
        let mut counts: Vec<String> = published(job, "out").iter().map(Value::to_string).collect();
        counts.sort();
        counts
    };
    let retention = eddy_engine::io::Retention { records: 100_000, bytes: 1 << 30 };
    let reference = start(spec, |env| env.output_retention = retention);
    assert_eq!(finish(&reference), JobState::Finished);
    let governor = eddy_engine::runtime::govern::CpuGovernor::new(1);
    let jobs: Vec<RunningJob> = (0..2)
        .map(|_| {
            start(spec, |env| {
                env.output_retention = retention;
                env.channel_capacity = 1;
                env.governor = Some(Arc::clone(&governor));
            })
        })
        .collect();
    for job in &jobs {
        assert_eq!(finish(job), JobState::Finished);
        assert_eq!(counts(job), counts(&reference));
    }
    assert!(!counts(&reference).is_empty());
}
