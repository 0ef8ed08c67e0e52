//! A tenant's HTTP input requests built to break the input log.

use crate::support::{TestServer, submit, wait_job};
use std::time::Duration;

/// One 64 MiB POST of `0\n` lines: 32 Mi records, whose batch in the log's layout is over 1 GiB. It is taken in
/// frames the log can read back, every record reaches the job, later POSTs are taken, and after a restart the job
/// reads on from its checkpoint past all of them.
#[tokio::test(flavor = "multi_thread")]
async fn a_post_of_tens_of_millions_of_tiny_records_is_read_back_whole() {
    let mut server = TestServer::start().await;
    let spec = "name: tiny\ncheckpoints: { interval: 1s }\noperators:\n  - { uid: src, source: { http: {} } }\n  - { uid: out, sink: discard, input: src }\n";
    let id = submit(&server.client, spec).await;
    let lines = 32 << 20;
    let body = "0\n".repeat(lines);
    let accepted = server.client.ingest(&id, "src", body).await.expect("the large POST is taken");
    assert_eq!(accepted["accepted"], lines);
    // The job is far behind: a POST waits, and may be told to come back (503 busy), until it catches up.
    assert_eq!(post_until_taken(&server.client, &id, "1\n2\n").await["accepted"], 2);
    let total = lines as u64 + 2;
    // Once a checkpoint covers every record (one begun after the job read the last), the server restarts: the job
    // goes on from that checkpoint.
    let read = |s: &serde_json::Value| s["operators"][1]["records_in"].as_u64() == Some(total);
    let all_read = wait_job(&server.client, &id, Duration::from_secs(600), read).await;
    let latest = all_read["checkpoints"]["latest"].as_u64().unwrap_or(0);
    wait_job(&server.client, &id, Duration::from_secs(60), |s| {
        s["checkpoints"]["latest"].as_u64().unwrap_or(0) >= latest + 2
    })
    .await;
    server.restart().await;
    wait_job(&server.client, &id, Duration::from_secs(60), |s| s["state"] == "running").await;
    post_until_taken(&server.client, &id, "3\n").await;
    server.client.close_input(&id, "src").await.expect("close");
    // The restored job reads on from its checkpoint: the one new record, none read twice, none missing.
    let ended = wait_job(&server.client, &id, Duration::from_secs(60), |s| s["state"] != "running").await;
    assert_eq!(ended["state"], "finished", "{ended:#}");
    assert_eq!(ended["operators"][1]["records_in"], 1, "{ended:#}");
}

/// Posts `lines` to the job's input `src`, again while the job is too far behind to take them (503 `busy`).
async fn post_until_taken(client: &eddy_server::client::Client, id: &str, lines: &str) -> serde_json::Value {
    let started = std::time::Instant::now();
    loop {
        match client.ingest(id, "src", lines.into()).await {
            Err(e) if e.code == "busy" && started.elapsed() < Duration::from_secs(600) => continue,
            taken => return taken.expect("the POST is taken once the job caught up"),
        }
    }
}
