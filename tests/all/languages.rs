//! User functions in Rust, Python and JavaScript, uploaded over HTTP and chained in one job fed over HTTP.

use crate::support::{Js, Python, Rust, TestServer, example, output, submit};

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
