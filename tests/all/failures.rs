//! User functions that trap, loop, eat memory or panic fail their job with a clear error; the server and other jobs
//! carry on.

use crate::support::{Rust, TestServer, example, fixture, submit, wait_ended};
use std::time::Duration;

const ONE_MAP: &str = "name: faulty
operators:
  - { uid: src, source: { http: {} } }
  - { uid: m, map: faulty, input: src }
  - { uid: out, sink: http, input: m }
";

/// Runs `module` as the map of a one-record job and returns the job's status once it ended.
async fn run_faulty(server: &TestServer, module: Vec<u8>, record: &str) -> serde_json::Value {
    let c = &server.client;
    c.push_module("faulty", None, module).await.expect("upload");
    let id = submit(c, ONE_MAP).await;
    c.ingest(&id, "src", record.to_string()).await.expect("ingest");
    let status = wait_ended(c, &id).await;
    assert_eq!(status["state"], "failed", "{status:#}");
    assert_eq!(status["error"]["operator"], "m", "the error names the operator: {status:#}");
    status
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trap_fails_the_job() {
    let server = TestServer::start().await;
    let status = run_faulty(&server, fixture("trap"), "x").await;
    let message = status["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("trapped"), "{message}");
    assert_eq!(status["error"]["domain"], "user");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endless_loop_hits_the_cpu_limit_while_the_server_answers() {
    let server = TestServer::start_with(|c| c.call_timeout = Duration::from_millis(500)).await;
    let c = &server.client;
    c.push_module("faulty", None, fixture("endless-loop")).await.expect("upload");
    c.push_module("echo", None, fixture("echo")).await.expect("upload");
    let looping = submit(c, ONE_MAP).await;
    c.ingest(&looping, "src", "x".into()).await.expect("ingest");
    // While the loop spins, the API answers and another job works.
    let healthy = submit(c, &ONE_MAP.replace("map: faulty", "map: echo")).await;
    c.ingest(&healthy, "src", "{\"n\":1}".into()).await.expect("ingest");
    c.close_input(&healthy, "src").await.expect("close");
    let records = crate::support::output(c, &healthy, "out").await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["value"]["n"], 1);
    let status = wait_ended(c, &looping).await;
    assert_eq!(status["state"], "failed");
    let message = status["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("CPU time limit of 500 ms"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_memory_bomb_hits_the_memory_limit() {
    let server = TestServer::start_with(|c| c.instance_memory_mb = 16).await;
    let status = run_faulty(&server, fixture("memory-bomb"), "x").await;
    let message = status["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("memory limit of 16 MiB"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_panic_surfaces_with_its_message_and_last_log_lines() {
    let server = TestServer::start().await;
    let status = run_faulty(&server, example(Rust, "test-faults").await, "panic").await;
    let message = status["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("the record asked for a panic"), "{message}");
    assert!(message.contains("src/lib.rs"), "with the panic's location: {message}");
    let logs: Vec<&str> = status["error"]["logs"].as_array().into_iter().flatten().filter_map(|l| l.as_str()).collect();
    assert!(logs.iter().any(|l| l.contains("about to panic on purpose")), "{logs:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rust_guest_that_allocates_without_end_is_stopped() {
    let server = TestServer::start_with(|c| c.instance_memory_mb = 32).await;
    let status = run_faulty(&server, example(Rust, "test-faults").await, "oom").await;
    let message = status["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("memory limit of 32 MiB") || message.contains("trapped"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_function_whose_init_fails_does_not_start() {
    let server = TestServer::start().await;
    let c = &server.client;
    c.push_module("stop", None, example(Rust, "stopwords").await).await.expect("upload");
    let spec = "name: j\noperators:\n  - { uid: src, source: { http: {} } }\n  - { uid: f, filter: { module: stop, config: { words: 42 } }, input: src }\n  - { uid: out, sink: http, input: f }\n";
    let err = c.submit(spec).await.expect_err("init refuses the config");
    assert_eq!((err.status, err.code.as_str()), (Some(422), "cannot_start"));
    assert!(err.message.contains("init failed"), "{err}");
    assert!(err.message.contains("config.words must be a list of strings"), "{err}");
    assert_eq!(c.jobs().await.expect("list").as_array().map(Vec::len), Some(0), "nothing half-started is kept");
    let fine = spec.replace("words: 42", "words: [a]");
    crate::support::submit(c, &fine).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn guests_have_no_filesystem_or_network() {
    let server = TestServer::start().await;
    let c = &server.client;
    c.push_module("faulty", None, example(Rust, "test-faults").await).await.expect("upload");
    let id = submit(c, ONE_MAP).await;
    c.ingest(&id, "src", "fs\nnet\n".into()).await.expect("ingest");
    c.close_input(&id, "src").await.expect("close");
    let outcomes: Vec<String> = crate::support::output(c, &id, "out")
        .await
        .iter()
        .map(|r| r["value"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    assert!(outcomes[0].starts_with("fs denied"), "no host files are visible: {outcomes:?}");
    assert!(outcomes[1].starts_with("net denied"), "no connections can be made: {outcomes:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_wakes_a_guest_that_sleeps() {
    let server = TestServer::start().await;
    let c = &server.client;
    c.push_module("faulty", None, example(Rust, "test-faults").await).await.expect("upload");
    let id = submit(c, ONE_MAP).await;
    c.ingest(&id, "src", "sleep".into()).await.expect("ingest");
    crate::support::wait_job(c, &id, Duration::from_secs(20), |s| s["operators"][1]["records_in"] == 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Cancel waits (up to ten seconds) for the job to stop: a sleeping guest that went unnoticed would keep it running.
    let status = c.cancel(&id).await.expect("cancel");
    assert_eq!(status["state"], "canceled", "{status:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_may_not_sleep_past_its_time_limit() {
    let server = TestServer::start_with(|c| c.call_timeout = Duration::from_millis(500)).await;
    let status = run_faulty(&server, example(Rust, "test-faults").await, "sleep").await;
    let message = status["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("waited (sleep or poll) longer than its time limit of 500 ms"), "{message}");
}

/// A job's journal keeps what its functions logged and what happened to the job, for `eddy job logs`; a job that
/// another tenant owns is not found.
#[tokio::test(flavor = "multi_thread")]
async fn a_jobs_journal_keeps_its_functions_log_lines_and_its_failure() {
    let server = TestServer::start().await;
    let c = &server.client;
    c.push_module("faulty", None, example(Rust, "test-faults").await).await.expect("upload");
    let id = submit(c, ONE_MAP).await;
    c.ingest(&id, "src", "panic".to_string()).await.expect("ingest");
    let status = wait_ended(c, &id).await;
    assert_eq!(status["state"], "failed", "{status:#}");

    let mut lines = Vec::new();
    c.follow_logs(&id, false, |event| {
        if event.event == "end" {
            return false;
        }
        lines.push(serde_json::from_str::<serde_json::Value>(&event.data).expect("a JSON line"));
        true
    })
    .await
    .expect("logs");
    let logged = lines.iter().position(|l| {
        l["text"] == "about to panic on purpose"
            && l["level"] == "info"
            && l["udf"].as_str().is_some_and(|u| u.ends_with("/m#0"))
    });
    let failed = lines.iter().position(|l| {
        l["event"] == "failed" && l["text"].as_str().is_some_and(|t| t.contains("the record asked for a panic"))
    });
    let running = lines.iter().position(|l| l["event"] == "running");
    assert!(running < logged && logged < failed && failed.is_some() && running.is_some(), "{lines:#?}");
    assert!(lines.iter().all(|l| l["ts"].as_i64().is_some_and(|t| t > 0)), "every line has its time");
    // The same through the route that names the tenant.
    let mut through_tenant = 0;
    let named = server.client_with(None, Some("default"));
    named
        .follow_logs(&id, false, |e| {
            through_tenant += usize::from(e.event != "end");
            e.event != "end"
        })
        .await
        .expect("logs");
    assert_eq!(through_tenant, lines.len());
    let missing = c.follow_logs("no-such-job", false, |_| true).await.expect_err("no such job");
    assert_eq!(missing.status, Some(404));
}
