//! Starting servers, building example UDFs, and waiting for jobs.

use eddy_server::client::Client;
use eddy_server::config::ServerConfig;
use eddy_server::examples::{Examples, Language};
use eddy_server::server::RunningServer;
use serde_json::Value;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A server for one test.
pub struct TestServer {
    running: Option<RunningServer>,
    /// A client in open mode (or with the test's token).
    pub client: Client,
    /// The base URL.
    pub url: String,
    config: ServerConfig,
    _dir: tempfile::TempDir,
}

/// Default settings for tests: loopback, a free port, a fresh data folder.
pub fn config(dir: &tempfile::TempDir) -> ServerConfig {
    ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.path().to_path_buf(),
        ..ServerConfig::default()
    }
}

impl TestServer {
    /// An open-mode server.
    pub async fn start() -> TestServer {
        TestServer::start_with(|_| {}).await
    }

    /// A server with settings changed by `tweak`.
    pub async fn start_with(tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = config(&dir);
        tweak(&mut config);
        let running = eddy_server::server::start(config.clone()).await.expect("server starts");
        let url = running.url();
        TestServer { client: Client::new(&url, None, None), url, running: Some(running), config, _dir: dir }
    }

    /// Stops the server and starts a new one on the same data folder (and a new port).
    pub async fn restart(&mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await.expect("clean shutdown");
        }
        let running = eddy_server::server::start(self.config.clone()).await.expect("server restarts");
        self.url = running.url();
        self.client = Client::new(&self.url, None, None);
        self.running = Some(running);
    }

    /// The server's data folder.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.config.data_dir
    }

    /// A client with `token` for the server.
    pub fn client_with(&self, token: Option<&str>, tenant: Option<&str>) -> Client {
        Client::new(&self.url, token.map(str::to_string), tenant.map(str::to_string))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            // Tests that end without `restart` still stop their jobs.
            let handle = tokio::runtime::Handle::try_current();
            if let Ok(handle) = handle {
                let _ = tokio::task::block_in_place(|| handle.block_on(running.shutdown()));
            }
        }
    }
}

/// The `eddy` binary cargo built beside the tests.
pub fn eddy_binary() -> std::path::PathBuf {
    // The test binary lives in <target>/<profile>/deps; cargo builds `eddy` one folder up.
    let exe = std::env::current_exe().expect("test binary");
    let eddy = exe.parent().and_then(|deps| deps.parent()).expect("target folder").join("eddy");
    assert!(eddy.exists(), "{} is missing: build the workspace's binaries first", eddy.display());
    eddy
}

/// The `eddy` binary as a separate process, for tests that kill it as the kernel would.
pub struct ServerProcess {
    child: std::process::Child,
    /// A client in open mode.
    pub client: Client,
    /// The base URL.
    pub url: String,
}

impl ServerProcess {
    /// Starts `eddy serve` on a free loopback port with `data_dir`, and waits until it answers.
    pub async fn start(data_dir: &std::path::Path) -> ServerProcess {
        ServerProcess::start_with_env(data_dir, &[]).await
    }

