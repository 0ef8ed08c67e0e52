//! A tenant's attacks on the server's memory (item 3 of the hostile-tenants review). Each runs against a server
//! process in a memory cgroup of 512 MiB (where one can be made; its peak resident memory is held to that bound
//! either way) that gives all tenants' jobs and requests 256 MiB, and another tenant's job must go on meanwhile.

use super::{ACME, GLOBEX};
use crate::support::{MemoryLimit, ServerProcess, output, submit, wait_job};
use eddy_server::client::Client;
use eddy_server::config::token_hash;
use serde_json::Value;
use std::io::{Read, Write};
use std::time::Duration;

const LIMIT: u64 = 512 << 20;

struct Attacked {
    server: ServerProcess,
    _limit: Result<MemoryLimit, String>,
    acme: Client,
    globex: Client,
    _dir: tempfile::TempDir,
}

async fn attacked() -> Attacked {
    let dir = tempfile::tempdir().expect("dir");
    let tenants = format!("acme:{},globex:{}", token_hash(ACME), token_hash(GLOBEX));
    let env = [("EDDY_TENANTS", tenants.as_str()), ("EDDY_GUEST_MEMORY_MB", "256")];
    let server = ServerProcess::start_with_env(dir.path(), &env).await;
    let limit = MemoryLimit::new(LIMIT);
    if let Ok(limit) = &limit {
        limit.add(server.pid()).expect("the server goes into the cgroup");
    }
    let acme = Client::new(&server.url, Some(ACME.into()), None);
    let globex = Client::new(&server.url, Some(GLOBEX.into()), None);
    Attacked { server, _limit: limit, acme, globex, _dir: dir }
}

impl Attacked {
    /// The server answers, the other tenant's job reads, computes and answers, and the server's peak memory
    /// stayed within the limit.
    async fn assert_contained(&self) {
        assert!(self.acme.health().await.is_ok(), "the server lived through the attack");
        let spec = "name: bystander\noperators:\n  - { uid: src, source: { http: {} } }\n  - { uid: out, sink: http, input: src }\n";
        let id = submit(&self.globex, spec).await;
        self.globex.ingest(&id, "src", "1\n2\n3\n".into()).await.expect("the other tenant's input is taken");
        self.globex.close_input(&id, "src").await.expect("close");
        assert_eq!(output(&self.globex, &id, "out").await.len(), 3, "the other tenant's job answers");
        let peak = self.server.peak_rss();
        assert!(peak < LIMIT, "peak resident memory {} MiB, limit {} MiB", peak >> 20, LIMIT >> 20);
    }
}

