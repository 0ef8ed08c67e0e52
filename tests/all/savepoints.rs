//! Savepoints over the API: a job stopped with a savepoint goes on, with changed logic, from the state it had; a
//! savepoint that does not fit the new job is refused unless its extra state may be dropped; savepoints belong to
//! their tenant.

use crate::support::{MemoryLimit, Rust, ServerProcess, TestServer, example, output, submit, wait_job};
use eddy_server::config::{TenantConfig, token_hash};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// Words per key counted in one-hour windows; `map` is the module that prepares each record.
fn spec(map: &str, window_uid: &str) -> String {
    format!(
        "name: words\ncheckpoints: {{ interval: 1h }}\noperators:\n  - {{ uid: src, source: {{ http: {{}} }}, watermark: {{ out_of_orderness: 0ms, timestamp: {{ json: \"$.ts\" }} }} }}\n  - {{ uid: m, map: {map}, input: src }}\n  - {{ uid: {window_uid}, input: m, key_by: {{ json: \"$.word\" }}, window: {{ tumbling: 1h }}, aggregate: {{ builtin: count }} }}\n  - {{ uid: out, sink: http, input: {window_uid} }}\n"
    )
}

fn words(list: &[&str]) -> String {
    list.iter().enumerate().map(|(i, w)| format!("{{\"word\":\"{w}\",\"ts\":{}}}\n", i * 10)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_goes_on_from_its_savepoint_with_new_logic_and_the_state_it_had() {
    let server = TestServer::start().await;
    let c = &server.client;
    c.push_module("lower", None, example(Rust, "lowercase").await).await.expect("upload");
    c.push_module("same", None, example(Rust, "test-faults").await).await.expect("upload");

    let before = submit(c, &spec("lower", "w")).await;
    c.ingest(&before, "src", words(&["Apple", "APPLE", "Pear"])).await.expect("ingest");
    // Stopping waits until the job has read every record its input accepted.
    let savepoint = c.savepoint(&before, true).await.expect("stop with a savepoint");
    let id = savepoint["id"].as_str().expect("id").to_string();
    assert_eq!(c.job(&before).await.expect("status")["state"], "canceled");
    let listed = c.savepoints().await.expect("list");
    assert_eq!(listed[0]["id"], id.as_str(), "{listed:#}");
    assert_eq!(listed[0]["job"], before.as_str());

    // The savepoint shows what the window held for one key, and nothing for a key it never saw.
    let apple = c.savepoint_state(&id, "w", "apple").await.expect("state of `apple`");
    assert_eq!(apple["entries"].as_array().map(Vec::len), Some(1), "{apple:#}");
    assert_eq!(apple["entries"][0]["state"], "window-contents");
    assert_eq!(apple["entries"][0]["namespace"]["window"]["start"], 0);
    assert_eq!(apple["entries"][0]["namespace"]["window"]["end"], 3_600_000);
    let timers = apple["timers"].as_array().cloned().unwrap_or_default();
    assert!(timers.iter().any(|t| t["timestamp"] == 3_599_999), "the window's end-of-window timer: {apple:#}");
    let nobody = c.savepoint_state(&id, "w", "kiwi").await.expect("state of `kiwi`");
    assert_eq!(nobody["entries"].as_array().map(Vec::len), Some(0), "{nobody:#}");
    let no_operator = c.savepoint_state(&id, "nope", "apple").await.expect_err("no such operator");
    assert_eq!(no_operator.status, Some(404));

    // New logic from the savepoint: records are no longer lower-cased, and the counts so far are kept.
    let after = c.submit_from(&spec("same", "w"), &id, false).await.expect("submit from the savepoint");
    let after = after["id"].as_str().expect("id").to_string();
    c.ingest(&after, "src", words(&["Apple", "pear"])).await.expect("ingest");
    c.close_input(&after, "src").await.expect("close");
    let counts: BTreeMap<String, u64> = output(c, &after, "out")
        .await
        .iter()
        .map(|r| {
            (r["value"]["key"].as_str().unwrap_or_default().to_string(), r["value"]["count"].as_u64().unwrap_or(0))
        })
        .collect();
    let expected: BTreeMap<String, u64> =
        [("Apple".to_string(), 1), ("apple".to_string(), 2), ("pear".to_string(), 2)].into_iter().collect();
    assert_eq!(counts, expected, "old logic before the savepoint, new after, one count per key throughout");
    assert_eq!(c.job(&after).await.expect("status")["checkpoints"]["restored_from"], savepoint["checkpoint"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_savepoint_that_does_not_fit_is_refused_unless_its_extra_state_may_go() {
    let server = TestServer::start().await;
    let c = &server.client;
    c.push_module("lower", None, example(Rust, "lowercase").await).await.expect("upload");
    let job = submit(c, &spec("lower", "w")).await;
    c.ingest(&job, "src", words(&["a", "b"])).await.expect("ingest");
    crate::support::wait_job(c, &job, std::time::Duration::from_secs(20), |s| s["operators"][0]["records_out"] == 2)
        .await;
    let savepoint = c.savepoint(&job, true).await.expect("savepoint");
    let id = savepoint["id"].as_str().expect("id");

    let refused = c.submit_from(&spec("lower", "renamed"), id, false).await.expect_err("state of `w` would be lost");
    assert_eq!(refused.status, Some(422), "{refused}");
    assert!(refused.message.contains("operators the job does not have: w"), "{refused}");
    let unknown = c.submit_from(&spec("lower", "w"), "no-such-savepoint", false).await.expect_err("unknown");
    assert_eq!(unknown.status, Some(404), "{unknown}");
    let allowed = c.submit_from(&spec("lower", "renamed"), id, true).await.expect("dropping the state is allowed");
    c.cancel(allowed["id"].as_str().expect("id")).await.expect("cancel");

    c.delete_savepoint(id).await.expect("delete");
    assert_eq!(c.savepoints().await.expect("list").as_array().map(Vec::len), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_sees_only_its_own_savepoints() {
    let server = TestServer::start_with(|c| {
        c.tenants = vec![
            TenantConfig::new("acme", &token_hash("acme-secret")),
            TenantConfig::new("globex", &token_hash("globex-secret")),
        ];
    })
    .await;
    let acme = server.client_with(Some("acme-secret"), None);
    let globex = server.client_with(Some("globex-secret"), None);
    let spec = "name: s\ncheckpoints: { interval: 1h }\noperators:\n  - { uid: src, source: { http: {} } }\n  - { uid: out, sink: http, input: src }\n";
    let job = submit(&acme, spec).await;
    let savepoint = acme.savepoint(&job, false).await.expect("savepoint");
    let id = savepoint["id"].as_str().expect("id");
    assert_eq!(globex.savepoints().await.expect("list").as_array().map(Vec::len), Some(0));
    let stolen = globex.submit_from(spec, id, false).await.expect_err("another tenant's savepoint");
    assert_eq!(stolen.status, Some(404), "{stolen}");
    assert_eq!(globex.delete_savepoint(id).await.expect_err("not globex's").status, Some(404));
    assert_eq!(globex.savepoint_state(id, "out", "k").await.expect_err("not globex's").status, Some(404));
    assert_eq!(acme.savepoints().await.expect("list").as_array().map(Vec::len), Some(1));
    let plain =
        "name: p\noperators:\n  - { uid: src, source: { http: {} } }\n  - { uid: out, sink: http, input: src }\n";
    let no_checkpoints = submit(&acme, plain).await;
    let refused = acme.savepoint(&no_checkpoints, false).await.expect_err("no checkpoints");
    assert!(refused.message.contains("add `checkpoints`"), "{refused}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_savepoint_shows_exactly_the_value_list_and_map_state_of_one_key() {
    let server = TestServer::start().await;
    let c = &server.client;
    c.push_module("fraud", None, example(Rust, "fraud-detection").await).await.expect("upload");
    let spec = "name: fraud\ncheckpoints: { interval: 1h }\noperators:\n  - { uid: tx, source: { http: {} }, watermark: { out_of_orderness: 5s, timestamp: { json: \"$.ts\" } } }\n  - { uid: detect, input: tx, key_by: { json: \"$.account\" }, process: fraud }\n  - { uid: alerts, sink: http, input: detect }\n";
    let job = submit(c, spec).await;
    let transactions = "{\"account\":\"acct-1\",\"merchant\":\"coffee-shop\",\"amount\":0.5,\"ts\":1704067200000}\n\
                        {\"account\":\"acct-2\",\"merchant\":\"bookstore\",\"amount\":42.0,\"ts\":1704067210000}\n\
                        {\"account\":\"acct-1\",\"merchant\":\"bookstore\",\"amount\":24.0,\"ts\":1704067220000}\n";
    c.ingest(&job, "tx", transactions.to_string()).await.expect("ingest");
    crate::support::wait_job(c, &job, std::time::Duration::from_secs(20), |s| s["operators"][1]["records_in"] == 3)
        .await;
    let savepoint = c.savepoint(&job, false).await.expect("savepoint");
    let id = savepoint["id"].as_str().expect("id");

    let held = c.savepoint_state(id, "detect", "acct-1").await.expect("state of acct-1");
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let frame = |amount: f64| [8u32.to_le_bytes().as_slice(), &amount.to_le_bytes()].concat();
    let expected = serde_json::json!([
        // List state: one frame (length, then the payload) per element, oldest first.
        { "state": "amounts", "namespace": "none", "value": { "hex": hex(&[frame(0.5), frame(24.0)].concat()) } },
        // Map state: one entry per user key, in byte order.
        { "state": "merchants", "namespace": { "map_key": { "text": "bookstore" } }, "value": { "hex": hex(&1u64.to_le_bytes()) } },
        { "state": "merchants", "namespace": { "map_key": { "text": "coffee-shop" } }, "value": { "hex": hex(&1u64.to_le_bytes()) } },
        // Value state.
        { "state": "small", "namespace": "none", "value": { "text": "{\"time\":1704067200000,\"amount\":0.5}" } },
    ]);
    assert_eq!(held["entries"], expected, "{held:#}");
    assert_eq!(
        held["timers"],
        serde_json::json!([{ "domain": "event_time", "timestamp": 1704067260000i64, "namespace": "none" }]),
        "the suspicion window's end"
    );
    let nothing = c.savepoint_state(id, "detect", "acct-2").await.expect("state of acct-2");
    assert_eq!(nothing["entries"], serde_json::json!([]), "acct-2 never had a small transaction: {nothing:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn stopping_with_drain_fires_every_window_before_the_savepoint() {
    let server = TestServer::start().await;
    let c = &server.client;
    c.push_module("lower", None, example(Rust, "lowercase").await).await.expect("upload");
    let job = submit(c, &spec("lower", "w")).await;
    c.ingest(&job, "src", words(&["a", "B", "b"])).await.expect("ingest");
    let refused = c.savepoint_with(&job, false, true).await.expect_err("drain needs stop");
    assert_eq!(refused.code, "drain_without_stop", "{refused}");
    c.savepoint_with(&job, true, true).await.expect("stop with drain");
    let counts: BTreeMap<String, u64> = output(c, &job, "out")
        .await
        .iter()
        .map(|r| (r["value"]["key"].as_str().unwrap_or_default().into(), r["value"]["count"].as_u64().unwrap_or(0)))
        .collect();
    assert_eq!(counts, BTreeMap::from([("a".into(), 1), ("b".into(), 2)]), "the open hour's window fired");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_savepoint_downloads_as_a_tar_archive_of_its_files() {
    let server = TestServer::start().await;
    let c = &server.client;
    c.push_module("lower", None, example(Rust, "lowercase").await).await.expect("upload");
    let job = submit(c, &spec("lower", "w")).await;
    let savepoint = c.savepoint(&job, false).await.expect("savepoint");
    let id = savepoint["id"].as_str().expect("id");
    let archive = c.download_savepoint(id).await.expect("download");
    let mut names = Vec::new();
    for entry in tar::Archive::new(archive.as_slice()).entries().expect("a tar archive") {
        let mut entry = entry.expect("entry");
        let name = entry.path().expect("path").display().to_string();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).expect("read");
        if name.ends_with("/_metadata") {
            let metadata: serde_json::Value = serde_json::from_slice(&bytes).expect("metadata JSON");
            assert_eq!(metadata["checkpoint"], savepoint["checkpoint"], "{metadata:#}");
        } else if !name.ends_with("/_savepoint") {
            assert!(bytes.starts_with(b"EDDYSNP\0"), "{name} is a task snapshot");
        }
        names.push(name);
    }
    names.sort();
    // One file per task: `m` runs chained behind `src`, and `out` behind `w`.
    let expected: Vec<String> =
        ["_metadata", "_savepoint", "src-0", "w-0"].iter().map(|n| format!("{id}/{n}")).collect();
    assert_eq!(names, expected);
    let unknown = c.download_savepoint("nope").await.expect_err("no such savepoint");
    assert_eq!(unknown.status, Some(404), "{unknown}");
}

/// Visits per user on state backend `backend`.
fn counter(backend: &str) -> String {
    format!(
        "name: visits\nstate: {{ backend: {backend} }}\ncheckpoints: {{ interval: 1h }}\noperators:\n  - {{ uid: src, source: {{ http: {{}} }} }}\n  - {{ uid: count, process: visits, input: src, key_by: {{ json: \"$.user\" }} }}\n  - {{ uid: out, sink: http, input: count }}\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_memory_and_rocksdb_backends_restore_each_others_savepoints() {
    let server = TestServer::start().await;
    let c = &server.client;
    c.push_module("visits", None, example(Rust, "visit-counter").await).await.expect("upload");
    let visit = |users: &[&str]| users.iter().map(|u| format!("{{\"user\":\"{u}\"}}\n")).collect::<String>();
    let mut from: Option<String> = None;
    let mut states = Vec::new();
    for (backend, users) in [("memory", ["ann", "bob"]), ("rocksdb", ["ann", "cid"]), ("memory", ["ann", "bob"])] {
        let job = match &from {
            None => submit(c, &counter(backend)).await,
            Some(savepoint) => {
                let view = c.submit_from(&counter(backend), savepoint, false).await.expect("restores the other's");
                view["id"].as_str().expect("id").to_string()
            }
        };
        c.ingest(&job, "src", visit(&users)).await.expect("ingest");
        let savepoint = c.savepoint(&job, true).await.expect("stop with a savepoint");
        let id = savepoint["id"].as_str().expect("id").to_string();
        let last = output(c, &job, "out").await.last().cloned().expect("output");
        states.push((backend, last["value"].clone(), c.savepoint_state(&id, "count", "ann").await.expect("ann")));
        from = Some(id);
    }
    let visits: Vec<u64> = states.iter().map(|(_, last, _)| last["visits"].as_u64().unwrap_or(0)).collect();
    assert_eq!(visits, [1, 1, 2], "bob, cid, bob: each counted on from the other backend's savepoint");
    let ann: Vec<Value> = states.iter().map(|(_, _, held)| held["entries"][0]["value"].clone()).collect();
    let le =
        |n: i64| serde_json::json!({ "hex": n.to_le_bytes().iter().map(|b| format!("{b:02x}")).collect::<String>() });
    assert_eq!(ann, [le(1), le(2), le(3)], "{states:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_savepoint_whose_state_layout_does_not_fit_the_operator_is_refused() {
    let server = TestServer::start().await;
    let c = &server.client;
    c.push_module("lower", None, example(Rust, "lowercase").await).await.expect("upload");
    c.push_module("visits", None, example(Rust, "visit-counter").await).await.expect("upload");
    let job = submit(c, &spec("lower", "w")).await;
    c.ingest(&job, "src", words(&["a", "b"])).await.expect("ingest");
    let savepoint = c.savepoint(&job, true).await.expect("stop with a savepoint");
    let id = savepoint["id"].as_str().expect("id");

    // Same uid, another kind of operator: a process function cannot read a window's state.
    let process = "name: words\ncheckpoints: { interval: 1h }\noperators:\n  - { uid: src, source: { http: {} } }\n  - { uid: m, map: lower, input: src }\n  - { uid: w, input: m, key_by: { json: \"$.word\" }, process: visits }\n  - { uid: out, sink: http, input: w }\n";
    let refused = c.submit_from(process, id, true).await.expect_err("window state under a process function");
    assert_eq!(refused.status, Some(422), "{refused}");
    assert!(refused.message.contains("holds state of layout `window/2/tumbling/"), "{refused}");
    assert!(refused.message.contains("which this process operator (layout `process/1`) cannot read"), "{refused}");
    assert!(refused.message.contains("`w`"), "the operator's uid is named: {refused}");
    assert!(c.jobs().await.expect("jobs").as_array().is_some_and(|j| j.len() == 1), "nothing was left running");
}

/// A savepoint of a built-in `count` window restored as `avg`, or a tumbling window's state restored into session
/// and global windows: each is refused with both layouts named, since the accumulators or windows would be read
/// as something they are not.
#[tokio::test(flavor = "multi_thread")]
async fn a_window_restores_only_state_of_the_same_window_kind_and_aggregate() {
    let server = TestServer::start().await;
    let c = &server.client;
    let job = |window: &str, aggregate: &str| {
        format!(
            "name: w\ncheckpoints: {{ interval: 1h }}\noperators:\n  - {{ uid: src, source: {{ http: {{}} }}, watermark: {{ out_of_orderness: 0ms, timestamp: {{ json: \"$.ts\" }} }} }}\n  - {{ uid: w, input: src, key_by: {{ json: \"$.word\" }}, window: {window}, aggregate: {aggregate} }}\n  - {{ uid: out, sink: http, input: w }}\n"
        )
    };
    let counting = submit(c, &job("{ tumbling: 1h }", "{ builtin: count }")).await;
    c.ingest(&counting, "src", words(&["a", "a"])).await.expect("ingest");
    let savepoint = c.savepoint(&counting, true).await.expect("stop with a savepoint");
    let id = savepoint["id"].as_str().expect("id");
    for (window, aggregate, layout) in [
        ("{ tumbling: 1h }", "{ builtin: avg, field: $.ts }", "window/2/tumbling/accumulators/builtin-avg"),
        ("{ session: 1h }", "{ builtin: count }", "window/2/session/accumulators/builtin-count"),
        ("{ global: {}, trigger: { count: 5 } }", "{ builtin: count }", "window/2/global/accumulators/builtin-count"),
    ] {
        let refused = c.submit_from(&job(window, aggregate), id, false).await.expect_err(layout);
        assert_eq!(refused.status, Some(422), "{refused}");
        assert!(
            refused.message.contains("holds state of layout `window/2/tumbling/accumulators/builtin-count`"),
            "{refused}"
        );
        assert!(refused.message.contains(&format!("(layout `{layout}`)")), "{refused}");
    }
    // The same window and aggregate go on from the savepoint.
    let same = c.submit_from(&job("{ tumbling: 1h }", "{ builtin: count }"), id, false).await.expect("same layout");
    let id = same["id"].as_str().expect("id").to_string();
    c.ingest(&id, "src", words(&["a"])).await.expect("ingest");
    c.close_input(&id, "src").await.expect("close");
    let counts = output(c, &id, "out").await;
    assert_eq!(counts.len(), 1, "{counts:?}");
    assert_eq!(counts[0]["value"]["count"], 3, "two counted before the savepoint and one after: {counts:?}");
}

/// A RocksDB job whose state is three times the memory its server may use (a memory cgroup; where none can be
/// made, the server's peak resident memory is held to the same limit) takes a savepoint, is upgraded and is
/// rescaled from its savepoint: state streams through in chunks, never whole, and every key's state arrives.
#[tokio::test(flavor = "multi_thread")]
async fn a_rocksdb_job_with_state_three_times_its_memory_is_upgraded_and_rescaled() {
    const LIMIT: u64 = 320 << 20;
    const RECORD: usize = 1 << 20;
    let records = (3 * LIMIT as usize).div_ceil(RECORD);
    let dir = tempfile::tempdir().expect("dir");
    let env = [("EDDY_STATE_BACKEND", "rocksdb"), ("EDDY_ROCKSDB_MEMORY_MB", "24")];
    let server = ServerProcess::start_with_env(dir.path(), &env).await;
    let limit = MemoryLimit::new(LIMIT);
    if let Ok(limit) = &limit {
        limit.add(server.pid()).expect("the server goes into the cgroup");
    }
    let c = &server.client;
    let lower = example(Rust, "lowercase").await;
    c.push_module("lower", Some("1"), lower.clone()).await.expect("upload");
    c.push_module("lower", Some("2"), lower).await.expect("upload");
    // Each key keeps its one record (1 MiB) as a window element until the day's window fires.
    let spec = |parallelism: u32| {
        format!(
            "name: big\ncheckpoints: {{ interval: 2s }}\noperators:\n  - {{ uid: src, source: {{ http: {{}} }}, watermark: {{ out_of_orderness: 0ms, timestamp: {{ json: \"$.ts\" }} }} }}\n  - {{ uid: m, map: \"lower@1\", input: src }}\n  - {{ uid: w, input: m, key_by: {{ json: \"$.key\" }}, window: {{ tumbling: 1d, evictor: {{ count: 10 }} }}, aggregate: {{ builtin: count }}, parallelism: {parallelism} }}\n  - {{ uid: out, sink: http, input: w }}\n"
        )
    };
    let job = submit(c, &spec(1)).await;
    let pad = "x".repeat(RECORD - 64);
    for first in (0..records).step_by(3) {
        let lines: String = (first..(first + 3).min(records))
            .map(|i| format!("{{\"key\":\"k{i}\",\"ts\":1700000000000,\"pad\":\"{pad}\"}}\n"))
            .collect();
        c.ingest(&job, "src", lines).await.expect("ingest");
    }
    let read = |s: &Value| s["operators"][2]["records_in"].as_u64() == Some(records as u64);
    wait_job(c, &job, Duration::from_secs(600), read).await;

    // The upgrade stops with a savepoint and restores the state into a new run.
    c.upgrade(&job, &["lower@2".to_string()], false).await.expect("the upgrade starts");
    let upgraded = |s: &Value| s["upgrades"][0]["outcome"] != "in_progress";
    let status = wait_job(c, &job, Duration::from_secs(600), upgraded).await;
    assert_eq!(status["upgrades"][0]["outcome"], "upgraded", "{status:#}");

    let savepoint = c.savepoint(&job, true).await.expect("stop with a savepoint");
    let bytes = savepoint["bytes"].as_u64().unwrap_or(0);
    assert!(bytes > 3 * LIMIT - (64 << 20), "the savepoint holds the state: {bytes} bytes");
    let id = savepoint["id"].as_str().expect("id").to_string();
    let held = c.savepoint_state(&id, "w", "k7").await.expect("one key's state");
    assert_eq!(held["entries"].as_array().map(Vec::len), Some(1), "{}", held["entries"].to_string().len());

    // Rescaled: each of two subtasks reads the chunks of its key groups.
    let rescaled = c.submit_from(&spec(2).replace("lower@1", "lower@2"), &id, false).await.expect("rescaled");
    let rescaled = rescaled["id"].as_str().expect("id").to_string();
    c.savepoint_with(&rescaled, true, true).await.expect("stop with drain: every window fires");
    let counts = output(c, &rescaled, "out").await;
    assert_eq!(counts.len(), records, "one window per key");
    assert!(counts.iter().all(|r| r["value"]["count"] == 1), "{:?}", counts.first());

    assert!(c.health().await.is_ok(), "the server lived through it");
    let peak = server.peak_rss();
    assert!(peak < LIMIT, "peak resident memory {} MiB, limit {} MiB", peak >> 20, LIMIT >> 20);
    drop(server);
    drop(limit);
}
