//! The Kafka sink, at-least-once or exactly-once.
//!
//! **At-least-once**: an idempotent producer; each checkpoint's barrier waits until every record before it is
//! acknowledged, so a restore from that checkpoint loses nothing (records after it may be written again).
//!
//! **Exactly-once**: one transactional producer per subtask, with the transactional id
//! `<prefix>-<job>-<operator uid>-<subtask>`, the same in every run of the job. The records between two barriers
//! (an *epoch*) go into one transaction, which commits when the checkpoint that closed the epoch completes. Only one
//! transaction can be open per producer, so records of later epochs wait in memory until the earlier epoch's
//! transaction has committed (they would be invisible to `read_committed` readers until their own commit anyway).
//!
//! The crash between "checkpoint complete" and "transaction committed" is the hard case: librdkafka cannot resume
//! another producer's transaction. So every epoch's records are kept in the checkpoint (the snapshot at the
//! barrier holds each epoch not yet committed), and every transaction also commits, through
//! `send_offsets_to_transaction`, an offset of the Eddy-owned consumer group named like the transactional id: its
//! offset and metadata name the checkpoint that closed the epoch. On restore, a producer with the old subtask's
//! transactional id fences any zombie with it and aborts its open transaction (`init_transactions`); then the
//! group's offset tells the last checkpoint whose records are in Kafka, and epochs of the restored checkpoint after
//! it are written again, each in its own transaction with its own marker.
//!
//! A subtask's snapshot is one keyed-state entry in key group `<subtask>`, so that after a rescale exactly one new
//! subtask takes over each old subtask's transactional id: it recovers it as above (which also ends the open
//! transactions of subtasks that no longer exist), before any subtask writes. A subtask's own producer starts at its
//! first record or barrier, after every restore of the deployment is done; a new id first commits the marker `0`
//! (nothing yet), so that ids ever used can be told apart, and subtask `s` of `p` then also ends the open
//! transactions of the used ids `s + p`, `s + 2p`, ... that a failed run at a higher parallelism may have left.

use crate::config::{KafkaAccess, describe, kafka_error, test_commit_delay, timeout};
use eddy_codec::Batch;
use eddy_engine::TaskError;
use eddy_engine::checkpoint::{CheckpointId, ChunkReader, ChunkWriter, EntryRef, OperatorSnapshot};
use eddy_engine::io::{ConnectorContext, ConnectorReport, PreCommits, ReportSlot, TransactionReport};
use eddy_engine::memory::MemoryReservation;
use eddy_engine::operator::{OpContext, Operator};
use eddy_engine::spec::{DEFAULT_SINK_QUEUE_KBYTES, Delivery, KafkaSinkSpec};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerGroupMetadata};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The state layout of a Kafka sink's snapshot.
const LAYOUT: &str = "kafka-sink/1";

/// The name of the state entry a subtask's snapshot is kept in.
const STATE: &str = "kafka-sink";

/// The prefix of the offset metadata that names a checkpoint.
const MARKER: &str = "eddy-checkpoint=";

/// Remembers the first failed delivery, which fails the sink at its next step.
#[derive(Default)]
pub struct SinkContext {
    failed: Mutex<Option<String>>,
}

impl ClientContext for SinkContext {}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, _)) = result
            && let Ok(mut failed) = self.failed.lock()
            && failed.is_none()
        {
            *failed = Some(describe(error));
        }
    }
}

impl SinkContext {
    fn take_failure(&self) -> Option<String> {
        self.failed.lock().ok().and_then(|mut f| f.take())
    }
}

/// Records between two barriers.
#[derive(Debug, Default)]
struct Epoch {
    batches: Vec<Batch>,
    records: usize,
    /// The bytes its batches hold.
    bytes: usize,
}

