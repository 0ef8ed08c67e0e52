//! A hostile tenant's attacks, each run against a real server: every one must be refused or contained, and the
//! server must keep answering. (Findings of the hostile-tenants review, in its order.)

mod browser;
mod ingest;
mod kafka;
mod memory;
mod storage;

use crate::support::{TestServer, fixture, submit, wait_ended, wait_job};
use eddy_server::config::{QuotaOverrides, TenantConfig, token_hash};
use std::time::Duration;

pub(super) const ACME: &str = "acme-secret";
pub(super) const GLOBEX: &str = "globex-secret";

pub(super) async fn two_tenants(tweak: impl FnOnce(&mut eddy_server::config::ServerConfig)) -> TestServer {
    TestServer::start_with(|c| {
        c.tenants =
            vec![TenantConfig::new("acme", &token_hash(ACME)), TenantConfig::new("globex", &token_hash(GLOBEX))];
        tweak(c);
    })
    .await
}

fn file_job(source: &str, sink: &str) -> String {
    format!(
        "name: files\noperators:\n  - {{ uid: src, source: {{ file: {source} }} }}\n  - {{ uid: out, sink: {{ file: {sink} }}, input: src }}\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn file_sources_and_sinks_cannot_leave_the_tenants_folder() {
    let server = two_tenants(|_| {}).await;
    let acme = server.client_with(Some(ACME), None);
    let data = server.data_dir();
    let config_like = data.join("secret.toml");
    std::fs::write(&config_like, "admin_token_sha256 = \"...\"").expect("write");
    for (source, sink) in [
        ("{ path: /etc/passwd }", "{ path: out.jsonl }"),
        ("{ path: ../../secret.toml }", "{ path: out.jsonl }"),
        ("{ path: in.jsonl }", "{ path: ../globex/planted.jsonl }"),
        ("{ path: in.jsonl }", "{ path: ../../tenants/globex/jobs/planted.json }"),
        ("{ path: in.jsonl }", "{ path: /tmp/planted.json }"),
    ] {
        let refused = acme.submit(&file_job(source, sink)).await.expect_err("refused");
        assert_eq!(
            (refused.status, refused.code.as_str()),
            (Some(400), "invalid_spec"),
            "{source} -> {sink}: {refused}"
        );
        assert!(refused.message.contains("relative") || refused.message.contains(".."), "{refused}");
    }
    let unknown_root = acme.submit(&file_job("{ path: passwd, root: etc }", "{ path: out.jsonl }")).await;
    let unknown_root = unknown_root.expect_err("no such root");
    assert!(unknown_root.message.contains("no file root `etc`"), "{unknown_root}");

    // Inside its own folder a tenant's files work, and land in that folder only.
    let own = data.join("files/acme");
    std::fs::create_dir_all(&own).expect("mkdir");
    std::fs::write(own.join("in.jsonl"), "{\"n\":1}\n{\"n\":2}\n").expect("write");
    let id = submit(&acme, &file_job("{ path: in.jsonl }", "{ path: results/out }")).await;
    assert_eq!(wait_ended(&acme, &id).await["state"], "finished");
    let written = std::fs::read_to_string(own.join("results/out/part-0-0.jsonl")).expect("output in acme's folder");
    assert_eq!(written.lines().count(), 2, "{written}");
    assert!(!data.join("files/globex").exists(), "nothing was written for another tenant");
    assert_eq!(std::fs::read_to_string(&config_like).expect("read"), "admin_token_sha256 = \"...\"");
}

#[tokio::test(flavor = "multi_thread")]
async fn admins_roots_are_named_and_the_data_folder_is_never_one() {
    let shared = tempfile::tempdir().expect("tempdir");
    std::fs::write(shared.path().join("in.jsonl"), "{\"n\":1}\n").expect("write");
    let shared_path = shared.path().to_path_buf();
    let server = two_tenants(move |c| {
        c.tenants[0].file_roots.insert("shared".into(), shared_path);
    })
    .await;
    let acme = server.client_with(Some(ACME), None);
    let id = submit(&acme, &file_job("{ path: in.jsonl, root: shared }", "{ path: copy.jsonl }")).await;
    assert_eq!(wait_ended(&acme, &id).await["state"], "finished");
    let globex = server.client_with(Some(GLOBEX), None);
    let refused = globex.submit(&file_job("{ path: in.jsonl, root: shared }", "{ path: copy.jsonl }")).await;
    assert!(refused.expect_err("acme's root only").message.contains("no file root `shared`"));

    let mut config =
        eddy_server::config::ServerConfig { data_dir: server.data_dir().to_path_buf(), ..Default::default() };
    let mut tenant = TenantConfig::new("acme", &token_hash(ACME));
    tenant.file_roots.insert("data".into(), server.data_dir().join("tenants"));
    config.tenants = vec![tenant];
    let problems = config.check().join("\n");
    assert!(problems.contains("overlaps the data folder"), "{problems}");
}

#[tokio::test(flavor = "multi_thread")]
async fn replaced_compiled_code_is_never_loaded() {
    let mut server = TestServer::start().await;
    let c = &server.client;
    let echo = c.push_module("m", None, fixture("echo")).await.expect("upload");
    let trap = c.push_module("t", None, fixture("trap")).await.expect("upload");
    let cache = server.data_dir().join("cache");
    let file_of = |hash: &serde_json::Value| {
        let hash = hash.as_str().expect("hash").to_string();
        std::fs::read_dir(&cache)
            .expect("cache")
            .flatten()
            .map(|e| e.path())
            .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&hash)))
            .expect("compiled file")
    };
    // Native code planted in place of echo's compiled code (here: the trap's, valid code of this very engine).
    std::fs::copy(file_of(&trap["hash"]), file_of(&echo["hash"])).expect("overwrite");
    server.restart().await;
    let c = &server.client;
    let spec = "name: e\noperators:\n  - { uid: src, source: { http: {} } }\n  - { uid: m, map: m, input: src }\n  - { uid: out, sink: http, input: m }\n";
    let id = submit(c, spec).await;
    c.ingest(&id, "src", "{\"n\":7}\n".into()).await.expect("ingest");
    c.close_input(&id, "src").await.expect("close");
    let records = crate::support::output(c, &id, "out").await;
    assert_eq!(records.len(), 1, "the module ran as uploaded (echo), not the planted code");
    assert_eq!(records[0]["value"]["n"], 7);
}

