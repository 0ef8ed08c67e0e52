//! The real Apache Kafka broker the tests run against, and helpers to make topics, produce input and read output.
//!
//! `EDDY_KAFKA_BROKERS=host:port` names a running broker; without it, the first test to need one starts a broker
//! through `tests/services/kafka.sh`, which stops it when this test process ends.

use eddy_engine::Batch;
use eddy_engine::io::ConnectorContext;
use eddy_engine::operator::{OpContext, Output};
use eddy_engine::spec::{CheckpointSpec, Millis};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The broker's `host:port`.
pub fn brokers() -> &'static str {
    static BROKERS: OnceLock<String> = OnceLock::new();
    BROKERS.get_or_init(|| {
        // What the connectors log (restores, recoveries, discovery), shown for failing tests.
        let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "eddy_kafka=info,eddy_engine=warn".into());
        let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter(filter).try_init();
        if let Ok(brokers) = std::env::var("EDDY_KAFKA_BROKERS")
            && !brokers.is_empty()
        {
            return brokers;
        }
        let script = script();
        let output = Command::new("bash")
            .arg(&script)
            .env("EDDY_KAFKA_OWNER_PID", std::process::id().to_string())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
        assert!(
            output.status.success(),
            "EDDY_KAFKA_BROKERS is not set and {script} could not start a broker ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        stdout.lines().next().map(str::to_string).unwrap_or_else(|| panic!("{script} printed no address"))
    })
}

/// A broker of one test's own, which it may kill and start again; stopped when dropped.
pub struct OwnBroker {
    pub address: String,
    pidfile: String,
}

/// The script, found from where cargo runs the tests (read when they run, not when they were built, so a test
/// binary built in another clone of the repository finds this clone's script).
fn script() -> String {
    let crate_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
    format!("{crate_dir}/../../tests/services/kafka.sh")
}

impl OwnBroker {
    /// Starts a broker through `tests/services/kafka.sh`.
    pub fn start() -> OwnBroker {
        let output = Command::new("bash")
            .arg(script())
            .env("EDDY_KAFKA_OWNER_PID", std::process::id().to_string())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script()));
        assert!(output.status.success(), "cannot start a broker: {}", String::from_utf8_lossy(&output.stderr));
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        let mut lines = stdout.lines();
        let (address, pidfile) = (lines.next().expect("address"), lines.next().expect("PID file"));
        OwnBroker { address: address.to_string(), pidfile: pidfile.to_string() }
    }

    /// Kills the broker as a crash would and starts it again with its data, after `delay` seconds.
    pub fn restart(&self, delay: u32) {
        let output = Command::new("bash")
            .arg(script())
            .args(["restart", &self.pidfile, &delay.to_string()])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script()));
        assert!(output.status.success(), "cannot restart the broker: {}", String::from_utf8_lossy(&output.stderr));
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(script()).args(["stop", &self.pidfile]).output();
    }
}

/// A topic name no other test uses.
pub fn unique(name: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{name}-{}-{n}", std::process::id())
}

/// Creates `topic` with `partitions` partitions.
pub fn create_topic(topic: &str, partitions: i32) {
    create_topic_at(brokers(), topic, partitions)
}

/// [`create_topic`] on the broker at `address`.
pub fn create_topic_at(address: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", address).create().expect("admin client");
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = futures::executor::block_on(admin.create_topics([&new], &options)).expect("create topics");
    for result in results {
        result.unwrap_or_else(|(topic, code)| panic!("cannot create topic {topic}: {code}"));
    }
    // The new partitions' leaders are elected shortly after: wait until metadata shows them all.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metadata = admin.inner().fetch_metadata(Some(topic), Duration::from_secs(5)).expect("metadata");
        let ready = metadata.topics().first().is_some_and(|t| {
            t.error().is_none()
                && t.partitions().len() == partitions as usize
                && t.partitions().iter().all(|p| p.leader() >= 0)
        });
        if ready {
            return;
        }
        assert!(Instant::now() < deadline, "topic {topic} did not get leaders");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A record as the tests write and read it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rec {
    pub partition: i32,
    pub key: Option<String>,
    pub value: String,
    pub timestamp: i64,
}

/// Remembers failed deliveries.
#[derive(Default)]
struct Deliveries(std::sync::Mutex<Vec<String>>);

impl rdkafka::client::ClientContext for Deliveries {}

impl rdkafka::producer::ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &rdkafka::producer::DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result
            && let Ok(mut failed) = self.0.lock()
        {
            failed.push(e.to_string());
        }
    }
}

/// Writes `records` (each to its partition), waiting until all are acknowledged.
pub fn produce(topic: &str, records: &[Rec]) {
    produce_paced(topic, records, records.len().max(1), Duration::ZERO);
}

/// Writes `records` in chunks of `chunk`, each acknowledged before a pause of `pause`.
pub fn produce_paced(topic: &str, records: &[Rec], chunk: usize, pause: Duration) {
    produce_paced_at(brokers(), topic, records, chunk, pause)
}

