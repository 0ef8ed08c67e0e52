//! `eddy bench upgrade`: how long a job's output stops while its module is upgraded, as a consumer of its output
//! sees it: from the last record of the old module to the first of the new one. A server runs in-process; the job
//! counts visits per key of a paced generator in keyed state (100 keys) with `visit-counter`, and each upgrade
//! switches between its versions 1 and 2, whose records say which version wrote them.

use super::percentile;
use crate::client::Client;
use crate::config::ServerConfig;
use crate::examples::{Examples, Language};
use anyhow::{Context, bail};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SPEC: &str = "name: upgrade-bench
checkpoints: { interval: 1s }
operators:
  - { uid: src, source: { generator: { keys: 100, rate: 2000 } } }
  - { uid: count, input: src, key_by: record, process: visits@1 }
  - { uid: out, sink: http, input: count }
";

/// When each output record arrived and which version wrote it.
type Arrivals = Arc<Mutex<Vec<(Instant, String)>>>;

/// Runs `upgrades` upgrades and returns the benchmark's line.
pub fn run(upgrades: u32) -> anyhow::Result<String> {
    if upgrades == 0 {
        bail!("--upgrades must be at least 1");
    }
    let runtime = tokio::runtime::Handle::try_current().context("the upgrade benchmark runs inside the CLI")?;
    runtime.block_on(measure(upgrades))
}

async fn measure(upgrades: u32) -> anyhow::Result<String> {
    let examples = tokio::task::spawn_blocking(Examples::locate).await??;
    let mut versions = Vec::new();
    for (version, name) in [("1", "visit-counter"), ("2", "visit-counter-v2")] {
        let examples = examples.clone();
        versions.push((version, tokio::task::spawn_blocking(move || examples.bytes(Language::Rust, name)).await??));
    }
    let folder = tempfile::tempdir()?;
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse()?,
        data_dir: folder.path().to_path_buf(),
        ..ServerConfig::default()
    };
    let server = crate::server::start(config).await?;
    let client = Client::new(&server.url(), None, None);
    for (version, bytes) in versions {
        client.push_module("visits", Some(version), bytes).await?;
    }
    let job = client.submit(SPEC).await?["id"].as_str().context("a job id")?.to_string();
    let arrivals: Arrivals = Arc::default();
    let follower = {
        let (client, job, arrivals) = (client.clone(), job.clone(), Arc::clone(&arrivals));
        tokio::spawn(async move {
            client
                .follow_output(&job, "out", false, |event| {
                    if event.event == "record"
                        && let Ok(record) = serde_json::from_str::<serde_json::Value>(&event.data)
                    {
                        let logic = record["value"]["logic"].as_str().unwrap_or_default().to_string();
                        arrivals.lock().push((Instant::now(), logic));
                    }
                    event.event != "end"
                })
                .await
        })
    };

    let mut gaps = Vec::new();
    let mut server_downtimes = Vec::new();
    for number in 1..=upgrades {
        // Each upgrade starts from a steady job: its last upgrade passed probation, and output flows.
        let (to, label, allow) = if number % 2 == 1 { ("visits@2", "v2", false) } else { ("visits@1", "v1", true) };
        let flowing = arrivals.lock().len();
        wait_for(Duration::from_secs(30), || arrivals.lock().len() > flowing + 100).await?;
        client.upgrade(&job, &[to.to_string()], allow).await?;
        let upgrade = loop {
            let status = client.job(&job).await?;
            let found = status["upgrades"].as_array().and_then(|u| u.iter().find(|u| u["number"] == number)).cloned();
            if let Some(upgrade) = found.filter(|u| u["outcome"] != "in_progress") {
                break upgrade;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        if upgrade["outcome"] != "upgraded" {
            bail!("upgrade {number} did not go through: {upgrade}");
        }
        server_downtimes.push(upgrade["downtime_ms"].as_u64().unwrap_or(0) as f64);
        wait_for(Duration::from_secs(30), || arrivals.lock().last().is_some_and(|(_, l)| l == label)).await?;
        let seen = arrivals.lock();
        let first_new = seen.iter().position(|(_, l)| l == label).context("the new version's first record")?;
        let last_old = first_new.checked_sub(1).context("no record of the old version before the upgrade")?;
        gaps.push(seen[first_new].0.duration_since(seen[last_old].0).as_secs_f64() * 1000.0);
        drop(seen);
        arrivals.lock().clear();
    }
    client.cancel(&job).await?;
    let _ = tokio::time::timeout(Duration::from_secs(10), follower).await;
    server.shutdown().await?;
    let (p50, p99, max) = (percentile(&mut gaps, 50.0), percentile(&mut gaps, 99.0), percentile(&mut gaps, 100.0));
    Ok(format!(
        "eddy upgrade upgrades={upgrades} downtime_p50_ms={p50:.0} downtime_p99_ms={p99:.0} downtime_max_ms={max:.0} switch_p50_ms={:.0}",
        percentile(&mut server_downtimes, 50.0)
    ))
}

async fn wait_for(limit: Duration, done: impl Fn() -> bool) -> anyhow::Result<()> {
    let started = Instant::now();
    while !done() {
        if started.elapsed() > limit {
            bail!("the job's output stopped for more than {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}