/// What a checkpoint keeps of an exactly-once sink subtask: the epochs whose transaction had not committed at the
/// barrier.
#[derive(serde::Serialize, serde::Deserialize)]
struct SinkState {
    transactional_id: String,
    topic: String,
    /// Per epoch, the checkpoint that closed it and its batches in their wire encoding.
    epochs: Vec<(CheckpointId, Vec<Vec<u8>>)>,
}

/// A header whose value, in a record that has it, names the topic the record goes to.
#[derive(Debug, Clone)]
struct TopicHeader {
    name: String,
    /// The topics it may name start with it (the tenant's prefix).
    prefix: String,
}

/// A producer, transactional or not, writing to one topic.
struct Writer {
    producer: BaseProducer<SinkContext>,
    topic: String,
    /// A header that names a record's topic, if the spec has one.
    topic_header: Option<TopicHeader>,
    /// Records sent since delivery reports were last served.
    unpolled: usize,
    transactions: Option<Transactions>,
}

/// What a transactional writer needs besides its producer.
struct Transactions {
    id: String,
    /// The Eddy-owned group whose committed offset names the last checkpoint whose records are in Kafka.
    marker: BaseConsumer,
    group: ConsumerGroupMetadata,
    /// Whether a transaction is open.
    open: bool,
}

