//! The seed jobs of `udfs/jobs/`, run as written: each test uploads the job's modules over HTTP, submits its spec
//! file, feeds its sample input and checks the exact output, derived by hand from Flink's semantics. Sample inputs
//! start at 2024-01-01T00:00:00Z (`T0`).

use crate::support::{Rust, TestServer, example, examples, output, submit, wait_ended, wait_job};
use eddy_server::client::Client;
use serde_json::{Value, json};
use std::time::Duration;

const T0: i64 = 1_704_067_200_000;
const SEC: i64 = 1_000;
const MIN: i64 = 60 * SEC;

/// A file of `udfs/jobs/`.
fn job_file(file: &str) -> String {
    let path = examples().repo().join("udfs/jobs").join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn lines(file: &str) -> Vec<String> {
    job_file(file).lines().filter(|l| !l.trim().is_empty()).map(str::to_string).collect()
}

/// A server with the example modules uploaded under their own names, running `udfs/jobs/<job>.yaml`.
async fn start(job: &str, modules: &[&'static str]) -> (TestServer, String) {
    let server = TestServer::start().await;
    for &module in modules {
        let bytes = example(Rust, module).await;
        server.client.push_module(module, None, bytes).await.unwrap_or_else(|e| panic!("uploading {module}: {e}"));
    }
    let id = submit(&server.client, &job_file(&format!("{job}.yaml"))).await;
    (server, id)
}

/// Sends one request per record: the source emits its watermark after each, so event time advances in between.
async fn post_each(c: &Client, id: &str, source: &str, records: &[String]) {
    for record in records {
        c.ingest(id, source, record.clone()).await.expect("ingest");
    }
}

/// Waits until operator `uid` has taken in `n` records.
async fn wait_records_in(c: &Client, id: &str, uid: &str, n: u64) {
    wait_job(c, id, Duration::from_secs(10), |status| {
        let ops = status["operators"].as_array().into_iter().flatten();
        ops.filter(|op| op["uid"] == uid).any(|op| op["records_in"].as_u64() == Some(n))
    })
    .await;
}

/// An output record as `support::output` returns it.
fn record(ts: i64, key: &str, value: Value) -> Value {
    json!({ "ts": ts, "key": key, "value": value })
}

async fn assert_finished(c: &Client, id: &str) {
    let status = wait_ended(c, id).await;
    assert_eq!(status["state"], "finished", "{status:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn fraud_detection_alerts_on_a_small_then_a_large_transaction_within_a_minute() {
    let (server, id) = start("fraud-detection", &["fraud-detection"]).await;
    let c = &server.client;
    // One request per transaction: the watermark (5 s behind the latest transaction) moves between them, so the
    // cleanup timers fire where they would in a live stream.
    post_each(c, &id, "transactions", &lines("fraud-detection.input.jsonl")).await;
    c.close_input(&id, "transactions").await.expect("close");
    let alerts = output(c, &id, "alerts").await;
    // acct-1: 0.50 at 0:00, 24.00 at 0:20, 750.00 at 0:40 -> alert with the window's amounts and merchants.
    // acct-2: 0.10 at 0:50, 900.00 at 2:10 is 80 s later -> no alert.
    // acct-1: 0.90 at 3:00, 0.75 at 3:10 (the window restarts at the later small one: timer at 4:10), 45.00 at
    //   3:20; acct-2's 5.00 at 4:20 moves the watermark to 4:14.999, the timer fires and clears acct-1's state, so
    //   the out-of-order 620.00 at 3:50 finds no small transaction -> no alert.
    // acct-2: 0.20 at 5:00, 510.00 at 5:30 -> alert; the window holds only these two.
    // acct-1: 0.30 at 6:40 is still pending at the end: its timer fires at the final watermark, silently.
    assert_eq!(
        alerts,
        vec![
            record(
                T0 + 40 * SEC,
                "acct-1",
                json!({
                    "account": "acct-1",
                    "small_time": T0,
                    "small_amount": 0.5,
                    "large_time": T0 + 40 * SEC,
                    "large_amount": 750.0,
                    "recent_amounts": [0.5, 24.0, 750.0],
                    "merchants": { "bookstore": 1, "coffee-shop": 1, "electronics": 1 },
                })
            ),
            record(
                T0 + 330 * SEC,
                "acct-2",
                json!({
                    "account": "acct-2",
                    "small_time": T0 + 300 * SEC,
                    "small_amount": 0.2,
                    "large_time": T0 + 330 * SEC,
                    "large_amount": 510.0,
                    "recent_amounts": [0.2, 510.0],
                    "merchants": { "airline": 1, "vending": 1 },
                })
            ),
        ]
    );
    assert_finished(c, &id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn page_views_counts_with_late_firings_and_a_dead_letter_sink() {
    let (server, id) = start("page-views", &[]).await;
    let c = &server.client;
    // One request per view, so that the watermark (10 s behind) moves between views and lateness is exact.
    post_each(c, &id, "views", &lines("page-views.input.jsonl")).await;
    c.close_input(&id, "views").await.expect("close");
    let count = |page: &str, start: i64, count: u64| {
        let (start, end) = (T0 + start * MIN, T0 + (start + 5) * MIN);
        record(end - 1, page, json!({ "key": page, "window_start": start, "window_end": end, "count": count }))
    };
    assert_eq!(
        output(c, &id, "views-per-page").await,
        vec![
            // /pricing at 5:20 moves the watermark to 5:09.999: [0:00, 5:00) fires, in key order.
            count("/home", 0, 3),
            count("/pricing", 0, 1),
            // /home at 3:00 is late but within the 2 minutes of lateness (cleanup at 6:59.999): a late firing with
            // the updated count.
            count("/home", 0, 4),
            // /about at 10:30 moves the watermark to 10:19.999: [5:00, 10:00) fires.
            count("/about", 5, 1),
            count("/home", 5, 2),
            count("/pricing", 5, 1),
            // The final watermark fires the last window.
            count("/about", 10, 1),
        ]
    );
    // /pricing at 4:00 arrives when the watermark is 8:49.999: its window was cleaned up at 6:59.999.
    assert_eq!(
        output(c, &id, "dead-letter").await,
        vec![record(T0 + 4 * MIN, "/pricing", json!({ "page": "/pricing", "user": "u5", "ts": T0 + 4 * MIN }))]
    );
    assert_finished(c, &id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sensor_averages_slide_and_maxima_reduce_on_wasm_assigned_time() {
    let (server, id) = start("sensor-averages", &["parse-time", "max-reading"]).await;
    let c = &server.client;
    let readings = lines("sensor-averages.input.jsonl");
    c.ingest(&id, "readings", readings.join("\n")).await.expect("ingest");
    c.close_input(&id, "readings").await.expect("close");
    // Readings (seconds after T0): s1 20 @30.5, 23 @90.25, 26 @135.75, 21.5 @320; s2 10 @45.125, 14 @100. Each
    // belongs to the five windows [k min, k min + 5 min) that contain it; results come in window-end, then key order.
    let average = |sensor: &str, start_min: i64, avg: Value| {
        let (start, end) = (T0 + start_min * MIN, T0 + (start_min + 5) * MIN);
        record(end - 1, sensor, json!({ "key": sensor, "window_start": start, "window_end": end, "avg": avg }))
    };
    assert_eq!(
        output(c, &id, "average-per-sensor").await,
        vec![
            average("s1", -4, json!(20)),
            average("s2", -4, json!(10)),
            average("s1", -3, json!(21.5)),
            average("s2", -3, json!(12)),
            average("s1", -2, json!(23)),
            average("s2", -2, json!(12)),
            average("s1", -1, json!(23)),
            average("s2", -1, json!(12)),
            average("s1", 0, json!(23)),
            average("s2", 0, json!(12)),
            average("s1", 1, json!(23.5)),
            average("s2", 1, json!(14)),
            average("s1", 2, json!(23.75)),
            average("s1", 3, json!(21.5)),
            average("s1", 4, json!(21.5)),
            average("s1", 5, json!(21.5)),
        ]
    );
    // The reduce keeps the whole record with the largest value; results carry the window's last millisecond.
    let reading = |line: usize| serde_json::from_str::<Value>(&readings[line]).expect("JSON");
    assert_eq!(
        output(c, &id, "max-per-sensor").await,
        vec![
            record(T0 + 5 * MIN - 1, "s1", reading(4)),
            record(T0 + 5 * MIN - 1, "s2", reading(3)),
            record(T0 + 10 * MIN - 1, "s1", reading(5)),
        ]
    );
    assert_eq!(reading(4)["value"], 26.0);
    assert_finished(c, &id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn user_sessions_close_after_thirty_minutes_without_a_click() {
    let (server, id) = start("user-sessions", &["session-summary"]).await;
    let c = &server.client;
    post_each(c, &id, "clicks", &lines("user-sessions.input.jsonl")).await;
    c.close_input(&id, "clicks").await.expect("close");
    let session = |user: &str, first: i64, last: i64, clicks: u64, pages: &[&str]| {
        let (start, end) = (T0 + first * MIN, T0 + (last + 30) * MIN);
        record(end - 1, user, json!({ "user": user, "start": start, "end": end, "clicks": clicks, "pages": pages }))
    };
    assert_eq!(
        output(c, &id, "session-summaries").await,
        vec![
            // Clicks at 0:00, 0:05, 0:20: one session until 0:50.
            session("alice", 0, 20, 3, &["/home", "/products"]),
            // 0:10, 0:35, then 1:05, exactly where [0:10, 1:05) ends: touching sessions merge, as in Flink.
            session("bob", 10, 65, 3, &["/home", "/blog", "/about"]),
            session("alice", 90, 90, 1, &["/home"]),
            session("bob", 130, 130, 1, &["/home"]),
        ]
    );
    assert_finished(c, &id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn batches_of_1000_fire_and_purge_per_key() {
    let (server, id) = start("batches-of-1000", &["running-stats"]).await;
    let c = &server.client;
    // 2,500 payments of acct-a (amounts 1..=2500) and 1,000 of acct-b (amounts 0.25..=99.25), interleaved.
    let (mut a, mut b) = (0u32, 0u32);
    let mut payments = Vec::new();
    for i in 0..3500 {
        if matches!(i % 7, 2 | 5) {
            payments.push(json!({ "account": "acct-b", "amount": f64::from(b % 100) + 0.25 }).to_string());
            b += 1;
        } else {
            a += 1;
            payments.push(json!({ "account": "acct-a", "amount": a }).to_string());
        }
    }
    assert_eq!((a, b), (2500, 1000));
    for chunk in payments.chunks(500) {
        c.ingest(&id, "payments", chunk.join("\n")).await.expect("ingest");
    }
    c.close_input(&id, "payments").await.expect("close");
    let stats = |key: &str, sum: f64, min: f64, max: f64| {
        record(i64::MAX, key, json!({ "count": 1000, "sum": sum, "min": min, "max": max }))
    };
    // acct-a's 1000th payment is record 1400, its 2000th record 2800, acct-b's 1000th record 3499. The window
    // starts empty after each firing; acct-a's last 500 never reach the count (a global window has no end).
    assert_eq!(
        output(c, &id, "stats-per-1000").await,
        vec![
            stats("acct-a", 500_500.0, 1.0, 1000.0),
            stats("acct-a", 1_500_500.0, 1001.0, 2000.0),
            stats("acct-b", 49_750.0, 0.25, 99.25),
        ]
    );
    assert_finished(c, &id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn order_enrichment_joins_customers_and_orders_in_shared_keyed_state() {
    let (server, id) = start("order-enrichment", &["enrich-orders"]).await;
    let c = &server.client;
    let customers = lines("order-enrichment.customers.input.jsonl");
    let orders = lines("order-enrichment.orders.input.jsonl");
    // The two sources are separate tasks: wait until each record reached `enrich` before sending the next, so the
    // interleaving is the one described.
    let steps: [(&str, &String); 10] = [
        ("customers", &customers[0]), // c1 at 0:00
        ("orders", &orders[0]),       // o1 (c1) at 0:10: c1 is known, enriched at once
        ("orders", &orders[1]),       // o2 (c2) at 0:20: waits, timer at 1:20
        ("orders", &orders[2]),       // o3 (c3) at 0:30: waits, timer at 1:30
        ("customers", &customers[1]), // c2 at 0:50: o2 leaves the list enriched, its timer is deleted
        ("orders", &orders[3]),       // o4 (c1) at 1:40: enriched at once; watermark min(0:44.999, 1:34.999)
        ("customers", &customers[2]), // c4 at 2:00: watermark min(1:54.999, 1:34.999) passes 1:30: o3 unmatched
        ("orders", &orders[4]),       // o5 (c3) at 2:10: c3 still unknown, waits, timer at 3:10
        ("customers", &customers[3]), // c3 at 2:20: o5 leaves the list enriched
        ("orders", &orders[5]),       // o6 (c9) at 2:30: waits; no c9 ever comes, its timer fires at the end
    ];
    for (n, (source, record)) in steps.into_iter().enumerate() {
        c.ingest(&id, source, record.clone()).await.expect("ingest");
        wait_records_in(c, &id, "enrich", n as u64 + 1).await;
    }
    c.close_input(&id, "customers").await.expect("close");
    c.close_input(&id, "orders").await.expect("close");
    let parse = |line: &String| serde_json::from_str::<Value>(line).expect("JSON");
    // Outputs carry the order's event time, and its customer as key.
    let as_output = |value: Value| {
        let ts = value["ts"].as_i64().expect("ts");
        let customer = value["customer"].as_str().expect("customer").to_string();
        record(ts, &customer, value)
    };
    let enriched = |order: usize, customer: usize| {
        let mut value = parse(&orders[order]);
        value["profile"] = parse(&customers[customer]);
        as_output(value)
    };
    assert_eq!(
        output(c, &id, "enriched-orders").await,
        vec![enriched(0, 0), enriched(1, 1), enriched(3, 0), enriched(4, 3)]
    );
    let unmatched = |order: usize| as_output(parse(&orders[order]));
    assert_eq!(output(c, &id, "unmatched-orders").await, vec![unmatched(2), unmatched(5)]);
    assert_eq!(unmatched(2)["ts"], T0 + 30 * SEC);
    assert_finished(c, &id).await;
}
