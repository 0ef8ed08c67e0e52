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

use crate::error::TaskError;
use crate::operator::{OpContext, Operator, Output};
use eddy_codec::Batch;
use serde_json::{Value, json};

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
        for batch in self.out.take_main() {
            self.emitted.extend(batch.iter().map(|r| line(None, r.timestamp, r.key, r.value)));
        }
        for (tag, batch) in self.out.take_side() {
            self.emitted.extend(batch.iter().map(|r| line(Some(&tag), r.timestamp, r.key, r.value)));
        }
    }

    /// Feeds a batch on `input`.
    pub fn batch(&mut self, input: usize, batch: Batch) -> Result<(), TaskError> {
        let result =
            self.op.process(input, batch, &mut OpContext { out: &mut self.out, watermark: self.watermark, now: self.now });
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

    /// Runs golden-test input lines (see the module docs); returns the output lines.
    pub fn run_lines(&mut self, input: &str) -> Result<Vec<Value>, String> {
        for (n, text) in input.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let at = |e: String| format!("input line {}: {e}", n + 1);
            let command: Value = serde_json::from_str(text).map_err(|e| at(e.to_string()))?;
            if let Some(record) = command.get("record") {
                let input = command.get("input").and_then(Value::as_u64).unwrap_or(0) as usize;
                let ts = record.get("ts").and_then(Value::as_i64).ok_or_else(|| at("record needs ts".into()))?;
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
                self.batch(input, batch).map_err(|e| at(e.to_string()))?;
            } else if let Some(w) = command.get("watermark").and_then(Value::as_i64) {
                self.watermark(w).map_err(|e| at(e.to_string()))?;
            } else if let Some(t) = command.get("processing_time").and_then(Value::as_i64) {
                self.processing_time(t).map_err(|e| at(e.to_string()))?;
            } else if command.get("end").is_some() {
                self.finish().map_err(|e| at(e.to_string()))?;
            } else {
                return Err(at(format!("unknown command {command}")));
            }
        }
        Ok(self.take())
    }
}

/// One output line.
pub fn line(side: Option<&str>, ts: i64, key: Option<&[u8]>, value: &[u8]) -> Value {
    let value = serde_json::from_slice::<Value>(value)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(value).into_owned()));
    let mut out = json!({ "ts": ts, "value": value });
    if let Some(key) = key {
        out["key"] = Value::String(String::from_utf8_lossy(key).into_owned());
    }
    if let Some(tag) = side {
        out["side"] = Value::String(tag.to_string());
    }
    out
}