impl Writer {
    /// A producer with `config`; with `id`, transactional: it takes the id over, fencing older producers with it
    /// and aborting their open transaction.
    fn open(config: &ClientConfig, marker: &ClientConfig, topic: &str, id: Option<&str>) -> Result<Writer, TaskError> {
        let mut config = config.clone();
        if let Some(id) = id {
            config.set("transactional.id", id);
        }
        let producer: BaseProducer<SinkContext> = config
            .create_with_context(SinkContext::default())
            .map_err(|e| TaskError::user(format!("Kafka producer settings: {e}")))?;
        let transactions = match id {
            None => None,
            Some(id) => {
                let deadline = Instant::now() + timeout();
                loop {
                    match producer.init_transactions(timeout()) {
                        Ok(()) => break,
                        // The first call after a broker starts finds the transaction coordinator still loading.
                        Err(KafkaError::Transaction(e)) if e.is_retriable() && Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_millis(200));
                        }
                        Err(e) => return Err(kafka_error(&format!("cannot take over transactional id `{id}`"), e)),
                    }
                }
                let mut marker = marker.clone();
                marker.set("group.id", id);
                let marker: BaseConsumer =
                    marker.create().map_err(|e| TaskError::user(format!("Kafka consumer settings: {e}")))?;
                let group = marker.group_metadata().ok_or_else(|| TaskError::internal("Kafka: no group metadata"))?;
                Some(Transactions { id: id.to_string(), marker, group, open: false })
            }
        };
        Ok(Writer { producer, topic: topic.to_string(), topic_header: None, unpolled: 0, transactions })
    }

    /// Fails if a delivery failed.
    fn check_deliveries(&self) -> Result<(), TaskError> {
        match self.producer.context().take_failure() {
            Some(error) => {
                Err(TaskError::external(format!("Kafka: a record could not be written to `{}`: {error}", self.topic)))
            }
            None => Ok(()),
        }
    }

    /// Hands the records of `batch` to the producer, in the open transaction if transactional.
    fn send(&mut self, batch: &Batch) -> Result<(), TaskError> {
        if let Some(t) = &mut self.transactions
            && !t.open
        {
            self.producer.begin_transaction().map_err(|e| kafka_error("cannot begin a transaction", e))?;
            t.open = true;
        }
        for record in batch.iter() {
            let named = self.topic_header.as_ref().and_then(|header| {
                let topic = record.headers.get(&header.name).and_then(|t| std::str::from_utf8(t).ok())?;
                (!topic.is_empty()).then_some((header, topic))
            });
            let topic = match named {
                Some((header, topic)) if !topic.starts_with(&header.prefix) => {
                    return Err(TaskError::user(format!(
                        "a record's `{}` header names the topic `{topic}`, which is not one of this tenant's (they \
                         start with `{}`)",
                        header.name, header.prefix
                    )));
                }
                Some((_, topic)) => topic,
                None => &self.topic,
            };
            let mut message = BaseRecord::<[u8], [u8]>::to(topic).payload(record.value);
            if let Some(key) = record.key {
                message = message.key(key);
            }
            if record.timestamp >= 0 {
                message = message.timestamp(record.timestamp);
            }
            if !record.headers.is_empty() {
                let mut headers = OwnedHeaders::new_with_capacity(2);
                for (name, value) in record.headers.iter() {
                    headers = headers.insert(Header { key: name, value: Some(value) });
                }
                message = message.headers(headers);
            }
            loop {
                match self.producer.send(message) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        // The producer's queue is full: serve delivery reports until there is room.
                        self.producer.poll(Duration::from_millis(10));
                        message = back;
                    }
                    Err((e, _)) => return Err(kafka_error(&format!("cannot write to `{topic}`"), e)),
                }
            }
            self.unpolled += 1;
            if self.unpolled >= 1024 {
                self.producer.poll(Duration::ZERO);
                self.unpolled = 0;
            }
        }
        self.check_deliveries()
    }

    /// Waits until every record sent is acknowledged.
    fn flush(&mut self) -> Result<(), TaskError> {
        self.producer.flush(timeout()).map_err(|e| kafka_error(&format!("cannot write to `{}`", self.topic), e))?;
        self.unpolled = 0;
        self.check_deliveries()
    }

    /// Commits the open transaction, with the marker naming `checkpoint` (none: the marker stays as it was).
    fn commit(&mut self, checkpoint: Option<CheckpointId>) -> Result<(), TaskError> {
        let Some(t) = &mut self.transactions else { return Ok(()) };
        if !t.open {
            return Ok(());
        }
        if let Some(checkpoint) = checkpoint {
            let mut offsets = TopicPartitionList::new();
            let fail = |e| kafka_error("cannot record the checkpoint in the transaction", e);
            offsets.add_partition_offset(&self.topic, 0, Offset::Offset(checkpoint as i64)).map_err(fail)?;
            if let Some(mut marker) = offsets.find_partition(&self.topic, 0) {
                marker.set_metadata(format!("{MARKER}{checkpoint}"));
            }
            self.producer.send_offsets_to_transaction(&offsets, &t.group, timeout()).map_err(fail)?;
        }
        self.producer.commit_transaction(timeout()).map_err(|e| {
            let which = checkpoint.map_or("the last records".to_string(), |c| format!("checkpoint {c}"));
            kafka_error(&format!("cannot commit the transaction of {which} (transactional id `{}`)", t.id), e)
        })?;
        t.open = false;
        tracing::debug!("Kafka sink `{}` committed the records of checkpoint {checkpoint:?}", t.id);
        self.check_deliveries()
    }

    /// Commits a transaction of only the marker `0` (no checkpoint), so that the id is known to have been used.
    fn register(&mut self) -> Result<(), TaskError> {
        let Some(t) = &mut self.transactions else { return Ok(()) };
        self.producer.begin_transaction().map_err(|e| kafka_error("cannot begin a transaction", e))?;
        t.open = true;
        self.commit(Some(0))
    }

    /// Reads the marker: the last checkpoint whose records are in Kafka.
    fn committed_checkpoint(&self) -> Result<Option<CheckpointId>, TaskError> {
        let Some(t) = &self.transactions else { return Ok(None) };
        let mut wanted = TopicPartitionList::new();
        wanted.add_partition(&self.topic, 0);
        let committed = t
            .marker
            .committed_offsets(wanted, timeout())
            .map_err(|e| kafka_error(&format!("cannot read the checkpoint marker of `{}`", t.id), e))?;
        let found = committed.find_partition(&self.topic, 0).and_then(|e| match e.offset() {
            Offset::Offset(o) if o >= 0 => {
                Some(e.metadata().strip_prefix(MARKER).and_then(|c| c.parse().ok()).unwrap_or(o as CheckpointId))
            }
            _ => None,
        });
        Ok(found)
    }
}

