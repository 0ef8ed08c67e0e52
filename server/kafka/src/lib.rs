//! Kafka for Eddy: a source whose partitions are splits with their offsets in checkpoints, and a sink that writes
//! at-least-once or exactly-once (one transaction per checkpoint). It lives in its own crate so that the engine
//! never links librdkafka: the server hands [`KafkaConnectors`] to the engine's deployment
//! (`DeployEnv::connectors`), which calls it for `source: { kafka: .. }` and `sink: { kafka: .. }` specs.

mod config;
pub mod sink;
pub mod source;

pub use sink::{KafkaSink, transactional_id};
pub use source::{KafkaSource, owner, split_id};

use eddy_engine::TaskError;
use eddy_engine::io::{ConnectorContext, Connectors, Source};
use eddy_engine::operator::Operator;
use eddy_engine::spec::{SinkSpec, SourceSpec};

/// Builds Kafka sources and sinks for the engine.
#[derive(Debug, Default, Clone, Copy)]
pub struct KafkaConnectors;

impl Connectors for KafkaConnectors {
    fn source(&self, cx: &ConnectorContext<'_>, spec: &SourceSpec) -> Option<Result<Box<dyn Source>, TaskError>> {
        match spec {
            SourceSpec::Kafka(kafka) => Some(KafkaSource::open(cx, kafka).map(|s| Box::new(s) as Box<dyn Source>)),
            _ => None,
        }
    }

    fn sink(&self, cx: &ConnectorContext<'_>, spec: &SinkSpec) -> Option<Result<Box<dyn Operator>, TaskError>> {
        match spec {
            SinkSpec::Kafka(kafka) => Some(KafkaSink::open(cx, kafka).map(|s| Box::new(s) as Box<dyn Operator>)),
            _ => None,
        }
    }
}
