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