/// Writes records to a Kafka topic.
pub struct KafkaSink {
    topic: String,
    subtask: u32,
    parallelism: u32,
    /// Transactional ids are this, `-`, and the subtask index.
    id_base: String,
    topic_header: Option<TopicHeader>,
    /// Producer settings (without a transactional id).
    config: ClientConfig,
    /// Settings of the consumer that reads and writes checkpoint markers (without a group).
    marker: ClientConfig,
    /// This subtask's transactional id, in exactly-once mode.
    id: Option<String>,
    /// The producer; in exactly-once mode made at the first record or barrier.
    writer: Option<Writer>,
    /// Exactly-once: the epochs closed at checkpoints' barriers, waiting for their commit. The oldest is in the
    /// open transaction (its records were sent); the rest wait in memory.
    closed: PreCommits<Epoch>,
    /// The epoch being written; in the open transaction while no closed one waits.
    open: Epoch,
    /// The newest checkpoint whose barrier passed.
    last_checkpoint: Option<CheckpointId>,
    report: ReportSlot,
    /// Exactly-once: the transactions so far, as reported.
    transactions: TransactionReport,
    /// The job's memory charged for what the producer may buffer.
    _buffers: MemoryReservation,
    /// The job's memory charged for the records of the epochs not yet committed (exactly-once).
    uncommitted: MemoryReservation,
}

/// The transactional id of a subtask.
pub fn transactional_id(prefix: Option<&str>, job: &str, uid: &str, subtask: u32) -> String {
    format!("{}-{subtask}", id_base(prefix, job, uid))
}

fn id_base(prefix: Option<&str>, job: &str, uid: &str) -> String {
    format!("{}-{job}-{uid}", prefix.unwrap_or("eddy"))
}

