//! What the source and the sink share: timeouts and error wording.

use eddy_engine::TaskError;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use std::collections::BTreeMap;
use std::time::Duration;

/// What the server lets one tenant's Kafka clients do, from its configuration: settings it adds to every client
/// (TLS, SASL credentials and the like) and the prefixes of the names they may use. The settings are applied after
/// a spec's own, which can never name them (see the engine's Kafka spec): a spec cannot change how a tenant
/// authenticates, and no setting that names a file or a library comes from a tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KafkaAccess {
    /// librdkafka settings for every client.
    pub settings: BTreeMap<String, String>,
    /// Topics read or written start with it (empty: any).
    pub topic_prefix: String,
    /// Consumer groups and transactional ids start with it (empty: any); the defaults Eddy makes up do.
    pub group_prefix: String,
}

impl KafkaAccess {
    /// Applies the settings to `config`.
    pub(crate) fn apply(&self, config: &mut ClientConfig) {
        for (name, value) in &self.settings {
            config.set(name, value);
        }
    }

    /// Whether a client may use `topic`.
    pub fn topic_allowed(&self, topic: &str) -> bool {
        topic.starts_with(&self.topic_prefix)
    }

    /// The group or transactional-id stem Eddy uses when a spec names none: `<group prefix>eddy-<job>-<uid>`.
    pub fn default_name(&self, job: &str, uid: &str) -> String {
        format!("{}eddy-{job}-{uid}", self.group_prefix)
    }
}

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

#[cfg(test)]
mod tests {
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::BaseConsumer;

    /// Even a setting that slipped past the spec's allow-list could not load a library: this librdkafka has no
    /// plugin loader (`.cargo/config.toml` builds it with `WITH_PLUGINS=OFF`).
    #[test]
    fn librdkafka_is_built_without_plugin_support() {
        let refused = ClientConfig::new()
            .set("plugin.library.paths", "/nonexistent/planted.so")
            .create::<BaseConsumer>()
            .err()
            .expect("no plugin loader")
            .to_string();
        assert!(refused.contains("not available at build time"), "{refused}");
    }
}
