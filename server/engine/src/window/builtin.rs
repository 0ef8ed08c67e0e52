//! Built-in aggregates over a numeric JSON field (count, sum, min, max, avg), as native [`AggregateFunction`]s.
//!
//! Values stay exact integers (i128) while every input is a JSON integer, as Flink's aggregates on a long field
//! are; the first non-integer turns a sum into an f64. Min and max keep whichever input wins, exactly. Results are
//! JSON numbers, integers without a fraction; the window operator wraps them with the key and window bounds.
//!
//! Accumulators may be stored in state, so their bytes say what they hold: a tag byte, the count (u64) and the
//! value, `[1, count, i128]` (25 bytes) or `[2, count, f64]` (17 bytes). The untagged 16 bytes `[count, f64]` of
//! earlier versions are still read.

use crate::error::UdfError;
use crate::function::AggregateFunction;
use crate::json::JsonPath;
use crate::spec::BuiltinAggregate;
use eddy_codec::Batch;
use serde_json::Value;
use std::cmp::Ordering;

/// A built-in aggregate.
#[derive(Debug, Clone)]
pub struct Builtin {
    kind: BuiltinAggregate,
    field: Option<JsonPath>,
}

/// A running value.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Num {
    /// Exact, while every input was an integer.
    Int(i128),
    /// Once an input was not.
    Float(f64),
}

impl Num {
    fn to_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }

    fn add(self, other: Num) -> Num {
        match (self, other) {
            // Past i128 (more than 2^64 inputs of i64) the sum goes on inexact rather than wrapping.
            (Num::Int(a), Num::Int(b)) => a.checked_add(b).map_or(Num::Float(a as f64 + b as f64), Num::Int),
            (a, b) => Num::Float(a.to_f64() + b.to_f64()),
        }
    }

    /// Exact order, also between an integer and a float (which converting either way could round).
    fn cmp(self, other: Num) -> Ordering {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => a.cmp(&b),
            (Num::Int(a), Num::Float(b)) => cmp_int_float(a, b),
            (Num::Float(a), Num::Int(b)) => cmp_int_float(b, a).reverse(),
            (Num::Float(a), Num::Float(b)) => a.total_cmp(&b),
        }
    }

    fn json(self) -> String {
        match self {
            Num::Int(i) => i.to_string(),
            Num::Float(f) => json_number(f),
        }
    }
}

fn cmp_int_float(i: i128, f: f64) -> Ordering {
    const TWO_POW_127: f64 = 170_141_183_460_469_231_731_687_303_715_884_105_728.0;
    if f >= TWO_POW_127 {
        return Ordering::Less;
    }
    if f < -TWO_POW_127 {
        return Ordering::Greater;
    }
    // `floor` is integral and within i128, so it converts exactly.
    let floor = f.floor();
    match i.cmp(&(floor as i128)) {
        Ordering::Equal if f > floor => Ordering::Less,
        other => other,
    }
}

/// A count and a running value (sum, min or max).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Acc {
    count: u64,
    value: Num,
}

const EMPTY: Acc = Acc { count: 0, value: Num::Int(0) };
const TAG_INT: u8 = 1;
const TAG_FLOAT: u8 = 2;
/// Earlier versions wrote `[count, f64]` without a tag; no tagged layout has this length.
const UNTAGGED_LEN: usize = 16;

impl Acc {
    fn decode(bytes: &[u8]) -> Result<Acc, UdfError> {
        let corrupt =
            || UdfError::new(format!("a built-in aggregate's accumulator is corrupt ({} bytes)", bytes.len()));
        let (tag, rest) = if bytes.len() == UNTAGGED_LEN {
            (None, bytes)
        } else {
            let (tag, rest) = bytes.split_first().ok_or_else(corrupt)?;
            (Some(*tag), rest)
        };
        let (count, value) = rest.split_first_chunk::<8>().ok_or_else(corrupt)?;
        let value = match (tag, <[u8; 8]>::try_from(value), <[u8; 16]>::try_from(value)) {
            (None | Some(TAG_FLOAT), Ok(f), _) => Num::Float(f64::from_le_bytes(f)),
            (Some(TAG_INT), _, Ok(i)) => Num::Int(i128::from_le_bytes(i)),
            _ => return Err(corrupt()),
        };
        Ok(Acc { count: u64::from_le_bytes(*count), value })
    }

