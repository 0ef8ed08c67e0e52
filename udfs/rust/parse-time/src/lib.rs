//! Event time from `time`: seconds since the Unix epoch with a fraction (`1704067200.25`), as a number or a string.

use eddy::{Error, Event};

#[eddy::timestamp_assigner]
fn parse_time(event: &Event) -> Result<i64, Error> {
    let record: serde_json::Value = event.json()?;
    let seconds = match &record["time"] {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    let seconds =
        seconds.ok_or_else(|| Error::msg(format!("`time` is not a number of seconds: {}", record["time"])))?;
    // Rounding, not truncating: 1704067200.123 is 1704067200122.9999 as a float.
    Ok((seconds * 1000.0).round() as i64)
}
