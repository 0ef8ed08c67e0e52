//! A tenant reaching native code or other tenants through Kafka settings.

use super::{ACME, GLOBEX, two_tenants};
use crate::support::{submit, wait_ended};

/// A shared library whose constructor writes `marker`: what a tenant would plant on the server's disk and have
/// librdkafka `dlopen()` through `plugin.library.paths`.
fn planted_library(folder: &std::path::Path, marker: &std::path::Path) -> std::path::PathBuf {
    let source = folder.join("plant.c");
    let library = folder.join("part-0-0.jsonl");
    std::fs::write(
        &source,
        format!(
            "#include <stdio.h>\n__attribute__((constructor)) static void planted(void) {{ FILE *f = fopen(\"{}\", \"w\"); if (f) fclose(f); }}\n",
            marker.display()
        ),
    )
    .expect("write the library's source");
    let built = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&library)
        .arg(&source)
        .status()
        .expect("cc runs");
    assert!(built.success(), "cc built the library");
    library
}

#[tokio::test(flavor = "multi_thread")]
async fn no_kafka_setting_of_a_spec_loads_code_names_a_file_or_runs_a_command() {
    let server = two_tenants(|c| c.kafka_allowed_brokers = Some(vec!["127.0.0.1:9".into()])).await;
    let acme = server.client_with(Some(ACME), None);
    let folder = server.data_dir().join("files/acme/evil");
    std::fs::create_dir_all(&folder).expect("mkdir");
    let marker = server.data_dir().join("constructor-ran");
    let library = planted_library(&folder, &marker);
    let job = |properties: &str| {
        format!(
            "name: k\noperators:\n  - {{ uid: in, source: {{ kafka: {{ brokers: \"127.0.0.1:9\", topics: [t], properties: {{ {properties} }} }} }} }}\n  - {{ uid: out, sink: discard, input: in }}\n"
        )
    };
    for (property, value) in [
        ("plugin.library.paths", format!("/proc/self/cwd/{}", library.display())),
        ("plugin.library.paths", library.display().to_string()),
        ("ssl.ca.location", "/etc/shadow".to_string()),
        ("ssl.engine.location", library.display().to_string()),
        ("sasl.kerberos.kinit.cmd", format!("cp /etc/passwd {}", marker.display())),
        ("sasl.oauthbearer.token.endpoint.url", "http://169.254.169.254/".to_string()),
        ("queue.buffering.max.kbytes", "2097151".to_string()),
        ("fetch.max.bytes", "2147483135".to_string()),
    ] {
        let refused = acme.submit(&job(&format!("{property}: \"{value}\""))).await.expect_err(property);
        assert_eq!((refused.status, refused.code.as_str()), (Some(400), "invalid_spec"), "{property}: {refused}");
        assert!(refused.message.contains(&format!("properties.{property}")), "{refused}");
    }
    assert!(!marker.exists(), "no planted code ran");
    // The other tenant's jobs run on.
    let globex = server.client_with(Some(GLOBEX), None);
    let id = submit(&globex, "name: g\noperators:\n  - { uid: src, source: { generator: { events: 1000 } } }\n  - { uid: out, sink: discard, input: src }\n").await;
    assert_eq!(wait_ended(&globex, &id).await["state"], "finished");
}

/// A Kafka job whose broker does not answer: the submission is answered without waiting out the broker's timeout,
/// and the failure shows in the job's status.
#[tokio::test(flavor = "multi_thread")]
async fn a_kafka_job_whose_broker_does_not_answer_does_not_hold_its_submission() {
    let server = crate::support::TestServer::start().await;
    let spec = "name: k\noperators:\n  - { uid: in, source: { kafka: { brokers: \"127.0.0.1:9\", topics: [t] } } }\n  - { uid: out, sink: discard, input: in }\n";
    let started = std::time::Instant::now();
    let view = server.client.submit(spec).await.expect("accepted");
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "answered in {:?}", started.elapsed());
    assert_eq!(view["state"], "starting", "{view:#}");
    let id = view["id"].as_str().expect("id").to_string();
    let failed =
        crate::support::wait_job(&server.client, &id, std::time::Duration::from_secs(90), |s| s["state"] == "failed")
            .await;
    let message = failed["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("cannot reach the Kafka brokers 127.0.0.1:9"), "{message}");
    // The tenant may submit again meanwhile: no slot stayed taken.
    assert_eq!(server.client.usage().await.expect("usage")["used"]["jobs"], 0);
}