    /// The tagged bytes, and how many of them are used.
    fn to_bytes(self) -> ([u8; 25], usize) {
        let mut bytes = [0u8; 25];
        bytes[1..9].copy_from_slice(&self.count.to_le_bytes());
        let len = match self.value {
            Num::Int(i) => {
                bytes[0] = TAG_INT;
                bytes[9..25].copy_from_slice(&i.to_le_bytes());
                25
            }
            Num::Float(f) => {
                bytes[0] = TAG_FLOAT;
                bytes[9..17].copy_from_slice(&f.to_le_bytes());
                17
            }
        };
        (bytes, len)
    }
}

/// A number in JSON: integers (also in strings) exactly, others as f64.
fn number(value: &Value) -> Option<Num> {
    let num = match value {
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Num::Int(i.into()),
            (None, Some(u)) => Num::Int(u.into()),
            (None, None) => Num::Float(n.as_f64()?),
        },
        Value::String(s) => match s.trim().parse::<i128>() {
            Ok(i) => Num::Int(i),
            Err(_) => Num::Float(s.trim().parse().ok()?),
        },
        _ => return None,
    };
    // NaN has no place in an order, nor in JSON.
    (!num.to_f64().is_nan()).then_some(num)
}

impl Builtin {
    /// The aggregate `kind` over `field` (none for count).
    pub fn new(kind: BuiltinAggregate, field: Option<JsonPath>) -> Builtin {
        Builtin { kind, field }
    }

    fn value_of(&self, value: &[u8]) -> Result<Num, UdfError> {
        let Some(path) = &self.field else { return Ok(Num::Int(0)) };
        let found = path.extract(value).map_err(UdfError::new)?;
        number(&found).ok_or_else(|| UdfError::new(format!("{path} is not a number: {found}")))
    }

    fn fold(&self, acc: Acc, other: Acc) -> Acc {
        if acc.count == 0 {
            return other;
        }
        if other.count == 0 {
            return acc;
        }
        let value = match self.kind {
            BuiltinAggregate::Count => acc.value,
            BuiltinAggregate::Sum | BuiltinAggregate::Avg => acc.value.add(other.value),
            BuiltinAggregate::Min if other.value.cmp(acc.value).is_lt() => other.value,
            BuiltinAggregate::Max if other.value.cmp(acc.value).is_gt() => other.value,
            BuiltinAggregate::Min | BuiltinAggregate::Max => acc.value,
        };
        Acc { count: acc.count.saturating_add(other.count), value }
    }

    fn result(&self, acc: Acc) -> String {
        match (self.kind, acc.value) {
            (BuiltinAggregate::Count, _) => acc.count.to_string(),
            (_, _) if acc.count == 0 => "null".to_string(),
            (BuiltinAggregate::Avg, Num::Int(sum)) if sum % i128::from(acc.count) == 0 => {
                (sum / i128::from(acc.count)).to_string()
            }
            (BuiltinAggregate::Avg, sum) => json_number(sum.to_f64() / acc.count as f64),
            (_, value) => value.json(),
        }
    }
}

fn decode_all(accumulators: &Batch) -> Result<Vec<Acc>, UdfError> {
    accumulators.iter().map(|r| Acc::decode(r.value)).collect()
}

fn encode_all(accs: Vec<Acc>) -> Batch {
    let mut out = Batch::new();
    for acc in accs {
        let (bytes, len) = acc.to_bytes();
        out.push(0, None, &bytes[..len]);
    }
    out
}

