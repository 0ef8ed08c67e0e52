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

    /// A property's value as a whole number, if it is one.
    pub fn int(&self, name: &str) -> Option<i64> {
        self.get(name)?.trim().parse().ok()
    }
}

/// What values a client setting a spec may pass to librdkafka can take.
#[derive(Debug, Clone, Copy)]
enum Values {
    /// A whole number in this range.
    Int(i64, i64),
    /// One of these words.
    OneOf(&'static [&'static str]),
    /// `true` or `false`.
    Bool,
    /// A name of 1 to 100 letters, digits, '.', '_' or '-' (a client id, a rack).
    Name,
}

/// A setting a spec may pass through `properties`, with its bounds. Only these reach librdkafka: others can name
/// files it would open or load (`plugin.library.paths`, `ssl.*.location`, `sasl.kerberos.*`), commands it would run,
/// or buffers no budget bounds. Credentials and TLS come from the server's configuration for the tenant.
type Allowed = (&'static str, Values);

/// Settings both clients take.
const CLIENT_SETTINGS: &[Allowed] = &[
    ("client.id", Values::Name),
    ("client.rack", Values::Name),
    ("socket.timeout.ms", Values::Int(10, 300_000)),
    ("socket.keepalive.enable", Values::Bool),
    ("socket.connection.setup.timeout.ms", Values::Int(1_000, 300_000)),
    ("connections.max.idle.ms", Values::Int(0, 3_600_000)),
    ("reconnect.backoff.ms", Values::Int(0, 60_000)),
    ("reconnect.backoff.max.ms", Values::Int(0, 3_600_000)),
    ("topic.metadata.refresh.interval.ms", Values::Int(1_000, 3_600_000)),
    ("metadata.max.age.ms", Values::Int(1_000, 86_400_000)),
    ("request.timeout.ms", Values::Int(1_000, 300_000)),
    ("message.max.bytes", Values::Int(1_000, 16 << 20)),
];

/// Consumer settings a source's spec may pass (`queued.max.messages.kbytes` and `fetch.max.bytes` bound what the
/// client buffers, which is charged to the job's memory).
const SOURCE_SETTINGS: &[Allowed] = &[
    ("fetch.min.bytes", Values::Int(1, 16 << 20)),
    ("fetch.max.bytes", Values::Int(1 << 10, MAX_FETCH_BYTES)),
    ("max.partition.fetch.bytes", Values::Int(1 << 10, 16 << 20)),
    ("fetch.wait.max.ms", Values::Int(0, 10_000)),
    ("fetch.queue.backoff.ms", Values::Int(0, 1_000)),
    ("fetch.error.backoff.ms", Values::Int(0, 10_000)),
    ("queued.min.messages", Values::Int(1, 1_000_000)),
    ("queued.max.messages.kbytes", Values::Int(1 << 10, MAX_CLIENT_QUEUE_KBYTES)),
    ("check.crcs", Values::Bool),
];

/// Producer settings a sink's spec may pass (`queue.buffering.max.kbytes` bounds what the client buffers, which is
/// charged to the job's memory). Idempotence is always on, so `acks` can only be `all`.
const SINK_SETTINGS: &[Allowed] = &[
    ("acks", Values::OneOf(&["all", "-1"])),
    ("request.required.acks", Values::OneOf(&["all", "-1"])),
    ("compression.type", Values::OneOf(&["none", "gzip", "snappy", "lz4"])),
    ("compression.codec", Values::OneOf(&["none", "gzip", "snappy", "lz4"])),
    ("compression.level", Values::Int(-1, 12)),
    ("linger.ms", Values::Int(0, 10_000)),
    ("queue.buffering.max.ms", Values::Int(0, 10_000)),
    ("batch.size", Values::Int(1, 16 << 20)),
    ("batch.num.messages", Values::Int(1, 1_000_000)),
    ("queue.buffering.max.messages", Values::Int(1, 10_000_000)),
    ("queue.buffering.max.kbytes", Values::Int(1 << 10, MAX_CLIENT_QUEUE_KBYTES)),
    ("message.timeout.ms", Values::Int(1_000, 900_000)),
    ("delivery.timeout.ms", Values::Int(1_000, 900_000)),
    ("transaction.timeout.ms", Values::Int(1_000, 900_000)),
    ("retries", Values::Int(0, i32::MAX as i64)),
    ("message.send.max.retries", Values::Int(0, i32::MAX as i64)),
    ("retry.backoff.ms", Values::Int(1, 60_000)),
    ("retry.backoff.max.ms", Values::Int(1, 3_600_000)),
    ("max.in.flight.requests.per.connection", Values::Int(1, 5)),
    ("max.in.flight", Values::Int(1, 5)),
    ("sticky.partitioning.linger.ms", Values::Int(0, 10_000)),
    (
        "partitioner",
        Values::OneOf(&[
            "random",
            "consistent",
            "consistent_random",
            "murmur2",
            "murmur2_random",
            "fnv1a",
            "fnv1a_random",
        ]),
    ),
];

/// The most a client's queue may hold, in KiB (librdkafka's `queued.max.messages.kbytes` and
/// `queue.buffering.max.kbytes`).
pub const MAX_CLIENT_QUEUE_KBYTES: i64 = 256 << 10;
/// The most a consumer may fetch in one request, in bytes.
pub const MAX_FETCH_BYTES: i64 = 64 << 20;
/// What a source's client queues unless its spec says (librdkafka's own default is 64 MiB).
pub const DEFAULT_SOURCE_QUEUE_KBYTES: i64 = 32 << 10;
/// What a source fetches at most in one request unless its spec says (librdkafka's own default is 50 MiB).
pub const DEFAULT_FETCH_BYTES: i64 = 16 << 20;
/// What a sink's producer queues unless its spec says (librdkafka's own default is 1 GiB).
pub const DEFAULT_SINK_QUEUE_KBYTES: i64 = 64 << 10;

/// Properties Eddy sets itself, which a spec may not override.
const SOURCE_OWNED: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "isolation.level",
    "enable.partition.eof",
    "statistics.interval.ms",
];
const SINK_OWNED: &[&str] = &["bootstrap.servers", "metadata.broker.list", "transactional.id", "enable.idempotence"];

