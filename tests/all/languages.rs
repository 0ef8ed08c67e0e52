//! User functions in Rust, Python and JavaScript, uploaded over HTTP and chained in one job fed over HTTP.

use crate::support::{Js, Python, Rust, TestServer, example, output, submit};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn rust_python_and_javascript_functions_run_in_one_job() {
    let server = TestServer::start().await;
    let c = &server.client;
    c.push_module("py-upper", None, example(Python, "uppercase").await).await.expect("python upload");
    c.push_module("js-upper", None, example(Js, "uppercase").await).await.expect("js upload");
    c.push_module("rs-lower", None, example(Rust, "lowercase").await).await.expect("rust upload");
    let id = submit(
        c,
        r#"
name: polyglot
operators:
  - { uid: src, source: { http: {} } }
  - { uid: py, map: py-upper, input: src }
  - { uid: rs, map: rs-lower, input: py }
  - { uid: js, map: js-upper, input: rs }
  - { uid: after-py, sink: http, input: py }
  - { uid: after-rs, sink: http, input: rs }
  - { uid: after-js, sink: http, input: js }
"#,
    )
    .await;
    c.ingest(&id, "src", "{\"text\": \"Hello, Stream\"}\n{\"text\": \"wasm\"}\n".into()).await.expect("ingest");
    c.close_input(&id, "src").await.expect("close");
    let texts = |records: Vec<serde_json::Value>| -> Vec<String> {
        records.iter().map(|r| r["value"]["text"].as_str().unwrap_or_default().to_string()).collect()
    };
    assert_eq!(texts(output(c, &id, "after-py").await), ["HELLO, STREAM", "WASM"], "Python upper-cased");
    assert_eq!(texts(output(c, &id, "after-rs").await), ["hello, stream", "wasm"], "Rust lower-cased");
    assert_eq!(texts(output(c, &id, "after-js").await), ["HELLO, STREAM", "WASM"], "JavaScript upper-cased");
    let status = crate::support::wait_ended(c, &id).await;
    assert_eq!(status["state"], "finished");
    let js = status["operators"].as_array().and_then(|ops| ops.iter().find(|o| o["uid"] == "js")).cloned();
    assert_eq!(js.map(|o| (o["records_in"].clone(), o["records_out"].clone())), Some((2.into(), 2.into())));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_state_handle_kept_from_one_key_cannot_read_another() {
    let server = TestServer::start().await;
    let c = &server.client;
    c.push_module("escape", None, example(Rust, "test-state-escape").await).await.expect("upload");
    let id = submit(
        c,
        r#"
name: escape
operators:
  - { uid: src, source: { http: {} } }
  - { uid: p, key_by: { json: "$.user" }, process: escape, input: src }
  - { uid: out, sink: http, input: p }
"#,
    )
    .await;
    c.ingest(&id, "src", "{\"user\":\"alice\"}\n{\"user\":\"bob\"}\n{\"user\":\"alice\"}\n".into())
        .await
        .expect("ingest");
    c.close_input(&id, "src").await.expect("close");
    let reports: Vec<String> =
        output(c, &id, "out").await.iter().map(|r| r["value"].as_str().unwrap_or_default().to_string()).collect();
    assert_eq!(reports.len(), 3, "{reports:?}");
    assert_eq!(reports[0], "kept");
    assert!(reports[1].starts_with("denied: "), "bob's turn with alice's handle: {reports:?}");
    assert!(reports[1].contains("belongs to key \"alice\""), "{reports:?}");
    assert_eq!(reports[2], "same key", "alice's own handle works for alice");
    assert!(reports.iter().all(|r| !r.contains("leaked")), "{reports:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn reducing_and_aggregating_state_fold_each_keys_records() {
    let server = TestServer::start().await;
    let c = &server.client;
    c.push_module("key-stats", None, example(Rust, "key-stats").await).await.expect("upload");
    let id = submit(
        c,
        r#"
name: key-stats
operators:
  - { uid: src, source: { http: {} } }
  - { uid: stats, key_by: { json: "$.user" }, process: key-stats, input: src, parallelism: 2 }
  - { uid: out, sink: http, input: stats }
"#,
    )
    .await;
    let records = [("alice", 10), ("bob", 7), ("alice", 30), ("alice", 20), ("bob", 1)];
    let body: String =
        records.iter().map(|(user, amount)| format!("{{\"user\":\"{user}\",\"amount\":{amount}}}\n")).collect();
    c.ingest(&id, "src", body).await.expect("ingest");
    c.close_input(&id, "src").await.expect("close");
    let out = output(c, &id, "out").await;
    let of = |user: &str| -> Vec<serde_json::Value> {
        out.iter().filter(|r| r["key"] == user).map(|r| r["value"].clone()).collect()
    };
    assert_eq!(
        of("alice"),
        [
            json!({ "max": 10, "count": 1, "avg": 10.0 }),
            json!({ "max": 30, "count": 2, "avg": 20.0 }),
            json!({ "max": 30, "count": 3, "avg": 20.0 }),
        ],
        "alice's records, in order, never mixed with bob's"
    );
    assert_eq!(of("bob"), [json!({ "max": 7, "count": 1, "avg": 7.0 }), json!({ "max": 7, "count": 2, "avg": 4.0 })]);
    assert_eq!(out.len(), records.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_cannot_hoard_state_handles_without_end() {
    let server = TestServer::start().await;
    let c = &server.client;
    c.push_module("escape", None, example(Rust, "test-state-escape").await).await.expect("upload");
    let spec = "name: hoard\noperators:\n  - { uid: src, source: { http: {} } }\n  - { uid: p, key_by: { json: \"$.user\" }, process: escape, input: src }\n  - { uid: out, sink: http, input: p }\n";
    let id = submit(c, spec).await;
    c.ingest(&id, "src", "{\"user\":\"alice\",\"hoard\":true}\n".into()).await.expect("ingest");
    c.close_input(&id, "src").await.expect("close");
    let reports: Vec<String> =
        output(c, &id, "out").await.iter().map(|r| r["value"].as_str().unwrap_or_default().to_string()).collect();
    assert_eq!(reports.len(), 1, "{reports:?}");
    let report = &reports[0];
    let held: usize = report
        .strip_prefix("refused after ")
        .and_then(|rest| rest.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the host refused more handles: {report}"));
    assert!((9_000..=10_000).contains(&held), "{report}");
    assert_eq!(crate::support::wait_ended(c, &id).await["state"], "finished", "the job carries on");
}
