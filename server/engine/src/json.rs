//! The small JSON path language of job specs (`$.user.id`, `$.items[0]`, `$['odd key']`), used where the engine
//! reads a field itself: built-in keys, timestamps and aggregates.

use serde_json::Value;
use std::fmt;

/// A parsed JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    text: String,
    steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Field(String),
    Index(usize),
}

impl JsonPath {
    /// Parses a path that starts with `$`.
    pub fn parse(text: &str) -> Result<JsonPath, String> {
        let bad = |why: &str| format!("`{text}` is not a JSON path ({why}); write it like $.user.id or $.items[0]");
        let mut rest = text.trim().strip_prefix('$').ok_or_else(|| bad("it must start with $"))?;
        let mut steps = Vec::new();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('.') {
                let end = after.find(['.', '[']).unwrap_or(after.len());
                if end == 0 {
                    return Err(bad("a field name is empty"));
                }
                steps.push(Step::Field(after[..end].to_string()));
                rest = &after[end..];
            } else if let Some(after) = rest.strip_prefix('[') {
                let end = after.find(']').ok_or_else(|| bad("a [ is not closed"))?;
                let inside = after[..end].trim();
                let quoted = inside
                    .strip_prefix('\'')
                    .and_then(|s| s.strip_suffix('\''))
                    .or_else(|| inside.strip_prefix('"').and_then(|s| s.strip_suffix('"')));
                match quoted {
                    Some(name) => steps.push(Step::Field(name.to_string())),
                    None => steps.push(Step::Index(inside.parse().map_err(|_| bad("an index is not a number"))?)),
                }
                rest = &after[end + 1..];
            } else {
                return Err(bad("expected . or ["));
            }
        }
        Ok(JsonPath { text: text.trim().to_string(), steps })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The value at this path, if present.
    pub fn find<'v>(&self, value: &'v Value) -> Option<&'v Value> {
        self.steps.iter().try_fold(value, |v, step| match step {
            Step::Field(name) => v.get(name.as_str()),
            Step::Index(i) => v.get(*i),
        })
    }

    /// Parses `bytes` as JSON and returns the value at this path.
    pub fn extract(&self, bytes: &[u8]) -> Result<Value, String> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| format!("record is not JSON ({e}): {}", preview(bytes)))?;
        self.find(&value).cloned().ok_or_else(|| format!("record has no {}: {}", self.text, preview(bytes)))
    }

    /// The value at this path as a number (JSON numbers, or strings holding one).
    pub fn extract_f64(&self, bytes: &[u8]) -> Result<f64, String> {
        let value = self.extract(bytes)?;
        as_f64(&value).ok_or_else(|| format!("{} is not a number: {value}", self.text))
    }

    /// The value at this path as an integer of milliseconds, for timestamps.
    pub fn extract_i64(&self, bytes: &[u8]) -> Result<i64, String> {
        let value = self.extract(bytes)?;
        match &value {
            Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
        .ok_or_else(|| format!("{} is not an integer timestamp: {value}", self.text))
    }

    /// The value at this path as key bytes: a string's text, or any other value's compact JSON.
    pub fn extract_key(&self, bytes: &[u8]) -> Result<Vec<u8>, String> {
        Ok(key_bytes(&self.extract(bytes)?))
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Key bytes of a JSON value: a string's text, or any other value's compact JSON text.
pub fn key_bytes(value: &Value) -> Vec<u8> {
    match value {
        Value::String(s) => s.as_bytes().to_vec(),
        other => other.to_string().into_bytes(),
    }
}

fn as_f64(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The start of `bytes` as text, for error messages.
pub fn preview(bytes: &[u8]) -> String {
    const MAX: usize = 120;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX)]);
    if bytes.len() > MAX { format!("{text}...") } else { text.into_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_fields_and_indices() {
        let doc = json!({"user": {"id": 7, "name": "ann"}, "items": [1, {"a b": true}]});
        let find = |p: &str| JsonPath::parse(p).expect("valid").find(&doc).cloned();
        assert_eq!(find("$.user.id"), Some(json!(7)));
        assert_eq!(find("$['user']['name']"), Some(json!("ann")));
        assert_eq!(find("$.items[1]['a b']"), Some(json!(true)));
        assert_eq!(find("$.missing"), None);
        assert_eq!(find("$"), Some(doc.clone()));
    }

    #[test]
    fn rejects_malformed_paths() {
        for bad in ["user.id", "$.", "$[x", "$[abc]", "$x"] {
            assert!(JsonPath::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn extracts_typed_values() {
        let path = JsonPath::parse("$.v").expect("valid");
        assert_eq!(path.extract_key(br#"{"v":"home"}"#), Ok(b"home".to_vec()));
        assert_eq!(path.extract_key(br#"{"v":42}"#), Ok(b"42".to_vec()));
        assert_eq!(path.extract_i64(br#"{"v":"17"}"#), Ok(17));
        assert_eq!(path.extract_f64(br#"{"v":2.5}"#), Ok(2.5));
        assert!(path.extract_f64(br#"{"v":[1]}"#).is_err());
        assert!(path.extract(b"not json").expect_err("not json").contains("not JSON"));
    }
}
