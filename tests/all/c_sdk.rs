//! The C SDK (`guest-sdk/c`): its examples in `udfs/c`, built with clang into components, run in a real server on
//! the inputs of the Rust examples they copy, and must give the Rust examples' output byte for byte. The helpers
//! take the language's folder name (`c`, `go`), so that every guest SDK is held to the same checks.

use crate::support::{Rust, TestServer, example, examples, submit};
use eddy_server::client::Client;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

/// Serializes builds within the test binary (tests run in parallel and share the cache).
static BUILD: Mutex<()> = Mutex::new(());

/// Every file under `root` (a folder or one file), sorted, skipping build outputs.
fn files(root: &Path, out: &mut Vec<PathBuf>) {
    if root.is_file() {
        out.push(root.to_path_buf());
        return;
    }
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "wasm") {
            continue;
        }
        files(&path, out);
    }
}

/// The component of `udfs/<lang>/<name>`, built by `udfs/<lang>/build.sh` on first use and cached by a hash of its
/// sources, the SDK, the WIT and the build scripts.
fn build_example(lang: &str, name: &str) -> anyhow::Result<Vec<u8>> {
    let repo = examples().repo();
    let udfs = repo.join("udfs").join(lang);
    let roots = [
        udfs.join(name),
        udfs.join("build.sh"),
        repo.join("guest-sdk").join(lang),
        repo.join("wit"),
        repo.join("tests/services/c-toolchain.sh"),
    ];
    // A cache key only: should another Rust release hash differently, the examples are just built again.
    let mut hasher = std::hash::DefaultHasher::new();
    for root in &roots {
        let mut found = Vec::new();
        files(root, &mut found);
        found.sort();
        for file in found {
            file.strip_prefix(repo).unwrap_or(&file).hash(&mut hasher);
            std::fs::read(&file)?.hash(&mut hasher);
        }
    }
    let out =
        eddy_server::examples::cache_dir().join("udfs").join(format!("{lang}-{name}-{:016x}.wasm", hasher.finish()));
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    if !out.exists() {
        std::fs::create_dir_all(out.parent().unwrap_or(repo))?;
        let tmp = out.with_extension("tmp.wasm");
        let built = Command::new("bash").arg(udfs.join("build.sh")).arg(name).env("OUT", &tmp).output()?;
        anyhow::ensure!(
            built.status.success(),
            "building udfs/{lang}/{name} failed ({}); tests/services/c-toolchain.sh installs the toolchain\n{}{}",
            built.status,
            String::from_utf8_lossy(&built.stdout),
            String::from_utf8_lossy(&built.stderr)
        );
        std::fs::rename(&tmp, &out)?;
    }
    Ok(std::fs::read(&out)?)
}

/// The component of example `name` in language `lang` (`c`, `go`), built on first use.
pub(crate) async fn guest_example(lang: &'static str, name: &'static str) -> Vec<u8> {
    tokio::task::spawn_blocking(move || build_example(lang, name))
        .await
        .expect("build thread")
        .unwrap_or_else(|e| panic!("building {lang} example {name}: {e:#}"))
}

async fn c_example(name: &'static str) -> Vec<u8> {
    guest_example("c", name).await
}

/// Uploads the Rust and the `lang` form of each example, as `rs-<name>` and `<lang>-<name>`.
async fn push_both(c: &Client, lang: &'static str, names: &[&'static str]) {
    for &name in names {
        let rust = example(Rust, name).await;
        c.push_module(&format!("rs-{name}"), None, rust).await.unwrap_or_else(|e| panic!("rust {name}: {e}"));
        let bytes = guest_example(lang, name).await;
        c.push_module(&format!("{lang}-{name}"), None, bytes).await.unwrap_or_else(|e| panic!("{lang} {name}: {e}"));
    }
}

/// A file of `udfs/jobs/`, one record per line.
pub(crate) fn job_lines(file: &str) -> Vec<String> {
    let path = examples().repo().join("udfs/jobs").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().filter(|l| !l.trim().is_empty()).map(str::to_string).collect()
}

/// What an HTTP sink sends until the job ends: each record's event data as the server wrote it, so that a value
/// that is JSON is compared as its bytes, not as parsed JSON.
async fn sink_data(c: &Client, id: &str, sink: &str) -> Vec<String> {
    let mut records = Vec::new();
    let follow = c.follow_output(id, sink, false, |event| {
        if event.event == "record" {
            records.push(event.data);
        }
        event.event != "end"
    });
    tokio::time::timeout(Duration::from_secs(60), follow).await.expect("output ends").expect("output stream");
    records
}

