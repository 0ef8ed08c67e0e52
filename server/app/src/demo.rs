//! `eddy demo`: a server on embedded defaults, the example UDFs uploaded, and a word count whose results the user
//! sees. Everything it does goes through the HTTP API, as a user's own client would.

use crate::client::Client;
use crate::config::ServerConfig;
use crate::examples::{Examples, Language};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The word count: HTTP lines -> words (Rust flat-map) -> without stop words (Rust filter) -> keyed by word (Rust
/// key selector) -> counted per one-minute window (built-in) -> an HTTP output stream; checkpointed every 5 s to the
/// data folder and restarted after a failure.
pub const WORD_COUNT: &str = r#"
name: word-count
checkpoints: { interval: 5s }
restart: { strategy: exponential_delay, initial_delay: 1s, max_delay: 1m, reset_after: 10m }
operators:
  - uid: lines
    source: { http: {} }
    watermark: { strategy: monotonous }
  - { uid: words, flat_map: split-words, input: lines }
  - { uid: no-stopwords, filter: stopwords, input: words }
  - uid: counts
    input: no-stopwords
    key_by: { module: word-key }
    window: { tumbling: 1m }
    aggregate: { builtin: count }
  - { uid: out, sink: http, input: counts }
"#;

const TEXT: &[&str] = &[
    r#"{"text": "A stream is an endless river of events, and every event has a time"}"#,
    r#"{"text": "Windows cut the river into pieces; a watermark says how far the river has flowed"}"#,
    r#"{"text": "Keyed state remembers each key, and timers wake each key up again"}"#,
    r#"{"text": "The river flows, the windows close, the counts come out of the river"}"#,
    r#"{"text": "Every function here runs in a WebAssembly sandbox, and the river keeps flowing"}"#,
];

/// Runs the demo.
pub async fn run(data_dir: Option<PathBuf>) -> anyhow::Result<()> {
    println!("Building the example UDFs (first run: a few minutes)...");
    let examples = tokio::task::spawn_blocking(Examples::locate).await??;
    let mut modules = Vec::new();
    for name in ["split-words", "stopwords", "word-key"] {
        let examples = examples.clone();
        let bytes = tokio::task::spawn_blocking(move || examples.bytes(Language::Rust, name)).await??;
        modules.push((name, bytes));
    }
    let temp = tempfile::tempdir()?;
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse()?,
        data_dir: data_dir.unwrap_or_else(|| temp.path().to_path_buf()),
        ..ServerConfig::default()
    };
    let server = crate::server::start(config).await?;
    let url = server.url();
    let client = Client::new(&url, None, None);
    println!("Eddy is running at {url}");
    for (name, bytes) in modules {
        let record = client.push_module(name, None, bytes).await?;
        println!(
            "  uploaded {name}@{} ({})",
            record["version"].as_str().unwrap_or("?"),
            record["kinds"][0].as_str().unwrap_or("?")
        );
    }
    let job = client.submit(WORD_COUNT).await?;
    let id = job["id"].as_str().unwrap_or_default().to_string();
    println!("  submitted job {id} (word-count)");
    client.ingest(&id, "lines", TEXT.join("\n")).await?;
    client.close_input(&id, "lines").await?;
    println!("  sent {} lines and closed the input; windows fire as event time reaches its end\n", TEXT.len());
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    client
        .follow_output(&id, "out", false, |event| {
            if event.event != "record" {
                return event.event != "end";
            }
            if let Ok(record) = serde_json::from_str::<serde_json::Value>(&event.data) {
                let value = &record["value"];
                if let (Some(word), Some(n)) = (value["key"].as_str(), value["count"].as_u64()) {
                    *counts.entry(word.to_string()).or_default() += n;
                }
            }
            true
        })
        .await?;
    let mut ranked: Vec<(String, u64)> = counts.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    println!("Most frequent words:");
    for (word, n) in ranked.iter().take(10) {
        println!("  {word:<14} {n}");
    }
    let status = client.job(&id).await?;
    println!("\nJob {id} is {}. Per operator (records in -> out):", status["state"].as_str().unwrap_or("?"));
    for op in status["operators"].as_array().into_iter().flatten() {
        println!("  {:<14} {:>4} -> {}", op["uid"].as_str().unwrap_or_default(), op["records_in"], op["records_out"]);
    }
    println!("\nTry it yourself against a server (`cargo run --release -- serve`): see README.md, \"A tour\".");
    server.shutdown().await
}
