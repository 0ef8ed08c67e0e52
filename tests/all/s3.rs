//! The S3 checkpoint store against a real S3-compatible server: moto, installed by `tests/services/moto.sh`, run
//! as a process of its own per test so that a test can stop it and start it again.

use eddy_engine::checkpoint::{CheckpointStore, Checkpointing, Restore};
use eddy_engine::graph::JobGraph;
use eddy_engine::runtime::{DeployEnv, JobState, deploy};
use eddy_engine::spec::JobSpec;
use eddy_engine::testing::TestFunctions;
use eddy_server::s3::{S3Settings, S3Store};
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A moto server on a loopback port, killed when dropped.
pub(crate) struct Moto {
    child: Option<Child>,
    port: u16,
}

impl Moto {
    /// Starts moto on a free port and waits until it answers.
    pub(crate) fn start() -> Moto {
        for _ in 0..5 {
            let port =
                std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
            let mut moto = Moto { child: None, port };
            moto.restart();
            // Another process may have taken the port between the probe and moto's start: then moto has exited,
            // and what answered was that other process.
            std::thread::sleep(Duration::from_millis(200));
            if moto.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None))) {
                return moto;
            }
        }
        panic!("moto_server could not get a free port in 5 tries");
    }

    /// Starts moto again on the same port (an empty server: moto keeps everything in memory).
    fn restart(&mut self) {
        self.kill();
        let binary = std::env::var_os("EDDY_MOTO_SERVER").unwrap_or_else(|| {
            panic!("EDDY_MOTO_SERVER is not set: run `tests/services/moto.sh` and export EDDY_MOTO_SERVER=<its output>")
        });
        let binary = std::path::PathBuf::from(binary);
        assert!(binary.exists(), "EDDY_MOTO_SERVER={} does not exist: run `tests/services/moto.sh`", binary.display());
        let mut child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()) // a line per request
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let deadline = Instant::now() + Duration::from_secs(60);
        while !answers(self.port) {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("moto_server on port {} exited with {status} before answering", self.port);
            }
            assert!(Instant::now() < deadline, "moto_server did not answer on port {} within 60 s", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
    }

    /// Kills the server as the kernel would; connections to its port are refused from then on.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections are accepted by the kernel but nothing answers.
    fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen server go on (SIGCONT), with everything it held.
    fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("moto is running");
        let status = Command::new("kill").args([signal, &child.id().to_string()]).status().expect("kill");
        assert!(status.success(), "kill {signal} failed: {status}");
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether an HTTP server answers on `port`.
fn answers(port: u16) -> bool {
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut reply = [0u8; 5];
    stream.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && &reply == b"HTTP/"
}

/// Settings for a bucket of `moto` with the test credentials moto accepts.
pub(crate) fn settings(moto: &Moto) -> S3Settings {
    let mut settings = S3Settings::new("eddy-test");
    settings.prefix = "cp/".into();
    settings.endpoint = Some(moto.endpoint());
    settings.region = Some("us-east-1".into());
    settings.path_style = true;
    settings.access_key_id = Some("testkey".into());
    settings.secret_access_key = Some("testsecret".into());
    settings
}

pub(crate) fn store(settings: &S3Settings) -> S3Store {
    let store = S3Store::new(settings).unwrap_or_else(|e| panic!("{e}"));
    store.ensure_bucket().unwrap_or_else(|e| panic!("{e}"));
    store
}

