//! Upgrades of a running job's modules: the state goes over to the new logic; an incompatible module is refused
//! while the job runs on untouched; a new module that fails on its first record is rolled back to the old one
//! from the same savepoint.

use crate::support::{Rust, TestServer, example, output, submit, wait_job};
use eddy_server::client::Client;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// Visits per user, counted by module `visits` at version `version`. The first checkpoint of a run (which ends an
/// upgrade's probation) comes `interval` after it starts.
fn spec(version: &str, interval: &str) -> String {
    format!(
        "name: visits\ncheckpoints: {{ interval: {interval} }}\noperators:\n  - {{ uid: src, source: {{ http: {{}} }} }}\n  - {{ uid: count, process: visits@{version}, input: src, key_by: {{ json: \"$.user\" }} }}\n  - {{ uid: out, sink: http, input: count }}\n"
    )
}

fn visits(users: &[&str]) -> String {
    users.iter().map(|u| format!("{{\"user\":\"{u}\",\"page\":\"/{u}\"}}\n")).collect()
}

async fn push_versions(c: &Client) {
    for (version, example_name) in [
        ("1", "visit-counter"),
        ("2", "visit-counter-v2"),
        ("list", "visit-counter-retyped"),
        ("broken", "test-counter-faults"),
    ] {
        c.push_module("visits", Some(version), example(Rust, example_name).await).await.expect("upload");
    }
}

/// Waits until upgrade `number` of the job has an outcome; returns it.
async fn upgrade_outcome(c: &Client, job: &str, number: u64) -> Value {
    let status = wait_job(c, job, Duration::from_secs(60), |s| {
        s["upgrades"]
            .as_array()
            .is_some_and(|u| u.iter().any(|u| u["number"] == number && u["outcome"] != "in_progress"))
    })
    .await;
    status["upgrades"].as_array().and_then(|u| u.iter().find(|u| u["number"] == number)).cloned().expect("upgrade")
}

async fn records_out(c: &Client, job: &str, uid: &str, count: u64) {
    wait_job(c, job, Duration::from_secs(30), |s| {
        s["operators"].as_array().into_iter().flatten().any(|o| o["uid"] == uid && o["records_out"] == count)
    })
    .await;
}

