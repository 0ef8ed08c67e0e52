//! Guarantees where features meet: restarts, savepoints, upgrades and durable HTTP input, each together with
//! another. Every acknowledged record is counted.

use crate::support::{Rust, ServerProcess, TestServer, committed, example, fixture, output, submit, wait_job};
use std::collections::BTreeSet;
use std::time::Duration;

/// A job without checkpoints whose input log grew past one segment (64 MiB) reads its whole input again after a
/// restart of the server, as a job without checkpoints does: nothing it acknowledged is gone.
#[tokio::test(flavor = "multi_thread")]
async fn a_job_without_checkpoints_reads_all_its_input_again_after_a_restart() {
    let mut server = TestServer::start().await;
    let spec = "name: plain\noperators:\n  - { uid: src, source: { http: {} } }\n  - { uid: out, sink: discard, input: src }\n";
    let id = submit(&server.client, spec).await;
    let first = 3_000_000u64;
    let accepted = server.client.ingest(&id, "src", "0\n".repeat(first as usize)).await.expect("ingest");
    assert_eq!(accepted["accepted"], first);
    // The first segment is full now: this POST starts the second.
    server.client.ingest(&id, "src", "1\n".into()).await.expect("ingest");
    let total = first + 1;
    let read = |s: &serde_json::Value| s["operators"][1]["records_in"].as_u64() == Some(total);
    wait_job(&server.client, &id, Duration::from_secs(300), read).await;
    server.restart().await;
    // Right after the restart the job may show as queued or starting; only a stopped job ends the wait early.
    let in_flight = |s: &serde_json::Value| {
        ["queued", "starting", "restarting", "running"].contains(&s["state"].as_str().unwrap_or(""))
    };
    let again = wait_job(&server.client, &id, Duration::from_secs(300), |s| read(s) || !in_flight(s)).await;
    assert_eq!(again["state"], "running", "{again:#}");
    assert_eq!(again["operators"][1]["records_in"], total, "the whole input, read again: {again:#}");
}

