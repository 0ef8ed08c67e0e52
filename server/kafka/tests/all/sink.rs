//! The Kafka sink against the real broker: what a `read_committed` consumer sees after checkpoints complete, are
//! abandoned, or a crash comes between completion and commit; zombies; at-least-once.

use crate::broker::{batch_of, brokers, context, create_topic, read_committed, unique, values, with_ctx};
use eddy_engine::TaskError;
use eddy_engine::checkpoint::{ChunkReader, ChunkWriter, OperatorSnapshot};
use eddy_engine::memory::MemoryBudget;
use eddy_engine::operator::Operator;
use eddy_engine::spec::{KafkaSinkSpec, SinkSpec};
use eddy_kafka::KafkaSink;
use std::sync::Arc;

/// A sink spec from YAML text (the fields under `kafka:`), in a job with 1 s checkpoints.
pub fn spec(fields: &str) -> KafkaSinkSpec {
    let text = format!(
        "name: t\ncheckpoints: {{ interval: 1s }}\noperators:\n  - {{ uid: in, source: http }}\n  - uid: out\n    input: in\n    sink:\n      kafka: {{ brokers: \"{}\", {fields} }}",
        brokers()
    );
    let spec = eddy_engine::spec::JobSpec::parse(&text).unwrap_or_else(|e| panic!("{e}"));
    match &spec.operators[1].kind {
        eddy_engine::spec::OperatorKind::Sink(SinkSpec::Kafka(k)) => (**k).clone(),
        other => panic!("not a Kafka sink: {other:?}"),
    }
}

fn exactly_once(topic: &str) -> KafkaSinkSpec {
    spec(&format!("topic: {topic}, delivery: exactly_once, transactional_id_prefix: t-{topic}"))
}

fn open(spec: &KafkaSinkSpec) -> KafkaSink {
    KafkaSink::open(&context("job", "out", 0, 1), spec, &Default::default())
        .unwrap_or_else(|e| panic!("open: {}", e.message))
}

/// Snapshot `checkpoint` of `sink`, its entries held inline (the sink restores them the same way as chunks).
fn snapshot(sink: &mut KafkaSink, checkpoint: u64) -> OperatorSnapshot {
    let mut chunks = ChunkWriter::held();
    let mut snapshot = sink.snapshot(checkpoint, &mut chunks).expect("snapshot");
    snapshot.chunks = chunks.end();
    snapshot.entries = chunks.reader().all_entries(&snapshot).expect("entries");
    snapshot.chunks.clear();
    snapshot
}

fn restore(sink: &mut KafkaSink, snapshot: OperatorSnapshot) -> Result<(), TaskError> {
    sink.restore(snapshot, &ChunkReader::default())
}

fn write(sink: &mut KafkaSink, values: &[&str]) {
    with_ctx(|ctx| sink.process(0, batch_of(values), ctx)).expect("process");
}

