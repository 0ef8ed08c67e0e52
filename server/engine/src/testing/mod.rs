//! Drives one operator by hand, as Flink's operator test harnesses do: records, watermarks and processing time in,
//! records and side outputs out. Golden tests (`tests/cases/`) describe both sides as JSON lines:
//!
//! ```text
//! {"record": {"ts": 1000, "key": "a", "value": {"page": "home"}}}      input: a record (key and input optional)
//! {"record": {"ts": 1000, "value": "text"}, "input": 1}                 a record on the second input
//! {"watermark": 4999}                                                   the watermark advances
//! {"processing_time": 60000}                                            the wall clock moves
//! ```
//! Each output line is `{"ts":..,"key":..,"value":..}` plus `"side": tag` for side outputs; values that are JSON
//! are embedded as JSON, others as strings.

mod tasks;

pub use tasks::run_lines_in_tasks;

use crate::checkpoint::TaskSnapshot;
use crate::error::TaskError;
use crate::operator::{OpContext, Operator, Output};
use crate::state::{FetchObject, StateError, StateFiles};
use eddy_codec::Batch;
use serde_json::Value;

/// Builds the operator a restart restores into, given the checkpoint's state files and a way to read them.
pub type FreshOperator<'a> = dyn FnMut(&[StateFiles], FetchObject<'_>) -> Result<Box<dyn Operator>, String> + 'a;

/// An operator under test.
pub struct Harness {
    op: Box<dyn Operator>,
    out: Output,
    watermark: i64,
    now: i64,
    emitted: Vec<Value>,
}

impl Harness {
    /// A harness at watermark -infinity and processing time 0.
    pub fn new(op: Box<dyn Operator>) -> Harness {
        Harness { op, out: Output::default(), watermark: i64::MIN, now: 0, emitted: Vec::new() }
    }

    fn collect(&mut self) {
        collect(&mut self.out, &mut self.emitted);
    }

    /// Feeds a batch on `input`.
    pub fn batch(&mut self, input: usize, batch: Batch) -> Result<(), TaskError> {
        let result = self.op.process(
            input,
            batch,
            &mut OpContext { out: &mut self.out, watermark: self.watermark, now: self.now },
        );
        self.collect();
        result
    }

    /// Advances the watermark.
    pub fn watermark(&mut self, watermark: i64) -> Result<(), TaskError> {
        self.watermark = self.watermark.max(watermark);
        let result =
            self.op.on_watermark(&mut OpContext { out: &mut self.out, watermark: self.watermark, now: self.now });
        self.collect();
        result
    }

    /// Moves processing time, firing due processing-time timers.
    pub fn processing_time(&mut self, now: i64) -> Result<(), TaskError> {
        self.now = now;
        let mut result = Ok(());
        if self.op.next_processing_timer().is_some_and(|t| t <= now) {
            result = self.op.on_processing_time(&mut OpContext {
                out: &mut self.out,
                watermark: self.watermark,
                now: self.now,
            });
        }
        self.collect();
        result
    }

    /// Ends the input: the final watermark, then `finish`.
    pub fn finish(&mut self) -> Result<(), TaskError> {
        self.watermark(i64::MAX)?;
        let result = self.op.finish(&mut OpContext { out: &mut self.out, watermark: self.watermark, now: self.now });
        self.collect();
        result
    }

