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
//! offset and metadata name the checkpoint that closed the epoch. On restore, the new producer's
//! `init_transactions` fences any zombie with the same id and aborts its open transaction; then the group's offset
//! tells the last checkpoint whose records are in Kafka, and epochs of the restored checkpoint after it are
//! written again, each in its own transaction with its own marker.

use crate::config::{describe, kafka_error, timeout};
use eddy_codec::Batch;
use eddy_engine::TaskError;
use eddy_engine::checkpoint::{CheckpointId, OperatorSnapshot};
use eddy_engine::io::ConnectorContext;
use eddy_engine::operator::{OpContext, Operator};
use eddy_engine::spec::{Delivery, KafkaSinkSpec};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerGroupMetadata};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The state layout of a Kafka sink's snapshot.
const LAYOUT: &str = "kafka-sink/1";

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
    /// The checkpoint whose barrier closed it; none for the epoch still being written.
    checkpoint: Option<CheckpointId>,
    batches: Vec<Batch>,
    records: usize,
}

/// What a checkpoint keeps of an exactly-once sink: the epochs whose transaction had not committed at the barrier.
#[derive(serde::Serialize, serde::Deserialize)]
struct SinkState {
    transactional_id: String,
    /// Per epoch, the checkpoint that closed it and its batches in their wire encoding.
    epochs: Vec<(CheckpointId, Vec<Vec<u8>>)>,
}

/// Exactly-once machinery: the marker group and the epochs not yet committed.
struct Transactions {
    id: String,
    /// The Eddy-owned group whose committed offset names the last checkpoint whose records are in Kafka.
    marker: BaseConsumer,
    group: ConsumerGroupMetadata,
    /// Front: the epoch in the open transaction (its records were sent); the rest wait in memory. The back is the
    /// epoch being written (checkpoint none).
    epochs: VecDeque<Epoch>,
    /// Whether a transaction is open.
    open: bool,
    /// The newest checkpoint whose barrier passed.
    last_checkpoint: Option<CheckpointId>,
}

/// Writes records to a Kafka topic.
pub struct KafkaSink {
    topic: String,
    producer: BaseProducer<SinkContext>,
    transactions: Option<Transactions>,
    /// Records sent since the producer's delivery reports were last served.
    unpolled: usize,
}

/// The transactional id of a subtask.
pub fn transactional_id(prefix: Option<&str>, job: &str, uid: &str, subtask: u32) -> String {
    format!("{}-{job}-{uid}-{subtask}", prefix.unwrap_or("eddy"))
}

impl KafkaSink {
    /// Connects; in exactly-once mode, also takes over the subtask's transactional id, which fences any older
    /// producer with it and aborts its open transaction.
    pub fn open(cx: &ConnectorContext<'_>, spec: &KafkaSinkSpec) -> Result<KafkaSink, TaskError> {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &spec.brokers).set("enable.idempotence", "true");
        let id = transactional_id(spec.transactional_id_prefix.as_deref(), cx.job_id, cx.uid, cx.subtask);
        let exactly_once = spec.delivery == Delivery::ExactlyOnce;
        if exactly_once {
            config.set("transactional.id", &id);
        }
        for (name, value) in &spec.properties.0 {
            config.set(name, value);
        }
        let producer: BaseProducer<SinkContext> = config
            .create_with_context(SinkContext::default())
            .map_err(|e| TaskError::user(format!("Kafka producer settings: {e}")))?;
        check_topic(&producer, &spec.topic, &spec.brokers)?;
        let transactions = if exactly_once {
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
            let mut marker = ClientConfig::new();
            marker
                .set("bootstrap.servers", &spec.brokers)
                .set("group.id", &id)
                .set("enable.auto.commit", "false")
                .set("isolation.level", "read_committed");
            for (name, value) in &spec.properties.0 {
                if name.starts_with("security.") || name.starts_with("ssl.") || name.starts_with("sasl.") {
                    marker.set(name, value);
                }
            }
            let marker: BaseConsumer =
                marker.create().map_err(|e| TaskError::user(format!("Kafka consumer settings: {e}")))?;
            let group = marker.group_metadata().ok_or_else(|| TaskError::internal("Kafka: no group metadata"))?;
            let epochs = VecDeque::from([Epoch::default()]);
            Some(Transactions { id, marker, group, epochs, open: false, last_checkpoint: None })
        } else {
            None
        };
        Ok(KafkaSink { topic: spec.topic.clone(), producer, transactions, unpolled: 0 })
    }

