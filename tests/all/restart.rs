//! The control plane survives a restart: modules and jobs are still there, and running jobs run again.

use crate::support::{Rust, TestServer, example, submit, wait_job};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn modules_and_running_jobs_survive_a_restart() {
    let mut server = TestServer::start().await;
    server.client.push_module("lower", None, example(Rust, "lowercase").await).await.expect("upload");
    let id = submit(
        &server.client,
        "name: durable\noperators:\n  - { uid: src, source: { http: {} } }\n  - { uid: m, map: lower, input: src }\n  - { uid: out, sink: http, input: m }\n",
    )
    .await;
    let finished = submit(
        &server.client,
        "name: stopped\noperators:\n  - { uid: src, source: { http: {} } }\n  - { uid: out, sink: http, input: src }\n",
    )
    .await;
    server.client.cancel(&finished).await.expect("cancel");

    server.restart().await;
    let c = &server.client;
    let modules = c.modules().await.expect("list");
    assert_eq!(modules[0]["name"], "lower", "{modules:#}");
    assert_eq!(modules[0]["version"], "1");
    let jobs = c.jobs().await.expect("list");
    assert_eq!(jobs.as_array().map(Vec::len), Some(2), "{jobs:#}");
    let status = wait_job(c, &id, Duration::from_secs(20), |s| s["state"] == "running").await;
    assert_eq!(status["name"], "durable");
    assert_eq!(c.job(&finished).await.expect("status")["state"], "canceled", "a cancelled job stays cancelled");

    c.ingest(&id, "src", "SHOUTING\n".into()).await.expect("the resumed job takes records");
    c.close_input(&id, "src").await.expect("close");
    let records = crate::support::output(c, &id, "out").await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["value"], "shouting");
}