    /// Takes the output lines so far.
    pub fn take(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.emitted)
    }

    /// Records the operator dropped as late.
    pub fn late_records_dropped(&self) -> u64 {
        self.op.late_records_dropped()
    }

    /// Checkpoints the operator and carries on with an operator from `fresh` restored from that checkpoint, as a
    /// job restored after a crash would: the snapshot goes through its encoding, `fresh` gets the checkpoint's
    /// state files (if the backend wrote files) and a way to read them, and the watermark and processing time stay
    /// (a task restores its input watermarks).
    pub fn restart_from_checkpoint(&mut self, fresh: &mut FreshOperator<'_>) -> Result<(), String> {
        let mut chunks = crate::checkpoint::ChunkWriter::held();
        let mut snapshot = self.op.snapshot(1, &mut chunks).map_err(|e| e.to_string())?;
        snapshot.chunks = chunks.end();
        // What checkpoint storage would hold of the state files.
        let mut objects = std::collections::HashMap::new();
        for files in &snapshot.files {
            let local = files.local.as_ref().ok_or("state files that are not on disk")?;
            for file in &files.files {
                let bytes = std::fs::read(local.join(&file.name)).map_err(|e| format!("{}: {e}", file.name))?;
                objects.insert(file.object.clone(), bytes);
            }
        }
        let fetch = |object: &str| objects.get(object).cloned().ok_or_else(|| StateError(format!("no {object}")));
        let task =
            TaskSnapshot { task: "harness-0".into(), operators: vec![("w".into(), 0, snapshot)], ..Default::default() };
        let encoded = task.encode().map_err(|e| e.to_string())?;
        let mut decoded = TaskSnapshot::decode(&encoded).map_err(|e| e.to_string())?;
        let (_, _, snapshot) = decoded.operators.pop().ok_or("the snapshot was lost")?;
        let mut restored = fresh(&snapshot.files, &fetch)?;
        restored.restore(snapshot, &chunks.reader()).map_err(|e| e.to_string())?;
        self.op = restored;
        Ok(())
    }

    /// Runs golden-test input lines (see the module docs); returns the output lines.
    pub fn run_lines(&mut self, input: &str) -> Result<Vec<Value>, String> {
        self.run_lines_restarting(input, None, &mut |_, _| Err("no restart".into()))
    }

    /// Runs golden-test input lines, and before the `cut`-th command (if any) restarts from a checkpoint with an
    /// operator from `fresh`.
    pub fn run_lines_restarting(
        &mut self,
        input: &str,
        cut: Option<usize>,
        fresh: &mut FreshOperator<'_>,
    ) -> Result<Vec<Value>, String> {
        for (index, (n, command)) in commands(input)?.into_iter().enumerate() {
            if cut == Some(index) {
                self.restart_from_checkpoint(fresh).map_err(|e| format!("restart before line {n}: {e}"))?;
            }
            let result = match command {
                Command::Record { input, batch } => self.batch(input, batch),
                Command::Watermark(w) => self.watermark(w),
                Command::ProcessingTime(t) => self.processing_time(t),
                Command::End => self.finish(),
            };
            result.map_err(|e| format!("input line {n}: {e}"))?;
        }
        Ok(self.take())
    }
}

/// One harness command of a golden case's input.
#[derive(Debug, Clone)]
pub enum Command {
    /// A record on an input.
    Record {
        /// 0, or 1 for a two-input operator's second input.
        input: usize,
        /// The one record.
        batch: Batch,
    },
    /// The watermark advances.
    Watermark(i64),
    /// The wall clock moves.
    ProcessingTime(i64),
    /// The input ends: the final watermark, then the end.
    End,
}

/// The commands of golden-test input lines, each with its line number.
pub fn commands(input: &str) -> Result<Vec<(usize, Command)>, String> {
    let lines = input.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    lines
        .map(|(n, text)| parse_command(text).map(|c| (n + 1, c)).map_err(|e| format!("input line {}: {e}", n + 1)))
        .collect()
}

fn parse_command(text: &str) -> Result<Command, String> {
    let command: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if let Some(record) = command.get("record") {
        let input = command.get("input").and_then(Value::as_u64).unwrap_or(0) as usize;
        let ts = record.get("ts").and_then(Value::as_i64).ok_or("record needs ts")?;
        let key = record.get("key").map(|k| match k {
            Value::String(s) => s.clone().into_bytes(),
            other => other.to_string().into_bytes(),
        });
        let value = match record.get("value") {
            Some(Value::String(s)) => s.clone().into_bytes(),
            Some(other) => other.to_string().into_bytes(),
            None => Vec::new(),
        };
        let mut batch = Batch::new();
        batch.push(ts, key.as_deref(), &value);
        Ok(Command::Record { input, batch })
    } else if let Some(w) = command.get("watermark").and_then(Value::as_i64) {
        Ok(Command::Watermark(w))
    } else if let Some(t) = command.get("processing_time").and_then(Value::as_i64) {
        Ok(Command::ProcessingTime(t))
    } else if command.get("end").is_some() {
        Ok(Command::End)
    } else {
        Err(format!("unknown command {command}"))
    }
}

/// Moves what an operator emitted into output lines: main output first, then side outputs.
fn collect(out: &mut Output, into: &mut Vec<Value>) {
    for batch in out.take_main() {
        into.extend(batch.iter().map(|r| line(None, r.timestamp, r.key, r.value)));
    }
    for (tag, batch) in out.take_side() {
        into.extend(batch.iter().map(|r| line(Some(&tag), r.timestamp, r.key, r.value)));
    }
}

