//! Kafka through the server, against the real Apache Kafka broker that `tests/services/kafka.sh` starts: the two
//! example jobs of `udfs/jobs` run as the README shows them, and a Kafka -> Wasm map -> keyed window -> Kafka job
//! whose server is killed with SIGKILL at random moments writes each result exactly once.

use crate::support::{Rust, ServerProcess, TestServer, example, examples, submit, wait_job};
use eddy_server::client::Client;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn script() -> String {
    examples().repo().join("tests/services/kafka.sh").display().to_string()
}

/// The broker's listeners: plain, and one that wants SASL/PLAIN logins (see `tests/services/kafka.sh`).
struct Broker {
    plain: String,
    sasl: Option<String>,
}

/// The broker: `EDDY_KAFKA_BROKERS` (and `EDDY_KAFKA_SASL_BROKERS`), or one started for this test process (stopped
/// when it ends).
fn broker() -> &'static Broker {
    static BROKER: OnceLock<Broker> = OnceLock::new();
    BROKER.get_or_init(|| {
        if let Ok(brokers) = std::env::var("EDDY_KAFKA_BROKERS")
            && !brokers.is_empty()
        {
            return Broker { plain: brokers, sasl: std::env::var("EDDY_KAFKA_SASL_BROKERS").ok() };
        }
        // A second try for a broker that fails to come up (a port taken between choosing and binding it).
        let mut failures = Vec::new();
        for _ in 0..2 {
            let output = Command::new("bash")
                .arg(script())
                .env("EDDY_KAFKA_OWNER_PID", std::process::id().to_string())
                .output()
                .expect("run tests/services/kafka.sh");
            if output.status.success() {
                let stdout = String::from_utf8_lossy(&output.stdout);
                let lines: Vec<&str> = stdout.lines().collect();
                let plain = lines.first().expect("the broker's address").to_string();
                return Broker { plain, sasl: lines.get(2).map(|l| l.to_string()) };
            }
            failures.push(String::from_utf8_lossy(&output.stderr).into_owned());
        }
        panic!("cannot start a broker:\n{}", failures.join("\n---\n"))
    })
}

fn brokers() -> &'static str {
    &broker().plain
}

/// Topic names no other test uses, created with `partitions` partitions each.
fn topics(names: &[&str], partitions: u32) -> Vec<String> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let unique: Vec<String> = names.iter().map(|name| format!("{name}-{}-{n}", std::process::id())).collect();
    let mut command = Command::new("bash");
    command.args([script(), "topics".into(), brokers().into()]);
    command.args(unique.iter().map(|t| format!("{t}:{partitions}")));
    let output = command.output().expect("run kafka.sh topics");
    assert!(output.status.success(), "cannot create topics: {}", String::from_utf8_lossy(&output.stderr));
    unique
}

fn produce(topic: &str, lines: &[String]) {
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", brokers()).create().expect("producer");
    for line in lines {
        let mut record = BaseRecord::<(), str>::to(topic).payload(line.as_str());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

/// Every value committed to `topic` (read_committed), once `enough` of them are there and nothing more came for
/// two seconds, or after `limit`.
fn committed(topic: &str, enough: usize, limit: Duration) -> Vec<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", format!("check-{topic}-{}", uuid_like()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let (started, mut last) = (Instant::now(), Instant::now());
    let mut values = Vec::new();
    while started.elapsed() < limit && (values.len() < enough || last.elapsed() < Duration::from_secs(2)) {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            values.push(String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned());
            last = Instant::now();
        }
    }
    values.sort();
    values
}

fn uuid_like() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

/// An example spec of `udfs/jobs` on this test's broker and topics.
fn example_spec(file: &str, renames: &[(&str, &str)]) -> String {
    let mut spec = std::fs::read_to_string(examples().repo().join("udfs/jobs").join(file)).expect("example spec");
    spec = spec.replace("127.0.0.1:9092", brokers());
    for (from, to) in renames {
        spec = spec
            .replace(&format!("[{from}]"), &format!("[{to}]"))
            .replace(&format!("topic: {from},"), &format!("topic: {to},"));
    }
    spec
}

