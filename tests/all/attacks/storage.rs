//! A tenant filling the server's disk: checkpoints, savepoints, input logs and output files all count against its
//! storage quota.

use super::{ACME, GLOBEX, two_tenants};
use crate::support::{submit, wait_job};
use eddy_server::config::QuotaOverrides;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_cannot_write_past_its_storage_quota() {
    let server = two_tenants(|c| {
        c.tenants[0].quota = QuotaOverrides { storage_mb: Some(2), ..QuotaOverrides::default() };
    })
    .await;
    let acme = server.client_with(Some(ACME), None);
    let greedy = "name: fill\ncheckpoints: { interval: 10ms, retained: 1000, max_concurrent: 100 }\noperators:\n  - { uid: src, source: { http: {} } }\n  - { uid: out, sink: { file: { path: out } }, input: src }\n";
    let refused = acme.submit(greedy).await.expect_err("unbounded checkpoints");
    assert!(refused.message.contains("checkpoints.retained") && refused.message.contains("between 1 and 100"));
    assert!(refused.message.contains("checkpoints.max_concurrent"), "{refused}");
    let spec = "name: fill\ncheckpoints: { interval: 100ms, retained: 100 }\noperators:\n  - { uid: src, source: { http: {} } }\n  - { uid: out, sink: { file: { path: out } }, input: src }\n";
    let id = submit(&acme, spec).await;
    let line = format!("{{\"pad\":\"{}\"}}\n", "x".repeat(100));
    acme.ingest(&id, "src", line.repeat(30_000)).await.expect("the first 3 MB fit");
    // Its input log and output files take it past 2 MiB, as the server measures within seconds.
    let started = std::time::Instant::now();
    loop {
        let usage = acme.usage().await.expect("usage");
        if usage["used"]["storage_bytes"].as_u64().unwrap_or(0) > 2 << 20 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "storage use was measured: {usage:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for refused in [
        acme.ingest(&id, "src", line.clone()).await.expect_err("no more input"),
        acme.savepoint(&id, false).await.expect_err("no savepoint"),
        acme.submit(spec).await.expect_err("no new job"),
    ] {
        assert_eq!((refused.status, refused.code.as_str()), (Some(403), "quota_exceeded"), "{refused}");
        assert!(refused.message.contains("storage_mb") && refused.message.contains("storage quota of 2 MiB"));
    }
    // Its checkpoints are refused too, and the job fails naming the quota.
    let failed = wait_job(&acme, &id, Duration::from_secs(60), |s| s["state"] == "failed").await;
    let message = failed["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("storage quota of 2 MiB is used up"), "{message}");
    // The other tenant writes on.
    let globex = server.client_with(Some(GLOBEX), None);
    let other = submit(&globex, spec).await;
    globex.ingest(&other, "src", line.repeat(100)).await.expect("globex's input");
    globex.savepoint(&other, false).await.expect("globex's savepoint");
}