/// Writes a float as JSON: integral values without a fraction.
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
    fn accumulator_layout(&self) -> String {
        format!("builtin-{}", self.kind.name())
    }

    fn create_accumulator(&mut self) -> Result<Vec<u8>, UdfError> {
        let (bytes, len) = EMPTY.to_bytes();
        Ok(bytes[..len].to_vec())
    }

    fn add(&mut self, accumulators: &Batch, inputs: &Batch, targets: &[u32]) -> Result<Batch, UdfError> {
        let mut accs = decode_all(accumulators)?;
        for (record, &target) in inputs.iter().zip(targets) {
            let value = self.value_of(record.value)?;
            let acc = accs.get_mut(target as usize).ok_or_else(|| UdfError::new("accumulator index out of range"))?;
            *acc = self.fold(*acc, Acc { count: 1, value });
        }
        Ok(encode_all(accs))
    }

    fn merge(&mut self, accumulators: &Batch, others: &Batch, targets: &[u32]) -> Result<Batch, UdfError> {
        let mut accs = decode_all(accumulators)?;
        for (other, &target) in others.iter().zip(targets) {
            let acc = accs.get_mut(target as usize).ok_or_else(|| UdfError::new("accumulator index out of range"))?;
            *acc = self.fold(*acc, Acc::decode(other.value)?);
        }
        Ok(encode_all(accs))
    }

    fn get_result(&mut self, accumulators: &Batch) -> Result<Batch, UdfError> {
        let mut out = Batch::new();
        for acc in accumulators.iter() {
            out.push(0, None, self.result(Acc::decode(acc.value)?).as_bytes());
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
    fn integers_stay_exact() {
        // 2^53 + 1 and 2^56: an f64 holds neither as written.
        assert_eq!(run(BuiltinAggregate::Sum, &["9007199254740993"]), "9007199254740993");
        assert_eq!(run(BuiltinAggregate::Sum, &["72057594037927936"]), "72057594037927936");
        assert_eq!(run(BuiltinAggregate::Sum, &["9007199254740992", "1"]), "9007199254740993");
        assert_eq!(run(BuiltinAggregate::Min, &["9007199254740993", "9007199254740995"]), "9007199254740993");
        assert_eq!(run(BuiltinAggregate::Max, &["9007199254740993", "9007199254740992"]), "9007199254740993");
        assert_eq!(run(BuiltinAggregate::Avg, &["9007199254740993", "9007199254740995"]), "9007199254740994");
        assert_eq!(run(BuiltinAggregate::Sum, &["\"9007199254740993\""]), "9007199254740993", "strings too");
        // Beyond i64 the sum is still exact; u64 inputs too.
        assert_eq!(run(BuiltinAggregate::Sum, &["9223372036854775807", "9223372036854775807"]), "18446744073709551614");
        assert_eq!(run(BuiltinAggregate::Max, &["18446744073709551615", "-1"]), "18446744073709551615");
        assert_eq!(run(BuiltinAggregate::Sum, &["-9223372036854775808", "-1"]), "-9223372036854775809");
    }

    #[test]
    fn a_non_integer_turns_sums_into_floats_and_min_max_keep_the_winner() {
        // From the first non-integer on, a sum is an f64, with its rounding.
        assert_eq!(run(BuiltinAggregate::Sum, &["9007199254740993", "0.5"]), "9007199254740992");
        assert_eq!(run(BuiltinAggregate::Sum, &["1", "0.25", "2"]), "3.25");
        assert_eq!(run(BuiltinAggregate::Max, &["9007199254740993", "1.5", "9007199254740992.0"]), "9007199254740993");
        assert_eq!(run(BuiltinAggregate::Min, &["3", "2.5"]), "2.5");
        assert_eq!(run(BuiltinAggregate::Min, &["-2", "-2.5", "-3"]), "-3");
        assert_eq!(run(BuiltinAggregate::Avg, &["1", "2"]), "1.5");
        assert_eq!(cmp_int_float(3, 3.0), Ordering::Equal);
        assert_eq!(cmp_int_float(3, 3.5), Ordering::Less);
        assert_eq!(cmp_int_float(-3, -3.5), Ordering::Greater);
        assert_eq!(cmp_int_float(i128::MAX, f64::INFINITY), Ordering::Less);
        assert_eq!(cmp_int_float(i128::MIN, -1e300), Ordering::Greater);
    }

    #[test]
    fn accumulators_say_what_they_hold() {
        let int = Acc { count: 2, value: Num::Int(-(1 << 100)) };
        let float = Acc { count: 3, value: Num::Float(2.5) };
        for acc in [int, float, EMPTY] {
            let (bytes, len) = acc.to_bytes();
            assert_eq!(Acc::decode(&bytes[..len]), Ok(acc));
        }
        // The untagged bytes of earlier versions: count, then an f64.
        let mut legacy = 4u64.to_le_bytes().to_vec();
        legacy.extend_from_slice(&6.5f64.to_le_bytes());
        assert_eq!(Acc::decode(&legacy), Ok(Acc { count: 4, value: Num::Float(6.5) }));
        for corrupt in [&[][..], &[TAG_INT; 17], &[TAG_FLOAT; 25], &[9; 25], &[TAG_INT; 8]] {
            assert!(Acc::decode(corrupt).is_err(), "{corrupt:?}");
        }
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
