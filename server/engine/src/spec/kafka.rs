//! Kafka sources and sinks as a job spec writes them. The engine only reads and checks these settings; the
//! `eddy-kafka` crate runs them (through [`crate::io::Connectors`]).

use super::{CheckpointMode, CheckpointSpec, Millis};
use crate::json::JsonPath;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;

/// Client settings passed to librdkafka as they are (`acks`, `compression.type`, `linger.ms`, ...). Values may be
/// written as strings, numbers or booleans.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KafkaProperties(pub BTreeMap<String, String>);

impl<'de> Deserialize<'de> for KafkaProperties {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<KafkaProperties, D::Error> {
        let raw = BTreeMap::<String, serde_json::Value>::deserialize(deserializer)?;
        let mut properties = BTreeMap::new();
        for (name, value) in raw {
            let text = match value {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => {
                    return Err(serde::de::Error::custom(format!(
                        "property `{name}` must be a string, a number or a boolean"
                    )));
                }
            };
            properties.insert(name, text);
        }
        Ok(KafkaProperties(properties))
    }
}

impl KafkaProperties {
    /// A property's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

/// Properties Eddy sets itself, which a spec may not override.
const SOURCE_OWNED: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "isolation.level",
    "enable.partition.eof",
];
const SINK_OWNED: &[&str] = &["bootstrap.servers", "metadata.broker.list", "transactional.id", "enable.idempotence"];

/// A Kafka source.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceSpec {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    pub brokers: String,
    /// Topics to read.
    #[serde(default)]
    pub topics: Vec<String>,
    /// A regular expression: every topic whose whole name matches is read (checked again at each discovery).
    #[serde(default)]
    pub topic_pattern: Option<String>,
    /// The consumer group offsets are committed to when a checkpoint completes (for monitoring: positions live
    /// in checkpoints); `eddy-<job>-<uid>` when none.
    #[serde(default)]
    pub group: Option<String>,
    /// Where partitions without a checkpointed position start.
    #[serde(default)]
    pub starting_offsets: StartingOffsets,
    /// How record values are read.
    #[serde(default)]
    pub format: KafkaFormat,
    /// With JSON values, a field whose value becomes the record's key (else the Kafka key is kept).
    #[serde(default)]
    pub key_field: Option<JsonPath>,
    /// Where a record's event time comes from.
    #[serde(default)]
    pub timestamp: KafkaTimestamp,
    /// Whether records of open and aborted transactions are skipped.
    #[serde(default)]
    pub isolation: Isolation,
    /// Adds `kafka.topic`, `kafka.partition`, `kafka.offset` and `kafka.timestamp` (`create:<ms>` or
    /// `log_append:<ms>`) headers to each record, besides its own headers.
    #[serde(default)]
    pub metadata: bool,
    /// How often new partitions and topics are looked for; none: only at the start.
    #[serde(default = "KafkaSourceSpec::default_discovery")]
    pub discovery_interval: Option<Millis>,
    /// Further consumer settings passed to librdkafka.
    #[serde(default)]
    pub properties: KafkaProperties,
}

impl KafkaSourceSpec {
    fn default_discovery() -> Option<Millis> {
        Some(Millis(10_000))
    }

