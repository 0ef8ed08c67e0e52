//! Servers sharing one PostgreSQL (started by `tests/services/postgres.sh`): they see each other, and the jobs of
//! a server that dies or leaves move to the others, going on from their newest checkpoint. The servers share a
//! checkpoint folder and a files folder, as a cluster's nodes share a bucket.

use crate::support::{Rust, ServerProcess, TestServer, committed, eddy_binary, example, submit, wait_job};
use eddy_server::client::Client;
use eddy_server::testing::TestPostgres;
use serde_json::Value;
use std::time::{Duration, Instant};

/// Three nodes on one database, with short leases so a dead node is noticed in seconds.
struct Cluster {
    database: String,
    shared: tempfile::TempDir,
    folders: Vec<tempfile::TempDir>,
    postgres: TestPostgres,
}

const LEASE_MS: &str = "1500";

impl Cluster {
    fn new(name: &str) -> Cluster {
        let postgres = TestPostgres::start();
        let database = postgres.new_database(name);
        let shared = tempfile::tempdir().expect("tempdir");
        let folders = (0..3).map(|_| tempfile::tempdir().expect("tempdir")).collect();
        Cluster { database, shared, folders, postgres }
    }

    async fn start(&self, node: usize) -> ServerProcess {
        let (checkpoints, files) = (self.shared.path().join("checkpoints"), self.shared.path().join("files"));
        let (checkpoints, files) = (checkpoints.to_str().expect("utf-8"), files.to_str().expect("utf-8"));
        let id = format!("n{node}");
        let env = [
            ("EDDY_CLUSTER_DATABASE", self.database.as_str()),
            ("EDDY_NODE_ID", id.as_str()),
            ("EDDY_LEASE_MS", LEASE_MS),
            ("EDDY_CHECKPOINT_DIR", checkpoints),
            ("EDDY_FILES_DIR", files),
        ];
        ServerProcess::start_with_env(self.folders[node].path(), &env).await
    }

    fn output(&self) -> std::path::PathBuf {
        self.shared.path().join("files/default/out")
    }
}

/// The cluster as `client`'s node sees it.
async fn cluster_view(client: &Client) -> Value {
    client.cluster().await.expect("GET /v1/cluster")
}

