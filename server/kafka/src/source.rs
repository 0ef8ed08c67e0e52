//! The Kafka source: each subtask reads the partitions a stable assignment gives it, each partition a split
//! `kafka:<topic>:<partition>` whose position (the next offset) a checkpoint records.
//!
//! Partitions are assigned, not subscribed: no consumer-group rebalancing decides who reads what, so a restore
//! puts every partition back where the checkpoint says, and a rescale moves partitions by the same rule. The
//! group is only told the offsets of completed checkpoints, for monitoring (consumer lag).

use crate::config::{KafkaAccess, describe, kafka_error, timeout};
use eddy_codec::Batch;
use eddy_engine::TaskError;
use eddy_engine::checkpoint::{CheckpointId, SplitPosition};
use eddy_engine::io::{ConnectorContext, ConnectorReport, PartitionReport, ReportSlot, Source, SourcePoll, Wake};
use eddy_engine::memory::MemoryReservation;
use eddy_engine::spec::{
    DEFAULT_FETCH_BYTES, DEFAULT_SOURCE_QUEUE_KBYTES, Isolation, KafkaFormat, KafkaSourceSpec, KafkaTimestamp,
    StartingOffsets,
};
use parking_lot::Mutex;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The subtask of `parallelism` that reads `partition` of `topic`: partitions of one topic go round-robin over
/// the subtasks, starting at a subtask chosen by the topic's name, so that several topics spread evenly too. It
/// depends on nothing else, so every subtask computes the same split of the work, before and after a rescale.
pub fn owner(topic: &str, partition: i32, parallelism: u32) -> u32 {
    let parallelism = parallelism.max(1);
    // FNV-1a: stable across runs and platforms, unlike the standard library's hasher.
    let hash = topic.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    ((hash % parallelism) + (partition.max(0) as u32 % parallelism)) % parallelism
}

/// The split id of a partition.
pub fn split_id(topic: &str, partition: i32) -> String {
    format!("kafka:{topic}:{partition}")
}

/// The topic and partition of a split id.
pub fn parse_split(split: &str) -> Option<(&str, i32)> {
    let rest = split.strip_prefix("kafka:")?;
    let (topic, partition) = rest.rsplit_once(':')?;
    Some((topic, partition.parse().ok()?))
}

/// One partition this subtask reads.
#[derive(Debug)]
struct Split {
    topic: String,
    partition: i32,
    /// The next offset to read; none until the start was resolved.
    next: Option<i64>,
}

/// How often a source subtask reports its partitions (librdkafka's statistics come as often).
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// Takes in librdkafka's statistics, served by the consumer's polls: where each partition ends.
#[derive(Default)]
struct SourceContext {
    /// By topic and partition: the high watermark and the last stable offset (the end a `read_committed`
    /// reader sees).
    ends: Mutex<HashMap<(String, i32), (i64, i64)>>,
}

impl ClientContext for SourceContext {
    fn stats(&self, statistics: Statistics) {
        let mut ends = self.ends.lock();
        for (name, topic) in statistics.topics {
            // librdkafka lists an internal partition -1 for each topic.
            for (partition, p) in topic.partitions.into_iter().filter(|(partition, _)| *partition >= 0) {
                ends.insert((name.clone(), partition), (p.hi_offset, p.ls_offset));
            }
        }
    }
}

impl ConsumerContext for SourceContext {}

/// Reads the partitions of Kafka topics that this subtask owns.
pub struct KafkaSource {
    spec: KafkaSourceSpec,
    consumer: BaseConsumer<SourceContext>,
    subtask: u32,
    parallelism: u32,
    pattern: Option<regex::Regex>,
    /// Topics a pattern may match start with it (the tenant's prefix).
    topic_prefix: Option<String>,
    splits: Vec<Split>,
    by_partition: HashMap<(String, i32), usize>,
    /// Splits found when the source was built: the number the task's watermarks track.
    initial_splits: usize,
    /// Positions a checkpoint recorded, by split id.
    restored: HashMap<String, i64>,
    /// Whether the splits were assigned to the consumer.
    started: bool,
    /// A record of another split than the batch being filled, taken at the next poll.
    stashed: Option<OwnedMessage>,
    next_discovery: Option<Instant>,
    /// Offsets committed to the group with the newest completed checkpoint, by split id.
    committed: HashMap<String, u64>,
    /// Records of the last poll that could not be read, with why the first was refused.
    unreadable: Option<(Batch, String)>,
    report: ReportSlot,
    /// The job's memory charged for what the client may buffer.
    _buffers: MemoryReservation,
    next_report: Instant,
}

