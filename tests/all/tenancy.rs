//! Tenants: tokens, routes that name a tenant, and isolation of modules and jobs.

use crate::support::{TestServer, fixture, submit};
use eddy_server::config::{TenantConfig, token_hash};

async fn two_tenants() -> TestServer {
    TestServer::start_with(|c| {
        c.tenants = vec![
            TenantConfig::new("acme", &token_hash("acme-secret")),
            TenantConfig::new("globex", &token_hash("globex-secret")),
        ];
        c.admin_token_sha256 = Some(token_hash("admin-secret"));
    })
    .await
}

const SPEC: &str =
    "name: t\noperators:\n  - { uid: src, source: { http: {} } }\n  - { uid: out, sink: http, input: src }\n";

#[tokio::test(flavor = "multi_thread")]
async fn requests_need_a_valid_token() {
    let server = two_tenants().await;
    let anonymous = server.client_with(None, None).modules().await.expect_err("no token");
    assert_eq!((anonymous.status, anonymous.code.as_str()), (Some(401), "unauthorized"));
    let wrong = server.client_with(Some("guess"), None).modules().await.expect_err("bad token");
    assert_eq!(wrong.status, Some(401));
    assert!(wrong.message.contains("not valid"), "{wrong}");
    let response = reqwest::get(format!("{}/v1/jobs", server.url)).await.expect("request");
    assert_eq!(response.headers().get("www-authenticate").and_then(|v| v.to_str().ok()), Some("Bearer"));
    server.client_with(Some("acme-secret"), None).modules().await.expect("a valid token works");
    assert_eq!(server.client_with(None, None).health().await.expect("health")["status"], "ok", "health needs no token");
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_see_only_their_own_modules_and_jobs() {
    let server = two_tenants().await;
    let acme = server.client_with(Some("acme-secret"), None);
    let globex = server.client_with(Some("globex-secret"), None);
    acme.push_module("echo", None, fixture("echo")).await.expect("acme uploads");
    let job = submit(&acme, SPEC).await;

    assert_eq!(globex.modules().await.expect("list").as_array().map(Vec::len), Some(0));
    assert_eq!(globex.jobs().await.expect("list").as_array().map(Vec::len), Some(0));
    let stolen = globex.job(&job).await.expect_err("another tenant's job id");
    assert_eq!(stolen.status, Some(404), "another tenant's job is not found, not forbidden");
    assert_eq!(globex.cancel(&job).await.expect_err("cannot cancel").status, Some(404));
    assert_eq!(globex.ingest(&job, "src", "{}".into()).await.expect_err("cannot feed").status, Some(404));

    let named = server.client_with(Some("globex-secret"), Some("acme"));
    let forbidden = named.jobs().await.expect_err("globex's token on acme's routes");
    assert_eq!((forbidden.status, forbidden.code.as_str()), (Some(403), "forbidden"));

    let admin = server.client_with(Some("admin-secret"), Some("acme"));
    assert_eq!(admin.job(&job).await.expect("the admin acts for acme")["id"], job.as_str());
    let unnamed = server.client_with(Some("admin-secret"), None).jobs().await.expect_err("admin without tenant");
    assert_eq!(unnamed.code, "tenant_required");
    let nobody = server.client_with(Some("admin-secret"), Some("initech")).jobs().await.expect_err("no such tenant");
    assert_eq!(nobody.status, Some(404));

    // The same module name in two tenants is two modules.
    globex.push_module("echo", None, fixture("trap")).await.expect("globex has its own echo");
    let acme_echo = acme.modules().await.expect("list");
    let globex_echo = globex.modules().await.expect("list");
    assert_ne!(acme_echo[0]["hash"], globex_echo[0]["hash"]);
}

/// A job naming Kafka brokers: the brokers are a way into the server's network, so once tenants are configured a
/// job may name only brokers the admin listed.
fn kafka_spec(brokers: &str, properties: &str) -> String {
    format!(
        "name: k\noperators:\n  - {{ uid: src, source: {{ kafka: {{ brokers: \"{brokers}\", topics: [t]{properties} }} }} }}\n  - {{ uid: out, sink: http, input: src }}\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_reach_only_the_kafka_brokers_the_admin_allows() {
    let none_listed = two_tenants().await;
    let acme = none_listed.client_with(Some("acme-secret"), None);
    let refused = acme.submit(&kafka_spec("10.0.0.7:9092", "")).await.expect_err("no broker is allowed");
    assert_eq!((refused.status, refused.code.as_str()), (Some(403), "broker_not_allowed"), "{refused}");
    assert!(refused.message.contains("kafka_allowed_brokers"), "{refused}");

    let server = TestServer::start_with(|c| {
        c.tenants = vec![TenantConfig::new("acme", &token_hash("acme-secret"))];
        c.kafka_allowed_brokers = Some(vec!["127.0.0.1:1".into()]);
    })
    .await;
    let acme = server.client_with(Some("acme-secret"), None);
    let refused = acme.submit(&kafka_spec("127.0.0.1:1,10.0.0.7:9092", "")).await.expect_err("one is not allowed");
    assert_eq!(refused.status, Some(403), "{refused}");
    assert!(refused.message.contains("10.0.0.7:9092") && !refused.message.contains("127.0.0.1:1 "), "{refused}");
    // Another way to name brokers is closed too.
    let sneaky = kafka_spec("127.0.0.1:1", ", properties: { metadata.broker.list: \"10.0.0.7:9092\" }");
    let refused = acme.submit(&sneaky).await.expect_err("brokers through a property");
    assert_eq!(refused.code, "invalid_spec", "{refused}");
    assert!(
        refused.message.contains("metadata.broker.list") || format!("{refused:?}").contains("metadata.broker.list")
    );
    // An allowed broker passes the check; nothing listens there, so the job cannot start, for another reason.
    // (A submission waits only so long for its first run, so it may be accepted, then fail in its status.)
    if let Err(other) = acme.submit(&kafka_spec("127.0.0.1:1", "")).await {
        assert_ne!(other.code, "broker_not_allowed", "{other}");
    }
}