    /// Problems of these settings, as (field below `source.kafka.`, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if self.brokers.trim().is_empty() {
            problems.push(("brokers".into(), "must name at least one broker, such as 127.0.0.1:9092".into()));
        }
        match (self.topics.is_empty(), &self.topic_pattern) {
            (true, None) => problems.push(("topics".into(), "give topics or a topic_pattern".into())),
            (false, Some(_)) => {
                problems.push(("topic_pattern".into(), "give topics or a topic_pattern, not both".into()))
            }
            _ => {}
        }
        for (i, topic) in self.topics.iter().enumerate() {
            if let Err(e) = check_topic(topic) {
                problems.push((format!("topics[{i}]"), e));
            }
        }
        if self.key_field.is_some() && self.format != KafkaFormat::Json {
            problems.push(("key_field".into(), "needs format: json".into()));
        }
        if matches!(self.timestamp, KafkaTimestamp::Field(_)) && self.format != KafkaFormat::Json {
            problems.push(("timestamp".into(), "a timestamp field needs format: json".into()));
        }
        if let StartingOffsets::Timestamp { timestamp } = self.starting_offsets
            && timestamp < 0
        {
            problems.push(("starting_offsets.timestamp".into(), "must not be negative".into()));
        }
        if let Some(Millis(ms)) = self.discovery_interval
            && ms < 100
        {
            problems.push(("discovery_interval".into(), "must be at least 100ms".into()));
        }
        for name in self.properties.0.keys() {
            if SOURCE_OWNED.contains(&name.as_str()) {
                problems.push((format!("properties.{name}"), owned_message(name)));
            }
        }
        problems
    }
}

/// Where a partition without a checkpointed position starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartingOffsets {
    /// The oldest record kept.
    #[default]
    Earliest,
    /// After the last record at the start.
    Latest,
    /// The group's committed offset; the oldest record when it has none.
    Committed,
    /// The first record with a timestamp at or after `timestamp` (ms since the epoch).
    Timestamp {
        /// Milliseconds since the Unix epoch.
        timestamp: i64,
    },
}

impl<'de> Deserialize<'de> for StartingOffsets {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<StartingOffsets, D::Error> {
        let expected = "must be earliest, latest, committed or { timestamp: <ms since the epoch> }";
        match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::String(s) if s == "earliest" => Ok(StartingOffsets::Earliest),
            serde_json::Value::String(s) if s == "latest" => Ok(StartingOffsets::Latest),
            serde_json::Value::String(s) if s == "committed" => Ok(StartingOffsets::Committed),
            serde_json::Value::Object(map) if map.len() == 1 => match map.get("timestamp").and_then(|t| t.as_i64()) {
                Some(timestamp) => Ok(StartingOffsets::Timestamp { timestamp }),
                None => Err(serde::de::Error::custom(expected)),
            },
            _ => Err(serde::de::Error::custom(expected)),
        }
    }
}

/// How a Kafka source reads record values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KafkaFormat {
    /// Bytes as they are.
    #[default]
    Raw,
    /// JSON values; a value that is not JSON fails the job, naming its topic, partition and offset.
    Json,
}

/// Where a Kafka record's event time comes from.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum KafkaTimestamp {
    /// The Kafka record's timestamp (CreateTime or LogAppendTime).
    #[default]
    Kafka,
    /// A numeric field of the JSON value, in milliseconds.
    Field(JsonPath),
}

impl<'de> Deserialize<'de> for KafkaTimestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<KafkaTimestamp, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Field {
            field: String,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Name(String),
            Field(Field),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Name(name) if name == "kafka" => Ok(KafkaTimestamp::Kafka),
            Raw::Field(Field { field }) => {
                JsonPath::parse(&field).map(KafkaTimestamp::Field).map_err(serde::de::Error::custom)
            }
            Raw::Name(_) => Err(serde::de::Error::custom("must be kafka or { field: \"$.ts\" }")),
        }
    }
}

impl<'de> Deserialize<'de> for JsonPath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<JsonPath, D::Error> {
        let text = String::deserialize(deserializer)?;
        JsonPath::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Which records of transactional producers a consumer sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    /// Only records of committed transactions (and non-transactional ones).
    #[default]
    ReadCommitted,
    /// Every record, including those of open and aborted transactions.
    ReadUncommitted,
}

/// A Kafka sink.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkSpec {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    pub brokers: String,
    /// The topic records are written to.
    pub topic: String,
    /// A header whose value, in a record that has it, names the topic that record goes to instead of `topic`.
    #[serde(default)]
    pub topic_header: Option<String>,
    /// What a restore guarantees about the output.
    #[serde(default)]
    pub delivery: Delivery,
    /// Transactional ids are `<prefix>-<job>-<operator uid>-<subtask>`; `eddy` when none.
    #[serde(default)]
    pub transactional_id_prefix: Option<String>,
    /// Further producer settings passed to librdkafka (`acks`, `compression.type`, `linger.ms`, `batch.size`,
    /// `transaction.timeout.ms`, ...).
    #[serde(default)]
    pub properties: KafkaProperties,
}

