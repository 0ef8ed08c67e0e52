//! The window operator against hostile input: guest functions that return the wrong number of results, window
//! specs with millions of panes per window, timestamps at the ends of the time line, and integers that an f64
//! cannot hold.

use eddy_engine::error::{ErrorDomain, TaskError, UdfError};
use eddy_engine::function::{AggregateFunction, Outputs, ProcessWindowFunction, ReduceFunction, WindowContents};
use eddy_engine::json::JsonPath;
use eddy_engine::spec::{AssignerSpec, BuiltinAggregate, EvictorKind, EvictorSpec, Millis, TimeDomain};
use eddy_engine::state::{KeyedStateStore, MemoryStateStore, StateError, StateId, StateKey};
use eddy_engine::testing::{Harness, harness_for};
use eddy_engine::window::builtin::Builtin;
use eddy_engine::window::{Incremental, ResultFormat, WindowConfig, WindowFunctions, WindowOperator};
use eddy_engine::{Batch, Record};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};

/// How many results a test double returns compared to what it was asked for.
#[derive(Clone, Copy)]
enum Miscount {
    Fewer,
    More,
}

impl Miscount {
    fn apply(self, batch: &Batch) -> Batch {
        let mut out: Batch = batch.iter().skip(matches!(self, Miscount::Fewer) as usize).collect();
        if let (Miscount::More, Some(first)) = (self, batch.iter().next()) {
            out.push_record(&first);
        }
        out
    }
}

/// Counts records, as a guest would, but returns the wrong number of results.
struct MiscountingAggregate(Miscount);

fn count_of(bytes: &[u8]) -> u64 {
    bytes.first_chunk::<8>().map_or(0, |b| u64::from_le_bytes(*b))
}

fn counts(values: impl Iterator<Item = u64>) -> Batch {
    let mut out = Batch::new();
    for v in values {
        out.push(0, None, &v.to_le_bytes());
    }
    out
}

impl AggregateFunction for MiscountingAggregate {
    fn create_accumulator(&mut self) -> Result<Vec<u8>, UdfError> {
        Ok(0u64.to_le_bytes().to_vec())
    }
    fn add(&mut self, accumulators: &Batch, inputs: &Batch, targets: &[u32]) -> Result<Batch, UdfError> {
        let mut accs: Vec<u64> = accumulators.iter().map(|r| count_of(r.value)).collect();
        for (_, &t) in inputs.iter().zip(targets) {
            *accs.get_mut(t as usize).ok_or_else(|| UdfError::new("bad target"))? += 1;
        }
        Ok(counts(accs.into_iter()))
    }
    fn merge(&mut self, accumulators: &Batch, others: &Batch, targets: &[u32]) -> Result<Batch, UdfError> {
        let mut accs: Vec<u64> = accumulators.iter().map(|r| count_of(r.value)).collect();
        for (other, &t) in others.iter().zip(targets) {
            *accs.get_mut(t as usize).ok_or_else(|| UdfError::new("bad target"))? += count_of(other.value);
        }
        Ok(counts(accs.into_iter()))
    }
    fn get_result(&mut self, accumulators: &Batch) -> Result<Batch, UdfError> {
        let results = counts(accumulators.iter().map(|r| count_of(r.value)));
        Ok(self.0.apply(&results))
    }
}

/// Keeps the first record of a window, but returns the wrong number of accumulators.
struct MiscountingReduce(Miscount);

impl ReduceFunction for MiscountingReduce {
    fn reduce(&mut self, accumulators: &Batch, _: &Batch, _: &[u32]) -> Result<Batch, UdfError> {
        Ok(self.0.apply(accumulators))
    }
}

/// Emits each window's first element.
struct FirstElement;

impl ProcessWindowFunction for FirstElement {
    fn process_windows(&mut self, windows: &[WindowContents], out: &mut Outputs) -> Result<(), UdfError> {
        for w in windows {
            if let Some(first) = w.elements.iter().next() {
                out.main.push_record(&Record { key: w.key.as_deref(), ..first });
            }
        }
        Ok(())
    }
}

