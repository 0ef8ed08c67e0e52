//! The API with bad input: every mistake gets a clear error with the right status, and nothing is lost.

use crate::support::{Rust, TestServer, example, fixture, submit};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn refuses_uploads_that_are_not_eddy_components() {
    let server = TestServer::start().await;
    let c = &server.client;
    let not_wasm = c.push_module("junk", None, b"#!/bin/sh\necho hi\n".to_vec()).await.expect_err("refused");
    assert_eq!((not_wasm.status, not_wasm.code.as_str()), (Some(400), "invalid_module"));
    assert!(not_wasm.message.contains("not a WebAssembly component"), "{not_wasm}");

    let core = c.push_module("core", None, fixture("core-module")).await.expect_err("refused");
    assert_eq!(core.code, "invalid_module");
    assert!(core.message.contains("core WebAssembly module, not a component"), "{core}");

    let wrong = c.push_module("cli", None, fixture("wrong-world")).await.expect_err("refused");
    assert_eq!((wrong.status, wrong.code.as_str()), (Some(400), "wrong_world"));
    assert!(wrong.message.contains("wasi:cli/run"), "names what the component exports: {wrong}");

    let signature = c.push_module("sig", None, fixture("wrong-signature")).await.expect_err("refused");
    assert_eq!(signature.code, "wrong_world");
    assert!(signature.message.contains("eddy:udf/mapper@0.1.0 does not match"), "{signature}");

    let imports = c.push_module("net", None, fixture("unknown-import")).await.expect_err("refused");
    assert_eq!(imports.code, "unsupported_imports");
    assert!(imports.message.contains("acme:net/socket@1.0.0"), "{imports}");

    let listed = c.modules().await.expect("list");
    assert_eq!(listed, Value::Array(vec![]), "nothing refused was stored");
}

