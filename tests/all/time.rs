//! Time end to end: event time from a Wasm timestamp assigner, source idleness releasing the watermark of a union,
//! and processing-time timers of a process function firing while the job runs.

use crate::support::{Rust, TestServer, example, output, submit, wait_ended};
use eddy_server::client::Client;
use serde_json::{Value, json};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const T0: i64 = 1_704_067_200_000;

/// The records sink `sink` emits within `within`, stopping at `n`. A late reader gets the retained ones first.
async fn records_within(c: &Client, id: &str, sink: &str, n: usize, within: Duration) -> Vec<Value> {
    let mut records = Vec::new();
    let follow = c.follow_output(id, sink, false, |event| {
        if event.event == "record" {
            records.push(serde_json::from_str(&event.data).expect("record JSON"));
        }
        records.len() < n && event.event != "end"
    });
    if let Ok(result) = tokio::time::timeout(within, follow).await {
        result.expect("output stream");
    }
    records
}

fn operator(status: &Value, uid: &str) -> Value {
    status["operators"].as_array().into_iter().flatten().find(|op| op["uid"] == uid).cloned().unwrap_or_default()
}

fn count(key: &str, start: i64, end: i64, count: u64) -> Value {
    let value = json!({ "key": key, "window_start": start, "window_end": end, "count": count });
    json!({ "ts": end - 1, "key": key, "value": value })
}