fn sorted(values: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = values.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

#[test]
fn records_become_visible_once_when_their_checkpoint_completes() {
    let topic = unique("sink-eo");
    create_topic(&topic, 2);
    let spec = exactly_once(&topic);
    let mut sink = open(&spec);
    assert_eq!(sink.transactional_id(), Some(format!("t-{topic}-job-out-0").as_str()));
    write(&mut sink, &["a1", "a2"]);
    write(&mut sink, &["a3"]);
    let _snapshot1 = snapshot(&mut sink, 1);
    // Records after the barrier belong to the next checkpoint.
    write(&mut sink, &["b1"]);
    assert!(read_committed(&topic).is_empty(), "nothing is visible before the checkpoint completes");
    sink.checkpoint_complete(1).expect("complete");
    let seen = read_committed(&topic);
    assert_eq!(values(&seen), sorted(&["a1", "a2", "a3"]));
    let (first, headers) = &seen.iter().find(|(r, _)| r.value == "a1").expect("a1").clone();
    assert_eq!(first.key.as_deref(), Some("a1"), "the record's key");
    assert_eq!(first.timestamp, 1_000, "the record's event time");
    assert_eq!(headers, &vec![("origin".to_string(), "eddy".to_string())], "the record's headers");

    // Checkpoint 2 is abandoned: its epoch stays pending and commits with the next completed checkpoint.
    let _snapshot2 = snapshot(&mut sink, 2);
    sink.checkpoint_aborted(2);
    write(&mut sink, &["c1"]);
    let _snapshot3 = snapshot(&mut sink, 3);
    assert_eq!(values(&read_committed(&topic)), sorted(&["a1", "a2", "a3"]));
    sink.checkpoint_complete(3).expect("complete");
    assert_eq!(values(&read_committed(&topic)), sorted(&["a1", "a2", "a3", "b1", "c1"]));

    // Records of an epoch whose checkpoint never completes are never visible, even after a restore.
    write(&mut sink, &["lost1", "lost2"]);
    let snapshot4 = snapshot(&mut sink, 4);
    write(&mut sink, &["lost3"]);
    drop(sink); // a crash: checkpoint 4 never completed, so the job restores from checkpoint 3
    let _ = snapshot4;
    let mut restored = open(&spec);
    restore(&mut restored, OperatorSnapshot::default()).expect("restore of a checkpoint without pending epochs");
    assert_eq!(values(&read_committed(&topic)), sorted(&["a1", "a2", "a3", "b1", "c1"]));
    write(&mut restored, &["d1"]);
    let _ = snapshot(&mut restored, 5);
    restored.checkpoint_complete(5).expect("complete");
    assert_eq!(values(&read_committed(&topic)), sorted(&["a1", "a2", "a3", "b1", "c1", "d1"]));
}

#[test]
fn a_crash_between_completion_and_commit_writes_the_epoch_again_once() {
    let topic = unique("sink-crash");
    create_topic(&topic, 1);
    let spec = exactly_once(&topic);
    let mut sink = open(&spec);
    write(&mut sink, &["x1", "x2"]);
    let snapshot1 = snapshot(&mut sink, 1);
    write(&mut sink, &["after-barrier"]);
    // Checkpoint 1 completes, but the process dies before the sink commits: the transaction stays open.
    std::mem::forget(sink);
    assert!(read_committed(&topic).is_empty());

    // The restored sink takes over the transactional id (aborting the open transaction), finds no marker for
    // checkpoint 1, and writes its epoch again.
    let mut restored = open(&spec);
    restore(&mut restored, snapshot1.clone()).expect("restore");
    assert_eq!(values(&read_committed(&topic)), sorted(&["x1", "x2"]));

    // A second crash right after that restore, before anything else: the marker now names checkpoint 1, so
    // restoring the same checkpoint again writes nothing twice.
    drop(restored);
    let mut again = open(&spec);
    restore(&mut again, snapshot1).expect("restore");
    assert_eq!(values(&read_committed(&topic)), sorted(&["x1", "x2"]));
    write(&mut again, &["y1"]);
    let _ = snapshot(&mut again, 2);
    again.checkpoint_complete(2).expect("complete");
    assert_eq!(values(&read_committed(&topic)), sorted(&["x1", "x2", "y1"]));
}

#[test]
fn a_committed_epoch_is_not_written_again_on_restore() {
    let topic = unique("sink-committed");
    create_topic(&topic, 1);
    let spec = exactly_once(&topic);
    let mut sink = open(&spec);
    write(&mut sink, &["z1"]);
    let snapshot1 = snapshot(&mut sink, 1);
    sink.checkpoint_complete(1).expect("complete");
    write(&mut sink, &["z2"]);
    drop(sink);
    let mut restored = open(&spec);
    restore(&mut restored, snapshot1).expect("restore");
    assert_eq!(values(&read_committed(&topic)), ["z1"], "the marker says checkpoint 1 is in Kafka");
}

#[test]
fn a_zombie_with_the_same_transactional_id_is_fenced() {
    let topic = unique("sink-zombie");
    create_topic(&topic, 1);
    let spec = exactly_once(&topic);
    let mut zombie = open(&spec);
    write(&mut zombie, &["old1"]);
    let snapshot1 = snapshot(&mut zombie, 1);
    write(&mut zombie, &["old2"]);

    // A new incarnation of the same subtask (the job restarted while the old one still runs) restores the
    // checkpoint: it takes the id over, which fences the zombie and aborts its transaction, then writes the epoch.
    let mut successor = open(&spec);
    restore(&mut successor, snapshot1).expect("restore");
    let error = zombie.checkpoint_complete(1).expect_err("the zombie's commit must fail");
    assert!(error.message.to_lowercase().contains("fenced"), "{}", error.message);
    assert_eq!(values(&read_committed(&topic)), ["old1"], "once, and nothing of the zombie's open epoch");
    write(&mut successor, &["new1"]);
    let _ = snapshot(&mut successor, 2);
    successor.checkpoint_complete(2).expect("complete");
    assert_eq!(values(&read_committed(&topic)), sorted(&["new1", "old1"]));
}

#[test]
fn after_a_rescale_one_new_subtask_takes_over_each_old_transactional_id() {
    let topic = unique("sink-rescale");
    create_topic(&topic, 2);
    let spec = exactly_once(&topic);
    // Three subtasks write, take checkpoint 1, and die before it completes, their transactions open.
    let mut entries = Vec::new();
    for subtask in 0..3u32 {
        let mut sink = KafkaSink::open(&context("job", "out", subtask, 3), &spec, &Default::default()).expect("open");
        write(&mut sink, &[&format!("s{subtask}-a"), &format!("s{subtask}-b")]);
        let snapshot = snapshot(&mut sink, 1);
        assert_eq!(snapshot.entries.len(), 1);
        assert_eq!(u32::from(snapshot.entries[0].group), subtask, "kept in key group <subtask>");
        entries.extend(snapshot.entries);
        write(&mut sink, &[&format!("s{subtask}-after")]);
        std::mem::forget(sink);
    }
    // At parallelism 2 (128 key groups), subtask 0 owns key groups 0..=63: every old subtask's entry, as the
    // engine's restore gives it. It recovers all three ids, ending subtask 2's open transaction too, which would
    // otherwise hold back read_committed readers until the transaction timeout.
    let groups = eddy_engine::keys::key_groups_of(0, 2, 128);
    assert!(entries.iter().all(|e| groups.contains(&e.group)));
    let mut first = KafkaSink::open(&context("job", "out", 0, 2), &spec, &Default::default()).expect("open");
    let merged = OperatorSnapshot { layout: "kafka-sink/1".into(), entries, ..OperatorSnapshot::default() };
    restore(&mut first, merged).expect("restore");
    let mut second = KafkaSink::open(&context("job", "out", 1, 2), &spec, &Default::default()).expect("open");
    restore(&mut second, OperatorSnapshot::default()).expect("restore");
    assert_eq!(values(&read_committed(&topic)), sorted(&["s0-a", "s0-b", "s1-a", "s1-b", "s2-a", "s2-b"]));
    for (i, sink) in [&mut first, &mut second].into_iter().enumerate() {
        write(sink, &[&format!("new{i}")]);
        let _ = snapshot(sink, 2);
        sink.checkpoint_complete(2).expect("complete");
    }
    assert_eq!(
        values(&read_committed(&topic)),
        sorted(&["new0", "new1", "s0-a", "s0-b", "s1-a", "s1-b", "s2-a", "s2-b"])
    );
}

#[test]
fn at_least_once_flushes_at_the_barrier() {
    let topic = unique("sink-alo");
    create_topic(&topic, 1);
    let spec = spec(&format!("topic: {topic}, properties: {{ acks: all, linger.ms: 50, compression.type: lz4 }}"));
    let mut sink = open(&spec);
    assert_eq!(sink.transactional_id(), None);
    write(&mut sink, &["r1", "r2"]);
    let snapshot = snapshot(&mut sink, 1);
    assert!(snapshot.extra.is_empty(), "nothing to keep: the records are in Kafka");
    assert_eq!(values(&read_committed(&topic)), sorted(&["r1", "r2"]), "acknowledged at the barrier");
    write(&mut sink, &["r3"]);
    with_ctx(|ctx| sink.finish(ctx)).expect("finish");
    assert_eq!(values(&read_committed(&topic)), sorted(&["r1", "r2", "r3"]));
}

#[test]
fn a_finished_input_commits_everything() {
    let topic = unique("sink-finish");
    create_topic(&topic, 1);
    let mut sink = open(&exactly_once(&topic));
    write(&mut sink, &["f1"]);
    let _ = snapshot(&mut sink, 1);
    write(&mut sink, &["f2"]);
    with_ctx(|ctx| sink.finish(ctx)).expect("finish");
    assert_eq!(values(&read_committed(&topic)), sorted(&["f1", "f2"]));
}

#[test]
fn a_missing_topic_fails_clearly() {
    let spec = spec("topic: no-such-output-topic, delivery: exactly_once");
    let error = KafkaSink::open(&context("job", "out", 0, 1), &spec, &Default::default()).err().expect("fails").message;
    assert!(error.contains("Kafka topic `no-such-output-topic` does not exist"), "{error}");
}

#[test]
fn a_scale_down_ends_the_open_transactions_of_subtasks_that_no_longer_exist() {
    let topic = unique("sink-scale-down");
    create_topic(&topic, 1);
    // A long transaction timeout: the broker would not end the transactions left open for a minute.
    let spec = spec(&format!(
        "topic: {topic}, delivery: exactly_once, transactional_id_prefix: t-{topic}, properties: {{ transaction.timeout.ms: 60000 }}"
    ));
    // A run at parallelism 3 writes, and dies before any checkpoint completes: no checkpoint names its subtasks.
    for subtask in 0..3u32 {
        let mut sink = KafkaSink::open(&context("job", "out", subtask, 3), &spec, &Default::default()).expect("open");
        write(&mut sink, &[&format!("lost{subtask}")]);
        std::mem::forget(sink);
    }
    // The job starts again at parallelism 1, from no checkpoint. Its subtask's first record takes over id 0, and
    // ends the open transactions of ids 1 and 2, which would otherwise hold back read_committed readers.
    let mut sink = KafkaSink::open(&context("job", "out", 0, 1), &spec, &Default::default()).expect("open");
    write(&mut sink, &["kept"]);
    let _ = snapshot(&mut sink, 1);
    sink.checkpoint_complete(1).expect("complete");
    let started = std::time::Instant::now();
    assert_eq!(values(&read_committed(&topic)), ["kept"]);
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "readers were held back");
}

