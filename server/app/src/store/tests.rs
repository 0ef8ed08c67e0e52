//! One suite for both databases: every check runs against SQLite and against a real PostgreSQL server started by
//! `tests/services/postgres.sh`.

use super::*;
use crate::testing::TestPostgres;

/// Opens the store under test again (the same folder and database), as a restarted server would.
type Open<'a> = &'a dyn Fn() -> Store;

/// The checks every backend passes, by name.
const SUITE: &[(&str, fn(Open))] = &[
    ("round_trips_records", round_trips_records),
    ("lists_tenants_and_removes_records", lists_tenants_and_removes_records),
    ("creates_a_module_version_exactly_once_under_a_race", creates_a_module_version_exactly_once_under_a_race),
    ("concurrent_job_writes_all_survive_reopen", concurrent_job_writes_all_survive_reopen),
    ("keeps_jobs_in_the_order_first_saved", keeps_jobs_in_the_order_first_saved),
    ("leases_lapse_by_the_databases_clock", leases_lapse_by_the_databases_clock),
    ("a_claim_fences_out_the_jobs_old_owner", a_claim_fences_out_the_jobs_old_owner),
];

#[test]
fn sqlite_passes_the_store_suite() {
    for (name, check) in SUITE {
        let dir = tempfile::tempdir().expect("tempdir");
        eprintln!("sqlite: {name}");
        check(&|| Store::open(dir.path()).expect("open"));
    }
}

#[test]
fn postgres_passes_the_store_suite() {
    let server = TestPostgres::start();
    for (n, (name, check)) in SUITE.iter().enumerate() {
        let (dir, url) = (tempfile::tempdir().expect("tempdir"), server.new_database(&format!("suite_{n}")));
        eprintln!("postgres: {name}");
        check(&|| Store::open_with(dir.path(), Some(&url), None).expect("open"));
    }
}

fn module(name: &str, version: &str, hash: &str) -> ModuleRecord {
    ModuleRecord {
        name: name.into(),
        version: version.into(),
        hash: hash.into(),
        size: 3,
        kinds: vec![UdfKind::Map],
        uploaded_at: 1,
        compiled_sha256: None,
        declared_states: None,
    }
}

fn job(id: &str) -> JobRecord {
    JobRecord {
        id: id.into(),
        name: format!("job {id}"),
        spec: format!("name: {id}"),
        modules: BTreeMap::from([("upper@1".to_string(), "ab".repeat(32))]),
        submitted_at: 2,
        desired: Desired::Running,
        state: JobState::Running,
        error: None,
        crash_streak: 0,
        start_from: None,
        upgrades: Vec::new(),
        checkpoint_id_floor: 0,
    }
}

fn node(id: &str, jobs: &[&str]) -> NodeRecord {
    NodeRecord {
        node_id: id.into(),
        url: format!("http://{id}.example:8080"),
        version: "0.1.0".into(),
        started_at: 5,
        jobs: jobs.iter().map(|j| j.to_string()).collect(),
        subtasks: 4,
        memory_used_mb: 64,
        memory_mb: 1024,
        cores: 2,
        lease_ms: 10_000,
        draining: false,
    }
}

