//! The Go SDK (`guest-sdk/go`): its examples in `udfs/go`, built with Go into components, run in a real server on
//! the inputs of the Rust examples they copy, and must give the Rust examples' output byte for byte. The build and
//! comparison helpers are the C SDK's, which take the language's folder name.

use crate::c_sdk::{guest_example, job_lines, seed_job_in_both, word_count_matches_rust};
use crate::support::{TestServer, submit};

#[tokio::test(flavor = "multi_thread")]
async fn go_map_flat_map_filter_and_key_selector_match_rust_byte_for_byte() {
    word_count_matches_rust("go").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn go_fraud_detector_with_state_and_timers_matches_rust_byte_for_byte() {
    // One request per transaction: the watermark moves in between, so the cleanup timers fire as in a live stream.
    let requests = job_lines("fraud-detection.input.jsonl");
    let [rust, go] =
        seed_job_in_both("go", "fraud-detection", &["fraud-detection"], "transactions", &requests, &["alerts"], false)
            .await;
    assert_eq!(rust[0].len(), 2, "the Rust detector's two alerts: {rust:?}");
    assert_eq!(go, rust, "Go against Rust");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_go_function_that_fails_fails_with_its_message() {
    let server = TestServer::start().await;
    let c = &server.client;
    c.push_module("stop", None, guest_example("go", "stopwords").await).await.expect("upload");
    c.push_module("fraud", None, guest_example("go", "fraud-detection").await).await.expect("upload");
    // From the init function.
    let spec = "name: j\noperators:\n  - { uid: src, source: { http: {} } }\n  - { uid: f, filter: { module: stop, config: { words: 42 } }, input: src }\n  - { uid: out, sink: http, input: f }\n";
    let err = c.submit(spec).await.expect_err("init refuses the config");
    assert_eq!((err.status, err.code.as_str()), (Some(422), "cannot_start"));
    assert!(err.message.contains("config.words must be a list of strings"), "{err}");
    // From a process function, per record.
    let spec = "name: k\nrestart: { strategy: none }\noperators:\n  - { uid: src, source: { http: {} } }\n  - { uid: p, key_by: { json: \"$.account\" }, process: fraud, input: src }\n  - { uid: out, sink: http, input: p }\n";
    let id = submit(c, spec).await;
    c.ingest(&id, "src", "{\"account\": \"a\"}\n".into()).await.expect("ingest");
    let status = crate::support::wait_ended(c, &id).await;
    assert_eq!(status["state"], "failed", "{status:#}");
    assert!(status.to_string().contains("a transaction must be"), "{status:#}");
}
