//! Built-in aggregates over a numeric JSON field (count, sum, min, max, avg), as native [`AggregateFunction`]s.
//!
//! Accumulators are 16 bytes: a count (u64) and a running value (f64: sum, min or max). Results are JSON numbers;
//! the window operator wraps them with the key and window bounds.

use crate::error::UdfError;
use crate::function::AggregateFunction;
use crate::json::JsonPath;
use crate::spec::BuiltinAggregate;
use eddy_codec::Batch;

/// A built-in aggregate.
#[derive(Debug, Clone)]
pub struct Builtin {
    kind: BuiltinAggregate,
    field: Option<JsonPath>,
}

impl Builtin {
    /// The aggregate `kind` over `field` (none for count).
    pub fn new(kind: BuiltinAggregate, field: Option<JsonPath>) -> Builtin {
        Builtin { kind, field }
    }

    fn value_of(&self, value: &[u8]) -> Result<f64, UdfError> {
        match &self.field {
            Some(path) => path.extract_f64(value).map_err(UdfError::new),
            None => Ok(0.0),
        }
    }

    fn fold(&self, (count, acc): (u64, f64), (n, value): (u64, f64)) -> (u64, f64) {
        if count == 0 {
            return (n, value);
        }
        if n == 0 {
            return (count, acc);
        }
        let combined = match self.kind {
            BuiltinAggregate::Count => 0.0,
            BuiltinAggregate::Sum | BuiltinAggregate::Avg => acc + value,
            BuiltinAggregate::Min => acc.min(value),
            BuiltinAggregate::Max => acc.max(value),
        };
        (count + n, combined)
    }
}

fn decode(bytes: &[u8]) -> (u64, f64) {
    match (bytes.first_chunk::<8>(), bytes.get(8..16).and_then(|b| b.first_chunk::<8>())) {
        (Some(count), Some(value)) => (u64::from_le_bytes(*count), f64::from_le_bytes(*value)),
        _ => (0, 0.0),
    }
}

fn encode((count, value): (u64, f64)) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&count.to_le_bytes());
    out[8..].copy_from_slice(&value.to_le_bytes());
    out
}

/// Writes a number as JSON: integral values without a fraction.
pub fn json_number(value: f64) -> String {
    if value.is_finite() && value.fract() == 0.0 && value.abs() < 9.0e15 {
        format!("{}", value as i64)
    } else if value.is_finite() {
        format!("{value}")
    } else {
        "null".to_string()
    }
}

impl AggregateFunction for Builtin {
    fn create_accumulator(&mut self) -> Result<Vec<u8>, UdfError> {
        Ok(encode((0, 0.0)).to_vec())
    }

    fn add(&mut self, accumulators: &Batch, inputs: &Batch, targets: &[u32]) -> Result<Batch, UdfError> {
        let mut accs: Vec<(u64, f64)> = accumulators.iter().map(|r| decode(r.value)).collect();
        for (record, &target) in inputs.iter().zip(targets) {
            let value = self.value_of(record.value)?;
            let acc = accs.get_mut(target as usize).ok_or_else(|| UdfError::new("accumulator index out of range"))?;
            *acc = self.fold(*acc, (1, value));
        }
        Ok(accs.into_iter().map(encode).fold(Batch::new(), |mut b, acc| {
            b.push(0, None, &acc);
            b
        }))
    }

    fn merge(&mut self, accumulators: &Batch, others: &Batch, targets: &[u32]) -> Result<Batch, UdfError> {
        let mut accs: Vec<(u64, f64)> = accumulators.iter().map(|r| decode(r.value)).collect();
        for (other, &target) in others.iter().zip(targets) {
            let acc = accs.get_mut(target as usize).ok_or_else(|| UdfError::new("accumulator index out of range"))?;
            *acc = self.fold(*acc, decode(other.value));
        }
        Ok(accs.into_iter().map(encode).fold(Batch::new(), |mut b, acc| {
            b.push(0, None, &acc);
            b
        }))
    }

    fn get_result(&mut self, accumulators: &Batch) -> Result<Batch, UdfError> {
        let mut out = Batch::new();
        for acc in accumulators.iter() {
            let (count, value) = decode(acc.value);
            let result = match self.kind {
                BuiltinAggregate::Count => json_number(count as f64),
                BuiltinAggregate::Avg if count > 0 => json_number(value / count as f64),
                _ if count == 0 => "null".to_string(),
                _ => json_number(value),
            };
            out.push(0, None, result.as_bytes());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(kind: BuiltinAggregate, values: &[&str]) -> String {
        let field = (kind != BuiltinAggregate::Count).then(|| JsonPath::parse("$.v").expect("path"));
        let mut agg = Builtin::new(kind, field);
        let mut accs = Batch::new();
        accs.push(0, None, &agg.create_accumulator().expect("create"));
        accs.push(0, None, &agg.create_accumulator().expect("create"));
        let mut inputs = Batch::new();
        for v in values {
            inputs.push(0, None, format!("{{\"v\":{v}}}").as_bytes());
        }
        // Split the inputs over two accumulators, then merge them, as sliding panes and sessions do.
        let targets: Vec<u32> = (0..values.len() as u32).map(|i| i % 2).collect();
        let accs = agg.add(&accs, &inputs, &targets).expect("add");
        let mut first = Batch::new();
        first.push_record(&accs.get(0));
        let mut second = Batch::new();
        second.push_record(&accs.get(1));
        let merged = agg.merge(&first, &second, &[0]).expect("merge");
        String::from_utf8(agg.get_result(&merged).expect("result").get(0).value.to_vec()).expect("utf8")
    }

    #[test]
    fn computes_each_builtin() {
        assert_eq!(run(BuiltinAggregate::Count, &["1", "2", "3"]), "3");
        assert_eq!(run(BuiltinAggregate::Sum, &["1", "2.5", "3"]), "6.5");
        assert_eq!(run(BuiltinAggregate::Min, &["4", "-2", "3"]), "-2");
        assert_eq!(run(BuiltinAggregate::Max, &["4", "-2", "3"]), "4");
        assert_eq!(run(BuiltinAggregate::Avg, &["1", "2", "4", "5"]), "3");
        assert_eq!(run(BuiltinAggregate::Min, &[]), "null");
        assert_eq!(run(BuiltinAggregate::Count, &[]), "0");
    }

    #[test]
    fn reports_records_without_the_field() {
        let mut agg = Builtin::new(BuiltinAggregate::Sum, Some(JsonPath::parse("$.v").expect("path")));
        let mut accs = Batch::new();
        accs.push(0, None, &agg.create_accumulator().expect("create"));
        let mut inputs = Batch::new();
        inputs.push(0, None, br#"{"w":1}"#);
        let err = agg.add(&accs, &inputs, &[0]).expect_err("missing field");
        assert!(err.message.contains("no $.v"), "{}", err.message);
    }
}
