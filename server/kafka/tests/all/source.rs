//! The Kafka source against the real broker: assignment, reading, positions and restore, starting offsets.

use crate::broker::{Rec, brokers, context, create_topic, produce, unique};
use eddy_engine::Batch;
use eddy_engine::checkpoint::SplitPosition;
use eddy_engine::io::{Source, SourcePoll};
use eddy_engine::spec::{KafkaSourceSpec, SourceSpec};
use eddy_kafka::{KafkaSource, owner, split_id};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A source spec from YAML text (the fields under `kafka:`).
pub fn spec(fields: &str) -> KafkaSourceSpec {
    let text = format!(
        "name: t\noperators:\n  - uid: in\n    source:\n      kafka: {{ brokers: \"{}\", {fields} }}\n  - {{ uid: out, input: in, sink: discard }}",
        brokers()
    );
    let spec = eddy_engine::spec::JobSpec::parse(&text).unwrap_or_else(|e| panic!("{e}"));
    match &spec.operators[0].kind {
        eddy_engine::spec::OperatorKind::Source(s) => match &s.source {
            SourceSpec::Kafka(k) => (**k).clone(),
            other => panic!("not kafka: {other:?}"),
        },
        _ => panic!("not a source"),
    }
}

/// What a poll loop read: per split index, the records; stops after `want` records or when nothing came for 10 s.
pub fn read(source: &mut KafkaSource, want: usize) -> Vec<(usize, Batch)> {
    read_for(source, want, Duration::from_secs(10))
}

/// Like [`read`], giving up after `quiet` without records.
pub fn read_for(source: &mut KafkaSource, want: usize, quiet: Duration) -> Vec<(usize, Batch)> {
    let (_wake_tx, wake) = crossbeam_channel::unbounded();
    let mut got = Vec::new();
    let mut total = 0;
    let mut quiet_since = Instant::now();
    while total < want && quiet_since.elapsed() < quiet {
        let mut batch = Batch::new();
        match source.poll(&mut batch, want - total).expect("poll") {
            SourcePoll::Records { split } => {
                assert!(!batch.is_empty());
                total += batch.len();
                got.push((split, batch));
                quiet_since = Instant::now();
            }
            SourcePoll::Pending => source.wait(&wake, Some(Duration::from_millis(200))),
            SourcePoll::Finished => panic!("a Kafka source never finishes"),
        }
    }
    got
}

fn values(read: &[(usize, Batch)]) -> Vec<String> {
    let mut values: Vec<String> = read
        .iter()
        .flat_map(|(_, b)| b.iter().map(|r| String::from_utf8_lossy(r.value).to_string()).collect::<Vec<_>>())
        .collect();
    values.sort();
    values
}

fn input(partitions: i32, per_partition: usize) -> Vec<Rec> {
    let mut records = Vec::new();
    for p in 0..partitions {
        for i in 0..per_partition {
            records.push(Rec {
                partition: p,
                key: Some(format!("k{p}")),
                value: format!("p{p}-{i:03}"),
                timestamp: 1_700_000_000_000 + (i as i64) * 1000,
            });
        }
    }
    records
}

#[test]
fn subtasks_read_their_partitions_with_keys_timestamps_and_metadata() {
    let topic = unique("src-read");
    create_topic(&topic, 3);
    produce(&topic, &input(3, 10));
    let spec = spec(&format!("topics: [{topic}], metadata: true, discovery_interval: 1s"));
    let mut all = Vec::new();
    for subtask in 0..2 {
        let mut source =
            KafkaSource::open(&context("job", "in", subtask, 2), &spec, &Default::default()).expect("open");
        let owned: Vec<i32> = (0..3).filter(|p| owner(&topic, *p, 2) == subtask).collect();
        assert_eq!(source.split_count(), owned.len().max(1));
        let read = read(&mut source, owned.len() * 10);
        for (split, batch) in &read {
            assert!(*split < source.split_count());
            for record in batch.iter() {
                let value = String::from_utf8_lossy(record.value).to_string();
                let partition: i32 = value[1..2].parse().expect("partition in value");
                assert!(owned.contains(&partition), "subtask {subtask} read partition {partition}");
                assert_eq!(record.key, Some(format!("k{partition}").as_bytes()));
                let i: i64 = value[3..].parse().expect("index");
                assert_eq!(record.timestamp, 1_700_000_000_000 + i * 1000, "the Kafka timestamp");
                let headers: BTreeMap<&str, &[u8]> = record.headers.iter().collect();
                assert_eq!(headers.get("kafka.topic"), Some(&topic.as_bytes()));
                assert_eq!(headers.get("kafka.partition"), Some(&partition.to_string().as_bytes()));
                assert_eq!(headers.get("kafka.offset"), Some(&i.to_string().as_bytes()));
                let created = format!("create:{}", 1_700_000_000_000 + i * 1000);
                assert_eq!(headers.get("kafka.timestamp"), Some(&created.as_bytes()));
            }
            // One poll returns records of one split only.
            let partitions: std::collections::HashSet<&[u8]> = batch.iter().map(|r| &r.value[..2]).collect();
            assert_eq!(partitions.len(), 1, "a batch mixes splits");
        }
        let positions = source.position();
        let expected: Vec<SplitPosition> =
            owned.iter().map(|p| SplitPosition { split: split_id(&topic, *p), offset: 10 }).collect();
        assert_eq!(positions, expected, "positions are the next offsets");
        all.extend(values(&read));
    }
    all.sort();
    let mut expected: Vec<String> = input(3, 10).into_iter().map(|r| r.value).collect();
    expected.sort();
    assert_eq!(all, expected, "every record once over the subtasks");
}