/// The word count of `udfs/jobs/kafka-word-count.yaml` over HTTP, with a lower-casing map in front: one job per
/// language, the sinks after each step.
fn word_count(lang: &str) -> String {
    format!(
        r#"
name: words-{lang}
operators:
  - uid: lines
    source: {{ http: {{}} }}
    watermark: {{ out_of_orderness: 5s, timestamp: {{ json: "$.ts" }} }}
  - {{ uid: lower, map: {lang}-lowercase, input: lines }}
  - {{ uid: words, flat_map: {lang}-split-words, input: lower }}
  - {{ uid: kept, filter: {lang}-stopwords, input: words }}
  - {{ uid: kept-custom, filter: {{ module: {lang}-stopwords, config: {{ words: ["River", "the"] }} }}, input: words }}
  - uid: counts
    input: kept
    key_by: {{ module: {lang}-word-key }}
    window: {{ tumbling: 1m }}
    aggregate: {{ builtin: count }}
  - {{ uid: lowered, sink: http, input: lower }}
  - {{ uid: split, sink: http, input: words }}
  - {{ uid: custom, sink: http, input: kept-custom }}
  - {{ uid: counted, sink: http, input: counts }}
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn c_map_flat_map_filter_and_key_selector_match_rust_byte_for_byte() {
    word_count_matches_rust("c").await;
}

/// Runs the word count with the Rust examples and with those of `lang`, and compares every sink byte for byte.
pub(crate) async fn word_count_matches_rust(lang: &'static str) {
    let server = TestServer::start().await;
    let c = &server.client;
    push_both(c, lang, &["lowercase", "split-words", "stopwords", "word-key"]).await;
    let mut body: String = job_lines("kafka-word-count.input.jsonl").iter().map(|l| format!("{l}\n")).collect();
    // Capitals, Latin-1 letters, an escape and punctuation, which the sample has none of.
    body.push_str(r#"{"text": "The RIVER's \"Café\" ÖLFLUSS, 42 times!", "ts": 1767225695000}"#);
    body.push('\n');
    let mut outputs = Vec::new();
    for lang in ["rs", lang] {
        let id = submit(c, &word_count(lang)).await;
        c.ingest(&id, "lines", body.clone()).await.expect("ingest");
        c.close_input(&id, "lines").await.expect("close");
        let mut sinks = Vec::new();
        for sink in ["lowered", "split", "custom", "counted"] {
            let mut data = sink_data(c, &id, sink).await;
            if sink == "counted" {
                // Windows that close at one watermark fire in no particular order of keys.
                data.sort();
            }
            sinks.push((sink, data));
        }
        assert_eq!(crate::support::wait_ended(c, &id).await["state"], "finished", "{lang}");
        outputs.push(sinks);
    }
    let (rust, guest) = (&outputs[0], &outputs[1]);
    for ((sink, rust), (_, data)) in rust.iter().zip(guest) {
        assert!(!rust.is_empty(), "the Rust job wrote to {sink}");
        assert_eq!(data, rust, "sink {sink}: {lang} against Rust");
    }
    let custom = &rust[2].1;
    assert!(custom.iter().all(|r| !r.contains("\"river\"") && !r.contains("\"the\"")), "{custom:?}");
}

/// Runs seed job `udfs/jobs/<job>.yaml` once with the Rust and once with the `lang` form of its modules, feeding
/// `source` one request per item of `requests`, and returns what each language's job wrote to `sinks`, sorted
/// when `sort` says that records of one firing come in no particular order.
pub(crate) async fn seed_job_in_both(
    lang: &'static str,
    job: &str,
    modules: &[&'static str],
    source: &str,
    requests: &[String],
    sinks: &[&str],
    sort: bool,
) -> [Vec<Vec<String>>; 2] {
    let server = TestServer::start().await;
    let c = &server.client;
    push_both(c, lang, modules).await;
    let path = examples().repo().join("udfs/jobs").join(format!("{job}.yaml"));
    let spec = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut outputs: [Vec<Vec<String>>; 2] = Default::default();
    for (lang, output) in ["rs", lang].into_iter().zip(&mut outputs) {
        let mut job_spec = spec.replace(&format!("name: {job}\n"), &format!("name: {job}-{lang}\n"));
        for module in modules {
            for end in ["\n", " }"] {
                job_spec = job_spec.replace(&format!(": {module}{end}"), &format!(": {lang}-{module}{end}"));
            }
        }
        let id = submit(c, &job_spec).await;
        for request in requests {
            c.ingest(&id, source, request.clone()).await.expect("ingest");
        }
        c.close_input(&id, source).await.expect("close");
        for sink in sinks {
            let mut data = sink_data(c, &id, sink).await;
            if sort {
                data.sort();
            }
            output.push(data);
        }
        assert_eq!(crate::support::wait_ended(c, &id).await["state"], "finished", "{job} in {lang}");
    }
    outputs
}

#[tokio::test(flavor = "multi_thread")]
async fn c_fraud_detector_with_state_and_timers_matches_rust_byte_for_byte() {
    // One request per transaction, as tests/all/seeds.rs sends them: the watermark moves in between, so the cleanup
    // timers fire where they would in a live stream.
    let requests = job_lines("fraud-detection.input.jsonl");
    let [rust, c] =
        seed_job_in_both("c", "fraud-detection", &["fraud-detection"], "transactions", &requests, &["alerts"], false)
            .await;
    assert_eq!(rust[0].len(), 2, "the Rust detector's two alerts: {rust:?}");
    assert_eq!(c, rust, "C against Rust");
}

#[tokio::test(flavor = "multi_thread")]
async fn c_window_functions_and_timestamp_assigner_match_rust_byte_for_byte() {
    // A timestamp assigner and a reduce function.
    let readings = job_lines("sensor-averages.input.jsonl").join("\n");
    let sinks = ["average-per-sensor", "max-per-sensor"];
    let [rust, c] =
        seed_job_in_both("c", "sensor-averages", &["parse-time", "max-reading"], "readings", &[readings], &sinks, true)
            .await;
    assert!(rust.iter().all(|sink| !sink.is_empty()), "{rust:?}");
    assert_eq!(c, rust, "sensor-averages: C against Rust");

    // A process-window function over session windows.
    let clicks = job_lines("user-sessions.input.jsonl");
    let sinks = ["session-summaries"];
    let [rust, c] = seed_job_in_both("c", "user-sessions", &["session-summary"], "clicks", &clicks, &sinks, true).await;
    assert!(!rust[0].is_empty(), "{rust:?}");
    assert_eq!(c, rust, "user-sessions: C against Rust");

    // An aggregate function, over amounts with fractions, so that sums and their JSON are put to the test. Quarters
    // keep every partial sum exact: the Rust module reads its JSON accumulator back with serde_json's default float
    // parser, which is up to an ulp off for 17-digit numbers, where the C module's strtod is exact.
    let payments: Vec<String> = (0..2100)
        .map(|i| match i % 3 {
            0 => format!("{{\"account\":\"acct-a\",\"amount\":{}}}", i / 3),
            _ => format!("{{\"account\":\"acct-b\",\"amount\":{}.{:02}}}", i % 100, i % 4 * 25),
        })
        .collect();
    let requests: Vec<String> = payments.chunks(500).map(|chunk| chunk.join("\n")).collect();
    let sinks = ["stats-per-1000"];
    let [rust, c] =
        seed_job_in_both("c", "batches-of-1000", &["running-stats"], "payments", &requests, &sinks, true).await;
    assert_eq!(rust[0].len(), 1, "acct-b's 1000th payment fires once: {rust:?}");
    assert_eq!(c, rust, "batches-of-1000: C against Rust");
}

#[test]
fn c_codec_reads_and_writes_the_shared_vectors() {
    // The SDK's world-independent half compiles natively, so the host's C compiler checks it without Wasm.
    let repo = examples().repo();
    let dir = tempfile::tempdir().expect("temp dir");
    let binary = dir.path().join("test_eddy");
    let sdk = repo.join("guest-sdk/c");
    let built = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(&sdk)
        .arg(sdk.join("test_eddy.c"))
        .arg(sdk.join("eddy.c"))
        .args(["-lm", "-o"])
        .arg(&binary)
        .output()
        .expect("a C compiler (cc)");
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let ran = Command::new(&binary).arg(repo.join("guest-sdk/codec/testdata/vectors.json")).output().expect("run");
    let report = format!("{}{}", String::from_utf8_lossy(&ran.stdout), String::from_utf8_lossy(&ran.stderr));
    assert!(ran.status.success() && report.contains(" passed, 0 failed"), "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_c_function_that_fails_fails_with_its_message() {
    let server = TestServer::start().await;
    let c = &server.client;
    c.push_module("stop", None, c_example("stopwords").await).await.expect("upload");
    c.push_module("fraud", None, c_example("fraud-detection").await).await.expect("upload");
    // From eddy_init.
    let spec = "name: j\noperators:\n  - { uid: src, source: { http: {} } }\n  - { uid: f, filter: { module: stop, config: { words: 42 } }, input: src }\n  - { uid: out, sink: http, input: f }\n";
    let err = c.submit(spec).await.expect_err("init refuses the config");
    assert_eq!((err.status, err.code.as_str()), (Some(422), "cannot_start"));
    assert!(err.message.contains("config.words must be a list of strings"), "{err}");
    // From a process function, per record.
    let spec = "name: k\nrestart: { strategy: none }\noperators:\n  - { uid: src, source: { http: {} } }\n  - { uid: p, key_by: { json: \"$.account\" }, process: fraud, input: src }\n  - { uid: out, sink: http, input: p }\n";
    let id = submit(c, spec).await;
    c.ingest(&id, "src", "{\"account\": \"a\"}\n".into()).await.expect("ingest");
    let status = crate::support::wait_ended(c, &id).await;
    assert_eq!(status["state"], "failed", "{status:#}");
    assert!(status.to_string().contains("a transaction must be"), "{status:#}");
}