/// The transaction timeout librdkafka uses when none is set.
pub const DEFAULT_TRANSACTION_TIMEOUT_MS: i64 = 60_000;

impl KafkaSinkSpec {
    /// The transaction timeout in milliseconds, if it is a number.
    pub fn transaction_timeout(&self) -> Result<i64, String> {
        match self.properties.get("transaction.timeout.ms") {
            None => Ok(DEFAULT_TRANSACTION_TIMEOUT_MS),
            Some(text) => text
                .parse::<i64>()
                .ok()
                .filter(|ms| *ms > 0)
                .ok_or_else(|| format!("`{text}` is not a positive number of milliseconds")),
        }
    }

    /// Problems of these settings for a job with `checkpoints`, as (field below `sink.kafka.`, message).
    pub fn problems(&self, checkpoints: Option<&CheckpointSpec>) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if self.brokers.trim().is_empty() {
            problems.push(("brokers".into(), "must name at least one broker, such as 127.0.0.1:9092".into()));
        }
        if let Err(e) = check_topic(&self.topic) {
            problems.push(("topic".into(), e));
        }
        if self.topic_header.as_deref().is_some_and(str::is_empty) {
            problems.push(("topic_header".into(), "must name a header".into()));
        }
        if let Some(prefix) = &self.transactional_id_prefix
            && (prefix.is_empty() || prefix.len() > 100)
        {
            problems.push(("transactional_id_prefix".into(), "must have 1 to 100 characters".into()));
        }
        for name in self.properties.0.keys() {
            if SINK_OWNED.contains(&name.as_str()) {
                problems.push((format!("properties.{name}"), owned_message(name)));
            }
        }
        if self.delivery == Delivery::ExactlyOnce {
            match (checkpoints, self.transaction_timeout()) {
                (None, _) => problems.push((
                    "delivery".into(),
                    "exactly_once commits a transaction per checkpoint: the job needs `checkpoints`".into(),
                )),
                (Some(c), _) if c.mode != CheckpointMode::ExactlyOnce => problems.push((
                    "delivery".into(),
                    "exactly_once needs checkpoints with mode exactly_once (aligned barriers), else an epoch's \
                     records would not match the checkpoint's state"
                        .into(),
                )),
                (_, Err(e)) => problems.push(("properties.transaction.timeout.ms".into(), e)),
                (Some(c), Ok(timeout)) if timeout < c.interval.0 => problems.push((
                    "properties.transaction.timeout.ms".into(),
                    format!(
                        "the transaction timeout ({timeout} ms) is shorter than the checkpoint interval ({} ms): \
                         each checkpoint's transaction stays open about one interval, and the broker would abort \
                         it; raise transaction.timeout.ms (the broker allows up to its transaction.max.timeout.ms, \
                         15 minutes by default) or checkpoint more often",
                        c.interval.0
                    ),
                )),
                _ => {}
            }
        }
        problems
    }
}

/// What a Kafka sink guarantees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Every record reaches Kafka; after a failure some may be written twice.
    #[default]
    AtLeastOnce,
    /// Records are written in one transaction per checkpoint, committed when the checkpoint completes: a
    /// `read_committed` consumer sees each exactly once.
    ExactlyOnce,
}

fn owned_message(name: &str) -> String {
    format!("`{name}` is set by Eddy (use the spec's own fields)")
}

/// Kafka's rule for topic names.
fn check_topic(topic: &str) -> Result<(), String> {
    let valid = !topic.is_empty()
        && topic.len() <= 249
        && topic != "."
        && topic != ".."
        && topic.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(format!("`{topic}` is not a Kafka topic name (1 to 249 of a-z, A-Z, 0-9, '.', '_', '-')"))
    }
}