impl KafkaSource {
    /// Connects and finds this subtask's partitions. Fails when the brokers cannot be reached or a named topic
    /// does not exist.
    /// The client's buffers are charged to the job's memory for as long as the source lives.
    pub fn open(
        cx: &ConnectorContext<'_>,
        spec: &KafkaSourceSpec,
        access: &KafkaAccess,
    ) -> Result<KafkaSource, TaskError> {
        let buffers = MemoryReservation::take(cx.memory.as_ref(), spec.client_buffer_bytes() as usize)
            .map_err(|e| TaskError::user(format!("the Kafka consumer's buffers do not fit: {e}")))?;
        let group = spec.group.clone().unwrap_or_else(|| access.default_name(cx.job_id, cx.uid));
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &spec.brokers)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", "earliest")
            .set(
                "isolation.level",
                match spec.isolation {
                    Isolation::ReadCommitted => "read_committed",
                    Isolation::ReadUncommitted => "read_uncommitted",
                },
            );
        // librdkafka stops fetching a partition once this many records wait in its queue, and then waits
        // `fetch.queue.backoff.ms` (1 s by default) before fetching again: one fetch of small compressed records
        // can hold 100,000 of them, so with the defaults a source reads in one-second steps. A short backoff keeps
        // the queue topped up instead.
        config.set("fetch.queue.backoff.ms", "10");
        // Partition ends and lag for the job's status come from librdkafka's statistics.
        config.set("statistics.interval.ms", REPORT_EVERY.as_millis().to_string());
        // What the client may buffer, which its reservation above counts; a spec may set either lower or higher.
        config
            .set("queued.max.messages.kbytes", DEFAULT_SOURCE_QUEUE_KBYTES.to_string())
            .set("fetch.max.bytes", DEFAULT_FETCH_BYTES.to_string());
        for (name, value) in &spec.properties.0 {
            config.set(name, value);
        }
        access.apply(&mut config);
        let consumer: BaseConsumer<SourceContext> = config
            .create_with_context(SourceContext::default())
            .map_err(|e| TaskError::user(format!("Kafka consumer settings: {e}")))?;
        let pattern = match &spec.topic_pattern {
            Some(p) => Some(
                regex::Regex::new(&format!("^(?:{p})$"))
                    .map_err(|e| TaskError::user(format!("topic_pattern `{p}` is not a regular expression: {e}")))?,
            ),
            None => None,
        };
        let mut source = KafkaSource {
            spec: spec.clone(),
            consumer,
            subtask: cx.subtask,
            parallelism: cx.parallelism,
            pattern,
            topic_prefix: Some(access.topic_prefix.clone()).filter(|p| !p.is_empty()),
            splits: Vec::new(),
            by_partition: HashMap::new(),
            initial_splits: 0,
            restored: HashMap::new(),
            started: false,
            stashed: None,
            next_discovery: None,
            committed: HashMap::new(),
            unreadable: None,
            report: cx.report.clone(),
            _buffers: buffers,
            next_report: Instant::now(),
        };
        let found = source.discover(true)?;
        source.add_splits(found);
        source.initial_splits = source.splits.len();
        source.schedule_discovery();
        Ok(source)
    }

    /// Partitions of the topics read that this subtask owns and does not read yet, in (topic, partition) order.
    /// `strict`: a named topic that does not exist is an error (else it is looked for again later).
    fn discover(&self, strict: bool) -> Result<Vec<(String, i32)>, TaskError> {
        let metadata = self.consumer.fetch_metadata(None, timeout()).map_err(|e| {
            TaskError::external(format!("cannot reach the Kafka brokers {}: {}", self.spec.brokers, describe(&e)))
        })?;
        let mut found = Vec::new();
        let mut missing = Vec::new();
        for name in &self.spec.topics {
            match metadata.topics().iter().find(|t| t.name() == name) {
                Some(topic) if topic.error().is_none() && !topic.partitions().is_empty() => {
                    found.extend(topic.partitions().iter().map(|p| (name.clone(), p.id())));
                }
                _ => missing.push(name.as_str()),
            }
        }
        if strict && !missing.is_empty() {
            return Err(TaskError::user(format!(
                "Kafka topic(s) {} do not exist on {} (create them, or enable auto-creation on the brokers)",
                missing.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", "),
                self.spec.brokers
            )));
        }
        if let Some(pattern) = &self.pattern {
            for topic in metadata.topics() {
                if topic.error().is_none()
                    && !topic.name().starts_with("__")
                    && self.topic_prefix.as_ref().is_none_or(|prefix| topic.name().starts_with(prefix.as_str()))
                    && pattern.is_match(topic.name())
                {
                    found.extend(topic.partitions().iter().map(|p| (topic.name().to_string(), p.id())));
                }
            }
        }
        found.retain(|(topic, partition)| {
            owner(topic, *partition, self.parallelism) == self.subtask
                && !self.by_partition.contains_key(&(topic.clone(), *partition))
        });
        found.sort();
        found.dedup();
        Ok(found)
    }

    fn add_splits(&mut self, found: Vec<(String, i32)>) {
        for (topic, partition) in found {
            self.by_partition.insert((topic.clone(), partition), self.splits.len());
            self.splits.push(Split { topic, partition, next: None });
        }
    }

    fn schedule_discovery(&mut self) {
        self.next_discovery =
            self.spec.discovery_interval.map(|every| Instant::now() + Duration::from_millis(every.0.max(100) as u64));
    }

    /// Resolves where splits without a position start, and assigns them to the consumer. `initial`: the splits
    /// found at the start, which follow `starting_offsets` unless the source was restored from a checkpoint that
    /// had read some splits; splits found later, and splits new since the checkpoint, start at their earliest
    /// record (nothing written to them since they appeared is skipped).
    fn start_splits(&mut self, first: usize, initial: bool) -> Result<(), TaskError> {
        let initial = initial && self.restored.is_empty();
        let fail = |e: rdkafka::error::KafkaError| kafka_error("cannot find where to start reading", e);
        let mut by_time = TopicPartitionList::new();
        let mut committed = TopicPartitionList::new();
        for split in &mut self.splits[first..] {
            if let Some(offset) = self.restored.get(&split_id(&split.topic, split.partition)) {
                split.next = Some(*offset);
                continue;
            }
            let (low, high) = self.consumer.fetch_watermarks(&split.topic, split.partition, timeout()).map_err(fail)?;
            split.next = Some(match (initial, self.spec.starting_offsets) {
                (false, _) | (true, StartingOffsets::Earliest) => low,
                (true, StartingOffsets::Latest) => high,
                (true, StartingOffsets::Committed) => {
                    committed.add_partition(&split.topic, split.partition);
                    low
                }
                (true, StartingOffsets::Timestamp { timestamp }) => {
                    by_time
                        .add_partition_offset(&split.topic, split.partition, Offset::Offset(timestamp))
                        .map_err(fail)?;
                    high
                }
            });
        }
        let mut resolved: Vec<(String, i32, i64)> = Vec::new();
        if by_time.count() > 0 {
            let offsets = self.consumer.offsets_for_times(by_time, timeout()).map_err(fail)?;
            for e in offsets.elements() {
                // No record at or after the time: start after the last one (the high watermark, already set).
                if let Offset::Offset(o) = e.offset() {
                    resolved.push((e.topic().to_string(), e.partition(), o));
                }
            }
        }
        if committed.count() > 0 {
            let offsets = self.consumer.committed_offsets(committed, timeout()).map_err(fail)?;
            for e in offsets.elements() {
                // No committed offset: start at the earliest record (already set).
                if let Offset::Offset(o) = e.offset() {
                    resolved.push((e.topic().to_string(), e.partition(), o));
                }
            }
        }
        for (topic, partition, offset) in resolved {
            if let Some(&i) = self.by_partition.get(&(topic, partition)) {
                self.splits[i].next = Some(offset);
            }
        }
        let mut assignment = TopicPartitionList::new();
        tracing::debug!(
            "Kafka source subtask {} starts {:?}",
            self.subtask,
            self.splits[first..].iter().map(|s| (&s.topic, s.partition, s.next)).collect::<Vec<_>>()
        );
        for split in &self.splits[first..] {
            let offset = Offset::Offset(split.next.unwrap_or(0));
            assignment.add_partition_offset(&split.topic, split.partition, offset).map_err(fail)?;
        }
        if assignment.count() > 0 {
            self.consumer.incremental_assign(&assignment).map_err(|e| kafka_error("cannot assign partitions", e))?;
        }
        Ok(())
    }

    fn ensure_started(&mut self) -> Result<(), TaskError> {
        if !self.started {
            self.start_splits(0, true)?;
            self.started = true;
        }
        if self.next_discovery.is_some_and(|at| Instant::now() >= at) {
            self.schedule_discovery();
            match self.discover(false) {
                Ok(found) if !found.is_empty() => {
                    let first = self.splits.len();
                    tracing::info!(
                        "Kafka source subtask {} found {} new partition(s): {:?}",
                        self.subtask,
                        found.len(),
                        found
                    );
                    self.add_splits(found);
                    self.start_splits(first, false)?;
                }
                Ok(_) => {}
                // Discovery is retried at the next interval; reading goes on meanwhile.
                Err(e) => tracing::warn!("Kafka partition discovery failed: {}", e.message),
            }
        }
        Ok(())
    }

    /// Reports each partition's offsets and lag, at most every [`REPORT_EVERY`] unless `now`.
    fn publish_report(&mut self, now: bool) {
        let at = Instant::now();
        if !now && at < self.next_report {
            return;
        }
        self.next_report = at + REPORT_EVERY;
        let ends = self.consumer.context().ends.lock();
        let read_committed = matches!(self.spec.isolation, Isolation::ReadCommitted);
        let partitions = self
            .splits
            .iter()
            .map(|split| {
                let id = split_id(&split.topic, split.partition);
                let current = split.next.or_else(|| self.restored.get(&id).copied()).map(|o| o.max(0) as u64);
                let end = ends
                    .get(&(split.topic.clone(), split.partition))
                    .map(|(high, stable)| if read_committed && *stable >= 0 { *stable } else { *high })
                    .filter(|end| *end >= 0)
                    .map(|end| end as u64);
                PartitionReport {
                    topic: split.topic.clone(),
                    partition: split.partition,
                    current_offset: current,
                    committed_offset: self.committed.get(&id).copied(),
                    end_offset: end,
                    lag: end.zip(current).map(|(end, current)| end.saturating_sub(current)),
                }
            })
            .collect();
        drop(ends);
        self.report.publish(ConnectorReport { partitions, ..ConnectorReport::default() });
    }

    /// The split index the task's watermarks know a split by: splits found after the start share the last one.
    fn watermark_split(&self, split: usize) -> usize {
        split.min(self.initial_splits.max(1) - 1)
    }
}

