//! A Kafka → Kafka job run by the engine with checkpoints, stopped abruptly several times and restored from its
//! latest checkpoint: a `read_committed` consumer of the output finds every input record exactly once.

use crate::broker::{Rec, brokers, create_topic, produce_paced, read_committed, unique};
use eddy_engine::checkpoint::{CheckpointStore, Checkpointing, LocalStore, Restore};
use eddy_engine::graph::JobGraph;
use eddy_engine::runtime::{DeployEnv, JobState, deploy};
use eddy_engine::spec::JobSpec;
use eddy_engine::testing::TestFunctions;
use eddy_kafka::KafkaConnectors;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn run(
    job: &str,
    graph: &JobGraph,
    store: &Arc<dyn CheckpointStore>,
    restore: Option<Restore>,
) -> eddy_engine::runtime::RunningJob {
    let mut env = DeployEnv::new(job, "test", Arc::new(TestFunctions));
    env.connectors = Some(Arc::new(KafkaConnectors::default()));
    env.checkpointing = Some(
        Checkpointing::new(
            graph.checkpoints.clone().expect("checkpoints"),
            Arc::clone(store),
            "job/",
            graph.max_parallelism,
        )
        .after(restore.as_ref().map_or(0, |r| r.checkpoint)),
    );
    env.restore = restore;
    deploy(graph, env).unwrap_or_else(|e| panic!("deploy: {e}"))
}

#[test]
fn exactly_once_from_kafka_to_kafka_across_abrupt_stops() {
    across_stops("exactly_once", &[(700, 2), (450, 2), (120, 2), (900, 2), (300, 2), (650, 2)]);
}

#[test]
fn exactly_once_from_kafka_to_kafka_across_abrupt_stops_and_rescales() {
    across_stops("exactly_once", &[(700, 2), (450, 3), (500, 1), (900, 3), (300, 2), (650, 3)]);
}

#[test]
fn at_least_once_loses_nothing_across_abrupt_stops_and_rescales() {
    across_stops("at_least_once", &[(700, 2), (450, 3), (300, 1), (900, 2), (650, 3)]);
}

/// `EDDY_KAFKA_STOPS=<n>` runs the exactly-once job through `n` stops at pseudo-random moments and parallelisms
/// (`EDDY_KAFKA_SEED` picks them); without it, this test does nothing.
#[test]
fn exactly_once_across_many_stops() {
    let Some(stops) = std::env::var("EDDY_KAFKA_STOPS").ok().and_then(|n| n.parse::<usize>().ok()) else { return };
    let mut seed: u64 = std::env::var("EDDY_KAFKA_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let mut next = move |below: u64| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % below
    };
    let rounds: Vec<(u64, u32)> = (0..stops).map(|_| (50 + next(1_000), 1 + next(3) as u32)).collect();
    eprintln!("stops (milliseconds, parallelism): {rounds:?}");
    across_stops("exactly_once", &rounds);
}

