//! Durations in job specs: `500ms`, `5s`, `1m`, `2h`, `1d`, or a plain number of milliseconds.

use serde::{Deserialize, Deserializer, de};
use std::fmt;

/// A duration in milliseconds, as written in a job spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Millis(pub i64);

impl Millis {
    /// Parses `500ms`, `5s`, `1m`, `2h`, `1d` or `1500`.
    pub fn parse(text: &str) -> Result<Millis, String> {
        let text = text.trim();
        let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let amount: i64 =
            digits.parse().map_err(|_| format!("`{text}` is not a duration such as 500ms, 5s, 1m, 2h"))?;
        let factor = match unit.trim() {
            "" | "ms" => 1,
            "s" => 1_000,
            "m" | "min" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            other => return Err(format!("unknown duration unit `{other}` in `{text}` (use ms, s, m, h or d)")),
        };
        amount.checked_mul(factor).map(Millis).ok_or_else(|| format!("duration `{text}` is too large"))
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Millis, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Millis;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 500ms, 5s, 1m or a number of milliseconds")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Millis, E> {
                i64::try_from(v).map(Millis).map_err(|_| E::custom("duration is too large"))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Millis, E> {
                if v < 0 { Err(E::custom("a duration cannot be negative")) } else { Ok(Millis(v)) }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Millis, E> {
                Millis::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl serde::Serialize for Millis {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_i64(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(Millis::parse("500ms"), Ok(Millis(500)));
        assert_eq!(Millis::parse("5s"), Ok(Millis(5_000)));
        assert_eq!(Millis::parse("2m"), Ok(Millis(120_000)));
        assert_eq!(Millis::parse("1h"), Ok(Millis(3_600_000)));
        assert_eq!(Millis::parse("1d"), Ok(Millis(86_400_000)));
        assert_eq!(Millis::parse("250"), Ok(Millis(250)));
        assert!(Millis::parse("5 parsecs").expect_err("bad unit").contains("unknown duration unit"));
        assert!(Millis::parse("s").is_err());
        assert!(Millis::parse("99999999999999999d").is_err());
    }
}