/// Appends one Kafka record to `batch`, read as the spec says; a record that cannot be read so goes to
/// `unreadable` instead, as it came (with `eddy.error` and its Kafka coordinates as headers).
fn append_or_set_aside(
    spec: &KafkaSourceSpec,
    batch: &mut Batch,
    unreadable: &mut Option<(Batch, String)>,
    message: &impl Message,
) {
    let Err(why) = append(spec, batch, message) else { return };
    let (partition, offset) = (message.partition().to_string(), message.offset().to_string());
    let headers = [
        ("eddy.error", why.as_bytes()),
        ("kafka.topic", message.topic().as_bytes()),
        ("kafka.partition", partition.as_bytes()),
        ("kafka.offset", offset.as_bytes()),
    ];
    let (set_aside, _) = unreadable.get_or_insert_with(|| (Batch::new(), why.clone()));
    set_aside.push_with_headers(0, message.key(), message.payload().unwrap_or_default(), &headers);
}

/// Appends one Kafka record to `batch`, read as the spec says; why not, if it cannot be.
fn append(spec: &KafkaSourceSpec, batch: &mut Batch, message: &impl Message) -> Result<(), String> {
    let value = message.payload().unwrap_or_default();
    let at = || format!("topic `{}`, partition {}, offset {}", message.topic(), message.partition(), message.offset());
    if spec.format == KafkaFormat::Json && serde_json::from_slice::<serde::de::IgnoredAny>(value).is_err() {
        return Err(format!("a Kafka record is not JSON ({}): {}", at(), eddy_engine::json::preview(value)));
    }
    let timestamp = match &spec.timestamp {
        KafkaTimestamp::Kafka => message.timestamp().to_millis().unwrap_or_else(now_millis),
        KafkaTimestamp::Field(path) => {
            path.extract_i64(value).map_err(|e| format!("a Kafka record has no event time ({}): {e}", at()))?
        }
    };
    let json_key;
    let key = match &spec.key_field {
        Some(path) => {
            json_key = path.extract_key(value).map_err(|e| format!("a Kafka record has no key ({}): {e}", at()))?;
            Some(json_key.as_slice())
        }
        None => message.key(),
    };
    let headers = message.headers();
    if headers.is_none() && !spec.metadata {
        batch.push(timestamp, key, value);
        return Ok(());
    }
    let (partition, offset, kafka_time) = if spec.metadata {
        let time = match message.timestamp() {
            rdkafka::Timestamp::CreateTime(t) => format!("create:{t}"),
            rdkafka::Timestamp::LogAppendTime(t) => format!("log_append:{t}"),
            rdkafka::Timestamp::NotAvailable => String::new(),
        };
        (message.partition().to_string(), message.offset().to_string(), time)
    } else {
        Default::default()
    };
    let mut pairs: Vec<(&str, &[u8])> = Vec::new();
    if let Some(headers) = headers {
        pairs.extend(headers.iter().map(|h| (h.key, h.value.unwrap_or_default())));
    }
    if spec.metadata {
        pairs.push(("kafka.topic", message.topic().as_bytes()));
        pairs.push(("kafka.partition", partition.as_bytes()));
        pairs.push(("kafka.offset", offset.as_bytes()));
        pairs.push(("kafka.timestamp", kafka_time.as_bytes()));
    }
    batch.push_with_headers(timestamp, key, value, &pairs);
    Ok(())
}