/// A memory store that counts removals, to see how many slices cleanup visits.
struct CountingStore {
    inner: MemoryStateStore,
    removes: Arc<AtomicUsize>,
}

impl KeyedStateStore for CountingStore {
    fn register(&mut self, name: &str) -> StateId {
        self.inner.register(name)
    }
    fn get_into(
        &mut self,
        state: StateId,
        key: StateKey<'_>,
        ns: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<bool, StateError> {
        self.inner.get_into(state, key, ns, out)
    }
    fn contains(&mut self, state: StateId, key: StateKey<'_>, ns: &[u8]) -> Result<bool, StateError> {
        self.inner.contains(state, key, ns)
    }
    fn put(&mut self, state: StateId, key: StateKey<'_>, ns: &[u8], value: &[u8]) -> Result<(), StateError> {
        self.inner.put(state, key, ns, value)
    }
    fn append(&mut self, state: StateId, key: StateKey<'_>, ns: &[u8], bytes: &[u8]) -> Result<(), StateError> {
        self.inner.append(state, key, ns, bytes)
    }
    fn remove(&mut self, state: StateId, key: StateKey<'_>, ns: &[u8]) -> Result<(), StateError> {
        self.removes.fetch_add(1, AtomicOrdering::Relaxed);
        self.inner.remove(state, key, ns)
    }
    fn entries(&mut self, state: StateId, key: StateKey<'_>) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StateError> {
        self.inner.entries(state, key)
    }
    fn scan(
        &mut self,
        state: StateId,
        key: StateKey<'_>,
        from: &[u8],
        to: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<(), StateError> {
        self.inner.scan(state, key, from, to, visit)
    }
    fn remove_key(&mut self, state: StateId, key: StateKey<'_>) -> Result<(), StateError> {
        self.inner.remove_key(state, key)
    }
    fn cleanup_step(
        &mut self,
        state: StateId,
        cursor: usize,
        limit: usize,
        expired: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<usize, StateError> {
        self.inner.cleanup_step(state, cursor, limit, expired)
    }
    fn snapshot_each(
        &mut self,
        keep: &mut dyn FnMut(StateId, &[u8]) -> bool,
        out: &mut dyn FnMut(eddy_engine::checkpoint::EntryRef<'_>),
    ) -> Result<(), StateError> {
        self.inner.snapshot_each(keep, out)
    }
    fn len(&mut self, state: StateId) -> usize {
        self.inner.len(state)
    }
}

/// A keyed event-time window operator, built without a job spec.
fn operator_harness(
    assigner: AssignerSpec,
    evictor: Option<EvictorSpec>,
    format: ResultFormat,
    functions: WindowFunctions,
) -> Harness {
    operator_harness_over(assigner, evictor, format, functions, Box::<MemoryStateStore>::default())
}

fn operator_harness_over(
    assigner: AssignerSpec,
    evictor: Option<EvictorSpec>,
    format: ResultFormat,
    functions: WindowFunctions,
    store: Box<dyn KeyedStateStore>,
) -> Harness {
    let cfg = WindowConfig {
        assigner,
        time: TimeDomain::Event,
        trigger: None,
        evictor,
        allowed_lateness: 0,
        late_output: None,
        format,
        keyed: true,
        max_parallelism: 128,
    };
    let op = WindowOperator::new(cfg, functions, store).expect("operator");
    Harness::new(Box::new(op))
}

fn window_harness(incremental: Incremental, evictor: Option<EvictorSpec>) -> Harness {
    let functions = WindowFunctions { incremental: Some(incremental), process: Some(Box::new(FirstElement)) };
    let tumbling = AssignerSpec::Tumbling { size: Millis(10), offset: Millis(0) };
    operator_harness(tumbling, evictor, ResultFormat::Raw, functions)
}

/// Two windows of two keys, fired together by the end of input.
fn run_two_windows(mut harness: Harness) -> Result<Vec<Value>, TaskError> {
    let mut batch = Batch::new();
    batch.push(1, Some(b"a"), b"1");
    batch.push(2, Some(b"a"), b"2");
    batch.push(3, Some(b"b"), b"3");
    harness.batch(0, batch)?;
    harness.finish()?;
    Ok(harness.take())
}

fn assert_user_error(result: Result<Vec<Value>, TaskError>, function: &str) {
    let err = result.expect_err("a wrong result count must fail the task");
    assert_eq!(err.domain, ErrorDomain::User, "{err}");
    assert!(err.message.contains(function), "names the {function} function: {err}");
}

#[test]
fn process_window_after_an_aggregate_returning_too_few_results_fails_cleanly() {
    let harness = window_harness(Incremental::Aggregate(Box::new(MiscountingAggregate(Miscount::Fewer))), None);
    assert_user_error(run_two_windows(harness), "aggregate function");
}

#[test]
fn process_window_after_an_aggregate_returning_too_many_results_fails_cleanly() {
    let harness = window_harness(Incremental::Aggregate(Box::new(MiscountingAggregate(Miscount::More))), None);
    assert_user_error(run_two_windows(harness), "aggregate function");
}

#[test]
fn process_window_after_an_evicting_aggregate_returning_too_few_results_fails_cleanly() {
    let evictor = EvictorSpec { kind: EvictorKind::Count(10), after: false };
    let harness =
        window_harness(Incremental::Aggregate(Box::new(MiscountingAggregate(Miscount::Fewer))), Some(evictor));
    assert_user_error(run_two_windows(harness), "aggregate function");
}

#[test]
fn process_window_after_an_evicting_reduce_returning_the_wrong_count_fails_cleanly() {
    for miscount in [Miscount::Fewer, Miscount::More] {
        let evictor = EvictorSpec { kind: EvictorKind::Count(10), after: false };
        let harness = window_harness(Incremental::Reduce(Box::new(MiscountingReduce(miscount))), Some(evictor));
        assert_user_error(run_two_windows(harness), "reduce function");
    }
}

fn spec(window: &str, function: &str) -> String {
    format!(
        "name: r\noperators:\n  - {{ uid: src, source: {{ http: {{}} }} }}\n  - uid: w\n    input: src\n    key_by: record\n    \
         window: {window}\n    {function}\n  - {{ uid: out, sink: discard, input: w }}\n"
    )
}

fn run(spec: &str, input: &[Value]) -> Vec<Value> {
    let lines: Vec<String> = input.iter().map(Value::to_string).collect();
    let mut harness = harness_for(spec, "w").expect("harness");
    harness.run_lines(&lines.join("\n")).expect("run")
}

fn record(ts: i64, key: &str, value: Value) -> Value {
    json!({ "record": { "ts": ts, "key": key, "value": value } })
}

/// `gcd(1d, 1d - 1ms)` is 1 ms: 86.4 million panes per window. Firing and cleaning up must visit only the panes
/// that hold records, or this takes minutes. (Job specs bound the panes per window too; the operator must not rely
/// on it, so it is built here without a spec.)
#[test]
fn sliding_day_windows_with_millisecond_panes_fire_and_clean_up() {
    const DAY: i64 = 86_400_000;
    const SLIDE: i64 = DAY - 1;
    let sliding = AssignerSpec::Sliding { size: Millis(DAY), slide: Millis(SLIDE), offset: Millis(0) };
    let sum = Builtin::new(BuiltinAggregate::Sum, Some(JsonPath::parse("$.v").expect("path")));
    let functions = WindowFunctions { incremental: Some(Incremental::Aggregate(Box::new(sum))), process: None };
    let removes = Arc::new(AtomicUsize::new(0));
    let store = Box::new(CountingStore { inner: MemoryStateStore::default(), removes: Arc::clone(&removes) });
    let mut harness = operator_harness_over(sliding, None, ResultFormat::Json { name: "sum".into() }, functions, store);
    // Windows start at multiples of the slide and overlap by 1 ms: DAY - 1 is in [0, DAY) and [SLIDE, SLIDE + DAY).
    let input = [
        record(5, "a", json!({ "v": 1 })),
        record(DAY + 5, "a", json!({ "v": 2 })),
        record(7, "b", json!({ "v": 10 })),
        record(DAY - 1, "b", json!({ "v": 100 })),
        json!({ "watermark": DAY }),
        record(DAY + 6, "a", json!({ "v": 4 })),
        json!({ "end": true }),
    ];
    let window = |key: &str, start: i64, sum: i64| {
        json!({
            "ts": start + DAY - 1,
            "key": key,
            "value": { "key": key, "window_start": start, "window_end": start + DAY, "sum": sum },
        })
    };
    let lines: Vec<String> = input.iter().map(Value::to_string).collect();
    let out = harness.run_lines(&lines.join("\n")).expect("run");
    assert_eq!(out, vec![window("a", 0, 1), window("b", 0, 110), window("a", SLIDE, 6), window("b", SLIDE, 100)]);
    // Four windows, five panes stored: cleanup removes those panes (and trigger state), not every possible pane.
    let removes = removes.load(AtomicOrdering::Relaxed);
    assert!(removes < 100, "cleanup removed {removes} slices");
}

const MIN: i64 = i64::MIN;
const MAX: i64 = i64::MAX;

/// Records at both ends of the time line, with watermarks that close their windows.
fn extreme_input(extra: &[Value]) -> Vec<Value> {
    let mut input = vec![
        record(MIN, "a", json!({ "v": 1 })),
        record(MIN + 1, "a", json!({ "v": 2 })),
        json!({ "watermark": MIN + 100 }),
    ];
    input.extend_from_slice(extra);
    input.extend([
        record(MAX - 1, "a", json!({ "v": 3 })),
        record(MAX, "a", json!({ "v": 4 })),
        json!({ "watermark": MAX - 1 }),
        json!({ "end": true }),
    ]);
    input
}

fn count(start: i64, end: i64, n: u64) -> Value {
    json!({ "ts": end - 1, "key": "a", "value": { "key": "a", "window_start": start, "window_end": end, "count": n } })
}

fn list(ts: i64, start: Value, end: Value, elements: &[i64]) -> Value {
    let elements: Vec<Value> = elements.iter().map(|v| json!({ "v": v })).collect();
    json!({ "ts": ts, "key": "a", "value": { "key": "a", "start": start, "end": end, "elements": elements } })
}

/// Windows near the ends of the time line are clamped to it (Flink's cleanup time saturates the same way), so
/// no assignment, end, or cleanup time overflows.
#[test]
fn extreme_timestamps_get_windows_from_every_assigner() {
    let counting = "aggregate: { builtin: count }";
    // i64::MIN ends in 8 and i64::MAX in 7: the tumbling windows of 10 ms holding them start 2 ms before the time
    // line and end 3 ms after it.
    let tumbling = vec![count(MIN, MIN + 8, 2), count(MAX - 7, MAX, 2)];
    assert_eq!(run(&spec("{ tumbling: 10 }", counting), &extreme_input(&[])), tumbling);
    // Lateness past the time line: the cleanup time saturates, and no cleanup timer is needed at i64::MAX. The
    // first window's cleanup time is MIN + 7 + MAX = 6, within the time line: it accepts a late record until then.
    let lateness = spec(&format!("{{ tumbling: 10, allowed_lateness: {MAX} }}"), counting);
    assert_eq!(
        run(&lateness, &extreme_input(&[record(MIN + 2, "a", json!({ "v": 5 }))])),
        vec![count(MIN, MIN + 8, 2), count(MIN, MIN + 8, 3), count(MAX - 7, MAX, 2)],
    );
    // Sliding windows with panes (an aggregate): i64::MIN is a multiple of 4, i64::MAX - 1 is 2 past one. The
    // window of i64::MIN ending at MIN + 1 is late at the initial watermark.
    let sliding = spec("{ sliding: { size: 10, slide: 4 } }", counting);
    let sliding_out = vec![
        count(MIN, MIN + 2, 2),
        count(MIN, MIN + 6, 2),
        count(MIN, MIN + 10, 2),
        count(MAX - 7, MAX, 2),
        count(MAX - 3, MAX, 2),
    ];
    assert_eq!(run(&sliding, &extreme_input(&[])), sliding_out);
    // One-millisecond panes: i64::MAX gets a pane (and a window) of its own that starts at the end of the time line.
    let single = spec("{ sliding: { size: 2, slide: 1 } }", counting);
    assert_eq!(
        run(&single, &extreme_input(&[])),
        vec![
            count(MIN, MIN + 2, 2),
            count(MIN + 1, MIN + 3, 1),
            count(MAX - 2, MAX, 1),
            count(MAX - 1, MAX, 2),
            // Its window of i64::MAX starts at the end of the time line, and fires with the others.
            json!({
                "ts": MAX - 1,
                "key": "a",
                "value": { "key": "a", "window_start": MAX, "window_end": MAX, "count": 1 },
            }),
        ],
    );
    // Without panes (records kept for a process-window function).
    let listed = spec("{ sliding: { size: 10, slide: 4 } }", "process: { module: list-window }");
    assert_eq!(
        run(&listed, &extreme_input(&[])),
        vec![
            list(MIN + 1, json!(MIN), json!(MIN + 2), &[1, 2]),
            list(MIN + 5, json!(MIN), json!(MIN + 6), &[1, 2]),
            list(MIN + 9, json!(MIN), json!(MIN + 10), &[1, 2]),
            list(MAX - 1, json!(MAX - 7), json!(MAX), &[3, 4]),
            list(MAX - 1, json!(MAX - 3), json!(MAX), &[3, 4]),
        ],
    );
    // Sessions: the gap saturates at i64::MAX, and the two sessions at the end still merge.
    let session = spec("{ session: 10 }", counting);
    assert_eq!(run(&session, &extreme_input(&[])), vec![count(MIN, MIN + 11, 2), count(MAX - 1, MAX, 2)]);
    // The global window, fired by a count trigger.
    let global = spec("{ global: {}, trigger: { count: 2 } }", "process: { module: list-window }");
    let null = Value::Null;
    assert_eq!(
        run(&global, &extreme_input(&[])),
        vec![list(MAX, null.clone(), null.clone(), &[1, 2]), list(MAX, null.clone(), null, &[1, 2, 3, 4])],
    );
    // A time evictor whose span reaches before the time line keeps every record.
    let evicting = spec("{ tumbling: 10, evictor: { time: 5 } }", "process: { module: list-window }");
    assert_eq!(
        run(&evicting, &extreme_input(&[])),
        vec![list(MIN + 7, json!(MIN), json!(MIN + 8), &[1, 2]), list(MAX - 1, json!(MAX - 7), json!(MAX), &[3, 4])],
    );
}

/// Flink's sum, min and max of a long field are exact; so are the built-ins while every input is an integer.
#[test]
fn builtin_aggregates_of_integers_are_exact_in_window_results() {
    // 2^53 + 1 and 2^56: an f64 would give 9007199254740992 and print 72057594037927940.
    for (value, kind) in [
        (9_007_199_254_740_993i64, "sum"),
        (72_057_594_037_927_936, "sum"),
        (9_007_199_254_740_993, "min"),
        (9_007_199_254_740_993, "max"),
    ] {
        let spec = spec("{ tumbling: 10 }", &format!("aggregate: {{ builtin: {kind}, field: \"$.v\" }}"));
        let out = run(&spec, &[record(1, "a", json!({ "v": value })), json!({ "end": true })]);
        let mut expected = json!({ "ts": 9, "key": "a", "value": { "key": "a", "window_start": 0, "window_end": 10 } });
        expected["value"][kind] = json!(value);
        assert_eq!(out, vec![expected], "{kind} of {value}");
    }
}