    /// Like `start`, with `env` (`EDDY_*` settings) added to the process's environment.
    pub async fn start_with_env(data_dir: &std::path::Path, env: &[(&str, &str)]) -> ServerProcess {
        let eddy = eddy_binary();
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let child = std::process::Command::new(&eddy)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(data_dir)
            .env("EDDY_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("eddy starts");
        let url = format!("http://127.0.0.1:{port}");
        let client = Client::new(&url, None, None);
        let started = Instant::now();
        while client.health().await.is_err() {
            assert!(started.elapsed() < Duration::from_secs(60), "eddy did not answer on {url}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ServerProcess { child, client, url }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The most memory the process has held (its peak resident set), in bytes.
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).unwrap_or("0 kB");
        line.trim().trim_end_matches("kB").trim().parse::<u64>().unwrap_or(0) * 1024
    }

    /// Sends SIGTERM, as Kubernetes does to stop a pod, and waits for the process to end.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let sent = std::process::Command::new("kill").args(["-TERM", &self.pid().to_string()]).status();
        assert!(sent.is_ok_and(|s| s.success()), "cannot send SIGTERM to {}", self.pid());
        self.child.wait().expect("wait for eddy")
    }

    /// Pauses the process (SIGSTOP), as a long GC pause or a frozen VM would: it neither answers nor renews anything.
    pub fn pause(&self) {
        let sent = std::process::Command::new("kill").args(["-STOP", &self.pid().to_string()]).status();
        assert!(sent.is_ok_and(|s| s.success()), "cannot pause {}", self.pid());
    }

    /// Lets a paused process go on (SIGCONT).
    pub fn resume(&self) {
        let sent = std::process::Command::new("kill").args(["-CONT", &self.pid().to_string()]).status();
        assert!(sent.is_ok_and(|s| s.success()), "cannot resume {}", self.pid());
    }

    /// Kills the process with SIGKILL: no shutdown code runs.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn examples() -> &'static Examples {
    static EXAMPLES: OnceLock<Examples> = OnceLock::new();
    EXAMPLES.get_or_init(|| Examples::locate().expect("the repository's udfs/ folder"))
}

/// The compiled example `name` in `language` (built on first use).
pub async fn example(language: Language, name: &'static str) -> Vec<u8> {
    tokio::task::spawn_blocking(move || examples().bytes(language, name))
        .await
        .expect("build thread")
        .unwrap_or_else(|e| panic!("building example {name}: {e:#}"))
}

/// A hand-written component from `tests/fixtures/<name>.wat`.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = examples().repo().join("tests/fixtures").join(format!("{name}.wat"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    wat::parse_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Polls a job until `done` says so, or panics after `timeout`.
pub async fn wait_job(client: &Client, id: &str, timeout: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let status = client.job(id).await.expect("job status");
        if done(&status) {
            return status;
        }
        assert!(started.elapsed() < timeout, "job {id} did not get there in {timeout:?}: {status:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the job is no longer running.
pub async fn wait_ended(client: &Client, id: &str) -> Value {
    wait_job(client, id, Duration::from_secs(60), |s| s["state"] != "running").await
}

/// Every record a job's HTTP sink emits until the job ends, as `{"ts","key","value"}` objects.
pub async fn output(client: &Client, id: &str, sink: &str) -> Vec<Value> {
    let mut records = Vec::new();
    let follow = client.follow_output(id, sink, false, |event| {
        if event.event == "record" {
            records.push(serde_json::from_str(&event.data).expect("record JSON"));
        }
        event.event != "end"
    });
    tokio::time::timeout(Duration::from_secs(60), follow).await.expect("output ends").expect("output stream");
    records
}

/// Submits a spec, panicking with the server's message if it is refused.
pub async fn submit(client: &Client, spec: &str) -> String {
    let view = client.submit(spec).await.unwrap_or_else(|e| panic!("submit refused: {e}"));
    view["id"].as_str().expect("job id").to_string()
}

pub use eddy_server::examples::Language::{Js, Python, Rust};

/// A memory cgroup (version 1 or 2) that a test puts a process in, so that the kernel enforces a memory limit on
/// it as a container would (a process past it is killed); removed when dropped (after the process in it ended).
pub struct MemoryLimit {
    dir: std::path::PathBuf,
}

impl MemoryLimit {
    /// A new cgroup below this process's own, limited to `bytes`; why not, where cgroups cannot be made.
    pub fn new(bytes: u64) -> Result<MemoryLimit, String> {
        let own = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
        let name = format!("eddy-test-{}-{}", std::process::id(), uuid_like());
        for line in own.lines() {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (parts.next(), parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
            let (root, limit) = match controllers {
                "memory" => ("/sys/fs/cgroup/memory", "memory.limit_in_bytes"),
                "" if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() => {
                    ("/sys/fs/cgroup", "memory.max")
                }
                _ => continue,
            };
            let dir = std::path::Path::new(root).join(path.trim_start_matches('/')).join(&name);
            if std::fs::create_dir(&dir).is_err() {
                continue;
            }
            let made = MemoryLimit { dir };
            if std::fs::write(made.dir.join(limit), bytes.to_string()).is_ok() {
                // Without swap limits a v1 group could page out instead: no swap either way.
                let _ = std::fs::write(made.dir.join("memory.swappiness"), "0");
                let _ = std::fs::write(made.dir.join("memory.swap.max"), "0");
                return Ok(made);
            }
        }
        Err("no memory cgroup could be made here".into())
    }

    /// Moves process `pid` into the cgroup.
    pub fn add(&self, pid: u32) -> Result<(), String> {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string()).map_err(|e| e.to_string())
    }
}

impl Drop for MemoryLimit {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn uuid_like() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The lines of the visible part files of a file sink's folder, sorted.
pub fn committed(folder: &std::path::Path) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(folder).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with("part-") {
            lines.extend(std::fs::read_to_string(entry.path()).expect("part").lines().map(str::to_string));
        }
    }
    lines.sort();
    lines
}

/// Checks that every metric the Grafana dashboard under `deploy/` uses is one that `metrics` (a scrape of
/// `/metrics`) exports, by its Prometheus name (`_total` for counters). Families without samples are not exported,
/// so the scrape must come from a server whose jobs use every kind of metric (a Kafka job with checkpoints does).
pub fn assert_the_dashboard_uses_exported_metrics(metrics: &str) {
    let mut exported = std::collections::BTreeSet::new();
    for line in metrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let mut parts = line.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else { continue };
        exported.insert(if kind == "counter" { format!("{name}_total") } else { name.to_string() });
    }
    let path = examples().repo().join("deploy/grafana/eddy.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("the dashboard")).expect("JSON");
    let targets = dashboard["panels"].as_array().into_iter().flatten().flat_map(|p| p["targets"].as_array()).flatten();
    let variables = dashboard["templating"]["list"].as_array().into_iter().flatten();
    let queries: Vec<&str> =
        targets.filter_map(|t| t["expr"].as_str()).chain(variables.filter_map(|v| v["query"].as_str())).collect();
    let mut used = std::collections::BTreeSet::new();
    for query in queries {
        let mut rest = query;
        while let Some(at) = rest.find("eddy_") {
            let name: String = rest[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            rest = &rest[at + name.len()..];
            used.insert(name);
        }
    }
    assert!(used.len() >= 15, "the dashboard shows the main metrics: {used:?}");
    let unknown: Vec<&String> = used.iter().filter(|name| !exported.contains(*name)).collect();
    assert!(
        unknown.is_empty(),
        "the dashboard uses metrics the server does not export: {unknown:?}\nexported: {exported:?}"
    );
}