/// Waits until `ok` holds for the cluster as `client`'s node sees it.
async fn wait_cluster(client: &Client, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let view = cluster_view(client).await;
        if ok(&view) {
            return view;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{what}: {view:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn node<'a>(view: &'a Value, id: &str) -> Option<&'a Value> {
    view["nodes"].as_array()?.iter().find(|n| n["node_id"] == id)
}

/// The live node that runs `job`, if one does.
fn owner(view: &Value, job: &str) -> Option<String> {
    let nodes = view["nodes"].as_array()?;
    let runs = |n: &&Value| n["alive"] == true && n["jobs"].as_array().is_some_and(|j| j.iter().any(|j| j == job));
    nodes.iter().find(runs).and_then(|n| n["node_id"].as_str()).map(str::to_string)
}

fn unique(lines: &[String]) -> usize {
    lines.iter().collect::<std::collections::BTreeSet<_>>().len()
}

const COUNTED: &str = "name: counted\ncheckpoints: { interval: 200ms }\noperators:\n  - { uid: src, source: { generator: { events: 20000, keys: 20, rate: 2000 } } }\n  - { uid: out, sink: { file: { path: out } }, input: src }\n";

/// kill -9 the node that runs an exactly-once job: another node takes it over from its newest checkpoint once
/// the dead node's lease lapses, and the job's file output holds every record exactly once. Any node answers for
/// the job, forwarding to the one that runs it.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_nodes_job_moves_to_another_node_and_writes_each_record_once() {
    let cluster = Cluster::new("killed");
    let mut nodes = vec![Some(cluster.start(0).await), Some(cluster.start(1).await), Some(cluster.start(2).await)];
    let client = |nodes: &[Option<ServerProcess>], i: usize| nodes[i].as_ref().expect("running").client.clone();
    let all_alive = |v: &Value| ["n0", "n1", "n2"].iter().all(|n| node(v, n).is_some_and(|n| n["alive"] == true));
    let view = wait_cluster(&client(&nodes, 1), "three live nodes", all_alive).await;
    assert_eq!((view["database"].as_str(), view["this_node"].as_str()), (Some("postgres"), Some("n1")));

    let id = submit(&client(&nodes, 0), COUNTED).await;
    let job = format!("default/{id}");
    let view = wait_cluster(&client(&nodes, 2), "a node runs the job", |v| owner(v, &job).is_some()).await;
    let first = owner(&view, &job).expect("owner");
    let first_index: usize = first[1..].parse().expect("n<i>");
    let other = (first_index + 1) % 3;
    let status = client(&nodes, other).job(&id).await.expect("status through a node that does not run it");
    assert_eq!(status["id"], id.as_str());
    let listed = client(&nodes, other).jobs().await.expect("list");
    let entry = listed.as_array().and_then(|l| l.iter().find(|j| j["id"] == id.as_str())).cloned();
    assert_eq!(entry.map(|e| e["node"].clone()), Some(Value::from(first.clone())), "{listed:#}");

    let started = Instant::now();
    while committed(&cluster.output()).len() < 2000 {
        assert!(started.elapsed() < Duration::from_secs(30), "the first records were committed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    nodes[first_index].take().expect("running").kill();
    let killed = Instant::now();

    let moved = |v: &Value| owner(v, &job).is_some_and(|o| o != first);
    let view = wait_cluster(&client(&nodes, other), "another node took the job", moved).await;
    let took_over = killed.elapsed();
    assert!(node(&view, &first).is_some_and(|n| n["alive"] == false), "{first} is dead: {view:#}");
    let new_owner: usize = owner(&view, &job).expect("owner")[1..].parse().expect("n<i>");
    let bystander = 3 - first_index - new_owner;
    // Asked through the node that does not run it, the job finishes on the one that does.
    let status = wait_job(&client(&nodes, bystander), &id, Duration::from_secs(90), |s| s["state"] == "finished").await;
    assert_eq!(status["state"], "finished", "{status:#}");

    let written = committed(&cluster.output());
    assert_eq!((written.len(), unique(&written)), (20000, 20000), "each record once (taken over in {took_over:?})");

    // The status for people lists every node, the dead one too.
    let url = &nodes[bystander].as_ref().expect("running").url;
    let status =
        std::process::Command::new(eddy_binary()).args(["--server", url, "cluster", "status"]).output().expect("eddy");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{text}{}", String::from_utf8_lossy(&status.stderr));
    for line in ["n0", "n1", "n2", &job] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
    assert!(text.lines().any(|l| l.starts_with(&first) && l.contains(" no ")), "{first} shown dead:\n{text}");
}

const ENDLESS_KEPT: &str = "name: endless\ncheckpoints: { interval: 200ms, retained: 100 }\noperators:\n  - { uid: src, source: { generator: { keys: 20, rate: 1000 } } }\n  - { uid: out, sink: discard, input: src }\n";

const ENDLESS: &str = "name: endless\ncheckpoints: { interval: 200ms }\noperators:\n  - { uid: src, source: { generator: { keys: 20, rate: 500 } } }\n  - { uid: low, map: lower, input: src }\n  - { uid: out, sink: { file: { path: out } }, input: low }\n";

/// SIGTERM (as Kubernetes stops a pod) drains a node: its jobs stop, it leaves the cluster at once, and another
/// node goes on with its jobs from their checkpoints without repeating a record, fetching the modules they use
/// from the shared storage.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_stopped_with_sigterm_hands_its_jobs_over() {
    let cluster = Cluster::new("drained");
    let mut nodes = vec![Some(cluster.start(0).await), Some(cluster.start(1).await)];
    let client = |nodes: &[Option<ServerProcess>], i: usize| nodes[i].as_ref().expect("running").client.clone();
    wait_cluster(&client(&nodes, 1), "two live nodes", |v| v["nodes"].as_array().is_some_and(|n| n.len() == 2)).await;

    let module = example(Rust, "lowercase").await;
    client(&nodes, 0).push_module("lower", None, module).await.expect("upload to n0");
    let listed = client(&nodes, 1).modules().await.expect("modules on n1");
    assert!(listed.as_array().is_some_and(|m| m.iter().any(|m| m["name"] == "lower")), "one list: {listed:#}");
    let id = submit(&client(&nodes, 1), ENDLESS).await;
    let job = format!("default/{id}");
    let view = wait_cluster(&client(&nodes, 1), "a node runs the job", |v| owner(v, &job).is_some()).await;
    let first: usize = owner(&view, &job).expect("owner")[1..].parse().expect("n<i>");
    let other = 1 - first;
    let started = Instant::now();
    while committed(&cluster.output()).len() < 500 {
        assert!(started.elapsed() < Duration::from_secs(30), "the first records were committed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let exit = nodes[first].take().expect("running").terminate();
    assert!(exit.success(), "a clean stop: {exit:?}");
    let before = committed(&cluster.output());
    let survivor = format!("n{other}");
    let view = wait_cluster(&client(&nodes, other), "the other node took the job", |v| {
        owner(v, &job).as_deref() == Some(survivor.as_str())
    })
    .await;
    assert!(node(&view, &format!("n{first}")).is_none(), "the stopped node left the cluster: {view:#}");

    // The survivor goes on from the job's last checkpoint, with the module fetched from the shared storage: more
    // records come, none of them again.
    let started = Instant::now();
    while committed(&cluster.output()).len() < before.len() + 500 {
        assert!(started.elapsed() < Duration::from_secs(30), "the survivor writes on");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client(&nodes, other).cancel(&id).await.expect("cancel on the new owner");
    let written = committed(&cluster.output());
    assert_eq!(unique(&written), written.len(), "no record twice");
    assert!(written.iter().all(|line| line.contains("\"key\"")), "only generated records");
}

/// An owner paused (SIGSTOP) past its lease is a zombie once another node took its job over: resumed, it completes
/// no checkpoint (so its sinks commit nothing) and lets the job go. (The sink discards: a file sink's leftovers
/// are cleared by the new owner's restore, which would hide a zombie's checkpoint behind a failed task.)
#[tokio::test(flavor = "multi_thread")]
async fn a_paused_owner_resumed_after_a_takeover_completes_no_checkpoint() {
    let cluster = Cluster::new("zombie");
    let nodes = [cluster.start(0).await, cluster.start(1).await];
    wait_cluster(&nodes[1].client, "two live nodes", |v| v["nodes"].as_array().is_some_and(|n| n.len() == 2)).await;
    let id = submit(&nodes[0].client, ENDLESS_KEPT).await;
    let job = format!("default/{id}");
    let view = wait_cluster(&nodes[1].client, "a node runs the job", |v| owner(v, &job).is_some()).await;
    let first: usize = owner(&view, &job).expect("owner")[1..].parse().expect("n<i>");
    let other = 1 - first;
    let checkpoints = cluster.shared.path().join("checkpoints/default").join(&id);
    let started = Instant::now();
    while completed_checkpoints(&checkpoints).len() < 3 {
        assert!(started.elapsed() < Duration::from_secs(30), "the first checkpoints completed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    nodes[first].pause();
    let before_pause = completed_checkpoints(&checkpoints);
    let survivor = format!("n{other}");
    let took = |v: &Value| owner(v, &job).as_deref() == Some(survivor.as_str());
    let taken = tokio::time::timeout(Duration::from_secs(30), wait_cluster(&nodes[other].client, "taken over", took));
    let taken = taken.await;
    // The new owner's first checkpoint: its ids start past every id the old owner had reserved.
    let started = Instant::now();
    let new_first = loop {
        let new: Vec<u64> =
            completed_checkpoints(&checkpoints).into_iter().filter(|c| !before_pause.contains(c)).collect();
        if let Some(first_new) = new.into_iter().min() {
            break first_new;
        }
        if started.elapsed() > Duration::from_secs(30) {
            nodes[first].resume();
            panic!("the new owner completed no checkpoint");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    nodes[first].resume();
    taken.expect("the other node took the job over");
    let before = completed_checkpoints(&checkpoints).len();
    let started = Instant::now();
    while completed_checkpoints(&checkpoints).len() < before + 5 {
        assert!(started.elapsed() < Duration::from_secs(30), "the new owner checkpoints on");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let zombie = format!("n{first}");
    wait_cluster(&nodes[other].client, "the old owner let the job go", |v| {
        let runs = |n: &Value| n["jobs"].as_array().is_some_and(|j| j.iter().any(|j| j == &job));
        node(v, &zombie).is_some_and(|n| n["alive"] == true && !runs(n))
    })
    .await;
    let last_before = before_pause.iter().max().copied().unwrap_or(0);
    let by_zombie: Vec<u64> =
        completed_checkpoints(&checkpoints).into_iter().filter(|c| *c > last_before && *c < new_first).collect();
    assert!(by_zombie.is_empty(), "the old owner completed checkpoints {by_zombie:?} after the takeover");
    nodes[other].client.cancel(&id).await.expect("cancel");
}

/// Ids of the completed checkpoints in a job's checkpoint folder (those with metadata).
fn completed_checkpoints(folder: &std::path::Path) -> Vec<u64> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(folder).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(id) = name.strip_prefix("chk-").and_then(|n| n.parse().ok())
            && entry.path().join("_metadata").is_file()
        {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    ids
}

/// PostgreSQL restarted under load: while it is down every lease lapses, yet no node takes another's job when it
/// is back (a node that could not renew claims nothing until the others had a lease to renew theirs); the jobs run
/// on where they were, and the nodes' records catch up.
#[tokio::test(flavor = "multi_thread")]
async fn nodes_keep_their_jobs_across_a_restart_of_postgres() {
    let mut cluster = Cluster::new("restarted");
    let nodes = [cluster.start(0).await, cluster.start(1).await];
    wait_cluster(&nodes[1].client, "two live nodes", |v| v["nodes"].as_array().is_some_and(|n| n.len() == 2)).await;
    let (a, b) = (submit(&nodes[0].client, ENDLESS_KEPT).await, submit(&nodes[0].client, ENDLESS_KEPT).await);
    let jobs = [format!("default/{a}"), format!("default/{b}")];
    let placed = |v: &Value| jobs.iter().all(|j| owner(v, j).is_some());
    let view = wait_cluster(&nodes[1].client, "both jobs run", placed).await;
    let owners: Vec<String> = jobs.iter().map(|j| owner(&view, j).expect("owner")).collect();
    assert_ne!(owners[0], owners[1], "placement spread the jobs: {view:#}");

    cluster.postgres.stop();
    tokio::time::sleep(Duration::from_millis(3000)).await;
    // The jobs run on meanwhile, and each node answers for its own.
    for (i, id) in [&a, &b].into_iter().enumerate() {
        let at: usize = owners[i][1..].parse().expect("n<i>");
        let status = nodes[at].client.job(id).await.expect("status while the database is down");
        assert_eq!(status["state"], "running", "{status:#}");
    }
    cluster.postgres.start_again();
    // Two leases after it is back: no job changed hands, both still run.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let view = wait_cluster(&nodes[0].client, "both nodes renewed", |v| {
        v["nodes"].as_array().is_some_and(|n| n.len() == 2 && n.iter().all(|n| n["alive"] == true))
    })
    .await;
    let after: Vec<Option<String>> = jobs.iter().map(|j| owner(&view, j)).collect();
    assert_eq!(after, owners.iter().cloned().map(Some).collect::<Vec<_>>(), "{view:#}");
    for (i, id) in [&a, &b].into_iter().enumerate() {
        let at: usize = owners[i][1..].parse().expect("n<i>");
        let status = nodes[at].client.job(id).await.expect("status");
        assert_eq!(status["state"], "running", "{status:#}");
        assert_eq!(status["restarts"].as_array().map_or(0, Vec::len), 0, "not restarted: {status:#}");
    }
}

const FED: &str = "name: fed\ncheckpoints: { interval: 200ms }\noperators:\n  - { uid: src, source: { http: {} } }\n  - { uid: out, sink: { file: { path: out } }, input: src }\n";

/// `eddy node drain`: a node's job fed over HTTP moves to the other node, stopping with a savepoint once it read
/// every record its input acknowledged; records posted to either node, before and after, are all in the output
/// once.
#[tokio::test(flavor = "multi_thread")]
async fn a_drained_nodes_http_job_moves_with_a_savepoint_and_keeps_every_acknowledged_record() {
    let cluster = Cluster::new("drain");
    let nodes = [cluster.start(0).await, cluster.start(1).await];
    wait_cluster(&nodes[1].client, "two live nodes", |v| v["nodes"].as_array().is_some_and(|n| n.len() == 2)).await;
    let id = submit(&nodes[0].client, FED).await;
    let job = format!("default/{id}");
    let view = wait_cluster(&nodes[1].client, "a node runs the job", |v| owner(v, &job).is_some()).await;
    let first: usize = owner(&view, &job).expect("owner")[1..].parse().expect("n<i>");
    let other = 1 - first;
    let lines = |from: u32, to: u32| (from..to).map(|n| format!("{{\"n\":{n}}}\n")).collect::<String>();
    nodes[other].client.ingest(&id, "src", lines(0, 100)).await.expect("posted through the other node");
    nodes[first].client.ingest(&id, "src", lines(100, 200)).await.expect("posted to the owner");

    let moved = nodes[other].client.drain_node(&format!("n{first}")).await.expect("drain, asked of the other node");
    let entry = moved.as_array().and_then(|m| m.iter().find(|j| j["job"] == id.as_str())).cloned();
    assert!(entry.as_ref().is_some_and(|e| e["savepoint"].is_string()), "{moved:#}");
    let survivor = format!("n{other}");
    wait_cluster(&nodes[other].client, "the other node runs the job", |v| {
        owner(v, &job).as_deref() == Some(survivor.as_str())
    })
    .await;
    let ready = reqwest::get(format!("{}/ready", nodes[first].url)).await.expect("ready");
    assert_eq!(ready.status(), 503, "a drained node takes no new work");
    nodes[first].client.ingest(&id, "src", lines(200, 300)).await.expect("posted to the drained node, forwarded");
    nodes[other].client.close_input(&id, "src").await.expect("close");
    let status = wait_job(&nodes[other].client, &id, Duration::from_secs(60), |s| s["state"] == "finished").await;
    assert_eq!(status["state"], "finished", "{status:#}");
    let mut expected: Vec<String> = (0..300).map(|n| format!("{{\"n\":{n}}}")).collect();
    expected.sort();
    assert_eq!(committed(&cluster.output()), expected, "every acknowledged record once");
}

/// A tenant's quota counts its jobs on every server: with a quota of two jobs set through one server, a third is
/// refused through either (at least one of them runs neither job, so it counts the other's).
#[tokio::test(flavor = "multi_thread")]
async fn a_tenants_quota_counts_its_jobs_on_every_server() {
    let cluster = Cluster::new("quota");
    let nodes = [cluster.start(0).await, cluster.start(1).await];
    wait_cluster(&nodes[1].client, "two live nodes", |v| v["nodes"].as_array().is_some_and(|n| n.len() == 2)).await;
    let set = reqwest::Client::new()
        .put(format!("{}/v1/quota", nodes[0].url))
        .json(&serde_json::json!({ "jobs": 2 }))
        .send()
        .await
        .expect("set the quota");
    assert!(set.status().is_success(), "{}", set.text().await.unwrap_or_default());
    let (a, b) = (submit(&nodes[0].client, ENDLESS_KEPT).await, submit(&nodes[1].client, ENDLESS_KEPT).await);
    let jobs = [format!("default/{a}"), format!("default/{b}")];
    wait_cluster(&nodes[1].client, "both jobs run", |v| jobs.iter().all(|j| owner(v, j).is_some())).await;
    // The other server has read the quota by now (each renews its lease, and reads quotas, every 0.5 s).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for node in &nodes {
        let refused = node.client.submit(ENDLESS_KEPT).await.expect_err("a third job");
        assert_eq!((refused.status, refused.code.as_str()), (Some(403), "quota_exceeded"), "{refused}");
    }
    nodes[0].client.cancel(&a).await.expect("cancel");
    let third = submit(&nodes[1].client, ENDLESS_KEPT).await;
    assert!(!third.is_empty(), "room again once one stopped");
}

/// A single server is a cluster of one: its node id is chosen once and kept in the data folder.
#[tokio::test(flavor = "multi_thread")]
async fn a_single_server_is_a_cluster_of_one_with_a_lasting_node_id() {
    let mut server = TestServer::start().await;
    let view = server.client.cluster().await.expect("cluster");
    assert_eq!(view["database"], "sqlite");
    let id = view["this_node"].as_str().expect("node id").to_string();
    assert_eq!(view["nodes"].as_array().map(Vec::len), Some(1), "{view:#}");
    assert_eq!(
        (&view["nodes"][0]["node_id"], &view["nodes"][0]["alive"]),
        (&Value::from(id.clone()), &Value::from(true))
    );
    let ready: Value = reqwest::get(format!("{}/ready", server.url)).await.expect("ready").json().await.expect("json");
    assert_eq!((ready["status"].as_str(), ready["node"].as_str()), (Some("ready"), Some(id.as_str())));
    assert_eq!(std::fs::read_to_string(server.data_dir().join("node-id")).expect("node-id"), id);
    server.restart().await;
    assert_eq!(server.client.cluster().await.expect("cluster")["this_node"], id.as_str(), "the same node");
}

/// The cluster is the admin's to see: a tenant's token is refused.
#[tokio::test(flavor = "multi_thread")]
async fn only_the_admin_sees_the_cluster() {
    use eddy_server::config::{TenantConfig, token_hash};
    let server = TestServer::start_with(|c| {
        c.tenants = vec![TenantConfig::new("acme", &token_hash("acme-secret"))];
        c.admin_token_sha256 = Some(token_hash("admin-secret"));
    })
    .await;
    let refused = server.client_with(Some("acme-secret"), None).cluster().await.expect_err("a tenant");
    assert_eq!((refused.status, refused.code.as_str()), (Some(403), "forbidden"));
    let view = server.client_with(Some("admin-secret"), None).cluster().await.expect("the admin");
    assert_eq!(view["nodes"].as_array().map(Vec::len), Some(1));
}