/// A GET that reads the head of its answer and then nothing more, keeping the connection open.
fn stalled_reader(url: &str, path: &str, token: &str) -> std::net::TcpStream {
    let address = url.trim_start_matches("http://");
    let mut socket = std::net::TcpStream::connect(address).expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\r\n");
    socket.write_all(request.as_bytes()).expect("request");
    socket.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    let mut head = [0u8; 512];
    let read = socket.read(&mut head).expect("the answer starts");
    let head = String::from_utf8_lossy(&head[..read]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    socket
}

fn big_record() -> String {
    format!("{{\"v\":\"{}\"}}\n", "x".repeat(48 << 20))
}

const PASS_THROUGH: &str =
    "name: big\noperators:\n  - { uid: src, source: { http: {} } }\n  - { uid: out, sink: http, input: src }\n";

/// Sixteen clients follow an output whose record is 48 MiB and never read it: they share one rendering of it.
#[tokio::test(flavor = "multi_thread")]
async fn clients_that_never_read_a_big_output_record_share_one_copy() {
    let attack = attacked().await;
    let id = submit(&attack.acme, PASS_THROUGH).await;
    attack.acme.ingest(&id, "src", big_record()).await.expect("a 48 MiB record");
    wait_job(&attack.acme, &id, Duration::from_secs(120), |s| s["operators"][1]["records_in"] == 1).await;
    let path = format!("/v1/jobs/{id}/outputs/out");
    let readers: Vec<_> = (0..16).map(|_| stalled_reader(&attack.server.url, &path, ACME)).collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    attack.assert_contained().await;
    drop(readers);
}

/// One 48 MiB record fans out to 60 HTTP sinks, each keeping it for its readers: past the tenant's memory the
/// job fails naming the budget, instead of the server holding 60 copies.
#[tokio::test(flavor = "multi_thread")]
async fn a_big_record_fanned_out_to_many_outputs_is_held_to_the_tenants_memory() {
    let attack = attacked().await;
    let mut spec = "name: fan\noperators:\n  - { uid: src, source: { http: {} } }\n".to_string();
    for i in 0..60 {
        spec.push_str(&format!("  - {{ uid: out{i}, sink: http, input: src }}\n"));
    }
    let id = submit(&attack.acme, &spec).await;
    attack.acme.ingest(&id, "src", big_record()).await.expect("a 48 MiB record");
    let ended = wait_job(&attack.acme, &id, Duration::from_secs(120), |s| s["state"] != "running").await;
    let failure = ended["error"]["message"].as_str().unwrap_or("");
    assert_eq!(ended["state"], "failed", "{ended:#}");
    assert!(failure.contains("HTTP sink") && failure.contains("memory budget"), "{failure}");
    attack.assert_contained().await;
}

/// One POST of 64 MiB of two-byte records (32 Mi records), then eight at once.
#[tokio::test(flavor = "multi_thread")]
async fn a_post_of_tiny_records_costs_a_bounded_amount_per_request() {
    let attack = attacked().await;
    let spec =
        "name: tiny\noperators:\n  - { uid: src, source: { http: {} } }\n  - { uid: out, sink: discard, input: src }\n";
    let id = submit(&attack.acme, spec).await;
    let lines = 32 << 20;
    let accepted = attack.acme.ingest(&id, "src", "0\n".repeat(lines)).await.expect("the POST is taken");
    assert_eq!(accepted["accepted"], lines);
    // Eight such POSTs at once: their bodies are charged before they are read, so past the tenants' memory the
    // rest are refused, not held.
    let posts: Vec<_> = (0..8)
        .map(|_| {
            let acme = attack.acme.clone();
            let id = id.clone();
            tokio::spawn(async move { acme.ingest(&id, "src", "0\n".repeat(lines)).await })
        })
        .collect();
    let mut refused = 0;
    for post in posts {
        match post.await.expect("post") {
            Ok(taken) => assert_eq!(taken["accepted"], lines),
            Err(e) if e.code == "memory_budget" || e.code == "busy" => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(refused > 0, "eight 64 MiB bodies do not fit in 256 MiB");
    attack.assert_contained().await;
}

/// A savepoint of about 100 MiB: sixteen clients read one key's state from it at once while eight download it and
/// never read their answer.
#[tokio::test(flavor = "multi_thread")]
async fn parallel_reads_and_unread_downloads_of_a_big_savepoint_stay_within_the_tenants_memory() {
    let attack = attacked().await;
    let acme = &attack.acme;
    let spec = "name: held\ncheckpoints: { interval: 1h }\noperators:\n  - { uid: src, source: { http: {} }, watermark: { out_of_orderness: 0ms, timestamp: { json: \"$.ts\" } } }\n  - { uid: w, input: src, key_by: { json: \"$.key\" }, window: { tumbling: 1d, evictor: { count: 10 } }, aggregate: { builtin: count } }\n  - { uid: out, sink: http, input: w }\n";
    let id = submit(acme, spec).await;
    let pad = "x".repeat((1 << 20) - 64);
    for key in 0..96 {
        let line = format!("{{\"key\":\"k{key}\",\"ts\":1700000000000,\"pad\":\"{pad}\"}}\n");
        acme.ingest(&id, "src", line).await.expect("ingest");
    }
    wait_job(acme, &id, Duration::from_secs(300), |s| s["operators"][1]["records_in"] == 96).await;
    let savepoint = acme.savepoint(&id, true).await.expect("stop with a savepoint");
    let savepoint = savepoint["id"].as_str().expect("id").to_string();

    let path = format!("/v1/savepoints/{savepoint}/archive");
    let downloads: Vec<_> = (0..8).map(|_| stalled_reader(&attack.server.url, &path, ACME)).collect();
    let reads: Vec<_> = (0..16)
        .map(|i| {
            let (acme, savepoint) = (acme.clone(), savepoint.clone());
            tokio::spawn(async move { acme.savepoint_state(&savepoint, "w", &format!("k{i}")).await })
        })
        .collect();
    for read in reads {
        match read.await.expect("read") {
            Ok(state) => assert_eq!(state["entries"].as_array().map(Vec::len), Some(1), "{}", state["key"]),
            Err(refused) => assert_eq!(refused.code, "memory_budget", "{refused}"),
        }
    }
    let again: Value = acme.savepoint_state(&savepoint, "w", "k95").await.expect("a read after the others ended");
    assert_eq!(again["entries"].as_array().map(Vec::len), Some(1));
    attack.assert_contained().await;
    drop(downloads);
}
