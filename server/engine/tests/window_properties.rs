//! Properties of the window operator that hold for any input:
//!
//! - a sliding window whose size is a multiple of its slide counts, per window, what the tumbling windows of
//!   length `slide` that tile it count together;
//! - session windows do not depend on the arrival order of records when the watermark only comes at the end.

use eddy_engine::testing::harness_for;
use proptest::prelude::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;

fn spec(window: &str, function: &str) -> String {
    format!(
        "name: p\noperators:\n  - {{ uid: src, source: {{ http: {{}} }} }}\n  - uid: w\n    input: src\n    key_by: record\n    \
         window: {window}\n    {function}\n  - {{ uid: out, sink: discard, input: w }}\n"
    )
}

/// A record: key, timestamp, value.
type Rec = (String, i64, Value);

/// Runs `records` through the window operator of `spec`; with `watermarks`, each record is preceded by the
/// watermark `ts - 1` (records must then come in timestamp order, so that none is late). The input ends after the
/// last record.
fn run(spec: &str, records: &[Rec], watermarks: bool) -> Vec<Value> {
    let mut input = String::new();
    for (key, ts, value) in records {
        if watermarks {
            input.push_str(&json!({ "watermark": ts - 1 }).to_string());
            input.push('\n');
        }
        input.push_str(&json!({ "record": { "ts": ts, "key": key, "value": value } }).to_string());
        input.push('\n');
    }
    input.push_str("{\"end\": true}\n");
    let mut harness = harness_for(spec, "w").expect("harness");
    harness.run_lines(&input).expect("run")
}

/// Builtin count results by (key, window start, window end); checks each carries the window's max timestamp and
/// appears once.
fn counts(out: &[Value]) -> BTreeMap<(String, i64, i64), u64> {
    let mut counts = BTreeMap::new();
    for line in out {
        let v = &line["value"];
        let key = v["key"].as_str().expect("key").to_string();
        let (start, end) = (v["window_start"].as_i64().expect("start"), v["window_end"].as_i64().expect("end"));
        assert_eq!(line["ts"].as_i64(), Some(end - 1), "a result carries its window's max timestamp: {line}");
        let count = v["count"].as_u64().expect("count");
        assert!(counts.insert((key, start, end), count).is_none(), "one result per window: {line}");
    }
    counts
}

fn records(max_len: usize) -> impl Strategy<Value = Vec<Rec>> {
    proptest::collection::vec((0u8..3, -300i64..300), 1..max_len).prop_map(|raw| {
        raw.into_iter()
            .enumerate()
            .map(|(i, (k, ts))| (["a", "b", "c"][k as usize].to_string(), ts, json!({ "id": i, "v": ts })))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn sliding_counts_are_sums_of_tumbling_counts(
        mut records in records(40), slide in 1i64..20, panes in 1i64..5, offset in 0i64..20, watermarks: bool
    ) {
        let (size, offset) = (slide * panes, offset % slide);
        if watermarks {
            records.sort_by_key(|r| r.1);
        }
        let count = "aggregate: { builtin: count }";
        let sliding = counts(&run(
            &spec(&format!("{{ sliding: {{ size: {size}, slide: {slide} }}, offset: {offset} }}"), count),
            &records,
            watermarks,
        ));
        let tumbling =
            counts(&run(&spec(&format!("{{ tumbling: {slide}, offset: {offset} }}"), count), &records, watermarks));
        // Every sliding window that covers a non-empty tumbling window, with the sum of the tumbling windows it
        // covers.
        let mut expected: BTreeMap<(String, i64, i64), u64> = BTreeMap::new();
        for ((key, start, end), n) in &tumbling {
            prop_assert_eq!(end - start, slide);
            for i in 0..panes {
                let window_start = start - i * slide;
                *expected.entry((key.clone(), window_start, window_start + size)).or_default() += n;
            }
        }
        prop_assert_eq!(tumbling.values().sum::<u64>(), records.len() as u64, "every record is counted once");
        prop_assert_eq!(sliding, expected);
    }

    #[test]
    fn sessions_do_not_depend_on_arrival_order(
        (records, shuffled) in records(30).prop_flat_map(|r| (Just(r.clone()), Just(r).prop_shuffle())),
        gap in 1i64..40
    ) {
        let window = format!("{{ session: {gap} }}");
        for function in ["process: { module: list-window }", "aggregate: { builtin: sum, field: \"$.v\" }"] {
            let spec = spec(&window, function);
            let (mut first, mut second) = (run(&spec, &records, false), run(&spec, &shuffled, false));
            // Within a session, list-window elements come in arrival order; compare them as sets.
            for line in first.iter_mut().chain(second.iter_mut()) {
                if let Some(Value::Array(elements)) = line["value"].get_mut("elements") {
                    elements.sort_by_key(|e| e["id"].as_u64());
                }
            }
            prop_assert_eq!(&first, &second, "{}", function);
        }
        // And the sessions are the ones a simple model finds: sorted timestamps, split where the gap is exceeded.
        let mut by_key: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
        for (key, ts, _) in &records {
            by_key.entry(key).or_default().push(*ts);
        }
        let mut expected: Vec<(i64, String, i64, i64, u64)> = Vec::new();
        for (key, mut stamps) in by_key {
            stamps.sort_unstable();
            let (mut start, mut end, mut n) = (stamps[0], stamps[0] + gap, 0u64);
            for ts in stamps {
                if ts > end {
                    expected.push((end - 1, key.to_string(), start, end, n));
                    (start, n) = (ts, 0);
                }
                end = end.max(ts + gap);
                n += 1;
            }
            expected.push((end - 1, key.to_string(), start, end, n));
        }
        expected.sort();
        let out = run(&spec(&window, "aggregate: { builtin: count }"), &shuffled, false);
        let found: Vec<(i64, String, i64, i64, u64)> = out
            .iter()
            .map(|l| {
                let v = &l["value"];
                (
                    l["ts"].as_i64().unwrap_or_default(),
                    v["key"].as_str().unwrap_or_default().to_string(),
                    v["window_start"].as_i64().unwrap_or_default(),
                    v["window_end"].as_i64().unwrap_or_default(),
                    v["count"].as_u64().unwrap_or_default(),
                )
            })
            .collect();
        prop_assert_eq!(found, expected, "results come in timestamp order, then key order");
    }
}
