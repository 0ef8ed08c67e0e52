//! Kafka specs as a deployment sees them: checked when parsed, and refused without the connectors hook.

use eddy_engine::graph::JobGraph;
use eddy_engine::runtime::{DeployEnv, deploy};
use eddy_engine::spec::JobSpec;
use eddy_engine::testing::TestFunctions;
use std::sync::Arc;

fn job(checkpoints: &str, sink_properties: &str) -> String {
    format!(
        "name: k\n{checkpoints}operators:\n  - {{ uid: in, source: {{ kafka: {{ brokers: \"127.0.0.1:9\", topics: [a] }} }} }}\n  - {{ uid: out, input: in, sink: {{ kafka: {{ brokers: \"127.0.0.1:9\", topic: b, delivery: exactly_once, properties: {{ {sink_properties} }} }} }} }}\n"
    )
}

#[test]
fn a_transaction_timeout_shorter_than_the_checkpoint_interval_is_refused() {
    let error = JobSpec::parse(&job("checkpoints: { interval: 90s }\n", "transaction.timeout.ms: 30000"))
        .expect_err("refused")
        .to_string();
    assert!(
        error.contains("operator `out`, field `sink.kafka.properties.transaction.timeout.ms`: the transaction timeout (30000 ms) is shorter than the checkpoint interval (90000 ms)"),
        "{error}"
    );
    // The default timeout (60 s) against a longer interval.
    let error = JobSpec::parse(&job("checkpoints: { interval: 2m }\n", "")).expect_err("refused").to_string();
    assert!(error.contains("(60000 ms) is shorter than the checkpoint interval (120000 ms)"), "{error}");
    // Exactly-once without checkpoints.
    let error = JobSpec::parse(&job("", "")).expect_err("refused").to_string();
    assert!(error.contains("the job needs `checkpoints`"), "{error}");
    JobSpec::parse(&job("checkpoints: { interval: 1s }\n", "transaction.timeout.ms: 1000")).expect("long enough");
}

#[test]
fn a_kafka_job_without_the_connectors_hook_fails_to_deploy() {
    let spec = JobSpec::parse(&job("checkpoints: { interval: 1s }\n", "")).expect("valid");
    let graph = JobGraph::build(&spec, &TestFunctions).expect("graph");
    let env = DeployEnv::new("j", "t", Arc::new(TestFunctions));
    let Err(error) = deploy(&graph, env) else { panic!("a Kafka job deployed without connectors") };
    let error = error.message;
    assert!(error.contains("no Kafka"), "{error}");
}