/// Problems of `properties` for a client that may take `settings`, as (field below the connector, message).
fn property_problems(properties: &KafkaProperties, owned: &[&str], settings: &[Allowed]) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    for (name, value) in &properties.0 {
        let field = format!("properties.{name}");
        if owned.contains(&name.as_str()) {
            problems.push((field, owned_message(name)));
            continue;
        }
        let Some((_, values)) = CLIENT_SETTINGS.iter().chain(settings).find(|(allowed, _)| allowed == name) else {
            problems.push((field, refused_message(name, settings)));
            continue;
        };
        if let Err(why) = check_value(value, *values) {
            problems.push((field, why));
        }
    }
    problems
}

fn check_value(value: &str, values: Values) -> Result<(), String> {
    match values {
        Values::Int(low, high) => match value.trim().parse::<i64>() {
            Ok(n) if (low..=high).contains(&n) => Ok(()),
            _ => Err(format!("`{value}` is not a whole number from {low} to {high}")),
        },
        Values::OneOf(words) if words.contains(&value) => Ok(()),
        Values::OneOf(words) => Err(format!("`{value}` is not one of {}", words.join(", "))),
        Values::Bool if value == "true" || value == "false" => Ok(()),
        Values::Bool => Err(format!("`{value}` is not true or false")),
        Values::Name
            if !value.is_empty()
                && value.len() <= 100
                && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) =>
        {
            Ok(())
        }
        Values::Name => Err(format!("`{value}` is not 1 to 100 letters, digits, '.', '_' or '-'")),
    }
}