#[test]
fn a_restored_source_goes_on_from_its_positions_and_commits_them_to_the_group_on_completion() {
    let topic = unique("src-restore");
    create_topic(&topic, 2);
    produce(&topic, &input(2, 20));
    let spec = spec(&format!("topics: [{topic}], group: g-{topic}"));
    let mut first = KafkaSource::open(&context("job", "in", 0, 1), &spec, &Default::default()).expect("open");
    let before = read(&mut first, 15);
    let positions = first.position();
    assert_eq!(positions.iter().map(|p| p.offset).sum::<u64>(), 15, "{positions:?}");
    // Read on past the checkpoint: a crash loses these, and the restored source reads them again.
    let lost = read(&mut first, 10);
    assert_eq!(values(&lost).len(), 10);
    first.checkpoint_complete(1, &positions);
    drop(first);

    let mut restored = KafkaSource::open(&context("job", "in", 0, 1), &spec, &Default::default()).expect("open");
    restored.restore(&positions).expect("restore");
    let after = read(&mut restored, 25);
    let mut all = values(&before);
    all.extend(values(&after));
    all.sort();
    let mut expected: Vec<String> = input(2, 20).into_iter().map(|r| r.value).collect();
    expected.sort();
    assert_eq!(all, expected, "each record once across the restore");

    // A source restored from a checkpoint that knew only partition 0 reads partition 1, new since, from its
    // earliest record, even with starting_offsets latest.
    let latest = super::source::spec(&format!("topics: [{topic}], starting_offsets: latest"));
    let mut partial = KafkaSource::open(&context("job", "in", 0, 1), &latest, &Default::default()).expect("open");
    partial.restore(&[SplitPosition { split: split_id(&topic, 0), offset: 20 }]).expect("restore");
    let read = values(&read(&mut partial, 20));
    assert_eq!(read.len(), 20);
    assert!(read.iter().all(|v| v.starts_with("p1-")), "{read:?}");

    // The group holds the positions of the completed checkpoint, for monitoring.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", format!("g-{topic}"))
        .create()
        .expect("consumer");
    let mut wanted = TopicPartitionList::new();
    wanted.add_partition(&topic, 0);
    wanted.add_partition(&topic, 1);
    let committed = consumer.committed_offsets(wanted, Duration::from_secs(10)).expect("committed");
    let mut sum = 0;
    for e in committed.elements() {
        if let Offset::Offset(o) = e.offset() {
            sum += o;
        }
    }
    assert_eq!(sum, 15, "committed offsets are the checkpoint's positions");
}

#[test]
fn a_rescaled_source_reads_on_from_every_old_subtasks_positions() {
    let topic = unique("src-rescale");
    create_topic(&topic, 5);
    produce(&topic, &input(5, 8));
    let spec = spec(&format!("topics: [{topic}]"));
    // Two subtasks read part of their partitions, then a checkpoint is taken.
    let mut positions = Vec::new();
    let mut seen = Vec::new();
    for subtask in 0..2 {
        let mut source =
            KafkaSource::open(&context("job", "in", subtask, 2), &spec, &Default::default()).expect("open");
        let owned = (0..5).filter(|p| owner(&topic, *p, 2) == subtask).count();
        seen.extend(values(&read(&mut source, owned * 3)));
        positions.extend(source.position());
    }
    // Three subtasks each get every old position and take the splits they own now.
    for subtask in 0..3 {
        let mut source =
            KafkaSource::open(&context("job", "in", subtask, 3), &spec, &Default::default()).expect("open");
        source.restore(&positions).expect("restore");
        let owned = (0..5).filter(|p| owner(&topic, *p, 3) == subtask).count();
        seen.extend(values(&read(&mut source, owned * 8)));
    }
    seen.sort();
    let mut expected: Vec<String> = input(5, 8).into_iter().map(|r| r.value).collect();
    expected.sort();
    assert_eq!(seen, expected, "each record once across the rescale");
}