    /// The transactional id, in exactly-once mode.
    pub fn transactional_id(&self) -> Option<&str> {
        self.transactions.as_ref().map(|t| t.id.as_str())
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

    /// Hands the records of `batch` to the producer.
    fn send(&mut self, batch: &Batch) -> Result<(), TaskError> {
        for record in batch.iter() {
            let mut message = BaseRecord::<[u8], [u8]>::to(&self.topic).payload(record.value);
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
                    Err((e, _)) => return Err(kafka_error(&format!("cannot write to `{}`", self.topic), e)),
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

    fn flush(&mut self) -> Result<(), TaskError> {
        self.producer.flush(timeout()).map_err(|e| kafka_error(&format!("cannot write to `{}`", self.topic), e))?;
        self.unpolled = 0;
        self.check_deliveries()
    }

    fn begin(&mut self) -> Result<(), TaskError> {
        let Some(t) = &mut self.transactions else { return Ok(()) };
        if !t.open {
            self.producer.begin_transaction().map_err(|e| kafka_error("cannot begin a transaction", e))?;
            t.open = true;
        }
        Ok(())
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
            kafka_error(&format!("cannot commit the transaction of checkpoint {checkpoint:?} (id `{}`)", t.id), e)
        })?;
        t.open = false;
        self.check_deliveries()
    }

    /// Sends the records of the front epoch (which waited in memory) in a new transaction.
    fn write_front(&mut self) -> Result<(), TaskError> {
        let Some(t) = &mut self.transactions else { return Ok(()) };
        let Some(front) = t.epochs.front_mut() else { return Ok(()) };
        if front.records == 0 {
            return Ok(());
        }
        let batches = std::mem::take(&mut front.batches);
        self.begin()?;
        for batch in &batches {
            self.send(batch)?;
        }
        if let Some(front) = self.transactions.as_mut().and_then(|t| t.epochs.front_mut()) {
            front.batches = batches;
        }
        Ok(())
    }

    /// Commits the front epochs closed by checkpoints up to `upto`, each in its own transaction, and starts
    /// writing the next; with `open`, also the epoch still being written (the input ended).
    fn commit_epochs(&mut self, upto: CheckpointId, open: bool) -> Result<(), TaskError> {
        loop {
            let Some(t) = &mut self.transactions else { return Ok(()) };
            let due = t.epochs.front().is_some_and(|e| match e.checkpoint {
                Some(c) => c <= upto,
                None => open && e.records > 0,
            });
            if !due {
                return Ok(());
            }
            let Some(epoch) = t.epochs.pop_front() else { return Ok(()) };
            let marker = epoch.checkpoint.or(t.last_checkpoint);
            if t.epochs.is_empty() {
                t.epochs.push_back(Epoch::default());
            }
            self.commit(marker)?;
            self.write_front()?;
        }
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

/// Fails clearly when `topic` does not exist (and the brokers would not create it).
fn check_topic(producer: &BaseProducer<SinkContext>, topic: &str, brokers: &str) -> Result<(), TaskError> {
    let metadata = producer
        .client()
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
        let Some(t) = &mut self.transactions else { return self.send(&batch) };
        let writing = t.epochs.len() == 1;
        if writing {
            self.begin()?;
            self.send(&batch)?;
        }
        if let Some(current) = self.transactions.as_mut().and_then(|t| t.epochs.back_mut()) {
            current.records += batch.len();
            current.batches.push(batch);
        }
        Ok(())
    }

    fn finish(&mut self, _: &mut OpContext<'_>) -> Result<(), TaskError> {
        match self.transactions {
            // The input ended: nothing more will come for the open epochs; commit them all now.
            Some(_) => self.commit_epochs(CheckpointId::MAX, true),
            None => self.flush(),
        }
    }

    fn snapshot(&mut self, checkpoint: CheckpointId) -> Result<OperatorSnapshot, TaskError> {
        let Some(t) = &mut self.transactions else {
            self.flush()?;
            return Ok(OperatorSnapshot { layout: LAYOUT.into(), ..OperatorSnapshot::default() });
        };
        let writing = t.epochs.len() == 1;
        if let Some(current) = t.epochs.back_mut() {
            current.checkpoint = Some(checkpoint);
        }
        t.epochs.push_back(Epoch::default());
        t.last_checkpoint = Some(checkpoint);
        let state = SinkState {
            transactional_id: t.id.clone(),
            epochs: t
                .epochs
                .iter()
                .filter_map(|e| Some((e.checkpoint?, e.batches.iter().map(Batch::to_wire).collect())))
                .collect(),
        };
        if writing {
            // Surface write errors at the barrier, and make the commit that follows completion quick.
            self.flush()?;
        }
        let extra = postcard::to_stdvec(&state).map_err(|e| TaskError::internal(e.to_string()))?;
        Ok(OperatorSnapshot { layout: LAYOUT.into(), extra, ..OperatorSnapshot::default() })
    }

    fn restore(&mut self, snapshot: OperatorSnapshot) -> Result<(), TaskError> {
        snapshot.expect_layout("Kafka sink", LAYOUT)?;
        if snapshot.extra.is_empty() || self.transactions.is_none() {
            return Ok(());
        }
        let state: SinkState = postcard::from_bytes(&snapshot.extra)
            .map_err(|e| TaskError::external(format!("a Kafka sink's checkpoint state is unreadable: {e}")))?;
        let committed = self.committed_checkpoint()?;
        let mut epochs = VecDeque::new();
        for (checkpoint, wires) in state.epochs {
            // Records of checkpoints up to the marker reached Kafka before the failure.
            if committed.is_some_and(|c| checkpoint <= c) {
                continue;
            }
            let mut epoch = Epoch { checkpoint: Some(checkpoint), ..Epoch::default() };
            for wire in wires {
                let batch = Batch::from_wire(wire)
                    .map_err(|e| TaskError::external(format!("a Kafka sink's checkpoint state is unreadable: {e}")))?;
                epoch.records += batch.len();
                epoch.batches.push(batch);
            }
            epochs.push_back(epoch);
        }
        let rewrite = epochs.len();
        if let Some(t) = &mut self.transactions {
            t.last_checkpoint = epochs.back().and_then(|e| e.checkpoint).or(t.last_checkpoint);
            epochs.push_back(Epoch::default());
            t.epochs = epochs;
        }
        if rewrite > 0 {
            tracing::info!(
                "Kafka sink `{}`: writing again {rewrite} epoch(s) of the restored checkpoint that did not reach Kafka \
                 (last committed: {committed:?})",
                self.transactional_id().unwrap_or_default()
            );
        }
        // The restored checkpoint completed: its epochs are all due.
        self.write_front()?;
        match self.transactions.as_ref().and_then(|t| t.last_checkpoint) {
            Some(last) => self.commit_epochs(last, false),
            None => Ok(()),
        }
    }

    fn checkpoint_complete(&mut self, checkpoint: CheckpointId) -> Result<(), TaskError> {
        self.commit_epochs(checkpoint, false)
    }
}
