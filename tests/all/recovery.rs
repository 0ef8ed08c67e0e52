//! Checkpoints and recovery with the real server process: killed with SIGKILL at random moments, restarted on the
//! same data folder, a job fed over HTTP writes each result to its exactly-once file sink once.

use crate::support::{Rust, ServerProcess, TestServer, committed, example, submit, wait_job};
use eddy_server::client::Client;
use serde_json::Value;
use std::time::Duration;

/// Records per POST, and POSTs in all.
const BATCH: u64 = 40;
const BATCHES: u64 = 120;

/// Kills during the interrupted run; `EDDY_TEST_KILLS` asks for more (or fewer).
fn kills() -> u64 {
    std::env::var("EDDY_TEST_KILLS").ok().and_then(|k| k.parse().ok()).unwrap_or(20)
}

/// A small deterministic generator, so that a failing run can be repeated with its seed.
pub(crate) struct SplitMix(pub(crate) u64);

impl SplitMix {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// POST number `n`: records with event times that move forward, slightly out of order, over 7 keys.
fn batch(n: u64) -> String {
    (0..BATCH)
        .map(|i| {
            let seq = n * BATCH + i;
            let ts = seq * 7 + (seq * 13) % 50;
            format!(r#"{{"key":"k{}","ts":{ts},"amount":{}}}"#, seq % 7, seq % 100)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn spec(folder: &str, backend: &str) -> String {
    format!(
        r#"
name: ledger-{folder}
state: {{ backend: {backend} }}
checkpoints: {{ interval: 100ms }}
operators:
  - {{ uid: src, source: {{ http: {{}} }}, watermark: {{ out_of_orderness: 100ms, timestamp: {{ json: "$.ts" }} }} }}
  - {{ uid: w, input: src, key_by: {{ json: "$.key" }}, window: {{ tumbling: 500ms }}, aggregate: {{ module: stats }} }}
  - {{ uid: out, sink: {{ file: {{ path: {folder} }} }}, input: w }}
"#
    )
}

async fn post(client: &Client, id: &str, n: u64) -> bool {
    client.ingest(id, "src", batch(n)).await.is_ok()
}

/// Waits until the job runs and has completed a checkpoint since it started (a start that takes the server down
/// before that counts towards holding the job).
async fn settled(client: &Client, id: &str) -> Value {
    let status = wait_job(client, id, Duration::from_secs(60), |s| {
        s["state"] == "running" && s["checkpoints"]["completed"].as_u64().is_some_and(|c| c >= 1)
    })
    .await;
    // The server notes the completed checkpoint within 100 ms.
    tokio::time::sleep(Duration::from_millis(200)).await;
    status
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http_fed_job_killed_at_random_moments_commits_every_result_exactly_once() {
    killed_at_random_moments("memory", kills()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_on_rocksdb_killed_at_random_moments_commits_every_result_exactly_once() {
    // Each start restores RocksDB from the local copy of the newest checkpoint; the kills leave the working folder
    // and local copies of checkpoints in progress behind, half-written.
    killed_at_random_moments("rocksdb", kills().div_ceil(4)).await;
}

async fn killed_at_random_moments(backend: &str, kills: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let stats = example(Rust, "running-stats").await;
    let server = ServerProcess::start(dir.path()).await;
    server.client.push_module("stats", None, stats).await.expect("upload");

    // The uninterrupted run.
    let whole = submit(&server.client, &spec("whole", backend)).await;
    for n in 0..BATCHES {
        assert!(post(&server.client, &whole, n).await, "POST {n}");
    }
    server.client.close_input(&whole, "src").await.expect("close");
    wait_job(&server.client, &whole, Duration::from_secs(60), |s| s["state"] == "finished").await;
    let files = dir.path().join("files/default");
    let expected = committed(&files.join("whole"));
    assert!(expected.len() > 50, "{} results", expected.len());

    // The same input, with the server killed at random moments in between.
    let seed = std::env::var("EDDY_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed);
    let mut random = SplitMix(seed);
    let mut kill_after: Vec<u64> = (0..kills).map(|_| random.below(BATCHES)).collect();
    kill_after.sort_unstable();
    let id = submit(&server.client, &spec("crashed", backend)).await;
    let mut server = server;
    settled(&server.client, &id).await;
    let mut next_kill = kill_after.iter().peekable();
    for n in 0..BATCHES {
        // A POST acknowledged before a kill is on disk; one refused is sent again after the restart.
        while !post(&server.client, &id, n).await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        while next_kill.next_if(|&&k| k == n).is_some() {
            // Sometimes at once, sometimes after the job has moved on (checkpoints, window firings, commits).
            tokio::time::sleep(Duration::from_millis(random.below(250))).await;
            server.kill();
            // Mid-run, what is committed is part of the final output: nothing twice, nothing made up.
            let mut left = expected.clone();
            for line in committed(&files.join("crashed")) {
                let at = left.iter().position(|l| *l == line);
                assert!(at.is_some(), "committed mid-run but not in the uninterrupted output, or twice: {line}");
                left.remove(at.unwrap_or_default());
            }
            server = ServerProcess::start(dir.path()).await;
            settled(&server.client, &id).await;
        }
    }
    server.client.close_input(&id, "src").await.expect("close");
    let status = wait_job(&server.client, &id, Duration::from_secs(60), |s| s["state"] != "running").await;
    assert_eq!(status["state"], "finished", "{status:#}");
    let actual = committed(&files.join("crashed"));
    assert_eq!(actual.len(), expected.len(), "as many results as the uninterrupted run (seed {seed}, {kills} kills)");
    assert_eq!(actual, expected, "the same results (seed {seed})");
    let leftovers: Vec<String> = std::fs::read_dir(files.join("crashed"))
        .expect("folder")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| !n.starts_with("part-"))
        .collect();
    assert!(leftovers.is_empty(), "no uncommitted part is left: {leftovers:?}");
    server.kill();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_job_restarts_on_schedule_from_its_checkpoint_then_gives_up() {
    let server = TestServer::start().await;
    let c = &server.client;
    c.push_module("faults", None, example(Rust, "test-faults").await).await.expect("upload");
    let spec = "name: flaky\ncheckpoints: { interval: 50ms }\nrestart: { strategy: fixed_delay, attempts: 2, delay: 300ms }\noperators:\n  - { uid: src, source: { http: {} } }\n  - { uid: m, map: faults, input: src }\n  - { uid: out, sink: http, input: m }\n";
    let id = submit(c, spec).await;
    c.ingest(&id, "src", "before\n".into()).await.expect("ingest");
    wait_job(c, &id, Duration::from_secs(20), |s| s["checkpoints"]["completed"].as_u64().is_some_and(|n| n >= 2)).await;
    // The poison record is after the checkpoint: every restored run reads it again and fails again.
    c.ingest(&id, "src", "panic\n".into()).await.expect("ingest");
    let status = wait_job(c, &id, Duration::from_secs(30), |s| s["state"] == "failed").await;
    let restarts = status["restarts"].as_array().cloned().unwrap_or_default();
    assert_eq!(restarts.len(), 2, "{status:#}");
    for restart in &restarts {
        assert!(restart["cause"]["message"].as_str().unwrap_or_default().contains("panic"), "{restart:#}");
        assert_eq!(restart["delay_ms"], 300);
    }
    let gap = restarts[1]["failed_at"].as_i64().unwrap_or(0) - restarts[0]["failed_at"].as_i64().unwrap_or(0);
    assert!(gap >= 300, "the second failure comes after the delay: {gap} ms");
    let error = status["error"]["message"].as_str().unwrap_or_default();
    assert!(error.contains("not restarted") && error.contains("2 restart"), "{error}");
    assert!(status["checkpoints"]["restored_from"].as_u64().is_some(), "the last run started from a checkpoint");
    // The output endpoint outlived the runs: the record before the poison one is there (at least once).
    let records = crate::support::output(c, &id, "out").await;
    assert!(!records.is_empty() && records.iter().all(|r| r["value"] == "before"), "{records:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_server_resumes_a_job_from_its_checkpoints_in_s3_alone() {
    resumes_from_s3("memory").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_server_with_its_local_state_wiped_resumes_a_rocksdb_job_from_s3_alone() {
    resumes_from_s3("rocksdb").await;
}

/// A job whose checkpoints go to S3, its server killed halfway through its input; with RocksDB, the server's
/// local state folder (working state and local copies of checkpoints) is wiped too, as on a new machine.
async fn resumes_from_s3(backend: &str) {
    use eddy_engine::checkpoint::CheckpointStore;
    let moto = crate::s3::Moto::start();
    let settings = crate::s3::settings(&moto);
    let bucket = tokio::task::spawn_blocking(move || crate::s3::store(&settings)).await.expect("bucket");
    let dir = tempfile::tempdir().expect("tempdir");
    let endpoint = moto.endpoint();
    let env = [
        ("EDDY_CHECKPOINT_S3_BUCKET", "eddy-test"),
        ("EDDY_CHECKPOINT_S3_PREFIX", "cp/"),
        ("EDDY_CHECKPOINT_S3_ENDPOINT", endpoint.as_str()),
        ("EDDY_CHECKPOINT_S3_PATH_STYLE", "true"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testkey"),
        ("AWS_SECRET_ACCESS_KEY", "testsecret"),
    ];
    let server = ServerProcess::start_with_env(dir.path(), &env).await;
    let spec = format!(
        "name: counts\nstate: {{ backend: {backend} }}\ncheckpoints: {{ interval: 100ms }}\noperators:\n  - {{ uid: src, source: {{ http: {{}} }}, watermark: {{ out_of_orderness: 100ms, timestamp: {{ json: \"$.ts\" }} }} }}\n  - {{ uid: w, input: src, key_by: {{ json: \"$.key\" }}, window: {{ tumbling: 500ms }}, aggregate: {{ builtin: sum, field: \"$.amount\" }} }}\n  - {{ uid: out, sink: {{ file: {{ path: counts }} }}, input: w }}\n"
    );
    let id = submit(&server.client, &spec).await;
    for n in 0..BATCHES / 2 {
        assert!(post(&server.client, &id, n).await, "POST {n}");
    }
    settled(&server.client, &id).await;
    server.kill();
    assert!(!dir.path().join("checkpoints").exists(), "no checkpoint went to the local disk");
    let listed = tokio::task::spawn_blocking(move || bucket.list("").expect("list")).await.expect("list");
    assert!(listed.iter().any(|k| k.ends_with("/_metadata")), "completed checkpoints are in the bucket: {listed:?}");
    if backend == "rocksdb" {
        assert!(listed.iter().any(|k| k.contains("/shared/w-0/")), "RocksDB's files are in the bucket: {listed:?}");
        let state = dir.path().join("state");
        assert!(state.exists(), "RocksDB kept state on the local disk");
        std::fs::remove_dir_all(&state).expect("wipe the local state");
    }

    let server = ServerProcess::start_with_env(dir.path(), &env).await;
    let status = settled(&server.client, &id).await;
    assert!(status["checkpoints"]["restored_from"].as_u64().is_some(), "restored from S3: {status:#}");
    for n in BATCHES / 2..BATCHES {
        while !post(&server.client, &id, n).await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    server.client.close_input(&id, "src").await.expect("close");
    let status = wait_job(&server.client, &id, Duration::from_secs(60), |s| s["state"] != "running").await;
    assert_eq!(status["state"], "finished", "{status:#}");
    // Every record is summed once: the sums over all windows add up to the input's.
    let total: u64 = committed(&dir.path().join("files/default/counts"))
        .iter()
        .map(|line| serde_json::from_str::<Value>(line).expect("json")["sum"].as_u64().unwrap_or(0))
        .sum();
    let expected: u64 = (0..BATCHES * BATCH).map(|seq| seq % 100).sum();
    assert_eq!(total, expected);
    server.kill();
}