impl KafkaSink {
    /// Checks the settings and that the topic exists; in at-least-once mode, also connects.
    /// The producer's buffers are charged to the job's memory for as long as the sink lives.
    pub fn open(cx: &ConnectorContext<'_>, spec: &KafkaSinkSpec, access: &KafkaAccess) -> Result<KafkaSink, TaskError> {
        let buffers = MemoryReservation::take(cx.memory.as_ref(), spec.client_buffer_bytes() as usize)
            .map_err(|e| TaskError::user(format!("the Kafka producer's buffers do not fit: {e}")))?;
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &spec.brokers)
            .set("enable.idempotence", "true")
            // What the producer may queue, which its reservation above counts (librdkafka's own default is 1 GiB).
            .set("queue.buffering.max.kbytes", DEFAULT_SINK_QUEUE_KBYTES.to_string());
        for (name, value) in &spec.properties.0 {
            config.set(name, value);
        }
        access.apply(&mut config);
        let mut marker = ClientConfig::new();
        marker
            .set("bootstrap.servers", &spec.brokers)
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed");
        access.apply(&mut marker);
        check_topic(&marker, &spec.topic, &spec.brokers)?;
        let topic_header = spec
            .topic_header
            .as_ref()
            .map(|name| TopicHeader { name: name.clone(), prefix: access.topic_prefix.clone() });
        // Transactional ids (and the marker groups named after them) start with the tenant's group prefix.
        let id_prefix = spec.transactional_id_prefix.clone().unwrap_or_else(|| format!("{}eddy", access.group_prefix));
        let exactly_once = spec.delivery == Delivery::ExactlyOnce;
        let id = exactly_once.then(|| transactional_id(Some(&id_prefix), cx.job_id, cx.uid, cx.subtask));
        let writer = match exactly_once {
            true => None,
            false => {
                let mut writer = Writer::open(&config, &marker, &spec.topic, None)?;
                writer.topic_header.clone_from(&topic_header);
                Some(writer)
            }
        };
        let transactions = TransactionReport { transactional_id: id.clone().unwrap_or_default(), ..Default::default() };
        Ok(KafkaSink {
            topic: spec.topic.clone(),
            subtask: cx.subtask,
            parallelism: cx.parallelism.max(1),
            id_base: id_base(Some(&id_prefix), cx.job_id, cx.uid),
            topic_header,
            config,
            marker,
            id,
            writer,
            closed: PreCommits::default(),
            open: Epoch::default(),
            last_checkpoint: None,
            report: cx.report.clone(),
            transactions,
            _buffers: buffers,
            uncommitted: MemoryReservation::take(cx.memory.as_ref(), 0)
                .map_err(|e| TaskError::user(format!("the Kafka sink does not fit: {e}")))?,
        })
    }

    /// Charges the job's memory for the records that wait for their epoch's commit: a job whose checkpoints come
    /// too rarely for what it writes fails naming its budget instead of holding memory no budget counts.
    fn charge_uncommitted(&mut self) -> Result<(), TaskError> {
        let bytes = self.open.bytes + self.closed.iter().map(|(_, e)| e.bytes).sum::<usize>();
        self.uncommitted.resize(bytes).map_err(|e| {
            TaskError::user(format!(
                "the exactly-once Kafka sink keeps its records in memory until a checkpoint commits them, and they \
                 no longer fit: {e} (take checkpoints more often)"
            ))
        })
    }

    /// Reports the transactions (exactly-once only).
    fn publish_report(&mut self) {
        if self.id.is_none() {
            return;
        }
        self.transactions.uncommitted_records =
            (self.open.records + self.closed.iter().map(|(_, e)| e.records).sum::<usize>()) as u64;
        self.report
            .publish(ConnectorReport { transactions: Some(self.transactions.clone()), ..ConnectorReport::default() });
    }

    /// The transactional id, in exactly-once mode.
    pub fn transactional_id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The producer, made on first use. In exactly-once mode, taking over the subtask's id fences older producers
    /// with it; then the ids of subtasks that no longer exist are ended too.
    fn writer(&mut self) -> Result<&mut Writer, TaskError> {
        let writer = match self.writer.take() {
            Some(writer) => writer,
            None => {
                let mut writer = Writer::open(&self.config, &self.marker, &self.topic, self.id.as_deref())?;
                writer.topic_header.clone_from(&self.topic_header);
                if self.id.is_some() {
                    if writer.committed_checkpoint()?.is_none() {
                        writer.register()?;
                    }
                    self.end_lingering()?;
                }
                writer
            }
        };
        Ok(self.writer.insert(writer))
    }

    /// Ends the transactions of subtasks beyond the job's parallelism, left open by an earlier run at a higher
    /// parallelism that failed before its checkpoint completed (no checkpoint names them, and their open
    /// transactions would hold back `read_committed` readers until the broker's transaction timeout). This subtask
    /// takes the ids `subtask + k * parallelism` (k = 1, 2, ...) that were ever used, as their marker shows, until
    /// one was not.
    fn end_lingering(&self) -> Result<(), TaskError> {
        let mut subtask = self.subtask + self.parallelism;
        while subtask < 32_768 {
            let id = format!("{}-{subtask}", self.id_base);
            let mut probe = self.marker.clone();
            probe.set("group.id", &id);
            let probe: BaseConsumer =
                probe.create().map_err(|e| TaskError::user(format!("Kafka consumer settings: {e}")))?;
            let mut wanted = TopicPartitionList::new();
            wanted.add_partition(&self.topic, 0);
            let committed = probe
                .committed_offsets(wanted, timeout())
                .map_err(|e| kafka_error(&format!("cannot read the checkpoint marker of `{id}`"), e))?;
            let used =
                committed.find_partition(&self.topic, 0).is_some_and(|e| matches!(e.offset(), Offset::Offset(_)));
            if !used {
                return Ok(());
            }
            tracing::info!("Kafka sink `{id}`: the subtask no longer exists; ending its open transaction");
            drop(Writer::open(&self.config, &self.marker, &self.topic, Some(&id))?);
            subtask += self.parallelism;
        }
        Ok(())
    }

    /// Sends the records of the front epoch, which waited in memory, in a new transaction.
    fn write_front(&mut self) -> Result<(), TaskError> {
        let front = self.closed.front_mut().unwrap_or(&mut self.open);
        if front.records == 0 {
            return Ok(());
        }
        let batches = std::mem::take(&mut front.batches);
        let writer = self.writer()?;
        for batch in &batches {
            writer.send(batch)?;
        }
        self.closed.front_mut().unwrap_or(&mut self.open).batches = batches;
        Ok(())
    }

    /// Commits the front epochs closed by checkpoints up to `upto`, each in its own transaction, and starts
    /// writing the next; with `open`, also the epoch still being written (the input ended).
    fn commit_epochs(&mut self, upto: CheckpointId, open: bool) -> Result<(), TaskError> {
        loop {
            let (checkpoint, epoch) = match self.closed.take_due(upto) {
                Some((checkpoint, epoch)) => (Some(checkpoint), epoch),
                None if open && self.closed.is_empty() && self.open.records > 0 => {
                    (None, std::mem::take(&mut self.open))
                }
                None => return Ok(()),
            };
            self.charge_uncommitted()?;
            if epoch.records > 0 {
                let marker = checkpoint.or(self.last_checkpoint);
                let started = std::time::Instant::now();
                // Shown while the broker commits (and while the test hook holds the commit back).
                self.transactions.committing_checkpoint = marker;
                self.publish_report();
                if let Some(delay) = test_commit_delay() {
                    std::thread::sleep(delay);
                }
                self.writer()?.commit(marker)?;
                let t = &mut self.transactions;
                t.committing_checkpoint = None;
                t.last_commit_ms = Some(started.elapsed().as_millis() as u64);
                t.last_commit_at_ms = Some(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as i64),
                );
                t.last_committed_checkpoint = marker;
                t.commits += 1;
            }
            self.write_front()?;
        }
    }

    /// Takes over the transactional id of an old subtask's snapshot: fences its producers, aborts their open
    /// transaction, and writes again, each in its own transaction, the epochs whose records did not reach Kafka.
    fn recover(&mut self, state: SinkState) -> Result<(), TaskError> {
        let mut writer = Writer::open(&self.config, &self.marker, &state.topic, Some(&state.transactional_id))?;
        writer.topic_header.clone_from(&self.topic_header);
        let committed = writer.committed_checkpoint()?;
        let due: Vec<_> = state.epochs.into_iter().filter(|(c, _)| committed.is_none_or(|m| *c > m)).collect();
        if !due.is_empty() {
            tracing::info!(
                "Kafka sink `{}`: writing again {} epoch(s) that did not reach Kafka (last committed checkpoint: \
                 {committed:?})",
                state.transactional_id,
                due.len()
            );
        }
        for (checkpoint, wires) in due {
            let mut records = 0;
            for wire in wires {
                let batch = Batch::from_wire(wire)
                    .map_err(|e| TaskError::external(format!("a Kafka sink's checkpoint state is unreadable: {e}")))?;
                records += batch.len();
                writer.send(&batch)?;
            }
            if records > 0 {
                writer.commit(Some(checkpoint))?;
                self.transactions.rewritten_epochs += 1;
            }
        }
        Ok(())
    }
}

