//! The benchmark logic as native Rust functions, the baseline for the Wasm forms. Same semantics and byte layouts as
//! the example UDFs `udfs/rust/bench-*`.

use eddy_codec::Batch;
use eddy_engine::TaskError;
use eddy_engine::UdfError;
use eddy_engine::function::*;
use eddy_engine::operator::process::{FiredTimer, ProcessContext};
use eddy_engine::spec::{ModuleRef, UdfSpec};
use eddy_engine::state::{StateDescriptor, StateKind};
use eddy_engine::timers::TimeDomain;

fn amount(bytes: &[u8]) -> u64 {
    bytes.first_chunk::<8>().map_or(0, |b| u64::from_le_bytes(*b))
}

struct W1Map;

impl MapFunction for W1Map {
    fn map(&mut self, input: &Batch) -> Result<Batch, UdfError> {
        let mut out = Batch::with_capacity(input.len(), input.data_len());
        for record in input.iter() {
            out.push(record.timestamp, record.key, &(amount(record.value) * 107 / 100).to_le_bytes());
        }
        Ok(out)
    }
}

struct W1Filter;

impl FilterFunction for W1Filter {
    fn filter(&mut self, input: &Batch, keep: &mut Vec<bool>) -> Result<(), UdfError> {
        keep.extend(input.iter().map(|r| amount(r.value) >= 5350));
        Ok(())
    }
}

/// Count (W2, W4) or count and average * 1000 (W3).
struct Aggregate {
    average: bool,
}

fn pair(bytes: &[u8]) -> (u64, u64) {
    (amount(bytes), bytes.get(8..).map_or(0, amount))
}

fn pairs(accs: &[(u64, u64)]) -> Batch {
    let mut out = Batch::with_capacity(accs.len(), accs.len() * 16);
    let mut buf = [0u8; 16];
    for (a, b) in accs {
        buf[..8].copy_from_slice(&a.to_le_bytes());
        buf[8..].copy_from_slice(&b.to_le_bytes());
        out.push(0, None, &buf);
    }
    out
}

impl AggregateFunction for Aggregate {
    fn create_accumulator(&mut self) -> Result<Vec<u8>, UdfError> {
        Ok(vec![0; 16])
    }

    fn add(&mut self, accumulators: &Batch, inputs: &Batch, targets: &[u32]) -> Result<Batch, UdfError> {
        let mut accs: Vec<(u64, u64)> = accumulators.iter().map(|r| pair(r.value)).collect();
        for (record, &t) in inputs.iter().zip(targets) {
            let acc = &mut accs[t as usize];
            acc.0 += 1;
            acc.1 += amount(record.value);
        }
        Ok(pairs(&accs))
    }

    fn merge(&mut self, accumulators: &Batch, others: &Batch, targets: &[u32]) -> Result<Batch, UdfError> {
        let mut accs: Vec<(u64, u64)> = accumulators.iter().map(|r| pair(r.value)).collect();
        for (other, &t) in others.iter().zip(targets) {
            let (n, sum) = pair(other.value);
            accs[t as usize].0 += n;
            accs[t as usize].1 += sum;
        }
        Ok(pairs(&accs))
    }

    fn get_result(&mut self, accumulators: &Batch) -> Result<Batch, UdfError> {
        let results: Vec<(u64, u64)> = accumulators
            .iter()
            .map(|r| {
                let (n, sum) = pair(r.value);
                (n, if self.average { sum * 1000 / n.max(1) } else { 0 })
            })
            .collect();
        Ok(pairs(&results))
    }
}

/// W5: alert on two amounts >= 9000 of one key less than 5 s apart.
struct Fraud {
    last: StateDescriptor,
}

const LARGE: u64 = 9000;
const WINDOW: i64 = 5000;

