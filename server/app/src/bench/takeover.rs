//! `eddy bench takeover --database postgres://…`: how long a job waits when the server running it dies. Three
//! `eddy serve` children share the database, a checkpoint folder and a files folder; an endless generator job
//! writes exactly-once files. Each round kills the job's owner with SIGKILL, times until another node claims it
//! and until its first new output is committed, and starts the killed node again. The line gives the median and
//! the longest of both over `--kills` rounds, from the kill and from the lease's lapse.

use crate::client::Client;
use anyhow::{Context, bail};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What the job is: 1,000 events a second, committed with a checkpoint every 500 ms.
const SPEC: &str = "name: takeover\ncheckpoints: { interval: 500ms }\noperators:\n  - { uid: src, source: { generator: { keys: 100, rate: 1000 } } }\n  - { uid: out, sink: { file: { path: out } }, input: src }\n";

/// Runs the rounds and returns the benchmark's line.
pub fn run(database: &str, kills: u32, lease_ms: u64) -> anyhow::Result<String> {
    let runtime = tokio::runtime::Handle::try_current().context("the takeover benchmark runs inside the CLI")?;
    runtime.block_on(measure(database, kills.max(1), lease_ms))
}

/// One `eddy serve` child, killed when dropped.
struct Node {
    child: std::process::Child,
    client: Client,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Folders {
    root: tempfile::TempDir,
}

impl Folders {
    fn shared(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }
}

async fn start(index: usize, database: &str, lease_ms: u64, folders: &Folders) -> anyhow::Result<Node> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = std::process::Command::new(std::env::current_exe()?)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(folders.shared(&format!("node{index}")))
        .env("EDDY_CLUSTER_DATABASE", database)
        .env("EDDY_NODE_ID", format!("n{index}"))
        .env("EDDY_LEASE_MS", lease_ms.to_string())
        .env("EDDY_CHECKPOINT_DIR", folders.shared("checkpoints"))
        .env("EDDY_FILES_DIR", folders.shared("files"))
        .env("EDDY_LOG", "error")
        .stdout(std::process::Stdio::null())
        .spawn()
        .context("cannot start `eddy serve`")?;
    let client = Client::new(&format!("http://127.0.0.1:{port}"), None, None);
    let started = Instant::now();
    while client.health().await.is_err() {
        if started.elapsed() > Duration::from_secs(60) {
            bail!("node n{index} did not answer");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Node { child, client })
}

/// Committed output lines of the job, counted by their files' sizes (each line is one record).
fn committed_bytes(folder: &Path) -> u64 {
    let entries = std::fs::read_dir(folder).into_iter().flatten().flatten();
    let visible = entries.filter(|e| e.file_name().to_string_lossy().starts_with("part-"));
    visible.filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum()
}

/// The live node that says it runs `job`.
fn owner(view: &Value, job: &str) -> Option<usize> {
    let nodes = view["nodes"].as_array()?;
    let runs = |n: &&Value| n["alive"] == true && n["jobs"].as_array().is_some_and(|j| j.iter().any(|j| j == job));
    nodes.iter().find(runs)?.get("node_id")?.as_str()?.strip_prefix('n')?.parse().ok()
}

async fn wait_for<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> anyhow::Result<T> {
    let started = Instant::now();
    loop {
        if let Some(found) = probe().await {
            return Ok(found);
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("{what} did not happen in two minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn measure(database: &str, kills: u32, lease_ms: u64) -> anyhow::Result<String> {
    let folders = Folders { root: tempfile::tempdir()? };
    let mut nodes: Vec<Option<Node>> = Vec::new();
    for i in 0..3 {
        nodes.push(Some(start(i, database, lease_ms, &folders).await?));
    }
    let any = |nodes: &[Option<Node>], except: usize| -> anyhow::Result<Client> {
        let node = nodes.iter().enumerate().find(|(i, n)| *i != except && n.is_some()).and_then(|(_, n)| n.as_ref());
        Ok(node.context("no live node")?.client.clone())
    };
    let view = any(&nodes, usize::MAX)?.submit(SPEC).await?;
    let id = view["id"].as_str().context("a job id")?.to_string();
    let job = format!("default/{id}");
    let output = folders.shared("files/default/out");
    let (mut claims, mut outputs) = (Vec::new(), Vec::new());
    for _ in 0..kills {
        let client = any(&nodes, usize::MAX)?;
        let owner_now = wait_for("a node running the job", async || owner(&client.cluster().await.ok()?, &job)).await?;
        // Output flows before the kill, so the next growth is the new owner's.
        let flowing = committed_bytes(&output);
        wait_for("output", async || (committed_bytes(&output) > flowing).then_some(())).await?;
        if let Some(mut node) = nodes[owner_now].take() {
            let _ = node.child.kill();
            let _ = node.child.wait();
        }
        let killed = Instant::now();
        let written = committed_bytes(&output);
        let watcher = any(&nodes, owner_now)?;
        let claimed = wait_for("a takeover", async || {
            owner(&watcher.cluster().await.ok()?, &job).filter(|o| *o != owner_now).map(|_| killed.elapsed())
        })
        .await?;
        let first_output =
            wait_for("the first output", async || (committed_bytes(&output) > written).then(|| killed.elapsed()))
                .await?;
        claims.push(claimed.as_secs_f64());
        outputs.push(first_output.as_secs_f64());
        nodes[owner_now] = Some(start(owner_now, database, lease_ms, &folders).await?);
    }
    let lease = lease_ms as f64 / 1000.0;
    let figures = |values: &mut Vec<f64>| {
        let p50 = super::percentile(values, 50.0);
        let max = values.last().copied().unwrap_or(0.0);
        format!("p50={p50:.2}s max={max:.2}s (after the lease's lapse p50={:.2}s)", p50 - lease)
    };
    Ok(format!(
        "takeover kills={kills} lease={lease:.1}s claim: {} first_output: {}",
        figures(&mut claims),
        figures(&mut outputs)
    ))
}