/// [`produce_paced`] on the broker at `address`; an outage of the broker shorter than two minutes only delays it.
pub fn produce_paced_at(address: &str, topic: &str, records: &[Rec], chunk: usize, pause: Duration) {
    let producer: BaseProducer<Deliveries> = ClientConfig::new()
        .set("bootstrap.servers", address)
        .set("enable.idempotence", "true")
        .create_with_context(Deliveries::default())
        .expect("producer");
    for (i, r) in records.iter().enumerate() {
        if i > 0 && i % chunk == 0 {
            producer.flush(Duration::from_secs(120)).expect("flush");
            std::thread::sleep(pause);
        }
        let mut message =
            BaseRecord::<str, str>::to(topic).partition(r.partition).payload(&r.value).timestamp(r.timestamp);
        if let Some(key) = &r.key {
            message = message.key(key);
        }
        loop {
            match producer.send(message) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    producer.poll(Duration::from_millis(10));
                    message = back;
                }
                Err((e, _)) => panic!("cannot produce: {e}"),
            }
        }
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
    let failed = producer.context().0.lock().map(|f| f.clone()).unwrap_or_default();
    assert!(failed.is_empty(), "{} record(s) could not be written to {topic}: {:?}", failed.len(), failed.first());
}

/// Every record of `topic` a `read_committed` consumer sees now, with its headers, in partition and offset order.
pub fn read_committed(topic: &str) -> Vec<(Rec, Vec<(String, String)>)> {
    read_committed_at(brokers(), topic)
}

/// [`read_committed`] on the broker at `address`.
pub fn read_committed_at(address: &str, topic: &str) -> Vec<(Rec, Vec<(String, String)>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", address)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer");
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
    let partitions: Vec<i32> = metadata.topics()[0].partitions().iter().map(|p| p.id()).collect();
    let mut assignment = TopicPartitionList::new();
    for p in &partitions {
        assignment.add_partition_offset(topic, *p, Offset::Beginning).expect("assign");
    }
    consumer.assign(&assignment).expect("assign");
    let mut at_end = std::collections::HashSet::new();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while at_end.len() < partitions.len() {
        assert!(Instant::now() < deadline, "reading {topic} did not reach the end of every partition");
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => panic!("cannot read {topic}: {e}"),
            Some(Ok(m)) => {
                at_end.remove(&m.partition());
                let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).to_string());
                let headers = m
                    .headers()
                    .map(|h| h.iter().map(|h| (h.key.to_string(), text(h.value).unwrap_or_default())).collect())
                    .unwrap_or_default();
                let rec = Rec {
                    partition: m.partition(),
                    key: text(m.key()),
                    value: text(m.payload()).unwrap_or_default(),
                    timestamp: m.timestamp().to_millis().unwrap_or(-1),
                };
                out.push((rec, headers));
            }
        }
    }
    out
}

/// Just the values, sorted.
pub fn values(records: &[(Rec, Vec<(String, String)>)]) -> Vec<String> {
    let mut values: Vec<String> = records.iter().map(|(r, _)| r.value.clone()).collect();
    values.sort();
    values
}

/// The checkpoint settings the sink tests pretend the job has.
pub fn checkpoints() -> &'static CheckpointSpec {
    static SPEC: OnceLock<CheckpointSpec> = OnceLock::new();
    SPEC.get_or_init(|| CheckpointSpec::every(Millis(1_000)))
}

/// What a connector gets for subtask `subtask` of `parallelism` of operator `uid` in job `job`.
pub fn context<'a>(job: &'a str, uid: &'a str, subtask: u32, parallelism: u32) -> ConnectorContext<'a> {
    ConnectorContext {
        job_id: job,
        uid,
        subtask,
        parallelism,
        checkpoints: Some(checkpoints()),
        report: Default::default(),
        memory: None,
    }
}

/// Runs `f` with an operator context (sinks ignore it).
pub fn with_ctx<T>(f: impl FnOnce(&mut OpContext<'_>) -> T) -> T {
    let mut out = Output::default();
    let mut ctx = OpContext { out: &mut out, watermark: i64::MIN, now: 0 };
    f(&mut ctx)
}

/// A batch of records with these values (keyed by the value, at time 1000 + i).
pub fn batch_of(values: &[&str]) -> Batch {
    let mut batch = Batch::new();
    for (i, v) in values.iter().enumerate() {
        batch.push_with_headers(1_000 + i as i64, Some(v.as_bytes()), v.as_bytes(), &[("origin", b"eddy")]);
    }
    batch
}

/// Each partition's high watermark (including records of open and aborted transactions), for diagnostics.
pub fn high_watermarks(topic: &str) -> Vec<(i32, i64, i64)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", unique("watermarks"))
        .set("isolation.level", "read_uncommitted")
        .create()
        .expect("consumer");
    let committed: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", unique("watermarks"))
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer");
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
    metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| {
            let high = consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(10)).map_or(-1, |w| w.1);
            let stable = committed.fetch_watermarks(topic, p.id(), Duration::from_secs(10)).map_or(-1, |w| w.1);
            (p.id(), high, stable)
        })
        .collect()
}
