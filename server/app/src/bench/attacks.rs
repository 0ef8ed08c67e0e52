//! `eddy bench attacks`: what a hostile tenant's memory attacks cost the server, and what another tenant keeps
//! meanwhile. A server runs as a child process (`eddy serve`, two tenants, 256 MiB for what their jobs and
//! requests may hold); tenant `globex` posts small records into a pass-through job as fast as the server takes
//! them, first alone, then during each attack by tenant `acme`. For each attack the line gives the server's peak
//! resident memory during it and globex's records per second.

use crate::client::Client;
use crate::config::token_hash;
use anyhow::{Context, bail};
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const ACME: &str = "acme-bench-token";
const GLOBEX: &str = "globex-bench-token";
/// How long globex's throughput is measured alone, and at least during each attack.
const MEASURED: Duration = Duration::from_secs(5);

/// Runs every attack and returns the benchmark's line.
pub fn run() -> anyhow::Result<String> {
    let runtime = tokio::runtime::Handle::try_current().context("the attack benchmark runs inside the CLI")?;
    runtime.block_on(measure())
}

/// The server under attack, ended when dropped.
struct Server {
    child: std::process::Child,
    url: String,
    _data: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    async fn start() -> anyhow::Result<Server> {
        let data = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let tenants = format!("acme:{},globex:{}", token_hash(ACME), token_hash(GLOBEX));
        let child = std::process::Command::new(std::env::current_exe()?)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(data.path())
            .env("EDDY_TENANTS", tenants)
            .env("EDDY_GUEST_MEMORY_MB", "256")
            .env("EDDY_LOG", "error")
            .stdout(std::process::Stdio::null())
            .spawn()
            .context("cannot start `eddy serve`")?;
        let server = Server { child, url: format!("http://127.0.0.1:{port}"), _data: data };
        let probe = Client::new(&server.url, None, None);
        let started = Instant::now();
        while probe.health().await.is_err() {
            if started.elapsed() > Duration::from_secs(60) {
                bail!("the server did not answer on {}", server.url);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(server)
    }

    fn status_mib(&self, field: &str) -> u64 {
        super::status_mb_of(&self.child.id().to_string(), field)
    }

    /// Sets the server's peak resident set back to its current one.
    fn reset_peak(&self) {
        super::reset_peak_rss(&self.child.id().to_string());
    }

    fn client(&self, token: &str) -> Client {
        Client::new(&self.url, Some(token.to_string()), None)
    }
}

/// Globex's steady load: POSTs of 10,000 small records into a pass-through job, counting what is taken.
struct Load {
    taken: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    async fn start(globex: &Client) -> anyhow::Result<Load> {
        let spec = "name: steady\noperators:\n  - { uid: src, source: { http: {} } }\n  - { uid: out, sink: discard, input: src }\n";
        let id = job_id(&globex.submit(spec).await?)?;
        let (taken, stop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
        let body: String = (0..10_000).map(|i| format!("{{\"n\":{i}}}\n")).collect();
        let task = {
            let (globex, taken, stop) = (globex.clone(), Arc::clone(&taken), Arc::clone(&stop));
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match globex.ingest(&id, "src", body.clone()).await {
                        Ok(answer) => {
                            taken.fetch_add(answer["accepted"].as_u64().unwrap_or(0), Ordering::Relaxed);
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
            })
        };
        Ok(Load { taken, stop, task })
    }

    /// Records per second taken while `during` runs (and for at least [`MEASURED`]).
    async fn rate_during<F: std::future::Future<Output = anyhow::Result<()>>>(&self, during: F) -> anyhow::Result<u64> {
        let (before, started) = (self.taken.load(Ordering::Relaxed), Instant::now());
        let (done, ()) = tokio::join!(during, tokio::time::sleep(MEASURED));
        done?;
        let taken = self.taken.load(Ordering::Relaxed) - before;
        Ok((taken as f64 / started.elapsed().as_secs_f64()) as u64)
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
    }
}

fn job_id(view: &serde_json::Value) -> anyhow::Result<String> {
    Ok(view["id"].as_str().context("a job id")?.to_string())
}

/// A GET that reads the head of its answer, then nothing more, keeping the connection open.
fn stalled_reader(url: &str, path: &str, token: &str) -> anyhow::Result<std::net::TcpStream> {
    let address = url.trim_start_matches("http://");
    let mut socket = std::net::TcpStream::connect(address)?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\r\n");
    socket.write_all(request.as_bytes())?;
    socket.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head = [0u8; 512];
    let read = socket.read(&mut head)?;
    if !head[..read].starts_with(b"HTTP/1.1 200") {
        bail!("{path} was refused: {}", String::from_utf8_lossy(&head[..read]));
    }
    Ok(socket)
}

async fn wait_job(client: &Client, id: &str, done: impl Fn(&serde_json::Value) -> bool) -> anyhow::Result<()> {
    let started = Instant::now();
    while !done(&client.job(id).await?) {
        if started.elapsed() > Duration::from_secs(600) {
            bail!("job {id} did not get there in 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn big_record() -> String {
    format!("{{\"v\":\"{}\"}}\n", "x".repeat(48 << 20))
}

/// Sixteen clients follow an output whose record is 48 MiB and read nothing.
async fn unread_readers(server: &Server, acme: &Client) -> anyhow::Result<()> {
    let spec =
        "name: big\noperators:\n  - { uid: src, source: { http: {} } }\n  - { uid: out, sink: http, input: src }\n";
    let id = job_id(&acme.submit(spec).await?)?;
    acme.ingest(&id, "src", big_record()).await?;
    wait_job(acme, &id, |s| s["operators"][1]["records_in"] == 1).await?;
    let path = format!("/v1/jobs/{id}/outputs/out");
    let readers = (0..16).map(|_| stalled_reader(&server.url, &path, ACME)).collect::<anyhow::Result<Vec<_>>>()?;
    tokio::time::sleep(MEASURED).await;
    drop(readers);
    acme.cancel(&id).await?;
    Ok(())
}

/// One 48 MiB record fanned out to 60 HTTP sinks.
async fn fan_out(acme: &Client) -> anyhow::Result<()> {
    let mut spec = "name: fan\noperators:\n  - { uid: src, source: { http: {} } }\n".to_string();
    for i in 0..60 {
        spec.push_str(&format!("  - {{ uid: out{i}, sink: http, input: src }}\n"));
    }
    let id = job_id(&acme.submit(&spec).await?)?;
    acme.ingest(&id, "src", big_record()).await?;
    wait_job(acme, &id, |s| s["state"] != "running").await
}

/// Eight POSTs at once, each of 64 MiB of two-byte records.
async fn tiny_posts(acme: &Client) -> anyhow::Result<()> {
    let spec =
        "name: tiny\noperators:\n  - { uid: src, source: { http: {} } }\n  - { uid: out, sink: discard, input: src }\n";
    let id = job_id(&acme.submit(spec).await?)?;
    let body = Arc::new("0\n".repeat(32 << 20));
    let posts: Vec<_> = (0..8)
        .map(|_| {
            let (acme, id, body) = (acme.clone(), id.clone(), Arc::clone(&body));
            tokio::spawn(async move { acme.ingest(&id, "src", body.as_str().to_string()).await })
        })
        .collect();
    for post in posts {
        // Refusals (memory_budget, busy) are the server defending itself: only its survival is measured.
        let _ = post.await?;
    }
    acme.cancel(&id).await?;
    Ok(())
}

/// A savepoint of about 100 MiB, read per key by sixteen clients at once while eight download it unread.
async fn savepoint_reads(server: &Server, acme: &Client) -> anyhow::Result<()> {
    let spec = "name: held\ncheckpoints: { interval: 1h }\noperators:\n  - { uid: src, source: { http: {} }, watermark: { out_of_orderness: 0ms, timestamp: { json: \"$.ts\" } } }\n  - { uid: w, input: src, key_by: { json: \"$.key\" }, window: { tumbling: 1d, evictor: { count: 10 } }, aggregate: { builtin: count } }\n  - { uid: out, sink: http, input: w }\n";
    let id = job_id(&acme.submit(spec).await?)?;
    let pad = "x".repeat((1 << 20) - 64);
    for key in 0..96 {
        acme.ingest(&id, "src", format!("{{\"key\":\"k{key}\",\"ts\":1700000000000,\"pad\":\"{pad}\"}}\n")).await?;
    }
    wait_job(acme, &id, |s| s["operators"][1]["records_in"] == 96).await?;
    let savepoint = acme.savepoint(&id, true).await?;
    let savepoint = savepoint["id"].as_str().context("a savepoint id")?.to_string();
    let path = format!("/v1/savepoints/{savepoint}/archive");
    let downloads = (0..8).map(|_| stalled_reader(&server.url, &path, ACME)).collect::<anyhow::Result<Vec<_>>>()?;
    let reads: Vec<_> = (0..16)
        .map(|i| {
            let (acme, savepoint) = (acme.clone(), savepoint.clone());
            tokio::spawn(async move { acme.savepoint_state(&savepoint, "w", &format!("k{i}")).await })
        })
        .collect();
    for read in reads {
        let _ = read.await?;
    }
    drop(downloads);
    Ok(())
}

async fn measure() -> anyhow::Result<String> {
    let server = Server::start().await?;
    let (acme, globex) = (server.client(ACME), server.client(GLOBEX));
    let load = Load::start(&globex).await?;
    server.reset_peak();
    let solo = load.rate_during(async { Ok(()) }).await?;
    let mut line = format!("eddy attacks idle_rss_mib={} globex_solo_rps={solo}", server.status_mib("VmHWM"));
    for name in ["unread_readers", "fan_out", "tiny_posts", "savepoint_reads"] {
        server.reset_peak();
        let attack = async {
            match name {
                "unread_readers" => unread_readers(&server, &acme).await,
                "fan_out" => fan_out(&acme).await,
                "tiny_posts" => tiny_posts(&acme).await,
                _ => savepoint_reads(&server, &acme).await,
            }
        };
        let rate = load.rate_during(attack).await?;
        if server.client(GLOBEX).health().await.is_err() {
            bail!("the server did not survive the attack `{name}`");
        }
        line.push_str(&format!(" {name}_peak_rss_mib={} {name}_globex_rps={rate}", server.status_mib("VmHWM")));
    }
    load.stop().await;
    Ok(line)
}
