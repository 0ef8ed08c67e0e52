//! `eddy bench K1`: W1 through Kafka (`BENCHMARKS.md`). The generator's events are produced to a topic first (not
//! timed); then a job reads them with the Kafka source, runs the Rust-Wasm map and filter of W1 and writes to a
//! Kafka sink, timed until a `read_committed` consumer has seen every output record. `out`/`sum`/`fp` come from what
//! that consumer read, so they must equal W1's for the same N. With `--rate R` the events are produced live at R per
//! second instead, and each output record's latency, from its event's send to its committed visibility, is kept.

use super::{GOLDEN, mix64, peak_rss_mb, percentile, u64_at, wasm_functions};
use anyhow::{Context, bail};
use eddy_engine::graph::JobGraph;
use eddy_engine::io::{BENCH_BASE_TS, generate};
use eddy_engine::runtime::{DeployEnv, deploy};
use eddy_engine::spec::JobSpec;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Distinct keys of W1's events.
const KEYS: u64 = 10_000;

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
    /// Events per second produced live while the job runs (for latencies); none: all produced first.
    pub rate: Option<u64>,
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
    let expected = kept(args.events);
    let producer = producer(&args.bootstrap)?;
    if args.rate.is_none() {
        for j in 0..args.events {
            send(&producer, &input, j);
        }
        producer.flush(Duration::from_secs(300)).context("producing the input")?;
    }

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
    env.connectors = Some(Arc::new(eddy_kafka::KafkaConnectors::default()));
    let checkpoint_dir = tempfile::tempdir()?;
    if let Some(spec) = &graph.checkpoints {
        env.checkpointing = Some(eddy_engine::checkpoint::Checkpointing::new(
            spec.clone(),
            Arc::new(eddy_engine::checkpoint::LocalStore::new(checkpoint_dir.path())),
            "k1/",
            graph.max_parallelism,
        ));
    }
    let consumer = committed_reader(&args.bootstrap, &output)?;
    let started = Instant::now();
    let running = deploy(&graph, env).map_err(|e| anyhow::anyhow!("the benchmark job cannot start: {e}"))?;
    // With a rate, events are produced live and each one's send time is kept, for its latency.
    let sent: Arc<Vec<AtomicU64>> =
        Arc::new((0..args.rate.map_or(0, |_| args.events)).map(|_| AtomicU64::new(0)).collect());
    let live = args.rate.map(|rate| {
        let (sent, input, events) = (Arc::clone(&sent), input.clone(), args.events);
        std::thread::spawn(move || {
            for j in 0..events {
                let due = Duration::from_secs_f64(j as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
                sent[j as usize].store(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
                send(&producer, &input, j);
                producer.poll(Duration::ZERO);
            }
            producer.flush(Duration::from_secs(300))
        })
    });
    let mut latencies = Vec::new();
    let (mut out, mut sum, mut fp, mut last) = (0u64, 0u64, 0u64, started);
    let mut said = Instant::now();
    while out < expected {
        if started.elapsed() > Duration::from_secs(3600) {
            bail!("only {out} of {expected} output records within an hour");
        }
        // A run that waits says what for, rather than sleeping silently.
        if said.elapsed() >= Duration::from_secs(30) {
            said = Instant::now();
            let checkpoints = running.handle.checkpoints();
            eprintln!(
                "waiting for committed output: {out} of {expected} records after {} s; {} checkpoint(s) completed{}",
                started.elapsed().as_secs(),
                checkpoints.completed,
                checkpoints.last_failure.map(|f| format!(", last failure: {f}")).unwrap_or_default()
            );
        }
        if let Some(error) = running.handle.error() {
            bail!("the benchmark job failed: {error}");
        }
        let Some(message) = consumer.poll(Duration::from_millis(100)) else { continue };
        let message = message.context("reading the output topic")?;
        let key = message.key().map_or(0, |k| u64_at(k, 0));
        let amount = message.payload().map_or(0, |v| u64_at(v, 0));
        let ts = message.timestamp().to_millis().unwrap_or(0);
        if args.rate.is_some()
            && let Some(j) = event_of(key, ts)
        {
            let produced = Duration::from_nanos(sent[j as usize].load(Ordering::Relaxed));
            latencies.push(started.elapsed().saturating_sub(produced).as_secs_f64() * 1000.0);
        }
        out += 1;
        sum = sum.wrapping_add(amount);
        fp = fp.wrapping_add(mix64(key.wrapping_mul(GOLDEN).wrapping_add(ts as u64)) ^ amount);
        last = Instant::now();
    }
    running.handle.cancel();
    running.handle.wait(Duration::from_secs(30));
    if let Some(live) = live {
        live.join().map_err(|_| anyhow::anyhow!("the producer thread panicked"))?.context("producing the input")?;
    }
    let secs = last.duration_since(started).as_secs_f64().max(1e-9);
    let (p50, p99) = match latencies.is_empty() {
        true => ("-".to_string(), "-".to_string()),
        false => {
            (format!("{:.0}", percentile(&mut latencies, 50.0)), format!("{:.0}", percentile(&mut latencies, 99.0)))
        }
    };
    Ok(format!(
        "eddy K1 p={} guarantee={} udf=rust events={} secs={secs:.3} eps={:.0} p50_ms={p50} p99_ms={p99} rss_mb={} out={out} sum={sum} fp={fp:016x} enc=binary",
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

fn producer(bootstrap: &str) -> anyhow::Result<BaseProducer> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .context("a Kafka producer")
}

/// Produces generator event `j` as the generator's binary encoding has it: key and amount as little-endian u64s,
/// the event time as the record's timestamp.
fn send(producer: &BaseProducer, topic: &str, j: u64) {
    let event = generate(j, KEYS);
    let (key, amount) = (event.key.to_le_bytes(), event.amount.to_le_bytes());
    let mut record = BaseRecord::to(topic).payload(&amount[..]).key(&key[..]).timestamp(event.ts);
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((_, back)) => {
                record = back;
                producer.poll(Duration::from_millis(1));
            }
        }
    }
}

/// The records of `events` that W1's map and filter keep.
fn kept(events: u64) -> u64 {
    (0..events).filter(|&j| generate(j, KEYS).amount * 107 / 100 >= 5350).count() as u64
}

/// The event an output record came from: its event time is at most 63 ms before the event's index says.
fn event_of(key: u64, ts: i64) -> Option<u64> {
    let newest = u64::try_from(ts - BENCH_BASE_TS).ok()?;
    (newest..newest + 64).find(|&j| {
        let event = generate(j, KEYS);
        event.key == key && event.ts == ts
    })
}

/// A `read_committed` reader of every partition of `topic` from its start. Partitions are assigned, not
/// subscribed: a group would wait for its coordinator, which a broker just started may take minutes to have.
fn committed_reader(bootstrap: &str, topic: &str) -> anyhow::Result<BaseConsumer> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("k1-reader-{topic}"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        // As in Eddy's source: without it, a reader whose queue fills pauses a whole second before fetching more.
        .set("fetch.queue.backoff.ms", "10")
        .create()
        .context("a Kafka consumer")?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .with_context(|| format!("the partitions of `{topic}` (waited 30 s for the broker)"))?;
    let mut partitions = rdkafka::TopicPartitionList::new();
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        partitions.add_partition_offset(topic, partition.id(), rdkafka::Offset::Beginning)?;
    }
    consumer.assign(&partitions).context("reading the output topic")?;
    Ok(consumer)
}
