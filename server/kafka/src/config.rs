//! What the source and the sink share: timeouts and error wording.

use eddy_engine::TaskError;
use rdkafka::error::KafkaError;
use std::time::Duration;

/// How long a call to the brokers (metadata, offsets, a transaction step) may take before it fails.
pub(crate) fn timeout() -> Duration {
    Duration::from_secs(30)
}

/// A Kafka error as a reader would want it: librdkafka's code and text, without Rust wrapping.
pub(crate) fn describe(error: &KafkaError) -> String {
    match error {
        KafkaError::Transaction(e) => e.to_string(),
        other => other.to_string(),
    }
}

/// A task error for a failed Kafka call: retried by the job's restart strategy.
pub(crate) fn kafka_error(what: &str, error: KafkaError) -> TaskError {
    TaskError::external(format!("Kafka: {what}: {}", describe(&error)))
}
