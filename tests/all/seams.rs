//! Guarantees where features meet: restarts, savepoints, upgrades and durable HTTP input, each together with
//! another. Every acknowledged record is counted.

use crate::support::{TestServer, submit, wait_job};
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
    let again = wait_job(&server.client, &id, Duration::from_secs(300), |s| read(s) || s["state"] != "running").await;
    assert_eq!(again["state"], "running", "{again:#}");
    assert_eq!(again["operators"][1]["records_in"], total, "the whole input, read again: {again:#}");
}
