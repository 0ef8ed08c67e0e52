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

/// A pause between a checkpoint's completion and its transaction's commit, from `EDDY_KAFKA_TEST_COMMIT_DELAY_MS`:
/// a test hook that widens the window in which a crash leaves a completed checkpoint uncommitted. Unset: none.
pub(crate) fn test_commit_delay() -> Option<Duration> {
    static DELAY: std::sync::OnceLock<Option<Duration>> = std::sync::OnceLock::new();
    *DELAY.get_or_init(|| {
        let ms = std::env::var("EDDY_KAFKA_TEST_COMMIT_DELAY_MS").ok()?.parse().ok()?;
        Some(Duration::from_millis(ms))
    })
}