/// One output line.
pub fn line(side: Option<&str>, ts: i64, key: Option<&[u8]>, value: &[u8]) -> Value {
    let mut out = crate::io::record_json(ts, key, value);
    if let Some(tag) = side {
        out["side"] = Value::String(tag.to_string());
    }
    out
}

/// Builds operator `uid` of a job spec for a [`Harness`], with the native test functions below standing in for
/// modules.
pub fn harness_for(spec: &str, uid: &str) -> Result<Harness, String> {
    operator_for(spec, uid).map(Harness::new)
}

/// Builds operator `uid` of a job spec, with the native test functions below standing in for modules.
pub fn operator_for(spec: &str, uid: &str) -> Result<Box<dyn Operator>, String> {
    use crate::graph::JobGraph;
    use crate::runtime::{DeployEnv, build_single_operator};
    let spec = crate::spec::JobSpec::parse(spec).map_err(|e| e.to_string())?;
    let graph = JobGraph::build(&spec, &TestFunctions).map_err(|e| e.to_string())?;
    let env = DeployEnv::new("test", "test", std::sync::Arc::new(TestFunctions));
    build_single_operator(&graph, uid, 0, &env).map_err(|e| e.to_string())
}

/// Native functions that tests name as modules:
///
/// - `list-window` (process-window): one record per window,
///   `{"key":..,"start":..,"end":..,"elements":[values...]}` (`start`/`end` null for the global window);
/// - `join` (reduce): the values joined with `,`, in the order they were reduced;
/// - `sum-amount` (aggregate): the sum of `$.amount` as an integer;
/// - `echo` (process): re-emits its input; records whose value is `"late"` go to side output `late`;
/// - `seen-watermark` (process): emits `{"ts":..,"watermark":..}`, the watermark it saw when each record came.
#[derive(Debug, Default, Clone, Copy)]
pub struct TestFunctions;

mod native {
    use crate::error::UdfError;
    use crate::function::*;
    use crate::operator::process::{FiredTimer, ProcessContext};
    use crate::window::Window;
    use eddy_codec::Batch;
    use serde_json::{Value, json};