#[test]
fn starting_offsets_latest_and_by_timestamp() {
    let topic = unique("src-start");
    create_topic(&topic, 1);
    produce(&topic, &input(1, 10));
    // From a timestamp: the first record at or after it (record 6 has 1_700_000_006_000).
    let by_time = spec(&format!("topics: [{topic}], starting_offsets: {{ timestamp: 1700000005500 }}"));
    let mut source = KafkaSource::open(&context("job", "in", 0, 1), &by_time, &Default::default()).expect("open");
    assert_eq!(values(&read(&mut source, 4)), ["p0-006", "p0-007", "p0-008", "p0-009"]);
    // Latest: only records written after the start; the start is fixed at the first poll, so a checkpoint taken
    // before any record arrives still knows where to resume.
    let latest = spec(&format!("topics: [{topic}], starting_offsets: latest"));
    let mut source = KafkaSource::open(&context("job", "in", 0, 1), &latest, &Default::default()).expect("open");
    assert!(read_for(&mut source, 1, Duration::from_secs(1)).is_empty(), "nothing new yet");
    assert_eq!(source.position(), vec![SplitPosition { split: split_id(&topic, 0), offset: 10 }]);
    produce(&topic, &[Rec { partition: 0, key: None, value: "new".into(), timestamp: 1 }]);
    assert_eq!(values(&read(&mut source, 1)), ["new"]);
    // Committed, with nothing committed: the earliest record.
    let committed = spec(&format!("topics: [{topic}], starting_offsets: committed, group: none-{topic}"));
    let mut source = KafkaSource::open(&context("job", "in", 0, 1), &committed, &Default::default()).expect("open");
    assert_eq!(values(&read(&mut source, 11)).len(), 11);
}

#[test]
fn json_records_give_keys_and_event_time_and_bad_ones_name_their_offset() {
    let topic = unique("src-json");
    create_topic(&topic, 1);
    let record = |v: &str| Rec { partition: 0, key: None, value: v.into(), timestamp: 5 };
    produce(&topic, &[record(r#"{"user":"ann","ts":42}"#), record("not json")]);
    let spec = spec(&format!("topics: [{topic}], format: json, key_field: $.user, timestamp: {{ field: $.ts }}"));
    let mut source = KafkaSource::open(&context("job", "in", 0, 1), &spec, &Default::default()).expect("open");
    let (_tx, wake) = crossbeam_channel::unbounded();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut batch = Batch::new();
    // The malformed record is handed over as it came, with why, for the task to set aside or fail on.
    let (unreadable, why) = loop {
        assert!(Instant::now() < deadline, "the malformed record was not handed over");
        let poll = source.poll(&mut batch, 10).expect("a malformed record does not fail the poll");
        if matches!(poll, SourcePoll::Pending) {
            source.wait(&wake, Some(Duration::from_millis(100)));
        }
        if let Some(unreadable) = source.take_unreadable() {
            break unreadable;
        }
    };
    assert!(why.contains(&format!("topic `{topic}`, partition 0, offset 1")), "{why}");
    assert!(why.contains("not JSON"), "{why}");
    assert_eq!(unreadable.len(), 1);
    assert_eq!(unreadable.get(0).value, b"not json");
    assert_eq!(batch.len(), 1, "the good record is read");
    let first = batch.get(0);
    assert_eq!((first.key, first.timestamp), (Some(&b"ann"[..]), 42));
    assert_eq!(source.position(), vec![SplitPosition { split: split_id(&topic, 0), offset: 2 }], "both are behind");
}

#[test]
fn missing_topics_and_unreachable_brokers_fail_clearly() {
    let error =
        KafkaSource::open(&context("job", "in", 0, 1), &spec("topics: [no-such-topic-here]"), &Default::default())
            .err()
            .expect("a missing topic fails")
            .message;
    assert!(error.contains("`no-such-topic-here` do not exist"), "{error}");
    let mut unreachable = spec("topics: [x]");
    unreachable.brokers = "127.0.0.1:1".into();
    unreachable.properties.0.insert("socket.connection.setup.timeout.ms".into(), "1000".into());
    let error = KafkaSource::open(&context("job", "in", 0, 1), &unreachable, &Default::default())
        .err()
        .expect("unreachable")
        .message;
    assert!(error.contains("cannot reach the Kafka brokers 127.0.0.1:1"), "{error}");
}

#[test]
fn new_partitions_are_discovered_while_reading() {
    let topic = unique("src-discover");
    create_topic(&topic, 1);
    produce(&topic, &input(1, 3));
    let spec = spec(&format!("topics: [{topic}], discovery_interval: 200ms"));
    let mut source = KafkaSource::open(&context("job", "in", 0, 1), &spec, &Default::default()).expect("open");
    assert_eq!(values(&read(&mut source, 3)).len(), 3);
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers()).create().expect("admin");
    let more = rdkafka::admin::NewPartitions::new(&topic, 2);
    let options = rdkafka::admin::AdminOptions::new();
    futures::executor::block_on(admin.create_partitions([&more], &options)).expect("add a partition");
    produce(&topic, &[Rec { partition: 1, key: None, value: "in-new-partition".into(), timestamp: 1 }]);
    assert_eq!(values(&read(&mut source, 1)), ["in-new-partition"]);
    assert!(source.position().iter().any(|p| p.split == split_id(&topic, 1) && p.offset == 1));
}
