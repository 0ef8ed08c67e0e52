//! The deterministic event generator of `BENCHMARKS.md`.

use super::{Source, SourcePoll};
use crate::checkpoint::SplitPosition;
use crate::error::TaskError;
use crate::keys::mix64;
use crate::spec::{EventEncoding, GeneratorSpec};
use eddy_codec::Batch;
use std::io::Write;
use std::time::Instant;

/// Event time of event 0.
pub const BENCH_BASE_TS: i64 = 1_700_000_000_000;
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// One generated event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeneratedEvent {
    /// The key.
    pub key: u64,
    /// Event time in milliseconds.
    pub ts: i64,
    /// The amount.
    pub amount: u64,
}

/// Event `j` for `keys` distinct keys.
pub fn generate(j: u64, keys: u64) -> GeneratedEvent {
    let h = mix64(j.wrapping_add(1).wrapping_mul(GOLDEN));
    let h2 = mix64(h);
    let half = (keys / 2).max(1);
    GeneratedEvent {
        key: 2 * ((h >> 8) % half) + (j & 1),
        ts: BENCH_BASE_TS + j as i64 - (h & 63) as i64,
        amount: (h2 >> 1) % 10_000,
    }
}

/// Generates events `subtask, subtask + parallelism, ...`.
pub struct GeneratorSource {
    spec: GeneratorSpec,
    /// This subtask's first event: its index.
    first: u64,
    next: u64,
    step: u64,
    started: Instant,
    emitted: u64,
    scratch: Vec<u8>,
}

impl GeneratorSource {
    /// The generator for subtask `subtask` of `parallelism`.
    pub fn new(spec: GeneratorSpec, subtask: u32, parallelism: u32) -> GeneratorSource {
        GeneratorSource {
            spec,
            first: u64::from(subtask),
            next: u64::from(subtask),
            step: u64::from(parallelism.max(1)),
            started: Instant::now(),
            emitted: 0,
            scratch: Vec::with_capacity(64),
        }
    }
}

impl GeneratorSource {
    /// A subtask generates every `step`-th event from its own index: its sequence depends on the parallelism, so
    /// its split id names both (a restore at another parallelism starts the generator over).
    fn split(&self) -> String {
        format!("generator-{}-of-{}", self.first, self.step)
    }
}

impl Source for GeneratorSource {
    fn position(&self) -> Vec<SplitPosition> {
        vec![SplitPosition { split: self.split(), offset: self.next }]
    }

    fn restore(&mut self, positions: &[SplitPosition]) -> Result<(), TaskError> {
        let split = self.split();
        if let Some(p) = positions.iter().find(|p| p.split == split) {
            self.next = p.offset;
        }
        Ok(())
    }

    fn poll(&mut self, batch: &mut Batch, max: usize) -> Result<SourcePoll, TaskError> {
        let mut room = max;
        if let Some(rate) = self.spec.rate.filter(|r| *r > 0) {
            let due = (self.started.elapsed().as_secs_f64() * rate as f64) as u64;
            if due <= self.emitted {
                return Ok(SourcePoll::Pending);
            }
            room = room.min((due - self.emitted) as usize);
        }
        let before = batch.len();
        for _ in 0..room {
            if self.spec.events.is_some_and(|n| self.next >= n) {
                break;
            }
            let event = generate(self.next, self.spec.keys);
            match self.spec.encoding {
                EventEncoding::Binary => {
                    batch.push(event.ts, Some(&event.key.to_le_bytes()), &event.amount.to_le_bytes());
                }
                EventEncoding::Json => {
                    self.scratch.clear();
                    let _ = write!(self.scratch, "{}", event.key);
                    let key_len = self.scratch.len();
                    let _ =
                        write!(self.scratch, r#"{{"key":{},"ts":{},"amount":{}}}"#, event.key, event.ts, event.amount);
                    let (key, value) = self.scratch.split_at(key_len);
                    batch.push(event.ts, Some(key), value);
                }
            }
            self.next += self.step;
            self.emitted += 1;
        }
        if batch.len() == before {
            return Ok(SourcePoll::Finished);
        }
        Ok(SourcePoll::Records { split: 0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_benchmark_formulas() {
        let e = generate(0, 10_000);
        let h = mix64(GOLDEN);
        assert_eq!(e.key, 2 * ((h >> 8) % 5_000));
        assert_eq!(e.ts, BENCH_BASE_TS - (h & 63) as i64);
        assert_eq!(e.amount, (mix64(h) >> 1) % 10_000);
        assert_eq!(generate(1, 10_000).key % 2, 1, "odd events have odd keys");
        assert!((0..1000).all(|j| generate(j, 100).key < 100));
    }

    #[test]
    fn subtasks_split_the_sequence() {
        let spec = GeneratorSpec { events: Some(10), keys: 100, encoding: EventEncoding::Binary, rate: None };
        let mut seen = Vec::new();
        for subtask in 0..2 {
            let mut source = GeneratorSource::new(spec.clone(), subtask, 2);
            let mut batch = Batch::new();
            while source.poll(&mut batch, 3).expect("poll") != SourcePoll::Finished {}
            seen.extend(batch.iter().map(|r| r.timestamp));
        }
        let mut expected: Vec<i64> = (0..10).map(|j| generate(j, 100).ts).collect();
        expected.sort();
        seen.sort();
        assert_eq!(seen, expected);
    }

    #[test]
    fn a_restored_generator_goes_on_where_it_was() {
        let spec = GeneratorSpec { events: Some(10), keys: 100, encoding: EventEncoding::Binary, rate: None };
        let mut whole = Batch::new();
        let mut source = GeneratorSource::new(spec.clone(), 1, 2);
        while source.poll(&mut whole, 100).expect("poll") != SourcePoll::Finished {}
        let mut first = GeneratorSource::new(spec.clone(), 1, 2);
        let mut batch = Batch::new();
        first.poll(&mut batch, 2).expect("poll");
        let mut second = GeneratorSource::new(spec, 1, 2);
        second.restore(&first.position()).expect("restore");
        while second.poll(&mut batch, 100).expect("poll") != SourcePoll::Finished {}
        let stamps = |b: &Batch| b.iter().map(|r| r.timestamp).collect::<Vec<_>>();
        assert_eq!(stamps(&batch), stamps(&whole));
    }

    #[test]
    fn json_events_carry_their_key() {
        let spec = GeneratorSpec { events: Some(1), keys: 100, encoding: EventEncoding::Json, rate: None };
        let mut batch = Batch::new();
        GeneratorSource::new(spec, 0, 1).poll(&mut batch, 10).expect("poll");
        let record = batch.get(0);
        let value: serde_json::Value = serde_json::from_slice(record.value).expect("json");
        assert_eq!(record.key, Some(value["key"].to_string().as_bytes()));
        assert_eq!(value["ts"].as_i64(), Some(record.timestamp));
    }
}