    pub struct ListWindow;
    impl ProcessWindowFunction for ListWindow {
        fn process_windows(&mut self, windows: &[WindowContents], out: &mut Outputs) -> Result<(), UdfError> {
            for w in windows {
                let elements: Vec<Value> = w
                    .elements
                    .iter()
                    .map(|r| {
                        serde_json::from_slice(r.value)
                            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(r.value).into_owned()))
                    })
                    .collect();
                let (start, end) = match w.window {
                    Window::Time { start, end } => (json!(start), json!(end)),
                    Window::Global => (Value::Null, Value::Null),
                };
                let key = w.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned());
                let value = json!({ "key": key, "start": start, "end": end, "elements": elements });
                out.main.push(w.window.max_timestamp(), w.key.as_deref(), value.to_string().as_bytes());
            }
            Ok(())
        }
    }

    pub struct Join;
    impl ReduceFunction for Join {
        fn reduce(&mut self, accumulators: &Batch, inputs: &Batch, targets: &[u32]) -> Result<Batch, UdfError> {
            let mut accs: Vec<(i64, Option<Vec<u8>>, Vec<u8>)> =
                accumulators.iter().map(|r| (r.timestamp, r.key.map(<[u8]>::to_vec), r.value.to_vec())).collect();
            for (input, &t) in inputs.iter().zip(targets) {
                let acc = accs.get_mut(t as usize).ok_or_else(|| UdfError::new("bad target"))?;
                acc.2.push(b',');
                acc.2.extend_from_slice(input.value);
            }
            let mut out = Batch::new();
            for (ts, key, value) in &accs {
                out.push(*ts, key.as_deref(), value);
            }
            Ok(out)
        }
    }

    pub struct SumAmount;
    fn amount(value: &[u8]) -> Result<i64, UdfError> {
        let v: Value = serde_json::from_slice(value).map_err(|e| UdfError::new(e.to_string()))?;
        v["amount"].as_i64().ok_or_else(|| UdfError::new("no integer $.amount"))
    }
    fn acc(bytes: &[u8]) -> i64 {
        bytes.first_chunk::<8>().map_or(0, |b| i64::from_le_bytes(*b))
    }
    fn accs_batch(accs: &[i64]) -> Batch {
        let mut out = Batch::new();
        for a in accs {
            out.push(0, None, &a.to_le_bytes());
        }
        out
    }
    impl AggregateFunction for SumAmount {
        fn create_accumulator(&mut self) -> Result<Vec<u8>, UdfError> {
            Ok(0i64.to_le_bytes().to_vec())
        }
        fn add(&mut self, accumulators: &Batch, inputs: &Batch, targets: &[u32]) -> Result<Batch, UdfError> {
            let mut accs: Vec<i64> = accumulators.iter().map(|r| acc(r.value)).collect();
            for (input, &t) in inputs.iter().zip(targets) {
                accs[t as usize] += amount(input.value)?;
            }
            Ok(accs_batch(&accs))
        }
        fn merge(&mut self, accumulators: &Batch, others: &Batch, targets: &[u32]) -> Result<Batch, UdfError> {
            let mut accs: Vec<i64> = accumulators.iter().map(|r| acc(r.value)).collect();
            for (other, &t) in others.iter().zip(targets) {
                accs[t as usize] += acc(other.value);
            }
            Ok(accs_batch(&accs))
        }
        fn get_result(&mut self, accumulators: &Batch) -> Result<Batch, UdfError> {
            let mut out = Batch::new();
            for r in accumulators.iter() {
                out.push(0, None, acc(r.value).to_string().as_bytes());
            }
            Ok(out)
        }
    }

    /// Emits, for each record, its timestamp and the watermark the function saw when it came.
    pub struct SeenWatermark;
    impl ProcessFunction for SeenWatermark {
        fn process(&mut self, _: usize, records: &Batch, ctx: &mut ProcessContext) -> Result<(), UdfError> {
            for record in records.iter() {
                let value = format!(r#"{{"ts":{},"watermark":{}}}"#, record.timestamp, ctx.watermark());
                let seen = eddy_codec::Record { value: value.as_bytes(), ..record };
                ctx.emit(&seen);
            }
            Ok(())
        }
        fn on_timers(&mut self, _: &[FiredTimer], _: &mut ProcessContext) -> Result<(), UdfError> {
            Ok(())
        }
    }

    pub struct Echo;
    impl ProcessFunction for Echo {
        fn process(&mut self, _: usize, records: &Batch, ctx: &mut ProcessContext) -> Result<(), UdfError> {
            for record in records.iter() {
                if record.value == b"\"late\"" {
                    ctx.emit_side("late", &record);
                } else {
                    ctx.emit(&record);
                }
            }
            Ok(())
        }
        fn on_timers(&mut self, _: &[FiredTimer], _: &mut ProcessContext) -> Result<(), UdfError> {
            Ok(())
        }
    }
}

impl crate::graph::ModuleCatalog for TestFunctions {
    fn resolve(&self, module: &crate::spec::ModuleRef, kind: crate::function::UdfKind) -> Result<String, String> {
        use crate::function::UdfKind;
        let name = module.to_string();
        let expected = match name.as_str() {
            "list-window" => UdfKind::ProcessWindow,
            "join" => UdfKind::Reduce,
            "sum-amount" => UdfKind::Aggregate,
            "echo" | "seen-watermark" => UdfKind::Process,
            _ => return Err(format!("unknown module `{name}`")),
        };
        if kind != expected {
            return Err(format!("module `{name}` does not export a {} function", kind.name()));
        }
        // Test modules are "pinned" by their name.
        Ok(name)
    }
}

fn test_module_name(udf: &crate::spec::UdfSpec) -> String {
    match &udf.module {
        crate::spec::ModuleRef::Hash(name) => name.clone(),
        other => other.to_string(),
    }
}