const ASSIGNED: &str = r#"
name: assigned-time
operators:
  - uid: readings
    source: { http: {} }
    watermark: { strategy: monotonous, timestamp: { module: parse-time } }
  - { uid: stamped, sink: http, input: readings }
  - uid: per-second
    input: readings
    key_by: { json: "$.sensor" }
    window: { tumbling: 1s }
    aggregate: { builtin: count }
  - { uid: counts, sink: http, input: per-second }
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_wasm_timestamp_assigner_sets_event_time() {
    let server = TestServer::start().await;
    let c = &server.client;
    c.push_module("parse-time", None, example(Rust, "parse-time").await).await.expect("upload");
    let id = submit(c, ASSIGNED).await;
    let readings = [
        r#"{"sensor":"s1","time":1704067200.25}"#,
        r#"{"sensor":"s1","time":"1704067200.999"}"#,
        r#"{"sensor":"s1","time":1704067200.123}"#,
        r#"{"sensor":"s1","time":1704067201.5}"#,
    ];
    c.ingest(&id, "readings", readings.join("\n")).await.expect("ingest");
    c.close_input(&id, "readings").await.expect("close");
    let stamps: Vec<i64> = output(c, &id, "stamped").await.iter().map(|r| r["ts"].as_i64().expect("ts") - T0).collect();
    assert_eq!(stamps, [250, 999, 123, 1500], "seconds with a fraction, as a number or a string, to milliseconds");
    assert_eq!(
        output(c, &id, "counts").await,
        [count("s1", T0, T0 + 1000, 3), count("s1", T0 + 1000, T0 + 2000, 1)],
        "windows follow the assigned time"
    );
    assert_eq!(wait_ended(c, &id).await["state"], "finished");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timestamp_assigner_error_fails_the_job_with_its_message() {
    let server = TestServer::start().await;
    let c = &server.client;
    c.push_module("parse-time", None, example(Rust, "parse-time").await).await.expect("upload");
    let id = submit(c, ASSIGNED).await;
    c.ingest(&id, "readings", r#"{"sensor":"s1","time":"noon"}"#.into()).await.expect("ingest");
    let status = wait_ended(c, &id).await;
    assert_eq!(status["state"], "failed", "{status:#}");
    assert_eq!(status["error"]["operator"], "readings", "{status:#}");
    let message = status["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("`time` is not a number of seconds: \"noon\""), "{message}");
}

/// Two HTTP sources unioned into a 1-second event-time window.
const TWO_SOURCES: &str = r#"
name: two-sources
operators:
  - uid: busy
    source: { http: {} }
    watermark: { strategy: monotonous, idleness: BUSY, timestamp: { json: "$.ts" } }
  - uid: quiet
    source: { http: {} }
    watermark: { strategy: monotonous, idleness: QUIET, timestamp: { json: "$.ts" } }
  - { uid: both, union: {}, input: [busy, quiet] }
  - uid: counts
    input: both
    key_by: { json: "$.k" }
    window: { tumbling: 1s }
    aggregate: { builtin: count }
  - { uid: out, sink: http, input: counts }
"#;

/// [`TWO_SOURCES`] with the given idleness timeouts (none: no idleness).
fn two_sources(busy: Option<&str>, quiet: Option<&str>) -> String {
    let idleness = |timeout: Option<&str>| timeout.map(|t| format!(", idleness: {t}")).unwrap_or_default();
    TWO_SOURCES.replace(", idleness: BUSY", &idleness(busy)).replace(", idleness: QUIET", &idleness(quiet))
}

/// Records at 100, 600 and 1500 ms: the busy source's watermark reaches 1499, past the window [0, 1000).
const BUSY: &str = "{\"k\":\"a\",\"ts\":100}\n{\"k\":\"a\",\"ts\":600}\n{\"k\":\"a\",\"ts\":1500}";

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_source_does_not_hold_back_the_watermark() {
    let server = TestServer::start().await;
    let c = &server.client;
    let submitted = Instant::now();
    let id = submit(c, &two_sources(Some("1s"), Some("1s"))).await;
    c.ingest(&id, "busy", BUSY.into()).await.expect("ingest");
    let first = records_within(c, &id, "out", 1, Duration::from_secs(5)).await;
    assert_eq!(first, [count("a", 0, 1000, 2)], "the window fires while `quiet` has sent nothing");
    assert!(submitted.elapsed() >= Duration::from_secs(1), "not before `quiet` was silent for its idleness");
    let status = c.job(&id).await.expect("status");
    assert_eq!(status["state"], "running");
    assert_eq!(operator(&status, "quiet")["records_out"], 0);
    c.close_input(&id, "busy").await.expect("close");
    c.close_input(&id, "quiet").await.expect("close");
    assert_eq!(output(c, &id, "out").await, [count("a", 0, 1000, 2), count("a", 1000, 2000, 1)]);
    assert_eq!(wait_ended(c, &id).await["state"], "finished");
}

#[tokio::test(flavor = "multi_thread")]
async fn when_the_busy_source_goes_idle_first_the_union_flushes_its_watermark_once_both_are_idle() {
    let server = TestServer::start().await;
    let c = &server.client;
    // `busy` is idle 1 s after its records, before `quiet` (2 s): when `quiet` goes idle too, nothing can move the
    // union's watermark any more, so it flushes the largest one it saw (1499), as Flink's StatusWatermarkValve does.
    let submitted = Instant::now();
    let id = submit(c, &two_sources(Some("1s"), Some("2s"))).await;
    c.ingest(&id, "busy", BUSY.into()).await.expect("ingest");
    let first = records_within(c, &id, "out", 1, Duration::from_secs(6)).await;
    assert_eq!(first, [count("a", 0, 1000, 2)], "fires once both sources are idle");
    assert!(submitted.elapsed() >= Duration::from_secs(2), "not before `quiet` was idle");
    assert_eq!(c.job(&id).await.expect("status")["state"], "running");
    c.close_input(&id, "busy").await.expect("close");
    c.close_input(&id, "quiet").await.expect("close");
    assert_eq!(output(c, &id, "out").await, [count("a", 0, 1000, 2), count("a", 1000, 2000, 1)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_idleness_a_silent_source_holds_windows_back_until_it_sends() {
    let server = TestServer::start().await;
    let c = &server.client;
    let id = submit(c, &two_sources(None, None)).await;
    c.ingest(&id, "busy", BUSY.into()).await.expect("ingest");
    let early = records_within(c, &id, "out", 1, Duration::from_secs(2)).await;
    assert_eq!(early, [] as [Value; 0], "the union's watermark is the silent source's: none yet");
    assert_eq!(operator(&c.job(&id).await.expect("status"), "counts")["records_out"], 0);
    // `quiet` at 1200 ms: the union's watermark becomes min(1499, 1199), past the first window only.
    c.ingest(&id, "quiet", "{\"k\":\"b\",\"ts\":1200}".into()).await.expect("ingest");
    let first = records_within(c, &id, "out", 1, Duration::from_secs(5)).await;
    assert_eq!(first, [count("a", 0, 1000, 2)]);
    assert_eq!(c.job(&id).await.expect("status")["state"], "running");
    c.close_input(&id, "busy").await.expect("close");
    c.close_input(&id, "quiet").await.expect("close");
    assert_eq!(
        output(c, &id, "out").await,
        [count("a", 0, 1000, 2), count("a", 1000, 2000, 1), count("b", 1000, 2000, 1)]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_idleness_a_silent_source_holds_windows_back_until_it_closes() {
    let server = TestServer::start().await;
    let c = &server.client;
    let id = submit(c, &two_sources(None, None)).await;
    c.ingest(&id, "busy", BUSY.into()).await.expect("ingest");
    let early = records_within(c, &id, "out", 1, Duration::from_secs(2)).await;
    assert_eq!(early, [] as [Value; 0], "the union's watermark is the silent source's: none yet");
    // Closing `quiet` sends its final watermark: the union follows `busy` alone.
    c.close_input(&id, "quiet").await.expect("close");
    let first = records_within(c, &id, "out", 1, Duration::from_secs(5)).await;
    assert_eq!(first, [count("a", 0, 1000, 2)]);
    assert_eq!(c.job(&id).await.expect("status")["state"], "running", "`busy` is still open");
    c.close_input(&id, "busy").await.expect("close");
    assert_eq!(output(c, &id, "out").await, [count("a", 0, 1000, 2), count("a", 1000, 2000, 1)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_processing_time_timer_fires_while_the_job_runs() {
    let server = TestServer::start().await;
    let c = &server.client;
    c.push_module("remind-later", None, example(Rust, "remind-later").await).await.expect("upload");
    let id = submit(
        c,
        r#"
name: reminders
operators:
  - { uid: notes, source: { http: {} } }
  - { uid: remind, input: notes, key_by: { json: "$.user" }, process: remind-later }
  - { uid: out, sink: http, input: remind }
"#,
    )
    .await;
    let wall_clock = || SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as i64;
    let (sent, sent_at) = (Instant::now(), wall_clock());
    c.ingest(&id, "notes", r#"{"user":"u1","text":"call back"}"#.into()).await.expect("ingest");
    let reminders = records_within(c, &id, "out", 1, Duration::from_secs(5)).await;
    let elapsed = sent.elapsed();
    assert_eq!(reminders.len(), 1, "the timer fired within 5 s, with the input still open");
    assert_eq!(reminders[0]["key"], "u1");
    assert_eq!(reminders[0]["value"], json!({ "user": "u1", "text": "call back" }));
    let due = reminders[0]["ts"].as_i64().expect("ts");
    assert!(due >= sent_at + 200, "due 200 ms after it arrived: {due} vs sent at {sent_at}");
    assert!(elapsed >= Duration::from_millis(200), "not before it was due: {elapsed:?}");
    assert_eq!(c.job(&id).await.expect("status")["state"], "running");
    c.close_input(&id, "notes").await.expect("close");
    assert_eq!(wait_ended(c, &id).await["state"], "finished");
}