#[cfg(test)]
mod tests {
    use super::super::JobSpec;

    fn problems(text: &str) -> String {
        match JobSpec::parse(text) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn kafka_specs_parse_with_their_defaults() {
        let spec = JobSpec::parse(
            r#"
name: k
checkpoints: { interval: 1s }
operators:
  - uid: in
    source:
      kafka:
        brokers: 127.0.0.1:9092
        topics: [a, b]
        starting_offsets: { timestamp: 1700000000000 }
        format: json
        key_field: $.user
        timestamp: { field: $.ts }
        properties: { fetch.min.bytes: 1, check.crcs: true }
  - uid: out
    input: in
    sink:
      kafka:
        brokers: 127.0.0.1:9092
        topic: out
        delivery: exactly_once
        properties: { acks: all, linger.ms: 5, compression.type: lz4 }
"#,
        )
        .expect("valid");
        let super::super::OperatorKind::Source(source) = &spec.operators[0].kind else { panic!("source") };
        let super::super::SourceSpec::Kafka(k) = &source.source else { panic!("kafka") };
        assert_eq!(k.topics, ["a", "b"]);
        assert_eq!(k.starting_offsets, super::StartingOffsets::Timestamp { timestamp: 1_700_000_000_000 });
        assert_eq!(k.isolation, super::Isolation::ReadCommitted);
        assert_eq!(k.properties.get("check.crcs"), Some("true"));
        assert!(matches!(k.timestamp, super::KafkaTimestamp::Field(_)));
        let super::super::OperatorKind::Sink(super::super::SinkSpec::Kafka(sink)) = &spec.operators[1].kind else {
            panic!("kafka sink")
        };
        assert_eq!(sink.delivery, super::Delivery::ExactlyOnce);
        assert_eq!(sink.properties.get("linger.ms"), Some("5"));
    }

    #[test]
    fn kafka_settings_are_checked() {
        let found = problems(
            r#"
name: k
checkpoints: { interval: 2m }
operators:
  - uid: in
    source: { kafka: { brokers: "", topics: [x], starting_offsets: newest } }
  - uid: in3
    source: { kafka: { brokers: b:1, topic: x } }
  - uid: in2
    source: { kafka: { brokers: b:1, topics: [a], topic_pattern: "a.*", key_field: $.k } }
  - uid: out
    input: [in, in2, in3]
    sink:
      kafka: { brokers: b:1, topic: "no/slash", delivery: exactly_once, properties: { transaction.timeout.ms: 60000 } }
"#,
        );
        for expected in [
            "operator `in`, field `source`: must be earliest, latest, committed or { timestamp: <ms since the epoch> }",
            "operator `in3`, field `source`: unknown field `topic`",
            "operator `in2`, field `source.kafka.topic_pattern`: give topics or a topic_pattern, not both",
            "operator `in2`, field `source.kafka.key_field`: needs format: json",
            "operator `out`, field `sink.kafka.topic`: `no/slash` is not a Kafka topic name",
            "operator `out`, field `sink.kafka.properties.transaction.timeout.ms`: the transaction timeout (60000 ms) \
             is shorter than the checkpoint interval (120000 ms)",
        ] {
            assert!(found.contains(expected), "missing `{expected}` in:\n{found}");
        }
        let found = problems(
            "name: k\noperators:\n  - { uid: in, source: { kafka: { brokers: b:1, topics: [a], properties: { group.id: g } } } }\n  - { uid: out, input: in, sink: { kafka: { brokers: b:1, topic: o, delivery: exactly_once } } }",
        );
        assert!(found.contains("field `source.kafka.properties.group.id`: `group.id` is set by Eddy"), "{found}");
        assert!(
            found.contains("field `sink.kafka.delivery`: exactly_once commits a transaction per checkpoint"),
            "{found}"
        );
    }
}
