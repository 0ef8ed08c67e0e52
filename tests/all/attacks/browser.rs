//! A web page the user visits, driving an open-mode server on 127.0.0.1 through the user's browser.

use crate::support::{TestServer, fixture};

const SPEC: &str = "name: planted\noperators:\n  - { uid: src, source: { generator: { events: 10 } } }\n  - { uid: out, sink: discard, input: src }\n";

#[tokio::test(flavor = "multi_thread")]
async fn a_web_page_cannot_drive_an_open_mode_server() {
    let server = TestServer::start().await;
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", server.url);
    let legit = server.client.submit(SPEC).await.expect("the CLI submits");
    let legit_id = legit["id"].as_str().expect("id").to_string();
    // What `fetch(url, {method: 'POST', mode: 'no-cors', body})` sends from a page of another site.
    let from_page = |request: reqwest::RequestBuilder| {
        request
            .header("origin", "https://evil.example")
            .header("sec-fetch-site", "cross-site")
            .header("content-type", "text/plain;charset=UTF-8")
    };
    let status = |response: reqwest::Response| response.status().as_u16();
    let sent = [
        from_page(http.post(url("/v1/modules?name=planted"))).body(fixture("echo")),
        from_page(http.post(url("/v1/jobs"))).body(SPEC),
        from_page(http.post(url(&format!("/v1/jobs/{legit_id}/cancel")))),
        from_page(http.delete(url(&format!("/v1/jobs/{legit_id}")))),
        // A page's request without Sec-Fetch-Site (older browsers) still names its origin.
        http.post(url("/v1/jobs")).header("origin", "null").header("content-type", "application/yaml").body(SPEC),
        // DNS rebinding: a name of the attacker's that resolves to 127.0.0.1, so the page is "same-origin".
        http.post(url("/v1/jobs"))
            .header("host", "rebound.evil.example")
            .header("origin", "http://rebound.evil.example")
            .header("content-type", "application/yaml")
            .body(SPEC),
        http.get(url("/v1/jobs")).header("host", "rebound.evil.example:8080"),
    ];
    for request in sent {
        let response = request.send().await.expect("request");
        assert_eq!(status(response), 403, "a cross-site request is refused");
    }
    // Bodies of the types a page may send without asking the server first are refused whoever sends them.
    for (path, kind) in [
        ("/v1/jobs", "text/plain"),
        ("/v1/jobs", "application/x-www-form-urlencoded"),
        ("/v1/modules?name=planted", "multipart/form-data; boundary=x"),
        (&format!("/v1/jobs/{legit_id}/inputs/src") as &str, "text/plain"),
    ] {
        let response = http.post(url(path)).header("content-type", kind).body(SPEC).send().await.expect("request");
        assert_eq!(response.status().as_u16(), 415, "{path} with {kind}");
        let body: serde_json::Value = response.json().await.expect("JSON error");
        assert_eq!(body["error"]["code"], "unsupported_media_type", "{body}");
    }
    let no_type = http.post(url("/v1/jobs")).body(SPEC).send().await.expect("request");
    assert_eq!(no_type.status().as_u16(), 415, "a spec without a type");
    // Nothing the page sent took effect; the user's own job is untouched.
    assert_eq!(server.client.modules().await.expect("modules").as_array().map(Vec::len), Some(0));
    let jobs = server.client.jobs().await.expect("jobs");
    assert_eq!(jobs.as_array().map(Vec::len), Some(1), "only the user's job: {jobs}");
    assert_ne!(server.client.job(&legit_id).await.expect("job")["state"], "canceled");
    // The same requests as the CLI and curl send them (no browser marks, a loopback Host) work.
    server.client.push_module("echo", None, fixture("echo")).await.expect("upload");
    let same_origin = http
        .post(url("/v1/jobs"))
        .header("origin", server.url.as_str())
        .header("sec-fetch-site", "same-origin")
        .header("content-type", "application/yaml")
        .body(SPEC)
        .send()
        .await
        .expect("request");
    assert_eq!(same_origin.status().as_u16(), 201, "a page of Eddy's own origin may");
}