/// Three clients post while the job stops with a savepoint: every record answered 202 is in what the job read
/// before it stopped (its output), and nothing else is; the posts that come too late are refused, not lost.
#[tokio::test(flavor = "multi_thread")]
async fn a_stop_with_savepoint_while_clients_post_keeps_every_acknowledged_record() {
    let server = TestServer::start().await;
    let spec = "name: pass\ncheckpoints: { interval: 1h }\noperators:\n  - { uid: src, source: { http: {} } }\n  - { uid: out, sink: http, input: src }\n";
    for round in 0..3 {
        let id = submit(&server.client, spec).await;
        let clients: Vec<_> = (0..3)
            .map(|client| {
                let (c, id) = (server.client.clone(), id.clone());
                tokio::spawn(async move {
                    let mut acknowledged = BTreeSet::new();
                    for batch in 0.. {
                        let values: Vec<String> =
                            (0..10).map(|i| format!("{{\"c\":{client},\"n\":{}}}", batch * 10 + i)).collect();
                        let mut lines = values.join("\n");
                        lines.push('\n');
                        match c.ingest(&id, "src", lines).await {
                            Ok(answer) => {
                                assert_eq!(answer["accepted"], 10);
                                acknowledged.extend(values);
                            }
                            Err(refused) => {
                                assert_eq!(refused.status, Some(409), "a late post is refused: {refused}");
                                return acknowledged;
                            }
                        }
                    }
                    acknowledged
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300 + 100 * round)).await;
        server.client.savepoint(&id, true).await.expect("stop with a savepoint");
        let mut acknowledged = BTreeSet::new();
        for client in clients {
            acknowledged.extend(client.await.expect("client"));
        }
        let read: Vec<String> =
            output(&server.client, &id, "out").await.iter().map(|r| r["value"].to_string()).collect();
        let read_set: BTreeSet<String> = read.iter().cloned().collect();
        assert_eq!(read.len(), read_set.len(), "nothing was read twice");
        assert!(!acknowledged.is_empty());
        assert_eq!(read_set, acknowledged, "round {round}: the job read exactly what was acknowledged");
    }
}

/// A savepoint taken while the job runs commits nothing: the server killed right after it restores the job's
/// older checkpoint, and the records after that checkpoint are written once, not once by the savepoint and again
/// by the restored run.
#[tokio::test(flavor = "multi_thread")]
async fn a_savepoint_without_stop_then_a_kill_writes_each_record_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = "name: files\ncheckpoints: { interval: 1s }\noperators:\n  - { uid: src, source: { http: {} } }\n  - { uid: out, sink: { file: { path: out } }, input: src }\n";
    let server = ServerProcess::start(dir.path()).await;
    let id = submit(&server.client, spec).await;
    let lines = |from: u32, to: u32| (from..to).map(|n| format!("{{\"n\":{n}}}\n")).collect::<String>();
    server.client.ingest(&id, "src", lines(0, 50)).await.expect("ingest");
    // A checkpoint after the first fifty: they are committed.
    let out = dir.path().join("files/default/out");
    let started = std::time::Instant::now();
    while committed(&out).len() < 50 {
        assert!(started.elapsed() < Duration::from_secs(30), "the first records were committed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.client.ingest(&id, "src", lines(50, 100)).await.expect("ingest");
    wait_job(&server.client, &id, Duration::from_secs(30), |s| s["operators"][1]["records_in"].as_u64() >= Some(50))
        .await;
    server.client.savepoint(&id, false).await.expect("savepoint");
    server.kill();
    let server = ServerProcess::start(dir.path()).await;
    wait_job(&server.client, &id, Duration::from_secs(30), |s| s["state"] == "running").await;
    server.client.close_input(&id, "src").await.expect("close");
    wait_job(&server.client, &id, Duration::from_secs(60), |s| s["state"] == "finished").await;
    let written = committed(&out);
    let expected: Vec<String> = {
        let mut all: Vec<String> = (0..100).map(|n| format!("{{\"n\":{n}}}")).collect();
        all.sort();
        all
    };
    assert_eq!(written, expected, "each record once");
    server.kill();
}

/// A job is deleted, or cancelled, while a restart is deploying it (a function whose start takes a while): the
/// answer comes once that run is stopped, and nothing of the job runs or writes afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn delete_and_cancel_during_a_slow_restart_leave_no_run() {
    let server = TestServer::start().await;
    let c = &server.client;
    c.push_module("slow", None, fixture("slow-start")).await.expect("upload");
    c.push_module("faults", None, example(Rust, "test-faults").await).await.expect("upload");
    let spec = "name: slow\ncheckpoints: { interval: 100ms }\nrestart: { strategy: fixed_delay, attempts: 5, delay: 50ms }\noperators:\n  - { uid: src, source: { http: {} } }\n  - { uid: s, map: slow, input: src }\n  - { uid: m, map: faults, input: s }\n  - { uid: out, sink: discard, input: m }\n";
    for delete in [true, false] {
        let id = submit(c, spec).await;
        c.ingest(&id, "src", "panic\n".into()).await.expect("ingest");
        wait_job(c, &id, Duration::from_secs(30), |s| s["restarts"].as_array().is_some_and(|r| !r.is_empty())).await;
        // The restart is deploying now (its function's start takes a while).
        tokio::time::sleep(Duration::from_millis(100)).await;
        let checkpoints = server.data_dir().join("checkpoints/default").join(&id);
        if delete {
            let http = reqwest::Client::new();
            let deleted = http.delete(format!("{}/v1/jobs/{id}", server.url)).send().await.expect("delete");
            assert_eq!(deleted.status(), 204);
            assert_eq!(c.job(&id).await.expect_err("gone").status, Some(404));
        } else {
            let canceled = c.cancel(&id).await.expect("cancel");
            assert_eq!(canceled["state"], "canceled", "{canceled:#}");
        }
        // Nothing of the job comes back: no run, no checkpoints, no state.
        tokio::time::sleep(Duration::from_secs(2)).await;
        if delete {
            assert!(!checkpoints.exists(), "no checkpoint reappeared in {}", checkpoints.display());
            assert!(c.jobs().await.expect("jobs").as_array().is_some_and(|j| j.iter().all(|j| j["id"] != id)));
        } else {
            let status = c.job(&id).await.expect("status");
            assert_eq!(status["state"], "canceled", "{status:#}");
            assert!(!checkpoints.exists(), "a cancelled job keeps no checkpoints");
        }
        let usage = c.usage().await.expect("usage");
        assert_eq!(usage["used"]["jobs"], 0, "nothing counts against the quota: {usage:#}");
    }
}

/// One branch's bounded input ends and its exactly-once file sink finishes while another branch of the job later
/// fails (three times, restarted each time): the finished branch's output is committed by the job's final checkpoint,
/// never at its end of input, so the restarts write none of it again.
#[tokio::test(flavor = "multi_thread")]
async fn a_sink_that_finished_before_another_task_failed_writes_its_output_once() {
    let server = TestServer::start().await;
    let c = &server.client;
    c.push_module("faults", None, example(Rust, "test-faults").await).await.expect("upload");
    let spec = "name: branches\ncheckpoints: { interval: 1h }\nrestart: { strategy: fixed_delay, attempts: 3, delay: 100ms }\noperators:\n  - { uid: a, source: { http: {} } }\n  - { uid: out, sink: { file: { path: branch-a } }, input: a }\n  - { uid: b, source: { http: {} } }\n  - { uid: m, map: faults, input: b }\n  - { uid: rest, sink: discard, input: m }\n";
    let id = submit(c, spec).await;
    let lines: String = (0..100).map(|n| format!("{{\"n\":{n}}}\n")).collect();
    c.ingest(&id, "a", lines).await.expect("ingest");
    c.close_input(&id, "a").await.expect("close");
    let out = server.data_dir().join("files/default/branch-a");
    let started = std::time::Instant::now();
    while committed(&out).len() < 100 {
        assert!(started.elapsed() < Duration::from_secs(30), "branch a's output was committed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.ingest(&id, "b", "panic\n".into()).await.expect("ingest");
    let failed = wait_job(c, &id, Duration::from_secs(60), |s| s["state"] == "failed").await;
    assert_eq!(failed["restarts"].as_array().map(Vec::len), Some(3), "{failed:#}");
    let mut expected: Vec<String> = (0..100).map(|n| format!("{{\"n\":{n}}}")).collect();
    expected.sort();
    assert_eq!(committed(&out), expected, "each of branch a's records once");
}