#[test]
fn a_header_can_name_each_records_topic() {
    let (main, other) = (unique("sink-main"), unique("sink-other"));
    create_topic(&main, 1);
    create_topic(&other, 1);
    let spec =
        spec(&format!("topic: {main}, topic_header: route, delivery: exactly_once, transactional_id_prefix: t-{main}"));
    let mut sink = open(&spec);
    let mut batch = eddy_engine::Batch::new();
    batch.push(1, None, b"to-main");
    batch.push_with_headers(2, None, b"to-other", &[("route", other.as_bytes())]);
    with_ctx(|ctx| sink.process(0, batch, ctx)).expect("process");
    let _ = snapshot(&mut sink, 1);
    sink.checkpoint_complete(1).expect("complete");
    assert_eq!(values(&read_committed(&main)), ["to-main"]);
    assert_eq!(values(&read_committed(&other)), ["to-other"]);
}

/// The records an exactly-once sink keeps until their checkpoint commits are charged to the job's memory: past the
/// budget the sink fails naming it instead of holding memory no budget counts, and a commit gives it back.
#[test]
fn records_waiting_for_their_commit_are_charged_to_the_jobs_memory() {
    let topic = unique("sink-memory");
    create_topic(&topic, 1);
    let spec = exactly_once(&topic);
    let budget = MemoryBudget::new("job j", spec.client_buffer_bytes() as usize + (2 << 20), None);
    let mut cx = context("job", "out", 0, 1);
    cx.memory = Some(Arc::clone(&budget));
    let mut sink = KafkaSink::open(&cx, &spec, &Default::default()).unwrap_or_else(|e| panic!("{}", e.message));
    // 800 KiB a record: `batch_of` keys each record by its value.
    let big = "x".repeat(400 << 10);
    write(&mut sink, &[&big]);
    write(&mut sink, &[&big]);
    let held = budget.used();
    let _ = snapshot(&mut sink, 1);
    sink.checkpoint_complete(1).expect("commit");
    assert!(budget.used() + (1500 << 10) <= held, "the commit gave the records' memory back");
    write(&mut sink, &[&big]);
    write(&mut sink, &[&big]);
    let refused = with_ctx(|ctx| sink.process(0, batch_of(&[&big]), ctx)).expect_err("past the budget");
    assert!(
        refused.message.contains("job j") && refused.message.contains("checkpoints more often"),
        "{}",
        refused.message
    );
    assert_eq!(values(&read_committed(&topic)).len(), 2, "what was committed stays");
}