/// Fails clearly when `topic` does not exist (and the brokers would not create it).
fn check_topic(config: &ClientConfig, topic: &str, brokers: &str) -> Result<(), TaskError> {
    let mut config = config.clone();
    config.set("group.id", "eddy-metadata").set("allow.auto.create.topics", "false");
    let client: BaseConsumer = config.create().map_err(|e| TaskError::user(format!("Kafka settings: {e}")))?;
    let metadata = client
        .fetch_metadata(Some(topic), timeout())
        .map_err(|e| TaskError::external(format!("cannot reach the Kafka brokers {brokers}: {}", describe(&e))))?;
    match metadata.topics().first() {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(()),
        _ => Err(TaskError::user(format!(
            "Kafka topic `{topic}` does not exist on {brokers} (create it, or enable auto-creation on the brokers)"
        ))),
    }
}

impl Operator for KafkaSink {
    fn process(&mut self, _: usize, batch: Batch, _: &mut OpContext<'_>) -> Result<(), TaskError> {
        if self.id.is_none() {
            return self.writer()?.send(&batch);
        }
        // Records go out at once while their epoch is the front one; later epochs wait for its commit.
        if self.closed.is_empty() {
            self.writer()?.send(&batch)?;
        }
        self.open.records += batch.len();
        self.open.bytes += batch.data_len();
        self.open.batches.push(batch);
        self.charge_uncommitted()
    }