impl ProcessFunction for Fraud {
    fn process(&mut self, _: usize, records: &Batch, ctx: &mut ProcessContext) -> Result<(), UdfError> {
        for (i, record) in records.iter().enumerate() {
            let value = amount(record.value);
            if value < LARGE {
                continue;
            }
            ctx.enter(i).map_err(UdfError::new)?;
            let last = ctx.open_state(&self.last).map_err(UdfError::new)?;
            let previous = ctx.value_get(&last).map_err(UdfError::new)?.map(|b| amount(&b) as i64);
            if let Some(previous) = previous
                && (record.timestamp - previous).abs() < WINDOW
            {
                let mut alert = [0u8; 32];
                alert[..8].copy_from_slice(&previous.to_le_bytes());
                alert[8..16].copy_from_slice(&record.timestamp.to_le_bytes());
                alert[16..24].copy_from_slice(&1u64.to_le_bytes());
                alert[24..].copy_from_slice(&value.to_le_bytes());
                ctx.out.main.push(record.timestamp, record.key, &alert);
            }
            ctx.value_set(&last, &record.timestamp.to_le_bytes()).map_err(UdfError::new)?;
            ctx.register_timer(TimeDomain::EventTime, record.timestamp + WINDOW).map_err(UdfError::new)?;
        }
        Ok(())
    }

    fn on_timers(&mut self, timers: &[FiredTimer], ctx: &mut ProcessContext) -> Result<(), UdfError> {
        for (i, timer) in timers.iter().enumerate() {
            ctx.enter(i).map_err(UdfError::new)?;
            let last = ctx.open_state(&self.last).map_err(UdfError::new)?;
            let stored = ctx.value_get(&last).map_err(UdfError::new)?.map(|b| amount(&b) as i64);
            if stored.is_some_and(|ts| ts + WINDOW <= timer.timestamp) {
                ctx.clear(&last).map_err(UdfError::new)?;
            }
        }
        Ok(())
    }
}

/// Native implementations of the benchmark modules, by name (`native-<module>`).
pub struct NativeFunctions;

fn name(udf: &UdfSpec) -> String {
    match &udf.module {
        ModuleRef::Hash(h) => h.trim_start_matches("native-").to_string(),
        other => other.to_string(),
    }
}

fn missing<T>(udf: &UdfSpec, kind: &str) -> Result<T, TaskError> {
    Err(TaskError::internal(format!("no native {kind} `{}`", name(udf))))
}

impl FunctionFactory for NativeFunctions {
    fn map(&self, udf: &UdfSpec, _: &FunctionScope) -> Result<Box<dyn MapFunction>, TaskError> {
        if name(udf) == "bench-w1-map" { Ok(Box::new(W1Map)) } else { missing(udf, "map") }
    }
    fn filter(&self, udf: &UdfSpec, _: &FunctionScope) -> Result<Box<dyn FilterFunction>, TaskError> {
        if name(udf) == "bench-w1-filter" { Ok(Box::new(W1Filter)) } else { missing(udf, "filter") }
    }
    fn flat_map(&self, udf: &UdfSpec, _: &FunctionScope) -> Result<Box<dyn FlatMapFunction>, TaskError> {
        missing(udf, "flat_map")
    }
    fn key_selector(&self, udf: &UdfSpec, _: &FunctionScope) -> Result<Box<dyn KeySelectorFunction>, TaskError> {
        missing(udf, "key selector")
    }
    fn timestamp_assigner(
        &self,
        udf: &UdfSpec,
        _: &FunctionScope,
    ) -> Result<Box<dyn TimestampAssignerFunction>, TaskError> {
        missing(udf, "timestamp assigner")
    }
    fn process(&self, udf: &UdfSpec, _: &FunctionScope) -> Result<Box<dyn ProcessFunction>, TaskError> {
        if name(udf) == "bench-w5" {
            let last = StateDescriptor { name: "last-large".into(), kind: StateKind::Value, ttl: None };
            Ok(Box::new(Fraud { last }))
        } else {
            missing(udf, "process")
        }
    }
    fn aggregate(&self, udf: &UdfSpec, _: &FunctionScope) -> Result<Box<dyn AggregateFunction>, TaskError> {
        match name(udf).as_str() {
            "bench-count" => Ok(Box::new(Aggregate { average: false })),
            "bench-avg" => Ok(Box::new(Aggregate { average: true })),
            _ => missing(udf, "aggregate"),
        }
    }
    fn reduce(&self, udf: &UdfSpec, _: &FunctionScope) -> Result<Box<dyn ReduceFunction>, TaskError> {
        missing(udf, "reduce")
    }
    fn process_window(&self, udf: &UdfSpec, _: &FunctionScope) -> Result<Box<dyn ProcessWindowFunction>, TaskError> {
        missing(udf, "process-window")
    }
}