fn now_millis() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Source for KafkaSource {
    fn split_count(&self) -> usize {
        self.initial_splits.max(1)
    }

    fn position(&self) -> Vec<SplitPosition> {
        let mut positions: Vec<SplitPosition> = self
            .splits
            .iter()
            .filter_map(|s| {
                let offset = s.next.or_else(|| self.restored.get(&split_id(&s.topic, s.partition)).copied())?;
                Some(SplitPosition { split: split_id(&s.topic, s.partition), offset: offset.max(0) as u64 })
            })
            .collect();
        positions.sort_by(|a, b| a.split.cmp(&b.split));
        positions
    }

    fn restore(&mut self, positions: &[SplitPosition]) -> Result<(), TaskError> {
        for position in positions {
            if parse_split(&position.split).is_some() {
                self.restored.insert(position.split.clone(), position.offset as i64);
            }
        }
        Ok(())
    }

    fn checkpoint_complete(&mut self, checkpoint: CheckpointId, positions: &[SplitPosition]) {
        let mut offsets = TopicPartitionList::new();
        for position in positions {
            if let Some((topic, partition)) = parse_split(&position.split) {
                let _ = offsets.add_partition_offset(topic, partition, Offset::Offset(position.offset as i64));
            }
        }
        if offsets.count() == 0 {
            return;
        }
        // For monitoring only: positions live in the checkpoint, so a failed commit loses nothing.
        match self.consumer.commit(&offsets, CommitMode::Async) {
            Ok(()) => {
                for position in positions {
                    self.committed.insert(position.split.clone(), position.offset);
                }
                self.publish_report(true);
            }
            Err(e) => {
                tracing::warn!(
                    "cannot commit the offsets of checkpoint {checkpoint} to the Kafka group: {}",
                    describe(&e)
                );
            }
        }
    }

    fn poll(&mut self, batch: &mut Batch, max: usize) -> Result<SourcePoll, TaskError> {
        self.ensure_started()?;
        self.publish_report(false);
        let before = batch.len();
        let mut current: Option<usize> = None;
        if let Some(message) = self.stashed.take() {
            let Some(&index) = self.by_partition.get(&(message.topic().to_string(), message.partition())) else {
                return Ok(SourcePoll::Pending);
            };
            append_or_set_aside(&self.spec, batch, &mut self.unreadable, &message);
            self.splits[index].next = Some(message.offset() + 1);
            current = Some(index);
        }
        while batch.len() - before < max {
            let message = match self.consumer.poll(Duration::ZERO) {
                None => break,
                Some(Ok(message)) => message,
                Some(Err(e)) => {
                    // librdkafka reports trouble it retries itself (a broker down) as errors here: note and go on.
                    tracing::warn!("Kafka source subtask {}: {}", self.subtask, describe(&e));
                    break;
                }
            };
            let Some(&index) = self.by_partition.get(&(message.topic().to_string(), message.partition())) else {
                continue;
            };
            match current {
                Some(c) if c != index => {
                    self.stashed = Some(message.detach());
                    break;
                }
                _ => current = Some(index),
            }
            append_or_set_aside(&self.spec, batch, &mut self.unreadable, &message);
            self.splits[index].next = Some(message.offset() + 1);
        }
        Ok(match current {
            Some(split) if batch.len() > before => SourcePoll::Records { split: self.watermark_split(split) },
            _ => SourcePoll::Pending,
        })
    }

    fn take_unreadable(&mut self) -> Option<(Batch, String)> {
        self.unreadable.take()
    }

    fn wait(&mut self, wake: &crossbeam_channel::Receiver<Wake>, timeout: Option<Duration>) {
        self.publish_report(false);
        let start = Instant::now();
        let deadline = [timeout.map(|t| start + t), self.next_discovery].into_iter().flatten().min();
        while self.stashed.is_none() && wake.is_empty() {
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return;
            }
            // Short slices, so that a control message (a checkpoint barrier) is acted on within milliseconds.
            let slice = deadline.map_or(Duration::from_millis(20), |d| (d - now).min(Duration::from_millis(20)));
            match self.consumer.poll(slice) {
                None => {}
                Some(Ok(message)) => self.stashed = Some(message.detach()),
                Some(Err(e)) => {
                    tracing::warn!("Kafka source subtask {}: {}", self.subtask, describe(&e));
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_spread_evenly_and_stably() {
        for parallelism in 1..=5u32 {
            let mut load = vec![0; parallelism as usize];
            for partition in 0..20 {
                let s = owner("orders", partition, parallelism);
                assert!(s < parallelism);
                assert_eq!(s, owner("orders", partition, parallelism), "the same every time");
                load[s as usize] += 1;
            }
            let (min, max) = (load.iter().min().copied(), load.iter().max().copied());
            assert!(max.zip(min).is_some_and(|(a, b)| a - b <= 1), "{load:?}");
        }
        // Pinned: a change would move partitions between subtasks of running jobs on upgrade.
        assert_eq!((0..6).map(|p| owner("orders", p, 3)).collect::<Vec<_>>(), vec![2, 0, 1, 2, 0, 1]);
    }

    #[test]
    fn split_ids_round_trip() {
        assert_eq!(split_id("a.b-c", 7), "kafka:a.b-c:7");
        assert_eq!(parse_split("kafka:a.b-c:7"), Some(("a.b-c", 7)));
        assert_eq!(parse_split("file:x"), None);
    }
}
