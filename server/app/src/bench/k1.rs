//! `eddy bench K1`: W1 through Kafka (`BENCHMARKS.md`). The generator's events are produced to a topic first (not
//! timed); then a job reads them with the Kafka source, runs the Rust-Wasm map and filter of W1 and writes to a
//! Kafka sink, timed until a `read_committed` consumer has seen every output record. `out`/`sum`/`fp` come from what
//! that consumer read, so they must equal W1's for the same N.

use super::{GOLDEN, mix64, peak_rss_mb, u64_at, wasm_functions};
use anyhow::{Context, bail};
use eddy_engine::Batch;
use eddy_engine::graph::JobGraph;
use eddy_engine::io::{GeneratorSource, Source, SourcePoll};
use eddy_engine::runtime::{DeployEnv, deploy};
use eddy_engine::spec::{EventEncoding, GeneratorSpec, JobSpec};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What K1 is asked to run.
pub struct K1Args {
    /// The broker, `host:port`.
    pub bootstrap: String,
    /// `exactly-once` or `at-least-once`.
    pub guarantee: String,
    /// Subtasks per operator and partitions per topic.
    pub parallelism: u32,
    /// Events.
    pub events: u64,
}

/// Runs K1 and returns its line.
pub fn run(args: &K1Args) -> anyhow::Result<String> {
    let exactly_once = match args.guarantee.as_str() {
        "exactly-once" => true,
        "at-least-once" => false,
        other => bail!("unknown --guarantee `{other}`: use at-least-once or exactly-once"),
    };
    let run_id = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis();
    let (input, output) = (format!("k1-in-{run_id}"), format!("k1-out-{run_id}"));
    create_topics(&args.bootstrap, &[&input, &output], args.parallelism)?;
    let expected = produce(&args.bootstrap, &input, args.events)?;

    let delivery = if exactly_once { "exactly_once" } else { "at_least_once" };
    let checkpoints = if exactly_once { "checkpoints: { interval: 1s }\n" } else { "" };
    let spec = format!(
        "name: k1\nparallelism: {p}\n{checkpoints}operators:
  - {{ uid: src, source: {{ kafka: {{ brokers: \"{b}\", topics: [{input}] }} }}, batch_size: 256, watermark: {{ out_of_orderness: 100ms }} }}
  - {{ uid: map, map: bench-w1-map, input: src }}
  - {{ uid: logic, filter: bench-w1-filter, input: map }}
  - {{ uid: sink, input: logic, sink: {{ kafka: {{ brokers: \"{b}\", topic: {output}, delivery: {delivery}, properties: {{ linger.ms: 5, batch.size: 1000000, compression.type: lz4 }} }} }} }}
",
        p = args.parallelism,
        b = args.bootstrap
    );
    let (functions, catalog) = wasm_functions(super::Workload::W1, "rust")?;
    let spec = JobSpec::parse(&spec).map_err(|e| anyhow::anyhow!("{e}"))?;
    let graph = JobGraph::build(&spec, &catalog).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut env = DeployEnv::new(&format!("k1-{run_id}"), "bench", functions);
    env.connectors = Some(Arc::new(eddy_kafka::KafkaConnectors));
    let checkpoint_dir = tempfile::tempdir()?;
    if let Some(spec) = &graph.checkpoints {
        env.checkpointing = Some(eddy_engine::checkpoint::Checkpointing {
            spec: spec.clone(),
            store: Arc::new(eddy_engine::checkpoint::LocalStore::new(checkpoint_dir.path())),
            prefix: "k1/".into(),
            last_id: 0,
            max_parallelism: graph.max_parallelism,
        });
    }
    let consumer = committed_reader(&args.bootstrap, &output)?;
    let started = Instant::now();
    let running = deploy(&graph, env).map_err(|e| anyhow::anyhow!("the benchmark job cannot start: {e}"))?;
    let (mut out, mut sum, mut fp, mut last) = (0u64, 0u64, 0u64, started);
    while out < expected {
        if started.elapsed() > Duration::from_secs(3600) {
            bail!("only {out} of {expected} output records within an hour");
        }
        if let Some(error) = running.handle.error() {
            bail!("the benchmark job failed: {error}");
        }
        let Some(message) = consumer.poll(Duration::from_millis(100)) else { continue };
        let message = message.context("reading the output topic")?;
        let key = message.key().map_or(0, |k| u64_at(k, 0));
        let amount = message.payload().map_or(0, |v| u64_at(v, 0));
        let ts = message.timestamp().to_millis().unwrap_or(0);
        out += 1;
        sum = sum.wrapping_add(amount);
        fp = fp.wrapping_add(mix64(key.wrapping_mul(GOLDEN).wrapping_add(ts as u64)) ^ amount);
        last = Instant::now();
    }
    running.handle.cancel();
    running.handle.wait(Duration::from_secs(30));
    let secs = last.duration_since(started).as_secs_f64().max(1e-9);
    Ok(format!(
        "eddy K1 p={} guarantee={} udf=rust events={} secs={secs:.3} eps={:.0} p50_ms=- p99_ms=- rss_mb={} out={out} sum={sum} fp={fp:016x} enc=binary",
        args.parallelism,
        args.guarantee,
        args.events,
        args.events as f64 / secs,
        peak_rss_mb(),
    ))
}

fn create_topics(bootstrap: &str, topics: &[&str], partitions: u32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().context("a Kafka admin client")?;
    let new: Vec<NewTopic<'_>> =
        topics.iter().map(|t| NewTopic::new(t, partitions as i32, TopicReplication::Fixed(1))).collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let runtime = tokio::runtime::Handle::try_current().context("K1 runs inside the CLI")?;
    for result in runtime.block_on(admin.create_topics(&new, &options)).context("creating topics")? {
        result.map_err(|(topic, code)| anyhow::anyhow!("cannot create topic {topic}: {code}"))?;
    }
    Ok(())
}

/// Produces W1's N generator events (key, event time and amount as the generator makes them) and returns how many
/// records W1's map and filter keep.
fn produce(bootstrap: &str, topic: &str, events: u64) -> anyhow::Result<u64> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .context("a Kafka producer")?;
    let spec = GeneratorSpec { events: Some(events), keys: 10_000, encoding: EventEncoding::Binary, rate: None };
    let mut generator = GeneratorSource::new(spec, 0, 1);
    let mut kept = 0;
    loop {
        let mut batch = Batch::with_capacity(4096, 4096 * 24);
        if let SourcePoll::Finished = generator.poll(&mut batch, 4096).map_err(|e| anyhow::anyhow!("{e}"))? {
            break;
        }
        for record in batch.iter() {
            if u64_at(record.value, 0) * 107 / 100 >= 5350 {
                kept += 1;
            }
            let mut next = BaseRecord::to(topic)
                .payload(record.value)
                .key(record.key.unwrap_or_default())
                .timestamp(record.timestamp);
            loop {
                match producer.send(next) {
                    Ok(()) => break,
                    Err((_, back)) => {
                        next = back;
                        producer.poll(Duration::from_millis(5));
                    }
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(300)).context("producing the input")?;
    Ok(kept)
}

fn committed_reader(bootstrap: &str, topic: &str) -> anyhow::Result<BaseConsumer> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("k1-reader-{topic}"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .context("a Kafka consumer")?;
    consumer.subscribe(&[topic]).context("subscribing to the output topic")?;
    Ok(consumer)
}