fn refused_message(name: &str, settings: &[Allowed]) -> String {
    let secret = ["security.", "ssl.", "sasl.", "ssl_", "oauthbearer", "plugin", "kerberos"];
    if secret.iter().any(|s| name.contains(s)) {
        return format!(
            "`{name}` cannot be set by a job: TLS and credentials for Kafka come from the server's configuration for \
             the tenant, and no setting may name a file or a library"
        );
    }
    let mut names: Vec<&str> = CLIENT_SETTINGS.iter().chain(settings).map(|(n, _)| *n).collect();
    names.sort_unstable();
    format!("`{name}` is not a setting a job may pass to Kafka; it may set: {}", names.join(", "))
}

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
        problems.extend(property_problems(&self.properties, SOURCE_OWNED, SOURCE_SETTINGS));
        problems
    }

    /// The most bytes the source's client buffers (its queue of fetched records and one fetch in flight).
    pub fn client_buffer_bytes(&self) -> u64 {
        let kbytes = self.properties.int("queued.max.messages.kbytes").unwrap_or(DEFAULT_SOURCE_QUEUE_KBYTES);
        let fetch = self.properties.int("fetch.max.bytes").unwrap_or(DEFAULT_FETCH_BYTES);
        (kbytes.max(0) as u64) * 1024 + fetch.max(0) as u64
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

    /// The most bytes the sink's producer buffers (its queue of records not yet acknowledged).
    pub fn client_buffer_bytes(&self) -> u64 {
        let kbytes = self.properties.int("queue.buffering.max.kbytes").unwrap_or(DEFAULT_SINK_QUEUE_KBYTES);
        (kbytes.max(0) as u64) * 1024
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
        problems.extend(property_problems(&self.properties, SINK_OWNED, SINK_SETTINGS));
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

    #[test]
    fn only_bounded_client_settings_reach_librdkafka() {
        let found = problems(
            r#"
name: k
operators:
  - uid: in
    source:
      kafka:
        brokers: b:1
        topics: [a]
        properties:
          plugin.library.paths: /proc/self/cwd/files/default/evil/part-0-0.jsonl
          ssl.ca.location: /etc/shadow
          sasl.kerberos.kinit.cmd: "sh -c 'curl evil'"
          oauthbearer.config: x
          fetch.max.bytes: 1000000000
          queued.max.messages.kbytes: 10000000
          check.crcs: maybe
          client.id: "a b"
          fetch.min.bytes: 1
          linger.ms: 5
  - uid: out
    input: in
    sink:
      kafka:
        brokers: b:1
        topic: o
        properties: { acks: 1, linger.ms: 100000, queue.buffering.max.kbytes: 2097151, compression.type: zstd, batch.size: 65536 }
"#,
        );
        for expected in [
            "field `source.kafka.properties.plugin.library.paths`: `plugin.library.paths` cannot be set by a job",
            "field `source.kafka.properties.ssl.ca.location`: `ssl.ca.location` cannot be set by a job",
            "field `source.kafka.properties.sasl.kerberos.kinit.cmd`: `sasl.kerberos.kinit.cmd` cannot be set",
            "field `source.kafka.properties.oauthbearer.config`: `oauthbearer.config` cannot be set",
            "field `source.kafka.properties.fetch.max.bytes`: `1000000000` is not a whole number from 1024 to 67108864",
            "field `source.kafka.properties.queued.max.messages.kbytes`: `10000000` is not a whole number",
            "field `source.kafka.properties.check.crcs`: `maybe` is not true or false",
            "field `source.kafka.properties.client.id`: `a b` is not 1 to 100 letters",
            "field `source.kafka.properties.linger.ms`: `linger.ms` is not a setting a job may pass to Kafka",
            "field `sink.kafka.properties.acks`: `1` is not one of all, -1",
            "field `sink.kafka.properties.linger.ms`: `100000` is not a whole number from 0 to 10000",
            "field `sink.kafka.properties.queue.buffering.max.kbytes`: `2097151` is not a whole number",
            "field `sink.kafka.properties.compression.type`: `zstd` is not one of none, gzip, snappy, lz4",
        ] {
            assert!(found.contains(expected), "missing `{expected}` in:\n{found}");
        }
        for accepted in ["fetch.min.bytes", "batch.size"] {
            assert!(!found.contains(&format!("properties.{accepted}`")), "{accepted} is allowed:\n{found}");
        }
    }

    #[test]
    fn client_buffers_follow_the_settings_or_eddys_defaults() {
        let spec = JobSpec::parse(
            "name: k\noperators:\n  - { uid: in, source: { kafka: { brokers: b:1, topics: [a], properties: { fetch.max.bytes: 2048 } } } }\n  - { uid: out, input: in, sink: { kafka: { brokers: b:1, topic: o } } }\n",
        )
        .expect("valid");
        let super::super::OperatorKind::Source(source) = &spec.operators[0].kind else { panic!("source") };
        let super::super::SourceSpec::Kafka(k) = &source.source else { panic!("kafka") };
        assert_eq!(k.client_buffer_bytes(), (super::DEFAULT_SOURCE_QUEUE_KBYTES as u64) * 1024 + 2048);
        let super::super::OperatorKind::Sink(super::super::SinkSpec::Kafka(sink)) = &spec.operators[1].kind else {
            panic!("kafka sink")
        };
        assert_eq!(sink.client_buffer_bytes(), 64 << 20);
    }
}
