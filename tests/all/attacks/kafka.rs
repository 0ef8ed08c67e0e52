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