    fn finish(&mut self, _: &mut OpContext<'_>) -> Result<(), TaskError> {
        match self.id {
            // The input ended: nothing more will come for the open epochs; commit them all now.
            Some(_) => {
                self.commit_epochs(CheckpointId::MAX, true)?;
                self.publish_report();
                Ok(())
            }
            None => self.writer()?.flush(),
        }
    }

    fn snapshot(&mut self, checkpoint: CheckpointId, chunks: &mut ChunkWriter) -> Result<OperatorSnapshot, TaskError> {
        let Some(id) = self.id.clone() else {
            self.writer()?.flush()?;
            return Ok(OperatorSnapshot { layout: LAYOUT.into(), ..OperatorSnapshot::default() });
        };
        // The producer starts by the first barrier at the latest, taking over the id from any zombie.
        let writing = self.closed.is_empty();
        self.writer()?;
        self.closed.pre_commit(checkpoint, std::mem::take(&mut self.open));
        self.last_checkpoint = Some(checkpoint);
        let state = SinkState {
            transactional_id: id,
            topic: self.topic.clone(),
            epochs: self.closed.iter().map(|(c, e)| (*c, e.batches.iter().map(Batch::to_wire).collect())).collect(),
        };
        if writing {
            // Surface write errors at the barrier, and make the commit that follows completion quick.
            self.writer()?.flush()?;
        }
        self.publish_report();
        let value = postcard::to_stdvec(&state).map_err(|e| TaskError::internal(e.to_string()))?;
        // Key group `subtask`: after a rescale, one new subtask gets it (see the module's documentation).
        chunks.entry(EntryRef {
            state: STATE,
            group: self.subtask as eddy_engine::keys::KeyGroup,
            key: &self.subtask.to_be_bytes(),
            namespace: &[],
            value: &value,
        });
        Ok(OperatorSnapshot { layout: LAYOUT.into(), ..OperatorSnapshot::default() })
    }

    fn restore(&mut self, snapshot: OperatorSnapshot, chunks: &ChunkReader) -> Result<(), TaskError> {
        snapshot.expect_layout("Kafka sink", LAYOUT)?;
        if self.id.is_none() {
            return Ok(());
        }
        chunks.entries(&snapshot, &mut |entries| {
            for entry in entries.into_iter().filter(|e| e.state == STATE) {
                let state: SinkState = postcard::from_bytes(&entry.value)
                    .map_err(|e| TaskError::external(format!("a Kafka sink's checkpoint state is unreadable: {e}")))?;
                self.last_checkpoint = self.last_checkpoint.max(state.epochs.iter().map(|(c, _)| *c).max());
                self.recover(state)?;
            }
            Ok(())
        })?;
        self.publish_report();
        Ok(())
    }

    fn checkpoint_complete(&mut self, checkpoint: CheckpointId) -> Result<(), TaskError> {
        self.commit_epochs(checkpoint, false)?;
        self.publish_report();
        Ok(())
    }
}