#[tokio::test(flavor = "multi_thread")]
async fn the_kafka_examples_count_words_and_raise_alerts_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerProcess::start(dir.path()).await;
    let c = &server.client;
    for name in ["split-words", "stopwords", "word-key", "fraud-detection"] {
        c.push_module(name, None, example(Rust, name).await).await.expect("upload");
    }
    // One partition each: the watermark waits for every partition, and a few records may all land in one.
    let t = topics(&["lines", "word-counts", "transactions", "alerts"], 1);

    let words = submit(c, &example_spec("kafka-word-count.yaml", &[("lines", &t[0]), ("word-counts", &t[1])])).await;
    let minute = 1_767_225_600_000i64;
    let lines: Vec<String> = [
        (minute, "the river flows"),
        (minute + 10_000, "a river bends"),
        (minute + 20_000, "the river"),
        // Next minute: moves the watermark past the first window.
        (minute + 90_000, "sea"),
    ]
    .iter()
    .map(|(ts, text)| format!("{{\"text\":\"{text}\",\"ts\":{ts}}}"))
    .collect();
    produce(&t[0], &lines);

    let fraud =
        submit(c, &example_spec("kafka-fraud-detection.yaml", &[("transactions", &t[2]), ("alerts", &t[3])])).await;
    let transactions =
        std::fs::read_to_string(examples().repo().join("udfs/jobs/fraud-detection.input.jsonl")).expect("input");
    produce(&t[2], &transactions.lines().map(str::to_string).collect::<Vec<_>>());

    let counts = committed(&t[1], 3, Duration::from_secs(60));
    let counts: Vec<(String, u64)> = counts
        .iter()
        .map(|v| {
            let v: serde_json::Value = serde_json::from_str(v).expect("JSON");
            (v["key"].as_str().unwrap_or_default().to_string(), v["count"].as_u64().unwrap_or(0))
        })
        .collect();
    assert_eq!(
        counts,
        [("bends".to_string(), 1), ("flows".to_string(), 1), ("river".to_string(), 3)],
        "the first minute's counts, each once"
    );
    let alerts = committed(&t[3], 1, Duration::from_secs(60));
    assert!(!alerts.is_empty(), "the walkthrough's input raises alerts");
    for alert in &alerts {
        let alert: serde_json::Value = serde_json::from_str(alert).expect("JSON");
        assert!(alert["large_amount"].as_f64().unwrap_or(0.0) > 500.0, "{alert}");
    }
    for job in [&words, &fraud] {
        let status = c.job(job).await.expect("status");
        assert_eq!(status["state"], "running", "{status:#}");
        assert!(status["checkpoints"]["completed"].as_u64().unwrap_or(0) > 0, "{status:#}");
    }

    // The status shows where the source stands in its partition and what the sink committed: all four lines
    // read, their offsets committed with a checkpoint, nothing left (lag 0); transactions committed.
    let status = wait_job(c, &words, Duration::from_secs(30), |s| {
        let partition = &operator(s, "lines")["connectors"][0]["partitions"][0];
        partition["committed_offset"] == 4 && partition["lag"] == 0
    })
    .await;
    let partition = &operator(&status, "lines")["connectors"][0]["partitions"][0];
    assert_eq!(partition["topic"], t[0].as_str(), "{partition:#}");
    assert_eq!(partition["partition"], 0);
    assert_eq!(partition["current_offset"], 4);
    assert_eq!(partition["end_offset"], 4);
    let transactions = &operator(&status, "out")["connectors"][0]["transactions"];
    assert!(transactions["commits"].as_u64().is_some_and(|n| n >= 1), "{transactions:#}");
    assert!(transactions["last_committed_checkpoint"].as_u64().is_some(), "{transactions:#}");
    assert!(transactions["last_commit_ms"].as_u64().is_some(), "{transactions:#}");
    assert!(transactions["transactional_id"].as_str().is_some_and(|id| id.contains(&words)), "{transactions:#}");
    // And Prometheus sees the same.
    let metrics = reqwest::get(format!("{}/metrics", server.url)).await.expect("metrics").text().await.expect("text");
    let lag = metrics
        .lines()
        .find(|l| l.starts_with("eddy_source_partition_lag{") && l.contains(&t[0]))
        .unwrap_or_else(|| panic!("no partition lag for {} in:\n{metrics}", t[0]));
    assert!(lag.ends_with(" 0"), "{lag}");
    assert!(metrics.contains("eddy_sink_transactions_committed_total{"), "{metrics}");
    crate::support::assert_the_dashboard_uses_exported_metrics(&metrics);
    server.kill();
}