#[test]
fn objects_round_trip_and_listings_follow_pages() {
    let moto = Moto::start();
    let store = store(&settings(&moto));
    store.ensure_bucket().expect("a second ensure_bucket is a no-op");
    assert_eq!(store.describe(), "s3://eddy-test/cp/");

    assert_eq!(store.get("job/chk-1/a-0").expect("get"), None, "a missing key is None, not an error");
    assert_eq!(store.list("job/").expect("list"), Vec::<String>::new());
    store.put("job/chk-1/a-0", b"one").expect("put");
    store.put("job/chk-1/_metadata", b"{}").expect("put");
    store.put("job/chk-2/a-0", b"two").expect("put");
    store.put("job2/chk-1/a-0", b"other").expect("put");
    store.put("job/chk-2/a-0", b"two, again").expect("put replaces");
    assert_eq!(store.get("job/chk-2/a-0").expect("get").as_deref(), Some(&b"two, again"[..]));
    assert_eq!(store.list("job/").expect("list"), ["job/chk-1/_metadata", "job/chk-1/a-0", "job/chk-2/a-0"]);

    // Keys are the settings' prefix plus the path.
    let mut whole = settings(&moto);
    whole.prefix.clear();
    let unprefixed = S3Store::new(&whole).expect("store");
    assert_eq!(unprefixed.list("cp/job2/").expect("list"), ["cp/job2/chk-1/a-0"]);

    store.delete_prefix("job/chk-1/").expect("delete");
    assert_eq!(store.list("job").expect("list"), ["job/chk-2/a-0", "job2/chk-1/a-0"]);
    store.delete_prefix("job/chk-9/").expect("deleting nothing is fine");
    for bad in ["../x", "/x", "a//b", "a/./b", ""] {
        assert!(store.put(bad, b"x").is_err(), "{bad} must be refused");
    }

    // More than a page of keys (S3 lists 1,000 at a time) and more than one DeleteObjects request.
    let mut expected: Vec<String> = (0..2100).map(|i| format!("many/{i:05}")).collect();
    std::thread::scope(|scope| {
        for part in expected.chunks(525) {
            let store = &store;
            scope.spawn(move || {
                for path in part {
                    store.put(path, path.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
                }
            });
        }
    });
    expected.sort();
    assert_eq!(store.list("many/").expect("list"), expected);
    store.delete_prefix("many/").expect("delete 2,100 keys");
    assert_eq!(store.list("many/").expect("list"), Vec::<String>::new());
    assert_eq!(store.list("").expect("list"), ["job/chk-2/a-0", "job2/chk-1/a-0"], "the rest is untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_works_inside_a_multi_thread_runtime() {
    let moto = Moto::start();
    // Made, used and dropped on a runtime's worker thread, where `Runtime::block_on` would panic.
    let store = Arc::new(store(&settings(&moto)));
    store.put("a", b"from a worker").expect("put");
    assert_eq!(store.get("a").expect("get").as_deref(), Some(&b"from a worker"[..]));
    let task_store = Arc::clone(&store);
    let listed = tokio::spawn(async move { task_store.list("").expect("list") }).await.expect("task");
    assert_eq!(listed, ["a"]);
    drop(store);
}

#[tokio::test(flavor = "current_thread")]
async fn the_store_works_inside_a_current_thread_runtime() {
    let moto = Moto::start();
    let store = store(&settings(&moto));
    store.put("b", b"from the only thread").expect("put");
    assert_eq!(store.get("b").expect("get").as_deref(), Some(&b"from the only thread"[..]));
}

#[test]
fn an_unreachable_server_fails_puts_within_the_timeout_and_a_restarted_one_serves_again() {
    let mut moto = Moto::start();
    let mut settings = settings(&moto);
    settings.timeout_ms = 3000;
    let store = store(&settings);
    store.put("x/1", b"before").expect("put");
    let slack = Duration::from_millis(2500);

    // A server that accepts connections but never answers: the operation timeout ends the put.
    moto.freeze();
    let started = Instant::now();
    let error = store.put("x/2", b"frozen").expect_err("a frozen server cannot take a put");
    let took = started.elapsed();
    assert!(took < Duration::from_millis(3000) + slack, "the put took {took:?}: {error}");
    assert!(error.0.contains("s3://eddy-test/cp/x/2") && error.0.contains("timeout"), "{error}");
    assert!(!error.0.contains('\n'), "one line: {error}");

    // A server that is gone: connections are refused, and the put fails at once.
    moto.kill();
    let started = Instant::now();
    let error = store.put("x/3", b"gone").expect_err("a stopped server cannot take a put");
    let took = started.elapsed();
    assert!(took < Duration::from_millis(3000) + slack, "the put took {took:?}: {error}");
    assert!(error.0.contains("s3://eddy-test/cp/x/3") && error.0.contains("refused"), "{error}");
    assert!(store.get("x/1").is_err(), "a get fails too");

    // The same store, once the server is back (empty: moto keeps nothing across restarts).
    moto.restart();
    store.ensure_bucket().expect("bucket again");
    store.put("x/4", b"after").expect("put after the restart");
    assert_eq!(store.get("x/4").expect("get").as_deref(), Some(&b"after"[..]));
    assert_eq!(store.list("x/").expect("list"), ["x/4"]);
}

/// Polls `done` every 20 ms until it holds, or panics with `what` and the last `state` after 60 s.
fn wait_for<T: std::fmt::Debug>(what: &str, mut state: impl FnMut() -> T, done: impl Fn(&T) -> bool) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = state();
        if done(&now) {
            return now;
        }
        assert!(Instant::now() < deadline, "{what} did not happen within 60 s; last: {now:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_checkpointed_job_rides_out_an_s3_outage_and_restores_from_s3() {
    let moto = Moto::start();
    let mut settings = settings(&moto);
    settings.timeout_ms = 2000;
    let s3 = Arc::new(store(&settings));
    let store: Arc<dyn CheckpointStore> = s3.clone();
    let spec = r#"
name: s3-checkpointed
parallelism: 2
checkpoints: { interval: 50ms, tolerable_failures: 1000 }
operators:
  - { uid: src, source: { generator: { keys: 20, encoding: json, rate: 2000 } }, watermark: { out_of_orderness: 100ms }, batch_size: 50 }
  - { uid: w, input: src, key_by: { json: "$.key" }, window: { tumbling: 10ms }, aggregate: { builtin: sum, field: "$.amount" } }
  - { uid: out, sink: discard, input: w }
"#;
    let spec = JobSpec::parse(spec).unwrap_or_else(|e| panic!("{e}"));
    let graph = JobGraph::build(&spec, &TestFunctions).unwrap_or_else(|e| panic!("{e}"));
    let mut env = DeployEnv::new("s3", "test", Arc::new(TestFunctions));
    let spec = graph.checkpoints.clone().expect("checkpoints");
    env.checkpointing = Some(Checkpointing::new(spec, Arc::clone(&store), "job/", graph.max_parallelism));
    let job = deploy(&graph, env).unwrap_or_else(|e| panic!("{e}"));
    let handle = &job.handle;

    let before = wait_for("a first checkpoint in S3", || handle.checkpoints(), |s| s.completed >= 1);
    assert!(
        store.list("job/").expect("list").iter().any(|p| p.ends_with("_metadata")),
        "the completed checkpoint's metadata is in the bucket"
    );

    // Stopped, not killed: the port stays moto's, so no other test's server can take it meanwhile.
    moto.freeze();
    let (down, state) = wait_for(
        "a failed checkpoint while S3 is down",
        || (handle.checkpoints(), handle.state()),
        |(s, _)| s.failed > before.failed,
    );
    assert_eq!(state, JobState::Running, "the job tolerates the outage: {:?}", handle.error());
    let reason = down.last_failure.clone().unwrap_or_default();
    assert!(reason.contains("s3://eddy-test/cp/job/"), "the failure names the object: {reason}");

    moto.thaw();
    let completed = handle.checkpoints().completed;
    let after = wait_for("a checkpoint after S3 is back", || handle.checkpoints(), |s| s.completed > completed);
    assert_eq!(handle.state(), JobState::Running, "{:?}", handle.error());

    let restore = Restore::latest(&store, "job/").expect("read S3").expect("a completed checkpoint in S3");
    assert!(restore.checkpoint > before.latest.unwrap_or(0), "restored {} after {after:?}", restore.checkpoint);
    handle.cancel();
    assert_eq!(handle.wait(Duration::from_secs(30)), JobState::Canceled);
}