impl crate::function::FunctionFactory for TestFunctions {
    fn map(
        &self,
        udf: &crate::spec::UdfSpec,
        _: &crate::function::FunctionScope,
    ) -> Result<Box<dyn crate::function::MapFunction>, TaskError> {
        Err(TaskError::internal(format!("no native map `{}`", test_module_name(udf))))
    }
    fn filter(
        &self,
        udf: &crate::spec::UdfSpec,
        _: &crate::function::FunctionScope,
    ) -> Result<Box<dyn crate::function::FilterFunction>, TaskError> {
        Err(TaskError::internal(format!("no native filter `{}`", test_module_name(udf))))
    }
    fn flat_map(
        &self,
        udf: &crate::spec::UdfSpec,
        _: &crate::function::FunctionScope,
    ) -> Result<Box<dyn crate::function::FlatMapFunction>, TaskError> {
        Err(TaskError::internal(format!("no native flat_map `{}`", test_module_name(udf))))
    }
    fn key_selector(
        &self,
        udf: &crate::spec::UdfSpec,
        _: &crate::function::FunctionScope,
    ) -> Result<Box<dyn crate::function::KeySelectorFunction>, TaskError> {
        Err(TaskError::internal(format!("no native key selector `{}`", test_module_name(udf))))
    }
    fn timestamp_assigner(
        &self,
        udf: &crate::spec::UdfSpec,
        _: &crate::function::FunctionScope,
    ) -> Result<Box<dyn crate::function::TimestampAssignerFunction>, TaskError> {
        Err(TaskError::internal(format!("no native timestamp assigner `{}`", test_module_name(udf))))
    }
    fn process(
        &self,
        udf: &crate::spec::UdfSpec,
        _: &crate::function::FunctionScope,
    ) -> Result<Box<dyn crate::function::ProcessFunction>, TaskError> {
        match test_module_name(udf).as_str() {
            "echo" => Ok(Box::new(native::Echo)),
            "seen-watermark" => Ok(Box::new(native::SeenWatermark)),
            other => Err(TaskError::internal(format!("no native process `{other}`"))),
        }
    }
    fn aggregate(
        &self,
        udf: &crate::spec::UdfSpec,
        _: &crate::function::FunctionScope,
    ) -> Result<Box<dyn crate::function::AggregateFunction>, TaskError> {
        match test_module_name(udf).as_str() {
            "sum-amount" => Ok(Box::new(native::SumAmount)),
            other => Err(TaskError::internal(format!("no native aggregate `{other}`"))),
        }
    }
    fn reduce(
        &self,
        udf: &crate::spec::UdfSpec,
        _: &crate::function::FunctionScope,
    ) -> Result<Box<dyn crate::function::ReduceFunction>, TaskError> {
        match test_module_name(udf).as_str() {
            "join" => Ok(Box::new(native::Join)),
            other => Err(TaskError::internal(format!("no native reduce `{other}`"))),
        }
    }
    fn process_window(
        &self,
        udf: &crate::spec::UdfSpec,
        _: &crate::function::FunctionScope,
    ) -> Result<Box<dyn crate::function::ProcessWindowFunction>, TaskError> {
        match test_module_name(udf).as_str() {
            "list-window" => Ok(Box::new(native::ListWindow)),
            other => Err(TaskError::internal(format!("no native process-window `{other}`"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TUMBLING: &str = r#"
name: t
operators:
  - { uid: src, source: { http: {} } }
  - uid: w
    input: src
    key_by: record
    window: { tumbling: 10, allowed_lateness: 5, late: late }
    aggregate: { builtin: count }
  - { uid: out, sink: discard, input: w }
"#;

    #[test]
    fn tumbling_count_with_lateness_and_late_output() {
        let mut h = harness_for(TUMBLING, "w").expect("harness");
        let out = h
            .run_lines(
                r#"{"record": {"ts": 1, "key": "a", "value": 1}}
{"record": {"ts": 3, "key": "a", "value": 2}}
{"record": {"ts": 12, "key": "b", "value": 3}}
{"watermark": 9}
{"record": {"ts": 5, "key": "a", "value": 4}}
{"watermark": 14}
{"record": {"ts": 2, "key": "a", "value": 5}}
{"end": true}"#,
            )
            .expect("run");
        let lines: Vec<String> = out.iter().map(Value::to_string).collect();
        assert_eq!(
            lines,
            vec![
                r#"{"key":"a","ts":9,"value":{"count":2,"key":"a","window_end":10,"window_start":0}}"#,
                r#"{"key":"a","ts":9,"value":{"count":3,"key":"a","window_end":10,"window_start":0}}"#,
                r#"{"key":"a","side":"late","ts":2,"value":5}"#,
                r#"{"key":"b","ts":19,"value":{"count":1,"key":"b","window_end":20,"window_start":10}}"#,
            ],
            "fires at the end, again for a late record within lateness, and sends later ones to the side output"
        );
    }
}