/// Runs the job with the sink's `delivery` once per `(milliseconds, parallelism)` and stops it abruptly after that
/// long, then once more until all input is out. Every record must be in the output, and with exactly-once only
/// once.
fn across_stops(delivery: &str, rounds: &[(u64, u32)]) {
    let (input, output, job_id) = (unique("job-in"), unique("job-out"), unique("e2e"));
    create_topic(&input, 3);
    create_topic(&output, 2);
    // Input keeps arriving for about as long as the stops take.
    let total = (rounds.iter().map(|(ms, _)| *ms).sum::<u64>() as usize).clamp(3_000, 200_000);
    // Recent event times: the broker deletes records older than its retention.
    let base = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64
        - 3_600_000;
    let records: Vec<Rec> = (0..total)
        .map(|i| Rec {
            partition: (i % 3) as i32,
            key: Some(format!("k{}", i % 7)),
            value: format!("{{\"n\":{i}}}"),
            timestamp: base + i as i64,
        })
        .collect();
    // The input arrives while the job runs and is stopped, in chunks, so that every epoch has records.
    let feeder = {
        let (input, records) = (input.clone(), records.clone());
        std::thread::spawn(move || produce_paced(&input, &records, 30, Duration::from_millis(25)))
    };
    let graph = |parallelism: u32| {
        let spec = format!(
            r#"
name: e2e
parallelism: {parallelism}
checkpoints: {{ interval: 150ms }}
operators:
  - uid: in
    source: {{ kafka: {{ brokers: "{b}", topics: [{input}], format: json }} }}
    batch_size: 64
  - uid: out
    input: in
    sink: {{ kafka: {{ brokers: "{b}", topic: {output}, delivery: {delivery}, properties: {{ transaction.timeout.ms: 30000 }} }} }}
"#,
            b = brokers()
        );
        let spec = JobSpec::parse(&spec).unwrap_or_else(|e| panic!("{e}"));
        JobGraph::build(&spec, &TestFunctions).unwrap_or_else(|e| panic!("{e}"))
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn CheckpointStore> = Arc::new(LocalStore::new(dir.path()));

    let mut restore = None;
    for (round, &(stop_after, parallelism)) in rounds.iter().enumerate() {
        let job = run(&job_id, &graph(parallelism), &store, restore.take());
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(stop_after) {
            std::thread::sleep(Duration::from_millis(10));
        }
        // An abrupt stop: tasks end where they are, without finishing, as in a crash (open transactions stay
        // open until the next run's producers take over their ids).
        let completed = job.handle.checkpoints().completed;
        job.handle.cancel();
        assert_eq!(job.handle.wait(Duration::from_secs(30)), JobState::Canceled, "{:?}", job.handle.error());
        drop(job);
        restore = Restore::latest(&store, "job/").expect("read checkpoints");
        eprintln!(
            "round {round}: {completed} checkpoint(s) completed, restoring {:?}",
            restore.as_ref().map(|r| r.checkpoint)
        );
    }
    feeder.join().expect("feeder");
    // A last run until every record is out.
    let job = run(&job_id, &graph(2), &store, restore.take());
    let deadline = Instant::now() + Duration::from_secs(120);
    let seen = loop {
        let seen = read_committed(&output);
        let distinct: std::collections::HashSet<&str> = seen.iter().map(|(r, _)| r.value.as_str()).collect();
        if distinct.len() >= total || Instant::now() > deadline {
            break seen;
        }
        assert_eq!(job.handle.state(), JobState::Running, "{:?}", job.handle.error());
        eprintln!("{} of {total} records out; checkpoints: {:?}", seen.len(), job.handle.checkpoints());
        std::thread::sleep(Duration::from_millis(1000));
    };
    job.handle.cancel();
    job.handle.wait(Duration::from_secs(30));
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (record, _) in &seen {
        *counts.entry(record.value.clone()).or_default() += 1;
    }
    let duplicates: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    if delivery == "exactly_once" {
        assert!(duplicates.is_empty(), "records written more than once: {:?}", &duplicates[..duplicates.len().min(5)]);
    } else {
        eprintln!("at-least-once: {} record(s) written more than once", duplicates.len());
    }
    let missing: Vec<_> = records.iter().filter(|r| !counts.contains_key(&r.value)).collect();
    assert!(
        missing.is_empty(),
        "{} records missing from the output ({} seen, {} in the input), such as {:?}; output high watermarks: {:?}",
        missing.len(),
        seen.len(),
        read_committed(&input).len(),
        &missing[..missing.len().min(5)],
        crate::broker::high_watermarks(&output)
    );
    assert_eq!(counts.len(), total);
    // Keys and event times travel through.
    let first = seen.iter().find(|(r, _)| r.value == "{\"n\":8}").expect("record 8");
    assert_eq!((first.0.key.as_deref(), first.0.timestamp), (Some("k1"), base + 8));
}

/// The broker is killed and started again while the job runs: the job fails or rides it out; failed runs are
/// restored from the latest checkpoint, as a restart strategy does, and the output holds every record once.
#[test]
fn exactly_once_across_a_broker_crash() {
    let broker = crate::broker::OwnBroker::start();
    let (input, output, job_id) = (unique("crash-in"), unique("crash-out"), unique("crash"));
    crate::broker::create_topic_at(&broker.address, &input, 2);
    crate::broker::create_topic_at(&broker.address, &output, 2);
    let total = 2_000usize;
    let base = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64
        - 3_600_000;
    let records: Vec<Rec> = (0..total)
        .map(|i| Rec { partition: (i % 2) as i32, key: None, value: format!("r{i}"), timestamp: base + i as i64 })
        .collect();
    let feeder = {
        let (address, input, records) = (broker.address.clone(), input.clone(), records.clone());
        std::thread::spawn(move || {
            crate::broker::produce_paced_at(&address, &input, &records, 50, Duration::from_millis(50))
        })
    };
    let spec = format!(
        r#"
name: crash
parallelism: 2
checkpoints: {{ interval: 200ms }}
operators:
  - uid: in
    source: {{ kafka: {{ brokers: "{b}", topics: [{input}] }} }}
  - uid: out
    input: in
    sink: {{ kafka: {{ brokers: "{b}", topic: {output}, delivery: exactly_once, properties: {{ transaction.timeout.ms: 60000 }} }} }}
"#,
        b = broker.address
    );
    let spec = JobSpec::parse(&spec).unwrap_or_else(|e| panic!("{e}"));
    let graph = JobGraph::build(&spec, &TestFunctions).unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn CheckpointStore> = Arc::new(LocalStore::new(dir.path()));
    let deploy_restored = || loop {
        let restore = Restore::latest(&store, "job/").expect("read checkpoints");
        let mut env = DeployEnv::new(&job_id, "test", Arc::new(TestFunctions));
        env.connectors = Some(Arc::new(KafkaConnectors::default()));
        env.checkpointing = Some(
            Checkpointing::new(
                graph.checkpoints.clone().expect("checkpoints"),
                Arc::clone(&store),
                "job/",
                graph.max_parallelism,
            )
            .after(restore.as_ref().map_or(0, |r| r.checkpoint)),
        );
        env.restore = restore;
        match deploy(&graph, env) {
            Ok(job) => return job,
            // While the broker starts again, a deployment may fail to reach it: try again, as a restart would.
            Err(e) => {
                eprintln!("deploy failed: {e}");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    };
    let mut job = deploy_restored();
    std::thread::sleep(Duration::from_millis(1500));
    let killed = Instant::now();
    broker.restart(1);
    eprintln!("the broker was killed and answers again after {:?}", killed.elapsed());
    let mut restarts = 0;
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        assert!(Instant::now() < deadline, "the output did not complete in time");
        if job.handle.state() == JobState::Failed {
            eprintln!("the job failed ({:?}); restoring it", job.handle.error().map(|e| e.message));
            restarts += 1;
            job = deploy_restored();
        }
        let seen = crate::broker::read_committed_at(&broker.address, &output);
        let distinct: std::collections::HashSet<&str> = seen.iter().map(|(r, _)| r.value.as_str()).collect();
        if distinct.len() >= total {
            assert_eq!(seen.len(), total, "records written more than once");
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    job.handle.cancel();
    job.handle.wait(Duration::from_secs(30));
    feeder.join().expect("feeder");
    eprintln!("exactly once across a broker crash, with {restarts} restart(s) of the job");
}

/// Records that are not JSON, or lack the event time, go to the source's side output (here a dead-letter topic)
/// with why and where they came from; the others flow on. With `on_error: fail` the first one fails the job.
#[test]
fn unreadable_records_go_to_a_dead_letter_topic_or_fail_the_job() {
    let (input, output, dead) = (unique("dl-in"), unique("dl-out"), unique("dl-dead"));
    create_topic(&input, 1);
    create_topic(&output, 1);
    create_topic(&dead, 1);
    let values = ["{\"n\":1,\"ts\":10}", "not json", "{\"n\":2}", "{\"n\":3,\"ts\":30}"];
    // A recent Kafka timestamp: the broker deletes records older than its retention.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
    let records: Vec<Rec> = values
        .iter()
        .map(|v| Rec { partition: 0, key: Some("k".into()), value: v.to_string(), timestamp: now })
        .collect();
    crate::broker::produce(&input, &records);
    let graph = |on_error: &str| {
        let spec = format!(
            r#"
name: dead-letters
checkpoints: {{ interval: 100ms }}
operators:
  - uid: in
    source: {{ kafka: {{ brokers: "{b}", topics: [{input}], format: json, timestamp: {{ field: "$.ts" }} }} }}
    on_error: {on_error}
  - {{ uid: out, input: in, sink: {{ kafka: {{ brokers: "{b}", topic: {output}, delivery: exactly_once }} }} }}
{dead_letters}"#,
            b = brokers(),
            dead_letters = match on_error {
                "fail" => String::new(),
                tag => format!(
                    "  - {{ uid: dead, input: in.{tag}, sink: {{ kafka: {{ brokers: \"{}\", topic: {dead} }} }} }}\n",
                    brokers()
                ),
            }
        );
        let spec = JobSpec::parse(&spec).unwrap_or_else(|e| panic!("{e}"));
        JobGraph::build(&spec, &TestFunctions).unwrap_or_else(|e| panic!("{e}"))
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn CheckpointStore> = Arc::new(LocalStore::new(dir.path()));

    let job = run(&unique("dl"), &graph("bad"), &store, None);
    let deadline = Instant::now() + Duration::from_secs(60);
    let (good, bad) = loop {
        let (good, bad) = (read_committed(&output), read_committed(&dead));
        if (good.len() >= 2 && bad.len() >= 2) || Instant::now() > deadline {
            break (good, bad);
        }
        assert_eq!(job.handle.state(), JobState::Running, "{:?}", job.handle.error());
        std::thread::sleep(Duration::from_millis(200));
    };
    job.handle.cancel();
    job.handle.wait(Duration::from_secs(30));
    let good: Vec<&str> = good.iter().map(|(r, _)| r.value.as_str()).collect();
    assert_eq!(good, [values[0], values[3]], "the readable records flow on");
    let bad: Vec<(&str, &[(String, String)])> = bad.iter().map(|(r, h)| (r.value.as_str(), h.as_slice())).collect();
    assert_eq!(bad.iter().map(|(v, _)| *v).collect::<Vec<_>>(), [values[1], values[2]], "as they came");
    let header = |headers: &[(String, String)], name: &str| {
        headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default()
    };
    assert!(header(bad[0].1, "eddy.error").contains("not JSON"), "{:?}", bad[0].1);
    assert!(header(bad[1].1, "eddy.error").contains("no event time"), "{:?}", bad[1].1);
    assert_eq!(header(bad[0].1, "kafka.topic"), input);
    assert_eq!((header(bad[0].1, "kafka.partition"), header(bad[0].1, "kafka.offset")), ("0".into(), "1".into()));

    // Failing instead: the job fails, naming the record.
    let failing = run(&unique("dl-fail"), &graph("fail"), &store, None);
    assert_eq!(failing.handle.wait(Duration::from_secs(60)), JobState::Failed);
    let error = failing.handle.error().expect("an error");
    assert!(error.message.contains("not JSON") && error.message.contains("offset 1"), "{error:?}");
}