/// Records per produced batch, and batches in all.
const BATCH: u64 = 40;
const BATCHES: u64 = 60;

fn batch(n: u64) -> Vec<String> {
    (0..BATCH)
        .map(|i| {
            let seq = n * BATCH + i;
            let ts = seq * 7 + (seq * 13) % 50;
            format!(r#"{{"key":"k{}","ts":{ts},"amount":{}}}"#, seq % 7, seq % 100)
        })
        .collect()
}

fn ledger(input: &str, output: &str, delivery: &str) -> String {
    format!(
        r#"
name: kafka-ledger-{delivery}
checkpoints: {{ interval: 1s }}
operators:
  - {{ uid: src, source: {{ kafka: {{ brokers: "{b}", topics: [{input}] }} }}, watermark: {{ out_of_orderness: 100ms, timestamp: {{ json: "$.ts" }} }} }}
  - {{ uid: m, map: lower, input: src }}
  - {{ uid: w, input: m, key_by: {{ json: "$.key" }}, window: {{ tumbling: 500ms }}, aggregate: {{ module: stats }} }}
  - {{ uid: out, input: w, sink: {{ kafka: {{ brokers: "{b}", topic: {output}, delivery: {delivery} }} }} }}
"#,
        b = brokers()
    )
}

/// Kills of the server during the interrupted run; `EDDY_TEST_KILLS` asks for more (or fewer).
fn kills() -> u64 {
    std::env::var("EDDY_TEST_KILLS").ok().and_then(|k| k.parse().ok()).unwrap_or(20)
}

/// Operator `uid` in a job's status (null when absent).
fn operator(status: &serde_json::Value, uid: &str) -> serde_json::Value {
    let operators = status["operators"].as_array().cloned().unwrap_or_default();
    operators.into_iter().find(|o| o["uid"] == uid).unwrap_or_default()
}

/// The exactly-once sink's transactions in a job's status.
fn transactions(status: &serde_json::Value) -> serde_json::Value {
    operator(status, "out")["connectors"][0]["transactions"].clone()
}

/// How long the sink pauses between a checkpoint's completion and its commit in the killed runs, so that kills
/// can land in that window on purpose.
const COMMIT_DELAY_MS: &str = "800";

async fn checkpointed(client: &Client, id: &str) {
    wait_job(client, id, Duration::from_secs(60), |s| {
        s["state"] == "running" && s["checkpoints"]["completed"].as_u64().is_some_and(|c| c >= 1)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kafka_job_whose_server_is_killed_at_random_moments_writes_each_result_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = [("EDDY_KAFKA_TEST_COMMIT_DELAY_MS", COMMIT_DELAY_MS)];
    let mut server = ServerProcess::start_with_env(dir.path(), &hook).await;
    server.client.push_module("lower", None, example(Rust, "lowercase").await).await.expect("upload");
    server.client.push_module("stats", None, example(Rust, "running-stats").await).await.expect("upload");
    let t = topics(&["ledger", "whole", "crashed"], 1);
    let input: Vec<String> = (0..BATCHES).flat_map(batch).collect();

    // The uninterrupted run reads the whole input at once.
    produce(&t[0], &input);
    let whole = submit(&server.client, &ledger(&t[0], &t[1], "exactly_once")).await;
    checkpointed(&server.client, &whole).await;
    let expected = committed(&t[1], 1, Duration::from_secs(20));
    assert!(expected.len() > 100, "{} results", expected.len());
    server.client.cancel(&whole).await.expect("cancel");

    // The same input from another topic, produced batch by batch, with the server killed in between.
    let seed = std::env::var("EDDY_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed);
    let mut random = crate::recovery::SplitMix(seed);
    let crashed_input = topics(&["ledger-slow"], 1).remove(0);
    let kills = kills();
    let mut kill_after: Vec<u64> = (0..kills).map(|_| random.below(BATCHES)).collect();
    kill_after.sort_unstable();
    let id = submit(&server.client, &ledger(&crashed_input, &t[2], "exactly_once")).await;
    // An at-least-once job reads the same input beside it, through the same kills.
    let at_least_once = topics(&["at-least-once"], 1).remove(0);
    let second = submit(&server.client, &ledger(&crashed_input, &at_least_once, "at_least_once")).await;
    checkpointed(&server.client, &id).await;
    checkpointed(&server.client, &second).await;
    let mut next_kill = kill_after.iter().peekable();
    let (mut kills_in_gap, mut kill_number) = (0, 0);
    for n in 0..BATCHES {
        produce(&crashed_input, &batch(n));
        while next_kill.next_if(|&&k| k == n).is_some() {
            kill_number += 1;
            // Every other kill waits until a completed checkpoint's transaction is committing, the window where
            // the crash leaves records that only the checkpoint holds; the others come after a random pause.
            let in_gap = kill_number % 2 == 0 && {
                let started = Instant::now();
                loop {
                    let status = server.client.job(&id).await.expect("job status");
                    if transactions(&status)["committing_checkpoint"].is_u64() {
                        break true;
                    }
                    if started.elapsed() > Duration::from_secs(10) {
                        break false;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            };
            if !in_gap {
                tokio::time::sleep(Duration::from_millis(random.below(1500))).await;
            }
            server.kill();
            server = ServerProcess::start_with_env(dir.path(), &hook).await;
            checkpointed(&server.client, &id).await;
            checkpointed(&server.client, &second).await;
            if in_gap {
                kills_in_gap += 1;
                // The restored sink found the checkpoint's records missing from Kafka and wrote them again.
                let status = server.client.job(&id).await.expect("job status");
                let rewritten = transactions(&status)["rewritten_epochs"].as_u64();
                assert!(rewritten.is_some_and(|r| r >= 1), "kill {kill_number}: {status:#}");
            }
        }
    }
    assert!(kills < 4 || kills_in_gap >= 1, "no kill landed between a checkpoint's completion and its commit");
    let actual = committed(&t[2], expected.len(), Duration::from_secs(60));
    assert_eq!(actual.len(), expected.len(), "as many results as the uninterrupted run (seed {seed}, {kills} kills)");
    assert_eq!(actual, expected, "the same results, each once (seed {seed}, {kills_in_gap} kills before a commit)");
    // At-least-once loses nothing and invents nothing; results replayed after a kill may come twice.
    let mut again = committed(&at_least_once, expected.len(), Duration::from_secs(60));
    again.dedup();
    let mut distinct = expected.clone();
    distinct.dedup();
    assert_eq!(again, distinct, "at-least-once: every result, nothing else (seed {seed})");
    server.kill();
}

/// Two tenants on one shared broker that wants logins: each reaches it with the credentials the server's config
/// gives it (a spec can name none), and only the topics, groups and transactional ids of its own prefixes.
#[tokio::test(flavor = "multi_thread")]
async fn tenants_reach_only_their_own_topics_with_the_credentials_the_server_gives_them() {
    use eddy_server::config::{TenantConfig, TenantKafka, token_hash};
    let sasl = broker().sasl.clone().expect("the broker's SASL listener (EDDY_KAFKA_SASL_BROKERS)");
    let access = |name: &str, password: &str| TenantKafka {
        brokers: Some(vec![sasl.clone()]),
        topic_prefix: format!("{name}."),
        group_prefix: format!("{name}-"),
        properties: [
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "PLAIN"),
            ("sasl.username", name),
            ("sasl.password", password),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    };
    let server = TestServer::start_with(|c| {
        let mut acme = TenantConfig::new("acme", &token_hash("acme-token"));
        acme.kafka = access("acme", "acme-secret");
        let mut globex = TenantConfig::new("globex", &token_hash("globex-token"));
        globex.kafka = access("globex", "globex-secret");
        c.tenants = vec![acme, globex];
    })
    .await;
    let acme = server.client_with(Some("acme-token"), None);
    let t = topics(&["acme.in", "acme.out", "globex.in", "globex.out"], 1);
    let job = |source: &str, sink: &str| {
        format!(
            "name: k\noperators:\n  - {{ uid: in, source: {{ kafka: {{ brokers: \"{sasl}\", {source} }} }} }}\n  - {{ uid: out, input: in, sink: {{ kafka: {{ brokers: \"{sasl}\", {sink} }} }} }}\n"
        )
    };
    // With the credentials from the config, acme's job reads and writes its own topics.
    let id = submit(&acme, &job(&format!("topics: [{}]", t[0]), &format!("topic: {}", t[1]))).await;
    produce(&t[0], &["one".to_string(), "two".to_string()]);
    produce(&t[2], &["globex's".to_string()]);
    assert_eq!(committed(&t[1], 2, Duration::from_secs(60)), ["one", "two"]);
    assert_eq!(acme.job(&id).await.expect("status")["state"], "running");
    // Names outside its prefixes are refused before anything runs.
    for (source, sink, field) in [
        (format!("topics: [{}]", t[2]), format!("topic: {}", t[1]), "topic"),
        (format!("topics: [{}]", t[0]), format!("topic: {}", t[3]), "topic"),
        (format!("topics: [{}], group: globex-steal", t[0]), format!("topic: {}", t[1]), "group"),
        (
            format!("topics: [{}]", t[0]),
            format!("topic: {}, transactional_id_prefix: eddy", t[1]),
            "transactional_id_prefix",
        ),
    ] {
        let refused = acme.submit(&job(&source, &sink)).await.expect_err(field);
        assert_eq!((refused.status, refused.code.as_str()), (Some(403), "kafka_name_not_allowed"), "{refused}");
        assert!(refused.message.contains(&format!("{field} `")) && refused.message.contains("start with `acme"));
    }
    // Its credentials cannot be swapped for another tenant's in a spec.
    let props = format!("topics: [{}], properties: {{ sasl.username: globex, sasl.password: globex-secret }}", t[0]);
    let refused = acme.submit(&job(&props, &format!("topic: {}", t[1]))).await.expect_err("credentials in a spec");
    assert_eq!(refused.status, Some(400), "{refused}");
    assert!(refused.message.contains("come from the server's configuration for the tenant"), "{refused}");
    // A pattern that matches every topic reads only acme's; a record naming globex's topic in its header fails the
    // job, naming why.
    let pattern =
        submit(&acme, &job("topic_pattern: \".*\", discovery_interval: 500ms", &format!("topic: {}", t[1]))).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = acme.job(&pattern).await.expect("status");
    let partitions = operator(&status, "in")["connectors"][0]["partitions"].clone();
    let read: Vec<&str> = partitions.as_array().into_iter().flatten().filter_map(|p| p["topic"].as_str()).collect();
    assert!(!read.is_empty() && read.iter().all(|topic| topic.starts_with("acme.")), "{partitions:#}");
    let routed_in = topics(&["acme.routed"], 1).remove(0);
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", brokers()).create().expect("producer");
    let headers = rdkafka::message::OwnedHeaders::new()
        .insert(rdkafka::message::Header { key: "route", value: Some(t[3].as_bytes()) });
    let record = BaseRecord::<(), str>::to(&routed_in).payload("to globex").headers(headers);
    producer.send(record).map_err(|(e, _)| e).expect("send");
    producer.flush(Duration::from_secs(30)).expect("flush");
    let routed = job(&format!("topics: [{routed_in}]"), &format!("topic: {}, topic_header: route", t[1]));
    let routed = submit(&acme, &routed).await;
    let failed = wait_job(&acme, &routed, Duration::from_secs(60), |s| s["state"] == "failed").await;
    let message = failed["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&format!("names the topic `{}`, which is not one of this tenant's", t[3])), "{message}");
    // Globex's job on the same broker runs on with its own login.
    let globex = server.client_with(Some("globex-token"), None);
    let theirs = submit(&globex, &job(&format!("topics: [{}]", t[2]), &format!("topic: {}", t[3]))).await;
    assert_eq!(committed(&t[3], 1, Duration::from_secs(60)), ["globex's"]);
    assert_eq!(globex.job(&theirs).await.expect("status")["state"], "running");
}

/// An exactly-once Kafka job is upgraded (its checkpoints give way to the upgrade's savepoint), then its server is
/// killed while the new run commits a checkpoint: the new run's checkpoint ids go on after the savepoint's, so the
/// restored sink knows that epoch is not in Kafka and writes it again. Every result once.
#[tokio::test(flavor = "multi_thread")]
async fn an_upgraded_kafka_job_killed_while_it_commits_writes_each_result_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = [("EDDY_KAFKA_TEST_COMMIT_DELAY_MS", COMMIT_DELAY_MS)];
    let mut server = ServerProcess::start_with_env(dir.path(), &hook).await;
    let lowercase = example(Rust, "lowercase").await;
    server.client.push_module("lower", None, lowercase.clone()).await.expect("upload");
    server.client.push_module("stats", None, example(Rust, "running-stats").await).await.expect("upload");
    let t = topics(&["ledger", "whole", "upgraded-in", "upgraded"], 1);
    let input: Vec<String> = (0..BATCHES).flat_map(batch).collect();
    produce(&t[0], &input);
    let whole = submit(&server.client, &ledger(&t[0], &t[1], "exactly_once")).await;
    checkpointed(&server.client, &whole).await;
    let expected = committed(&t[1], 1, Duration::from_secs(20));
    server.client.cancel(&whole).await.expect("cancel");

    let half = BATCHES / 2;
    produce(&t[2], &(0..half).flat_map(batch).collect::<Vec<_>>());
    let id = submit(&server.client, &ledger(&t[2], &t[3], "exactly_once")).await;
    wait_job(&server.client, &id, Duration::from_secs(60), |s| s["checkpoints"]["latest"].as_u64() >= Some(3)).await;
    server.client.push_module("lower", Some("2"), lowercase).await.expect("the same logic as version 2");
    server.client.upgrade(&id, &["lower@2".to_string()], false).await.expect("upgrade");
    let upgraded =
        wait_job(&server.client, &id, Duration::from_secs(60), |s| s["upgrades"][0]["outcome"] != "in_progress").await;
    assert_eq!(upgraded["upgrades"][0]["outcome"], "upgraded", "{upgraded:#}");
    let savepoint = upgraded["upgrades"][0]["savepoint"].as_str().expect("the upgrade's savepoint").to_string();
    let savepoints = server.client.savepoints().await.expect("savepoints");
    let taken_as = savepoints
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["id"] == savepoint.as_str())
        .and_then(|s| s["checkpoint"].as_u64())
        .expect("the savepoint's checkpoint id");

    // The rest of the input, and a kill while a checkpoint of the new run commits.
    produce(&t[2], &(half..BATCHES).flat_map(batch).collect::<Vec<_>>());
    let committing = wait_job(&server.client, &id, Duration::from_secs(60), |s| {
        transactions(s)["committing_checkpoint"].as_u64().is_some_and(|c| c > taken_as)
    })
    .await;
    let killed_in = transactions(&committing)["committing_checkpoint"].as_u64().unwrap_or(0);
    assert!(killed_in > taken_as, "the new run's checkpoint {killed_in} comes after the savepoint's {taken_as}");
    server.kill();
    server = ServerProcess::start_with_env(dir.path(), &hook).await;
    checkpointed(&server.client, &id).await;
    let status = server.client.job(&id).await.expect("status");
    assert!(transactions(&status)["rewritten_epochs"].as_u64().is_some_and(|r| r >= 1), "{status:#}");
    let actual = committed(&t[3], expected.len(), Duration::from_secs(60));
    assert_eq!(actual, expected, "the same results as the uninterrupted run, each once");
    server.kill();
}