#[tokio::test(flavor = "multi_thread")]
async fn refuses_oversized_modules() {
    let server = TestServer::start_with(|c| c.max_module_bytes = 4096).await;
    let err = server.client.push_module("big", None, vec![0u8; 10_000]).await.expect_err("too large");
    assert_eq!((err.status, err.code.as_str()), (Some(413), "module_too_large"));
    assert!(err.message.contains("4096"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn versions_are_immutable_and_numbered() {
    let server = TestServer::start().await;
    let c = &server.client;
    let first = c.push_module("echo", None, fixture("echo")).await.expect("stored");
    assert_eq!(first["version"], "1");
    assert_eq!(first["kinds"], serde_json::json!(["map"]));
    let again = c.push_module("echo", Some("1"), fixture("echo")).await.expect("same bytes again is fine");
    assert_eq!(again["hash"], first["hash"]);
    let other = c.push_module("echo", Some("1"), fixture("trap")).await.expect_err("other bytes, same version");
    assert_eq!((other.status, other.code.as_str()), (Some(409), "conflict"));
    let second = c.push_module("echo", None, fixture("trap")).await.expect("next version");
    assert_eq!(second["version"], "2");
}

#[tokio::test(flavor = "multi_thread")]
async fn reports_every_problem_of_a_spec_at_once() {
    let server = TestServer::start().await;
    let err = server
        .client
        .submit(
            r#"
name: broken
operators:
  - { uid: src, source: { http: {} }, watermark: { out_of_orderness: soon } }
  - { uid: up, map: { modul: x }, input: src }
  - { uid: w, input: up, window: { tumbling: 1m }, aggregate: { builtin: avg } }
  - { uid: src, sink: stdout, input: w }
"#,
        )
        .await
        .expect_err("invalid");
    assert_eq!((err.status, err.code.as_str()), (Some(400), "invalid_spec"));
    let details: Vec<(String, String)> = err
        .details
        .iter()
        .map(|d| {
            (d["operator"].as_str().unwrap_or("-").to_string(), d["field"].as_str().unwrap_or_default().to_string())
        })
        .collect();
    for expected in
        [("src", "watermark.out_of_orderness"), ("up", "map.modul"), ("up", "map.module"), ("w", "aggregate.field")]
    {
        assert!(
            details.contains(&(expected.0.to_string(), expected.1.to_string())),
            "missing {expected:?} in {details:?}"
        );
    }
    let garbage = server.client.submit("operators: [ {").await.expect_err("not YAML");
    assert_eq!(garbage.code, "invalid_spec");
    assert!(garbage.message.contains("not valid YAML or JSON"), "{garbage}");
    assert_eq!(server.client.jobs().await.expect("list"), Value::Array(vec![]), "no job was created");
}

#[tokio::test(flavor = "multi_thread")]
async fn reports_unknown_modules_wrong_kinds_and_cycles() {
    let server = TestServer::start().await;
    let c = &server.client;
    c.push_module("echo", None, fixture("echo")).await.expect("stored");
    let err = c
        .submit(
            r#"
name: graph
operators:
  - { uid: src, source: { http: {} } }
  - { uid: a, map: echo, input: [src, c] }
  - { uid: b, filter: echo, input: a }
  - { uid: c, map: nowhere@3, input: b }
  - { uid: out, sink: http, input: a }
"#,
        )
        .await
        .expect_err("invalid");
    let message = err.to_string();
    assert!(message.contains("unknown module `nowhere@3`"), "{message}");
    assert!(message.contains("module `echo` exports map, not a filter function"), "{message}");
    assert!(message.contains("cycle"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn modules_in_use_cannot_be_deleted() {
    let server = TestServer::start().await;
    let c = &server.client;
    c.push_module("lower", None, example(Rust, "lowercase").await).await.expect("stored");
    let id = submit(
        c,
        "name: j\noperators:\n  - { uid: src, source: { http: {} } }\n  - { uid: m, map: lower, input: src }\n  - { uid: out, sink: http, input: m }\n",
    )
    .await;
    let busy = c.delete_module("lower", "1").await.expect_err("in use");
    assert_eq!((busy.status, busy.code.as_str()), (Some(409), "conflict"));
    assert!(busy.message.contains(&id), "names the job: {busy}");
    c.cancel(&id).await.expect("cancel");
    c.delete_module("lower", "1").await.expect("deleted once the job stopped");
    let missing = c.delete_module("lower", "1").await.expect_err("gone");
    assert_eq!(missing.status, Some(404));

    // A job waiting out a restart delay still uses its modules: they cannot go from under its next run.
    c.push_module("faults", None, example(Rust, "test-faults").await).await.expect("stored");
    let failing = submit(
        c,
        "name: f\nrestart: { strategy: fixed_delay, attempts: 5, delay: 5s }\noperators:\n  - { uid: src, source: { http: {} } }\n  - { uid: m, map: faults, input: src }\n  - { uid: out, sink: discard, input: m }\n",
    )
    .await;
    c.ingest(&failing, "src", "panic\n".into()).await.expect("ingest");
    crate::support::wait_job(c, &failing, std::time::Duration::from_secs(20), |s| s["state"] == "restarting").await;
    let busy = c.delete_module("faults", "1").await.expect_err("in use by a job that restarts");
    assert_eq!((busy.status, busy.code.as_str()), (Some(409), "conflict"), "{busy}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_routes_jobs_and_endpoints_are_not_found() {
    let server = TestServer::start().await;
    let response = reqwest::get(format!("{}/v2/nothing", server.url)).await.expect("request");
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.expect("JSON error body");
    assert_eq!(body["error"]["code"], "not_found");
    let job = server.client.job("0123456789abcdef").await.expect_err("no such job");
    assert_eq!(job.status, Some(404));
    let id = submit(
        &server.client,
        "name: j\noperators:\n  - { uid: src, source: { http: {} } }\n  - { uid: out, sink: http, input: src }\n",
    )
    .await;
    let wrong = server.client.ingest(&id, "nope", "{}".into()).await.expect_err("no such source");
    assert_eq!(wrong.status, Some(404));
    assert!(wrong.message.contains("no HTTP source `nope`"), "{wrong}");
}

#[tokio::test(flavor = "multi_thread")]
async fn serves_health_and_the_openapi_document() {
    let server = TestServer::start().await;
    assert_eq!(server.client.health().await.expect("health")["status"], "ok");
    let doc: Value =
        reqwest::get(format!("{}/openapi.json", server.url)).await.expect("get").json().await.expect("json");
    assert_eq!(doc["info"]["title"], "Eddy");
    for path in
        ["/v1/modules", "/v1/jobs", "/v1/jobs/{id}", "/v1/jobs/{id}/inputs/{uid}", "/v1/jobs/{id}/outputs/{uid}"]
    {
        assert!(doc["paths"].get(path).is_some(), "OpenAPI document lacks {path}");
        let tenant_path = path.replace("/v1/", "/v1/tenants/{tenant}/");
        assert!(doc["paths"].get(&tenant_path).is_some(), "OpenAPI document lacks {tenant_path}");
    }
    assert!(doc["paths"]["/v1/jobs"]["post"]["responses"].get("401").is_some(), "401s are documented");
    assert!(doc["paths"]["/v1/jobs/{id}/outputs/{uid}"]["get"]["responses"].get("409").is_some());
    let params = &doc["paths"]["/v1/tenants/{tenant}/jobs"]["get"]["parameters"];
    assert_eq!(params[0]["name"], "tenant", "{params:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn axums_own_rejections_come_back_as_json_errors() {
    let server = TestServer::start().await;
    let http = reqwest::Client::new();
    let no_name = http.post(format!("{}/v1/modules", server.url)).body("x").send().await.expect("request");
    assert_eq!(no_name.status(), 400);
    let body: Value = no_name.json().await.expect("a JSON body");
    assert_eq!(body["error"]["code"], "bad_request");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("name")), "{body:#}");
    let wrong_method = http.put(format!("{}/v1/jobs", server.url)).send().await.expect("request");
    assert_eq!(wrong_method.status(), 405);
    let body: Value = wrong_method.json().await.expect("a JSON body");
    assert_eq!(body["error"]["code"], "method_not_allowed");
}