fn round_trips_records(open: Open) {
    let store = open();
    let mut upper = module("upper", "1", &"ab".repeat(32));
    upper.declared_states = Some(vec![eddy_engine::state::DeclaredState {
        name: "count".into(),
        kind: eddy_engine::state::StateKind::Value,
        ttl_ms: Some(1000),
    }]);
    store.put_blob(&upper.hash, b"abc").expect("blob");
    store.put_module("acme", &upper).expect("module");
    store.put_job("acme", &job("j1")).expect("job");
    let overrides = QuotaOverrides { jobs: Some(3), ..QuotaOverrides::default() };
    store.put_quota("acme", &overrides).expect("quota");
    store.put_usage("acme", r#"{"cpu_ms":7}"#).expect("usage");
    drop(store);

    let reopened = open();
    assert_eq!(reopened.modules("acme"), vec![upper.clone()]);
    assert_eq!(reopened.jobs("acme"), vec![job("j1")]);
    assert_eq!(reopened.blob(&upper.hash).as_deref(), Some(&b"abc"[..]));
    assert_eq!(reopened.quotas(), vec![("acme".to_string(), overrides)]);
    assert_eq!(reopened.usage("acme").as_deref(), Some(r#"{"cpu_ms":7}"#));
    assert_eq!(reopened.usage("other"), None);
    assert!(reopened.modules("other").is_empty(), "tenants are separate");
    assert_eq!(reopened.tenants(), vec!["acme".to_string()]);
    reopened.remove_module("acme", "upper", "1").expect("remove");
    assert!(reopened.modules("acme").is_empty());
}

fn lists_tenants_and_removes_records(open: Open) {
    let store = open();
    assert!(store.tenants().is_empty());
    store.put_module("globex", &module("upper", "1", "ab")).expect("module");
    store.put_module("globex", &module("upper", "2", "cd")).expect("module");
    store.put_job("acme", &job("j1")).expect("job");
    store.put_job("acme", &job("j2")).expect("job");
    assert_eq!(store.tenants(), vec!["acme".to_string(), "globex".to_string()], "sorted, from modules and jobs");

    let mut stopped = job("j1");
    stopped.desired = Desired::Stopped;
    stopped.state = JobState::Canceled;
    store.put_job("acme", &stopped).expect("job");
    store.remove_job("acme", "j2").expect("remove job");
    store.remove_job("acme", "j2").expect("removing a missing job is fine");
    store.remove_job("globex", "j1").expect("another tenant's job is not touched");
    store.remove_module("globex", "upper", "1").expect("remove module");
    let missing = store.remove_module("globex", "upper", "1").expect_err("already removed");
    assert_eq!(missing.kind(), io::ErrorKind::NotFound);

    let reopened = open();
    assert_eq!(reopened.jobs("acme"), vec![stopped], "replaced in place, the removed one gone");
    assert_eq!(reopened.modules("globex"), vec![module("upper", "2", "cd")]);
    reopened.remove_job("acme", "j1").expect("remove job");
    assert_eq!(reopened.tenants(), vec!["globex".to_string()], "a tenant with nothing stored is gone");
}

fn creates_a_module_version_exactly_once_under_a_race(open: Open) {
    let store = open();
    let barrier = std::sync::Barrier::new(16);
    let created: Vec<(String, bool)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let (store, barrier) = (store.clone(), &barrier);
                s.spawn(move || {
                    let hash = format!("{i:02x}").repeat(32);
                    barrier.wait();
                    let created = store.create_module("acme", &module("race1", "1", &hash)).expect("create");
                    (hash, created)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    let winners: Vec<&String> = created.iter().filter(|(_, c)| *c).map(|(h, _)| h).collect();
    assert_eq!(winners.len(), 1, "{created:?}");
    let stored = open().modules("acme");
    assert_eq!(stored.len(), 1);
    assert_eq!(&stored[0].hash, winners[0], "the stored record is the winner's");
    assert!(store.create_module("other", &module("race1", "1", "ff")).expect("create"), "tenants are separate");
    assert!(store.create_module("acme", &module("race1", "2", "ff")).expect("create"), "a new version");
}

fn concurrent_job_writes_all_survive_reopen(open: Open) {
    let store = open();
    let barrier = std::sync::Barrier::new(16);
    let expected: Vec<JobRecord> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let (store, barrier) = (store.clone(), &barrier);
                s.spawn(move || {
                    let mut record = job(&format!("job{i:02}"));
                    record.spec = "x".repeat(10_000 + i);
                    barrier.wait();
                    // Each job's own bookkeeping races the others': saved, then its state changes twice.
                    let states = [JobState::Running, JobState::Failed, JobState::Canceled];
                    for (n, state) in states.into_iter().enumerate() {
                        record.state = state;
                        record.crash_streak = n as u32;
                        store.put_job("acme", &record).expect("put job");
                    }
                    record
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    drop(store);
    let mut jobs = open().jobs("acme");
    jobs.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(jobs, expected, "all 16, each whole and at its last write");
}

fn keeps_jobs_in_the_order_first_saved(open: Open) {
    let store = open();
    for id in ["c", "a", "b"] {
        store.put_job("acme", &job(id)).expect("job");
    }
    let mut updated = job("c");
    updated.crash_streak = 2;
    store.put_job("acme", &updated).expect("update");
    let ids: Vec<String> = open().jobs("acme").into_iter().map(|j| j.id).collect();
    assert_eq!(ids, ["c", "a", "b"], "an update keeps a job's place");
}

fn a_claim_fences_out_the_jobs_old_owner(open: Open) {
    let store = open();
    let fence = |node: &str, epoch| Fence { node: node.into(), epoch };
    assert!(store.put_owned_job("acme", &job("j1"), &fence("a", 1)).expect("put"), "a new job is a's");
    let owners = |store: &Store| -> Vec<(Option<String>, u64, u32)> {
        let jobs = store.owned_jobs("acme").expect("jobs");
        jobs.into_iter().map(|j| (j.owner, j.epoch, j.record.crash_streak)).collect()
    };
    assert_eq!(owners(&store), [(Some("a".to_string()), 1, 0)]);

    assert_eq!(store.claim_job("acme", "j1", "b", 0).expect("claim"), None, "a stale epoch claims nothing");
    assert_eq!(store.claim_job("acme", "j1", "b", 1).expect("claim"), Some(fence("b", 2)));
    assert_eq!(store.claim_job("acme", "j1", "c", 1).expect("claim"), None, "the race for epoch 1 is over");
    assert!(!store.holds_job("acme", "j1", &fence("a", 1)).expect("holds"), "a lost it");
    assert!(store.holds_job("acme", "j1", &fence("b", 2)).expect("holds"), "b has it");
    assert_eq!(store.job_owner("j1").expect("owner").as_deref(), Some("b"));
    assert_eq!(store.job_owner("nope").expect("owner"), None);
    let mut stale = job("j1");
    stale.crash_streak = 9;
    assert!(!store.put_owned_job("acme", &stale, &fence("a", 1)).expect("put"), "a is fenced out");
    assert!(!store.put_owned_job("acme", &stale, &fence("a", 2)).expect("put"), "the epoch is b's");
    assert_eq!(owners(&open()), [(Some("b".to_string()), 2, 0)], "nothing a wrote after the claim is there");
    let mut fresh = job("j1");
    fresh.crash_streak = 1;
    assert!(store.put_owned_job("acme", &fresh, &fence("b", 2)).expect("put"), "b writes");
    assert_eq!(owners(&store), [(Some("b".to_string()), 2, 1)]);

    // Of nodes racing to claim one orphan, exactly one gets it.
    let barrier = std::sync::Barrier::new(8);
    let winners: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (store, barrier) = (store.clone(), &barrier);
                s.spawn(move || {
                    barrier.wait();
                    store.claim_job("acme", "j1", &format!("n{i}"), 2).expect("claim").map(|f| f.node)
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().expect("thread")).collect()
    });
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(owners(&store), [(Some(winners[0].clone()), 3, 1)]);
    let held = fence(&winners[0], 3);
    assert!(!store.release_job("acme", &job("j1"), &fence("a", 1)).expect("release"), "only the owner releases");
    assert!(store.release_job("acme", &fresh, &held).expect("release"));
    assert_eq!(owners(&store), [(None, 4, 1)], "released: no owner, a new epoch");
    assert!(!store.put_owned_job("acme", &job("j1"), &held).expect("put"), "the releaser's writes are fenced out");
    assert_eq!(store.claim_job("acme", "j1", "n9", 4).expect("claim"), Some(fence("n9", 5)));
    store.put_job("acme", &job("j2")).expect("a single server's write");
    assert_eq!(owners(&store)[1], (None, 0, 0), "a single server's job has no owner");
}

fn leases_lapse_by_the_databases_clock(open: Open) {
    let store = open();
    assert!(store.nodes().expect("nodes").is_empty());
    store.renew_node(&node("b", &["j1"]), Duration::from_secs(60)).expect("renew");
    store.renew_node(&node("a", &[]), Duration::from_millis(1)).expect("renew");
    std::thread::sleep(Duration::from_millis(50));
    let nodes = open().nodes().expect("nodes");
    let ids: Vec<&str> = nodes.iter().map(|(n, _)| n.node_id.as_str()).collect();
    assert_eq!(ids, ["a", "b"], "by node id");
    assert!(nodes[0].1 < 0, "a's lease lapsed: {nodes:?}");
    assert!((50_000..=60_000).contains(&nodes[1].1), "b's has about a minute left: {nodes:?}");
    assert_eq!(nodes[1].0, node("b", &["j1"]));

    // A renewal replaces the record and extends the lease; a removal takes the node out.
    store.renew_node(&node("a", &["j2", "j3"]), Duration::from_secs(30)).expect("renew");
    let nodes = store.nodes().expect("nodes");
    assert_eq!(nodes[0].0.jobs, ["j2", "j3"]);
    assert!(nodes[0].1 > 20_000, "{nodes:?}");
    store.remove_node("b").expect("remove");
    store.remove_node("b").expect("removing a missing node is fine");
    let ids: Vec<String> = store.nodes().expect("nodes").into_iter().map(|(n, _)| n.node_id).collect();
    assert_eq!(ids, ["a"]);
}

#[test]
fn postgres_refuses_a_database_from_a_newer_eddy_and_survives_a_restart_of_the_server() {
    let mut server = TestPostgres::start();
    let (dir, url) = (tempfile::tempdir().expect("tempdir"), server.new_database("lifecycle"));
    let store = Store::open_with(dir.path(), Some(&url), None).expect("open");
    store.put_job("acme", &job("before")).expect("job");

    // Calls while the database is down fail (within the connect timeout) instead of hanging; the same store
    // carries on once it is back, with everything written before.
    server.stop();
    let started = std::time::Instant::now();
    assert!(store.put_job("acme", &job("during")).is_err(), "the database is down");
    assert!(started.elapsed() < Duration::from_secs(30), "failed in {:?}", started.elapsed());
    server.start_again();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while let Err(e) = store.put_job("acme", &job("after")) {
        assert!(std::time::Instant::now() < deadline, "not reconnected: {e}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let ids: Vec<String> = store.jobs("acme").into_iter().map(|j| j.id).collect();
    assert_eq!(ids, ["before", "after"]);

    let db = Postgres::open(&url).expect("open");
    db.set_schema_version(postgres::MIGRATIONS_KNOWN + 1).expect("bump");
    let e = Store::open_with(dir.path(), Some(&url), None).expect_err("newer schema");
    assert!(e.to_string().contains("newer Eddy"), "{e}");
    let bad = Store::open_with(dir.path(), Some("postgres://nobody@127.0.0.1:1/x"), None).expect_err("no server");
    assert!(bad.to_string().contains("PostgreSQL"), "{bad}");
}

#[test]
fn sqlite_uses_wal_and_full_sync() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(Store::open(dir.path()).expect("open"));
    let db = Sqlite::open(&dir.path().join("eddy.db")).expect("db");
    let conn = db.connection();
    let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).expect("journal_mode");
    let sync: i64 = conn.pragma_query_value(None, "synchronous", |r| r.get(0)).expect("synchronous");
    assert_eq!((mode.as_str(), sync), ("wal", 2), "2 is FULL");
    assert!(!dir.path().join("tenants").exists(), "the old layout is not created");
}

/// A record as the old layout stored it.
fn pretty<T: Serialize>(record: &T) -> Vec<u8> {
    serde_json::to_vec_pretty(record).expect("json")
}

#[test]
fn sqlite_imports_the_old_json_layout_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let write = |path: &str, bytes: &[u8]| {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, bytes).expect("write");
    };
    let upper = module("upper", "1", &"ab".repeat(32));
    write("tenants/acme/modules/upper@1.json", &pretty(&upper));
    write("tenants/acme/jobs/j1.json", &pretty(&job("j1")));
    write("tenants/acme/jobs/j2.json", &pretty(&job("j2")));
    write("tenants/acme/jobs/torn.json", br#"{"id": "j3", "na"#);
    write("tenants/acme/jobs/j4.tmp1234", b"left over by a crash");
    write("tenants/globex/jobs/g1.json", &pretty(&job("g1")));
    std::fs::create_dir_all(root.join("tenants/empty/modules")).expect("mkdir");

    let store = Store::open(root).expect("open imports");
    assert_eq!(store.tenants(), vec!["acme".to_string(), "globex".to_string()]);
    assert_eq!(store.modules("acme"), vec![upper]);
    let mut acme = store.jobs("acme");
    acme.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(acme, vec![job("j1"), job("j2")], "the torn file and the temporary one are skipped");
    assert_eq!(store.jobs("globex"), vec![job("g1")]);
    assert!(!root.join("tenants").exists(), "moved aside");
    assert!(root.join("tenants.imported/acme/jobs/j1.json").is_file(), "kept for inspection");

    // Not imported again: a removed job stays removed, even if the old folder is there again (as after a crash
    // between the import's commit and the move).
    store.remove_job("acme", "j2").expect("remove");
    drop(store);
    write("tenants/acme/jobs/j2.json", &pretty(&job("j2")));
    let reopened = Store::open(root).expect("reopen");
    assert_eq!(reopened.jobs("acme"), vec![job("j1")]);
    assert!(!root.join("tenants").exists());
    assert!(root.join("tenants.imported.2/acme/jobs/j2.json").is_file(), "moved aside beside the first");
}

#[test]
fn blobs_are_written_whole_under_concurrent_writers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let hash = "cd".repeat(32);
    let bytes = vec![7u8; 1 << 20];
    let barrier = std::sync::Barrier::new(16);
    std::thread::scope(|s| {
        for _ in 0..16 {
            let (store, barrier, hash, bytes) = (store.clone(), &barrier, &hash, &bytes);
            s.spawn(move || {
                barrier.wait();
                store.put_blob(hash, bytes).expect("put blob");
            });
        }
    });
    assert_eq!(store.blob(&hash).as_ref(), Some(&bytes));
    let names: Vec<String> = std::fs::read_dir(dir.path().join("blobs"))
        .expect("read blobs")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec![format!("{hash}.wasm")], "no temporary file is left");

    // A torn blob (an older Eddy did not sync) is replaced by the next upload of the same bytes.
    std::fs::write(dir.path().join("blobs").join(format!("{hash}.wasm")), &bytes[..100]).expect("tear");
    store.put_blob(&hash, &bytes).expect("put blob");
    assert_eq!(store.blob(&hash).as_ref(), Some(&bytes));
    store.remove_blob(&hash).expect("remove");
    store.remove_blob(&hash).expect("removing a missing blob is fine");
    assert_eq!(store.blob(&hash), None);
    assert!(store.put_blob("../../etc/x", b"x").is_err(), "a hash names nothing outside the blobs folder");
}

#[test]
fn sqlite_migrates_a_first_version_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = rusqlite::Connection::open(dir.path().join("eddy.db")).expect("db");
    first.execute_batch(sqlite::MIGRATIONS[0]).expect("version 1 schema");
    first.pragma_update(None, "user_version", 1).expect("version 1");
    let old_job = serde_json::to_string(&job("j1")).expect("json");
    first.execute("INSERT INTO jobs (tenant, id, record) VALUES ('acme', 'j1', ?1)", [old_job]).expect("a job");
    drop(first);

    let store = Store::open(dir.path()).expect("upgraded on open");
    let overrides = QuotaOverrides { jobs: Some(3), ..QuotaOverrides::default() };
    store.put_quota("acme", &overrides).expect("quotas table");
    store.renew_node(&node("a", &[]), Duration::from_secs(1)).expect("nodes table");
    let jobs = store.owned_jobs("acme").expect("jobs");
    assert_eq!(jobs, [OwnedJob { record: job("j1"), owner: None, epoch: 0 }], "the job is kept, owned by none");
    drop(store);
    assert_eq!(Store::open(dir.path()).expect("reopen").quotas(), vec![("acme".to_string(), overrides)]);
}

#[test]
fn sqlite_refuses_a_database_from_a_newer_eddy() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(Store::open(dir.path()).expect("open"));
    let db = Sqlite::open(&dir.path().join("eddy.db")).expect("db");
    db.connection().pragma_update(None, "user_version", 99).expect("bump");
    drop(db);
    let e = Store::open(dir.path()).expect_err("newer schema");
    assert!(e.to_string().contains("newer Eddy"), "{e}");
}
