//! Kafka for Eddy: a source whose partitions are splits with their offsets in checkpoints, and a sink that writes
//! at-least-once or exactly-once (one transaction per checkpoint). It lives in its own crate so that the engine
//! never links librdkafka: the server hands [`KafkaConnectors`] to the engine's deployment
//! (`DeployEnv::connectors`), which calls it for `source: { kafka: .. }` and `sink: { kafka: .. }` specs.
//!
//! ```yaml
//! checkpoints: { interval: 1s }
//! operators:
//!   - uid: orders
//!     source:
//!       kafka:
//!         brokers: 127.0.0.1:9092
//!         topics: [orders]                # or topic_pattern: "orders-.*"
//!         starting_offsets: earliest      # latest | committed | { timestamp: 1700000000000 }
//!         format: json                    # raw (default): the value's bytes as they are
//!         key_field: $.user               # JSON only; else the Kafka key
//!         timestamp: { field: $.ts }      # kafka (default): the record's Kafka timestamp
//!         isolation: read_committed       # the default; or read_uncommitted
//!         metadata: true                  # kafka.topic / .partition / .offset / .timestamp headers
//!         discovery_interval: 10s         # new partitions and matching topics join the running job
//!         properties: { fetch.min.bytes: 1 }
//!   - uid: out
//!     input: orders
//!     sink:
//!       kafka:
//!         brokers: 127.0.0.1:9092
//!         topic: enriched
//!         topic_header: route             # a record with this header goes to the topic it names
//!         delivery: exactly_once          # at_least_once (default)
//!         transactional_id_prefix: shop   # ids <prefix>-<job>-<uid>-<subtask>; `eddy` by default
//!         properties: { acks: all, compression.type: lz4, linger.ms: 5, transaction.timeout.ms: 60000 }
//! ```
//!
//! The source assigns partitions itself ([`owner`]: the same split of the work before and after a rescale) and
//! commits offsets to its group (`group`, default `eddy-<job>-<uid>`) only when a checkpoint completes, for
//! monitoring. The sink's exactly-once protocol is described in [`sink`]. Readers of an exactly-once sink's topic
//! must use `isolation.level=read_committed`.

mod config;
pub mod sink;
pub mod source;

pub use config::KafkaAccess;
pub use sink::{KafkaSink, transactional_id};
pub use source::{KafkaSource, owner, split_id};

use eddy_engine::TaskError;
use eddy_engine::io::{ConnectorContext, Connectors, Source};
use eddy_engine::operator::Operator;
use eddy_engine::spec::{SinkSpec, SourceSpec};

/// Builds Kafka sources and sinks for the engine, within what the server lets the job's tenant do.
#[derive(Debug, Default, Clone)]
pub struct KafkaConnectors {
    /// The tenant's settings and name prefixes.
    pub access: KafkaAccess,
}

impl Connectors for KafkaConnectors {
    fn source(&self, cx: &ConnectorContext<'_>, spec: &SourceSpec) -> Option<Result<Box<dyn Source>, TaskError>> {
        match spec {
            SourceSpec::Kafka(kafka) => {
                Some(KafkaSource::open(cx, kafka, &self.access).map(|s| Box::new(s) as Box<dyn Source>))
            }
            _ => None,
        }
    }

    fn sink(&self, cx: &ConnectorContext<'_>, spec: &SinkSpec) -> Option<Result<Box<dyn Operator>, TaskError>> {
        match spec {
            SinkSpec::Kafka(kafka) => {
                Some(KafkaSink::open(cx, kafka, &self.access).map(|s| Box::new(s) as Box<dyn Operator>))
            }
            _ => None,
        }
    }
}