/// (user, visits, logic) of every output record, in order.
fn counted(records: &[Value]) -> Vec<(String, u64, String)> {
    records
        .iter()
        .map(|r| {
            let v = &r["value"];
            (
                v["user"].as_str().unwrap_or_default().into(),
                v["visits"].as_u64().unwrap_or(0),
                v["logic"].as_str().unwrap_or_default().into(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upgrade_keeps_the_state_old_logic_before_new_after() {
    let server = TestServer::start().await;
    let c = &server.client;
    push_versions(c).await;
    let job = submit(c, &spec("1", "1s")).await;
    c.ingest(&job, "src", visits(&["ann", "bob", "ann"])).await.expect("ingest");
    records_out(c, &job, "count", 3).await;

    let started = c.upgrade(&job, &["visits@2".to_string()], false).await.expect("the upgrade is checked and starts");
    assert_eq!(started["outcome"], "in_progress", "{started:#}");
    // Once the savepoint is taken, records wait in the input's log for the new run.
    wait_job(c, &job, Duration::from_secs(30), |s| s["upgrades"][0]["savepoint"].is_string()).await;
    c.ingest(&job, "src", visits(&["ann"])).await.expect("ingest during the upgrade");
    let upgrade = upgrade_outcome(c, &job, 1).await;
    assert_eq!(upgrade["outcome"], "upgraded", "{upgrade:#}");
    assert!(upgrade["downtime_ms"].as_u64().is_some(), "{upgrade:#}");
    assert!(upgrade["savepoint"].as_str().is_some(), "{upgrade:#}");
    let status = c.job(&job).await.expect("status");
    assert_eq!(status["state"], "running");
    assert_eq!(status["running_modules"]["visits@1"], "visits@2", "{status:#}");

    c.ingest(&job, "src", visits(&["bob", "cid"])).await.expect("ingest");
    c.close_input(&job, "src").await.expect("close");
    let expected: Vec<(String, u64, String)> =
        [("ann", 1, "v1"), ("bob", 1, "v1"), ("ann", 2, "v1"), ("ann", 3, "v2"), ("bob", 2, "v2"), ("cid", 1, "v2")]
            .iter()
            .map(|(u, n, l)| (u.to_string(), *n, l.to_string()))
            .collect();
    assert_eq!(counted(&output(c, &job, "out").await), expected, "counts go on across the upgrade, each record once");
    // The new version's own state began with the upgrade.
    let savepoint = upgrade["savepoint"].as_str().expect("savepoint");
    let ann = c.savepoint_state(savepoint, "count", "ann").await.expect("state of ann");
    assert_eq!(ann["entries"].as_array().map(Vec::len), Some(1), "only `visits` before the upgrade: {ann:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_incompatible_upgrade_is_refused_and_the_job_runs_on_untouched() {
    let server = TestServer::start().await;
    let c = &server.client;
    push_versions(c).await;
    let job = submit(c, &spec("1", "1h")).await;
    c.ingest(&job, "src", visits(&["ann"])).await.expect("ingest");
    records_out(c, &job, "count", 1).await;

    let refused = c.upgrade(&job, &["visits@list".to_string()], true).await.expect_err("`visits` would be misread");
    assert_eq!((refused.status, refused.code.as_str()), (Some(409), "incompatible_upgrade"), "{refused}");
    assert!(
        refused
            .message
            .contains("operator `count`: state `visits` was a value state and would be read as a list state"),
        "{refused}"
    );
    for (modules, code) in [
        (vec!["visits@9".to_string()], "unknown_module"),
        (vec!["visits".to_string()], "invalid_module_version"),
        (vec!["other@1".to_string()], "unknown_module"),
    ] {
        let error = c.upgrade(&job, &modules, false).await.expect_err("refused");
        assert_eq!(error.code, code, "{modules:?}: {error}");
    }
    let status = c.job(&job).await.expect("status");
    assert_eq!(status["state"], "running");
    assert_eq!(status["upgrades"].as_array().map(Vec::len), Some(0), "{status:#}");
    assert_eq!(status["running_modules"]["visits@1"], "visits@1");

    c.ingest(&job, "src", visits(&["ann"])).await.expect("ingest");
    c.close_input(&job, "src").await.expect("close");
    let expected = vec![("ann".to_string(), 1, "v1".to_string()), ("ann".to_string(), 2, "v1".to_string())];
    assert_eq!(counted(&output(c, &job, "out").await), expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upgrade_whose_module_fails_on_its_first_record_rolls_back_from_the_same_savepoint() {
    let server = TestServer::start().await;
    let c = &server.client;
    push_versions(c).await;
    // The new run's probation lasts until its first checkpoint, well after it reads its first record.
    let job = submit(c, &spec("1", "3s")).await;
    c.ingest(&job, "src", visits(&["ann", "ann"])).await.expect("ingest");
    records_out(c, &job, "count", 2).await;

    c.upgrade(&job, &["visits@broken".to_string()], false).await.expect("the checks pass");
    // Once the savepoint is taken, the old run reads nothing more: these records go to the new run.
    wait_job(c, &job, Duration::from_secs(30), |s| s["upgrades"][0]["savepoint"].is_string()).await;
    c.ingest(&job, "src", visits(&["ann", "bob"])).await.expect("ingest");
    let upgrade = upgrade_outcome(c, &job, 1).await;
    assert_eq!(upgrade["outcome"], "rolled_back", "{upgrade:#}");
    let reason = upgrade["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("this version is broken"), "the reason names the failure: {reason}");
    let status = c.job(&job).await.expect("status");
    assert_eq!(status["running_modules"]["visits@1"], "visits@1", "{status:#}");

    c.close_input(&job, "src").await.expect("close");
    let counts: BTreeMap<String, u64> = counted(&output(c, &job, "out").await)
        .into_iter()
        .filter(|(_, _, l)| l == "v1")
        .map(|(u, n, _)| (u, n))
        .fold(BTreeMap::new(), |mut last, (u, n)| {
            last.insert(u, n);
            last
        });
    assert_eq!(counts, BTreeMap::from([("ann".to_string(), 3), ("bob".to_string(), 1)]), "the old logic counted on");
    let state = wait_job(c, &job, Duration::from_secs(30), |s| s["state"] != "running").await;
    assert_eq!(state["state"], "finished", "{state:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_module_that_declares_its_states_may_open_only_those_as_declared() {
    let server = TestServer::start().await;
    let c = &server.client;
    let uploaded = c.push_module("faults", None, example(Rust, "test-counter-faults").await).await.expect("upload");
    assert_eq!(
        uploaded["declared_states"],
        serde_json::json!([{ "name": "visits", "kind": "value", "ttl_ms": null }]),
        "{uploaded:#}"
    );
    let job = submit(c, &spec("1", "1h").replace("visits@1", "faults")).await;
    c.ingest(&job, "src", "{\"user\":\"ann\",\"do\":\"undeclared\"}\n{\"user\":\"ann\",\"do\":\"as-list\"}\n".into())
        .await
        .expect("ingest");
    c.close_input(&job, "src").await.expect("close");
    let answers: Vec<String> =
        output(c, &job, "out").await.iter().map(|r| r["value"].as_str().unwrap_or_default().to_string()).collect();
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert!(answers[0].contains("state `sneaky` is not among the states this module declares (visits)"), "{answers:?}");
    assert!(
        answers[1].contains("state `visits` is declared as a value state and cannot be opened as a list state"),
        "{answers:?}"
    );
}