#[tokio::test(flavor = "multi_thread")]
async fn cheap_specs_that_would_exhaust_memory_are_refused() {
    let server = TestServer::start().await;
    let c = &server.client;
    let parallel = "name: p\nparallelism: 1000000000\noperators:\n  - { uid: src, source: { generator: {} } }\n  - { uid: out, sink: discard, input: src }\n";
    let refused = c.submit(parallel).await.expect_err("too parallel");
    assert_eq!(refused.status, Some(400));
    assert!(refused.message.contains("exceeds the job's max_parallelism 128"), "{refused}");
    for (window, why) in [
        ("{ size: 3000000d, slide: 1ms }", "windows per record"),
        ("{ size: 1d, slide: 1ms }", "windows per record"),
        ("{ size: 1d, slide: 86399999ms }", "panes"),
    ] {
        let spec = format!(
            "name: w\noperators:\n  - {{ uid: src, source: {{ http: {{}} }} }}\n  - {{ uid: w, input: src, key_by: record, window: {{ sliding: {window} }}, aggregate: {{ builtin: count }} }}\n  - {{ uid: out, sink: http, input: w }}\n"
        );
        let refused = c.submit(&spec).await.expect_err("too many windows");
        assert!(refused.message.contains(why), "{window}: {refused}");
    }
    assert_eq!(c.health().await.expect("health")["status"], "ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn components_that_grow_tables_or_many_memories_are_refused_at_upload() {
    let server = TestServer::start_with(|c| c.instance_memory_mb = 16).await;
    let c = &server.client;
    for name in ["table-bomb-at-start", "many-memories"] {
        let refused = c.push_module("bomb", None, fixture(name)).await.expect_err("refused");
        assert_eq!((refused.status, refused.code.as_str()), (Some(400), "module_fails_to_start"), "{name}: {refused}");
        assert!(refused.message.contains("memory limit of 16 MiB"), "{name}: {refused}");
    }
    assert_eq!(c.modules().await.expect("list").as_array().map(Vec::len), Some(0));
    let leftovers = std::fs::read_dir(server.data_dir().join("cache")).expect("cache").count();
    assert_eq!(leftovers, 0, "refused uploads leave no compiled code behind");
}

#[tokio::test(flavor = "multi_thread")]
async fn many_instances_each_within_its_limit_meet_the_job_and_tenant_budgets() {
    // An echo instance holds one 64 KiB page: 16 fit in a MiB.
    let server = two_tenants(|c| {
        c.tenants[0].quota = QuotaOverrides { memory_mb: Some(1), job_memory_mb: Some(1), ..QuotaOverrides::default() };
    })
    .await;
    let acme = server.client_with(Some(ACME), None);
    acme.push_module("echo", None, fixture("echo")).await.expect("upload");
    let job = |p: u32| {
        format!(
            "name: wide\noperators:\n  - {{ uid: src, source: {{ http: {{}} }} }}\n  - {{ uid: m, map: echo, input: src, parallelism: {p} }}\n  - {{ uid: out, sink: discard, input: m }}\n"
        )
    };
    let refused = acme.submit(&job(20)).await.expect_err("20 instances do not fit 1 MiB");
    assert_eq!((refused.status, refused.code.as_str()), (Some(422), "cannot_start"), "{refused}");
    assert!(refused.message.contains("memory budget of 1 MiB"), "{refused}");
    submit(&acme, &job(10)).await;
    let refused = acme.submit(&job(10)).await.expect_err("the tenant's MiB is half used");
    assert!(refused.message.contains("tenant acme's memory budget"), "{refused}");
    // Another tenant is not affected.
    let globex = server.client_with(Some(GLOBEX), None);
    globex.push_module("echo", None, fixture("echo")).await.expect("upload");
    submit(&globex, &job(20)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn quotas_on_jobs_and_parallelism_name_the_quota_and_the_use() {
    let server = two_tenants(|c| {
        c.tenants[0].quota = QuotaOverrides { jobs: Some(2), parallelism: Some(6), ..QuotaOverrides::default() };
    })
    .await;
    let acme = server.client_with(Some(ACME), None);
    let job = |p: u32| {
        format!(
            "name: q\nparallelism: {p}\noperators:\n  - {{ uid: src, source: {{ http: {{}} }} }}\n  - {{ uid: out, sink: discard, input: src }}\n"
        )
    };
    // A source over HTTP runs one subtask, the sink `p`.
    let first = submit(&acme, &job(2)).await;
    let refused = acme.submit(&job(4)).await.expect_err("3 + 5 > 6");
    assert_eq!((refused.status, refused.code.as_str()), (Some(403), "quota_exceeded"), "{refused}");
    assert!(refused.message.contains("`parallelism` quota of 6 (3 in use)"), "{refused}");
    assert_eq!(refused.details[0]["quota"], "parallelism");
    submit(&acme, &job(1)).await;
    let refused = acme.submit(&job(1)).await.expect_err("two jobs run");
    assert!(refused.message.contains("`jobs` quota of 2 (2 in use)"), "{refused}");
    let usage: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/v1/usage", server.url))
        .bearer_auth(ACME)
        .send()
        .await
        .expect("usage")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        (usage["used"]["jobs"].as_u64(), usage["used"]["parallelism"].as_u64()),
        (Some(2), Some(5)),
        "{usage:#}"
    );
    assert_eq!((usage["quota"]["jobs"].as_u64(), usage["quota"]["parallelism"].as_u64()), (Some(2), Some(6)));
    acme.cancel(&first).await.expect("cancel");
    submit(&acme, &job(1)).await;
}

/// Jobs waiting out a restart delay still hold their tenant's quota: more cannot be submitted meanwhile, and a quota
/// lowered meanwhile is checked again when they restart.
#[tokio::test(flavor = "multi_thread")]
async fn jobs_waiting_to_restart_count_against_quotas_checked_again_at_each_restart() {
    let server = two_tenants(|c| {
        c.admin_token_sha256 = Some(token_hash("admin-secret"));
        c.tenants[0].quota = QuotaOverrides { jobs: Some(2), parallelism: Some(10), ..QuotaOverrides::default() };
    })
    .await;
    let acme = server.client_with(Some(ACME), None);
    acme.push_module("faults", None, crate::support::example(crate::support::Rust, "test-faults").await)
        .await
        .expect("upload");
    let failing = "name: f\nrestart: { strategy: fixed_delay, attempts: 100, delay: 2s }\noperators:\n  - { uid: src, source: { http: {} } }\n  - { uid: m, map: faults, input: src }\n  - { uid: out, sink: discard, input: m }\n";
    let mut ids = Vec::new();
    for _ in 0..2 {
        let id = submit(&acme, failing).await;
        acme.ingest(&id, "src", "panic\n".into()).await.expect("ingest");
        wait_job(&acme, &id, Duration::from_secs(20), |s| s["state"] == "restarting").await;
        ids.push(id);
    }
    let refused = acme.submit(failing).await.expect_err("two jobs hold the quota while they wait to restart");
    assert_eq!((refused.status, refused.code.as_str()), (Some(403), "quota_exceeded"), "{refused}");
    assert!(refused.message.contains("`jobs` quota of 2 (2 in use)"), "{refused}");
    assert_eq!(acme.usage().await.expect("usage")["used"]["jobs"], 2);
    // The admin lowers the quota to one job: at their next restarts, one of the two is over it and stops.
    let http = reqwest::Client::new();
    let lowered = http
        .put(format!("{}/v1/tenants/acme/quota", server.url))
        .bearer_auth("admin-secret")
        .json(&serde_json::json!({ "jobs": 1 }))
        .send()
        .await
        .expect("quota");
    assert_eq!(lowered.status(), 200);
    let mut stopped = 0;
    for id in &ids {
        let status = wait_job(&acme, id, Duration::from_secs(30), |s| {
            s["state"] == "failed" || s["restarts"].as_array().is_some_and(|r| r.len() >= 3)
        })
        .await;
        if status["state"] == "failed" {
            assert!(status["error"]["message"].as_str().is_some_and(|m| m.contains("`jobs` quota of 1")), "{status:#}");
            stopped += 1;
        }
    }
    assert_eq!(stopped, 1, "exactly one job was over the lowered quota at its restart");
}

/// Usage is cumulative per tenant: deleting the jobs that did the work, or restarting the server, takes nothing
/// back.
#[tokio::test(flavor = "multi_thread")]
async fn metered_usage_survives_deletes_and_restarts() {
    let mut server = TestServer::start().await;
    let spec =
        "name: m\noperators:\n  - { uid: src, source: { http: {} } }\n  - { uid: out, sink: http, input: src }\n";
    let id = submit(&server.client, spec).await;
    server.client.ingest(&id, "src", "1\n2\n3\n".into()).await.expect("ingest");
    server.client.close_input(&id, "src").await.expect("close");
    crate::support::wait_ended(&server.client, &id).await;
    let used =
        |usage: &serde_json::Value| (usage["used"]["records_in"].as_u64(), usage["used"]["records_out"].as_u64());
    assert_eq!(used(&server.client.usage().await.expect("usage")), (Some(3), Some(3)));
    let http = reqwest::Client::new();
    let deleted = http.delete(format!("{}/v1/jobs/{id}", server.url)).send().await.expect("delete");
    assert_eq!(deleted.status(), 204);
    assert_eq!(used(&server.client.usage().await.expect("usage")), (Some(3), Some(3)), "kept after the delete");
    server.restart().await;
    assert_eq!(used(&server.client.usage().await.expect("usage")), (Some(3), Some(3)), "kept after a restart");
    let metrics = reqwest::get(format!("{}/metrics", server.url)).await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("eddy_tenant_records_in_total{tenant=\"default\"} 3"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn uploads_are_bounded_before_they_are_read() {
    let server = TestServer::start_with(|c| c.max_module_bytes = 4096).await;
    let url = format!("{}/v1/modules?name=big", server.url);
    let http = reqwest::Client::new();
    let too_large =
        http.post(&url).header("content-type", "application/wasm").body(vec![0u8; 8192]).send().await.expect("request");
    assert_eq!(too_large.status(), 413);
    let body: serde_json::Value = too_large.json().await.expect("JSON error");
    assert_eq!(body["error"]["code"], "module_too_large");
}

/// An upload whose body trickles in, sent `bytes` a second (one piece each second) until `stop` is dropped.
fn trickling_upload(
    http: &reqwest::Client,
    url: &str,
    token: &str,
) -> (tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>, tokio::task::JoinHandle<Option<u16>>) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let request = http
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/wasm")
        .body(reqwest::Body::wrap_stream(tokio_stream::wrappers::ReceiverStream::new(rx)));
    (tx, tokio::spawn(async move { request.send().await.ok().map(|r| r.status().as_u16()) }))
}

#[tokio::test(flavor = "multi_thread")]
async fn uploads_that_trickle_in_hold_no_compile_permit_and_are_cut_off() {
    let server = two_tenants(|c| {
        c.max_concurrent_uploads = 4;
        c.http.body_rate_grace = Duration::from_secs(2);
        c.http.min_body_rate = 1024;
    })
    .await;
    let url = format!("{}/v1/modules?name=slow", server.url);
    let http = reqwest::Client::new();
    // Acme trickles four uploads in, a byte a second: as many as it may read at once.
    let mut trickles = Vec::new();
    for _ in 0..4 {
        let (tx, response) = trickling_upload(&http, &url, ACME);
        tx.send(Ok(b"\0".to_vec())).await.expect("first byte");
        trickles.push((tx, response));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fifth = http
        .post(&url)
        .bearer_auth(ACME)
        .header("content-type", "application/wasm")
        .body(fixture("echo"))
        .send()
        .await
        .expect("request");
    assert_eq!(fifth.status(), 503, "acme reads four uploads at most");
    // Globex uploads meanwhile, at once: no permit is held by acme's trickles.
    let globex = server.client_with(Some(GLOBEX), None);
    globex.push_module("echo", None, fixture("echo")).await.expect("globex uploads while acme trickles");
    // The trickles are cut off once they fall below the minimum rate, and acme can upload again.
    for (tx, response) in trickles {
        for _ in 0..30 {
            if tx.send(Ok(b"a".to_vec())).await.is_err() || response.is_finished() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        assert!(response.is_finished(), "the trickling upload was cut off");
        let status = response.await.expect("task");
        assert!(status.is_none_or(|s| s >= 400), "{status:?}");
    }
    let acme = server.client_with(Some(ACME), None);
    acme.push_module("echo", None, fixture("echo")).await.expect("acme uploads again");
}

/// Two jobs (another tenant's would be the same) were starting when the server went down; one of them takes it
/// down at every start. After the crash they start one at a time, the one changed last first, so only the culprit
/// is started into each later crash and held; the other, never started into a crash again, runs.
#[tokio::test(flavor = "multi_thread")]
async fn after_crashes_only_the_job_whose_start_precedes_them_is_held() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = |name: &str| {
        format!(
            "name: {name}\noperators:\n  - {{ uid: src, source: {{ http: {{}} }} }}\n  - {{ uid: out, sink: http, input: src }}\n"
        )
    };
    let server = crate::support::ServerProcess::start(dir.path()).await;
    let healthy = submit(&server.client, &spec("healthy")).await;
    let culprit = submit(&server.client, &spec("culprit")).await;
    server.kill();
    // From here, the server goes down whenever the culprit runs.
    for _ in 1..eddy_server::jobs::MAX_CRASH_STREAK {
        let server = crate::support::ServerProcess::start(dir.path()).await;
        wait_job(&server.client, &culprit, Duration::from_secs(20), |s| s["state"] == "running").await;
        let other = server.client.job(&healthy).await.expect("status");
        assert_eq!(other["state"], "queued", "the other suspect waits its turn: {other:#}");
        server.kill();
    }
    let server = crate::support::ServerProcess::start(dir.path()).await;
    let held = server.client.job(&culprit).await.expect("status");
    assert_eq!(held["state"], "failed", "{held:#}");
    assert!(held["error"]["message"].as_str().is_some_and(|m| m.contains("held")), "{held:#}");
    let ran = wait_job(&server.client, &healthy, Duration::from_secs(20), |s| s["state"] == "running").await;
    assert_eq!(ran["state"], "running", "the job that did not take the server down is not held");
    server.kill();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_that_keeps_taking_the_server_down_is_held() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec =
        "name: doomed\noperators:\n  - { uid: src, source: { http: {} } }\n  - { uid: out, sink: http, input: src }\n";
    let mut id = String::new();
    // Each start is followed by kill -9, as an out-of-memory kill would end it.
    for start in 1..=eddy_server::jobs::MAX_CRASH_STREAK {
        let server = crate::support::ServerProcess::start(dir.path()).await;
        if start == 1 {
            id = submit(&server.client, spec).await;
        }
        wait_job(&server.client, &id, Duration::from_secs(20), |s| s["state"] == "running").await;
        server.kill();
    }
    let server = crate::support::ServerProcess::start(dir.path()).await;
    let status = server.client.job(&id).await.expect("status");
    assert_eq!(status["state"], "failed", "{status:#}");
    let message = status["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("held") && message.contains("3 starts"), "{message}");
    assert_eq!(server.client.health().await.expect("health")["status"], "ok");
    // Deleting it forgets it.
    let http = reqwest::Client::new();
    let deleted = http.delete(format!("{}/v1/jobs/{id}", server.url)).send().await.expect("delete");
    assert_eq!(deleted.status(), 204);
    assert_eq!(server.client.job(&id).await.expect_err("gone").status, Some(404));
    server.kill();
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_cannot_lock_other_clients_out() {
    use tokio::io::AsyncReadExt;
    let server = two_tenants(|c| {
        c.http.max_connections = 64;
        c.http.max_unauthenticated = 32;
        c.http.max_connections_per_address = 8;
        c.http.max_connections_per_tenant = 4;
        c.http.unauthenticated_idle_timeout = Duration::from_secs(60);
    })
    .await;
    let address = server.url.trim_start_matches("http://").to_string();
    // Far more idle sockets than any cap, all from the address every client here shares (as behind a proxy).
    let mut idle = Vec::new();
    for _ in 0..100 {
        if let Ok(socket) = tokio::net::TcpStream::connect(&address).await {
            idle.push(socket);
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Each tenant still gets in: its connection takes the place of the oldest idle one, then counts as the tenant's.
    for token in [ACME, GLOBEX] {
        let client = server.client_with(Some(token), None);
        assert!(client.jobs().await.is_ok(), "a tenant is served beside 100 idle sockets");
    }
    // The idle sockets were closed to make room: the server still holds no more than its caps.
    let mut closed = 0;
    for socket in &mut idle {
        let mut byte = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(Duration::from_millis(20), socket.read(&mut byte)).await {
            closed += 1;
        }
    }
    assert!(closed >= 100 - 8, "idle sockets beyond the address's cap were closed: {closed}");
    drop(idle);

    // Authenticated connections count per tenant: acme's fifth open connection is refused, globex is not held back.
    let mut held = Vec::new();
    for _ in 0..4 {
        let client = server.client_with(Some(ACME), None);
        client.jobs().await.expect("acme connects");
        held.push(client);
    }
    let fifth = server.client_with(Some(ACME), None).jobs().await.expect_err("acme holds its 4");
    assert_eq!((fifth.status, fifth.code.as_str()), (Some(503), "busy"), "{fifth}");
    assert!(fifth.message.contains("4 connections"), "{fifth}");
    server.client_with(Some(GLOBEX), None).jobs().await.expect("globex has its own");
    drop(held);
}

#[tokio::test(flavor = "multi_thread")]
async fn unauthenticated_connections_may_idle_only_briefly() {
    use tokio::io::AsyncReadExt;
    let server = two_tenants(|c| c.http.unauthenticated_idle_timeout = Duration::from_millis(300)).await;
    let address = server.url.trim_start_matches("http://").to_string();
    let mut socket = tokio::net::TcpStream::connect(&address).await.expect("connect");
    let mut byte = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut byte)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "the idle socket was closed: {closed:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_is_metered_per_tenant_in_the_metrics_for_the_admin_only() {
    let server = two_tenants(|c| c.admin_token_sha256 = Some(token_hash("admin-secret"))).await;
    let acme = server.client_with(Some(ACME), None);
    acme.push_module("echo", None, fixture("echo")).await.expect("upload");
    let spec = "name: m\noperators:\n  - { uid: src, source: { http: {} } }\n  - { uid: m, map: echo, input: src }\n  - { uid: out, sink: http, input: m }\n";
    let id = submit(&acme, spec).await;
    acme.ingest(&id, "src", "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n".into()).await.expect("ingest");
    acme.close_input(&id, "src").await.expect("close");
    wait_ended(&acme, &id).await;
    let http = reqwest::Client::new();
    let url = format!("{}/metrics", server.url);
    let refused = http.get(&url).bearer_auth(ACME).send().await.expect("request");
    assert_eq!(refused.status(), 401, "a tenant's token does not read every tenant's metrics");
    let text = http.get(&url).bearer_auth("admin-secret").send().await.expect("request").text().await.expect("text");
    for expected in [
        "eddy_tenant_records_in_total{tenant=\"acme\"} 3",
        "eddy_tenant_records_out_total{tenant=\"acme\"} 3",
        "eddy_tenant_records_in_total{tenant=\"globex\"} 0",
        "eddy_tenant_module_bytes{tenant=\"globex\"} 0",
        "eddy_tenant_guest_cpu_seconds_total{tenant=\"acme\"}",
        &format!("eddy_operator_num_records_in_total{{tenant=\"acme\",job=\"{id}\",operator=\"m\"}} 3"),
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
    assert!(!text.contains("eddy_tenant_module_bytes{tenant=\"acme\"} 0"), "acme's module is counted:\n{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_sets_quotas_over_the_api_and_they_survive_a_restart() {
    let mut server = two_tenants(|c| c.admin_token_sha256 = Some(token_hash("admin-secret"))).await;
    let http = reqwest::Client::new();
    let quota_url = |server: &TestServer| format!("{}/v1/tenants/acme/quota", server.url);
    let by_tenant = http.put(quota_url(&server)).bearer_auth(ACME).json(&serde_json::json!({ "jobs": 50 }));
    assert_eq!(by_tenant.send().await.expect("request").status(), 403, "a tenant cannot raise its own quota");
    let set = http.put(quota_url(&server)).bearer_auth("admin-secret").json(&serde_json::json!({ "jobs": 1 }));
    let response = set.send().await.expect("request");
    assert_eq!(response.status(), 200);
    let quota: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!((quota["jobs"].as_u64(), quota["parallelism"].as_u64()), (Some(1), Some(256)), "{quota:#}");
    let unknown = http.put(quota_url(&server)).bearer_auth("admin-secret").json(&serde_json::json!({ "jobz": 1 }));
    assert_eq!(unknown.send().await.expect("request").status(), 400, "unknown quota fields are refused");

    server.restart().await;
    let acme = server.client_with(Some(ACME), None);
    let spec =
        "name: q\noperators:\n  - { uid: src, source: { http: {} } }\n  - { uid: out, sink: discard, input: src }\n";
    submit(&acme, spec).await;
    let refused = acme.submit(spec).await.expect_err("the quota set over the API holds after the restart");
    assert!(refused.message.contains("`jobs` quota of 1 (1 in use)"), "{refused}");
    submit(&server.client_with(Some(GLOBEX), None), spec).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_record_goes_to_the_sources_side_output_instead_of_failing_the_job() {
    let server = TestServer::start().await;
    let c = &server.client;
    let spec = "name: m\noperators:\n  - { uid: src, source: { http: {} }, on_error: bad-records }\n  - { uid: counts, input: src, key_by: { json: \"$.user\" }, window: { tumbling: 1m }, aggregate: { builtin: count } }\n  - { uid: out, sink: http, input: counts }\n  - { uid: bad, sink: http, input: src.bad-records }\n";
    let id = submit(c, spec).await;
    c.ingest(&id, "src", "{\"user\":\"a\"}\n{\"user\":\n{\"user\":\"a\"}\n".into()).await.expect("ingest");
    c.close_input(&id, "src").await.expect("close");
    let status = wait_ended(c, &id).await;
    assert_eq!(status["state"], "finished", "{status:#}");
    let counts = crate::support::output(c, &id, "out").await;
    assert_eq!(counts.len(), 1);
    assert_eq!(counts[0]["value"]["count"], 2);
    let bad = crate::support::output(c, &id, "bad").await;
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!(bad[0]["value"], "{\"user\":");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_output_rate_quota_slows_a_tenants_sinks_and_loses_nothing() {
    let server = two_tenants(|c| {
        c.tenants[0].quota = QuotaOverrides { output_rate: Some(20), ..QuotaOverrides::default() };
    })
    .await;
    let acme = server.client_with(Some(ACME), None);
    let spec =
        "name: r\noperators:\n  - { uid: src, source: { http: {} } }\n  - { uid: out, sink: http, input: src }\n";
    let id = submit(&acme, spec).await;
    let lines: String = (0..60).map(|i| format!("{{\"n\":{i}}}\n")).collect();
    acme.ingest(&id, "src", lines).await.expect("ingest");
    // At 20 records a second (a second's worth at once), 60 records cannot all be out within half a second.
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&seen);
    let follow = acme.follow_output(&id, "out", false, move |event| {
        if event.event == "record" {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        true
    });
    let _ = tokio::time::timeout(Duration::from_millis(500), follow).await;
    let early = seen.load(std::sync::atomic::Ordering::Relaxed);
    assert!(early < 60, "the sink was held to its rate: {early} records out after 0.5 s");
    acme.close_input(&id, "src").await.expect("close");
    let records = crate::support::output(&acme, &id, "out").await;
    assert_eq!(records.len(), 60, "slowed, nothing lost");
}

#[tokio::test(flavor = "multi_thread")]
async fn uploads_compile_in_a_worker_bounded_in_time_and_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let slow = crate::support::ServerProcess::start_with_env(dir.path(), &[("EDDY_COMPILE_TIMEOUT_MS", "1")]).await;
    let refused = slow.client.push_module("echo", None, fixture("echo")).await.expect_err("too slow");
    assert_eq!(refused.status, Some(400), "{refused}");
    assert!(refused.message.contains("compiling took longer than this server allows"), "{refused}");
    slow.kill();
    let small = crate::support::ServerProcess::start_with_env(dir.path(), &[("EDDY_COMPILE_MEMORY_MB", "16")]).await;
    let refused = small.client.push_module("echo", None, fixture("echo")).await.expect_err("too little memory");
    assert_eq!(refused.status, Some(400), "{refused}");
    assert!(refused.message.contains("limits for one compile (16 MiB of memory)"), "{refused}");
    assert_eq!(small.client.health().await.expect("the server lives on")["status"], "ok");
    small.kill();
    let server = crate::support::ServerProcess::start(dir.path()).await;
    let c = &server.client;
    c.push_module("echo", None, fixture("echo")).await.expect("compiled in a worker");
    let spec = "name: e\noperators:\n  - { uid: src, source: { http: {} } }\n  - { uid: m, map: echo, input: src }\n  - { uid: out, sink: http, input: m }\n";
    let id = submit(c, spec).await;
    c.ingest(&id, "src", "{\"n\":1}\n".into()).await.expect("ingest");
    c.close_input(&id, "src").await.expect("close");
    assert_eq!(crate::support::output(c, &id, "out").await.len(), 1, "the worker's code runs");
    server.kill();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_whose_state_outgrows_its_tenants_quota_fails_naming_it() {
    let server = two_tenants(|c| {
        c.tenants[0].quota = QuotaOverrides { state_mb: Some(1), ..QuotaOverrides::default() };
    })
    .await;
    let acme = server.client_with(Some(ACME), None);
    let spec = "name: s\noperators:\n  - { uid: src, source: { http: {} } }\n  - { uid: w, input: src, key_by: { json: \"$.k\" }, window: { tumbling: 1h }, aggregate: { builtin: count } }\n  - { uid: out, sink: discard, input: w }\n";
    let id = submit(&acme, spec).await;
    let lines: String = (0..30_000).map(|i| format!("{{\"k\":\"key-{i}\"}}\n")).collect();
    let _ = acme.ingest(&id, "src", lines).await;
    let status = wait_ended(&acme, &id).await;
    assert_eq!(status["state"], "failed", "{status:#}");
    let message = status["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("tenant acme's state quota of 1 MiB is used up"), "{message}");
    // Another tenant's keyed job is not affected.
    let globex = server.client_with(Some(GLOBEX), None);
    let id = submit(&globex, spec).await;
    globex.ingest(&id, "src", (0..30_000).map(|i| format!("{{\"k\":\"key-{i}\"}}\n")).collect()).await.expect("ingest");
    globex.close_input(&id, "src").await.expect("close");
    assert_eq!(wait_ended(&globex, &id).await["state"], "finished");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenants_instance_memory_quota_limits_its_functions() {
    let server = two_tenants(|c| {
        c.tenants[0].quota = QuotaOverrides { instance_memory_mb: Some(16), ..QuotaOverrides::default() };
    })
    .await;
    let spec = "name: b\noperators:\n  - { uid: src, source: { http: {} } }\n  - { uid: m, map: bomb, input: src }\n  - { uid: out, sink: http, input: m }\n";
    let acme = server.client_with(Some(ACME), None);
    acme.push_module("bomb", None, fixture("memory-bomb")).await.expect("upload");
    let id = submit(&acme, spec).await;
    acme.ingest(&id, "src", "x\n".into()).await.expect("ingest");
    let status = wait_ended(&acme, &id).await;
    let message = status["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("memory limit of 16 MiB"), "acme's own limit: {message}");
    let globex = server.client_with(Some(GLOBEX), None);
    globex.push_module("bomb", None, fixture("memory-bomb")).await.expect("upload");
    let id = submit(&globex, spec).await;
    globex.ingest(&id, "src", "x\n".into()).await.expect("ingest");
    let status = wait_ended(&globex, &id).await;
    let message = status["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("memory limit of 256 MiB"), "globex has the server's limit: {message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flat_map_that_multiplies_its_input_keeps_the_output_backlog_bounded_in_bytes() {
    let server = TestServer::start().await;
    let c = &server.client;
    c.push_module("split", None, crate::support::example(crate::support::Rust, "split-words").await)
        .await
        .expect("upload");
    let spec = "name: f\noperators:\n  - { uid: src, source: { http: {} } }\n  - { uid: words, flat_map: split, input: src }\n  - { uid: out, sink: http, input: words }\n";
    let id = submit(c, spec).await;
    // Three records of a thousand 10 KB words each: 30 MB of output from three records.
    let word = "w".repeat(10_000);
    let line = vec![word.as_str(); 1000].join(" ");
    for _ in 0..3 {
        c.ingest(&id, "src", format!("{line}\n")).await.expect("ingest");
    }
    c.close_input(&id, "src").await.expect("close");
    assert_eq!(wait_ended(c, &id).await["state"], "finished");
    // A reader that comes after the job ended finds what the stream kept: at most 16 MiB, however much went by.
    let records = crate::support::output(c, &id, "out").await;
    let kept: usize = records.iter().map(|r| r["value"].as_str().map_or(0, str::len)).sum();
    assert!(!records.is_empty() && records.len() < 3000, "kept {} of 3000 records", records.len());
    assert!(kept <= 16 << 20, "kept {kept} bytes");
    let status = c.job(&id).await.expect("status");
    assert_eq!(status["operators"][2]["records_in"], 3000, "every record reached the sink: {status:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_uploads_of_one_version_create_it_exactly_once() {
    let server = TestServer::start_with(|c| c.max_concurrent_uploads = 16).await;
    let url = format!("{}/v1/modules?name=race1&version=1", server.url);
    let http = reqwest::Client::new();
    let uploads = (0..16).map(|i| {
        let (http, url) = (http.clone(), url.clone());
        let bytes = if i % 2 == 0 { fixture("echo") } else { fixture("trap") };
        tokio::spawn(async move {
            let response = http
                .post(&url)
                .header("content-type", "application/wasm")
                .body(bytes.clone())
                .send()
                .await
                .expect("request");
            (response.status().as_u16(), bytes)
        })
    });
    let mut created = Vec::new();
    let mut statuses = Vec::new();
    for upload in uploads {
        let (status, bytes) = upload.await.expect("task");
        statuses.push(status);
        if status == 201 {
            created.push(bytes);
        }
    }
    assert_eq!(created.len(), 1, "exactly one upload created race1@1: {statuses:?}");
    assert!(statuses.iter().all(|s| [200, 201, 409].contains(s)), "no 5xx: {statuses:?}");
    // What is stored is the winner's module, whole.
    let modules = server.client.modules().await.expect("list");
    let stored = modules.as_array().and_then(|m| m.first()).cloned().expect("one module");
    let winner_is_echo = created[0] == fixture("echo");
    assert_eq!(stored["kinds"][0], "map");
    let spec = "name: r\noperators:\n  - { uid: src, source: { http: {} } }\n  - { uid: m, map: race1@1, input: src }\n  - { uid: out, sink: http, input: m }\n";
    let id = submit(&server.client, spec).await;
    server.client.ingest(&id, "src", "{\"n\":1}\n".into()).await.expect("ingest");
    server.client.close_input(&id, "src").await.expect("close");
    let status = wait_ended(&server.client, &id).await;
    assert_eq!(status["state"] == "finished", winner_is_echo, "the stored bytes are the winner's: {status:#}");
}
